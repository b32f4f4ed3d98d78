//! Tags on dataplane inbounds, outbounds and gateways, and tag selectors.
//! Kuma identifies a service by its `kuma.io/service` tag and reads the
//! protocol from `kuma.io/protocol`.

use serde_json::Value;

use crate::name::check_label_key;
use crate::schema::Schema;
use crate::violations::{FieldPath, Violations};

pub const SERVICE_TAG: &str = "kuma.io/service";
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";

/// The protocols a service may declare, as Kuma lists them to users.
pub const PROTOCOLS: &[&str] = &["tcp", "http", "http2", "grpc", "kafka"];

/// Kuma also reads these (case-insensitively) without listing them; a
/// manifest that uses them must still be accepted.
const UNLISTED_PROTOCOLS: &[&str] = &["tls", "mysql"];

/// Tags with valid keys and values and, if present, a known protocol.
pub const TAGS: Schema = Schema::Check(&Schema::Map(&Schema::String), |value, path, out| {
    for (key, tag) in entries(value) {
        let result = check_label_key(key).and_then(|()| check_tag_value(tag));
        let result = result.and_then(|()| if key == PROTOCOL_TAG { check_protocol(tag) } else { Ok(()) });
        if let Err(reason) = result {
            out.add(&path.key(key), reason);
        }
    }
});

/// [`TAGS`] that must name the service (`kuma.io/service`).
pub const SERVICE_TAGS: Schema = Schema::Check(&TAGS, require_service_tag);

fn require_service_tag(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.get(SERVICE_TAG).is_none() {
        out.add(
            &path.key(SERVICE_TAG),
            "must be defined: the service tag names the service this proxy serves or calls",
        );
    }
}

/// A tag selector (mesh constraints): at least one tag; values may also be
/// `*` (any value) or contain `/`.
pub const SELECTOR: Schema = Schema::Check(&Schema::Map(&Schema::String), |value, path, out| {
    if entries(value).next().is_none() {
        out.add(path, "must have at least one tag");
    }
    for (key, tag) in entries(value) {
        if let Err(reason) = check_label_key(key).and_then(|()| check_selector_value(tag)) {
            out.add(&path.key(key), reason);
        }
    }
});

/// A protocol name, such as an inbound's `protocol` field.
pub const PROTOCOL: Schema = Schema::Check(&Schema::String, |value, path, out| {
    if let Err(reason) = check_protocol(value.as_str().unwrap_or_default()) {
        out.add(path, reason);
    }
});

fn entries(value: &Value) -> impl Iterator<Item = (&str, &str)> {
    value.as_object().into_iter().flatten().map(|(key, tag)| (key.as_str(), tag.as_str().unwrap_or_default()))
}

/// A tag value: not empty; letters, digits, `.`, `-`, `_` and `:`.
pub fn check_tag_value(value: &str) -> Result<(), String> {
    check_value_chars(
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'),
        "'.', '-', '_' or ':'",
    )
}

/// A selector value: a tag value that may also hold `/`, or `*`.
pub fn check_selector_value(value: &str) -> Result<(), String> {
    if value == "*" {
        return Ok(());
    }
    check_value_chars(
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'),
        "'.', '-', '_', ':', '/' (or be \"*\")",
    )
}

fn check_value_chars(value: &str, allowed: impl Fn(char) -> bool, extra: &str) -> Result<(), String> {
    if value.is_empty() {
        Err("tag value must not be empty".into())
    } else if !value.chars().all(allowed) {
        Err(format!("tag value {value:?} may only hold letters, digits, {extra}"))
    } else {
        Ok(())
    }
}

/// One of [`PROTOCOLS`] (or a protocol Kuma reads without listing it),
/// in any letter case.
pub fn check_protocol(value: &str) -> Result<(), String> {
    let lower = value.to_ascii_lowercase();
    if PROTOCOLS.contains(&lower.as_str()) || UNLISTED_PROTOCOLS.contains(&lower.as_str()) {
        Ok(())
    } else {
        Err(format!("unknown protocol {value:?}; use one of {}", PROTOCOLS.join(", ")))
    }
}

/// The rule for a gateway's tags: Kuma gateways only take `tcp` as the
/// declared protocol (they proxy whatever arrives).
pub fn check_tcp_only(value: &Value, path: &FieldPath, out: &mut Violations) {
    if let Some(protocol) = value.get(PROTOCOL_TAG).and_then(Value::as_str)
        && !protocol.eq_ignore_ascii_case("tcp")
    {
        out.add(&path.key(PROTOCOL_TAG), format!("a gateway only accepts tcp here, got {protocol:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(schema: &Schema, value: Value) -> Vec<String> {
        let mut out = Violations::new();
        schema.check(&value, &FieldPath::root().field("tags"), &mut out);
        out.iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn tag_values() {
        for good in ["web", "v1.2", "a_b-c", "zone:eu"] {
            assert!(check_tag_value(good).is_ok(), "{good}");
        }
        for bad in ["", "with space", "a/b", "*"] {
            assert!(check_tag_value(bad).is_err(), "{bad}");
        }
        assert!(check_selector_value("*").is_ok());
        assert!(check_selector_value("a/b").is_ok());
        assert!(check_selector_value("").is_err());
    }

    #[test]
    fn protocols() {
        for good in ["tcp", "http", "HTTP2", "grpc", "kafka", "tls"] {
            assert!(check_protocol(good).is_ok(), "{good}");
        }
        for bad in ["", "udp", "https"] {
            assert!(check_protocol(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_tags() {
        assert!(fields(&SERVICE_TAGS, json!({"kuma.io/service": "web", "kuma.io/protocol": "http"})).is_empty());
        assert_eq!(fields(&SERVICE_TAGS, json!({"version": "v1"})), [r#"tags["kuma.io/service"]"#]);
        assert_eq!(
            fields(&TAGS, json!({"kuma.io/protocol": "udp", "bad key": "x", "v": ""})),
            [r#"tags["kuma.io/protocol"]"#, r#"tags["bad key"]"#, r#"tags["v"]"#]
        );
        assert_eq!(fields(&SELECTOR, json!({})), ["tags"]);
    }
}
