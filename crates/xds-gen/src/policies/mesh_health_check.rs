//! MeshHealthCheck: its conf and its effect on Envoy resources.
//!
//! A proxy actively checks the endpoints of the services it calls (HTTP,
//! TCP or gRPC, by the service's protocol) and stops sending traffic to
//! those that fail. Only `to` confs exist: the checks belong on the
//! outbound service cluster.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::{
    LocalityConfigSpecifier, ZoneAwareLbConfig,
};
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::health_check::{
    GrpcHealthCheck, HealthChecker, HttpHealthCheck, Payload, TcpHealthCheck, payload,
};
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption, HealthCheck, TypedExtensionConfig};
use envoy_types::pb::envoy::extensions::health_check::event_sinks::file::v3::HealthCheckEventFileSink;
use envoy_types::pb::envoy::r#type::v3::{CodecClientType, Int64Range};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use kodiak_api::dataplane_view::Protocol;
use serde_json::Value;

use super::mesh_circuit_breaker::{Decimal, boolean, duration, object, set_healthy_panic_threshold, string, uint32};
use crate::envoy;

/// The name Envoy registers the file event sink under.
const FILE_EVENT_SINK: &str = "envoy.health_check.event_sinks.file";

/// The typed reading of a merged MeshHealthCheck `default`, with Kodiak's
/// (and Kuma's) defaults filled in where a field has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conf {
    /// Between two checks of an endpoint; default 1m.
    pub interval: Duration,
    /// For an answer to a check; default 15s.
    pub timeout: Duration,
    /// Failed checks in a row that make an endpoint unhealthy; default 5.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that make it healthy again; default 1.
    pub healthy_threshold: u32,
    pub initial_jitter: Option<Duration>,
    pub interval_jitter: Option<Duration>,
    pub interval_jitter_percent: Option<u32>,
    /// Deprecated here (MeshCircuitBreaker's `outlierDetection` has it too,
    /// and wins when both are applied, circuit breaker last).
    pub healthy_panic_threshold: Option<Decimal>,
    pub fail_traffic_on_panic: Option<bool>,
    pub event_log_path: Option<String>,
    pub always_log_health_check_failures: Option<bool>,
    /// The interval while the cluster has had no traffic yet (Envoy: 60s).
    pub no_traffic_interval: Option<Duration>,
    /// Keep the check's connection between checks (Envoy: true).
    pub reuse_connection: Option<bool>,
    pub tcp: Option<TcpCheck>,
    pub http: Option<HttpCheck>,
    pub grpc: Option<GrpcCheck>,
}

impl Default for Conf {
    fn default() -> Conf {
        read(&Value::Null)
    }
}

/// A TCP check: connect, send `send` (if any), expect each `receive` block
/// in order; with neither it only connects. The texts are sent and matched
/// as the bytes of the strings as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TcpCheck {
    pub disabled: bool,
    pub send: Option<String>,
    pub receive: Vec<String>,
}

/// An HTTP check: GET `path` (default `/`), healthy on 200 or one of
/// `expected_statuses`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    pub disabled: bool,
    pub path: String,
    /// Headers added to each check request, as `(name, value)`.
    pub add_headers: Vec<(String, String)>,
    /// Headers set (replacing) on each check request, as `(name, value)`.
    pub set_headers: Vec<(String, String)>,
    pub expected_statuses: Vec<u32>,
}

/// A gRPC check (grpc.health.v1); `authority` defaults to the cluster name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GrpcCheck {
    pub disabled: bool,
    pub service_name: String,
    pub authority: String,
}

/// Which checker a cluster gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checker {
    Http,
    Tcp,
    Grpc,
}

/// Reads a merged `default` object; missing or malformed fields (which the
/// schema refuses before merging) take their defaults.
pub fn read(conf: &Value) -> Conf {
    Conf {
        interval: duration(conf, "interval").unwrap_or(Duration::from_secs(60)),
        timeout: duration(conf, "timeout").unwrap_or(Duration::from_secs(15)),
        unhealthy_threshold: uint32(conf, "unhealthyThreshold").unwrap_or(5),
        healthy_threshold: uint32(conf, "healthyThreshold").unwrap_or(1),
        initial_jitter: duration(conf, "initialJitter"),
        interval_jitter: duration(conf, "intervalJitter"),
        interval_jitter_percent: uint32(conf, "intervalJitterPercent"),
        healthy_panic_threshold: Decimal::read(conf, "healthyPanicThreshold"),
        fail_traffic_on_panic: boolean(conf, "failTrafficOnPanic"),
        event_log_path: string(conf, "eventLogPath"),
        always_log_health_check_failures: boolean(conf, "alwaysLogHealthCheckFailures"),
        no_traffic_interval: duration(conf, "noTrafficInterval"),
        reuse_connection: boolean(conf, "reuseConnection"),
        tcp: object(conf, "tcp").map(|tcp| TcpCheck {
            disabled: disabled(tcp),
            send: string(tcp, "send"),
            receive: strings(tcp.get("receive")),
        }),
        http: object(conf, "http").map(|http| {
            let headers = |key: &str| {
                let list = object(http, "requestHeadersToAdd").and_then(|headers| headers.get(key));
                list.and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|header| Some((string(header, "name")?, string(header, "value")?)))
                    .collect()
            };
            HttpCheck {
                disabled: disabled(http),
                path: string(http, "path").filter(|path| !path.is_empty()).unwrap_or_else(|| "/".into()),
                add_headers: headers("add"),
                set_headers: headers("set"),
                expected_statuses: http
                    .get("expectedStatuses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|status| status.as_u64().and_then(|status| u32::try_from(status).ok()))
                    .collect(),
            }
        }),
        grpc: object(conf, "grpc").map(|grpc| GrpcCheck {
            disabled: disabled(grpc),
            service_name: string(grpc, "serviceName").unwrap_or_default(),
            authority: string(grpc, "authority").unwrap_or_default(),
        }),
    }
}

fn disabled(check: &Value) -> bool {
    boolean(check, "disabled").unwrap_or(false)
}

fn strings(list: Option<&Value>) -> Vec<String> {
    let items = list.and_then(Value::as_array).into_iter().flatten();
    items.filter_map(Value::as_str).map(str::to_owned).collect()
}

/// The checker for a service speaking `protocol`: the one of its protocol
/// (http for http and http2, grpc for gRPC, tcp for tcp) when configured
/// and not disabled; for an HTTP or gRPC service whose own checker is
/// configured but disabled, the TCP one if configured; else none.
pub fn checker(conf: &Conf, protocol: Protocol) -> Option<Checker> {
    let enabled = |disabled: Option<bool>| disabled == Some(false);
    let (http, tcp, grpc) = (
        conf.http.as_ref().map(|check| check.disabled),
        conf.tcp.as_ref().map(|check| check.disabled),
        conf.grpc.as_ref().map(|check| check.disabled),
    );
    match protocol {
        Protocol::Http | Protocol::Http2 if enabled(http) => Some(Checker::Http),
        Protocol::Grpc if enabled(grpc) => Some(Checker::Grpc),
        Protocol::Tcp if enabled(tcp) => Some(Checker::Tcp),
        Protocol::Http | Protocol::Http2 if http == Some(true) && enabled(tcp) => Some(Checker::Tcp),
        Protocol::Grpc if grpc == Some(true) && enabled(tcp) => Some(Checker::Tcp),
        _ => None,
    }
}

/// Lays `conf` on the outbound cluster of a service speaking `protocol`
/// (the service's shared cluster: the conf is the caller's `to` conf for
/// that service). Adds one health check when [`checker`] picks one, and
/// sets the panic settings of the cluster's load balancing either way.
/// When MeshCircuitBreaker is applied to the same cluster, apply it after
/// this, so its panic threshold wins.
pub fn apply_to_cluster(conf: &Conf, protocol: Protocol, cluster: &mut Cluster) {
    if let Some(threshold) = &conf.healthy_panic_threshold {
        set_healthy_panic_threshold(cluster, threshold);
    }
    if let Some(fail) = conf.fail_traffic_on_panic {
        let common = cluster.common_lb_config.get_or_insert_with(Default::default);
        let specifier = common
            .locality_config_specifier
            .get_or_insert_with(|| LocalityConfigSpecifier::ZoneAwareLbConfig(ZoneAwareLbConfig::default()));
        // Locality-weighted balancing has no such switch; it is left alone.
        if let LocalityConfigSpecifier::ZoneAwareLbConfig(zone_aware) = specifier {
            zone_aware.fail_traffic_on_panic = fail;
        }
    }
    if let Some(checker) = checker(conf, protocol) {
        cluster.health_checks.push(health_check(conf, checker, protocol));
    }
}

fn health_check(conf: &Conf, checker: Checker, protocol: Protocol) -> HealthCheck {
    let health_checker = match checker {
        Checker::Tcp => {
            let tcp = conf.tcp.clone().unwrap_or_default();
            HealthChecker::TcpHealthCheck(TcpHealthCheck {
                send: tcp.send.as_deref().map(text_payload),
                receive: tcp.receive.iter().map(|block| text_payload(block)).collect(),
                ..Default::default()
            })
        }
        Checker::Http => {
            let http = conf.http.clone().unwrap_or_else(read_http_defaults);
            let codec = if protocol == Protocol::Http2 { CodecClientType::Http2 } else { CodecClientType::Http1 };
            let added = headers(&http.add_headers, HeaderAppendAction::AppendIfExistsOrAdd);
            let set = headers(&http.set_headers, HeaderAppendAction::OverwriteIfExistsOrAdd);
            HealthChecker::HttpHealthCheck(HttpHealthCheck {
                path: http.path.clone(),
                request_headers_to_add: added.chain(set).collect(),
                expected_statuses: http
                    .expected_statuses
                    .iter()
                    .map(|&status| Int64Range { start: status.into(), end: i64::from(status) + 1 })
                    .collect(),
                codec_client_type: codec as i32,
                ..Default::default()
            })
        }
        Checker::Grpc => {
            let grpc = conf.grpc.clone().unwrap_or_default();
            HealthChecker::GrpcHealthCheck(GrpcHealthCheck {
                service_name: grpc.service_name,
                authority: grpc.authority,
                ..Default::default()
            })
        }
    };
    HealthCheck {
        interval: Some(envoy::duration(conf.interval)),
        timeout: Some(envoy::duration(conf.timeout)),
        unhealthy_threshold: Some(UInt32Value { value: conf.unhealthy_threshold }),
        healthy_threshold: Some(UInt32Value { value: conf.healthy_threshold }),
        initial_jitter: conf.initial_jitter.map(envoy::duration),
        interval_jitter: conf.interval_jitter.map(envoy::duration),
        interval_jitter_percent: conf.interval_jitter_percent.unwrap_or(0),
        event_logger: conf
            .event_log_path
            .iter()
            .map(|path| TypedExtensionConfig {
                name: FILE_EVENT_SINK.into(),
                typed_config: Some(envoy::any(&HealthCheckEventFileSink { event_log_path: path.clone() })),
            })
            .collect(),
        always_log_health_check_failures: conf.always_log_health_check_failures.unwrap_or(false),
        no_traffic_interval: conf.no_traffic_interval.map(envoy::duration),
        reuse_connection: conf.reuse_connection.map(|value| BoolValue { value }),
        health_checker: Some(health_checker),
        ..Default::default()
    }
}

/// One header option per comma-separated element of the value.
fn headers(list: &[(String, String)], action: HeaderAppendAction) -> impl Iterator<Item = HeaderValueOption> + '_ {
    list.iter().flat_map(move |(name, value)| {
        value.split(',').map(move |value| HeaderValueOption {
            header: Some(HeaderValue { key: name.clone(), value: value.to_owned(), ..Default::default() }),
            append_action: action as i32,
            ..Default::default()
        })
    })
}

fn read_http_defaults() -> HttpCheck {
    HttpCheck {
        disabled: false,
        path: "/".into(),
        add_headers: Vec::new(),
        set_headers: Vec::new(),
        expected_statuses: Vec::new(),
    }
}

/// Envoy's text payloads are hex: these are the string's own bytes.
fn text_payload(text: &str) -> Payload {
    let hex: String = text.bytes().map(|byte| format!("{byte:02x}")).collect();
    Payload { payload: Some(payload::Payload::Text(hex)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render;
    use kodiak_xds_server::Resource;
    use serde_json::json;

    fn applied(conf: Value, protocol: Protocol) -> Value {
        let mut cluster = Cluster { name: "backend".into(), ..Default::default() };
        apply_to_cluster(&read(&conf), protocol, &mut cluster);
        render(&Resource::new("backend", &cluster))
    }

    #[test]
    fn defaults() {
        let conf = Conf::default();
        assert_eq!(conf.interval, Duration::from_secs(60));
        assert_eq!(conf.timeout, Duration::from_secs(15));
        assert_eq!((conf.unhealthy_threshold, conf.healthy_threshold), (5, 1));
        assert_eq!((&conf.tcp, &conf.http, &conf.grpc), (&None, &None, &None));
        assert_eq!(read(&json!({"http": {}})).http.unwrap().path, "/");
        assert_eq!(read(&json!({"http": {}})).http.unwrap(), read_http_defaults());
    }

    #[test]
    fn reads_every_field() {
        let conf = read(&json!({
            "interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 2,
            "initialJitter": "1s", "intervalJitter": "500ms", "intervalJitterPercent": 10,
            "healthyPanicThreshold": "62.5", "failTrafficOnPanic": true, "eventLogPath": "/tmp/hc.log",
            "alwaysLogHealthCheckFailures": true, "noTrafficInterval": "3s", "reuseConnection": false,
            "tcp": {"disabled": true, "send": "ping", "receive": ["po", "ng"]},
            "http": {"path": "/health", "expectedStatuses": [200, 204],
                "requestHeadersToAdd": {"add": [{"name": "x-a", "value": "1"}], "set": [{"name": "x-s", "value": "2"}]}},
            "grpc": {"serviceName": "health", "authority": "backend.mesh"}
        }));
        assert_eq!(
            conf,
            Conf {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
                unhealthy_threshold: 3,
                healthy_threshold: 2,
                initial_jitter: Some(Duration::from_secs(1)),
                interval_jitter: Some(Duration::from_millis(500)),
                interval_jitter_percent: Some(10),
                healthy_panic_threshold: Some(Decimal { millionths: 62_500_000 }),
                fail_traffic_on_panic: Some(true),
                event_log_path: Some("/tmp/hc.log".into()),
                always_log_health_check_failures: Some(true),
                no_traffic_interval: Some(Duration::from_secs(3)),
                reuse_connection: Some(false),
                tcp: Some(TcpCheck {
                    disabled: true,
                    send: Some("ping".into()),
                    receive: vec!["po".into(), "ng".into()]
                }),
                http: Some(HttpCheck {
                    disabled: false,
                    path: "/health".into(),
                    add_headers: vec![("x-a".into(), "1".into())],
                    set_headers: vec![("x-s".into(), "2".into())],
                    expected_statuses: vec![200, 204],
                }),
                grpc: Some(GrpcCheck {
                    disabled: false,
                    service_name: "health".into(),
                    authority: "backend.mesh".into()
                }),
            }
        );
    }

    #[test]
    fn the_checker_follows_the_protocol() {
        let on = json!({});
        let off = json!({"disabled": true});
        let cases = [
            (
                json!({"http": on, "tcp": on, "grpc": on}),
                [Some(Checker::Http), Some(Checker::Http), Some(Checker::Grpc), Some(Checker::Tcp)],
            ),
            (json!({"http": on}), [Some(Checker::Http), Some(Checker::Http), None, None]),
            (json!({"tcp": on}), [None, None, None, Some(Checker::Tcp)]),
            (json!({"grpc": on}), [None, None, Some(Checker::Grpc), None]),
            // Own checker disabled: TCP stands in for it.
            (
                json!({"http": off, "grpc": off, "tcp": on}),
                [Some(Checker::Tcp), Some(Checker::Tcp), Some(Checker::Tcp), Some(Checker::Tcp)],
            ),
            // Own checker absent: no stand-in.
            (json!({"grpc": off, "tcp": on}), [None, None, Some(Checker::Tcp), Some(Checker::Tcp)]),
            (json!({"tcp": off, "http": off}), [None, None, None, None]),
        ];
        for (conf, expected) in cases {
            let conf = read(&conf);
            let protocols = [Protocol::Http, Protocol::Http2, Protocol::Grpc, Protocol::Tcp];
            assert_eq!(protocols.map(|protocol| checker(&conf, protocol)), expected, "{conf:?}");
        }
    }

    #[test]
    fn http_check_json() {
        let conf = json!({"interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 2,
            "initialJitter": "1s", "intervalJitter": "500ms", "intervalJitterPercent": 10,
            "alwaysLogHealthCheckFailures": true, "noTrafficInterval": "3s", "reuseConnection": false,
            "http": {"path": "/health", "expectedStatuses": [200, 204],
                "requestHeadersToAdd": {"add": [{"name": "x-a", "value": "1,2"}], "set": [{"name": "x-s", "value": "3"}]}}});
        let cluster = applied(conf, Protocol::Http);
        assert_eq!(
            cluster["healthChecks"],
            json!([{"timeout": "2s", "interval": "10s", "initialJitter": "1s", "intervalJitter": "0.500s",
                "intervalJitterPercent": 10, "unhealthyThreshold": 3, "healthyThreshold": 2,
                "reuseConnection": false, "noTrafficInterval": "3s", "alwaysLogHealthCheckFailures": true,
                "httpHealthCheck": {"path": "/health",
                    "requestHeadersToAdd": [
                        {"header": {"key": "x-a", "value": "1"}},
                        {"header": {"key": "x-a", "value": "2"}},
                        {"header": {"key": "x-s", "value": "3"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}],
                    "expectedStatuses": [{"start": "200", "end": "201"}, {"start": "204", "end": "205"}]}}])
        );
        assert_eq!(cluster.get("commonLbConfig"), None);
        let http2 = applied(json!({"http": {}}), Protocol::Http2);
        assert_eq!(
            http2["healthChecks"],
            json!([{"timeout": "15s", "interval": "60s", "unhealthyThreshold": 5, "healthyThreshold": 1,
                "httpHealthCheck": {"path": "/", "codecClientType": "HTTP2"}}])
        );
    }

    #[test]
    fn tcp_and_grpc_check_json() {
        let tcp = applied(json!({"tcp": {"send": "ping", "receive": ["pong"]}}), Protocol::Tcp);
        assert_eq!(
            tcp["healthChecks"][0]["tcpHealthCheck"],
            json!({"send": {"text": "70696e67"}, "receive": [{"text": "706f6e67"}]})
        );
        let connect_only = applied(json!({"tcp": {}}), Protocol::Tcp);
        assert_eq!(connect_only["healthChecks"][0]["tcpHealthCheck"], json!({}));
        let grpc = applied(json!({"grpc": {"serviceName": "health", "authority": "a.b"}}), Protocol::Grpc);
        assert_eq!(grpc["healthChecks"][0]["grpcHealthCheck"], json!({"serviceName": "health", "authority": "a.b"}));
        // A tcp-only conf on an HTTP service checks nothing.
        assert_eq!(applied(json!({"tcp": {}}), Protocol::Http).get("healthChecks"), None);
    }

    #[test]
    fn panic_settings_apply_without_a_checker() {
        let cluster = applied(json!({"healthyPanicThreshold": 0, "failTrafficOnPanic": true}), Protocol::Tcp);
        assert_eq!(
            cluster["commonLbConfig"],
            json!({"healthyPanicThreshold": {}, "zoneAwareLbConfig": {"failTrafficOnPanic": true}})
        );
        assert_eq!(cluster.get("healthChecks"), None);
    }

    #[test]
    fn event_log_path_is_a_file_sink() {
        let cluster = applied(json!({"eventLogPath": "/tmp/hc.log", "tcp": {}}), Protocol::Tcp);
        assert_eq!(
            cluster["healthChecks"][0]["eventLogger"],
            json!([{"name": "envoy.health_check.event_sinks.file", "typedConfig": {
                "@type": "type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink",
                "eventLogPath": "/tmp/hc.log"}}])
        );
    }
}
