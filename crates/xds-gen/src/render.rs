//! Resources as Envoy's JSON (proto3 JSON mapping, `Any` fields expanded
//! with their `@type`), for golden tests and for showing users what their
//! proxy got. The descriptors come from the Envoy protos compiled in build.rs.

use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use kodiak_xds_server::Resource;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
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
    let message = DynamicMessage::decode(descriptor, any.value.as_slice())
        .map_err(|source| RenderError::Decode { type_name: type_name.to_owned(), source })?;
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|source| RenderError::Json { type_name: type_name.to_owned(), source })
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
    fn an_unknown_type_is_shown_not_hidden() {
        let body = Any { type_url: "type.googleapis.com/example.Unknown".into(), value: vec![] };
        let resource = Resource { name: "x".into(), version: "0".into(), body };
        let rendered = render(&resource);
        assert_eq!(rendered["@type"], "type.googleapis.com/example.Unknown");
        assert!(rendered["renderError"].as_str().unwrap().contains("example.Unknown"), "{rendered}");
    }
}
