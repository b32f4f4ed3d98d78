//! MeshRateLimit: local (per-proxy) limits on HTTP requests and TCP
//! connections.

use std::time::Duration;

use serde_json::Value;

use super::{
    HEADER_SET_ADD, IDENTITY_MATCH, MESH_HTTP_ROUTE, MESH_ONLY, POSITIVE_UINT32, TOP_KINDS_WITH_ROUTE, forbid_section,
    includes_gateways, matches_spiffe_id, rules_replace, top_kind,
};
use crate::duration::parse_duration;
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

/// `num` requests or connections per `interval` (longer than 50ms).
const RATE: Schema = Schema::Object(&[
    required("num", POSITIVE_UINT32),
    required("interval", Schema::Check(&Schema::Duration, longer_than_50ms)),
]);

const LOCAL_HTTP: Schema = Schema::AtLeastOneOf(
    &["disabled", "requestRate", "onRateLimit"],
    &Schema::Object(&[
        optional("disabled", Schema::Bool),
        optional("requestRate", RATE),
        optional(
            "onRateLimit",
            Schema::Object(&[optional("status", POSITIVE_UINT32), optional("headers", HEADER_SET_ADD)]),
        ),
    ]),
);

const LOCAL_TCP: Schema = Schema::AtLeastOneOf(
    &["disabled", "connectionRate"],
    &Schema::Object(&[optional("disabled", Schema::Bool), optional("connectionRate", RATE)]),
);

const CONF: Schema = Schema::Object(&[required(
    "local",
    Schema::AtLeastOneOf(
        &["http", "tcp"],
        &Schema::Object(&[optional("http", LOCAL_HTTP), optional("tcp", LOCAL_TCP)]),
    ),
)]);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[
        optional("targetRef", Schema::TargetRef(TOP_KINDS_WITH_ROUTE)),
        optional("from", Schema::List(&section!(MESH_ONLY, CONF))),
        optional("to", Schema::List(&section!(MESH_ONLY, CONF))),
        optional("rules", Schema::List(&Schema::Check(&rule_section!(IDENTITY_MATCH, CONF), caller_rule))),
    ]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

/// Sidecars limit inbound traffic (`from`, `rules`); gateways and routes
/// limit what they forward (`to`).
fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    rules_replace(spec, path, out, &["to", "from"]);
    if includes_gateways(spec) {
        let why = "when the targetRef may select gateways: select only proxyTypes [Sidecar], or select only gateways and use to";
        let why =
            if top_kind(spec) == MESH_HTTP_ROUTE { "when the top-level targetRef is a MeshHTTPRoute" } else { why };
        forbid_section(spec, path, out, "from", why);
        forbid_section(spec, path, out, "rules", why);
    } else {
        forbid_section(spec, path, out, "to", "unless the targetRef selects gateways");
    }
}

/// A TCP connection limit applies before the caller's identity is known.
fn caller_rule(rule: &Value, path: &FieldPath, out: &mut Violations) {
    if matches_spiffe_id(rule) && rule.pointer("/default/local/tcp").is_some_and(|v| !v.is_null()) {
        out.add(&path.field("default").field("local").field("tcp"), "must not be set when matches contain a spiffeID");
    }
}

fn longer_than_50ms(value: &Value, path: &FieldPath, out: &mut Violations) {
    let parsed = value.as_str().and_then(|text| parse_duration(text).ok());
    if parsed.is_some_and(|d| d <= Duration::from_millis(50)) {
        out.add(path, "must be longer than 50ms");
    }
}
