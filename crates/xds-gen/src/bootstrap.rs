//! Envoy's bootstrap for a Kodiak sidecar: who the proxy is, where its admin
//! API listens, and how it reaches the control plane for everything else.

use std::net::IpAddr;

use kodiak_api::bootstrap::{ADS_KEEPALIVE_INTERVAL_SECONDS, BootstrapRequest, Versions, XdsTransport, node_metadata};
use kodiak_api::dataplane_view::DataplaneView;
use serde_json::{Map, Value, json};

/// The name of the static cluster that leads to the control plane's ADS.
pub const XDS_CLUSTER: &str = "kodiak_xds";

/// What the bootstrap is made from. Its Debug form hides the token.
#[derive(Clone, PartialEq)]
pub struct BootstrapParams {
    pub mesh: String,
    pub name: String,
    /// Envoy's node cluster: the first inbound's service, else the Dataplane's name.
    pub service: String,
    /// The inline Dataplane (JSON text) that kodiak-dp registered, if any.
    pub dataplane_resource: Option<String>,
    pub versions: Versions,
    /// Envoy's admin port on 127.0.0.1; 0 lets the kernel choose.
    pub admin_port: u16,
    pub xds_transport: XdsTransport,
    /// The control plane's dp-server as the sidecar reaches it: an IP
    /// address or a host name.
    pub xds_host: String,
    pub xds_port: u16,
    /// The control plane's name for this sidecar (node metadata), so it can
    /// tell two sidecars claiming one Dataplane apart.
    pub sidecar_instance: Option<String>,
    /// TLS to the control plane, when its dp-server speaks TLS.
    pub xds_tls: Option<XdsTls>,
    /// The dataplane token, sent as `authorization` metadata (the raw
    /// token, no `Bearer`) when each ADS stream opens.
    pub dataplane_token: Option<String>,
    /// The named pipe the sidecar forwards TCP access-log entries from.
    pub access_log_pipe: Option<String>,
}

impl std::fmt::Debug for BootstrapParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapParams")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("service", &self.service)
            .field("dataplane_resource", &self.dataplane_resource)
            .field("versions", &self.versions)
            .field("admin_port", &self.admin_port)
            .field("xds_transport", &self.xds_transport)
            .field("xds_host", &self.xds_host)
            .field("xds_port", &self.xds_port)
            .field("sidecar_instance", &self.sidecar_instance)
            .field("xds_tls", &self.xds_tls)
            .field("dataplane_token", &kodiak_api::bootstrap::Redacted(&self.dataplane_token))
            .finish()
    }
}

/// How Envoy checks the control plane it streams from.
#[derive(Clone, PartialEq)]
pub struct XdsTls {
    /// The CA certificates (PEM) Envoy trusts for the control plane.
    pub trusted_ca: String,
}

impl std::fmt::Debug for XdsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsTls").field("trusted_ca", &format_args!("{} bytes of PEM", self.trusted_ca.len())).finish()
    }
}

impl BootstrapParams {
    /// The parameters for a `POST /bootstrap` of `dataplane`, answered by
    /// a control plane reached at `xds_host:xds_port`.
    pub fn new(request: &BootstrapRequest, dataplane: &DataplaneView, xds_host: &str, xds_port: u16) -> Self {
        BootstrapParams {
            mesh: request.mesh.clone(),
            name: request.name.clone(),
            service: dataplane
                .inbounds
                .iter()
                .map(|inbound| &inbound.service)
                .find(|service| !service.is_empty())
                .unwrap_or(&request.name)
                .clone(),
            dataplane_resource: request.dataplane_resource.clone(),
            versions: request.version.clone(),
            // As in Kuma, the Dataplane's `networking.admin.port` wins over
            // what the sidecar asked for; kodiak-dp reads the port back from
            // the bootstrap it gets.
            admin_port: dataplane.admin_port.unwrap_or(request.admin_port),
            xds_transport: request.xds_transport,
            xds_host: xds_host.to_owned(),
            xds_port,
            sidecar_instance: None,
            xds_tls: None,
            dataplane_token: request.dataplane_token.clone(),
            access_log_pipe: request.access_log_pipe.clone(),
        }
    }
}

/// Envoy's bootstrap (JSON) for kodiak-dp.
pub fn bootstrap(params: &BootstrapParams) -> Value {
    let mut metadata = Map::new();
    if let Some(dataplane) = &params.dataplane_resource {
        metadata.insert(node_metadata::DATAPLANE.into(), dataplane.clone().into());
    }
    metadata.insert(node_metadata::KODIAK_DP_VERSION.into(), params.versions.kodiak_dp.clone().into());
    metadata.insert(node_metadata::ENVOY_VERSION.into(), params.versions.envoy.clone().into());
    if let Some(instance) = &params.sidecar_instance {
        metadata.insert(node_metadata::SIDECAR_INSTANCE.into(), instance.clone().into());
    }
    if let Some(pipe) = &params.access_log_pipe {
        metadata.insert(node_metadata::ACCESS_LOG_PIPE.into(), pipe.clone().into());
    }

    let api_type = match params.xds_transport {
        XdsTransport::Delta => "DELTA_GRPC",
        XdsTransport::Sotw => "GRPC",
    };
    let ads = json!({"ads": {}, "resource_api_version": "V3"});
    let mut grpc_service = json!({
        "envoy_grpc": {
            "cluster_name": XDS_CLUSTER,
            // Envoy re-opens a broken ADS stream by itself with a jittered
            // backoff (default 0.5 s up to 30 s); a lower ceiling brings
            // proxies back soon after a control plane restart.
            "retry_policy": {"retry_back_off": {"base_interval": "0.25s", "max_interval": "5s"}},
        },
    });
    if let Some(token) = &params.dataplane_token {
        // Sent when each stream opens; the control plane checks it there.
        grpc_service["initial_metadata"] = json!([{"key": "authorization", "value": token}]);
    }
    json!({
        "node": {
            "id": format!("{}.{}", params.mesh, params.name),
            "cluster": params.service,
            "metadata": metadata,
        },
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": params.admin_port}},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "grpc_services": [grpc_service],
                // The node (with the inline Dataplane) goes only on the first
                // request of each stream (xDS protocol, "Node"); a new stream
                // after a reconnect carries it again.
                "set_node_on_first_message_only": true,
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {"clusters": [xds_cluster(&params.xds_host, params.xds_port, params.xds_tls.as_ref())]},
        // A ceiling on downstream connections protects the sidecar from
        // running out of file descriptors (Envoy warns at start without one).
        "overload_manager": {
            "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                },
            }],
        },
    })
}

/// Enough for a busy workload, well under the usual file-descriptor limits.
const MAX_DOWNSTREAM_CONNECTIONS: u64 = 50_000;

/// The cluster to the control plane: HTTP/2 (gRPC) over TLS (or plain
/// TCP), with TCP and HTTP/2 keepalives so a control plane that vanished
/// without closing the connection (host down, network cut) is noticed and
/// the stream re-opened, rather than waited on forever.
fn xds_cluster(host: &str, port: u16, tls: Option<&XdsTls>) -> Value {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let discovery = if host.parse::<IpAddr>().is_ok() { "STATIC" } else { "STRICT_DNS" };
    let mut cluster = json!({
        "name": XDS_CLUSTER,
        "type": discovery,
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {"connection_keepalive": {
                        "interval": format!("{ADS_KEEPALIVE_INTERVAL_SECONDS}s"),
                        "timeout": "5s",
                    }},
                },
            },
        },
        "upstream_connection_options": {
            "tcp_keepalive": {"keepalive_probes": 3, "keepalive_time": 10, "keepalive_interval": 10},
        },
    });
    if let Some(tls) = tls {
        cluster["transport_socket"] = xds_transport_socket(host, tls);
    }
    if discovery == "STRICT_DNS" {
        // A name such as localhost may resolve to ::1 first while the
        // control plane listens on IPv4 only; prefer IPv4, fall back to IPv6.
        cluster["dns_lookup_family"] = "V4_PREFERRED".into();
    }
    cluster
}

/// TLS to the control plane: only the given CA is trusted, and the
/// certificate must name the host Envoy dials (as a DNS name or an IP
/// address). SNI carries host names only: TLS has no room for addresses
/// there (RFC 6066, section 3).
fn xds_transport_socket(host: &str, tls: &XdsTls) -> Value {
    let is_address = host.parse::<IpAddr>().is_ok();
    let san_type = if is_address { "IP_ADDRESS" } else { "DNS" };
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "alpn_protocols": ["h2"],
            "validation_context": {
                "trusted_ca": {"inline_string": tls.trusted_ca},
                "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": host}}],
            },
        },
    });
    if !is_address {
        context["sni"] = host.into();
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::dataplane;
    use prost_reflect::{DeserializeOptions, DynamicMessage};

    fn request(name: &str) -> BootstrapRequest {
        BootstrapRequest {
            mesh: "default".into(),
            name: name.into(),
            dataplane_resource: None,
            admin_port: 0,
            xds_transport: XdsTransport::Sotw,
            version: Versions { kodiak_dp: "0.1.0".into(), envoy: "1.40.0".into() },
            dataplane_token: None,
            ca_cert: None,
            access_log_pipe: Some("/run/kodiak/kodiak-access-logs.pipe".into()),
        }
    }

    fn params(host: &str) -> BootstrapParams {
        let request =
            BootstrapRequest { dataplane_resource: Some("{\"type\":\"Dataplane\"}".into()), ..request("web-1") };
        let view = dataplane(
            "{type: Dataplane, mesh: default, name: web-1, networking: {address: 127.0.0.2,
                inbound: [{port: 10001, tags: {kuma.io/service: web}}]}}",
        );
        BootstrapParams::new(&request, &view, host, 5678)
    }

    #[test]
    fn debug_output_hides_the_token() {
        let with_token = BootstrapParams { dataplane_token: Some("header.claims.signature".into()), ..params("cp") };
        let debug = format!("{with_token:?}");
        assert!(!debug.contains("claims") && debug.contains("dataplane_token: Some(<redacted>)"), "{debug}");
        assert!(debug.contains("xds_host: \"cp\""), "{debug}");
    }

    /// Reads the bootstrap back as Envoy's `Bootstrap` message: every field
    /// name and enum value must exist in Envoy's protos.
    fn parse(bootstrap: &Value) -> DynamicMessage {
        let descriptor = crate::descriptor_pool().get_message_by_name("envoy.config.bootstrap.v3.Bootstrap").unwrap();
        DynamicMessage::deserialize_with_options(descriptor, bootstrap.clone(), &DeserializeOptions::new())
            .unwrap_or_else(|e| panic!("not a valid Envoy bootstrap: {e}\n{bootstrap:#}"))
    }

    #[test]
    fn names_the_node_and_carries_the_metadata() {
        let value = bootstrap(&params("127.0.0.1"));
        parse(&value);
        assert_eq!(value["node"]["id"], "default.web-1");
        assert_eq!(value["node"]["cluster"], "web");
        let metadata = &value["node"]["metadata"];
        assert_eq!(metadata[node_metadata::DATAPLANE], "{\"type\":\"Dataplane\"}");
        assert_eq!(metadata[node_metadata::KODIAK_DP_VERSION], "0.1.0");
        assert_eq!(metadata[node_metadata::ENVOY_VERSION], "1.40.0");
        assert_eq!(metadata[node_metadata::ACCESS_LOG_PIPE], "/run/kodiak/kodiak-access-logs.pipe");
        assert_eq!(value["admin"]["address"]["socket_address"]["port_value"], 0);
        assert_eq!(value["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        assert_eq!(value["static_resources"]["clusters"][0]["type"], "STATIC");
    }

    #[test]
    fn a_host_name_is_resolved_by_envoy_and_delta_is_the_default() {
        let mut params = params("control-plane.internal");
        params.xds_transport = XdsTransport::default();
        params.dataplane_resource = None;
        let value = bootstrap(&params);
        parse(&value);
        assert_eq!(value["dynamic_resources"]["ads_config"]["api_type"], "DELTA_GRPC");
        let cluster = &value["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STRICT_DNS");
        assert_eq!(cluster["dns_lookup_family"], "V4_PREFERRED");
        assert!(value["node"]["metadata"].get(node_metadata::DATAPLANE).is_none());
    }

    #[test]
    fn an_ipv6_control_plane_is_static() {
        let value = bootstrap(&params("[::1]"));
        parse(&value);
        let cluster = &value["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STATIC");
        let address = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(address["socket_address"]["address"], "::1");
    }

    #[test]
    fn the_dataplane_admin_port_wins() {
        let view = dataplane(
            "{type: Dataplane, mesh: default, name: web-1, networking: {address: 127.0.0.2, admin: {port: 9902}}}",
        );
        let request = BootstrapRequest { admin_port: 9901, ..request("web-1") };
        let value = bootstrap(&BootstrapParams::new(&request, &view, "127.0.0.1", 5678));
        assert_eq!(value["admin"]["address"]["socket_address"]["port_value"], 9902);
    }

    #[test]
    fn the_node_cluster_falls_back_to_the_dataplane_name() {
        let view = dataplane(
            "{type: Dataplane, mesh: default, name: client-1, networking: {address: 127.0.0.2,
                outbound: [{port: 20001, tags: {kuma.io/service: backend}}]}}",
        );
        assert_eq!(BootstrapParams::new(&request("client-1"), &view, "127.0.0.1", 5678).service, "client-1");
    }
}
