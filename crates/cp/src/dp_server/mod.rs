//! The dp-server (port 5678): sidecars fetch their Envoy bootstrap
//! (`POST /bootstrap`), announce their shutdown (`POST /drain`) and stream
//! their configuration (gRPC ADS) on this one port, over TLS unless
//! `dpServer.tlsEnabled` is false.

mod bootstrap;
mod drain;
mod serve;

pub use serve::serve;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use kodiak_api::bootstrap::BootstrapRequest;
use kodiak_xds_gen::XdsTls;

use crate::xds::Xds;

/// What the bootstrap and drain handlers reach.
pub struct DpServerState {
    pub xds: Xds,
    /// Where sidecars reach this server when a request carries no Host header.
    pub address: SocketAddr,
    /// The control plane's certificate chain (PEM) when this server speaks
    /// TLS; `None` for plaintext.
    pub tls_chain: Option<String>,
}

impl DpServerState {
    /// How the sidecar's Envoy checks this server: with the CA kodiak-dp
    /// trusts (`--ca-cert-file`), else with the control plane's own chain.
    pub fn xds_tls(&self, request: &BootstrapRequest) -> Option<XdsTls> {
        let own = self.tls_chain.as_ref()?;
        Some(XdsTls { trusted_ca: request.ca_cert.clone().unwrap_or_else(|| own.clone()) })
    }
}

/// The HTTP routes plus the ADS gRPC service.
pub fn router(state: Arc<DpServerState>, ads: Router) -> Router {
    Router::new()
        .route("/bootstrap", post(bootstrap::handle))
        .route("/drain", post(drain::handle))
        .with_state(state)
        .merge(ads)
}
