//! The `_rules` answer, in the shape of Kuma's InspectRules:
//!
//! ```text
//! {resource: Meta, shadow, httpMatches: [],
//!  rules: [{type, proxyRule, toRules, toResourceRules, fromRules, inboundRules, warnings}]}
//! ```
//!
//! - `proxyRule`: `{conf, origin}` for policies configuring the proxy as a
//!   whole (MeshProxyPatch, MeshTrace, ...); absent otherwise.
//! - `toRules`: `[{matchers, conf, origin}]`, most specific first: one per
//!   service some `to` entry names (matcher `kuma.io/service`), one per
//!   MeshHTTPRoute (matcher [`ROUTE_MATCHER`]), then the conf toward every
//!   other destination (no matchers).
//! - `fromRules`: per inbound `{inbound: {name, tags, port}, rules: [...]}`;
//!   the rules are caller groups (matchers on the caller's tags, `not` for
//!   a tag it must not carry), most specific first, then the conf for every
//!   other caller (no matchers). MeshTrafficPermission's confs are
//!   `{action}`; an inbound without rules denies every caller.
//! - `inboundRules`: per inbound, the `spec.rules` entries that match
//!   callers by SPIFFE ID or SNI: `{conf: [conf], match, origin: [{resourceMeta}]}`.
//! - `toResourceRules` and `httpMatches` stay empty: Kodiak addresses
//!   destinations by `kuma.io/service` (toRules), and MeshHTTPRoute confs
//!   show their `matches` in place.
//!
//! `origin` lists the contributing policies as `{type, mesh, name, labels}`,
//! in merge order (least specific first).

use std::collections::BTreeMap;

use kodiak_api::{Resource, ResourceType};
use kodiak_policy::rules::{Conf, InboundRules, TypeRules};
use kodiak_policy::traffic_permission::{Action, InboundPermissions, PermissionRule};
use serde_json::{Map, Value, json};

use super::Inspected;

/// The matcher key that marks a conf toward one MeshHTTPRoute.
pub const ROUTE_MATCHER: &str = "meshhttproute";

/// The `_rules` answer for `dataplane`.
pub fn response(dataplane: &Resource, inspected: &Inspected<'_>, shadow: bool) -> Value {
    let inbounds = inbounds(dataplane);
    let mut rules: Vec<Value> = Vec::new();
    let mut kinds: Vec<ResourceType> = inspected.rules.types.keys().copied().collect();
    kinds.extend(inspected.view.unreadable().map(|(key, _)| key.kind));
    if inspected.permissions.is_some() {
        kinds.push(ResourceType::MeshTrafficPermission);
    }
    kinds.sort_by_key(|kind| kind.name());
    kinds.dedup();
    for kind in kinds {
        let mut warnings: Vec<String> = inspected
            .view
            .unreadable()
            .filter(|(key, _)| key.kind == kind)
            .map(|(key, violations)| format!("{key} cannot be read and applies nowhere: {violations}"))
            .collect();
        let mut entry = match (kind, inspected.rules.types.get(&kind), &inspected.permissions) {
            (ResourceType::MeshTrafficPermission, _, Some(permissions)) => {
                warnings.extend(permission_warnings(inspected, permissions, &inbounds));
                permission_rules(inspected, permissions, &inbounds)
            }
            (_, Some(type_rules), _) => type_entry(inspected, kind, type_rules, &inbounds),
            _ => empty_entry(),
        };
        let object = entry.as_object_mut().expect("entries are objects");
        object.insert("type".into(), kind.name().into());
        object.insert("warnings".into(), warnings.into());
        rules.push(entry);
    }
    json!({ "resource": meta_of(dataplane), "shadow": shadow, "httpMatches": [], "rules": rules })
}

/// Adds to the MeshProxyPatch entry of a `_rules` answer what its
/// modifications could not do to the proxy's newest configuration (as the
/// Dataplane's insight says), so the user sees it where the patch shows.
pub fn with_policy_problems(answer: &mut Value, problems: Vec<String>) {
    let Some(rules) = answer["rules"].as_array_mut() else { return };
    let patch = rules.iter_mut().find(|rule| rule["type"] == ResourceType::MeshProxyPatch.name());
    if let Some(warnings) = patch.and_then(|rule| rule["warnings"].as_array_mut()) {
        warnings.extend(problems.into_iter().map(|problem| format!("not applied to the proxy: {problem}").into()));
    }
}

/// One inbound as the answer names it.
struct Inbound {
    port: u16,
    /// `{name, tags, port}`.
    json: Value,
}

/// The Dataplane's inbounds in its order (the order the engines answer in).
fn inbounds(dataplane: &Resource) -> Vec<Inbound> {
    let list = dataplane.body.get("networking").and_then(|n| n.get("inbound")).and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .map(|inbound| {
            let port = inbound.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
            let mut json = json!({ "tags": inbound.get("tags").cloned().unwrap_or_else(|| json!({})), "port": port });
            if let Some(name) = inbound.get("name").and_then(Value::as_str) {
                json["name"] = name.into();
            }
            Inbound { port, json }
        })
        .collect()
}

fn empty_entry() -> Value {
    json!({ "toRules": [], "toResourceRules": [], "fromRules": [], "inboundRules": [] })
}

fn type_entry(inspected: &Inspected<'_>, kind: ResourceType, rules: &TypeRules, inbounds: &[Inbound]) -> Value {
    let origin = |conf: &Conf| origins(inspected, kind, &conf.origins);
    let rule =
        |matchers: Vec<Value>, conf: &Conf| json!({ "matchers": matchers, "conf": conf.conf, "origin": origin(conf) });
    let mut to_rules: Vec<Value> = Vec::new();
    for (service, conf) in &rules.to.services {
        to_rules.push(rule(vec![matcher(kodiak_api::tags::SERVICE_TAG, service, false)], conf));
    }
    for (route, conf) in &rules.to.routes {
        to_rules.push(rule(vec![matcher(ROUTE_MATCHER, route, false)], conf));
    }
    to_rules.extend(rules.to.mesh.iter().map(|conf| rule(Vec::new(), conf)));
    let mut from_rules = Vec::new();
    let mut inbound_rules = Vec::new();
    for (i, inbound_rules_of) in rules.from.iter().enumerate() {
        let inbound = inbound_json(inbounds, i, inbound_rules_of);
        let InboundRules { conf, callers, matched, .. } = inbound_rules_of;
        let mut from: Vec<Value> = callers
            .iter()
            .map(|caller| {
                let matchers = caller.tags.iter().map(|(key, value)| matcher(key, value, false)).collect();
                rule(matchers, &caller.conf)
            })
            .collect();
        from.extend(conf.iter().map(|conf| rule(Vec::new(), conf)));
        if !from.is_empty() {
            from_rules.push(json!({ "inbound": inbound, "rules": from }));
        }
        let by_match: Vec<Value> = matched
            .iter()
            .flat_map(|entry| {
                let resource_origins: Vec<Value> =
                    origin(&entry.conf).into_iter().map(|meta| json!({ "resourceMeta": meta })).collect();
                entry.matches.iter().map(
                    move |one| json!({ "conf": [entry.conf.conf], "match": one, "origin": resource_origins.clone() }),
                )
            })
            .collect();
        if !by_match.is_empty() {
            inbound_rules.push(json!({ "inbound": inbound, "rules": by_match }));
        }
    }
    let mut entry = json!({
        "toRules": to_rules,
        "toResourceRules": [],
        "fromRules": from_rules,
        "inboundRules": inbound_rules,
    });
    if let Some(conf) = &rules.proxy {
        entry["proxyRule"] = json!({ "conf": conf.conf, "origin": origin(conf) });
    }
    entry
}

/// The inbound's `{name, tags, port}`, from the Dataplane when it lists it.
fn inbound_json(inbounds: &[Inbound], index: usize, rules: &InboundRules) -> Value {
    match inbounds.get(index).filter(|inbound| inbound.port == rules.port) {
        Some(inbound) => inbound.json.clone(),
        None => json!({ "name": rules.section_name, "tags": {}, "port": rules.port }),
    }
}

fn permission_rules(inspected: &Inspected<'_>, permissions: &[InboundPermissions], inbounds: &[Inbound]) -> Value {
    let from_rules: Vec<Value> = permissions
        .iter()
        .zip(inbounds)
        .map(|(permissions, inbound)| {
            let rules: Vec<Value> = permissions.rules.iter().map(|rule| permission_rule(inspected, rule)).collect();
            json!({ "inbound": inbound.json, "rules": rules })
        })
        .collect();
    json!({ "toRules": [], "toResourceRules": [], "fromRules": from_rules, "inboundRules": [] })
}

fn permission_rule(inspected: &Inspected<'_>, rule: &PermissionRule) -> Value {
    let matchers: Vec<Value> =
        rule.callers.0.iter().map(|condition| matcher(&condition.key, &condition.value, condition.negated)).collect();
    let origin = origins(inspected, ResourceType::MeshTrafficPermission, std::slice::from_ref(&rule.policy));
    json!({ "matchers": matchers, "conf": { "action": action_name(rule.action) }, "origin": origin })
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "Allow",
        Action::Deny => "Deny",
        Action::AllowWithShadowDeny => "AllowWithShadowDeny",
    }
}

/// What a user should know about the permissions: without mesh mTLS they
/// take no effect; with it, an inbound nothing allows refuses everyone.
fn permission_warnings(
    inspected: &Inspected<'_>,
    permissions: &[InboundPermissions],
    inbounds: &[Inbound],
) -> Vec<String> {
    if !inspected.view.mtls_enabled() {
        return vec![
            "mTLS is off in this mesh: MeshTrafficPermissions take no effect (callers are not identified) and every caller is allowed".into(),
        ];
    }
    permissions
        .iter()
        .zip(inbounds)
        .filter(|(permissions, _)| !permissions.rules.iter().any(|rule| rule.action != Action::Deny))
        .map(|(_, inbound)| {
            format!(
                "no MeshTrafficPermission allows any caller on inbound port {}: every caller is denied",
                inbound.port
            )
        })
        .collect()
}

fn matcher(key: &str, value: &str, not: bool) -> Value {
    json!({ "key": key, "value": value, "not": not })
}

/// `{type, mesh, name, labels}` of each named policy of `kind`.
fn origins(inspected: &Inspected<'_>, kind: ResourceType, names: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|name| match inspected.view.resources.get(&(kind, name.clone())) {
            Some(resource) => meta_of(resource),
            None => json!({ "type": kind.name(), "mesh": inspected.view.policies_mesh(), "name": name, "labels": {} }),
        })
        .collect()
}

/// Kuma's resource Meta: `{type, mesh, name, labels}`.
pub fn meta_of(resource: &Resource) -> Value {
    let mut meta = Map::new();
    meta.insert("type".into(), resource.key.kind.name().into());
    if let Some(mesh) = &resource.key.mesh {
        meta.insert("mesh".into(), mesh.clone().into());
    }
    meta.insert("name".into(), resource.key.name.clone().into());
    let labels: BTreeMap<&String, &String> = resource.labels.iter().collect();
    meta.insert("labels".into(), json!(labels));
    Value::Object(meta)
}
