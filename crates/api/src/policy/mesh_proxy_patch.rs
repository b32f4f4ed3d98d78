//! MeshProxyPatch: adds, removes or patches the Envoy clusters, listeners,
//! network filters, HTTP filters and virtual hosts Kodiak generates.
//!
//! `value` holds an Envoy resource as YAML text. The API layer checks that it
//! is a YAML object; its Envoy fields are checked where Envoy config is built.

use serde_json::Value;

use super::{TOP_KINDS, no_gateway_listener_tags};
use crate::document::parse_document;
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

/// An RFC 6902 JSON patch operation.
const JSON_PATCHES: Schema = Schema::NonEmptyList(&Schema::Check(
    &Schema::Object(&[
        required("op", Schema::Enum(&["add", "remove", "replace", "move", "copy"])),
        required("path", Schema::String),
        optional("value", Schema::Any),
        optional("from", Schema::String),
    ]),
    json_patch,
));

const RESOURCE_YAML: Schema = Schema::Check(&Schema::String, yaml_object);

const RESOURCE_OPERATIONS: Schema = Schema::Enum(&["Add", "Remove", "Patch"]);
const FILTER_OPERATIONS: Schema = Schema::Enum(&["Remove", "Patch", "AddFirst", "AddBefore", "AddAfter", "AddLast"]);

const FILTER_MATCH: Schema = Schema::Object(&[
    optional("origin", Schema::String),
    optional("name", Schema::String),
    optional("listenerName", Schema::String),
    optional("listenerTags", Schema::Map(&Schema::String)),
]);

/// One modification: what it matches, the operation, and the resource or
/// patches it applies.
macro_rules! modification {
    ($match_field:expr, $operations:expr, $rule:expr) => {
        Schema::Check(
            &Schema::Object(&[
                $match_field,
                required("operation", $operations),
                optional("value", RESOURCE_YAML),
                optional("jsonPatches", JSON_PATCHES),
            ]),
            $rule,
        )
    };
}

const CLUSTER_MATCH: Schema = Schema::Object(&[optional("origin", Schema::String), optional("name", Schema::String)]);

const LISTENER_MATCH: Schema = Schema::Object(&[
    optional("origin", Schema::String),
    optional("name", Schema::String),
    optional("tags", Schema::Map(&Schema::String)),
]);

const VIRTUAL_HOST_MATCH: Schema = Schema::Object(&[
    optional("origin", Schema::String),
    optional("name", Schema::String),
    optional("routeConfigurationName", Schema::String),
]);

const CLUSTER: Schema = modification!(optional("match", CLUSTER_MATCH), RESOURCE_OPERATIONS, resource_operation);
const LISTENER: Schema = modification!(optional("match", LISTENER_MATCH), RESOURCE_OPERATIONS, resource_operation);
const FILTER: Schema = modification!(optional("match", FILTER_MATCH), FILTER_OPERATIONS, filter_operation);
const VIRTUAL_HOST: Schema =
    modification!(required("match", VIRTUAL_HOST_MATCH), RESOURCE_OPERATIONS, virtual_host_operation);

const MODIFICATION: Schema = Schema::ExactlyOneOf(
    &["cluster", "listener", "networkFilter", "httpFilter", "virtualHost"],
    &Schema::Object(&[
        optional("cluster", CLUSTER),
        optional("listener", LISTENER),
        optional("networkFilter", FILTER),
        optional("httpFilter", FILTER),
        optional("virtualHost", VIRTUAL_HOST),
    ]),
);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[
        optional("targetRef", Schema::TargetRef(TOP_KINDS)),
        required("default", Schema::Object(&[required("appendModifications", Schema::NonEmptyList(&MODIFICATION))])),
    ]),
    no_gateway_listener_tags,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

fn is_set(value: Option<&Value>) -> bool {
    value.is_some_and(|v| !v.is_null())
}

/// Clusters and listeners: `Add` creates a new resource, so it matches none.
fn resource_operation(modification: &Value, path: &FieldPath, out: &mut Violations) {
    if modification["operation"] == "Add" && is_set(modification.get("match")) {
        out.add(&path.field("match"), "must not be defined with operation Add");
    }
    value_rules(modification, path, out);
}

/// A virtual host is added to the route configuration its match names, so
/// only the host's own name is out of place.
fn virtual_host_operation(modification: &Value, path: &FieldPath, out: &mut Violations) {
    if modification["operation"] == "Add" && is_set(modification.pointer("/match/name")) {
        out.add(&path.field("match").field("name"), "must not be defined with operation Add");
    }
    value_rules(modification, path, out);
}

/// Filters are placed relative to, or patched by, the filter their match names.
fn filter_operation(modification: &Value, path: &FieldPath, out: &mut Violations) {
    let operation = modification["operation"].as_str().unwrap_or_default();
    if matches!(operation, "AddBefore" | "AddAfter" | "Patch") && !is_set(modification.pointer("/match/name")) {
        out.add(
            &path.field("match").field("name"),
            format!("must be defined with operation {operation}: it names the filter to work on"),
        );
    }
    value_rules(modification, path, out);
}

/// `Remove` takes no value, `Patch` takes a value or JSON patches, every
/// kind of add takes the resource to add.
fn value_rules(modification: &Value, path: &FieldPath, out: &mut Violations) {
    let has_value = is_set(modification.get("value"));
    let has_patches = is_set(modification.get("jsonPatches"));
    match modification["operation"].as_str().unwrap_or_default() {
        "Remove" if has_value => out.add(&path.field("value"), "must not be defined with operation Remove"),
        "Remove" => {}
        "Patch" if has_value == has_patches => {
            out.add(path, "must have exactly one of value, jsonPatches set with operation Patch");
        }
        "Patch" => {}
        operation if !has_value => out.add(&path.field("value"), format!("must be defined with operation {operation}")),
        _ => {}
    }
}

fn yaml_object(value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(text) = value.as_str() else { return };
    match parse_document(text) {
        Ok(Value::Object(_)) => {}
        Ok(_) => out.add(path, "must be an Envoy resource written as a YAML object"),
        Err(e) => out.add(path, format!("is not valid YAML: {e}")),
    }
}

/// RFC 6902: `from` belongs to move/copy, `value` to add/replace, and the
/// document root cannot be removed.
fn json_patch(patch: &Value, path: &FieldPath, out: &mut Violations) {
    let op = patch["op"].as_str().unwrap_or_default();
    let moves = matches!(op, "move" | "copy");
    match (moves, patch.get("from").is_some()) {
        (true, false) => out.add(&path.field("from"), format!("must be defined with op {op}")),
        (false, true) => out.add(&path.field("from"), "is allowed only with op move or copy"),
        _ => {}
    }
    let sets = matches!(op, "add" | "replace");
    match (sets, patch.get("value").is_some()) {
        (true, false) => out.add(&path.field("value"), format!("must be defined with op {op}")),
        (false, true) => out.add(&path.field("value"), "is allowed only with op add or replace"),
        _ => {}
    }
    if op == "remove" && matches!(patch["path"].as_str(), Some("" | "/")) {
        out.add(&path.field("path"), "the root cannot be removed");
    }
}
