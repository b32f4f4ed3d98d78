//! What every policy type says for one proxy: the effective conf for the
//! proxy itself, toward each destination (`to`) and for each inbound and its
//! callers (`from`, `rules`), with the policies each conf comes from.
//!
//! How the policies of one type add up for a proxy:
//!
//! 1. A policy applies when its top-level `targetRef` selects the proxy:
//!    `Mesh` (or none) and `Dataplane` without `sectionName` pick the proxy
//!    itself; `MeshSubset`, `MeshService`, `MeshServiceSubset` and
//!    `Dataplane` with `sectionName` pick it when they pick one of its
//!    inbounds (a gateway also by its own tags); `MeshHTTPRoute` picks the
//!    proxies that route applies to, and configures that route only;
//!    `MeshGateway` picks nothing (Kodiak runs no built-in gateways).
//!    `proxyTypes` limits a target to sidecars or gateways. Policies
//!    labelled `kuma.io/effect: shadow` apply nowhere, except in
//!    [`proxy_rules_with_shadow`].
//! 2. The applying policies are ordered from least to most specific: by the
//!    kind of the top-level targetRef (Mesh, Dataplane, MeshSubset,
//!    MeshService, MeshServiceSubset, MeshHTTPRoute), for Dataplane targets
//!    by name over labels over all and sectionName over none, zone-made over
//!    global policies, and last by name (the smaller name is the more
//!    specific). Each policy's entries keep their order.
//! 3. Confs add up in that order (patches as [`crate::merge`] lays them;
//!    MeshHTTPRoute rules by their matches, MeshTCPRoute's single rule as a
//!    patch), so the most specific policy has the last word:
//!    - `proxy`: the `default` of policies without `to`/`from`/`rules`.
//!    - `to`: toward a service, the entries of kind `Mesh` and those naming
//!      the service (kind `MeshService` by name); the kind of an entry does
//!      not rank it, the policy order does. Toward a route, the `Mesh`
//!      entries and those naming the route (kind `MeshHTTPRoute`, or every
//!      entry of a policy targeting the route), ordered by policy class,
//!      then entry kind (Mesh before route), then name.
//!    - `from`: per inbound, the policies that select that inbound; a
//!      policy's `rules` take the place of its `from` entries.
//!
//! Destinations Kodiak does not model (MeshExternalService,
//! MeshMultiZoneService, MeshService picked by labels) are skipped; a
//! MeshService entry's `sectionName` is not told apart from the whole
//! service.

mod from;
mod merge_rules;
mod proxy;
mod read;
mod to;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use kodiak_api::tags::SERVICE_TAG;
use kodiak_api::{Resource, ResourceKey, ResourceType, Violations};
use serde::Serialize;
use serde_json::Value;

use crate::order::{class, specificity};
use crate::target::{Proxy, Target};
use read::{Policy, Shape};

/// A merged conf and the policies it was merged from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    /// The merged conf, an object.
    pub conf: Value,
    /// The names of the contributing policies, least specific first, each
    /// once.
    pub origins: Vec<String>,
    /// MeshHTTPRoute confs only (empty for other types): for each rule of
    /// `conf.rules`, in their order, the route whose rule with those
    /// matches was added last and so has the last word. Policies naming a
    /// route (see [`ToRules::routes`]) apply to the rules it is the origin of.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rule_origins: Vec<String>,
}

/// What every policy type says for one proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyRules {
    /// Only the types of which some policy applies to the proxy.
    #[serde(serialize_with = "types_by_name")]
    pub types: BTreeMap<ResourceType, TypeRules>,
}

/// What the policies of one type say for one proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeRules {
    /// Single-item policies (a targetRef and a `default`, no to/from:
    /// MeshProxyPatch, MeshTrace): the merged `spec.default` of the
    /// policies that select the proxy.
    pub proxy: Option<Conf>,
    pub to: ToRules,
    /// One per Dataplane inbound, in the Dataplane's order (also for
    /// inbounds nothing applies to).
    pub from: Vec<InboundRules>,
}

/// The `to` confs of one policy type for one proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToRules {
    /// Toward any destination: the merge of the `Mesh` entries.
    pub mesh: Option<Conf>,
    /// Toward each service (`kuma.io/service`) some entry names; it includes
    /// the `Mesh` entries, in policy order.
    pub services: BTreeMap<String, Conf>,
    /// Toward each MeshHTTPRoute (by name) that applies to the proxy and
    /// that some entry names (`to` entries of kind MeshHTTPRoute, policies
    /// whose top-level targetRef is the route); it includes the `Mesh`
    /// entries but not the service ones.
    pub routes: BTreeMap<String, Conf>,
}

impl ToRules {
    /// The conf toward `service`: its own, else the mesh-wide one.
    pub fn for_service(&self, service: &str) -> Option<&Conf> {
        self.services.get(service).or(self.mesh.as_ref())
    }
}

/// The `from` and `rules` confs of one policy type for one inbound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundRules {
    pub port: u16,
    /// The inbound's name, or its port when it has none.
    pub section_name: String,
    /// Merge of the applying policies' `from` entries of kind Mesh and
    /// `rules` entries without `matches`, for every caller.
    pub conf: Option<Conf>,
    /// `from` entries that pick callers by kind MeshSubset, MeshService or
    /// MeshServiceSubset: each caller selector with the conf for the callers
    /// carrying its tags, most specific (most tags) first; a caller gets the
    /// first that it matches. The list holds every combination of
    /// compatible selectors (up to [`MAX_CALLER_GROUPS`]), so the first match
    /// merges every entry that covers the caller.
    pub callers: Vec<CallerConf>,
    /// `rules` entries with `matches` (SPIFFE ID, SNI), each with its own
    /// conf, most specific match first (exact SPIFFE ID, SPIFFE ID prefix,
    /// SNI), ties in policy order.
    pub matched: Vec<MatchedConf>,
}

/// The conf for callers carrying all of `tags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerConf {
    pub tags: BTreeMap<String, String>,
    /// Every entry that covers these callers (including `conf`'s), merged.
    pub conf: Conf,
}

/// One `rules` entry with `matches`: its conf applies to callers meeting any
/// of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedConf {
    pub matches: Vec<Value>,
    pub conf: Conf,
}

/// The most caller selectors (given and combined) one inbound lists;
/// combinations past it are left out.
pub const MAX_CALLER_GROUPS: usize = 64;

/// Every policy of one mesh, read once and reused for every proxy.
#[derive(Debug, Clone)]
pub struct MeshPolicies {
    mesh: String,
    types: BTreeMap<ResourceType, TypePolicies>,
    /// MeshHTTPRoutes by name: their target and whether they are shadow.
    routes: HashMap<String, (Target, bool)>,
    unreadable: Vec<(ResourceKey, Violations)>,
}

/// The policies of one type, most specific last, with an index of the ones
/// that can only pick proxies of one service.
#[derive(Debug, Clone)]
struct TypePolicies {
    shape: Shape,
    policies: Vec<Policy>,
    /// For each policy, the number of its class (policies of one class
    /// differ only by name), rising with specificity.
    classes: Vec<u32>,
    /// Policies whose target needs an inbound (or gateway) of this service.
    by_service: HashMap<String, Vec<u32>>,
    /// The others.
    rest: Vec<u32>,
}

impl MeshPolicies {
    /// All policy resources of one mesh, of any type (MeshTrafficPermission
    /// too). Resources of other meshes and of non-policy types are left out;
    /// unreadable ones are kept aside with their violations.
    pub fn new<'a>(mesh: &str, policies: impl IntoIterator<Item = &'a Resource>) -> MeshPolicies {
        let mut by_type: BTreeMap<ResourceType, Vec<Policy>> = BTreeMap::new();
        let mut unreadable = Vec::new();
        let mut routes = HashMap::new();
        for resource in policies.into_iter().filter(|r| r.key.mesh.as_deref() == Some(mesh) && r.key.kind.is_policy()) {
            match Policy::read(resource) {
                Ok(policy) => {
                    if resource.key.kind == ResourceType::MeshHTTPRoute {
                        routes.insert(policy.name.clone(), (policy.target.clone(), policy.rank.is_shadow()));
                    }
                    by_type.entry(resource.key.kind).or_default().push(policy);
                }
                Err(violations) => unreadable.push((resource.key.clone(), violations)),
            }
        }
        unreadable.sort_by(|a: &(ResourceKey, Violations), b| a.0.cmp(&b.0));
        let types = by_type.into_iter().map(|(kind, policies)| (kind, TypePolicies::new(kind, policies))).collect();
        MeshPolicies { mesh: mesh.to_owned(), types, routes, unreadable }
    }

    /// The policies that could not be read, by key, with what is wrong. They
    /// apply nowhere; the others still do.
    pub fn unreadable(&self) -> &[(ResourceKey, Violations)] {
        &self.unreadable
    }

    /// Whether the route `name` exists and applies to `proxy`.
    fn route_applies(&self, name: &str, proxy: &Proxy, shadow: bool) -> bool {
        self.routes.get(name).is_some_and(|(target, is_shadow)| (shadow || !is_shadow) && proxy.selects_proxy(target))
    }
}

impl TypePolicies {
    fn new(kind: ResourceType, mut policies: Vec<Policy>) -> TypePolicies {
        policies.sort_by(|a, b| specificity(key(a), key(b)));
        let mut classes = Vec::with_capacity(policies.len());
        for (i, policy) in policies.iter().enumerate() {
            let class_number = match i.checked_sub(1).map(|before| &policies[before]) {
                Some(before) if class(key(before), key(policy)).is_eq() => classes[i - 1],
                Some(_) => classes[i - 1] + 1,
                None => 0,
            };
            classes.push(class_number);
        }
        let mut by_service: HashMap<String, Vec<u32>> = HashMap::new();
        let mut rest = Vec::new();
        for (i, policy) in policies.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^32 policies");
            match &policy.target {
                Target::Tags { selector, .. } if selector.get(SERVICE_TAG).is_some_and(|s| s != "*") => {
                    by_service.entry(selector[SERVICE_TAG].clone()).or_default().push(i);
                }
                _ => rest.push(i),
            }
        }
        TypePolicies { shape: Shape::of(kind), policies, classes, by_service, rest }
    }

    /// The positions of the policies that apply to `proxy`, least specific
    /// first.
    fn applying(&self, mesh: &MeshPolicies, proxy: &Proxy, shadow: bool) -> Vec<usize> {
        let mut candidates = self.rest.clone();
        let mut indexed = false;
        for service in proxy.services() {
            if let Some(found) = self.by_service.get(service) {
                candidates.extend_from_slice(found);
                indexed = true;
            }
        }
        if indexed {
            candidates.sort_unstable();
            candidates.dedup();
        }
        candidates
            .into_iter()
            .map(|i| i as usize)
            .filter(|&i| {
                let policy = &self.policies[i];
                (shadow || !policy.rank.is_shadow())
                    && match &policy.route {
                        Some(route) => mesh.route_applies(route, proxy, shadow),
                        None => proxy.selects_proxy(&policy.target),
                    }
            })
            .collect()
    }
}

/// What ranks a policy among others of its type.
fn key(policy: &Policy) -> (&Target, &crate::order::Rank) {
    (&policy.target, &policy.rank)
}

/// What every policy type says for one proxy (a stored Dataplane resource
/// of the policies' mesh; for another mesh's Dataplane, nothing).
pub fn proxy_rules(dataplane: &Resource, policies: &MeshPolicies) -> ProxyRules {
    rules_for(dataplane, policies, false)
}

/// The same, but shadow-labelled policies (`kuma.io/effect: shadow`) count
/// as if they applied: what the proxy would get were they in force.
pub fn proxy_rules_with_shadow(dataplane: &Resource, policies: &MeshPolicies) -> ProxyRules {
    rules_for(dataplane, policies, true)
}

fn rules_for(dataplane: &Resource, policies: &MeshPolicies, shadow: bool) -> ProxyRules {
    let proxy = Proxy::from_resource(dataplane);
    let mut rules = ProxyRules::default();
    if proxy.mesh != policies.mesh {
        return rules;
    }
    for (kind, of_type) in &policies.types {
        let applying = of_type.applying(policies, &proxy, shadow);
        if applying.is_empty() {
            continue;
        }
        let ordered: Vec<(&Policy, u32)> =
            applying.iter().map(|&i| (&of_type.policies[i], of_type.classes[i])).collect();
        let type_rules = TypeRules {
            proxy: proxy::proxy_conf(ordered.iter().map(|(policy, _)| *policy)),
            to: to::to_rules(of_type.shape, &ordered, |route| policies.route_applies(route, &proxy, shadow)),
            from: proxy
                .inbounds
                .iter()
                .map(|inbound| {
                    let selecting =
                        ordered.iter().map(|(policy, _)| *policy).filter(|p| proxy.selects(&p.target, inbound));
                    from::inbound_rules(inbound, selecting)
                })
                .collect(),
        };
        rules.types.insert(*kind, type_rules);
    }
    rules
}

/// Writes the type keys by their names (`MeshTimeout`).
fn types_by_name<S: serde::Serializer>(
    types: &BTreeMap<ResourceType, TypeRules>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(types.iter().map(|(kind, rules)| (kind.name(), rules)))
}
