//! Top-level `targetRef`s: which proxies, and which of their inbounds, a
//! policy configures.
//!
//! Each inbound is selected on its own: a MeshSubset policy applies to the
//! inbounds whose tags match, not to every inbound of a matching proxy. A
//! whole proxy is selected when the target picks it as such (Mesh, a
//! Dataplane without sectionName) or picks at least one of its inbounds (or
//! its gateway's tags).

use std::collections::BTreeMap;

use kodiak_api::tags::SERVICE_TAG;
use kodiak_api::{FieldPath, Resource, Violations};
use serde_json::Value;

use crate::fields::{items, string, string_map};

/// A selector value that matches any value of its tag.
const ANY_VALUE: &str = "*";

/// Which proxies, and which of their inbounds, a policy configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Inbounds whose tags include `selector` (Mesh, MeshSubset,
    /// MeshService, MeshServiceSubset), on the proxy types listed.
    Tags { kind: TopKind, selector: BTreeMap<String, String>, sidecars: bool, gateways: bool },
    /// Inbounds of Dataplanes picked by name or labels, optionally one
    /// inbound by its section name.
    Dataplane { by: DataplaneRef, section_name: Option<String> },
}

/// The top-level targetRef kinds, least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TopKind {
    Mesh,
    Dataplane,
    MeshSubset,
    MeshService,
    MeshServiceSubset,
    MeshHTTPRoute,
}

/// How a `Dataplane` targetRef picks Dataplanes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataplaneRef {
    /// Neither name nor labels: every Dataplane.
    All,
    /// A namespace without a name selects nothing in universal mode.
    Nothing,
    Labels(BTreeMap<String, String>),
    /// Dataplanes have no namespace in universal mode: a namespace other
    /// than the empty one selects nothing.
    Name {
        name: String,
        namespace: String,
    },
}

impl Target {
    /// The target of a policy without a top-level targetRef: every proxy.
    pub(crate) fn mesh() -> Target {
        Target::Tags { kind: TopKind::Mesh, selector: BTreeMap::new(), sidecars: true, gateways: true }
    }

    /// Reads the top-level `targetRef` of a policy of type `policy_type`
    /// (named in errors); absent or null means the whole mesh.
    pub(crate) fn read(reference: Option<&Value>, policy_type: &str, path: &FieldPath, out: &mut Violations) -> Target {
        match reference {
            None | Some(Value::Null) => Target::mesh(),
            Some(reference) => read_target(reference, policy_type, path, out, false),
        }
    }

    /// Like [`Target::read`], and also reads `MeshGateway` targets (which
    /// select nothing: Kodiak runs no built-in gateways) and `MeshHTTPRoute`
    /// ones, returned with the route's name: such a target ranks as the
    /// most specific kind but selects nothing by itself (a tag target on no
    /// proxy type); which proxies it reaches is up to the route.
    pub(crate) fn read_with_routes(
        reference: Option<&Value>,
        policy_type: &str,
        path: &FieldPath,
        out: &mut Violations,
    ) -> (Target, Option<String>) {
        match reference {
            Some(reference) if string(reference, "kind") == Some("MeshHTTPRoute") => {
                let name = string(reference, "name").unwrap_or_default().to_owned();
                let target = Target::Tags {
                    kind: TopKind::MeshHTTPRoute,
                    selector: BTreeMap::new(),
                    sidecars: false,
                    gateways: false,
                };
                (target, Some(name))
            }
            None | Some(Value::Null) => (Target::mesh(), None),
            Some(reference) => (read_target(reference, policy_type, path, out, true), None),
        }
    }

    pub(crate) fn kind(&self) -> TopKind {
        match self {
            Target::Tags { kind, .. } => *kind,
            Target::Dataplane { .. } => TopKind::Dataplane,
        }
    }

    /// How specific a Dataplane target is among Dataplane targets: by what
    /// it picks Dataplanes, then whether it picks one inbound.
    pub(crate) fn dataplane_detail(&self) -> (u8, bool) {
        match self {
            Target::Tags { .. } => (0, false),
            Target::Dataplane { by, section_name } => {
                let rank = match by {
                    DataplaneRef::All | DataplaneRef::Nothing => 0,
                    DataplaneRef::Labels(_) => 1,
                    DataplaneRef::Name { .. } => 2,
                };
                (rank, section_name.is_some())
            }
        }
    }
}

fn read_target(reference: &Value, policy_type: &str, path: &FieldPath, out: &mut Violations, gateways: bool) -> Target {
    let kind = string(reference, "kind").unwrap_or_default();
    let name = || string(reference, "name").unwrap_or_default().to_owned();
    let tags = |out: &mut Violations| string_map(reference, "tags", &path.field("tags"), out).unwrap_or_default();
    let proxy_types: Vec<&str> =
        reference.get("proxyTypes").map_or(&[][..], items).iter().filter_map(Value::as_str).collect();
    let tag_target = |kind, selector| Target::Tags {
        kind,
        selector,
        sidecars: proxy_types.is_empty() || proxy_types.contains(&"Sidecar"),
        gateways: proxy_types.is_empty() || proxy_types.contains(&"Gateway"),
    };
    match kind {
        "Mesh" => tag_target(TopKind::Mesh, BTreeMap::new()),
        "MeshSubset" => tag_target(TopKind::MeshSubset, tags(out)),
        "MeshService" => tag_target(TopKind::MeshService, BTreeMap::from([(SERVICE_TAG.to_owned(), name())])),
        "MeshServiceSubset" => {
            // The tags are laid over the service, as the proxy's tags are matched.
            let mut selector = BTreeMap::from([(SERVICE_TAG.to_owned(), name())]);
            selector.extend(tags(out));
            tag_target(TopKind::MeshServiceSubset, selector)
        }
        "Dataplane" => {
            let labels = string_map(reference, "labels", &path.field("labels"), out);
            let namespace = string(reference, "namespace").unwrap_or_default().to_owned();
            let by = match (string(reference, "name").filter(|n| !n.is_empty()), labels) {
                (Some(name), _) => DataplaneRef::Name { name: name.to_owned(), namespace },
                (None, Some(labels)) => DataplaneRef::Labels(labels),
                (None, None) if namespace.is_empty() => DataplaneRef::All,
                (None, None) => DataplaneRef::Nothing,
            };
            let section_name = string(reference, "sectionName").filter(|s| !s.is_empty()).map(str::to_owned);
            Target::Dataplane { by, section_name }
        }
        "MeshGateway" if gateways => Target::Dataplane { by: DataplaneRef::Nothing, section_name: None },
        other => {
            out.add(
                &path.field("kind"),
                format!("{other:?} is not a {policy_type} target; expected Mesh, MeshSubset, MeshService, MeshServiceSubset or Dataplane"),
            );
            Target::Dataplane { by: DataplaneRef::Nothing, section_name: None }
        }
    }
}

/// The parts of a Dataplane that top-level targetRefs select by.
#[derive(Debug)]
pub(crate) struct Proxy<'a> {
    pub mesh: &'a str,
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    /// The gateway's tags, for a gateway proxy.
    gateway: Option<BTreeMap<String, String>>,
    pub inbounds: Vec<Inbound>,
}

/// One inbound: its port, tags and the name a `sectionName` refers to it by.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub port: u16,
    pub section_name: String,
    pub tags: BTreeMap<String, String>,
}

/// The string values of a `tags` object.
fn read_tags(holder: &Value) -> BTreeMap<String, String> {
    holder
        .get("tags")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
        .collect()
}

impl<'a> Proxy<'a> {
    /// Reads a validated Dataplane; its inbounds keep their order.
    pub fn from_resource(dataplane: &'a Resource) -> Proxy<'a> {
        let networking = dataplane.body.get("networking");
        let inbounds = networking
            .and_then(|n| n.get("inbound"))
            .map_or(&[][..], items)
            .iter()
            .map(|inbound| {
                let port = inbound.get("port").and_then(Value::as_u64).unwrap_or_default();
                Inbound {
                    port: u16::try_from(port).unwrap_or_default(),
                    section_name: inbound
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|name| !name.is_empty())
                        .map_or_else(|| port.to_string(), str::to_owned),
                    tags: read_tags(inbound),
                }
            })
            .collect();
        Proxy {
            mesh: dataplane.key.mesh.as_deref().unwrap_or_default(),
            name: &dataplane.key.name,
            labels: &dataplane.labels,
            gateway: networking.and_then(|n| n.get("gateway")).filter(|g| !g.is_null()).map(read_tags),
            inbounds,
        }
    }

    /// The `kuma.io/service` values of its inbounds and gateway: the only
    /// services a service-specific target can pick it by.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        let gateway = self.gateway.as_ref().and_then(|tags| tags.get(SERVICE_TAG));
        self.inbounds.iter().filter_map(|inbound| inbound.tags.get(SERVICE_TAG)).chain(gateway).map(String::as_str)
    }

    /// Whether `target` selects this proxy's `inbound`.
    pub fn selects(&self, target: &Target, inbound: &Inbound) -> bool {
        match target {
            Target::Tags { selector, .. } => self.of_type(target) && tags_match(selector, &inbound.tags),
            Target::Dataplane { section_name, .. } => {
                self.picked(target) && section_name.as_ref().is_none_or(|section| *section == inbound.section_name)
            }
        }
    }

    /// Whether `target` selects this proxy as a whole, for policies that
    /// shape its outgoing traffic: Mesh and Dataplane targets without
    /// sectionName pick the proxy itself; the others pick it when they pick
    /// one of its inbounds or a gateway's tags match.
    pub fn selects_proxy(&self, target: &Target) -> bool {
        match target {
            Target::Tags { selector, .. } if selector.is_empty() => self.of_type(target),
            Target::Dataplane { section_name: None, .. } => self.picked(target),
            Target::Tags { selector, .. } => {
                let gateway = self.gateway.as_ref().is_some_and(|tags| tags_match(selector, tags));
                gateway && self.of_type(target) || self.inbounds.iter().any(|inbound| self.selects(target, inbound))
            }
            Target::Dataplane { .. } => self.inbounds.iter().any(|inbound| self.selects(target, inbound)),
        }
    }

    /// Whether a tag target applies to this kind of proxy (its proxyTypes).
    fn of_type(&self, target: &Target) -> bool {
        match target {
            Target::Tags { sidecars, gateways, .. } => {
                if self.gateway.is_some() {
                    *gateways
                } else {
                    *sidecars
                }
            }
            Target::Dataplane { .. } => true,
        }
    }

    /// Whether a Dataplane target picks this Dataplane, by name or labels.
    fn picked(&self, target: &Target) -> bool {
        match target {
            Target::Tags { .. } => true,
            Target::Dataplane { by, .. } => match by {
                DataplaneRef::All => true,
                DataplaneRef::Nothing => false,
                DataplaneRef::Name { name, namespace } => name == self.name && namespace.is_empty(),
                DataplaneRef::Labels(labels) => labels.iter().all(|(key, value)| self.labels.get(key) == Some(value)),
            },
        }
    }
}

/// Every selector tag is among `tags`, with the same value or any value
/// for `*`.
fn tags_match(selector: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(key, wanted)| tags.get(key).is_some_and(|value| wanted == ANY_VALUE || wanted == value))
}
