//! A typed, read-only view of a validated Dataplane with Kuma's defaults
//! applied, so the Envoy generator never reads raw JSON or re-derives a
//! default: where the proxy listens, where the application listens, which
//! services it serves and calls.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::resource::Resource;
use crate::tags::{PROTOCOL_TAG, SERVICE_TAG};

/// Where an outbound listens when the Dataplane does not say (Kuma's default).
pub const DEFAULT_OUTBOUND_ADDRESS: &str = "127.0.0.1";

/// The protocols Kodiak configures Envoy for. Kuma's other protocols
/// (`kafka`, `tls`, `mysql`) and unknown values are proxied as [`Protocol::Tcp`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    #[default]
    Tcp,
    Http,
    Http2,
    Grpc,
}

impl Protocol {
    /// Reads a `kuma.io/protocol` value the way Kuma does (case-insensitive).
    pub fn parse(value: &str) -> Protocol {
        match value.to_ascii_lowercase().as_str() {
            "http" => Protocol::Http,
            "http2" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            _ => Protocol::Tcp,
        }
    }

    /// The name Kuma uses for the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
        }
    }

    /// Whether Envoy handles the traffic as HTTP (an HTTP connection manager).
    pub fn is_http(self) -> bool {
        self != Protocol::Tcp
    }

    /// Whether the upstream speaks HTTP/2 (http2 and gRPC).
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    /// The protocol both sides can speak, by Kuma's protocol stacks
    /// (`GetCommonProtocol`): gRPC runs on HTTP/2, which runs on TCP, as
    /// does HTTP/1; so gRPC with http2 is http2 and any other mix is tcp.
    pub fn common(self, other: Protocol) -> Protocol {
        match (self, other) {
            (a, b) if a == b => a,
            (Protocol::Grpc, Protocol::Http2) | (Protocol::Http2, Protocol::Grpc) => Protocol::Http2,
            _ => Protocol::Tcp,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Dataplane as the generator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneView {
    pub mesh: String,
    pub name: String,
    /// `networking.address`: where the proxy is reached.
    pub address: String,
    /// `networking.advertisedAddress`: where other proxies reach it when
    /// `address` is not routable from them (NAT, containers).
    pub advertised_address: Option<String>,
    pub inbounds: Vec<InboundView>,
    pub outbounds: Vec<OutboundView>,
    /// `networking.admin.port`: Envoy's admin port, when the Dataplane sets it.
    pub admin_port: Option<u16>,
}

/// One inbound: the proxy listens on `address:port` and forwards to the
/// application on `service_address:service_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundView {
    pub port: u16,
    /// The inbound's `address`, defaulting to the Dataplane's address.
    pub address: String,
    /// `servicePort`, defaulting to `port`.
    pub service_port: u16,
    /// `serviceAddress`, defaulting to the inbound's address.
    pub service_address: String,
    /// The `kuma.io/service` tag.
    pub service: String,
    pub tags: BTreeMap<String, String>,
    /// The `kuma.io/protocol` tag (else the inbound's `protocol` field), tcp by default.
    pub protocol: Protocol,
    /// False when `health.ready` is false or `state` is `NotReady` or
    /// `Ignored`: callers must not be sent here.
    pub ready: bool,
}

/// One outbound: the application calls `address:port` to reach `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundView {
    /// The outbound's `address`, defaulting to [`DEFAULT_OUTBOUND_ADDRESS`].
    pub address: String,
    pub port: u16,
    /// The `kuma.io/service` tag, or else the `backendRef` name.
    pub service: String,
}

impl DataplaneView {
    /// The services the proxy calls, as its outbounds name them.
    pub fn outbound_services(&self) -> impl Iterator<Item = &str> {
        self.outbounds.iter().map(|outbound| outbound.service.as_str())
    }

    /// Reads an already validated Dataplane. Outbounds that name their
    /// backend only by labels are left out: they need MeshService
    /// resources to resolve, which this view does not know.
    pub fn from_resource(resource: &Resource) -> DataplaneView {
        let empty = Map::new();
        let networking = object(&resource.body, "networking").unwrap_or(&empty);
        let address = string(networking, "address").unwrap_or_default().to_owned();
        let inbounds = list(networking, "inbound").iter().map(|inbound| read_inbound(inbound, &address)).collect();
        let outbounds = list(networking, "outbound").iter().filter_map(read_outbound).collect();
        DataplaneView {
            mesh: resource.key.mesh.clone().unwrap_or_default(),
            name: resource.key.name.clone(),
            advertised_address: string(networking, "advertisedAddress").map(str::to_owned),
            admin_port: object(networking, "admin").and_then(|admin| port_field(admin, "port")),
            address,
            inbounds,
            outbounds,
        }
    }

    /// Replaces host names in the proxy's addresses (its address, advertised
    /// address and inbound addresses) by what `resolve` answers, leaving IP
    /// addresses and names it cannot resolve as they are. Envoy binds
    /// listeners and takes EDS endpoints by IP address only, so the control
    /// plane resolves a Dataplane given by name (as Kuma does) before
    /// generating its configuration or its callers'.
    pub fn resolve_addresses(&mut self, mut resolve: impl FnMut(&str) -> Option<IpAddr>) {
        let mut resolve_one = |address: &mut String| {
            if address.parse::<IpAddr>().is_err()
                && let Some(ip) = resolve(address)
            {
                *address = ip.to_string();
            }
        };
        resolve_one(&mut self.address);
        if let Some(advertised) = &mut self.advertised_address {
            resolve_one(advertised);
        }
        for inbound in &mut self.inbounds {
            resolve_one(&mut inbound.address);
            resolve_one(&mut inbound.service_address);
        }
    }

    /// Where other proxies send traffic for `inbound`: the advertised
    /// address if the Dataplane has one, else the inbound's address.
    pub fn endpoint_address<'a>(&'a self, inbound: &'a InboundView) -> &'a str {
        self.advertised_address.as_deref().unwrap_or(&inbound.address)
    }
}

fn read_inbound(inbound: &Value, dataplane_address: &str) -> InboundView {
    let inbound = inbound.as_object();
    let port = inbound.and_then(|i| port_field(i, "port")).unwrap_or_default();
    let address = inbound.and_then(|i| string(i, "address")).unwrap_or(dataplane_address).to_owned();
    let tags: BTreeMap<String, String> = inbound
        .and_then(|i| object(i, "tags"))
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
        .collect();
    let protocol = tags
        .get(PROTOCOL_TAG)
        .map(String::as_str)
        .or_else(|| inbound.and_then(|i| string(i, "protocol")))
        .map_or(Protocol::Tcp, Protocol::parse);
    let health_ready = inbound.and_then(|i| object(i, "health")).and_then(|h| h.get("ready")).and_then(Value::as_bool);
    let state = inbound.and_then(|i| string(i, "state"));
    InboundView {
        port,
        service_port: inbound.and_then(|i| port_field(i, "servicePort")).unwrap_or(port),
        service_address: inbound.and_then(|i| string(i, "serviceAddress")).unwrap_or(&address).to_owned(),
        address,
        service: tags.get(SERVICE_TAG).cloned().unwrap_or_default(),
        tags,
        protocol,
        ready: health_ready != Some(false) && !matches!(state, Some("NotReady" | "Ignored")),
    }
}

fn read_outbound(outbound: &Value) -> Option<OutboundView> {
    let outbound = outbound.as_object()?;
    let service = object(outbound, "tags")
        .and_then(|tags| string(tags, SERVICE_TAG))
        .or_else(|| object(outbound, "backendRef").and_then(|backend| string(backend, "name")))?;
    Some(OutboundView {
        address: string(outbound, "address").unwrap_or(DEFAULT_OUTBOUND_ADDRESS).to_owned(),
        port: port_field(outbound, "port")?,
        service: service.to_owned(),
    })
}

fn object<'a>(map: &'a Map<String, Value>, field: &str) -> Option<&'a Map<String, Value>> {
    map.get(field).and_then(Value::as_object)
}

fn string<'a>(map: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    map.get(field).and_then(Value::as_str)
}

fn port_field(map: &Map<String, Value>, field: &str) -> Option<u16> {
    map.get(field).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok())
}

fn list<'a>(map: &'a Map<String, Value>, field: &str) -> &'a [Value] {
    map.get(field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(document: Value) -> DataplaneView {
        DataplaneView::from_resource(&Resource::from_document(&document).unwrap())
    }

    #[test]
    fn applies_kuma_defaults() {
        let dp = view(json!({
            "type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {
                "address": "10.0.0.2",
                "inbound": [{"port": 10001, "tags": {"kuma.io/service": "web"}}],
                "outbound": [{"port": 20001, "tags": {"kuma.io/service": "backend"}}]
            }
        }));
        assert_eq!((dp.mesh.as_str(), dp.name.as_str(), dp.admin_port), ("default", "web-1", None));
        let inbound = &dp.inbounds[0];
        assert_eq!((inbound.address.as_str(), inbound.port), ("10.0.0.2", 10001));
        assert_eq!((inbound.service_address.as_str(), inbound.service_port), ("10.0.0.2", 10001));
        assert_eq!((inbound.service.as_str(), inbound.protocol, inbound.ready), ("web", Protocol::Tcp, true));
        assert_eq!(dp.endpoint_address(inbound), "10.0.0.2");
        assert_eq!(
            dp.outbounds,
            [OutboundView { address: "127.0.0.1".into(), port: 20001, service: "backend".into() }]
        );
    }

    #[test]
    fn reads_explicit_fields() {
        let dp = view(json!({
            "type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {
                "address": "10.0.0.2",
                "advertisedAddress": "192.168.0.9",
                "admin": {"port": 9902},
                "inbound": [
                    {"port": 10001, "address": "10.0.0.3", "servicePort": 8080, "serviceAddress": "127.0.0.1",
                     "tags": {"kuma.io/service": "web", "kuma.io/protocol": "HTTP"}},
                    {"port": 10002, "tags": {"kuma.io/service": "web"}, "protocol": "grpc", "health": {"ready": false}},
                    {"port": 10003, "tags": {"kuma.io/service": "web"}, "state": "Ignored"}
                ],
                "outbound": [
                    {"port": 20001, "address": "127.0.0.5", "backendRef": {"kind": "MeshService", "name": "api", "port": 80}},
                    {"port": 20002, "backendRef": {"kind": "MeshService", "labels": {"app": "x"}, "port": 80}}
                ]
            }
        }));
        assert_eq!(dp.admin_port, Some(9902));
        let [first, second, third] = &dp.inbounds[..] else { panic!("{:?}", dp.inbounds) };
        assert_eq!(
            (first.address.as_str(), first.service_address.as_str(), first.service_port),
            ("10.0.0.3", "127.0.0.1", 8080)
        );
        assert_eq!(first.protocol, Protocol::Http);
        assert_eq!(dp.endpoint_address(first), "192.168.0.9");
        assert_eq!((second.protocol, second.ready), (Protocol::Grpc, false));
        assert!(!third.ready);
        assert_eq!(dp.outbounds, [OutboundView { address: "127.0.0.5".into(), port: 20001, service: "api".into() }]);
    }

    #[test]
    fn resolves_host_names_only() {
        let mut dp = view(json!({
            "type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {
                "address": "web-1.internal",
                "advertisedAddress": "public.example",
                "inbound": [
                    {"port": 10001, "tags": {"kuma.io/service": "web"}},
                    {"port": 10002, "address": "10.0.0.9", "tags": {"kuma.io/service": "web"}}
                ]
            }
        }));
        let mut asked = Vec::new();
        dp.resolve_addresses(|name| {
            asked.push(name.to_owned());
            (name == "web-1.internal").then(|| "10.0.0.2".parse().unwrap())
        });
        assert_eq!(dp.address, "10.0.0.2");
        assert_eq!(dp.advertised_address.as_deref(), Some("public.example"), "unresolvable names stay");
        assert_eq!(
            (dp.inbounds[0].address.as_str(), dp.inbounds[0].service_address.as_str()),
            ("10.0.0.2", "10.0.0.2")
        );
        assert_eq!(dp.inbounds[1].address, "10.0.0.9");
        assert!(!asked.iter().any(|name| name == "10.0.0.9"), "IP addresses are not looked up: {asked:?}");
    }

    #[test]
    fn common_protocol_follows_protocol_stacks() {
        use Protocol::*;
        assert_eq!(Http.common(Http), Http);
        assert_eq!(Grpc.common(Http2), Http2);
        assert_eq!(Http2.common(Grpc), Http2);
        assert_eq!(Http.common(Http2), Tcp);
        assert_eq!(Http.common(Grpc), Tcp);
        assert_eq!(Tcp.common(Http), Tcp);
        assert_eq!(Protocol::parse("kafka"), Tcp);
        assert_eq!(Protocol::parse("GRPC"), Grpc);
    }
}
