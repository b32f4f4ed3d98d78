//! MeshProxyPatch: modifications of the Envoy resources Kodiak generates
//! for a proxy, applied last, to its finished resources.
//!
//! A modification works on clusters, listeners, the network filters of a
//! listener's filter chains, the HTTP filters of its HTTP connection
//! managers, or the virtual hosts of route configurations (those fetched
//! over RDS and those inline in listeners). It selects them with `match`
//! and adds, removes or patches them; a patch is either a protobuf merge
//! with `value` (Envoy YAML or JSON of the message) or RFC 6902 JSON
//! patches on the message's Envoy JSON (camelCase field names, durations
//! as `"5s"`, 64-bit integers as strings, `Any`s with their `@type`:
//! exactly what the proxy's config dump shows).
//!
//! `match.origin` names which part of Kodiak generated a resource, by its
//! name: `inbound` for the `inbound:...` listeners and clusters (and the
//! route configurations inside inbound listeners), `outbound` for the
//! `outbound:...` listeners and route configurations and for the cluster
//! of each service the proxy calls, `mesh-proxy-patch` for what a
//! modification added.
//!
//! A modification that does not apply to a resource (a JSON patch path
//! that does not exist, a failing `test`, a result that is not a valid
//! Envoy message) leaves that resource as it was and is reported as a
//! [`PatchError`]; the other resources, and the other modifications, still
//! apply. Whether Envoy accepts the result (its own validation rules, such
//! as a positive `connectTimeout`) is for Envoy to say when it loads it.

mod conf;
mod json_patch;
mod message;
mod modify;
mod resources;
mod validate;

use std::collections::BTreeMap;
use std::fmt;

pub use conf::{Conf, JsonPatch, Match, Modification, Operation, Source, Target, read, read_policies};
pub use validate::{check_resource, validate};

use kodiak_api::dataplane_view::DataplaneView;
use kodiak_api::tags::SERVICE_TAG;

use crate::{ProxyResources, names};

/// The tags of what each generated listener serves, by listener name: an
/// inbound's tags, an outbound's service (`kuma.io/service`). `listener`
/// matches by `tags` and `networkFilter`/`httpFilter` matches by
/// `listenerTags` select by them.
pub type ListenerTags = BTreeMap<String, BTreeMap<String, String>>;

/// The [`ListenerTags`] of `dataplane`'s generated listeners.
pub fn listener_tags(dataplane: &DataplaneView) -> ListenerTags {
    let inbounds = dataplane
        .inbounds
        .iter()
        .map(|inbound| (names::inbound_listener(&inbound.address, inbound.port), inbound.tags.clone()));
    let outbounds = dataplane.outbounds.iter().map(|outbound| {
        let tags = BTreeMap::from([(SERVICE_TAG.to_owned(), outbound.service.clone())]);
        (names::outbound_listener(&outbound.address, outbound.port), tags)
    });
    inbounds.chain(outbounds).collect()
}

/// A modification that did not apply, with where the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// The MeshProxyPatch, when the conf was read with [`read_policies`].
    pub policy: Option<String>,
    /// The entry's index in `appendModifications` (of the policy, or of
    /// the merged list when `policy` is `None`).
    pub modification: usize,
    pub target: Target,
    pub operation: Operation,
    /// The resource it failed on, such as `cluster "backend"` (`None`: the
    /// modification itself is wrong and applied nowhere).
    pub resource: Option<String>,
    /// The failing entry of `jsonPatches`, with its op and path.
    pub json_patch: Option<(usize, String, String)>,
    pub reason: String,
}

impl fmt::Display for PatchError {
    /// `MeshProxyPatch timeouts: spec.default.appendModifications[0].cluster
    /// (Patch) on cluster "backend": jsonPatches[1] (replace /connectTimeout):
    /// /connectTimeout does not exist`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            Some(policy) => write!(f, "MeshProxyPatch {policy}: spec.default.")?,
            None => f.write_str("MeshProxyPatch ")?,
        }
        write!(f, "appendModifications[{}].{} ({})", self.modification, self.target, self.operation)?;
        if let Some(resource) = &self.resource {
            write!(f, " on {resource}")?;
        }
        if let Some((index, op, path)) = &self.json_patch {
            write!(f, ": jsonPatches[{index}] ({op} {path})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for PatchError {}

/// Applies `conf`'s modifications, in order, to a proxy's finished
/// resources (after every other policy; call it on the result of
/// [`crate::proxy_resources`]). Changed resources are re-encoded with a
/// version that follows their content; shared resources are replaced in
/// this proxy's lists only. Endpoints and route configurations that only
/// removed clusters and listeners asked for are dropped with them.
///
/// Returns what did not apply, each left unchanged; an empty `conf`
/// changes nothing and costs nothing.
pub fn apply(conf: &Conf, resources: &mut ProxyResources, listener_tags: &ListenerTags) -> Vec<PatchError> {
    if conf.modifications.is_empty() {
        return Vec::new();
    }
    let mut working = resources::Working::new(resources, listener_tags);
    let mut errors = Vec::new();
    for modification in &conf.modifications {
        for failed in modify::apply(modification, &mut working) {
            let json_patch = failed.failure.json_patch.and_then(|index| {
                let patch = modification.json_patches.get(index)?;
                Some((index, patch.op.clone(), patch.path.clone()))
            });
            errors.push(PatchError {
                policy: modification.source.policy.clone(),
                modification: modification.source.index,
                target: modification.target,
                operation: modification.operation.clone(),
                resource: failed.resource.map(|(kind, name)| format!("{} {name:?}", kind.noun())),
                json_patch,
                reason: failed.failure.reason,
            });
        }
    }
    working.finish(resources);
    errors
}

#[cfg(test)]
mod tests;
