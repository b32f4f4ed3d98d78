//! MeshAccessLog: where proxies write access logs (a file, a TCP collector
//! or OpenTelemetry) and in which format.

use serde_json::Value;

use super::{
    DESTINATION_OR_ROUTE_KINDS, MATCH, MESH_GATEWAY, MESH_ONLY, OTEL_BACKEND_REF, OTEL_ENDPOINT, TOP_KINDS,
    limit_kinds, require_a_section, rules_replace, top_kind,
};
use crate::address::FILE_PATH;
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

/// A log line as Envoy command operators: plain text or JSON key/values.
const FORMAT: Schema = Schema::Union(
    &[("Plain", "plain"), ("Json", "json")],
    &Schema::Object(&[
        required("type", Schema::Enum(&["Plain", "Json"])),
        optional("plain", Schema::NonEmptyString),
        optional(
            "json",
            Schema::NonEmptyList(&Schema::Object(&[
                required("key", Schema::Check(&Schema::NonEmptyString, json_text)),
                required("value", Schema::Check(&Schema::NonEmptyString, json_text)),
            ])),
        ),
        optional("omitEmptyValues", Schema::Bool),
    ]),
);

const OPEN_TELEMETRY: Schema = Schema::ExactlyOneOf(
    &["endpoint", "backendRef"],
    &Schema::Object(&[
        optional(
            "attributes",
            Schema::List(&Schema::Object(&[
                required("key", Schema::Check(&Schema::NonEmptyString, attribute_name)),
                required("value", Schema::String),
            ])),
        ),
        optional("body", Schema::Any),
        optional("endpoint", OTEL_ENDPOINT),
        optional("backendRef", OTEL_BACKEND_REF),
    ]),
);

const BACKEND: Schema = Schema::Union(
    &[("File", "file"), ("Tcp", "tcp"), ("OpenTelemetry", "openTelemetry")],
    &Schema::Object(&[
        required("type", Schema::Enum(&["Tcp", "File", "OpenTelemetry"])),
        optional(
            "tcp",
            Schema::Object(&[
                optional("format", FORMAT),
                required("address", Schema::Check(&Schema::NonEmptyString, no_spaces)),
            ]),
        ),
        optional(
            "file",
            Schema::Object(&[optional("format", FORMAT), required("path", Schema::Check(&FILE_PATH, no_spaces))]),
        ),
        optional("openTelemetry", OPEN_TELEMETRY),
    ]),
);

const CONF: Schema = Schema::Object(&[required("backends", Schema::List(&BACKEND))]);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[
        optional("targetRef", Schema::TargetRef(TOP_KINDS)),
        optional("to", Schema::List(&section!(DESTINATION_OR_ROUTE_KINDS, CONF))),
        optional("from", Schema::List(&section!(MESH_ONLY, CONF))),
        optional("rules", Schema::List(&rule_section!(MATCH, CONF))),
    ]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    require_a_section(spec, path, out, &["to", "from", "rules"]);
    rules_replace(spec, path, out, &["to", "from"]);
    if top_kind(spec) == MESH_GATEWAY {
        limit_kinds(spec, path, out, "to", MESH_ONLY, "when the top-level targetRef is a MeshGateway");
    }
}

/// JSON format keys and values are spliced into a JSON object as strings.
fn json_text(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.as_str().is_some_and(|text| text.contains(['"', '\\'])) {
        out.add(path, "must not contain '\"' or '\\' (it is placed inside a JSON string)");
    }
}

fn no_spaces(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.as_str().is_some_and(|text| text.chars().any(char::is_whitespace)) {
        out.add(path, "must not contain spaces");
    }
}

/// OpenTelemetry attribute keys: lower-case letters and digits, separated by
/// single `.` or `_`, starting with a letter; `otel.` is reserved.
fn attribute_name(value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(text) = value.as_str() else { return };
    let bytes = text.as_bytes();
    let shape_ok = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_'))
        && bytes.windows(2).all(|pair| !(matches!(pair[0], b'.' | b'_') && matches!(pair[1], b'.' | b'_')))
        && !text.ends_with(['.', '_']);
    if text.starts_with("otel.") {
        out.add(path, "must not use the reserved prefix otel.");
    } else if !shape_ok {
        out.add(
            path,
            format!("{text:?} is not a valid attribute name: lower-case letters and digits separated by '.' or '_'"),
        );
    }
}
