//! `to` confs toward the mesh and toward services.

use serde_json::json;

use super::*;

fn rules(policies: &str) -> ToRules {
    type_rules(ResourceType::MeshTimeout, policies).to
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
fn between_equally_specific_policies_an_entry_naming_the_service_outranks_a_mesh_entry_whatever_the_names() {
    // "quick-backend" sorts after "mesh-timeout-all-default", and would
    // lose to it by name; its entry names backend, so it wins for backend.
    let rules = rules(
        "
type: MeshTimeout
mesh: default
name: mesh-timeout-all-default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 5s, http: {requestTimeout: 15s}}
---
type: MeshTimeout
mesh: default
name: quick-backend
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default: {http: {requestTimeout: 1s}}
",
    );
    assert_eq!(
        rules.for_service("backend").cloned(),
        conf(
            json!({"connectionTimeout": "5s", "http": {"requestTimeout": "1s"}}),
            &["mesh-timeout-all-default", "quick-backend"]
        )
    );
    assert_eq!(
        rules.mesh,
        conf(json!({"connectionTimeout": "5s", "http": {"requestTimeout": "15s"}}), &["mesh-timeout-all-default"])
    );
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
        named_after_itself("by-missing-section", "{kind: Dataplane, sectionName: metrics}"),
        named_after_itself("by-second-section", "{kind: Dataplane, sectionName: admin}"),
        named_after_itself("gateways-only", "{kind: Mesh, proxyTypes: [Gateway]}"),
    ]
    .concat();
    let rules = rules(yaml.trim_end_matches("---"));
    assert_eq!(rules.services.keys().collect::<Vec<_>>(), ["by-labels", "by-name", "by-second-section", "by-section"]);
}

#[test]
fn unknown_routes_and_external_destinations_are_skipped_and_bad_policies_are_reported() {
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
    assert!(rules.services.is_empty() && rules.routes.is_empty());

    let mut broken = resources(TIMEOUT_ALL);
    broken[0].body["spec"]["to"][0]["targetRef"] = json!({"kind": "MeshGateway"});
    broken[0].body["spec"]["to"][0]["default"] = json!("5s");
    let policies = MeshPolicies::new("default", &broken);
    assert_eq!(proxy_rules(&web(), &policies), ProxyRules::default());
    let (key, violations) = &policies.unreadable()[0];
    assert_eq!((key.kind, key.name.as_str()), (ResourceType::MeshTimeout, "timeout-all"));
    let fields: Vec<String> = violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["spec.to[0].targetRef.kind", "spec.to[0].default"]);
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
    let rules = rules_for(&gateway, yaml.trim_end_matches("---")).types.remove(&ResourceType::MeshTimeout).unwrap().to;
    assert_eq!(rules.services.keys().collect::<Vec<_>>(), ["edge-service", "gateways"]);
}

#[test]
fn gateway_targets_select_nothing_and_other_resources_are_left_out() {
    let gateway = TIMEOUT_ALL
        .replace("name: timeout-all", "name: on-gateway")
        .replace("{kind: Mesh}\n  to", "{kind: MeshGateway, name: edge}\n  to");
    let mut given =
        resources(&format!("{gateway}---{}", named_after_itself("on-mesh", "{kind: Mesh}").trim_end_matches("---")));
    assert_eq!(given[0].body["spec"]["targetRef"]["kind"], "MeshGateway");
    given.push(web());
    let policies = MeshPolicies::new("default", &given);
    assert!(policies.unreadable().is_empty());
    let rules = proxy_rules(&web(), &policies);
    assert_eq!(rules.types.keys().collect::<Vec<_>>(), [&ResourceType::MeshTimeout]);
    let timeouts = &rules.types[&ResourceType::MeshTimeout];
    assert_eq!(timeouts.to.services.keys().collect::<Vec<_>>(), ["on-mesh"]);
    assert_eq!(timeouts.to.mesh, None);
}

#[test]
fn a_spec_that_is_not_an_object_is_reported_with_its_path() {
    let mut broken = resources(TIMEOUT_ALL);
    broken[0].body["spec"] = json!(["not", "an", "object"]);
    let policies = MeshPolicies::new("default", &broken);
    let (_, violations) = &policies.unreadable()[0];
    assert_eq!(violations.to_string(), "spec: must be an object");
}

#[test]
fn service_subsets_select_by_service_and_tags_and_outrank_services_and_subsets() {
    let yaml = [
        named_after_itself("v1-of-web", "{kind: MeshServiceSubset, name: web, tags: {version: v1}}"),
        named_after_itself("v2-of-web", "{kind: MeshServiceSubset, name: web, tags: {version: v2}}"),
        named_after_itself("v1-of-db", "{kind: MeshServiceSubset, name: db, tags: {version: v1}}"),
    ]
    .concat();
    let selected = rules(yaml.trim_end_matches("---"));
    assert_eq!(selected.services.keys().collect::<Vec<_>>(), ["v1-of-web"]);

    // Toward one service, a MeshServiceSubset policy's entry beats a
    // MeshService one's, which beats a MeshSubset one's, whatever the names.
    let entry = |name: &str, target: &str, seconds: u8| {
        format!(
            "
type: MeshTimeout
mesh: default
name: {name}
spec:
  targetRef: {target}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default: {{connectionTimeout: {seconds}s}}
---"
        )
    };
    let yaml = [
        entry("a-service-subset", "{kind: MeshServiceSubset, name: web, tags: {version: v1}}", 3),
        entry("a-service", "{kind: MeshService, name: web}", 2),
        entry("a-subset", "{kind: MeshSubset, tags: {version: v1}}", 1),
    ]
    .concat();
    let ranked = rules(yaml.trim_end_matches("---"));
    assert_eq!(
        ranked.services.get("backend").cloned(),
        conf(json!({"connectionTimeout": "3s"}), &["a-subset", "a-service", "a-service-subset"])
    );
}
