//! A MeshTrafficPermission read from its resource: which proxies it
//! configures, its `from` entries, and how specific it is.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use kodiak_api::tags::SERVICE_TAG;
use kodiak_api::{FieldPath, Resource, ResourceType, Violations};
use serde_json::{Map, Value};

use super::Action;

/// Policies carrying this label with the value `shadow` do not take effect.
pub const EFFECT_LABEL: &str = "kuma.io/effect";
/// Where a policy was created in a multizone deployment (`global` or `zone`).
const ORIGIN_LABEL: &str = "kuma.io/origin";
/// The name a policy was given by its author, when it is stored under another.
const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";

/// A MeshTrafficPermission as the matcher reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshTrafficPermission {
    pub name: String,
    pub mesh: String,
    pub(crate) target: Target,
    pub(crate) from: Vec<FromEntry>,
    /// Whether the policy uses `spec.rules` (caller matches by SPIFFE ID or
    /// SNI) instead of `spec.from`.
    uses_rules: bool,
    shadow: bool,
    /// Multizone origin rank: policies created on a zone override global ones.
    origin: u8,
    /// The name that breaks ties between equally specific policies.
    display_name: String,
}

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

/// One `from` entry: callers that carry all `callers` tags get `action`.
/// `callers` is `None` when the entry's tags contradict each other (a
/// MeshServiceSubset whose tags name another service), so no caller does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FromEntry {
    pub callers: Option<BTreeMap<String, String>>,
    pub action: Action,
}

impl MeshTrafficPermission {
    /// Reads a stored MeshTrafficPermission. A resource that passed
    /// validation always reads; otherwise the errors name the fields.
    pub fn from_resource(resource: &Resource) -> Result<MeshTrafficPermission, Violations> {
        let mut out = Violations::new();
        let root = FieldPath::root();
        if resource.key.kind != ResourceType::MeshTrafficPermission {
            out.add(&root.field("type"), format!("expected MeshTrafficPermission, got {}", resource.key.kind));
            return Err(out);
        }
        let spec_path = root.field("spec");
        let empty = Map::new();
        let spec = match resource.body.get("spec") {
            Some(Value::Object(spec)) => spec,
            _ => {
                out.add(&spec_path, "must be an object with from or rules");
                &empty
            }
        };
        let target = match spec.get("targetRef") {
            None | Some(Value::Null) => {
                Target::Tags { kind: TopKind::Mesh, selector: BTreeMap::new(), sidecars: true, gateways: true }
            }
            Some(reference) => read_target(reference, &spec_path.field("targetRef"), &mut out),
        };
        let from = list(spec, "from")
            .iter()
            .enumerate()
            .map(|(i, entry)| read_from(entry, &spec_path.field("from").index(i), &mut out))
            .collect();
        let label = |name: &str| resource.labels.get(name).map(String::as_str);
        let permission = MeshTrafficPermission {
            name: resource.key.name.clone(),
            mesh: resource.key.mesh.clone().unwrap_or_default(),
            target,
            from,
            uses_rules: !list(spec, "rules").is_empty(),
            shadow: label(EFFECT_LABEL) == Some("shadow"),
            origin: match label(ORIGIN_LABEL).unwrap_or_default() {
                "global" => 1,
                "" => 2,
                "zone" => 3,
                _ => 0,
            },
            display_name: label(DISPLAY_NAME_LABEL)
                .filter(|name| !name.is_empty())
                .unwrap_or(&resource.key.name)
                .into(),
        };
        out.into_result(permission)
    }

    /// Whether the policy uses `spec.rules`, which Kodiak does not evaluate
    /// yet: an inbound it selects denies every caller, naming it.
    pub fn uses_rules(&self) -> bool {
        self.uses_rules
    }

    /// Whether the policy is labelled `kuma.io/effect: shadow` and so takes
    /// no effect.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// Orders policies from least to most specific: by the kind of the
    /// top-level targetRef; for Dataplane targets, a name over labels over
    /// all Dataplanes, then a sectionName over none; zone-made over global
    /// policies; and last by name, the smaller name being the more specific.
    pub fn specificity(&self, other: &MeshTrafficPermission) -> Ordering {
        self.target
            .kind()
            .cmp(&other.target.kind())
            .then(self.target.dataplane_detail().cmp(&other.target.dataplane_detail()))
            .then(self.origin.cmp(&other.origin))
            .then_with(|| other.display_name.cmp(&self.display_name))
            .then_with(|| other.name.cmp(&self.name))
    }
}

impl Target {
    pub(crate) fn kind(&self) -> TopKind {
        match self {
            Target::Tags { kind, .. } => *kind,
            Target::Dataplane { .. } => TopKind::Dataplane,
        }
    }

    /// How specific a Dataplane target is among Dataplane targets: by what
    /// it picks Dataplanes, then whether it picks one inbound.
    fn dataplane_detail(&self) -> (u8, bool) {
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

fn read_target(reference: &Value, path: &FieldPath, out: &mut Violations) -> Target {
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
        other => {
            out.add(
                &path.field("kind"),
                format!("{other:?} is not a MeshTrafficPermission target; expected Mesh, MeshSubset, MeshService, MeshServiceSubset or Dataplane"),
            );
            Target::Dataplane { by: DataplaneRef::Nothing, section_name: None }
        }
    }
}

fn read_from(entry: &Value, path: &FieldPath, out: &mut Violations) -> FromEntry {
    let reference = entry.get("targetRef").unwrap_or(&Value::Null);
    let reference_path = path.field("targetRef");
    let service = || string(reference, "name").map(str::to_owned);
    let tags =
        |out: &mut Violations| string_map(reference, "tags", &reference_path.field("tags"), out).unwrap_or_default();
    let callers = match string(reference, "kind").unwrap_or_default() {
        "Mesh" => Some(BTreeMap::new()),
        "MeshSubset" => Some(tags(out)),
        "MeshService" | "MeshServiceSubset" => {
            let service = service().unwrap_or_else(|| {
                out.add(&reference_path.field("name"), "must name the calling service");
                String::new()
            });
            let tags = tags(out);
            // A service tag among the tags must agree with the name, else
            // the entry describes no caller.
            tags.get(SERVICE_TAG).is_none_or(|tagged| *tagged == service).then(|| {
                let mut callers = tags;
                callers.insert(SERVICE_TAG.to_owned(), service);
                callers
            })
        }
        other => {
            out.add(
                &reference_path.field("kind"),
                format!("{other:?} cannot name callers; expected Mesh, MeshSubset, MeshService or MeshServiceSubset"),
            );
            None
        }
    };
    let action = match entry.pointer("/default/action").and_then(Value::as_str) {
        Some("Allow") => Action::Allow,
        Some("Deny") => Action::Deny,
        Some("AllowWithShadowDeny") => Action::AllowWithShadowDeny,
        _ => {
            out.add(&path.field("default").field("action"), "must be one of Allow, Deny, AllowWithShadowDeny");
            Action::Deny
        }
    };
    FromEntry { callers, action }
}

fn string<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

fn items(list: &Value) -> &[Value] {
    list.as_array().map_or(&[], Vec::as_slice)
}

fn list<'a>(spec: &'a Map<String, Value>, field: &str) -> &'a [Value] {
    spec.get(field).map_or(&[], items)
}

/// A map of strings, `None` when the field is absent or null.
fn string_map(value: &Value, field: &str, path: &FieldPath, out: &mut Violations) -> Option<BTreeMap<String, String>> {
    let map = value.get(field).filter(|v| !v.is_null())?;
    let Some(map) = map.as_object() else {
        out.add(path, "must be a map of strings");
        return Some(BTreeMap::new());
    };
    let mut read = BTreeMap::new();
    for (key, value) in map {
        match value.as_str() {
            Some(text) => {
                read.insert(key.clone(), text.to_owned());
            }
            None => out.add(&path.key(key), "must be a string"),
        }
    }
    Some(read)
}
