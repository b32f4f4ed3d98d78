//! The `to` half of a policy type: for one proxy, the effective `default`
//! conf toward each destination service, and the policies it comes from.
//!
//! How the policies of one type add up for a proxy:
//!
//! 1. A policy applies when its top-level `targetRef` selects the proxy:
//!    `Mesh` (or no targetRef) and `Dataplane` without `sectionName` pick
//!    the proxy itself; `MeshSubset`, `MeshService`, `MeshServiceSubset`
//!    and `Dataplane` with `sectionName` pick it when they pick one of its
//!    inbounds (a gateway also by its own tags). Policies of another mesh,
//!    and those labelled `kuma.io/effect: shadow`, apply nowhere.
//! 2. The applying policies are ordered from least to most specific (kind of
//!    the top-level targetRef, Dataplane details, origin, then name: the
//!    smaller name is the more specific) and their `to` entries listed in
//!    that order, each policy's in its own order.
//! 3. Toward a service, the `default` confs of the entries that cover it
//!    are merged in that order (see [`crate::merge`]): `Mesh` covers every
//!    destination, `MeshService` the service it names. The kind of the `to`
//!    entry does not rank it; only the policy order does.
//!
//! Not evaluated yet: `to` entries of kind `MeshHTTPRoute`,
//! `MeshExternalService` and `MeshMultiZoneService`, and `MeshService`
//! entries that pick MeshService resources by labels, namespace or
//! sectionName rather than by service name. Such entries are skipped.

use std::collections::BTreeMap;

use kodiak_api::{FieldPath, Resource, Violations};
use serde_json::{Map, Value};

use crate::fields::{list, string};
use crate::merge::merge;
use crate::order::{Rank, specificity};
use crate::target::{Proxy, Target};

/// The `to` kinds that are valid in policies but not evaluated yet.
const NOT_YET_EVALUATED: [&str; 3] = ["MeshHTTPRoute", "MeshExternalService", "MeshMultiZoneService"];

/// An effective conf and the policies it was merged from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToConf {
    /// The merged `default` confs, an object.
    pub conf: Value,
    /// The names of the contributing policies, least specific first, each
    /// once.
    pub origins: Vec<String>,
}

/// The `to` confs of one policy type for one proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToRules {
    /// The conf toward any destination no `MeshService` entry names: the
    /// merge of the `Mesh` entries only. `None` when there are none.
    pub mesh: Option<ToConf>,
    /// The conf toward each service some applying `MeshService` entry names,
    /// by `kuma.io/service`. It includes the `Mesh` entries, in policy order.
    pub services: BTreeMap<String, ToConf>,
    /// Policies that could not be read (a stored policy always reads), by
    /// name, with what is wrong. They are left out; the others still apply.
    pub unreadable: Vec<(String, Violations)>,
}

impl ToRules {
    /// The conf toward `service`: its own, else the mesh-wide one.
    pub fn for_service(&self, service: &str) -> Option<&ToConf> {
        self.services.get(service).or(self.mesh.as_ref())
    }
}

/// What a `to` entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// Every destination.
    Mesh,
    /// The service with this `kuma.io/service`.
    Service(String),
    /// A kind not evaluated yet: nothing, for now.
    Skipped,
}

/// One applying policy, as this module reads it.
struct ToPolicy<'a> {
    name: &'a str,
    target: Target,
    rank: Rank,
    to: Vec<(Destination, &'a Value)>,
}

/// The `to` confs for `dataplane` (a stored Dataplane) under `policies`, the
/// resources of one policy type with `spec.targetRef` and `spec.to`. The
/// order of `policies` does not matter.
pub fn to_rules(dataplane: &Resource, policies: &[Resource]) -> ToRules {
    let proxy = Proxy::from_resource(dataplane);
    let mut rules = ToRules::default();
    let mut applying = Vec::new();
    for resource in policies.iter().filter(|policy| policy.key.mesh.as_deref().unwrap_or_default() == proxy.mesh) {
        match read_policy(resource) {
            Ok(policy) if !policy.rank.is_shadow() && proxy.selects_proxy(&policy.target) => applying.push(policy),
            Ok(_) => {}
            Err(violations) => rules.unreadable.push((resource.key.name.clone(), violations)),
        }
    }
    applying.sort_by(|a, b| specificity((&a.target, &a.rank), (&b.target, &b.rank)));
    let entries: Vec<(&str, &Destination, &Value)> = applying
        .iter()
        .flat_map(|policy| policy.to.iter().map(move |(destination, conf)| (policy.name, destination, *conf)))
        .collect();
    rules.mesh = merged(entries.iter().filter(|(_, destination, _)| **destination == Destination::Mesh));
    for (_, destination, _) in &entries {
        let Destination::Service(service) = destination else { continue };
        if rules.services.contains_key(service) {
            continue;
        }
        let covering = entries.iter().filter(|(_, covers, _)| match covers {
            Destination::Mesh => true,
            Destination::Service(name) => name == service,
            Destination::Skipped => false,
        });
        if let Some(conf) = merged(covering) {
            rules.services.insert(service.clone(), conf);
        }
    }
    rules
}

/// Merges the confs of `entries` in order; `None` for no entries.
fn merged<'e, 'a: 'e>(entries: impl Iterator<Item = &'e (&'a str, &'a Destination, &'a Value)>) -> Option<ToConf> {
    let mut out: Option<ToConf> = None;
    for (policy, _, conf) in entries {
        let to = out.get_or_insert_with(|| ToConf { conf: Value::Object(Map::new()), origins: Vec::new() });
        merge(&mut to.conf, conf);
        if to.origins.last().is_none_or(|last| last != policy) {
            to.origins.push((*policy).to_owned());
        }
    }
    out
}

fn read_policy(resource: &Resource) -> Result<ToPolicy<'_>, Violations> {
    let mut out = Violations::new();
    let spec_path = FieldPath::root().field("spec");
    let policy_type = resource.key.kind.to_string();
    let Some(Value::Object(spec)) = resource.body.get("spec") else {
        out.add(&spec_path, "must be an object with targetRef and to");
        return Err(out);
    };
    let target = Target::read(spec.get("targetRef"), &policy_type, &spec_path.field("targetRef"), &mut out);
    let to = list(spec, "to")
        .iter()
        .enumerate()
        .map(|(i, entry)| read_to(entry, &spec_path.field("to").index(i), &mut out))
        .collect();
    let policy = ToPolicy { name: &resource.key.name, target, rank: Rank::from_resource(resource), to };
    out.into_result(policy)
}

fn read_to<'a>(entry: &'a Value, path: &FieldPath, out: &mut Violations) -> (Destination, &'a Value) {
    let reference = entry.get("targetRef").unwrap_or(&Value::Null);
    let destination = match string(reference, "kind").unwrap_or_default() {
        "Mesh" => Destination::Mesh,
        "MeshService" => match string(reference, "name").filter(|name| !name.is_empty()) {
            Some(name) => Destination::Service(name.to_owned()),
            None if reference.get("labels").is_some() => Destination::Skipped,
            None => {
                out.add(&path.field("targetRef").field("name"), "must name the destination service");
                Destination::Skipped
            }
        },
        kind if NOT_YET_EVALUATED.contains(&kind) => Destination::Skipped,
        other => {
            out.add(
                &path.field("targetRef").field("kind"),
                format!("{other:?} cannot name a destination; expected Mesh or MeshService"),
            );
            Destination::Skipped
        }
    };
    let conf = entry.get("default").unwrap_or(&Value::Null);
    if !conf.is_object() {
        out.add(&path.field("default"), "must be an object");
    }
    (destination, conf)
}

#[cfg(test)]
mod tests;
