//! MeshFaultInjection: injects HTTP aborts, delays and bandwidth limits to
//! test how services cope with failures.

use serde_json::Value;

use super::{CALLER_KINDS, MATCH, MESH_ONLY, TOP_KINDS, forbid_section, includes_gateways, rules_replace};
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

/// Envoy answers an abort only with a final status: 1xx codes are refused
/// here rather than by every sidecar.
const ABORT_STATUS: Schema = Schema::Int { min: 200, max: 599 };

/// A percentage of requests that get the fault.
const SHARE: Schema = Schema::Percentage;

const FAULT: Schema = Schema::Object(&[
    optional("abort", Schema::Object(&[required("httpStatus", ABORT_STATUS), required("percentage", SHARE)])),
    optional("delay", Schema::Object(&[required("value", Schema::Duration), required("percentage", SHARE)])),
    optional(
        "responseBandwidth",
        Schema::Object(&[required("limit", Schema::Check(&Schema::String, bandwidth)), required("percentage", SHARE)]),
    ),
]);

const CONF: Schema = Schema::Object(&[optional("http", Schema::List(&FAULT))]);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[
        optional("targetRef", Schema::TargetRef(TOP_KINDS)),
        optional("from", Schema::List(&section!(CALLER_KINDS, CONF))),
        optional("to", Schema::List(&section!(MESH_ONLY, CONF))),
        optional("rules", Schema::List(&rule_section!(MATCH, CONF))),
    ]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

/// Sidecars inject faults on inbound traffic (`from`, `rules`); gateways on
/// the traffic they send (`to`). A targetRef that may select both has to
/// narrow itself with `proxyTypes`.
fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    rules_replace(spec, path, out, &["from"]);
    if includes_gateways(spec) {
        let why = "when the targetRef may select gateways: select only proxyTypes [Sidecar], or select only gateways and use to";
        forbid_section(spec, path, out, "from", why);
    } else {
        forbid_section(spec, path, out, "to", "unless the targetRef selects gateways");
    }
}

/// A bandwidth such as `100kbps`, `5Mbps` or `1Gbps`.
fn bandwidth(value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(text) = value.as_str() else { return };
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    if number.is_empty() || !matches!(unit, "kbps" | "Mbps" | "Gbps") {
        out.add(path, format!("{text:?} is not a bandwidth such as 100kbps, 5Mbps or 1Gbps"));
    }
}
