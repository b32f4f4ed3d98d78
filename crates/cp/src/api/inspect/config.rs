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

/// Hides what would let a reader act as the proxy: private keys and
/// passwords (either naming style: `privateKey`, `private_key`) become
/// [`REDACTED`] where they were, and so does the dataplane token, in the
/// `authorization` entry of gRPC `initial_metadata` and wherever else its
/// text appears.
pub fn redact(value: &mut Value) {
    let mut tokens = Vec::new();
    redact_secrets(value, &mut tokens);
    tokens.retain(|token| !token.is_empty() && token != REDACTED);
    if !tokens.is_empty() {
        redact_text(value, &tokens);
    }
}

fn redact_secrets(value: &mut Value, tokens: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                match key.as_str() {
                    "privateKey" | "password" => *inner = json!({ "inlineString": REDACTED }),
                    "private_key" => *inner = json!({ "inline_string": REDACTED }),
                    "initial_metadata" | "initialMetadata" => {
                        for entry in inner.as_array_mut().into_iter().flatten() {
                            if entry.get("key").and_then(Value::as_str) == Some("authorization")
                                && let Some(token) = entry.get_mut("value")
                            {
                                tokens.extend(token.as_str().map(str::to_owned));
                                *token = REDACTED.into();
                            }
                        }
                    }
                    _ => redact_secrets(inner, tokens),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact_secrets(item, tokens)),
        _ => {}
    }
}

fn redact_text(value: &mut Value, tokens: &[String]) {
    match value {
        Value::String(text) if tokens.iter().any(|token| text.contains(token.as_str())) => {
            *text = tokens.iter().fold(text.clone(), |text, token| text.replace(token.as_str(), REDACTED));
        }
        Value::Object(object) => object.values_mut().for_each(|inner| redact_text(inner, tokens)),
        Value::Array(items) => items.iter_mut().for_each(|item| redact_text(item, tokens)),
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

    #[test]
    fn the_dataplane_token_is_redacted_wherever_it_appears() {
        let mut dump = json!({"configs": [{"bootstrap": {
            "dynamic_resources": {"ads_config": {"grpc_services": [{"initial_metadata": [
                {"key": "x-other", "value": "kept"},
                {"key": "authorization", "value": "eyJtoken"},
            ]}]}},
            "node": {"metadata": {"copy": "Bearer eyJtoken"}},
        }}, {"secrets": [{"private_key": {"inline_bytes": "a2V5"}}]}]});
        redact(&mut dump);
        let metadata = &dump["configs"][0]["bootstrap"]["dynamic_resources"]["ads_config"]["grpc_services"][0];
        assert_eq!(metadata["initial_metadata"][0]["value"], "kept");
        assert_eq!(metadata["initial_metadata"][1]["value"], REDACTED);
        assert_eq!(dump["configs"][0]["bootstrap"]["node"]["metadata"]["copy"], "Bearer [redacted]");
        assert_eq!(dump["configs"][1]["secrets"][0]["private_key"], json!({"inline_string": REDACTED}));
        assert!(!dump.to_string().contains("eyJtoken"), "{dump:#}");
    }
}
