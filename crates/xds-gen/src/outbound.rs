//! An outbound: the listener where the application calls a service. It is
//! per proxy (its address and port are the Dataplane's choice); what lies
//! behind it (cluster, endpoints, routes) is the service's, shared.

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    Rds, http_connection_manager::RouteSpecifier,
};
use kodiak_api::dataplane_view::{OutboundView, Protocol};

use crate::envoy;
use crate::names;

/// The outbound listener `outbound:<address>:<port>` to `outbound.service`,
/// which speaks `protocol`.
pub fn listener(outbound: &OutboundView, protocol: Protocol) -> Listener {
    // The routes come over RDS: they are the service's and shared by every
    // caller, so one encoded RouteConfiguration serves them all.
    let routes = protocol.is_http().then(|| {
        RouteSpecifier::Rds(Rds {
            config_source: Some(envoy::ads()),
            route_config_name: names::outbound_route(&outbound.service),
        })
    });
    envoy::listener(
        names::outbound_listener(&outbound.address, outbound.port),
        (&outbound.address, outbound.port),
        TrafficDirection::Outbound,
        &names::service_cluster(&outbound.service),
        routes,
    )
}
