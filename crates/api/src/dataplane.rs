//! Dataplane: one proxy beside one workload (or one gateway), with the
//! inbound ports it serves, the outbounds its application calls and how
//! traffic reaches it. Fields and rules follow Kuma 2.x's `Dataplane`.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use serde_json::Value;

use crate::address::{HOST, IP, URL_PATH};
use crate::dataplane_view::DEFAULT_OUTBOUND_ADDRESS;
use crate::mesh::METRICS_BACKEND;
use crate::rules::{POSITIVE_COUNT, POSITIVE_DURATION};
use crate::schema::{Schema, optional, required};
use crate::tags::{PROTOCOL, SERVICE_TAGS, check_tcp_only};
use crate::violations::{FieldPath, Violations};

pub const SCHEMA: Schema = Schema::Check(
    &Schema::Object(&[
        required("networking", NETWORKING),
        optional("metrics", METRICS_BACKEND),
        optional("probes", PROBES),
    ]),
    |value, path, out| {
        if is_builtin_gateway(&value["networking"]) && value.get("probes").is_some_and(|p| !p.is_null()) {
            out.add(&path.field("probes"), "must not be set for a builtin gateway");
        }
    },
);

const NETWORKING: Schema = Schema::Check(
    &Schema::Object(&[
        required("address", HOST),
        optional("advertisedAddress", HOST),
        optional("inbound", Schema::List(&INBOUND)),
        optional("outbound", Schema::List(&OUTBOUND)),
        optional("gateway", GATEWAY),
        optional("transparentProxying", TRANSPARENT_PROXYING),
        optional("admin", Schema::Object(&[optional("port", Schema::Port)])),
        optional("listeners", Schema::List(&LISTENER)),
    ]),
    check_networking,
);

const INBOUND: Schema = Schema::Object(&[
    required("port", Schema::Port),
    optional("servicePort", Schema::Port),
    optional("serviceAddress", IP),
    optional("address", IP),
    required("tags", SERVICE_TAGS),
    optional("health", Schema::Object(&[optional("ready", Schema::Bool)])),
    optional(
        "serviceProbe",
        Schema::Object(&[
            optional("interval", POSITIVE_DURATION),
            optional("timeout", POSITIVE_DURATION),
            optional("unhealthyThreshold", POSITIVE_COUNT),
            optional("healthyThreshold", POSITIVE_COUNT),
            optional("tcp", Schema::Object(&[])),
        ]),
    ),
    optional("state", Schema::Enum(&["Ready", "NotReady", "Ignored"])),
    optional("name", Schema::NonEmptyString),
    optional("protocol", PROTOCOL),
]);

/// The kinds an outbound or a reachable backend may point at.
const BACKEND_KINDS: &[&str] = &["MeshService", "MeshExternalService", "MeshMultiZoneService"];

const OUTBOUND: Schema = Schema::Check(
    &Schema::Object(&[
        required("port", Schema::Port),
        optional("address", IP),
        optional("tags", SERVICE_TAGS),
        optional(
            "backendRef",
            Schema::Object(&[
                required("kind", Schema::Enum(BACKEND_KINDS)),
                optional("name", Schema::NonEmptyString),
                optional("port", Schema::Port),
                optional("labels", Schema::Map(&Schema::String)),
            ]),
        ),
    ]),
    check_outbound,
);

/// An outbound names its destination either by tags (the service) or by a
/// `backendRef`; a MeshService backend also needs the port to call.
fn check_outbound(value: &Value, path: &FieldPath, out: &mut Violations) {
    let tags = value.get("tags").filter(|v| !v.is_null());
    let Some(backend) = value.get("backendRef").filter(|v| !v.is_null()) else {
        if tags.is_none() {
            out.add(&path.field("tags"), "must be defined (with kuma.io/service) unless backendRef is set");
        }
        return;
    };
    let backend_path = path.field("backendRef");
    if tags.is_some() {
        out.add(&backend_path, "must not be set together with tags");
    }
    if backend.get("name").is_none() && backend.get("labels").is_none() {
        out.add(&backend_path, "must set name or labels");
    }
    let external = backend["kind"] == "MeshExternalService";
    if !external && backend.get("port").is_none() {
        out.add(&backend_path.field("port"), "must be defined: the port of the service to call");
    }
}

/// A zone ingress or zone egress listener the proxy opens beside (or
/// instead of) its inbounds.
const LISTENER: Schema = Schema::Object(&[
    required("type", Schema::Enum(&["ZoneIngress", "ZoneEgress"])),
    required("address", HOST),
    required("port", Schema::Port),
    optional("name", Schema::NonEmptyString),
    optional("state", Schema::Enum(&["Ready", "NotReady"])),
]);

const GATEWAY: Schema = Schema::Object(&[
    required("tags", Schema::Check(&SERVICE_TAGS, check_tcp_only)),
    optional("type", Schema::Enum(&["DELEGATED", "BUILTIN"])),
]);

const TRANSPARENT_PROXYING: Schema = Schema::Object(&[
    optional("redirectPortInbound", Schema::Port),
    optional("redirectPortOutbound", Schema::Port),
    optional("directAccessServices", Schema::List(&Schema::NonEmptyString)),
    optional("reachableServices", Schema::List(&Schema::NonEmptyString)),
    optional("ipFamilyMode", Schema::Enum(&["UnSpecified", "DualStack", "IPv4", "IPv6"])),
    optional("reachableBackends", Schema::Object(&[optional("refs", Schema::List(&REACHABLE_BACKEND))])),
]);

const REACHABLE_BACKEND: Schema = Schema::Check(
    &Schema::Object(&[
        required("kind", Schema::Enum(BACKEND_KINDS)),
        optional("name", Schema::NonEmptyString),
        optional("namespace", Schema::NonEmptyString),
        optional("port", Schema::Port),
        optional("labels", Schema::Map(&Schema::String)),
    ]),
    |value, path, out| {
        let has = |field: &str| value.get(field).is_some_and(|v| !v.is_null());
        if !has("name") && (has("namespace") || !has("labels")) {
            out.add(&path.field("name"), "must be set (or select the backends by labels)");
        }
        if (has("name") || has("namespace")) && has("labels") {
            out.add(&path.field("labels"), "must not be set together with name or namespace");
        }
    },
);

const PROBES: Schema = Schema::Object(&[
    required("port", Schema::Port),
    optional(
        "endpoints",
        Schema::List(&Schema::Object(&[
            required("inboundPort", Schema::Port),
            required("inboundPath", URL_PATH),
            required("path", URL_PATH),
        ])),
    ),
]);

/// Envoy's admin API listens on this address, so inbounds and outbounds
/// must keep off its port there.
const ADMIN_ADDRESS: &str = "127.0.0.1";

/// Rules across the networking section: a gateway has neither inbounds nor
/// listeners (and a builtin one no outbounds); the application's address
/// differs from the proxy's; zone listeners keep off each other and off the
/// inbounds; inbounds and outbounds keep off each other's address and port
/// (see [`check_port_collisions`]); the admin port is free. A proxy may have
/// no inbound at all (a client that only calls out), and several inbounds
/// may share one port when they forward to the same place.
fn check_networking(value: &Value, path: &FieldPath, out: &mut Violations) {
    let inbounds = list(value, "inbound");
    let outbounds = list(value, "outbound");
    if value.get("gateway").is_some_and(|g| !g.is_null()) {
        for (field, reason) in [
            ("inbound", "must not be set for a gateway: a gateway takes its identity from networking.gateway"),
            ("listeners", "must not be set for a gateway"),
        ] {
            if !list(value, field).is_empty() {
                out.add(&path.field(field), reason);
            }
        }
        if is_builtin_gateway(value) && !outbounds.is_empty() {
            out.add(
                &path.field("outbound"),
                "must not be set for a builtin gateway: its routes choose the destinations",
            );
        }
    }

    let dataplane_address = value["address"].as_str().unwrap_or_default();
    let inbounds: Vec<Interface> =
        inbounds.iter().map(|inbound| Interface::inbound(inbound, dataplane_address)).collect();
    check_listeners(value, &inbounds, &path.field("listeners"), out);
    check_port_collisions(&inbounds, outbounds, path, out);
    for (i, inbound) in inbounds.iter().enumerate() {
        if inbound.explicit_service_address
            && inbound.service_address == inbound.address
            && inbound.service_port == inbound.port
        {
            out.add(
                &path.field("inbound").index(i).field("serviceAddress"),
                "serviceAddress and servicePort must differ from the inbound's address and port (the proxy listens there)",
            );
        }
    }

    if let Some(admin) = value.pointer("/admin/port").and_then(Value::as_u64) {
        let admin_path = path.field("admin").field("port");
        let on_admin = |address: &str, port: u64| port == admin && (address == ADMIN_ADDRESS || is_wildcard(address));
        if inbounds.iter().any(|i| on_admin(i.address, i.port) || on_admin(i.service_address, i.service_port)) {
            out.add(&admin_path, format!("must differ from the inbound ports on {ADMIN_ADDRESS}"));
        }
        let outbound_taken = outbounds.iter().any(|o| {
            on_admin(
                o.get("address").and_then(Value::as_str).unwrap_or(DEFAULT_OUTBOUND_ADDRESS),
                o["port"].as_u64().unwrap_or(0),
            )
        });
        if outbound_taken {
            out.add(&admin_path, format!("must differ from the outbound ports on {ADMIN_ADDRESS}"));
        }
    }
}

/// Where an inbound listens and where it forwards to, with Kuma's
/// defaults: the inbound address is the dataplane's, the service address
/// the inbound's, the service port the inbound's.
struct Interface<'a> {
    address: &'a str,
    port: u64,
    service_address: &'a str,
    service_port: u64,
    explicit_service_address: bool,
    /// How policies and listeners refer to the inbound: its name, or else
    /// its port.
    section_name: String,
}

impl<'a> Interface<'a> {
    /// Where the proxy listens for the inbound.
    fn listen(&self) -> Socket<'a> {
        Socket::new(self.address, self.port)
    }

    /// Where the proxy sends the inbound's traffic: the application.
    fn forward(&self) -> Socket<'a> {
        Socket::new(self.service_address, self.service_port)
    }

    fn inbound(inbound: &'a Value, dataplane_address: &'a str) -> Self {
        let address = inbound.get("address").and_then(Value::as_str).unwrap_or(dataplane_address);
        let port = inbound["port"].as_u64().unwrap_or(0);
        let explicit = inbound.get("serviceAddress").and_then(Value::as_str);
        Interface {
            address,
            port,
            service_address: explicit.unwrap_or(address),
            service_port: inbound.get("servicePort").and_then(Value::as_u64).unwrap_or(port),
            explicit_service_address: explicit.is_some(),
            section_name: inbound.get("name").and_then(Value::as_str).map_or_else(|| port.to_string(), str::to_owned),
        }
    }
}

/// Each inbound and outbound is one Envoy listener on its address and
/// port, so none may take another's: Envoy refuses a second listener on
/// an address and port ("duplicate address"), and where two inbounds or
/// outbounds share one, only the first is configured. Several inbounds may
/// share an address and port when they forward to the same serviceAddress
/// and servicePort (one listener serves several services, as in Kuma);
/// the first inbound there decides where that is. An outbound may share
/// its address and port with nothing. Addresses are equal only when they
/// are the same address: 0.0.0.0 or another IP does not collide with
/// 10.0.0.5.
fn check_port_collisions(inbounds: &[Interface], outbounds: &[Value], path: &FieldPath, out: &mut Violations) {
    let inbound_path = path.field("inbound");
    for (i, inbound) in inbounds.iter().enumerate() {
        let listen = inbound.listen();
        let Some(first) = inbounds[..i].iter().position(|other| other.listen() == listen) else {
            continue;
        };
        let (forward, first_forward) = (inbound.forward(), inbounds[first].forward());
        if forward != first_forward {
            out.add(
                &inbound_path.index(i).field("port"),
                format!(
                    "collides with {} on {listen}: that inbound forwards to {first_forward}, this one to {forward} \
                     (inbounds may share an address and port only to forward to the same serviceAddress and servicePort)",
                    inbound_path.index(first)
                ),
            );
        }
    }

    let outbound_path = path.field("outbound");
    let outbounds: Vec<Socket> = outbounds
        .iter()
        .map(|outbound| {
            let address = outbound.get("address").and_then(Value::as_str).unwrap_or(DEFAULT_OUTBOUND_ADDRESS);
            Socket::new(address, outbound["port"].as_u64().unwrap_or(0))
        })
        .collect();
    for (j, &listen) in outbounds.iter().enumerate() {
        let at = outbound_path.index(j).field("port");
        if let Some(i) = inbounds.iter().position(|inbound| inbound.listen() == listen) {
            out.add(&at, format!("collides with {} on {listen}", inbound_path.index(i)));
        }
        if let Some(k) = outbounds[..j].iter().position(|&other| other == listen) {
            out.add(&at, format!("collides with {} on {listen}", outbound_path.index(k)));
        }
    }
}

/// An address and port. IP addresses compare as addresses (`fd00::1` is
/// `fd00:0::1`), host names as text.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Socket<'a> {
    host: Host<'a>,
    port: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

impl<'a> Socket<'a> {
    fn new(address: &'a str, port: u64) -> Self {
        let host = address.parse().map_or(Host::Name(address), Host::Ip);
        Socket { host, port }
    }
}

impl fmt::Display for Socket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Zone listeners: each name is unique among the inbounds' section names and
/// the other listeners; no two listeners, and no listener and inbound, share
/// an address and port.
fn check_listeners(networking: &Value, inbounds: &[Interface], path: &FieldPath, out: &mut Violations) {
    let mut names: HashSet<&str> = inbounds.iter().map(|inbound| inbound.section_name.as_str()).collect();
    let mut taken: Vec<(&str, u64, &str)> = Vec::new();
    for (i, listener) in list(networking, "listeners").iter().enumerate() {
        let at = path.index(i);
        if let Some(name) = listener.get("name").and_then(Value::as_str)
            && !names.insert(name)
        {
            out.add(&at.field("name"), format!("{name:?} is already the name of an inbound or another listener"));
        }
        let (Some(address), Some(port)) =
            (listener.get("address").and_then(Value::as_str), listener.get("port").and_then(Value::as_u64))
        else {
            continue;
        };
        let kind = listener.get("type").and_then(Value::as_str).unwrap_or_default();
        if let Some(&(_, _, other)) = taken.iter().find(|&&(a, p, _)| a == address && p == port) {
            let reason = if other == kind { "another listener" } else { "a listener of another type" };
            out.add(&at, format!("{address}:{port} is already used by {reason}"));
        } else {
            taken.push((address, port, kind));
        }
        if inbounds.iter().any(|inbound| inbound.address == address && inbound.port == port) {
            out.add(&at, format!("{address}:{port} is already used by an inbound"));
        }
    }
}

fn is_wildcard(address: &str) -> bool {
    address.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

fn is_builtin_gateway(networking: &Value) -> bool {
    networking.pointer("/gateway/type").and_then(Value::as_str) == Some("BUILTIN")
}

fn list<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value.get(field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}
