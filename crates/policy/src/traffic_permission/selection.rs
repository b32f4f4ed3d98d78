//! Which inbounds of a Dataplane a policy's top-level targetRef selects.
//! Each inbound is selected on its own: a MeshSubset policy applies to the
//! inbounds whose tags match, not to every inbound of a matching proxy.

use std::collections::BTreeMap;

use kodiak_api::Resource;
use serde_json::Value;

use super::policy::{DataplaneRef, Target};

/// A selector value that matches any value of its tag.
const ANY_VALUE: &str = "*";

/// The parts of a Dataplane that top-level targetRefs select by.
#[derive(Debug)]
pub(crate) struct Proxy<'a> {
    pub mesh: &'a str,
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    gateway: bool,
    pub inbounds: Vec<Inbound>,
}

/// One inbound: its tags and the name a `sectionName` refers to it by.
#[derive(Debug)]
pub(crate) struct Inbound {
    section_name: String,
    tags: BTreeMap<String, String>,
}

impl<'a> Proxy<'a> {
    /// Reads a validated Dataplane; its inbounds keep their order.
    pub fn from_resource(dataplane: &'a Resource) -> Proxy<'a> {
        let networking = dataplane.body.get("networking");
        let inbounds = networking
            .and_then(|n| n.get("inbound"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|inbound| {
                let port = inbound.get("port").and_then(Value::as_u64).unwrap_or_default();
                Inbound {
                    section_name: inbound
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|name| !name.is_empty())
                        .map_or_else(|| port.to_string(), str::to_owned),
                    tags: inbound
                        .get("tags")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                        .collect(),
                }
            })
            .collect();
        Proxy {
            mesh: dataplane.key.mesh.as_deref().unwrap_or_default(),
            name: &dataplane.key.name,
            labels: &dataplane.labels,
            gateway: networking.and_then(|n| n.get("gateway")).is_some_and(|g| !g.is_null()),
            inbounds,
        }
    }

    /// Whether `target` selects this proxy's `inbound`.
    pub fn selects(&self, target: &Target, inbound: &Inbound) -> bool {
        match target {
            Target::Tags { selector, sidecars, gateways, .. } => {
                (if self.gateway { *gateways } else { *sidecars }) && tags_match(selector, &inbound.tags)
            }
            Target::Dataplane { by, section_name } => {
                let proxy = match by {
                    DataplaneRef::All => true,
                    DataplaneRef::Nothing => false,
                    DataplaneRef::Name { name, namespace } => name == self.name && namespace.is_empty(),
                    DataplaneRef::Labels(labels) => {
                        labels.iter().all(|(key, value)| self.labels.get(key) == Some(value))
                    }
                };
                proxy && section_name.as_ref().is_none_or(|section| *section == inbound.section_name)
            }
        }
    }
}

/// Every selector tag is among `tags`, with the same value or any value
/// for `*`.
fn tags_match(selector: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(key, wanted)| tags.get(key).is_some_and(|value| wanted == ANY_VALUE || wanted == value))
}
