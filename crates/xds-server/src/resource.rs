//! One encoded xDS resource, shared by every snapshot that holds it.

use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use crate::version::Fnv1a;

/// One xDS resource, encoded once and shared (`Arc`) by every snapshot that holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// The name Envoy subscribes to and that responses carry.
    pub name: String,
    /// 16 hex digits that change exactly when the encoded bytes change.
    pub version: String,
    /// The encoded message with its type URL.
    pub body: Any,
}

impl Resource {
    /// Encodes `message`; the version is an FNV-1a 64 hash of its type URL and encoded bytes.
    ///
    /// prost encodes protobuf map fields in arbitrary order, so a message with a
    /// multi-entry map gets an unstable version: build such messages without maps.
    pub fn new<M: prost::Message + prost::Name>(name: impl Into<String>, message: &M) -> Arc<Resource> {
        let body = Any { type_url: M::type_url(), value: message.encode_to_vec() };
        let version = Fnv1a::new().field(body.type_url.as_bytes()).field(&body.value).hex();
        Arc::new(Resource { name: name.into(), version, body })
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    use super::*;
    use crate::type_url;

    fn cluster(name: &str, timeout_nanos: i32) -> Arc<Resource> {
        let connect_timeout = Some(envoy_types::pb::google::protobuf::Duration { seconds: 1, nanos: timeout_nanos });
        Resource::new(name, &Cluster { name: name.into(), connect_timeout, ..Default::default() })
    }

    #[test]
    fn version_changes_only_with_the_bytes() {
        assert_eq!(cluster("a", 0).version, cluster("a", 0).version);
        assert_ne!(cluster("a", 0).version, cluster("a", 1).version);
        assert_eq!(cluster("a", 0).body.type_url, type_url::CLUSTER);
        assert_eq!(cluster("a", 0).version.len(), 16);
    }
}
