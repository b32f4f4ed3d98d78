//! Which Dataplanes a policy shapes: those where it is among the origins of
//! some conf (proxy, outbound, inbound caller group or matched rule), or,
//! for a MeshTrafficPermission, where it decides for some callers of an
//! inbound.

use kodiak_api::{Resource, ResourceType};
use kodiak_policy::rules::{Conf, TypeRules};
use serde_json::Value;

use super::Inspected;

/// Whether the policy `kind`/`name` shapes the inspected proxy.
pub fn is_affected(inspected: &Inspected<'_>, kind: ResourceType, name: &str) -> bool {
    if kind == ResourceType::MeshTrafficPermission {
        let permissions = inspected.permissions.iter().flatten();
        return permissions.flat_map(|inbound| &inbound.rules).any(|rule| rule.policy == name);
    }
    inspected
        .rules
        .types
        .get(&kind)
        .is_some_and(|rules| confs(rules).any(|conf| conf.origins.iter().any(|o| o == name)))
}

/// Every conf of one type's rules.
fn confs(rules: &TypeRules) -> impl Iterator<Item = &Conf> {
    let to = rules.to.mesh.iter().chain(rules.to.services.values()).chain(rules.to.routes.values());
    let from = rules.from.iter().flat_map(|inbound| {
        let callers = inbound.callers.iter().map(|caller| &caller.conf);
        let matched = inbound.matched.iter().map(|matched| &matched.conf);
        inbound.conf.iter().chain(callers).chain(matched)
    });
    rules.proxy.iter().chain(to).chain(from)
}

/// A list item: the Dataplane's `{type, mesh, name, labels}`.
pub fn item(dataplane: &Resource) -> Value {
    super::rules::meta_of(dataplane)
}
