//! An inbound: a listener where other proxies send the service's traffic,
//! and a cluster that forwards it to the application beside the proxy.
//! Both belong to one proxy only.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use kodiak_api::dataplane_view::InboundView;

use crate::envoy;
use crate::names;
use crate::service::route_to_cluster;

/// The inbound listener `inbound:<address>:<port>`.
pub fn listener(inbound: &InboundView) -> Listener {
    let name = names::inbound_listener(&inbound.address, inbound.port);
    let cluster = names::inbound_cluster(&inbound.service_address, inbound.service_port);
    // The route is inline: it is specific to this proxy and changes only
    // with its own Dataplane, so RDS would add a round trip for nothing.
    let routes = inbound.protocol.is_http().then(|| {
        // Envoy needs a virtual host name; an inbound without a service tag
        // (not valid today, but cheap to survive) is named by its listener.
        let service = if inbound.service.is_empty() { &name } else { &inbound.service };
        RouteSpecifier::RouteConfig(route_to_cluster(names::inbound_route(service), service, &cluster))
    });
    envoy::listener(name, (&inbound.address, inbound.port), TrafficDirection::Inbound, &cluster, routes)
}

/// The cluster `inbound:<serviceAddress>:<servicePort>` to the application.
pub fn cluster(inbound: &InboundView) -> Cluster {
    let name = names::inbound_cluster(&inbound.service_address, inbound.service_port);
    // A service address is an IP unless it defaulted to a Dataplane address
    // given as a host name; Envoy resolves that one itself.
    let kind = match inbound.service_address.parse::<IpAddr>() {
        Ok(_) => cluster::DiscoveryType::Static,
        Err(_) => cluster::DiscoveryType::StrictDns,
    };
    let mut cluster = Cluster {
        load_assignment: Some(envoy::load_assignment_to_host(&name, &inbound.service_address, inbound.service_port)),
        name,
        cluster_discovery_type: envoy::cluster_type(kind),
        connect_timeout: Some(envoy::seconds(envoy::CONNECT_TIMEOUT_SECONDS)),
        ..Default::default()
    };
    if inbound.protocol.is_http2() {
        envoy::use_http2(&mut cluster);
    }
    cluster
}
