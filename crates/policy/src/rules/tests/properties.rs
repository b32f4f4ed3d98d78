//! Properties of ordering and merging, checked against a plain re-reading of
//! the rules for generated policy sets of several types.

use proptest::prelude::*;
use serde_json::{Map, json};

use super::*;
use crate::test_support::shuffled;

/// One generated policy name's worth of policies: the same name and
/// top-level target for a MeshTimeout, a MeshProxyPatch and a MeshHTTPRoute.
#[derive(Debug, Clone)]
struct Generated {
    name: String,
    target: Value,
    shadow: bool,
    /// MeshTimeout `to` entries: destination (None for Mesh), key, seconds.
    to: Vec<(Option<&'static str>, &'static str, u8)>,
    /// MeshTimeout `from` (kind Mesh) entries: key, seconds.
    from: Vec<(&'static str, u8)>,
    /// Clusters the MeshProxyPatch adds.
    clusters: Vec<u8>,
    /// MeshHTTPRoute rules toward `backend`: path, and either a backend or a
    /// header to set.
    route_rules: Vec<(u8, bool, u8)>,
}

const TARGETS: &[&str] = &[
    r#"{"kind": "Mesh"}"#,
    r#"{"kind": "MeshSubset", "tags": {"version": "v1"}}"#,
    r#"{"kind": "MeshSubset", "tags": {"version": "v2"}}"#,
    r#"{"kind": "MeshService", "name": "web"}"#,
    r#"{"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v1"}}"#,
    r#"{"kind": "Dataplane", "name": "web-1"}"#,
    r#"{"kind": "Dataplane", "labels": {"team": "core"}}"#,
];

fn generated() -> impl Strategy<Value = Vec<Generated>> {
    let key = || {
        prop_oneof![
            Just("connectionTimeout"),
            Just("idleTimeout"),
            Just("http.requestTimeout"),
            Just("http.streamIdleTimeout")
        ]
    };
    let body = (
        (0..TARGETS.len(), prop::bool::weighted(0.2)),
        prop::collection::vec((prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))], key(), 1..5u8), 1..3),
        prop::collection::vec((key(), 1..5u8), 0..3),
        prop::collection::vec(0..50u8, 1..3),
        prop::collection::vec((0..3u8, any::<bool>(), 0..9u8), 1..4),
    );
    prop::collection::btree_map("[a-d]{1,2}", body, 0..6).prop_map(|set| {
        set.into_iter()
            .map(|(name, ((target, shadow), to, from, clusters, route_rules))| Generated {
                name,
                target: serde_json::from_str(TARGETS[target]).unwrap(),
                shadow,
                to,
                from,
                clusters,
                route_rules,
            })
            .collect()
    })
}

fn path(number: u8) -> Value {
    json!([{"path": {"type": "PathPrefix", "value": format!("/p{number}")}}])
}

fn route_default(backend: bool, value: u8) -> Value {
    if backend {
        json!({"backendRefs": [{"kind": "MeshService", "name": format!("b{value}")}]})
    } else {
        json!({"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x", "value": format!("{value}")}]}}]})
    }
}

/// The resources of a generated set.
fn documents(set: &[Generated]) -> Vec<Resource> {
    let mut out = Vec::new();
    for policy in set {
        let labels = if policy.shadow { json!({"kuma.io/effect": "shadow"}) } else { json!({}) };
        let to: Vec<Value> = policy
            .to
            .iter()
            .map(|(service, key, seconds)| {
                let target =
                    service.map_or(json!({"kind": "Mesh"}), |name| json!({"kind": "MeshService", "name": name}));
                json!({"targetRef": target, "default": timeout(key, *seconds)})
            })
            .collect();
        let from: Vec<Value> = policy
            .from
            .iter()
            .map(|(key, seconds)| json!({"targetRef": {"kind": "Mesh"}, "default": timeout(key, *seconds)}))
            .collect();
        let modifications: Vec<Value> = policy
            .clusters
            .iter()
            .map(|cluster| json!({"cluster": {"operation": "Add", "value": format!("name: c{cluster}")}}))
            .collect();
        let rules: Vec<Value> = policy
            .route_rules
            .iter()
            .map(|(number, backend, value)| json!({"matches": path(*number), "default": route_default(*backend, *value)}))
            .collect();
        let specs = [
            ("MeshTimeout", json!({"targetRef": policy.target, "to": to, "from": from})),
            ("MeshProxyPatch", json!({"targetRef": policy.target, "default": {"appendModifications": modifications}})),
            (
                "MeshHTTPRoute",
                json!({"targetRef": policy.target, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": rules}]}),
            ),
        ];
        for (kind, spec) in specs {
            let document =
                json!({"type": kind, "mesh": "default", "name": policy.name, "labels": labels, "spec": spec});
            out.push(Resource::from_document(&document).unwrap());
        }
    }
    out
}

/// How specific a generated target is, written out for the generated shapes.
fn rank(target: &Value) -> u8 {
    match (target["kind"].as_str().unwrap(), target.get("labels").is_some()) {
        ("Mesh", _) => 1,
        ("Dataplane", true) => 2,
        ("Dataplane", false) => 3,
        ("MeshSubset", _) => 4,
        ("MeshService", _) => 5,
        _ => 6,
    }
}

/// The generated policies in force on web-1's inbound `service`, least
/// specific first.
fn in_force<'a>(set: &'a [Generated], service: &str) -> Vec<&'a Generated> {
    let selects = |policy: &&Generated| {
        let target = &policy.target;
        !policy.shadow
            && target["tags"]["version"].as_str().is_none_or(|version| version == "v1")
            && target["name"].as_str().is_none_or(|name| name == service || name == "web-1")
    };
    let mut ordered: Vec<&Generated> = set.iter().filter(selects).collect();
    ordered.sort_by(|a, b| rank(&a.target).cmp(&rank(&b.target)).then(b.name.cmp(&a.name)));
    ordered
}

/// A MeshTimeout conf setting one timeout; `http.x` sets `x` under `http`.
fn timeout(key: &str, seconds: u8) -> Value {
    let value = json!(format!("{seconds}s"));
    match key.split_once('.') {
        Some((outer, inner)) => json!({outer: {inner: value}}),
        None => json!({key: value}),
    }
}

/// The confs of `pairs` merged one after the other, as the rules say they
/// add up; None for no pairs.
fn merged_in_order<'a>(pairs: impl Iterator<Item = (&'a str, u8)>) -> Option<Value> {
    let confs: Vec<Value> = pairs.map(|(key, seconds)| timeout(key, seconds)).collect();
    (!confs.is_empty()).then(|| crate::merge::merge_all(&confs))
}

fn rules_of(set: &[Generated], shadow: bool) -> ProxyRules {
    let resources = documents(set);
    let policies = MeshPolicies::new("default", &resources);
    assert!(policies.unreadable().is_empty(), "{:?}", policies.unreadable());
    if shadow { proxy_rules_with_shadow(&web(), &policies) } else { proxy_rules(&web(), &policies) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_order_of_the_policy_list_does_not_matter(set in generated(), seed in any::<u64>()) {
        let resources = documents(&set);
        let reordered = shuffled(&resources, seed);
        let (given, shuffled) = (MeshPolicies::new("default", &resources), MeshPolicies::new("default", &reordered));
        prop_assert_eq!(proxy_rules(&web(), &given), proxy_rules(&web(), &shuffled));
        prop_assert_eq!(proxy_rules_with_shadow(&web(), &given), proxy_rules_with_shadow(&web(), &shuffled));
    }

    #[test]
    fn confs_are_the_covering_entries_merged_least_specific_first(set in generated()) {
        let rules = rules_of(&set, false);
        let timeouts = rules.types.get(&ResourceType::MeshTimeout).cloned().unwrap_or_default();
        let ordered = in_force(&set, "web");
        for service in ["a", "b", "c"] {
            // Within one rank, entries naming the service come after `Mesh` ones.
            let mut covering: Vec<(u8, bool, &str, u8)> = ordered
                .iter()
                .flat_map(|policy| policy.to.iter().map(|(name, key, seconds)| (rank(&policy.target), name.is_some(), *name, *key, *seconds)))
                .filter(|(.., name, _, _)| name.is_none_or(|name| name == service))
                .map(|(rank, named, _, key, seconds)| (rank, named, key, seconds))
                .collect();
            covering.sort_by_key(|(rank, named, ..)| (*rank, *named));
            let got = timeouts.to.for_service(service).map(|conf| conf.conf.clone());
            prop_assert_eq!(got, merged_in_order(covering.into_iter().map(|(.., key, seconds)| (key, seconds))), "service {}", service);
        }
        for (i, service) in ["web", "web-admin"].into_iter().enumerate() {
            let expected = merged_in_order(in_force(&set, service).iter().flat_map(|p| p.from.iter().copied()));
            let got = timeouts.from.get(i).and_then(|inbound| inbound.conf.as_ref()).map(|conf| conf.conf.clone());
            prop_assert_eq!(got, expected, "inbound {}", service);
        }
    }

    #[test]
    fn proxy_patches_append_every_modification_least_specific_first(set in generated()) {
        let rules = rules_of(&set, false);
        let expected: Vec<Value> = in_force(&set, "web").iter()
            .flat_map(|policy| policy.clusters.iter())
            .map(|cluster| json!({"cluster": {"operation": "Add", "value": format!("name: c{cluster}")}}))
            .collect();
        let got = rules.types.get(&ResourceType::MeshProxyPatch).and_then(|patch| patch.proxy.clone());
        prop_assert_eq!(got.map(|conf| conf.conf), (!expected.is_empty()).then(|| json!({"appendModifications": expected})));
    }

    /// Route rules merge by matches: each match once, in the order of its
    /// first appearance reading the most specific policy first, each field
    /// of its default from the first rule that sets it in that reading, and
    /// its origin the policy of that first appearance.
    #[test]
    fn http_route_rules_merge_by_matches(set in generated()) {
        let rules = rules_of(&set, false);
        let reading: Vec<(&str, (u8, bool, u8))> = in_force(&set, "web")
            .iter()
            .rev()
            .flat_map(|policy| policy.route_rules.iter().map(|rule| (policy.name.as_str(), *rule)))
            .collect();
        let mut expected: Vec<(u8, Map<String, Value>, &str)> = Vec::new();
        for (name, (number, backend, value)) in reading {
            let at = match expected.iter().position(|(seen, ..)| *seen == number) {
                Some(at) => at,
                None => { expected.push((number, Map::new(), name)); expected.len() - 1 }
            };
            for (key, field) in route_default(backend, value).as_object().unwrap() {
                expected[at].1.entry(key.clone()).or_insert_with(|| field.clone());
            }
        }
        let origins: Vec<String> = expected.iter().map(|(.., name)| (*name).to_owned()).collect();
        let expected: Vec<Value> = expected.into_iter()
            .map(|(number, default, _)| json!({"matches": path(number), "default": default}))
            .collect();
        let got = rules.types.get(&ResourceType::MeshHTTPRoute).map(|route| &route.to.services["backend"]);
        prop_assert_eq!(got.map(|conf| conf.conf.clone()), (!expected.is_empty()).then(|| json!({"rules": expected})));
        prop_assert_eq!(got.map(|conf| conf.rule_origins.clone()).unwrap_or_default(), origins);
    }
}
