//! Single-item policies: the conf for the proxy itself.

use serde_json::json;

use super::*;

/// A MeshProxyPatch that adds a cluster named `cluster`.
fn patch(name: &str, target: &str, cluster: &str) -> String {
    format!(
        "
type: MeshProxyPatch
mesh: default
name: {name}
spec:
  targetRef: {target}
  default:
    appendModifications:
    - cluster: {{operation: Add, value: 'name: {cluster}'}}
---"
    )
}

#[test]
fn proxy_patches_append_their_modifications_least_specific_first() {
    let yaml = [
        patch("for-web", "{kind: MeshService, name: web}", "c-service"),
        patch("for-all", "{kind: Mesh}", "c-mesh"),
        patch("for-me", "{kind: Dataplane, name: web-1}", "c-dataplane"),
        patch("for-others", "{kind: MeshService, name: db}", "c-other"),
    ]
    .concat();
    let rules = type_rules(ResourceType::MeshProxyPatch, yaml.trim_end_matches("---"));
    let proxy = rules.proxy.unwrap();
    let clusters: Vec<&Value> =
        proxy.conf["appendModifications"].as_array().unwrap().iter().map(|m| &m["cluster"]["value"]).collect();
    assert_eq!(clusters, [&json!("name: c-mesh"), &json!("name: c-dataplane"), &json!("name: c-service")]);
    assert_eq!(proxy.origins, ["for-all", "for-me", "for-web"]);
    assert_eq!(rules.to, ToRules::default());
    assert!(rules.from.iter().all(|inbound| inbound.conf.is_none()));
}

#[test]
fn single_item_defaults_merge_with_the_most_specific_winning_field_by_field() {
    let rules = type_rules(
        ResourceType::MeshTrace,
        "
type: MeshTrace
mesh: default
name: mesh-trace
spec:
  targetRef: {kind: Mesh}
  default:
    backends: [{type: Zipkin, zipkin: {url: 'http://zipkin:9411/api/v2/spans'}}]
    sampling: {overall: 10, client: 20}
---
type: MeshTrace
mesh: default
name: web-trace
spec:
  targetRef: {kind: MeshSubset, tags: {version: v1}}
  default:
    backends: [{type: Zipkin, zipkin: {url: 'http://other:9411/api/v2/spans'}}]
    sampling: {overall: 80}
---
type: MeshTrace
mesh: default
name: gateways
spec:
  targetRef: {kind: Mesh, proxyTypes: [Gateway]}
  default:
    backends: [{type: Zipkin, zipkin: {url: 'http://gw:9411/api/v2/spans'}}]
",
    );
    assert_eq!(
        rules.proxy,
        conf(
            json!({
                "backends": [{"type": "Zipkin", "zipkin": {"url": "http://other:9411/api/v2/spans"}}],
                "sampling": {"overall": 80, "client": 20}
            }),
            &["mesh-trace", "web-trace"]
        )
    );
}

#[test]
fn a_type_no_policy_applies_to_is_left_out_and_shadow_policies_count_only_when_asked() {
    let yaml = format!(
        "{}
labels: {{kuma.io/effect: shadow}}",
        patch("trial", "{kind: Mesh}", "c-trial").trim_end_matches("---")
    );
    let policies = resources(&yaml);
    let policies = MeshPolicies::new("default", &policies);
    assert_eq!(proxy_rules(&web(), &policies), ProxyRules::default());
    let with_shadow = proxy_rules_with_shadow(&web(), &policies);
    assert_eq!(with_shadow.types.keys().collect::<Vec<_>>(), [&ResourceType::MeshProxyPatch]);
    assert_eq!(with_shadow.types[&ResourceType::MeshProxyPatch].proxy.as_ref().unwrap().origins, ["trial"]);

    // Another mesh's Dataplane gets nothing from this mesh's policies.
    let mut elsewhere = web();
    elsewhere.key.mesh = Some("other".into());
    assert_eq!(proxy_rules_with_shadow(&elsewhere, &policies), ProxyRules::default());
}

#[test]
fn rules_serialize_by_type_name_in_camel_case() {
    let rules = rules_for(&web(), patch("for-all", "{kind: Mesh}", "c").trim_end_matches("---"));
    let json = serde_json::to_value(&rules).unwrap();
    let patch = &json["types"]["MeshProxyPatch"];
    assert_eq!(patch["proxy"]["origins"], json!(["for-all"]));
    assert_eq!(
        patch["from"][1],
        json!({"port": 10002, "sectionName": "admin", "conf": null, "callers": [], "matched": []})
    );
    assert_eq!(patch["to"], json!({"mesh": null, "services": {}, "routes": {}}));
}
