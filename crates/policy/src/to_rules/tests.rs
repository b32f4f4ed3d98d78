//! Scenario tests (YAML policies and a Dataplane in, merged confs out) and
//! property tests against a plain re-reading of the rules.

use kodiak_api::Resource;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::test_support::{resources, shuffled};

/// A sidecar of service `web`, version v1, labelled `team: core`.
const WEB: &str = "
type: Dataplane
mesh: default
name: web-1
labels: {team: core}
networking:
  address: 10.0.0.1
  inbound:
  - port: 10001
    tags: {kuma.io/service: web, version: v1}
";

fn rules(policies: &str) -> ToRules {
    to_rules(&resources(WEB).remove(0), &resources(policies))
}

fn conf(conf: Value, origins: &[&str]) -> Option<ToConf> {
    Some(ToConf { conf, origins: origins.iter().map(|name| (*name).to_owned()).collect() })
}

const TIMEOUT_ALL: &str = "
type: MeshTimeout
mesh: default
name: timeout-all
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      connectionTimeout: 5s
      http: {requestTimeout: 15s, streamIdleTimeout: 30m}
";

#[test]
fn a_mesh_wide_timeout_is_overridden_for_one_service_by_a_service_level_policy() {
    let rules = rules(&format!(
        "{TIMEOUT_ALL}
---
type: MeshTimeout
mesh: default
name: web-to-backend
spec:
  targetRef: {{kind: MeshService, name: web}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      http: {{requestTimeout: 60s}}
"
    ));
    let mesh_wide = json!({"connectionTimeout": "5s", "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m"}});
    assert_eq!(rules.mesh, conf(mesh_wide.clone(), &["timeout-all"]));
    let backend = json!({"connectionTimeout": "5s", "http": {"requestTimeout": "60s", "streamIdleTimeout": "30m"}});
    assert_eq!(rules.for_service("backend").cloned(), conf(backend, &["timeout-all", "web-to-backend"]));
    assert_eq!(rules.for_service("db").cloned(), conf(mesh_wide, &["timeout-all"]));
    assert_eq!(rules.services.keys().collect::<Vec<_>>(), ["backend"]);
    assert!(rules.unreadable.is_empty());
}

#[test]
fn the_policy_order_decides_not_the_kind_of_the_to_entry() {
    // A more specific policy's Mesh entry overrides a less specific
    // policy's MeshService entry.
    let rules = rules(
        "
type: MeshTimeout
mesh: default
name: backend-short
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default: {connectionTimeout: 1s}
---
type: MeshTimeout
mesh: default
name: v1-long
spec:
  targetRef: {kind: MeshSubset, tags: {version: v1}}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 9s}
",
    );
    assert_eq!(
        rules.for_service("backend").cloned(),
        conf(json!({"connectionTimeout": "9s"}), &["backend-short", "v1-long"])
    );
    assert_eq!(rules.mesh, conf(json!({"connectionTimeout": "9s"}), &["v1-long"]));
}

#[test]
fn between_two_policies_of_the_same_kind_the_smaller_name_wins() {
    let rules = rules(
        "
type: MeshTimeout
mesh: default
name: bbb
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 2s, idleTimeout: 1h}
---
type: MeshTimeout
mesh: default
name: aaa
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 1s}
",
    );
    assert_eq!(rules.mesh, conf(json!({"connectionTimeout": "1s", "idleTimeout": "1h"}), &["bbb", "aaa"]));
}

#[test]
fn shadow_policies_policies_of_other_meshes_and_subsets_that_miss_the_proxy_are_ignored() {
    let rules = rules(&format!(
        "{TIMEOUT_ALL}
---
type: MeshTimeout
mesh: default
name: shadow
labels: {{kuma.io/effect: shadow}}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: Mesh}}
    default: {{connectionTimeout: 99s}}
---
type: MeshTimeout
mesh: default
name: only-v2
spec:
  targetRef: {{kind: MeshSubset, tags: {{version: v2}}}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default: {{connectionTimeout: 98s}}
---
type: MeshTimeout
mesh: other
name: elsewhere
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: Mesh}}
    default: {{connectionTimeout: 97s}}
"
    ));
    assert_eq!(rules.mesh.as_ref().map(|mesh| &mesh.origins[..]), Some(&["timeout-all".to_owned()][..]));
    assert_eq!(rules.mesh.map(|mesh| mesh.conf["connectionTimeout"].clone()), Some(json!("5s")));
    assert!(rules.services.is_empty(), "{:?}", rules.services);
}

/// A policy with `target` that sets a conf toward the service named like
/// the policy, so that the services in the result name the applying policies.
fn named_after_itself(name: &str, target: &str) -> String {
    format!(
        "
type: MeshTimeout
mesh: default
name: {name}
spec:
  targetRef: {target}
  to:
  - targetRef: {{kind: MeshService, name: {name}}}
    default: {{idleTimeout: 1s}}
---"
    )
}

#[test]
fn dataplane_targets_pick_by_name_labels_and_section_name() {
    let yaml = [
        named_after_itself("by-name", "{kind: Dataplane, name: web-1}"),
        named_after_itself("by-other-name", "{kind: Dataplane, name: web-2}"),
        named_after_itself("by-labels", "{kind: Dataplane, labels: {team: core}}"),
        named_after_itself("by-section", "{kind: Dataplane, name: web-1, sectionName: '10001'}"),
        named_after_itself("by-missing-section", "{kind: Dataplane, sectionName: admin}"),
        named_after_itself("gateways-only", "{kind: Mesh, proxyTypes: [Gateway]}"),
    ]
    .concat();
    let rules = rules(yaml.trim_end_matches("---"));
    assert_eq!(rules.services.keys().collect::<Vec<_>>(), ["by-labels", "by-name", "by-section"]);
}

#[test]
fn routes_and_external_destinations_are_skipped_and_bad_policies_are_reported() {
    let rules = rules(&format!(
        "{TIMEOUT_ALL}
---
type: MeshTimeout
mesh: default
name: to-route
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshHTTPRoute, name: some-route}}
    default: {{connectionTimeout: 1s}}
  - targetRef: {{kind: MeshExternalService, name: httpbin}}
    default: {{connectionTimeout: 1s}}
"
    ));
    assert_eq!(rules.mesh.map(|mesh| mesh.origins), Some(vec!["timeout-all".to_owned()]));
    assert!(rules.services.is_empty() && rules.unreadable.is_empty());

    let mut broken = resources(TIMEOUT_ALL);
    broken[0].body["spec"]["to"][0]["targetRef"] = json!({"kind": "MeshGateway"});
    broken[0].body["spec"]["to"][0]["default"] = json!("5s");
    let rules = to_rules(&resources(WEB).remove(0), &broken);
    assert_eq!(rules.mesh, None);
    let (name, violations) = &rules.unreadable[0];
    assert_eq!(name, "timeout-all");
    let fields: Vec<String> = violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["spec.to[0].targetRef.kind", "spec.to[0].default"]);
}

/// A generated policy: its name, top-level targetRef and `to` entries.
fn policy() -> impl Strategy<Value = (String, Value, Vec<Value>)> {
    let target = prop_oneof![
        Just(json!({"kind": "Mesh"})),
        Just(json!({"kind": "MeshSubset", "tags": {"version": "v1"}})),
        Just(json!({"kind": "MeshSubset", "tags": {"version": "v2"}})),
        Just(json!({"kind": "MeshService", "name": "web"})),
        Just(json!({"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v1"}})),
        Just(json!({"kind": "Dataplane", "name": "web-1"})),
        Just(json!({"kind": "Dataplane", "labels": {"team": "core"}})),
    ];
    let to = (
        prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
        prop_oneof![Just("connectionTimeout"), Just("idleTimeout")],
        1..5u8,
    )
        .prop_map(|(service, key, value)| {
            let target = match service {
                None => json!({"kind": "Mesh"}),
                Some(name) => json!({"kind": "MeshService", "name": name}),
            };
            json!({"targetRef": target, "default": {key: format!("{value}s")}})
        });
    ("[a-d]{1,2}", target, prop::collection::vec(to, 1..3))
}

fn policy_set() -> impl Strategy<Value = Vec<Resource>> {
    prop::collection::btree_map("[a-d]{1,2}", policy().prop_map(|(_, target, to)| (target, to)), 0..6).prop_map(|set| {
        set.into_iter()
            .map(|(name, (target, to))| {
                let document = json!({"type": "MeshTimeout", "mesh": "default", "name": name,
                    "spec": {"targetRef": target, "to": to}});
                Resource::from_document(&document).unwrap()
            })
            .collect()
    })
}

/// How specific a generated policy is, written out for the generated shapes.
fn rank(policy: &Resource) -> u8 {
    let target = &policy.body["spec"]["targetRef"];
    match (target["kind"].as_str().unwrap(), target.get("labels").is_some()) {
        ("Mesh", _) => 1,
        ("Dataplane", true) => 2,
        ("Dataplane", false) => 3,
        ("MeshSubset", _) => 4,
        ("MeshService", _) => 5,
        _ => 6,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_order_of_the_policy_list_does_not_matter(policies in policy_set(), seed in any::<u64>()) {
        let dataplane = resources(WEB).remove(0);
        let shuffled = shuffled(&policies, seed);
        prop_assert_eq!(to_rules(&dataplane, &policies), to_rules(&dataplane, &shuffled));
    }

    #[test]
    fn each_key_toward_a_service_comes_from_the_most_specific_covering_entry(policies in policy_set()) {
        let dataplane = resources(WEB).remove(0);
        let rules = to_rules(&dataplane, &policies);
        let selects = |policy: &&Resource| {
            policy.body["spec"]["targetRef"]["tags"]["version"].as_str().is_none_or(|version| version == "v1")
        };
        let mut ordered: Vec<&Resource> = policies.iter().filter(selects).collect();
        ordered.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.key.name.cmp(&a.key.name)));
        for service in ["a", "b", "c"] {
            let mut expected = serde_json::Map::new();
            for policy in &ordered {
                for entry in policy.body["spec"]["to"].as_array().unwrap() {
                    let name = entry["targetRef"]["name"].as_str();
                    if name.is_none_or(|name| name == service) {
                        expected.extend(entry["default"].as_object().unwrap().clone());
                    }
                }
            }
            let got = rules.for_service(service).map(|to| to.conf.clone());
            let expected = (!expected.is_empty()).then_some(Value::Object(expected));
            prop_assert_eq!(got, expected, "service {}", service);
        }
    }
}

#[test]
fn a_gateway_is_selected_by_its_own_tags_and_by_proxy_type() {
    let gateway = resources(
        "
type: Dataplane
mesh: default
name: edge-1
networking:
  address: 10.0.0.9
  gateway:
    type: DELEGATED
    tags: {kuma.io/service: edge}
",
    )
    .remove(0);
    let yaml = [
        named_after_itself("edge-service", "{kind: MeshService, name: edge}"),
        named_after_itself("web-service", "{kind: MeshService, name: web}"),
        named_after_itself("gateways", "{kind: Mesh, proxyTypes: [Gateway]}"),
        named_after_itself("sidecars", "{kind: Mesh, proxyTypes: [Sidecar]}"),
        named_after_itself(
            "edge-subset-for-sidecars",
            "{kind: MeshSubset, tags: {kuma.io/service: edge}, proxyTypes: [Sidecar]}",
        ),
    ]
    .concat();
    let rules = to_rules(&gateway, &resources(yaml.trim_end_matches("---")));
    assert_eq!(rules.services.keys().collect::<Vec<_>>(), ["edge-service", "gateways"]);
}
