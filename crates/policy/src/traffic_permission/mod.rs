//! MeshTrafficPermission: for each inbound of a proxy, which callers are
//! allowed, denied or allowed with a shadow deny, and which policy decided
//! each of them. Callers are told apart by the tags in their mTLS identity.
//!
//! How the policies of a mesh add up (as in Kuma 2.x, so Kuma manifests
//! keep their meaning):
//!
//! 1. A policy applies to an inbound when its top-level `targetRef` selects
//!    it: `Mesh` (or no targetRef) every inbound, `MeshSubset` the inbounds
//!    whose tags include its tags, `MeshService` the inbounds of that
//!    `kuma.io/service`, `MeshServiceSubset` both, `Dataplane` the inbounds
//!    of the Dataplanes it names (by name or labels; `sectionName` picks one
//!    inbound by its name or port). Policies labelled `kuma.io/effect:
//!    shadow` apply nowhere.
//! 2. The applying policies are ordered from least to most specific (see
//!    [`MeshTrafficPermission::specificity`]) and their `from` entries are
//!    listed in that order, each policy's in its own order.
//! 3. Each caller gets the action of the last entry whose targetRef covers
//!    it: `Mesh` covers every caller, `MeshSubset` those carrying its tags,
//!    `MeshService` those of that service, `MeshServiceSubset` both.
//!    Callers no entry covers are denied; an inbound no policy selects
//!    denies everyone. A caller whose inbounds give a tag several values
//!    carries each of them: `team: red` covers a caller with `team: blue`
//!    on one inbound and `team: red` on another.
//!
//! Policies written with `spec.rules` (caller matches by SPIFFE ID or SNI)
//! take over the inbounds they select: there, the `from` entries of other
//! policies no longer apply. Kodiak does not evaluate `spec.rules` yet, so
//! such an inbound denies every caller and names the policy, rather than let
//! the `from` entries decide.
//!
//! The work per inbound is bounded by [`MAX_STEPS`]; callers beyond what it
//! covers get no rule and are denied.

mod partition;
mod policy;
#[cfg(test)]
mod tests;

use kodiak_api::Resource;

pub use crate::order::EFFECT_LABEL;
pub use partition::MAX_STEPS;
pub use policy::MeshTrafficPermission;

use crate::target::Proxy;
use partition::{Entry, disjoint_rules};

/// What a permission decides for the callers it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
    /// Allowed, while Envoy's shadow rules record that a deny would apply.
    AllowWithShadowDeny,
}

/// One condition on the caller's identity: its certificate carries (or,
/// when `negated`, does not carry) the tag `key` with `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagCondition {
    pub key: String,
    pub value: String,
    pub negated: bool,
}

/// A set of callers: those that meet every condition. No condition means
/// every caller in the mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Callers(pub Vec<TagCondition>);

/// The decision for one set of callers and the policy it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRule {
    pub callers: Callers,
    pub action: Action,
    /// The name of the MeshTrafficPermission that decided: the one whose
    /// `from` entry gave the action (or the `spec.rules` policy that made the
    /// inbound deny everyone).
    pub policy: String,
}

/// The permissions of one inbound. The rules' caller sets are disjoint; a
/// caller no rule covers is denied. Rules with more positive conditions come
/// first; the order is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundPermissions {
    pub rules: Vec<PermissionRule>,
}

impl std::fmt::Display for TagCondition {
    /// `key=value`, or `!key=value` when negated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}={}", if self.negated { "!" } else { "" }, self.key, self.value)
    }
}

impl std::fmt::Display for PermissionRule {
    /// `[conditions] Action policy`, e.g. `[kuma.io/service=web !version=v1] Deny web-v1-only`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conditions: Vec<String> = self.callers.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}] {:?} {}", conditions.join(" "), self.action, self.policy)
    }
}

/// The permissions of every inbound of `dataplane` (a validated Dataplane
/// resource), in the order of its `networking.inbound` list (the order of
/// `DataplaneView::inbounds`), under the mesh's `policies`. Policies of
/// other meshes are ignored.
pub fn proxy_permissions(policies: &[MeshTrafficPermission], dataplane: &Resource) -> Vec<InboundPermissions> {
    let proxy = Proxy::from_resource(dataplane);
    let mut in_force: Vec<&MeshTrafficPermission> =
        policies.iter().filter(|policy| !policy.is_shadow() && policy.mesh == proxy.mesh).collect();
    in_force.sort_by(|a, b| a.specificity(b));
    proxy
        .inbounds
        .iter()
        .map(|inbound| {
            let selecting: Vec<&MeshTrafficPermission> =
                in_force.iter().copied().filter(|policy| proxy.selects(&policy.target, inbound)).collect();
            inbound_permissions(&selecting)
        })
        .collect()
}

/// The permissions of one inbound under the policies that select it, least
/// specific first.
fn inbound_permissions(selecting: &[&MeshTrafficPermission]) -> InboundPermissions {
    if let Some(policy) = selecting.iter().rev().find(|policy| policy.uses_rules()) {
        let rule = PermissionRule { callers: Callers::default(), action: Action::Deny, policy: policy.name.clone() };
        return InboundPermissions { rules: vec![rule] };
    }
    let entries: Vec<Entry> = selecting
        .iter()
        .flat_map(|policy| {
            policy.from.iter().filter_map(|from| {
                Some(Entry { tags: from.callers.as_ref()?, action: from.action, policy: &policy.name })
            })
        })
        .collect();
    InboundPermissions { rules: disjoint_rules(&entries).0 }
}
