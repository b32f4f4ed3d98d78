//! The targetRef policies. Each module holds one policy's schema and rules;
//! this module holds what several policies share: the targetRef kind lists
//! of each section, the `to`/`from`/`rules` entry shapes, matches, header
//! lists, backend references and the rules that look across sections.
//!
//! The rules follow Kuma 2.14's validators so that a document Kuma accepts is
//! accepted here and a document Kuma refuses is refused with the field path
//! a user would look for. Kodiak universal documents carry no
//! `kuma.io/policy-role` label, so the top-level kinds are the ones Kuma
//! allows for policies without that label (they include `MeshGateway`).

use serde_json::Value;

use crate::duration::parse_duration;
use crate::schema::{Field, Schema, optional, required};
use crate::violations::{FieldPath, Violations};

/// A `to` or `from` entry: a targetRef limited to the given kinds and the
/// `default` configuration it applies.
macro_rules! section {
    ($kinds:expr, $conf:expr) => {
        $crate::schema::Schema::Object(&[
            $crate::schema::required("targetRef", $crate::schema::Schema::TargetRef($kinds)),
            $crate::schema::required("default", $conf),
        ])
    };
}

/// A `rules` entry: optional caller `matches` and the `default` configuration.
macro_rules! rule_section {
    ($matches:expr, $conf:expr) => {
        $crate::schema::Schema::Object(&[
            $crate::schema::optional("matches", $crate::schema::Schema::List(&$matches)),
            $crate::schema::required("default", $conf),
        ])
    };
}

pub mod mesh_access_log;
pub mod mesh_circuit_breaker;
pub mod mesh_fault_injection;
pub mod mesh_health_check;
pub mod mesh_http_route;
pub mod mesh_load_balancing_strategy;
pub mod mesh_proxy_patch;
pub mod mesh_rate_limit;
pub mod mesh_retry;
pub mod mesh_tcp_route;
pub mod mesh_timeout;
pub mod mesh_trace;
pub mod mesh_traffic_permission;

pub const MESH: &str = "Mesh";
pub const MESH_GATEWAY: &str = "MeshGateway";
pub const MESH_HTTP_ROUTE: &str = "MeshHTTPRoute";
pub const MESH_SERVICE: &str = "MeshService";
pub const MESH_EXTERNAL_SERVICE: &str = "MeshExternalService";
pub const MESH_MULTI_ZONE_SERVICE: &str = "MeshMultiZoneService";

/// Top-level kinds of most policies: which proxies get configured.
pub const TOP_KINDS: &[&str] = &[MESH, "MeshSubset", MESH_GATEWAY, MESH_SERVICE, "MeshServiceSubset", "Dataplane"];
/// Top-level kinds of policies that can also configure one route.
pub const TOP_KINDS_WITH_ROUTE: &[&str] =
    &[MESH, "MeshSubset", MESH_GATEWAY, MESH_SERVICE, "MeshServiceSubset", "Dataplane", MESH_HTTP_ROUTE];
/// Kinds that name only `Mesh` (inbound `from` of most policies).
pub const MESH_ONLY: &[&str] = &[MESH];
/// Callers a `from` entry may pick by their tags or service.
pub const CALLER_KINDS: &[&str] = &[MESH, "MeshSubset", MESH_SERVICE, "MeshServiceSubset"];
/// Outbound destinations: the mesh, or one service of any kind.
pub const DESTINATION_KINDS: &[&str] = &[MESH, MESH_SERVICE, MESH_EXTERNAL_SERVICE, MESH_MULTI_ZONE_SERVICE];
/// Outbound destinations, or one route to them.
pub const DESTINATION_OR_ROUTE_KINDS: &[&str] =
    &[MESH, MESH_SERVICE, MESH_EXTERNAL_SERVICE, MESH_MULTI_ZONE_SERVICE, MESH_HTTP_ROUTE];
/// Destinations left to a gateway or route policy: the mesh or an external service.
pub const GATEWAY_DESTINATION_KINDS: &[&str] = &[MESH, MESH_EXTERNAL_SERVICE];
/// One service of any kind.
pub const SERVICE_KINDS: &[&str] = &[MESH_SERVICE, MESH_EXTERNAL_SERVICE, MESH_MULTI_ZONE_SERVICE];
/// Where a route sends traffic.
pub const BACKEND_KINDS: &[&str] = &[MESH_SERVICE, "MeshServiceSubset", MESH_EXTERNAL_SERVICE, MESH_MULTI_ZONE_SERVICE];

/// A whole number that fits Kuma's unsigned 32-bit fields.
pub const UINT32: Schema = Schema::Int { min: 0, max: 4_294_967_295 };
/// An unsigned 32-bit number greater than zero.
pub const POSITIVE_UINT32: Schema = Schema::Int { min: 1, max: 4_294_967_295 };
/// A signed 32-bit number greater than zero.
pub const POSITIVE_INT32: Schema = Schema::Int { min: 1, max: 2_147_483_647 };
/// A whole-number percentage.
pub const PERCENT_INT: Schema = Schema::Int { min: 0, max: 100 };
/// An HTTP status code.
pub const STATUS_CODE: Schema = Schema::Int { min: 100, max: 599 };
/// A duration longer than zero.
pub const POSITIVE_DURATION: Schema = Schema::Check(&Schema::Duration, duration_above_zero);
/// A number or decimal string greater than zero (`1.9`, `"1.9"`).
pub const POSITIVE_DECIMAL: Schema = Schema::Check(&Schema::Any, decimal_above_zero);
/// A number or decimal string not below zero.
pub const NON_NEGATIVE_DECIMAL: Schema = Schema::Check(&Schema::Any, decimal_not_negative);
/// A DNS name (RFC 1123 subdomain) such as `api.example.com`.
pub const HOSTNAME: Schema = Schema::Check(&Schema::NonEmptyString, dns_subdomain);

/// A caller match of a `rules` entry: by SPIFFE ID or by SNI.
pub const MATCH: Schema = Schema::Object(&[
    optional(
        "spiffeID",
        Schema::Object(&[
            required("type", Schema::Enum(&["Exact", "Prefix"])),
            required("value", Schema::Check(&Schema::NonEmptyString, spiffe_id)),
        ]),
    ),
    optional("sni", Schema::Object(&[required("type", Schema::Enum(&["Exact"])), required("value", HOSTNAME)])),
]);
/// A caller match that names the caller (policies that condition on it).
pub const IDENTITY_MATCH: Schema = Schema::AtLeastOneOf(&["spiffeID", "sni"], &MATCH);

/// A header condition (routes, retries).
pub const HEADER_MATCH: Schema = Schema::Check(
    &Schema::Object(&[
        optional("type", Schema::Enum(&["Exact", "Present", "RegularExpression", "Absent", "Prefix"])),
        required("name", Schema::NonEmptyString),
        optional("value", Schema::String),
    ]),
    header_match_value,
);

/// Headers to set or add: at most 16 `{name, value}` pairs.
pub const HEADER_VALUES: Schema = Schema::Check(
    &Schema::List(&Schema::Object(&[required("name", Schema::NonEmptyString), required("value", Schema::String)])),
    at_most_16,
);
/// A header modifier that sets or adds headers.
pub const HEADER_SET_ADD: Schema = Schema::Object(&[optional("set", HEADER_VALUES), optional("add", HEADER_VALUES)]);

/// What a backend reference adds to its targetRef.
pub const BACKEND_REF_FIELDS: &[Field] = &[optional("weight", UINT32), optional("port", Schema::Port)];
/// Where a route sends traffic, with its share (`weight`) of it.
pub const BACKEND_REF: Schema =
    Schema::Check(&Schema::TargetRefWith(BACKEND_KINDS, BACKEND_REF_FIELDS), multi_zone_port);
/// A route's backends, of which at least one takes traffic.
pub const BACKEND_REFS: Schema = Schema::Check(&Schema::List(&BACKEND_REF), some_weight);
/// As [`BACKEND_REFS`], and at least one.
pub const SOME_BACKEND_REFS: Schema = Schema::Check(&Schema::NonEmptyList(&BACKEND_REF), some_weight);

/// An OpenTelemetry collector address: `host:port`, not a URL.
pub const OTEL_ENDPOINT: Schema = Schema::Check(&Schema::String, host_port);
/// A reference to a MeshOpenTelemetryBackend by its labels.
pub const OTEL_BACKEND_REF: Schema = Schema::Object(&[
    required("kind", Schema::Enum(&["MeshOpenTelemetryBackend"])),
    required("labels", Schema::Check(&Schema::Map(&Schema::String), not_empty_map)),
]);

// ---- Rules that look across a policy's sections ---------------------------

/// The kind of the top-level targetRef; a spec without one targets the mesh.
pub fn top_kind(spec: &Value) -> &str {
    spec.pointer("/targetRef/kind").and_then(Value::as_str).unwrap_or(MESH)
}

/// Whether the proxies a spec selects may include gateways: a gateway or a
/// route, or the mesh or a subset unless `proxyTypes` leaves gateways out.
pub fn includes_gateways(spec: &Value) -> bool {
    match top_kind(spec) {
        MESH_GATEWAY | MESH_HTTP_ROUTE => true,
        MESH | "MeshSubset" => match spec.pointer("/targetRef/proxyTypes").and_then(Value::as_array) {
            Some(types) if !types.is_empty() => types.iter().any(|t| t == "Gateway"),
            _ => true,
        },
        _ => false,
    }
}

/// The entries of a section list (`to`, `from`, `rules`); none when absent.
pub fn entries<'a>(spec: &'a Value, section: &str) -> &'a [Value] {
    spec.get(section).map_or(&[], items)
}

/// The items of a list value; none when it is not a list.
pub fn items(list: &Value) -> &[Value] {
    list.as_array().map_or(&[], Vec::as_slice)
}

/// At least one of the sections must have an entry.
pub fn require_a_section(spec: &Value, path: &FieldPath, out: &mut Violations, sections: &[&str]) {
    if sections.iter().all(|section| entries(spec, section).is_empty()) {
        out.add(path, format!("at least one of {} has to be defined", sections.join(", ")));
    }
}

/// `rules` replace the older `to`/`from` sections: a spec uses one or the other.
pub fn rules_replace(spec: &Value, path: &FieldPath, out: &mut Violations, older: &[&str]) {
    if !entries(spec, "rules").is_empty() && older.iter().any(|section| !entries(spec, section).is_empty()) {
        out.add(path, format!("{} must be empty when rules is defined", older.join(" and ")));
    }
}

/// Refuses a section that the top-level targetRef rules out.
pub fn forbid_section(spec: &Value, path: &FieldPath, out: &mut Violations, section: &str, why: &str) {
    if !entries(spec, section).is_empty() {
        out.add(&path.field(section), format!("must not be defined {why}"));
    }
}

/// Limits the targetRef kinds of a section's entries further than its schema
/// does, because the top-level targetRef narrows them.
pub fn limit_kinds(spec: &Value, path: &FieldPath, out: &mut Violations, section: &str, kinds: &[&str], why: &str) {
    for (i, entry) in entries(spec, section).iter().enumerate() {
        let kind = entry.pointer("/targetRef/kind").and_then(Value::as_str).unwrap_or_default();
        if !kinds.contains(&kind) {
            out.add(
                &path.field(section).index(i).field("targetRef").field("kind"),
                format!("value {kind:?} is not supported {why}; allowed kinds: {}", kinds.join(", ")),
            );
        }
    }
}

/// Route entries attach to services, or to `Mesh` when the route configures
/// a gateway.
pub fn route_destinations(spec: &Value, path: &FieldPath, out: &mut Violations) {
    if top_kind(spec) == MESH_GATEWAY {
        limit_kinds(spec, path, out, "to", MESH_ONLY, "when the top-level targetRef is a MeshGateway");
    } else {
        limit_kinds(spec, path, out, "to", SERVICE_KINDS, "for a route on sidecars");
    }
}

/// Policies that cannot pick gateway listeners refuse `tags` on a top-level
/// MeshGateway.
pub fn no_gateway_listener_tags(spec: &Value, path: &FieldPath, out: &mut Violations) {
    if top_kind(spec) == MESH_GATEWAY && spec.pointer("/targetRef/tags").is_some_and(|tags| !tags.is_null()) {
        out.add(&path.field("targetRef").field("tags"), "must not be set with kind MeshGateway for this policy");
    }
}

// ---- Value rules ----------------------------------------------------------

fn duration_above_zero(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.as_str().and_then(|text| parse_duration(text).ok()).is_some_and(|d| d.is_zero()) {
        out.add(path, "must be greater than 0");
    }
}

/// A number given as a JSON number or a decimal string.
pub fn decimal(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => text.trim().parse().ok().filter(|n: &f64| n.is_finite()),
        _ => None,
    }
}

fn decimal_above_zero(value: &Value, path: &FieldPath, out: &mut Violations) {
    match decimal(value) {
        Some(n) if n <= 0.0 => out.add(path, format!("must be greater than 0, got {n}")),
        Some(_) => {}
        None => out.add(path, crate::schema::expected("a number or a decimal string such as \"1.5\"", value)),
    }
}

fn decimal_not_negative(value: &Value, path: &FieldPath, out: &mut Violations) {
    match decimal(value) {
        Some(n) if n < 0.0 => out.add(path, format!("must not be negative, got {n}")),
        Some(_) => {}
        None => out.add(path, crate::schema::expected("a number or a decimal string such as \"1.5\"", value)),
    }
}

/// A percentage (number or decimal string) above zero.
pub fn percentage_above_zero(value: &Value, path: &FieldPath, out: &mut Violations) {
    if decimal(value).is_some_and(|n| n <= 0.0) {
        out.add(path, "must be greater than 0");
    }
}

fn not_empty_map(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.as_object().is_some_and(|map| map.is_empty()) {
        out.add(path, "must have at least one entry");
    }
}

fn at_most_16(value: &Value, path: &FieldPath, out: &mut Violations) {
    let count = value.as_array().map_or(0, Vec::len);
    if count > 16 {
        out.add(path, format!("must have at most 16 entries, got {count}"));
    }
}

/// A list with at most one entry.
pub fn at_most_one(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.as_array().is_some_and(|items| items.len() > 1) {
        out.add(path, "must have zero or one entry");
    }
}

fn header_match_value(value: &Value, path: &FieldPath, out: &mut Violations) {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("Exact");
    if matches!(kind, "Present" | "Absent") && value.get("value").and_then(Value::as_str).is_some_and(|v| !v.is_empty())
    {
        out.add(&path.field("value"), format!("must not be set with type {kind}"));
    }
    if kind == "RegularExpression" {
        regular_expression(&value["value"], &path.field("value"), out);
    }
}

/// A regular expression as Envoy reads it (RE2: no look-around, no
/// back-references); Envoy would refuse the whole configuration otherwise.
pub fn regular_expression(value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(pattern) = value.as_str() else { return };
    let problem = match regex_syntax::Parser::new().parse(pattern) {
        Ok(_) => return,
        Err(regex_syntax::Error::Parse(e)) => e.kind().to_string(),
        Err(regex_syntax::Error::Translate(e)) => e.kind().to_string(),
        Err(e) => e.to_string(),
    };
    out.add(path, format!("is not a valid regular expression: {problem}"));
}

/// A route's backends share its traffic by weight (1 when left out): at
/// least one has to take some.
fn some_weight(value: &Value, path: &FieldPath, out: &mut Violations) {
    let refs = items(value);
    if !refs.is_empty() && refs.iter().all(|backend| backend.get("weight").and_then(Value::as_u64) == Some(0)) {
        out.add(path, "the weights must not all be 0: at least one backend has to take traffic");
    }
}

fn multi_zone_port(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.get("kind").is_some_and(|kind| kind == MESH_MULTI_ZONE_SERVICE)
        && value.get("port").is_none_or(Value::is_null)
    {
        out.add(&path.field("port"), "must be defined with kind MeshMultiZoneService");
    }
}

fn host_port(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.as_str().is_some_and(|text| text.contains(['/', '?', '#'])) {
        out.add(path, "must be in host:port format, not a URL");
    }
}

/// Checks an RFC 1123 subdomain: dot-separated labels of lower-case letters,
/// digits and `-`, each starting and ending with a letter or digit.
pub fn dns_subdomain(value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(text) = value.as_str() else { return };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if text.len() > 253 || !text.split('.').all(label_ok) {
        out.add(path, format!("{text:?} is not a valid DNS name: lower-case letters, digits, '-' and '.'"));
    }
}

/// Checks a SPIFFE ID: `spiffe://<trust domain>[/<path>]`.
fn spiffe_id(value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(text) = value.as_str() else { return };
    let valid = text.strip_prefix("spiffe://").is_some_and(|rest| {
        let (domain, id_path) = rest.split_once('/').map_or((rest, None), |(d, p)| (d, Some(p)));
        let domain_ok = !domain.is_empty()
            && domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
        let path_ok = id_path.is_none_or(|p| {
            p.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            })
        });
        domain_ok && path_ok
    });
    if !valid {
        out.add(path, format!("{text:?} is not a valid SPIFFE ID such as spiffe://example.org/ns/default/sa/web"));
    }
}

/// Kuma's connection-conditioned settings cannot depend on a caller's SPIFFE
/// ID; true when one of a rule entry's matches names one.
pub fn matches_spiffe_id(rule: &Value) -> bool {
    entries(rule, "matches").iter().any(|m| m.get("spiffeID").is_some_and(|s| !s.is_null()))
}
