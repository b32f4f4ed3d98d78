//! The dp-server (port 5678): sidecars fetch their Envoy bootstrap
//! (`POST /bootstrap`), announce their shutdown (`POST /drain`) and stream
//! their configuration (gRPC ADS, h2c) on this one port.

mod bootstrap;
mod drain;
mod serve;

pub use serve::serve;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::post;

use crate::xds::Xds;

/// What the bootstrap and drain handlers reach.
pub struct DpServerState {
    pub xds: Xds,
    /// Where sidecars reach this server when a request carries no Host header.
    pub address: SocketAddr,
}

/// The HTTP routes plus the ADS gRPC service.
pub fn router(state: Arc<DpServerState>, ads: Router) -> Router {
    Router::new()
        .route("/bootstrap", post(bootstrap::handle))
        .route("/drain", post(drain::handle))
        .with_state(state)
        .merge(ads)
}
