//! A generic ADS server: a snapshot cache and the state-of-the-world and
//! delta xDS protocols over one gRPC service, with ACK/NACK tracking.
//!
//! It knows nothing about meshes. A caller puts a [`Snapshot`] per node into
//! the [`SnapshotCache`]; every stream of that node sends what changed, in
//! make-before-break order, and reports to [`Callbacks`];
//! [`SnapshotCache::close`] ends a node's open streams with a status. Protocol rules live in
//! synchronous state machines (`sotw.rs`, `delta.rs`, sharing `tracker.rs`);
//! `stream.rs` is the async shell around them.
//!
//! # Serving
//!
//! [`AdsServer::into_service`] is a tonic service. Next to other routes on one
//! port, turn it into an axum router and serve with HTTP/1 and HTTP/2 enabled
//! (Envoy speaks h2c, HTTP/2 without TLS):
//!
//! ```text
//! let ads = AdsServer::new(cache.clone(), callbacks).into_service();
//! let app = rest_routes.merge(tonic::service::Routes::new(ads).into_axum_router());
//! axum::serve(listener, app).await?;
//! ```
//!
//! Keep request-body limits off the ADS route: a stream's body lasts as long as
//! the proxy is connected. [`StreamInfo::peer`] is set when the connection
//! carries tonic's `TcpConnectInfo` (tonic's own server adds it; behind axum, a
//! middleware can insert it from axum's `ConnectInfo`).

mod cache;
mod callbacks;
mod delta;
mod grpc;
mod resource;
mod server;
mod snapshot;
mod sotw;
mod stream;
mod subscription;
#[cfg(test)]
mod testing;
mod tracker;
pub mod type_url;
mod version;

pub use cache::SnapshotCache;
pub use callbacks::{Callbacks, StreamInfo, Transport};
pub use grpc::AdsService;
pub use resource::Resource;
pub use server::AdsServer;
pub use snapshot::{Resources, Snapshot};
