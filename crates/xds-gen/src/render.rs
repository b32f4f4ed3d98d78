//! Resources as Envoy's JSON (proto3 JSON mapping, `Any` fields expanded
//! with their `@type`), for golden tests and for showing users what their
//! proxy got. The descriptors come from the Envoy protos compiled in build.rs.

use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use kodiak_xds_server::Resource;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
use serde_json::{Value, json};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin")).as_slice())
        .expect("build.rs wrote a valid descriptor set")
});

/// Why a resource could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("type {0} is not among the Envoy types kodiak-xds-gen knows (add its .proto in build.rs)")]
    UnknownType(String),
    #[error("the bytes are not a valid {type_name}: {source}")]
    Decode { type_name: String, source: prost::DecodeError },
    #[error("rendering {type_name} as JSON: {source}")]
    Json { type_name: String, source: serde_json::Error },
}

/// Envoy's JSON form of `resource`'s message (without an `@type` of its
/// own: the caller knows the type). A resource that cannot be rendered
/// becomes `{"@type": ..., "renderError": "<why>"}` so a dump still shows
/// everything else.
pub fn render(resource: &Resource) -> Value {
    try_render(&resource.body)
        .unwrap_or_else(|error| json!({"@type": resource.body.type_url, "renderError": error.to_string()}))
}

/// Envoy's JSON form of the message packed in `any`.
pub fn try_render(any: &Any) -> Result<Value, RenderError> {
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let descriptor =
        POOL.get_message_by_name(type_name).ok_or_else(|| RenderError::UnknownType(type_name.to_owned()))?;
    let message = DynamicMessage::decode(descriptor.clone(), any.value.as_slice())
        .map_err(|source| RenderError::Decode { type_name: type_name.to_owned(), source })?;
    let mut json = message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|source| RenderError::Json { type_name: type_name.to_owned(), source })?;
    sort_maps(&mut json, &descriptor);
    Ok(json)
}

/// Sorts the keys of every map field in `json`, a `message` rendered as
/// JSON: decoded maps come in no particular order, and a rendering must be
/// the same every time (golden files, dumps compared by users). Fields keep
/// their declaration order.
fn sort_maps(json: &mut Value, message: &MessageDescriptor) {
    let Value::Object(object) = json else { return };
    if message.full_name() == "google.protobuf.Any" {
        let inner = object.get("@type").and_then(Value::as_str).and_then(|url| url.rsplit('/').next());
        if let Some(inner) = inner.and_then(|name| POOL.get_message_by_name(name)) {
            sort_maps(json, &inner);
        }
        return;
    }
    for field in message.fields() {
        let Some(value) = object.get_mut(field.json_name()) else { continue };
        let nested = match field.kind() {
            Kind::Message(nested) => nested,
            _ => continue,
        };
        if field.is_map() {
            let Value::Object(map) = value else { continue };
            map.sort_keys();
            let entry_value = nested.map_entry_value_field();
            if let Kind::Message(values) = entry_value.kind() {
                map.values_mut().for_each(|value| sort_maps(value, &values));
            }
        } else if field.is_list() {
            let Value::Array(items) = value else { continue };
            items.iter_mut().for_each(|item| sort_maps(item, &nested));
        } else {
            sort_maps(value, &nested);
        }
    }
}

/// The descriptors of the Envoy messages Kodiak generates (and the
/// bootstrap), e.g. to check that hand-written Envoy JSON uses real fields.
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    #[test]
    fn renders_envoy_json() {
        let cluster = Resource::new("backend", &Cluster { name: "backend".into(), ..Default::default() });
        assert_eq!(render(&cluster), json!({"name": "backend"}));
    }

    #[test]
    fn map_fields_render_sorted_by_key() {
        use envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac};
        use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
        // Enough keys that a hash map's order is all but never sorted by chance.
        let names: Vec<String> = (0..20).map(|i| format!("policy-{:02}", (i * 7) % 20)).collect();
        let rules = Rbac {
            policies: names.iter().map(|name| (name.clone(), Policy::default())).collect(),
            ..Default::default()
        };
        // Inside an Any, so the walk also follows `@type`.
        let filter = HttpRbac { rules: Some(rules), ..Default::default() };
        let any = Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC".into(),
            value: prost::Message::encode_to_vec(&filter),
        };
        let wrapper = Resource {
            name: "x".into(),
            version: "0".into(),
            body: Any {
                type_url: "type.googleapis.com/google.protobuf.Any".into(),
                value: prost::Message::encode_to_vec(&any),
            },
        };
        let rendered = render(&wrapper);
        let keys: Vec<&String> = rendered["rules"]["policies"].as_object().unwrap().keys().collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(keys, sorted.iter().collect::<Vec<_>>(), "{rendered}");
    }

    #[test]
    fn the_policy_extensions_can_be_rendered() {
        for name in [
            "envoy.extensions.filters.http.fault.v3.HTTPFault",
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
            "envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
            "envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash",
            "envoy.extensions.load_balancing_policies.maglev.v3.Maglev",
        ] {
            assert!(POOL.get_message_by_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn an_unknown_type_is_shown_not_hidden() {
        let body = Any { type_url: "type.googleapis.com/example.Unknown".into(), value: vec![] };
        let resource = Resource { name: "x".into(), version: "0".into(), body };
        let rendered = render(&resource);
        assert_eq!(rendered["@type"], "type.googleapis.com/example.Unknown");
        assert!(rendered["renderError"].as_str().unwrap().contains("example.Unknown"), "{rendered}");
    }
}
