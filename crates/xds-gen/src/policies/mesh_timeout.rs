//! MeshTimeout: how long a proxy waits for a connection to open, for a
//! request to be answered, and on idle connections and streams.
//!
//! A conf sets every timeout it touches: a field it leaves out takes its
//! default (connection 5s, idle 1h, request 15s, stream idle 30m, the others
//! off), so a proxy without any MeshTimeout keeps Envoy's own defaults while
//! one with any gets the whole set.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::config::route::v3::RouteAction;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use kodiak_api::dataplane_view::Protocol;
use serde_json::Value;

use crate::envoy;

const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The timeouts a MeshTimeout conf sets; `None` takes the default. Zero
/// turns a timeout off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Conf {
    /// `connectionTimeout`: opening a connection to an instance.
    pub connection_timeout: Option<Duration>,
    /// `idleTimeout`: a connection without any request (HTTP) or byte (TCP).
    pub idle_timeout: Option<Duration>,
    /// `http.requestTimeout`: from the request's start to the whole answer.
    pub request_timeout: Option<Duration>,
    /// `http.streamIdleTimeout`: a request or response without any byte.
    pub stream_idle_timeout: Option<Duration>,
    /// `http.maxStreamDuration`: the longest a request may last.
    pub max_stream_duration: Option<Duration>,
    /// `http.maxConnectionDuration`: the longest a connection to an instance may live.
    pub max_connection_duration: Option<Duration>,
    /// `http.requestHeadersTimeout`: receiving a request's headers.
    pub request_headers_timeout: Option<Duration>,
}

/// Reads a merged MeshTimeout `default`; fields that are absent or not
/// durations take the default.
pub fn read(conf: &Value) -> Conf {
    let at = |value: Option<&Value>| {
        value.and_then(Value::as_str).and_then(|text| kodiak_api::duration::parse_duration(text).ok())
    };
    let http = |field: &str| at(conf.get("http").and_then(|http| http.get(field)));
    Conf {
        connection_timeout: at(conf.get("connectionTimeout")),
        idle_timeout: at(conf.get("idleTimeout")),
        request_timeout: http("requestTimeout"),
        stream_idle_timeout: http("streamIdleTimeout"),
        max_stream_duration: http("maxStreamDuration"),
        max_connection_duration: http("maxConnectionDuration"),
        request_headers_timeout: http("requestHeadersTimeout"),
    }
}

/// Sets the connect timeout of a cluster (the outbound service cluster for
/// `to`, the inbound cluster for `from`) and, for an HTTP protocol, how
/// long its connections to instances may idle and live, and its longest
/// request.
pub fn apply_to_cluster(conf: &Conf, cluster: &mut Cluster, protocol: Protocol) {
    cluster.connect_timeout = Some(envoy::duration(conf.connection_timeout.unwrap_or(DEFAULT_CONNECTION_TIMEOUT)));
    if protocol.is_http() {
        envoy::update_http_protocol_options(cluster, |options| {
            let common = options.common_http_protocol_options.get_or_insert_with(HttpProtocolOptions::default);
            common.idle_timeout = Some(envoy::duration(conf.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT)));
            common.max_stream_duration = conf.max_stream_duration.filter(|d| !d.is_zero()).map(envoy::duration);
            common.max_connection_duration = conf.max_connection_duration.filter(|d| !d.is_zero()).map(envoy::duration);
        });
    }
}

/// Sets the request and stream-idle timeouts of a route (each route of the
/// outbound route configuration for `to`, of the inbound one for `from`).
pub fn apply_to_route(conf: &Conf, action: &mut RouteAction) {
    action.timeout = Some(envoy::duration(conf.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)));
    action.idle_timeout = Some(envoy::duration(conf.stream_idle_timeout.unwrap_or(DEFAULT_STREAM_IDLE_TIMEOUT)));
}

/// Sets the header timeout of an HTTP listener (outbound for `to`, inbound
/// for `from`). Its own idle timeout is turned off: the cluster's decides.
pub fn apply_to_http_manager(conf: &Conf, manager: &mut HttpConnectionManager) {
    manager.request_headers_timeout = conf.request_headers_timeout.filter(|d| !d.is_zero()).map(envoy::duration);
    manager.common_http_protocol_options.get_or_insert_with(HttpProtocolOptions::default).idle_timeout =
        Some(envoy::duration(Duration::ZERO));
}

/// Sets the idle timeout of a TCP listener (outbound for `to`, inbound for
/// `from`).
pub fn apply_to_tcp_proxy(conf: &Conf, proxy: &mut TcpProxy) {
    proxy.idle_timeout = Some(envoy::duration(conf.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::cluster;
    use kodiak_xds_server::Resource;
    use serde_json::json;

    fn rendered<M: prost::Message + prost::Name>(message: &M) -> Value {
        crate::render(&Resource::new("x", message))
    }

    #[test]
    fn reads_every_field_and_leaves_the_rest_unset() {
        let conf = read(&json!({
            "connectionTimeout": "2s", "idleTimeout": "0",
            "http": {"requestTimeout": "1.5s", "streamIdleTimeout": "10m", "maxStreamDuration": "1h",
                     "maxConnectionDuration": "2h", "requestHeadersTimeout": "300ms"}
        }));
        assert_eq!(
            conf,
            Conf {
                connection_timeout: Some(Duration::from_secs(2)),
                idle_timeout: Some(Duration::ZERO),
                request_timeout: Some(Duration::from_millis(1500)),
                stream_idle_timeout: Some(Duration::from_secs(600)),
                max_stream_duration: Some(Duration::from_secs(3600)),
                max_connection_duration: Some(Duration::from_secs(7200)),
                request_headers_timeout: Some(Duration::from_millis(300)),
            }
        );
        assert_eq!(read(&json!({"http": {"requestTimeout": 5}})), Conf::default());
    }

    #[test]
    fn an_http_cluster_gets_its_connection_timeouts_beside_its_protocol() {
        let mut cluster = Cluster { name: "backend".into(), ..Default::default() };
        envoy::use_http2(&mut cluster);
        let conf = read(&json!({"connectionTimeout": "2s", "http": {"maxConnectionDuration": "1h"}}));
        apply_to_cluster(&conf, &mut cluster, Protocol::Grpc);
        let json = rendered(&cluster);
        assert_eq!(json["connectTimeout"], "2s");
        let options = &json["typedExtensionProtocolOptions"][envoy::names::HTTP_PROTOCOL_OPTIONS];
        assert_eq!(options["explicitHttpConfig"]["http2ProtocolOptions"], json!({}), "{json}");
        assert_eq!(
            options["commonHttpProtocolOptions"],
            json!({"idleTimeout": "3600s", "maxConnectionDuration": "3600s"})
        );
    }

    #[test]
    fn a_tcp_cluster_gets_only_its_connect_timeout() {
        let mut cluster =
            Cluster { cluster_discovery_type: envoy::cluster_type(cluster::DiscoveryType::Eds), ..Default::default() };
        apply_to_cluster(&Conf::default(), &mut cluster, Protocol::Tcp);
        assert_eq!(rendered(&cluster), json!({"type": "EDS", "connectTimeout": "5s"}));
    }

    #[test]
    fn an_http1_cluster_states_http1_when_it_gets_options() {
        let mut cluster = Cluster::default();
        apply_to_cluster(&Conf::default(), &mut cluster, Protocol::Http);
        let json = rendered(&cluster);
        let options = &json["typedExtensionProtocolOptions"][envoy::names::HTTP_PROTOCOL_OPTIONS];
        assert_eq!(options["explicitHttpConfig"], json!({"httpProtocolOptions": {}}), "{json}");
    }

    #[test]
    fn routes_and_listeners_get_the_defaults_of_unset_timeouts() {
        let mut action = RouteAction::default();
        apply_to_route(&read(&json!({"http": {"requestTimeout": "0"}})), &mut action);
        assert_eq!(rendered(&action), json!({"timeout": "0s", "idleTimeout": "1800s"}));
        let mut manager = HttpConnectionManager::default();
        apply_to_http_manager(&read(&json!({"http": {"requestHeadersTimeout": "2s"}})), &mut manager);
        let json = rendered(&manager);
        assert_eq!(json["requestHeadersTimeout"], "2s");
        assert_eq!(json["commonHttpProtocolOptions"], json!({"idleTimeout": "0s"}));
        let mut proxy = TcpProxy::default();
        apply_to_tcp_proxy(&Conf::default(), &mut proxy);
        assert_eq!(rendered(&proxy)["idleTimeout"], "3600s");
    }
}
