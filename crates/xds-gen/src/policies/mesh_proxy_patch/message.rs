//! Envoy messages as JSON and back: reading what users write (YAML or
//! JSON text of an Envoy message), protobuf merge, and turning a patched
//! JSON form into an encoded resource again.

use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use kodiak_xds_server::Resource;
use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage, SerializeOptions, Value as Field};
use serde_json::{Map, Value};

/// The key of an expanded `Any` in Envoy's JSON.
pub(super) const TYPE_KEY: &str = "@type";
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// Messages a merge replaces in full instead of merging field by field:
/// a duration or wrapped number set in a patch means that exact value
/// (merging `0s` or a wrapped `0` field by field would keep the old one).
const REPLACED_WHOLE: &[&str] = &[
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.BoolValue",
    "google.protobuf.BytesValue",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int32Value",
    "google.protobuf.Int64Value",
    "google.protobuf.StringValue",
    "google.protobuf.UInt32Value",
    "google.protobuf.UInt64Value",
];

pub(super) fn descriptor(full_name: &str) -> Result<MessageDescriptor, String> {
    crate::descriptor_pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("{full_name} is not among the Envoy types Kodiak knows"))
}

/// The message type named by an `Any` type URL.
pub(super) fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or_default()
}

/// Parses a modification's `value`: YAML or JSON text of an object.
pub(super) fn parse_value(text: &str) -> Result<Value, String> {
    match kodiak_api::parse_document(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("value must be an Envoy resource written as a YAML or JSON object".to_owned()),
        Err(error) => Err(format!("value is not valid YAML: {error}")),
    }
}

/// `json` read as a `message`; unknown fields, wrong types and `Any`s of
/// unknown types are refused.
pub(super) fn from_json(message: &MessageDescriptor, json: &Value) -> Result<DynamicMessage, String> {
    DynamicMessage::deserialize(message.clone(), json)
        .map_err(|error| format!("not a valid {}: {error}", message.full_name()))
}

/// Envoy's JSON form of `message` (`Any`s expanded, defaults left out).
pub(super) fn to_json(message: &DynamicMessage) -> Result<Value, String> {
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|error| format!("rendering {}: {error}", message.descriptor().full_name()))
}

/// `json` read as `message` and written back in Envoy's form: checks it
/// and makes field names and values canonical (`connect_timeout: 5s`
/// becomes `"connectTimeout": "5s"`).
pub(super) fn canonical(message: &MessageDescriptor, json: &Value) -> Result<Value, String> {
    to_json(&from_json(message, json)?)
}

/// Protobuf merge of `src` into `dst`: fields set in `src` replace
/// scalars, merge into messages (durations and wrapped numbers are
/// replaced whole), append to lists and add or replace map entries.
pub(super) fn merge(dst: &mut DynamicMessage, src: &DynamicMessage) {
    for (field, value) in src.fields() {
        let target = dst.get_field_mut(&field);
        match (target, value) {
            (Field::List(into), Field::List(items)) => into.extend(items.iter().cloned()),
            (Field::Map(into), Field::Map(entries)) => {
                into.extend(entries.iter().map(|(key, value)| (key.clone(), value.clone())));
            }
            (Field::Message(into), Field::Message(from)) if !replaced_whole(&field.kind()) => merge(into, from),
            (target, value) => *target = value.clone(),
        }
    }
}

fn replaced_whole(kind: &Kind) -> bool {
    matches!(kind, Kind::Message(message) if REPLACED_WHOLE.contains(&message.full_name()))
}

/// Merges `patch` into `json`, both Envoy JSON of `message`.
pub(super) fn merge_json(message: &MessageDescriptor, json: &Value, patch: &Value) -> Result<Value, String> {
    let mut merged = from_json(message, json)?;
    merge(&mut merged, &from_json(message, patch)?);
    to_json(&merged)
}

/// An expanded `Any` split into its message type and its fields.
pub(super) fn split_any(any: &Value) -> Result<(MessageDescriptor, Value), String> {
    let Value::Object(fields) = any else { return Err("typedConfig is not an object".to_owned()) };
    let url = fields.get(TYPE_KEY).and_then(Value::as_str).ok_or("typedConfig has no @type")?;
    let mut fields = fields.clone();
    fields.shift_remove(TYPE_KEY);
    Ok((descriptor(type_name(url))?, Value::Object(fields)))
}

/// The expanded `Any` of `message`'s JSON `fields`.
pub(super) fn join_any(message: &MessageDescriptor, fields: Value) -> Value {
    let mut any = Map::new();
    any.insert(TYPE_KEY.to_owned(), Value::String(format!("{TYPE_URL_PREFIX}{}", message.full_name())));
    if let Value::Object(fields) = fields {
        any.extend(fields);
    }
    Value::Object(any)
}

/// Merges the `Any` `patch` into the `Any` `json` (both expanded); they
/// must hold the same message type.
pub(super) fn merge_any(json: &Value, patch: &Value) -> Result<Value, String> {
    let (message, fields) = split_any(json)?;
    let (patch_message, patch_fields) = split_any(patch)?;
    if message != patch_message {
        return Err(format!(
            "the value's typedConfig is a {}, the filter's a {}: only the same type can be merged",
            patch_message.full_name(),
            message.full_name()
        ));
    }
    Ok(join_any(&message, merge_json(&message, &fields, &patch_fields)?))
}

/// The resource `name` of type `message` from its Envoy JSON. Its version
/// follows its content: a hash of the type and of the canonical JSON
/// (map entries sorted), so equal content gets equal versions however
/// the encoder orders map entries.
pub(super) fn resource(name: &str, message: &MessageDescriptor, json: &Value) -> Result<Arc<Resource>, String> {
    let body = Any {
        type_url: format!("{TYPE_URL_PREFIX}{}", message.full_name()),
        value: from_json(message, json)?.encode_to_vec(),
    };
    let canonical = crate::try_render(&body).map_err(|error| error.to_string())?;
    let version = fnv1a([body.type_url.as_bytes(), canonical.to_string().as_bytes()]);
    Ok(Arc::new(Resource { name: name.to_owned(), version, body }))
}

/// FNV-1a 64 of `fields`, each followed by 0xff, as 16 hex digits: the
/// same form as the versions of generated resources.
fn fnv1a<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in fields.into_iter().flat_map(|field| field.iter().chain(&[0xff])) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster() -> MessageDescriptor {
        descriptor("envoy.config.cluster.v3.Cluster").unwrap()
    }

    #[test]
    fn merge_replaces_scalars_and_durations_appends_lists_and_merges_messages() {
        let json = json!({"name": "a", "connectTimeout": "5.500s", "dnsResolvers": [{"pipe": {"path": "/x"}}],
                          "commonLbConfig": {"healthyPanicThreshold": {"value": 50}, "ignoreNewHostsUntilFirstHc": true},
                          "perConnectionBufferLimitBytes": 1024});
        let patch = json!({"connectTimeout": "1s", "dnsResolvers": [{"pipe": {"path": "/y"}}],
                           "commonLbConfig": {"healthyPanicThreshold": {"value": 25}},
                           "perConnectionBufferLimitBytes": 0});
        let merged = merge_json(&cluster(), &json, &patch).unwrap();
        assert_eq!(
            merged,
            json!({"name": "a", "connectTimeout": "1s", "perConnectionBufferLimitBytes": 0,
                   "dnsResolvers": [{"pipe": {"path": "/x"}}, {"pipe": {"path": "/y"}}],
                   "commonLbConfig": {"healthyPanicThreshold": {"value": 25.0}, "ignoreNewHostsUntilFirstHc": true}})
        );
    }

    #[test]
    fn oneof_members_replace_each_other() {
        let json = json!({"name": "a", "type": "EDS"});
        let merged = merge_json(&cluster(), &json, &json!({"clusterType": {"name": "custom"}})).unwrap();
        assert_eq!(merged, json!({"name": "a", "clusterType": {"name": "custom"}}));
    }

    #[test]
    fn invalid_json_is_refused_with_the_type() {
        let error = from_json(&cluster(), &json!({"connectTimeout": "soon"})).unwrap_err();
        assert!(error.starts_with("not a valid envoy.config.cluster.v3.Cluster: "), "{error}");
        let error = from_json(&cluster(), &json!({"noSuchField": 1})).unwrap_err();
        assert!(error.contains("noSuchField"), "{error}");
    }

    #[test]
    fn snake_case_values_become_envoy_json() {
        let json = canonical(&cluster(), &parse_value("name: a\nconnect_timeout: 2s\n").unwrap()).unwrap();
        assert_eq!(json, json!({"name": "a", "connectTimeout": "2s"}));
        assert!(parse_value("- a").unwrap_err().contains("YAML or JSON object"));
        assert!(parse_value("a: [").unwrap_err().starts_with("value is not valid YAML"));
    }

    #[test]
    fn versions_follow_content_not_map_order() {
        let json = json!({"name": "a", "metadata": {"filterMetadata": {
            "k1": {"a": 1}, "k2": {"b": 2}, "k3": {}, "k4": {}, "k5": {}, "k6": {}, "k7": {}, "k8": {}}}});
        let first = resource("a", &cluster(), &json).unwrap();
        for _ in 0..10 {
            assert_eq!(resource("a", &cluster(), &json).unwrap().version, first.version);
        }
        let other = resource("a", &cluster(), &json!({"name": "a", "connectTimeout": "1s"})).unwrap();
        assert_ne!(other.version, first.version);
        assert_eq!(first.version.len(), 16);
        assert_eq!(crate::render(&other), json!({"name": "a", "connectTimeout": "1s"}));
    }
}
