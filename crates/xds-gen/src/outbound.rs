//! An outbound: the listener where the application calls a service. It is
//! per proxy (its address and port are the Dataplane's choice); what lies
//! behind it (cluster, endpoints, routes) is the service's, shared.

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    Rds, http_connection_manager::RouteSpecifier,
};
use kodiak_api::dataplane_view::OutboundView;

use crate::policies::{ToPolicies, mesh_fault_injection, mesh_retry, mesh_tcp_route, mesh_timeout};
use crate::service::ServiceResources;
use crate::{envoy, names};

/// The outbound listener `outbound:<address>:<port>` to `outbound.service`,
/// whose resources (for this proxy's policies toward it) are `service`:
/// an HTTP connection manager on their routes, else a TCP proxy.
///
/// `caller_tags` is the value of the header naming the proxy's tags that
/// HTTP requests carry, when the mesh's MeshFaultInjections pick callers.
pub fn listener(
    outbound: &OutboundView,
    service: &ServiceResources,
    to: &ToPolicies,
    caller_tags: Option<&str>,
) -> Listener {
    let cluster = names::service_cluster(&outbound.service);
    let stat_prefix = envoy::stat_prefix(&cluster);
    let filter = if service.route.is_some() {
        // The routes come over RDS: they are the service's and shared by
        // every caller with the same policies, so one encoded
        // RouteConfiguration serves them all.
        let routes = RouteSpecifier::Rds(Rds {
            config_source: Some(envoy::ads()),
            route_config_name: names::outbound_route(&outbound.service),
        });
        let mut manager = envoy::http_connection_manager(stat_prefix, routes);
        if let Some(timeout) = &to.timeout {
            mesh_timeout::apply_to_http_manager(timeout, &mut manager);
        }
        if let Some(tags) = caller_tags {
            manager.http_filters.insert(0, mesh_fault_injection::tags_header_filter(tags));
        }
        envoy::filter(envoy::names::HTTP_CONNECTION_MANAGER, &manager)
    } else {
        let mut proxy = envoy::tcp_proxy(stat_prefix, &cluster);
        if let Some(tcp_route) = &to.tcp_route {
            mesh_tcp_route::apply_to_tcp_proxy(tcp_route, &outbound.service, &mut proxy);
        }
        if let Some(timeout) = &to.timeout {
            mesh_timeout::apply_to_tcp_proxy(timeout, &mut proxy);
        }
        if let Some(retry) = &to.retry {
            mesh_retry::apply_to_tcp_proxy(retry, &mut proxy);
        }
        envoy::filter(envoy::names::TCP_PROXY, &proxy)
    };
    envoy::listener(
        names::outbound_listener(&outbound.address, outbound.port),
        (&outbound.address, outbound.port),
        TrafficDirection::Outbound,
        vec![filter],
    )
}
