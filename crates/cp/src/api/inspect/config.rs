//! The `_config` answer: the snapshot the control plane last generated for
//! a sidecar, as Envoy's JSON grouped by type:
//!
//! ```text
//! {resource: Meta, generation, xds: {secrets, clusters, endpoints, listeners, routes: [{name, version, resource}]}}
//! ```
//!
//! Private keys and passwords are redacted: the answer is for reading, and
//! nothing in it should grant a workload's identity.

use kodiak_api::Resource;
use kodiak_xds_server::Snapshot;
use kodiak_xds_server::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};
use serde_json::{Map, Value, json};

use super::rules::meta_of;

/// What redacted values read as.
pub const REDACTED: &str = "[redacted]";

/// The groups of the answer, in the order the control plane sends them.
const GROUPS: [(&str, &str); 5] =
    [(SECRET, "secrets"), (CLUSTER, "clusters"), (ENDPOINT, "endpoints"), (LISTENER, "listeners"), (ROUTE, "routes")];

pub fn response(dataplane: &Resource, snapshot: &Snapshot) -> Value {
    let mut xds = Map::new();
    for (type_url, group) in GROUPS {
        xds.insert(group.into(), Value::Array(rendered(snapshot, type_url)));
    }
    for type_url in snapshot.type_urls().filter(|url| !GROUPS.iter().any(|(known, _)| known == url)) {
        xds.insert(type_url.rsplit('/').next().unwrap_or(type_url).into(), Value::Array(rendered(snapshot, type_url)));
    }
    json!({ "resource": meta_of(dataplane), "generation": snapshot.generation(), "xds": xds })
}

fn rendered(snapshot: &Snapshot, type_url: &str) -> Vec<Value> {
    snapshot
        .resources(type_url)
        .values()
        .map(|resource| {
            let mut body = kodiak_xds_gen::render(resource);
            redact(&mut body);
            json!({ "name": resource.name, "version": resource.version, "resource": body })
        })
        .collect()
}

/// Replaces every private key and password in Envoy JSON (either naming
/// style: `privateKey`, `private_key`) with [`REDACTED`], keeping where
/// it was.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                if matches!(key.as_str(), "privateKey" | "private_key" | "password") {
                    *inner = json!({ "inlineString": REDACTED });
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, TlsCertificate, secret};
    use kodiak_xds_server::Resource as XdsResource;

    use super::*;

    fn dataplane() -> Resource {
        Resource::from_document(&json!({
            "type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"address": "127.0.0.1", "inbound": [{"port": 10001, "servicePort": 8080,
                "tags": {"kuma.io/service": "web"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn groups_by_type_and_redacts_private_keys() {
        let key = DataSource {
            specifier: Some(Specifier::InlineString("-----BEGIN PRIVATE KEY-----".into())),
            ..Default::default()
        };
        let cert = DataSource {
            specifier: Some(Specifier::InlineString("-----BEGIN CERTIFICATE-----".into())),
            ..Default::default()
        };
        let secret = Secret {
            name: "identity".into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(cert),
                private_key: Some(key),
                ..Default::default()
            })),
        };
        let snapshot = Snapshot::new(7)
            .with(SECRET, [XdsResource::new("identity", &secret)])
            .with(CLUSTER, [XdsResource::new("backend", &Cluster { name: "backend".into(), ..Default::default() })]);
        let answer = response(&dataplane(), &Arc::new(snapshot));
        assert_eq!(answer["generation"], 7);
        assert_eq!(answer["resource"]["name"], "web-1");
        assert_eq!(answer["xds"]["clusters"][0]["resource"], json!({"name": "backend"}));
        assert_eq!(answer["xds"]["listeners"], json!([]));
        let tls = &answer["xds"]["secrets"][0]["resource"]["tlsCertificate"];
        assert_eq!(tls["privateKey"], json!({"inlineString": REDACTED}), "{answer:#}");
        assert_eq!(tls["certificateChain"]["inlineString"], "-----BEGIN CERTIFICATE-----");
        assert!(!answer.to_string().contains("PRIVATE KEY"), "{answer:#}");
    }
}
