//! MeshAccessLog: its conf and its effect on Envoy resources.
//!
//! Every backend of the conf becomes one Envoy access log on the HTTP
//! connection manager or TCP proxy of a listener: the outbound listener of
//! a destination (`to`) or the inbound listener (`from`). Formats may use
//! Envoy's command operators and Kodiak's placeholders ([`PLACEHOLDERS`]),
//! which are replaced with the proxy's values before Envoy sees the format.
//!
//! - `file`: Envoy appends each line to the file.
//! - `tcp`: Envoy cannot send lines over TCP itself, so it writes each
//!   entry as a JSON line `{"address": "<host:port>", "message": <line>}`
//!   to a named pipe kodiak-dp reads; kodiak-dp sends the message to the
//!   address over TCP. The pipe's path comes with [`LogContext::tcp_pipe`];
//!   without one, tcp backends are left out.
//! - `openTelemetry` with `endpoint`: Envoy sends OTLP logs over gRPC to a
//!   cluster of the proxy's own ([`clusters`]). With `backendRef` (a
//!   MeshOpenTelemetryBackend) the backend is left out for now.

use std::collections::BTreeMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, GrpcService, SubstitutionFormatString, data_source, grpc_service, substitution_format_string,
};
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::access_loggers::open_telemetry::v3::OpenTelemetryAccessLogConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::opentelemetry::proto::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use kodiak_api::dataplane_view::{DataplaneView, InboundView, Protocol};
use prost::{Message, encoding};
use serde_json::Value;

use crate::envoy;

/// Envoy's names of the access loggers.
pub const FILE_LOGGER: &str = "envoy.access_loggers.file";
pub const OPEN_TELEMETRY_LOGGER: &str = "envoy.access_loggers.open_telemetry";
/// The OTLP gRPC port of a collector endpoint given without one.
pub const DEFAULT_OTEL_PORT: u16 = 4317;

/// Kodiak's placeholders in formats, Kuma-compatible. `%KUMA_SOURCE_ADDRESS%`
/// is the source address with port 0; `%KUMA_ZONE%` and `%KUMA_WORKLOAD%`
/// are empty (Kodiak has no zones or workloads yet).
pub const PLACEHOLDERS: [&str; 8] = [
    "%KUMA_MESH%",
    "%KUMA_SOURCE_SERVICE%",
    "%KUMA_DESTINATION_SERVICE%",
    "%KUMA_SOURCE_ADDRESS%",
    "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%",
    "%KUMA_TRAFFIC_DIRECTION%",
    "%KUMA_ZONE%",
    "%KUMA_WORKLOAD%",
];

/// The line of an HTTP request when a backend has no format.
pub const DEFAULT_HTTP_FORMAT: &str = r#"[%START_TIME%] %KUMA_MESH% "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%KUMA_SOURCE_SERVICE%" "%KUMA_DESTINATION_SERVICE%" "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%" "%UPSTREAM_HOST%""#;
/// The line of a TCP connection when a backend has no format.
pub const DEFAULT_TCP_FORMAT: &str = "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes";

/// The caller of a proxy whose service is not known (inbound logs).
const UNKNOWN_SERVICE: &str = "unknown";

/// The merged `default` of the MeshAccessLog entries for one destination
/// (`to`) or one inbound (`from`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Conf {
    /// Every backend gets every entry, in this order.
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backend {
    File {
        path: String,
        format: Option<Format>,
    },
    /// `address` is `host:port` of a TCP collector.
    Tcp {
        address: String,
        format: Option<Format>,
    },
    OpenTelemetry(OpenTelemetry),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Format {
    /// A line of text (a newline is added).
    Plain { line: String, omit_empty_values: bool },
    /// A JSON object of these keys and values, one per line.
    Json { fields: Vec<(String, String)>, omit_empty_values: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenTelemetry {
    /// The collector as `(host, port)`; None for a `backendRef`, which
    /// Kodiak does not resolve yet.
    pub endpoint: Option<(String, u16)>,
    /// Attributes of each log record: static keys, values with placeholders.
    pub attributes: Vec<(String, String)>,
    /// The record's body, as JSON text: an OTLP `AnyValue` in its JSON form
    /// (`{"kvlistValue": ...}`), or a string. None: the default format.
    pub body: Option<String>,
}

/// Reads a merged MeshAccessLog `default`; backends that do not read are
/// left out.
pub fn read(conf: &Value) -> Conf {
    let backends = conf.get("backends").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Conf { backends: backends.iter().filter_map(read_backend).collect() }
}

fn read_backend(backend: &Value) -> Option<Backend> {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    match backend.get("type")?.as_str()? {
        "File" => {
            let file = backend.get("file")?;
            Some(Backend::File { path: text(file, "path")?, format: file.get("format").and_then(read_format) })
        }
        "Tcp" => {
            let tcp = backend.get("tcp")?;
            Some(Backend::Tcp { address: text(tcp, "address")?, format: tcp.get("format").and_then(read_format) })
        }
        "OpenTelemetry" => {
            let otel = backend.get("openTelemetry")?;
            let endpoint = text(otel, "endpoint").filter(|_| otel.get("backendRef").is_none_or(Value::is_null));
            let attributes = otel.get("attributes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            Some(Backend::OpenTelemetry(OpenTelemetry {
                endpoint: endpoint.as_deref().and_then(otel_endpoint),
                attributes: attributes.iter().filter_map(|kv| Some((text(kv, "key")?, text(kv, "value")?))).collect(),
                body: otel.get("body").filter(|body| !body.is_null()).map(Value::to_string),
            }))
        }
        _ => None,
    }
}

fn read_format(format: &Value) -> Option<Format> {
    let omit_empty_values = format.get("omitEmptyValues").and_then(Value::as_bool).unwrap_or(false);
    match format.get("type")?.as_str()? {
        "Plain" => Some(Format::Plain { line: format.get("plain")?.as_str()?.to_owned(), omit_empty_values }),
        "Json" => {
            let fields = format.get("json")?.as_array()?;
            let fields = fields
                .iter()
                .filter_map(|kv| Some((kv.get("key")?.as_str()?.to_owned(), kv.get("value")?.as_str()?.to_owned())))
                .collect();
            Some(Format::Json { fields, omit_empty_values })
        }
        _ => None,
    }
}

/// `host:port`, `host` (port 4317), `[v6]:port` or a bare IPv6 address.
fn otel_endpoint(text: &str) -> Option<(String, u16)> {
    if text.is_empty() {
        return None;
    }
    if text.parse::<IpAddr>().is_ok() {
        return Some((text.to_owned(), DEFAULT_OTEL_PORT));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host, port.parse().ok().filter(|port| *port > 0)?),
        _ => (text, DEFAULT_OTEL_PORT),
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Which way the logged traffic goes through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Where access logs are written and the values of the placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogContext {
    pub mesh: String,
    pub source_service: String,
    /// The proxy's own address.
    pub source_address: String,
    pub destination_service: String,
    pub direction: Direction,
    /// Whether the listener speaks HTTP (picks the default format).
    pub http: bool,
    /// The named pipe kodiak-dp reads tcp backends' entries from, on the
    /// proxy's host; None leaves tcp backends out.
    pub tcp_pipe: Option<String>,
}

impl LogContext {
    /// For `dataplane`'s inbound `inbound` (`from`): the caller is unknown,
    /// the destination is the inbound's service.
    pub fn inbound(dataplane: &DataplaneView, inbound: &InboundView, tcp_pipe: Option<String>) -> LogContext {
        LogContext {
            mesh: dataplane.mesh.clone(),
            source_service: UNKNOWN_SERVICE.to_owned(),
            source_address: dataplane.address.clone(),
            destination_service: inbound.service.clone(),
            direction: Direction::Inbound,
            http: inbound.protocol.is_http(),
            tcp_pipe,
        }
    }

    /// For `dataplane`'s outbound to `service`, which speaks `protocol`
    /// (`to`): the source is the proxy's first service in sorted order.
    pub fn outbound(
        dataplane: &DataplaneView,
        service: &str,
        protocol: Protocol,
        tcp_pipe: Option<String>,
    ) -> LogContext {
        let source = dataplane.inbounds.iter().map(|inbound| inbound.service.as_str()).filter(|s| !s.is_empty()).min();
        LogContext {
            mesh: dataplane.mesh.clone(),
            source_service: source.unwrap_or(UNKNOWN_SERVICE).to_owned(),
            source_address: dataplane.address.clone(),
            destination_service: service.to_owned(),
            direction: Direction::Outbound,
            http: protocol.is_http(),
            tcp_pipe,
        }
    }

    /// `format` with every placeholder replaced by its value.
    pub fn interpolate(&self, format: &str) -> String {
        let address = match self.source_address.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:0"),
            _ => format!("{}:0", self.source_address),
        };
        let direction = match self.direction {
            Direction::Inbound => "INBOUND",
            Direction::Outbound => "OUTBOUND",
        };
        format
            .replace("%KUMA_SOURCE_ADDRESS%", &address)
            .replace("%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", &self.source_address)
            .replace("%KUMA_SOURCE_SERVICE%", &self.source_service)
            .replace("%KUMA_DESTINATION_SERVICE%", &self.destination_service)
            .replace("%KUMA_MESH%", &self.mesh)
            .replace("%KUMA_TRAFFIC_DIRECTION%", direction)
            .replace("%KUMA_ZONE%", "")
            .replace("%KUMA_WORKLOAD%", "")
    }

    fn default_format(&self) -> &'static str {
        if self.http { DEFAULT_HTTP_FORMAT } else { DEFAULT_TCP_FORMAT }
    }
}

/// The Envoy access logs of `conf` in `context`, one per backend that
/// applies.
pub fn access_logs(conf: &Conf, context: &LogContext) -> Vec<AccessLog> {
    conf.backends.iter().filter_map(|backend| access_log(backend, context)).collect()
}

fn access_log(backend: &Backend, context: &LogContext) -> Option<AccessLog> {
    let line = |line: &str, omit_empty_values| LineFormat::Text { line: context.interpolate(line), omit_empty_values };
    let json = |fields: &[(String, String)], omit_empty_values| LineFormat::Json {
        fields: fields.iter().map(|(key, value)| (key.clone(), Entry::Text(context.interpolate(value)))).collect(),
        omit_empty_values,
    };
    let (name, config) = match backend {
        Backend::File { path, format } => {
            let format = match format {
                None => line(context.default_format(), false),
                Some(Format::Plain { line: text, omit_empty_values }) => line(text, *omit_empty_values),
                Some(Format::Json { fields, omit_empty_values }) => json(fields, *omit_empty_values),
            };
            (FILE_LOGGER, file_log(path, &format))
        }
        Backend::Tcp { address, format } => {
            let text = |line: &str| Entry::Text(format!("{}\n", context.interpolate(line)));
            let (message, omit_empty_values) = match format {
                None => (text(context.default_format()), false),
                Some(Format::Plain { line, omit_empty_values }) => (text(line), *omit_empty_values),
                Some(Format::Json { fields, omit_empty_values }) => {
                    let fields =
                        fields.iter().map(|(key, value)| (key.clone(), Entry::Text(context.interpolate(value))));
                    (Entry::Object(fields.collect()), *omit_empty_values)
                }
            };
            let envelope = [("address".to_owned(), Entry::Text(address.clone())), ("message".to_owned(), message)];
            let format = LineFormat::Json { fields: envelope.into_iter().collect(), omit_empty_values };
            (FILE_LOGGER, file_log(context.tcp_pipe.as_deref()?, &format))
        }
        Backend::OpenTelemetry(otel) => {
            let (host, port) = otel.endpoint.as_ref()?;
            (OPEN_TELEMETRY_LOGGER, envoy::any(&otel_log(otel, &otel_cluster_name(host, *port), context)))
        }
    };
    Some(AccessLog {
        name: name.to_owned(),
        config_type: Some(access_log::ConfigType::TypedConfig(config)),
        filter: None,
    })
}

/// What a file logger writes for each entry, placeholders replaced.
enum LineFormat {
    /// A line of text (a newline is added).
    Text { line: String, omit_empty_values: bool },
    /// A JSON object, one per line.
    Json { fields: BTreeMap<String, Entry>, omit_empty_values: bool },
}

/// A value of a JSON line: a format string or an object of them.
enum Entry {
    Text(String),
    Object(BTreeMap<String, Entry>),
}

/// A file access log of `format` to `path`. A JSON format is a protobuf
/// `Struct`, a map field, which prost would encode in no fixed order; it is
/// encoded here by hand in key order, so equal confs give equal bytes.
fn file_log(path: &str, format: &LineFormat) -> Any {
    let mut value = FileAccessLog { path: path.to_owned(), access_log_format: None }.encode_to_vec();
    let log_format = match format {
        LineFormat::Text { line, omit_empty_values } => SubstitutionFormatString {
            format: Some(substitution_format_string::Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(format!("{line}\n"))),
                ..Default::default()
            })),
            omit_empty_values: *omit_empty_values,
            ..Default::default()
        }
        .encode_to_vec(),
        LineFormat::Json { fields, omit_empty_values } => {
            let mut bytes = SubstitutionFormatString { omit_empty_values: *omit_empty_values, ..Default::default() }
                .encode_to_vec();
            // SubstitutionFormatString.json_format
            encoding::bytes::encode(2, &encode_struct(fields), &mut bytes);
            bytes
        }
    };
    // FileAccessLog.log_format
    encoding::bytes::encode(5, &log_format, &mut value);
    Any { type_url: <FileAccessLog as prost::Name>::type_url(), value }
}

/// `google.protobuf.Struct` bytes of `fields`, in key order.
fn encode_struct(fields: &BTreeMap<String, Entry>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (key, entry) in fields {
        // Struct.fields map entry: key 1, value 2 (a Value: string_value 3, struct_value 5).
        let mut value = Vec::new();
        match entry {
            Entry::Text(text) => encoding::string::encode(3, text, &mut value),
            Entry::Object(object) => encoding::bytes::encode(5, &encode_struct(object), &mut value),
        }
        let mut pair = Vec::new();
        encoding::string::encode(1, key, &mut pair);
        encoding::bytes::encode(2, &value, &mut pair);
        encoding::bytes::encode(1, &pair, &mut bytes);
    }
    bytes
}

fn otel_log(otel: &OpenTelemetry, cluster: &str, context: &LogContext) -> OpenTelemetryAccessLogConfig {
    let text = |text: &str| AnyValue { value: Some(any_value::Value::StringValue(context.interpolate(text))) };
    let body = match &otel.body {
        None => text(context.default_format()),
        Some(json) => otel_body(json, context),
    };
    let attributes = otel.attributes.iter().map(|(key, value)| KeyValue {
        key: key.clone(),
        value: Some(text(value)),
        ..Default::default()
    });
    let mesh = KeyValue { key: "kuma.mesh".to_owned(), value: Some(text(&context.mesh)), ..Default::default() };
    OpenTelemetryAccessLogConfig {
        grpc_service: Some(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(grpc_service::EnvoyGrpc {
                cluster_name: cluster.to_owned(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        log_name: "MeshAccessLog".to_owned(),
        body: Some(body),
        attributes: Some(KeyValueList { values: attributes.collect() }),
        resource_attributes: Some(KeyValueList { values: vec![mesh] }),
        ..Default::default()
    }
}

/// A body given as an OTLP `AnyValue` in JSON, placeholders replaced in
/// its strings and keys; any other JSON (a string included) becomes a
/// string body.
fn otel_body(json: &str, context: &LogContext) -> AnyValue {
    let parsed: Option<AnyValue> = serde_json::from_str::<Value>(json).ok().and_then(|value| {
        if let Value::String(text) = &value {
            return Some(AnyValue { value: Some(any_value::Value::StringValue(text.clone())) });
        }
        let descriptor = crate::descriptor_pool().get_message_by_name("opentelemetry.proto.common.v1.AnyValue")?;
        let message = prost_reflect::DynamicMessage::deserialize(descriptor, value).ok()?;
        AnyValue::decode(message.encode_to_vec().as_slice()).ok()
    });
    let mut body = parsed.unwrap_or_else(|| AnyValue { value: Some(any_value::Value::StringValue(json.to_owned())) });
    interpolate_any(&mut body, context);
    body
}

fn interpolate_any(value: &mut AnyValue, context: &LogContext) {
    match &mut value.value {
        Some(any_value::Value::StringValue(text)) => *text = context.interpolate(text),
        Some(any_value::Value::ArrayValue(array)) => {
            array.values.iter_mut().for_each(|value| interpolate_any(value, context));
        }
        Some(any_value::Value::KvlistValue(list)) => {
            for kv in &mut list.values {
                kv.key = context.interpolate(&kv.key);
                if let Some(value) = &mut kv.value {
                    interpolate_any(value, context);
                }
            }
        }
        _ => {}
    }
}

/// The name of the cluster to the OpenTelemetry collector at `host:port`.
pub fn otel_cluster_name(host: &str, port: u16) -> String {
    format!("meshaccesslog:opentelemetry:{host}:{port}")
}

/// The clusters `conf`'s OpenTelemetry backends send to (HTTP/2, as OTLP
/// gRPC needs), one per collector. They are the proxy's own: add each once
/// to the proxy's clusters (the same collector in several confs gives the
/// same cluster, by name).
pub fn clusters(conf: &Conf) -> Vec<Cluster> {
    let mut endpoints: Vec<&(String, u16)> = conf
        .backends
        .iter()
        .filter_map(|backend| match backend {
            Backend::OpenTelemetry(otel) => otel.endpoint.as_ref(),
            _ => None,
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
        .into_iter()
        .map(|(host, port)| {
            let name = otel_cluster_name(host, *port);
            let kind = match host.parse::<IpAddr>() {
                Ok(_) => cluster::DiscoveryType::Static,
                Err(_) => cluster::DiscoveryType::StrictDns,
            };
            let mut cluster = Cluster {
                load_assignment: Some(envoy::load_assignment_to_host(&name, host, *port)),
                name,
                cluster_discovery_type: envoy::cluster_type(kind),
                connect_timeout: Some(envoy::seconds(envoy::CONNECT_TIMEOUT_SECONDS)),
                ..Default::default()
            };
            envoy::use_http2(&mut cluster);
            cluster
        })
        .collect()
}

/// Adds `conf`'s access logs to an HTTP connection manager.
pub fn apply_to_http_manager(conf: &Conf, context: &LogContext, manager: &mut HttpConnectionManager) {
    manager.access_log.extend(access_logs(conf, context));
}

/// Adds `conf`'s access logs to a TCP proxy.
pub fn apply_to_tcp_proxy(conf: &Conf, context: &LogContext, proxy: &mut TcpProxy) {
    proxy.access_log.extend(access_logs(conf, context));
}

/// Adds `conf`'s access logs to the HTTP connection manager or TCP proxy of
/// every filter chain of `listener`: the outbound listener of the
/// destination for a `to` conf (context from [`LogContext::outbound`]), the
/// inbound listener for a `from` conf ([`LogContext::inbound`]). Entries
/// already there (such as the refusal logs of mTLS inbounds) stay first.
pub fn apply_to_listener(conf: &Conf, context: &LogContext, listener: &mut Listener) {
    let logs = access_logs(conf, context);
    if logs.is_empty() {
        return;
    }
    let filters = listener.filter_chains.iter_mut().flat_map(|chain| chain.filters.iter_mut());
    for filter in filters {
        let Some(filter::ConfigType::TypedConfig(config)) = &mut filter.config_type else { continue };
        if let Some(mut manager) = unpack::<HttpConnectionManager>(config) {
            manager.access_log.extend(logs.iter().cloned());
            *config = envoy::any(&manager);
        } else if let Some(mut proxy) = unpack::<TcpProxy>(config) {
            proxy.access_log.extend(logs.iter().cloned());
            *config = envoy::any(&proxy);
        }
    }
}

fn unpack<M: Message + prost::Name + Default>(any: &Any) -> Option<M> {
    (any.type_url == M::type_url()).then(|| M::decode(any.value.as_slice()).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{dataplane, instance};
    use serde_json::json;

    fn outbound_context(pipe: Option<&str>) -> LogContext {
        let web = dataplane(
            "{type: Dataplane, mesh: demo, name: web-1, networking: {address: 127.0.0.2, inbound: [
                {port: 10001, tags: {kuma.io/service: web, kuma.io/protocol: http}},
                {port: 10002, tags: {kuma.io/service: admin}}],
                outbound: [{port: 20001, tags: {kuma.io/service: backend}}]}}",
        );
        LogContext::outbound(&web, "backend", Protocol::Http, pipe.map(str::to_owned))
    }

    #[test]
    fn reads_every_backend_and_format() {
        let conf = read(&json!({"backends": [
            {"type": "File", "file": {"path": "/tmp/a.log"}},
            {"type": "File", "file": {"path": "/tmp/b.log", "format": {"type": "Plain", "plain": "%KUMA_MESH% x", "omitEmptyValues": true}}},
            {"type": "Tcp", "tcp": {"address": "127.0.0.1:5000", "format": {"type": "Json", "json": [{"key": "mesh", "value": "%KUMA_MESH%"}]}}},
            {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "otel-collector", "attributes": [{"key": "a", "value": "b"}],
                "body": {"stringValue": "%KUMA_MESH%"}}},
            {"type": "OpenTelemetry", "openTelemetry": {"backendRef": {"kind": "MeshOpenTelemetryBackend", "labels": {"a": "b"}}}},
            {"type": "Carrier pigeon"}
        ]}));
        assert_eq!(
            conf.backends,
            [
                Backend::File { path: "/tmp/a.log".into(), format: None },
                Backend::File {
                    path: "/tmp/b.log".into(),
                    format: Some(Format::Plain { line: "%KUMA_MESH% x".into(), omit_empty_values: true })
                },
                Backend::Tcp {
                    address: "127.0.0.1:5000".into(),
                    format: Some(Format::Json {
                        fields: vec![("mesh".into(), "%KUMA_MESH%".into())],
                        omit_empty_values: false
                    })
                },
                Backend::OpenTelemetry(OpenTelemetry {
                    endpoint: Some(("otel-collector".into(), 4317)),
                    attributes: vec![("a".into(), "b".into())],
                    body: Some(r#"{"stringValue":"%KUMA_MESH%"}"#.into()),
                }),
                Backend::OpenTelemetry(OpenTelemetry { endpoint: None, attributes: vec![], body: None }),
            ]
        );
        assert_eq!(read(&json!({"backends": 3})), Conf::default());
    }

    #[test]
    fn collector_endpoints_default_to_the_otlp_grpc_port() {
        assert_eq!(otel_endpoint("collector:4318"), Some(("collector".into(), 4318)));
        assert_eq!(otel_endpoint("collector"), Some(("collector".into(), 4317)));
        assert_eq!(otel_endpoint("[::1]:9000"), Some(("::1".into(), 9000)));
        assert_eq!(otel_endpoint("2001:db8::1"), Some(("2001:db8::1".into(), 4317)));
        assert_eq!(otel_endpoint("collector:0"), None);
        assert_eq!(otel_endpoint(""), None);
    }

    #[test]
    fn placeholders_take_the_proxy_values() {
        let context = outbound_context(None);
        assert_eq!(
            context.interpolate(
                "%KUMA_MESH% %KUMA_SOURCE_SERVICE% %KUMA_DESTINATION_SERVICE% %KUMA_SOURCE_ADDRESS% \
                 %KUMA_SOURCE_ADDRESS_WITHOUT_PORT% %KUMA_TRAFFIC_DIRECTION% [%KUMA_ZONE%%KUMA_WORKLOAD%] %START_TIME%"
            ),
            "demo admin backend 127.0.0.2:0 127.0.0.2 OUTBOUND [] %START_TIME%"
        );
        let backend = instance("backend-1", "127.0.0.4", "backend", "tcp");
        let inbound = LogContext::inbound(&backend, &backend.inbounds[0], None);
        assert_eq!(
            inbound.interpolate("%KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% %KUMA_TRAFFIC_DIRECTION%"),
            "unknown->backend INBOUND"
        );
        assert!(!inbound.http);
    }

    fn rendered_logs(conf: &Conf, context: &LogContext) -> Value {
        let mut manager = HttpConnectionManager::default();
        apply_to_http_manager(conf, context, &mut manager);
        crate::render(&kodiak_xds_server::Resource::new("m", &manager))["accessLog"].clone()
    }

    #[test]
    fn file_backends_write_the_default_or_given_format() {
        let conf = read(&json!({"backends": [
            {"type": "File", "file": {"path": "/tmp/default.log"}},
            {"type": "File", "file": {"path": "/tmp/plain.log", "format": {"type": "Plain", "plain": "%KUMA_SOURCE_SERVICE% %RESPONSE_CODE%"}}},
            {"type": "File", "file": {"path": "/tmp/json.log", "format": {"type": "Json", "omitEmptyValues": true,
                "json": [{"key": "to", "value": "%KUMA_DESTINATION_SERVICE%"}, {"key": "status", "value": "%RESPONSE_CODE%"}]}}}
        ]}));
        let file = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
        let default_line = outbound_context(None).interpolate(DEFAULT_HTTP_FORMAT) + "\n";
        assert!(default_line.contains(r#""admin" "backend" "127.0.0.2""#), "{default_line}");
        assert_eq!(
            rendered_logs(&conf, &outbound_context(None)),
            json!([
                {"name": "envoy.access_loggers.file", "typedConfig": {"@type": file, "path": "/tmp/default.log",
                    "logFormat": {"textFormatSource": {"inlineString": default_line}}}},
                {"name": "envoy.access_loggers.file", "typedConfig": {"@type": file, "path": "/tmp/plain.log",
                    "logFormat": {"textFormatSource": {"inlineString": "admin %RESPONSE_CODE%\n"}}}},
                {"name": "envoy.access_loggers.file", "typedConfig": {"@type": file, "path": "/tmp/json.log",
                    "logFormat": {"jsonFormat": {"status": "%RESPONSE_CODE%", "to": "backend"}, "omitEmptyValues": true}}}
            ])
        );
    }

    #[test]
    fn tcp_backends_write_addressed_entries_to_the_pipe_or_nothing_without_one() {
        let conf = read(&json!({"backends": [
            {"type": "Tcp", "tcp": {"address": "127.0.0.1:5000"}},
            {"type": "Tcp", "tcp": {"address": "logs:6000", "format": {"type": "Json", "json": [{"key": "mesh", "value": "%KUMA_MESH%"}]}}}
        ]}));
        assert!(access_logs(&conf, &outbound_context(None)).is_empty());
        let logs = rendered_logs(&conf, &outbound_context(Some("/work/kodiak-al.pipe")));
        let tcp_line = outbound_context(None).interpolate(DEFAULT_HTTP_FORMAT) + "\n";
        assert_eq!(logs[0]["typedConfig"]["path"], "/work/kodiak-al.pipe");
        assert_eq!(
            logs[0]["typedConfig"]["logFormat"],
            json!({"jsonFormat": {"address": "127.0.0.1:5000", "message": tcp_line}})
        );
        assert_eq!(
            logs[1]["typedConfig"]["logFormat"],
            json!({"jsonFormat": {"address": "logs:6000", "message": {"mesh": "demo"}}})
        );
    }

    #[test]
    fn open_telemetry_backends_send_to_a_cluster_of_their_collector() {
        let conf = read(&json!({"backends": [
            {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "127.0.0.1:4317",
                "attributes": [{"key": "mesh", "value": "%KUMA_MESH%"}],
                "body": {"kvlistValue": {"values": [{"key": "%KUMA_SOURCE_SERVICE%", "value": {"stringValue": "%KUMA_DESTINATION_SERVICE% %RESPONSE_CODE%"}}]}}}},
            {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "127.0.0.1:4317"}},
            {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "collector:4317", "body": "plain %KUMA_MESH%"}}
        ]}));
        let logs = rendered_logs(&conf, &outbound_context(None));
        let first = &logs[0]["typedConfig"];
        assert_eq!(logs[0]["name"], OPEN_TELEMETRY_LOGGER);
        assert_eq!(
            first["grpcService"],
            json!({"envoyGrpc": {"clusterName": "meshaccesslog:opentelemetry:127.0.0.1:4317"}})
        );
        assert_eq!(
            first["body"],
            json!({"kvlistValue": {"values": [{"key": "admin", "value": {"stringValue": "backend %RESPONSE_CODE%"}}]}})
        );
        assert_eq!(first["attributes"], json!({"values": [{"key": "mesh", "value": {"stringValue": "demo"}}]}));
        assert_eq!(
            first["resourceAttributes"],
            json!({"values": [{"key": "kuma.mesh", "value": {"stringValue": "demo"}}]})
        );
        assert_eq!(first["logName"], "MeshAccessLog");
        let default_body = outbound_context(None).interpolate(DEFAULT_HTTP_FORMAT);
        assert_eq!(logs[1]["typedConfig"]["body"], json!({"stringValue": default_body}));
        assert_eq!(logs[2]["typedConfig"]["body"], json!({"stringValue": "plain demo"}));

        let clusters = clusters(&conf);
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["meshaccesslog:opentelemetry:127.0.0.1:4317", "meshaccesslog:opentelemetry:collector:4317"]);
        let rendered = crate::render(&kodiak_xds_server::Resource::new("c", &clusters[1]));
        assert_eq!(rendered["type"], "STRICT_DNS");
        assert!(rendered["typedExtensionProtocolOptions"].to_string().contains("http2ProtocolOptions"), "{rendered}");
    }

    /// A listener with a TCP proxy chain and an HTTP chain, each with one access log already.
    fn two_chain_listener() -> Listener {
        use envoy_types::pb::envoy::config::listener::v3::FilterChain;
        use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
        let earlier = AccessLog { name: "earlier".into(), ..Default::default() };
        let mut proxy = envoy::tcp_proxy("in".into(), "cluster");
        proxy.access_log.push(earlier.clone());
        let mut manager = envoy::http_connection_manager("in".into(), RouteSpecifier::RouteConfig(Default::default()));
        manager.access_log.push(earlier);
        let chain = |filter| FilterChain { filters: vec![filter], ..Default::default() };
        Listener {
            filter_chains: vec![
                chain(envoy::filter(envoy::names::TCP_PROXY, &proxy)),
                chain(envoy::filter(envoy::names::HTTP_CONNECTION_MANAGER, &manager)),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_listener_gets_the_logs_on_every_chain_after_the_ones_it_had() {
        let backend = instance("backend-1", "127.0.0.4", "backend", "tcp");
        let mut listener = two_chain_listener();
        let conf = read(&json!({"backends": [{"type": "File", "file": {"path": "/tmp/in.log"}}]}));
        let context = LogContext::inbound(&backend, &backend.inbounds[0], None);
        apply_to_listener(&conf, &context, &mut listener);
        let rendered = crate::render(&kodiak_xds_server::Resource::new("l", &listener));
        for chain in 0..2 {
            let logs = &rendered["filterChains"][chain]["filters"][0]["typedConfig"]["accessLog"];
            assert_eq!(logs.as_array().map(Vec::len), Some(2), "{rendered}");
            assert_eq!(logs[0]["name"], "earlier");
            let line = logs[1]["typedConfig"]["logFormat"]["textFormatSource"]["inlineString"].as_str().unwrap();
            assert_eq!(line, context.interpolate(DEFAULT_TCP_FORMAT) + "\n");
            assert!(line.contains("127.0.0.4(unknown)->%UPSTREAM_HOST%(backend)"), "{line}");
        }
        let unchanged = two_chain_listener();
        let mut empty = unchanged.clone();
        apply_to_listener(&Conf::default(), &context, &mut empty);
        assert_eq!(empty, unchanged);
    }

    #[test]
    fn json_lines_encode_the_same_bytes_every_time() {
        let fields: Vec<serde_json::Value> =
            (0..20).map(|i| json!({"key": format!("k{}", (i * 7) % 20), "value": "%RESPONSE_CODE%"})).collect();
        let conf = read(&json!({"backends": [{"type": "File", "file": {"path": "/tmp/j.log",
            "format": {"type": "Json", "json": fields}}}]}));
        let context = outbound_context(None);
        let first = access_logs(&conf, &context);
        for _ in 0..10 {
            assert_eq!(access_logs(&conf, &context), first);
        }
        let rendered = rendered_logs(&conf, &context);
        assert_eq!(rendered[0]["typedConfig"]["logFormat"]["jsonFormat"].as_object().map(|o| o.len()), Some(20));
    }

    /// The example of the user docs is valid and reads as they say.
    #[test]
    fn the_documented_example_logs_both_ways() {
        use crate::test_support::resource;
        use kodiak_api::ResourceType;
        let web = resource(
            "{type: Dataplane, mesh: default, name: web-1, networking: {address: 127.0.0.2, inbound: [
                {port: 10001, tags: {kuma.io/service: web, kuma.io/protocol: http}}],
                outbound: [{port: 20001, tags: {kuma.io/service: backend}}]}}",
        );
        let policy = resource(
            "
type: MeshAccessLog
mesh: default
name: everything
spec:
  targetRef:
    kind: Mesh
  from:
    - targetRef:
        kind: Mesh
      default:
        backends:
          - type: File
            file:
              path: /var/log/kodiak/inbound.log
  to:
    - targetRef:
        kind: Mesh
      default:
        backends:
          - type: File
            file:
              path: /var/log/kodiak/outbound.json
              format:
                type: Json
                json:
                  - key: from
                    value: \"%KUMA_SOURCE_SERVICE%\"
                  - key: to
                    value: \"%KUMA_DESTINATION_SERVICE%\"
                  - key: status
                    value: \"%RESPONSE_CODE%\"
          - type: Tcp
            tcp:
              address: 127.0.0.1:5000
              format:
                type: Plain
                plain: \"%KUMA_SOURCE_SERVICE% -> %KUMA_DESTINATION_SERVICE% %RESPONSE_CODE%\"
",
        );
        let rules =
            kodiak_policy::rules::proxy_rules(&web, &kodiak_policy::rules::MeshPolicies::new("default", [&policy]));
        let rules = &rules.types[&ResourceType::MeshAccessLog];
        let inbound = read(&rules.from[0].conf.as_ref().unwrap().conf);
        assert_eq!(inbound.backends, [Backend::File { path: "/var/log/kodiak/inbound.log".into(), format: None }]);
        let outbound = read(&rules.to.for_service("backend").unwrap().conf);
        assert_eq!(outbound.backends.len(), 2);
        let context = outbound_context(Some("/work/kodiak-access-logs.pipe"));
        let logs = rendered_logs(&outbound, &context);
        assert_eq!(
            logs[0]["typedConfig"]["logFormat"]["jsonFormat"],
            json!({"from": "admin", "status": "%RESPONSE_CODE%", "to": "backend"})
        );
        assert_eq!(
            logs[1]["typedConfig"]["logFormat"]["jsonFormat"],
            json!({"address": "127.0.0.1:5000", "message": "admin -> backend %RESPONSE_CODE%\n"})
        );
    }
}
