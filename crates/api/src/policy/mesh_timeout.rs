//! MeshTimeout: connection, idle and HTTP timeouts for outbound (`to`) and
//! inbound (`from`, `rules`) traffic.

use serde_json::Value;

use super::{
    DESTINATION_OR_ROUTE_KINDS, GATEWAY_DESTINATION_KINDS, IDENTITY_MATCH, MESH_GATEWAY, MESH_HTTP_ROUTE, MESH_ONLY,
    POSITIVE_DURATION, TOP_KINDS_WITH_ROUTE, entries, forbid_section, limit_kinds, matches_spiffe_id,
    require_a_section, rules_replace, top_kind,
};
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

const HTTP_TIMEOUTS: &[&str] =
    &["requestTimeout", "streamIdleTimeout", "maxStreamDuration", "maxConnectionDuration", "requestHeadersTimeout"];

const HTTP: Schema = Schema::AtLeastOneOf(
    HTTP_TIMEOUTS,
    &Schema::Object(&[
        optional("requestTimeout", Schema::Duration),
        optional("streamIdleTimeout", Schema::Duration),
        optional("maxStreamDuration", Schema::Duration),
        optional("maxConnectionDuration", Schema::Duration),
        optional("requestHeadersTimeout", Schema::Duration),
    ]),
);

const CONF: Schema = Schema::AtLeastOneOf(
    &["connectionTimeout", "idleTimeout", "http"],
    &Schema::Object(&[
        optional("connectionTimeout", POSITIVE_DURATION),
        optional("idleTimeout", Schema::Duration),
        optional("http", HTTP),
    ]),
);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[
        optional("targetRef", Schema::TargetRef(TOP_KINDS_WITH_ROUTE)),
        optional("to", Schema::List(&section!(DESTINATION_OR_ROUTE_KINDS, CONF))),
        optional("from", Schema::List(&section!(MESH_ONLY, CONF))),
        optional("rules", Schema::List(&Schema::Check(&rule_section!(IDENTITY_MATCH, CONF), caller_rule))),
    ]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

/// Timeouts of the connection itself, which a route-level policy cannot set.
const CONNECTION_LEVEL: &[&str] =
    &["connectionTimeout", "idleTimeout", "http.maxStreamDuration", "http.maxConnectionDuration"];

fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    require_a_section(spec, path, out, &["to", "from", "rules"]);
    rules_replace(spec, path, out, &["to", "from"]);
    let top = top_kind(spec);
    if top == MESH_HTTP_ROUTE || top == MESH_GATEWAY {
        let why = format!("when the top-level targetRef is a {top}");
        forbid_section(spec, path, out, "from", &why);
        limit_kinds(spec, path, out, "to", GATEWAY_DESTINATION_KINDS, &why);
    }
    if top == MESH_HTTP_ROUTE {
        for (i, entry) in entries(spec, "to").iter().enumerate() {
            let default = path.field("to").index(i).field("default");
            refuse_set(
                &entry["default"],
                &default,
                out,
                CONNECTION_LEVEL,
                "when the top-level targetRef is a MeshHTTPRoute",
            );
        }
    }
}

/// A rule that matches callers by SPIFFE ID cannot set timeouts Envoy applies
/// before it knows the caller.
fn caller_rule(rule: &Value, path: &FieldPath, out: &mut Violations) {
    if matches_spiffe_id(rule) {
        let fields = &[
            "connectionTimeout",
            "idleTimeout",
            "http.requestHeadersTimeout",
            "http.maxStreamDuration",
            "http.maxConnectionDuration",
        ];
        refuse_set(&rule["default"], &path.field("default"), out, fields, "when matches contain a spiffeID");
    }
}

/// Reports each of the dotted `fields` that is set in `conf`.
fn refuse_set(conf: &Value, path: &FieldPath, out: &mut Violations, fields: &[&str], why: &str) {
    for field in fields {
        let (value, field_path) = match field.split_once('.') {
            Some((outer, inner)) => (conf.get(outer).and_then(|o| o.get(inner)), path.field(outer).field(inner)),
            None => (conf.get(*field), path.field(field)),
        };
        if value.is_some_and(|v| !v.is_null()) {
            out.add(&field_path, format!("must not be set {why}"));
        }
    }
}
