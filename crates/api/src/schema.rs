//! A small declarative schema language for resource documents.
//!
//! Every resource type describes its fields as a static [`Schema`]; one walker
//! checks a JSON value against it and records every violation with its field
//! path (unknown fields, wrong types, out-of-range values, targetRef kinds a
//! section does not allow). Rules that a shape cannot express are attached
//! with [`Schema::Check`].

use serde_json::Value;

use crate::duration::parse_duration;
use crate::violations::{FieldPath, Violations};

/// A rule for one value in a document.
#[derive(Debug, Clone, Copy)]
pub enum Schema {
    /// Anything at all (free-form configuration such as a JSON patch value).
    Any,
    /// A string.
    String,
    /// A string that is not empty.
    NonEmptyString,
    Bool,
    /// A whole number in an inclusive range.
    Int {
        min: i64,
        max: i64,
    },
    /// A number (whole or fractional) in an inclusive range.
    Number {
        min: f64,
        max: f64,
    },
    /// A TCP/UDP port, 1-65535.
    Port,
    /// A non-negative Go-style duration string (`5s`, `1m30s`).
    Duration,
    /// A percentage 0-100, as a number or a decimal string (`50`, `"12.5"`).
    Percentage,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A list whose items follow the inner schema.
    List(&'static Schema),
    /// A list with at least one item.
    NonEmptyList(&'static Schema),
    /// An object with arbitrary string keys whose values follow the schema.
    Map(&'static Schema),
    /// An object with the listed fields and no others.
    Object(&'static [Field]),
    /// A policy `targetRef` whose kind must be one of the listed kinds.
    TargetRef(&'static [&'static str]),
    /// A `targetRef` that carries more fields beside the targetRef ones (a
    /// route's `backendRef` adds `weight` and `port`).
    TargetRefWith(&'static [&'static str], &'static [Field]),
    /// The inner schema, and at least one of the named fields must be set.
    AtLeastOneOf(&'static [&'static str], &'static Schema),
    /// The inner schema, and exactly one of the named fields must be set.
    ExactlyOneOf(&'static [&'static str], &'static Schema),
    /// An object whose `type` field names which other field holds its
    /// settings: for each `(type value, field)` pair, that field must be set
    /// when `type` has that value (`type: File` needs `file`).
    Union(&'static [(&'static str, &'static str)], &'static Schema),
    /// The inner schema, then an extra rule on the same value.
    Check(&'static Schema, Rule),
}

/// An extra rule run on a value that already matched its shape.
pub type Rule = fn(&Value, &FieldPath, &mut Violations);

/// One field of an [`Schema::Object`].
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub schema: Schema,
    pub required: bool,
}

/// A field that must be present.
pub const fn required(name: &'static str, schema: Schema) -> Field {
    Field { name, schema, required: true }
}

/// A field that may be left out (or set to null).
pub const fn optional(name: &'static str, schema: Schema) -> Field {
    Field { name, schema, required: false }
}

/// The kinds a `targetRef` may name, and which of `name`, `tags`, `labels`,
/// `sectionName` each one takes (Kuma 2.x targetRef semantics).
const TARGET_REF_FIELDS: &[&str] =
    &["kind", "name", "namespace", "tags", "labels", "sectionName", "proxyTypes", "mesh"];

impl Schema {
    /// Checks `value` (found at `path`) and records every violation.
    pub fn check(&self, value: &Value, path: &FieldPath, out: &mut Violations) {
        match *self {
            Schema::Any => {}
            Schema::String => {
                if !value.is_string() {
                    out.add(path, expected("a string", value));
                }
            }
            Schema::NonEmptyString => match value.as_str() {
                Some("") => out.add(path, "must not be empty"),
                Some(_) => {}
                None => out.add(path, expected("a string", value)),
            },
            Schema::Bool => {
                if !value.is_boolean() {
                    out.add(path, expected("true or false", value));
                }
            }
            Schema::Int { min, max } => check_int(value, min, max, path, out),
            Schema::Port => check_int(value, 1, 65535, path, out),
            Schema::Number { min, max } => match value.as_f64() {
                Some(n) if n < min || n > max => {
                    out.add(path, format!("must be in inclusive range [{min}, {max}], got {n}"));
                }
                Some(_) => {}
                None => out.add(path, expected("a number", value)),
            },
            Schema::Duration => match value.as_str() {
                Some(text) => {
                    if let Err(reason) = parse_duration(text) {
                        out.add(path, reason);
                    }
                }
                None => out.add(path, expected("a duration string such as \"5s\"", value)),
            },
            Schema::Percentage => check_percentage(value, path, out),
            Schema::Enum(options) => match value.as_str() {
                Some(text) if options.contains(&text) => {}
                _ => out.add(path, format!("must be one of {}, got {}", options.join(", "), show(value))),
            },
            Schema::List(item) | Schema::NonEmptyList(item) => match value.as_array() {
                Some(items) => {
                    if items.is_empty() && matches!(self, Schema::NonEmptyList(_)) {
                        out.add(path, "must have at least one element");
                    }
                    for (i, element) in items.iter().enumerate() {
                        item.check(element, &path.index(i), out);
                    }
                }
                None => out.add(path, expected("a list", value)),
            },
            Schema::Map(item) => match value.as_object() {
                Some(entries) => {
                    for (key, element) in entries {
                        item.check(element, &path.key(key), out);
                    }
                }
                None => out.add(path, expected("an object", value)),
            },
            Schema::Object(fields) => check_object(fields, value, path, out),
            Schema::TargetRef(kinds) => check_target_ref(kinds, &[], value, path, out),
            Schema::TargetRefWith(kinds, extra) => check_target_ref(kinds, extra, value, path, out),
            Schema::AtLeastOneOf(names, inner) | Schema::ExactlyOneOf(names, inner) => {
                inner.check(value, path, out);
                let Some(object) = value.as_object() else { return };
                let set = names.iter().filter(|name| object.get(**name).is_some_and(is_set)).count();
                let exactly = matches!(self, Schema::ExactlyOneOf(..));
                if set == 0 || (exactly && set > 1) {
                    let how = if exactly { "exactly one" } else { "at least one" };
                    out.add(path, format!("must have {how} of {} set, found {set}", names.join(", ")));
                }
            }
            Schema::Union(cases, inner) => {
                inner.check(value, path, out);
                let kind = value.get("type").and_then(Value::as_str);
                for (case, field) in cases {
                    if kind == Some(*case) && !value.get(*field).is_some_and(is_set) {
                        out.add(&path.field(field), format!("must be set when type is {case}"));
                    }
                }
            }
            Schema::Check(inner, rule) => {
                let before = out.len();
                inner.check(value, path, out);
                if out.len() == before {
                    rule(value, path, out);
                }
            }
        }
    }
}

/// Checks an object against its field list: required fields, unknown fields
/// and each present field's own schema. A null field counts as absent.
pub fn check_object(fields: &[Field], value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(object) = value.as_object() else {
        out.add(path, expected("an object", value));
        return;
    };
    for field in fields {
        match object.get(field.name) {
            Some(Value::Null) | None if field.required => {
                out.add(&path.field(field.name), "must be defined");
            }
            Some(Value::Null) | None => {}
            Some(present) => field.schema.check(present, &path.field(field.name), out),
        }
    }
    for key in object.keys() {
        if !fields.iter().any(|field| field.name == key) {
            let known: Vec<&str> = fields.iter().map(|field| field.name).collect();
            out.add(&path.field(key), format!("unknown field (known fields: {})", known.join(", ")));
        }
    }
}

/// Whether a field counts as set for the "one of" rules: null, an empty
/// string and an empty list do not (Kuma treats them as absent).
pub fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => true,
    }
}

fn check_int(value: &Value, min: i64, max: i64, path: &FieldPath, out: &mut Violations) {
    match value.as_i64() {
        Some(n) if n < min || n > max => {
            out.add(path, format!("must be in inclusive range [{min}, {max}], got {n}"));
        }
        Some(_) => {}
        // A whole number too large for i64 is still out of range.
        None if value.is_u64() => out.add(path, format!("must be in inclusive range [{min}, {max}], got {value}")),
        None => out.add(path, expected("a whole number", value)),
    }
}

fn check_percentage(value: &Value, path: &FieldPath, out: &mut Violations) {
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    match number {
        Some(n) if (0.0..=100.0).contains(&n) => {}
        Some(n) => out.add(path, format!("must be in inclusive range [0, 100], got {n}")),
        None => out.add(path, expected("a percentage such as 50 or \"12.5\"", value)),
    }
}

fn check_target_ref(kinds: &[&str], extra: &[Field], value: &Value, path: &FieldPath, out: &mut Violations) {
    let Some(object) = value.as_object() else {
        out.add(path, expected("an object with a kind", value));
        return;
    };
    for key in object.keys() {
        if !TARGET_REF_FIELDS.contains(&key.as_str()) && !extra.iter().any(|field| field.name == key) {
            let known: Vec<&str> =
                TARGET_REF_FIELDS.iter().copied().chain(extra.iter().map(|field| field.name)).collect();
            out.add(&path.field(key), format!("unknown field (known fields: {})", known.join(", ")));
        }
    }
    for field in extra {
        match object.get(field.name) {
            Some(Value::Null) | None if field.required => out.add(&path.field(field.name), "must be defined"),
            Some(Value::Null) | None => {}
            Some(present) => field.schema.check(present, &path.field(field.name), out),
        }
    }
    let kind = match object.get("kind") {
        Some(Value::String(kind)) => kind.as_str(),
        None | Some(Value::Null) => {
            out.add(&path.field("kind"), "must be defined");
            return;
        }
        Some(other) => {
            out.add(&path.field("kind"), expected("a string", other));
            return;
        }
    };
    if !kinds.contains(&kind) {
        out.add(
            &path.field("kind"),
            format!("value {kind:?} is not supported here; allowed kinds: {}", kinds.join(", ")),
        );
        return;
    }
    let has = |field: &str| object.get(field).is_some_and(|v| !v.is_null());
    let named = matches!(
        kind,
        "MeshService"
            | "MeshServiceSubset"
            | "MeshGateway"
            | "MeshHTTPRoute"
            | "MeshExternalService"
            | "MeshMultiZoneService"
    );
    if named && !has("name") && !has("labels") {
        out.add(&path.field("name"), format!("must be set with kind {kind}"));
    }
    if matches!(kind, "Mesh" | "MeshSubset") && has("name") {
        out.add(&path.field("name"), format!("must not be set with kind {kind}"));
    }
    if matches!(kind, "MeshSubset" | "MeshServiceSubset") {
        if !has("tags") {
            out.add(&path.field("tags"), format!("must be set with kind {kind}"));
        }
    } else if has("tags") && kind != "MeshGateway" {
        out.add(&path.field("tags"), format!("must not be set with kind {kind}"));
    }
    // The fields each kind leaves unset, and which kinds select by labels
    // instead of by name (and namespace).
    let unset: &[&str] = match kind {
        "Mesh" | "MeshSubset" => &["mesh", "labels", "namespace", "sectionName"],
        "Dataplane" | "MeshService" => &["mesh", "proxyTypes"],
        "MeshHTTPRoute" | "MeshExternalService" => &["mesh", "proxyTypes", "sectionName"],
        "MeshServiceSubset" | "MeshGateway" => &["mesh", "proxyTypes", "labels", "namespace", "sectionName"],
        _ => &[],
    };
    for field in unset.iter().filter(|field| has(field)) {
        out.add(&path.field(field), format!("must not be set with kind {kind}"));
    }
    let named_too = match kind {
        "Dataplane" | "MeshService" | "MeshHTTPRoute" => has("name") || has("namespace"),
        "MeshExternalService" => has("name"),
        _ => false,
    };
    if named_too && has("labels") {
        out.add(&path.field("labels"), "must not be set together with name or namespace");
    }
    for (field, schema) in [
        ("name", Schema::NonEmptyString),
        ("namespace", Schema::String),
        ("sectionName", Schema::NonEmptyString),
        ("mesh", Schema::NonEmptyString),
        ("tags", Schema::Map(&Schema::String)),
        ("labels", Schema::Map(&Schema::String)),
        ("proxyTypes", Schema::List(&Schema::Enum(&["Sidecar", "Gateway"]))),
    ] {
        if let Some(v) = object.get(field).filter(|v| !v.is_null()) {
            schema.check(v, &path.field(field), out);
        }
    }
}

/// "expected X, got Y" with a short description of what was found.
pub fn expected(what: &str, found: &Value) -> String {
    format!("expected {what}, got {}", show(found))
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const THING: Schema = Schema::Object(&[
        required("port", Schema::Port),
        optional("timeout", Schema::Duration),
        optional("items", Schema::List(&Schema::Enum(&["a", "b"]))),
    ]);

    fn violations(schema: &Schema, value: Value) -> Vec<String> {
        let mut out = Violations::new();
        schema.check(&value, &FieldPath::root().field("spec"), &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let found = violations(&THING, json!({"port": 70000, "timeout": "5 parsecs", "items": ["a", "c"], "extra": 1}));
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].starts_with("spec.port: must be in inclusive range [1, 65535]"));
        assert!(found[1].starts_with("spec.timeout: "));
        assert!(found[2].starts_with("spec.items[1]: must be one of a, b"));
        assert!(found[3].starts_with("spec.extra: unknown field"));
    }

    #[test]
    fn missing_required_field() {
        assert_eq!(violations(&THING, json!({})), vec!["spec.port: must be defined"]);
    }

    #[test]
    fn target_ref_kinds_are_limited() {
        const REF: Schema = Schema::TargetRef(&["Mesh", "MeshService"]);
        assert!(violations(&REF, json!({"kind": "Mesh"})).is_empty());
        assert!(violations(&REF, json!({"kind": "MeshService", "name": "web"})).is_empty());
        assert_eq!(
            violations(&REF, json!({"kind": "MeshService"})),
            vec!["spec.name: must be set with kind MeshService"]
        );
        assert_eq!(
            violations(&REF, json!({"kind": "MeshGateway", "name": "gw"})),
            vec![r#"spec.kind: value "MeshGateway" is not supported here; allowed kinds: Mesh, MeshService"#]
        );
    }

    #[test]
    fn target_ref_with_extra_fields() {
        const BACKEND: Schema =
            Schema::TargetRefWith(&["MeshService"], &[optional("weight", Schema::Int { min: 0, max: 100 })]);
        assert!(violations(&BACKEND, json!({"kind": "MeshService", "name": "web", "weight": 5})).is_empty());
        let found = violations(&BACKEND, json!({"kind": "MeshService", "name": "web", "weight": -1, "port": 80}));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("spec.port: unknown field"));
        assert!(found[1].starts_with("spec.weight: must be in inclusive range"));
    }

    #[test]
    fn one_of_rules_count_set_fields() {
        const FIELDS: Schema = Schema::Object(&[optional("a", Schema::Any), optional("b", Schema::Any)]);
        const SOME: Schema = Schema::AtLeastOneOf(&["a", "b"], &FIELDS);
        const ONE: Schema = Schema::ExactlyOneOf(&["a", "b"], &FIELDS);
        assert!(violations(&SOME, json!({"a": 1, "b": 2})).is_empty());
        assert_eq!(
            violations(&SOME, json!({"a": [], "b": ""})),
            vec!["spec: must have at least one of a, b set, found 0"]
        );
        assert!(violations(&ONE, json!({"b": {}})).is_empty());
        assert_eq!(violations(&ONE, json!({"a": 1, "b": 2})), vec!["spec: must have exactly one of a, b set, found 2"]);
    }

    #[test]
    fn union_needs_the_field_its_type_names() {
        const BACKEND: Schema = Schema::Union(
            &[("File", "file"), ("Tcp", "tcp")],
            &Schema::Object(&[
                required("type", Schema::Enum(&["File", "Tcp"])),
                optional("file", Schema::Any),
                optional("tcp", Schema::Any),
            ]),
        );
        assert!(violations(&BACKEND, json!({"type": "File", "file": {"path": "/x"}})).is_empty());
        assert_eq!(
            violations(&BACKEND, json!({"type": "Tcp", "file": {}})),
            vec!["spec.tcp: must be set when type is Tcp"]
        );
    }
}
