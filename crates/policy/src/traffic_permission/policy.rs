//! A MeshTrafficPermission read from its resource: which proxies it
//! configures, its `from` entries, and how specific it is.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use kodiak_api::tags::SERVICE_TAG;
use kodiak_api::{FieldPath, Resource, ResourceType, Violations};
use serde_json::{Map, Value};

use super::Action;
use crate::fields::{list, string, string_map};
use crate::order::{Rank, specificity};
pub(crate) use crate::target::Target;
#[cfg(test)]
pub(crate) use crate::target::{DataplaneRef, TopKind};

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
    rank: Rank,
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
        let target =
            Target::read(spec.get("targetRef"), "MeshTrafficPermission", &spec_path.field("targetRef"), &mut out);
        let from = list(spec, "from")
            .iter()
            .enumerate()
            .map(|(i, entry)| read_from(entry, &spec_path.field("from").index(i), &mut out))
            .collect();
        let permission = MeshTrafficPermission {
            name: resource.key.name.clone(),
            mesh: resource.key.mesh.clone().unwrap_or_default(),
            target,
            from,
            uses_rules: !list(spec, "rules").is_empty(),
            rank: Rank::from_resource(resource),
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
        self.rank.is_shadow()
    }

    /// Orders policies from least to most specific: by the kind of the
    /// top-level targetRef; for Dataplane targets, a name over labels over
    /// all Dataplanes, then a sectionName over none; zone-made over global
    /// policies; and last by name, the smaller name being the more specific.
    pub fn specificity(&self, other: &MeshTrafficPermission) -> Ordering {
        specificity((&self.target, &self.rank), (&other.target, &other.rank))
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
