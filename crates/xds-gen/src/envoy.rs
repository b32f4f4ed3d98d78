//! Small builders for the Envoy messages every generator module needs, so
//! each of them reads as "what", not as protobuf plumbing.

use std::collections::HashMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, Http2ProtocolOptions, SocketAddress, TrafficDirection,
    address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{HttpProtocolOptions, http_protocol_options};
use envoy_types::pb::google::protobuf::{Any, Duration};

/// How long a proxy waits for a TCP connection to a service instance.
pub const CONNECT_TIMEOUT_SECONDS: i64 = 5;

/// Well-known extension names, as Envoy registers them.
pub mod names {
    pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
    pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
    pub const ROUTER: &str = "envoy.filters.http.router";
    pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
    pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
    pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
    pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
    /// The key of `typed_extension_protocol_options` that Envoy looks up
    /// for upstream HTTP settings: the options message's full name.
    pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
}

/// Packs `message` into an `Any` with Envoy's `type.googleapis.com/` URL.
pub fn any<M: prost::Message + prost::Name>(message: &M) -> Any {
    Any { type_url: M::type_url(), value: message.encode_to_vec() }
}

pub fn seconds(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}

pub fn socket_address(address: impl Into<String>, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

/// "Over the ADS stream this configuration came on", in the v3 API.
pub fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: ApiVersion::V3.into(),
        ..Default::default()
    }
}

/// An assignment with one locality holding `endpoints` (none at all when
/// the list is empty: Envoy then answers 503 "no healthy upstream").
pub fn load_assignment(
    cluster_name: &str,
    endpoints: impl IntoIterator<Item = (IpAddr, u16)>,
) -> ClusterLoadAssignment {
    let lb_endpoints: Vec<LbEndpoint> =
        endpoints.into_iter().map(|(ip, port)| lb_endpoint(ip.to_string(), port)).collect();
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_owned(),
        endpoints: if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints { lb_endpoints, ..Default::default() }]
        },
        ..Default::default()
    }
}

/// The assignment of a STATIC or STRICT_DNS cluster with one host (an IP
/// address or a name to resolve).
pub fn load_assignment_to_host(cluster_name: &str, host: &str, port: u16) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![lb_endpoint(host.to_owned(), port)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn lb_endpoint(host: String, port: u16) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address(host, port)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn cluster_type(kind: cluster::DiscoveryType) -> Option<cluster::ClusterDiscoveryType> {
    Some(cluster::ClusterDiscoveryType::Type(kind.into()))
}

/// Makes `cluster` speak HTTP/2 (prior knowledge, h2c) to its endpoints,
/// as gRPC and http2 services need.
pub fn use_http2(cluster: &mut Cluster) {
    update_http_protocol_options(cluster, |options| {
        options.upstream_protocol_options =
            Some(explicit_http(http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                Http2ProtocolOptions::default(),
            )));
    });
}

/// Changes `cluster`'s upstream HTTP options, starting from HTTP/1.1 when it
/// has none. The map keeps exactly one entry, so the encoded cluster (and
/// its version) stays deterministic.
pub fn update_http_protocol_options(cluster: &mut Cluster, change: impl FnOnce(&mut HttpProtocolOptions)) {
    let mut options = cluster
        .typed_extension_protocol_options
        .get(names::HTTP_PROTOCOL_OPTIONS)
        .and_then(|packed| prost::Message::decode(packed.value.as_slice()).ok())
        .unwrap_or_else(|| HttpProtocolOptions {
            upstream_protocol_options: Some(explicit_http(
                http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(Default::default()),
            )),
            ..Default::default()
        });
    change(&mut options);
    cluster.typed_extension_protocol_options =
        HashMap::from([(names::HTTP_PROTOCOL_OPTIONS.to_owned(), any(&options))]);
}

fn explicit_http(
    protocol: http_protocol_options::explicit_http_config::ProtocolConfig,
) -> http_protocol_options::UpstreamProtocolOptions {
    http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(http_protocol_options::ExplicitHttpConfig {
        protocol_config: Some(protocol),
    })
}

/// A protobuf duration; durations beyond what it holds are cut to its maximum.
pub fn duration(duration: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or_default(),
    }
}

/// A listener on `address:port` with one filter chain of `filters`.
pub fn listener(
    name: String,
    (address, port): (&str, u16),
    direction: TrafficDirection,
    filters: Vec<Filter>,
) -> Listener {
    Listener {
        name,
        address: Some(socket_address(address, port)),
        traffic_direction: direction.into(),
        filter_chains: vec![FilterChain { filters, ..Default::default() }],
        ..Default::default()
    }
}

/// A network filter named `name` configured by `config`.
pub fn filter<M: prost::Message + prost::Name>(name: &str, config: &M) -> Filter {
    Filter { name: name.to_owned(), config_type: Some(filter::ConfigType::TypedConfig(any(config))) }
}

/// An HTTP connection manager that only routes (the router filter is the
/// one terminal HTTP filter every chain needs).
pub fn http_connection_manager(
    stat_prefix: String,
    routes: http_connection_manager::RouteSpecifier,
) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix,
        // AUTO serves HTTP/1.1 and HTTP/2 (prior knowledge) on one port,
        // so an http listener also takes gRPC and h2c callers.
        codec_type: http_connection_manager::CodecType::Auto.into(),
        route_specifier: Some(routes),
        http_filters: vec![HttpFilter {
            name: names::ROUTER.to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any(&Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn tcp_proxy(stat_prefix: String, cluster: &str) -> TcpProxy {
    TcpProxy {
        stat_prefix,
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_owned())),
        ..Default::default()
    }
}

/// A stat prefix from a resource name: Envoy splits stat names on `.` and
/// reserves `:` in some sinks, so both become `_`.
pub fn stat_prefix(name: &str) -> String {
    name.replace([':', '.'], "_")
}
