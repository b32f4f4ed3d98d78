//! Envoy configuration from Kodiak resources: pure functions from typed
//! views of the mesh to xDS resources, golden-tested.
//!
//! The shape follows "generate once, share everywhere": [`services`] reads
//! the mesh, [`service_resources`] builds each service's cluster, endpoints
//! and routes once, and [`proxy_snapshot`] adds one proxy's own listeners and
//! inbound clusters around `Arc` clones of the services it calls.
//!
//! Mesh mTLS: a service's cluster speaks mTLS when its [`ServiceView::mtls`]
//! says so, and a proxy given a [`ProxySecurity`] gets its certificate and
//! trusted CAs as SDS secrets, and inbound listeners that accept mTLS
//! (STRICT: only that; PERMISSIVE: plaintext too) with MeshTrafficPermission
//! enforced by Envoy RBAC. A denied HTTP request gets 403 with the header
//! [`DENIED_BY_HEADER`] naming the MeshTrafficPermission that denied it (or
//! [`NO_PERMISSION_ALLOWS`]); a denied TCP connection is closed on the
//! caller's first byte. Envoy logs each such denial, and each connection a
//! STRICT inbound refuses as not mesh mTLS, as a `[kodiak] <listener>: ...`
//! line on its standard error.
//!
//! Addresses in the views are used as given: listener and EDS endpoint
//! addresses must be IP addresses, so the caller resolves Dataplane host
//! names first ([`DataplaneView::resolve_addresses`]).
//!
//! [`DataplaneView::resolve_addresses`]: kodiak_api::dataplane_view::DataplaneView::resolve_addresses

mod bootstrap;
mod envoy;
mod inbound;
pub mod names;
mod outbound;
pub mod policies;
mod rbac;
mod refusals;
mod render;
mod security;
mod service;
mod services;
mod shared;
mod snapshot;
#[cfg(test)]
mod test_support;

pub use bootstrap::{BootstrapParams, XDS_CLUSTER, XdsTls, bootstrap};
pub use envoy::CONNECT_TIMEOUT_SECONDS;
pub use rbac::{DENIED_BY_HEADER, NO_PERMISSION_ALLOWS};
pub use render::{RenderError, descriptor_pool, render, try_render};
pub use security::{Identity, MESH_ALPN, MtlsMode, ProxySecurity};
pub use service::{ServiceResources, service_resources};
pub use services::{Endpoint, ServiceView, services};
pub use shared::{ServiceChanges, SharedServices};
pub use snapshot::{ProxyResources, proxy_resources, proxy_resources_with_policies, proxy_snapshot};
