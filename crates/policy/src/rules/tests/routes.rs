//! Route policies (MeshHTTPRoute, MeshTCPRoute) and confs toward routes.

use serde_json::json;

use super::*;

/// A MeshHTTPRoute from `target` toward `backend`, with rules given as YAML
/// flow lists.
fn http_route(name: &str, target: &str, rules: &[&str]) -> String {
    let rules: String = rules.iter().map(|rule| format!("    - {rule}\n")).collect();
    format!(
        "
type: MeshHTTPRoute
mesh: default
name: {name}
spec:
  targetRef: {target}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    rules:
{rules}---"
    )
}

fn path(prefix: &str) -> Value {
    json!([{"path": {"type": "PathPrefix", "value": prefix}}])
}

#[test]
fn http_route_rules_merge_by_matches_with_the_more_specific_policy_s_rules_first() {
    let yaml = [
        http_route(
            "base",
            "{kind: Mesh}",
            &[
                "{matches: [{path: {type: PathPrefix, value: /b}}], default: {backendRefs: [{kind: MeshService, name: b}]}}",
                "{matches: [{path: {type: PathPrefix, value: /a}}], default: {backendRefs: [{kind: MeshService, name: a-v1}]}}",
            ],
        ),
        http_route(
            "web",
            "{kind: MeshService, name: web}",
            &[
                "{matches: [{path: {type: PathPrefix, value: /a}}], default: {filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: y}]}}]}}",
                "{matches: [{path: {type: PathPrefix, value: /c}}], default: {backendRefs: [{kind: MeshService, name: c}]}}",
            ],
        ),
    ]
    .concat();
    let rules = type_rules(ResourceType::MeshHTTPRoute, yaml.trim_end_matches("---"));
    let backend = &rules.to.services["backend"];
    assert_eq!(backend.origins, ["base", "web"]);
    let merged = &backend.conf["rules"];
    let matches: Vec<&Value> = merged.as_array().unwrap().iter().map(|rule| &rule["matches"]).collect();
    assert_eq!(matches, [&path("/a"), &path("/c"), &path("/b")]);
    assert_eq!(
        merged[0]["default"],
        json!({
            "backendRefs": [{"kind": "MeshService", "name": "a-v1"}],
            "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x", "value": "y"}]}}]
        })
    );
    assert_eq!(rules.to.mesh, None);
}

#[test]
fn within_one_route_the_first_of_two_rules_with_equal_matches_wins() {
    let yaml = http_route(
        "twice",
        "{kind: Mesh}",
        &[
            "{matches: [{path: {type: PathPrefix, value: /a}}], default: {backendRefs: [{kind: MeshService, name: first}]}}",
            "{matches: [{path: {type: PathPrefix, value: /z}}], default: {backendRefs: [{kind: MeshService, name: z}]}}",
            "{matches: [{path: {type: PathPrefix, value: /a}}], default: {backendRefs: [{kind: MeshService, name: second}]}}",
        ],
    );
    let rules = type_rules(ResourceType::MeshHTTPRoute, yaml.trim_end_matches("---"));
    let merged = &rules.to.services["backend"].conf["rules"];
    assert_eq!(merged.as_array().unwrap().len(), 2);
    assert_eq!(
        (&merged[0]["matches"], &merged[0]["default"]["backendRefs"][0]["name"]),
        (&path("/a"), &json!("first"))
    );
    assert_eq!(merged[1]["matches"], path("/z"));
}

#[test]
fn tcp_routes_merge_their_single_rule_and_a_rule_less_entry_goes_to_its_destination() {
    let rules = type_rules(
        ResourceType::MeshTCPRoute,
        "
type: MeshTCPRoute
mesh: default
name: plain
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: db}
    rules: []
  - targetRef: {kind: MeshService, name: cache}
    rules:
    - default: {backendRefs: [{kind: MeshService, name: cache-a, weight: 1}]}
---
type: MeshTCPRoute
mesh: default
name: split
spec:
  targetRef: {kind: MeshService, name: web}
  to:
  - targetRef: {kind: MeshService, name: cache}
    rules:
    - default:
        backendRefs:
        - {kind: MeshService, name: cache-a, weight: 90}
        - {kind: MeshService, name: cache-b, weight: 10}
",
    );
    assert_eq!(
        rules.to.services["db"],
        conf(
            json!({"rules": [{"default": {"backendRefs": [{"kind": "MeshService", "name": "db", "weight": 1}]}}]}),
            &["plain"]
        )
        .unwrap()
    );
    assert_eq!(
        rules.to.services["cache"].conf,
        json!({"rules": [{"default": {"backendRefs": [
            {"kind": "MeshService", "name": "cache-a", "weight": 90},
            {"kind": "MeshService", "name": "cache-b", "weight": 10}
        ]}}]})
    );
}

/// MeshHTTPRoutes that exist in the mesh: `web-route` applies to web-1,
/// `db-route` does not, and `trial-route` is shadow.
fn routes() -> String {
    let rule = "{matches: [{path: {type: PathPrefix, value: /api}}], default: {backendRefs: [{kind: MeshService, name: backend}]}}";
    let trial = http_route("trial-route", "{kind: Mesh}", &[rule]);
    [
        http_route("web-route", "{kind: MeshService, name: web}", &[rule]),
        http_route("db-route", "{kind: MeshService, name: db}", &[rule]),
        trial.replace("spec:", "labels: {kuma.io/effect: shadow}\nspec:"),
    ]
    .concat()
}

const ROUTE_TIMEOUTS: &str = "
type: MeshTimeout
mesh: default
name: aaa-mesh
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {idleTimeout: 1h, http: {requestTimeout: 1s}}
---
type: MeshTimeout
mesh: default
name: zzz-routes
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshHTTPRoute, name: web-route}
    default: {http: {requestTimeout: 2s, streamIdleTimeout: 1m}}
  - targetRef: {kind: MeshHTTPRoute, name: db-route}
    default: {http: {requestTimeout: 2s}}
  - targetRef: {kind: MeshHTTPRoute, name: trial-route}
    default: {http: {requestTimeout: 2s}}
---
type: MeshTimeout
mesh: default
name: on-web-route
spec:
  targetRef: {kind: MeshHTTPRoute, name: web-route}
  to:
  - targetRef: {kind: Mesh}
    default: {http: {streamIdleTimeout: 5m}}
---
type: MeshTimeout
mesh: default
name: on-db-route
spec:
  targetRef: {kind: MeshHTTPRoute, name: db-route}
  to:
  - targetRef: {kind: Mesh}
    default: {http: {streamIdleTimeout: 9m}}
";

#[test]
fn confs_toward_a_route_hold_the_mesh_entries_then_the_route_s_and_policies_on_the_route_last() {
    let all = format!("{}{ROUTE_TIMEOUTS}", routes());
    let rules = type_rules(ResourceType::MeshTimeout, &all);
    // Toward the route, a route entry overrides a Mesh entry of the same
    // class even when the Mesh entry's policy has the smaller name.
    assert_eq!(
        rules.to.routes.get("web-route").cloned(),
        conf(
            json!({"idleTimeout": "1h", "http": {"requestTimeout": "2s", "streamIdleTimeout": "5m"}}),
            &["aaa-mesh", "zzz-routes", "on-web-route"]
        )
    );
    // Routes that do not apply to the proxy (and shadow ones) are left out,
    // and policies on them do not apply.
    assert_eq!(rules.to.routes.keys().collect::<Vec<_>>(), ["web-route"]);
    assert_eq!(rules.to.mesh, conf(json!({"idleTimeout": "1h", "http": {"requestTimeout": "1s"}}), &["aaa-mesh"]));
    assert!(rules.to.services.is_empty());

    let policies = resources(&all);
    let with_shadow = proxy_rules_with_shadow(&web(), &MeshPolicies::new("default", &policies));
    let routes = &with_shadow.types[&ResourceType::MeshTimeout].to.routes;
    assert_eq!(routes.keys().collect::<Vec<_>>(), ["trial-route", "web-route"]);
    assert_eq!(routes["trial-route"].origins, ["aaa-mesh", "zzz-routes"]);
}

#[test]
fn a_policy_on_a_route_that_does_not_exist_applies_nowhere() {
    let rules = rules_for(&web(), ROUTE_TIMEOUTS);
    let timeouts = &rules.types[&ResourceType::MeshTimeout];
    assert!(timeouts.to.routes.is_empty());
    // zzz-routes applies (its top-level targetRef is the mesh) but names
    // only missing routes, so it adds nothing.
    assert_eq!(timeouts.to.mesh, conf(json!({"idleTimeout": "1h", "http": {"requestTimeout": "1s"}}), &["aaa-mesh"]));
}
