//! The inspect endpoints against a control plane on the in-memory store:
//! which policies shape each outbound and inbound of a proxy (`_rules`),
//! shadow policies only when asked, the Dataplanes a policy affects, and
//! the errors for what does not exist or cannot be shown.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Api;

fn dataplane(name: &str, service: &str, port: u16, outbound: Option<(&str, u16)>) -> Value {
    let mut networking = json!({
        "address": "127.0.0.1",
        "inbound": [{"port": port, "servicePort": port + 1000,
            "tags": {"kuma.io/service": service, "version": "v1"}}],
    });
    if let Some((service, port)) = outbound {
        networking["outbound"] = json!([{"port": port, "tags": {"kuma.io/service": service}}]);
    }
    json!({"type": "Dataplane", "mesh": "shop", "name": name, "networking": networking})
}

/// Mesh `shop` (with its default policies), three Dataplanes (web calls
/// backend) and a few policies, one of them shadow.
async fn shop() -> Api {
    let api = Api::memory();
    let put = |path: &'static str, body: Value| {
        let api = &api;
        async move {
            let (status, answer) = api.put(path, body).await;
            assert!(status.is_success(), "{path}: {status} {answer}");
        }
    };
    put("/meshes/shop", json!({"type": "Mesh", "name": "shop"})).await;
    put("/meshes/shop/dataplanes/web-1", dataplane("web-1", "web", 10001, Some(("backend", 20001)))).await;
    put("/meshes/shop/dataplanes/backend-1", dataplane("backend-1", "backend", 10002, None)).await;
    put("/meshes/shop/dataplanes/other-1", dataplane("other-1", "other", 10003, Some(("backend", 20001)))).await;
    put(
        "/meshes/shop/meshtimeouts/backend-timeout",
        json!({"type": "MeshTimeout", "mesh": "shop", "name": "backend-timeout", "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {"http": {"requestTimeout": "2s"}}}],
        }}),
    )
    .await;
    put(
        "/meshes/shop/meshtimeouts/web-inbound",
        json!({"type": "MeshTimeout", "mesh": "shop", "name": "web-inbound", "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "30s"}}],
        }}),
    )
    .await;
    put(
        "/meshes/shop/meshfaultinjections/web-faults",
        json!({"type": "MeshFaultInjection", "mesh": "shop", "name": "web-faults", "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "from": [{"targetRef": {"kind": "MeshService", "name": "frontend"},
                "default": {"http": [{"abort": {"httpStatus": 503, "percentage": 50}}]}}],
        }}),
    )
    .await;
    put(
        "/meshes/shop/meshhttproutes/web-api",
        json!({"type": "MeshHTTPRoute", "mesh": "shop", "name": "web-api", "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                "default": {"backendRefs": [{"kind": "MeshService", "name": "backend"}]},
            }]}],
        }}),
    )
    .await;
    put(
        "/meshes/shop/meshtimeouts/api-timeout",
        json!({"type": "MeshTimeout", "mesh": "shop", "name": "api-timeout", "spec": {
            "targetRef": {"kind": "MeshHTTPRoute", "name": "web-api"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "3s"}}}],
        }}),
    )
    .await;
    // Named to be the most specific of the Mesh-targeted timeouts.
    put(
        "/meshes/shop/meshtimeouts/a-shadow-timeout",
        json!({"type": "MeshTimeout", "mesh": "shop", "name": "a-shadow-timeout",
            "labels": {"kuma.io/effect": "shadow"}, "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {"http": {"requestTimeout": "9s"}}}],
        }}),
    )
    .await;
    put(
        "/meshes/shop/meshtrafficpermissions/deny-other",
        json!({"type": "MeshTrafficPermission", "mesh": "shop", "name": "deny-other", "spec": {
            "targetRef": {"kind": "MeshService", "name": "backend"},
            "from": [{"targetRef": {"kind": "MeshService", "name": "other"}, "default": {"action": "Deny"}}],
        }}),
    )
    .await;
    api
}

/// The entry of `kind` in a `_rules` answer.
fn of_type<'a>(answer: &'a Value, kind: &str) -> &'a Value {
    let rules = answer["rules"].as_array().unwrap_or_else(|| panic!("no rules: {answer:#}"));
    rules.iter().find(|rule| rule["type"] == kind).unwrap_or_else(|| panic!("no {kind} in {answer:#}"))
}

/// The rule of `rules` whose matchers are exactly `matchers`.
fn with_matchers(rules: &Value, matchers: Value) -> &Value {
    let list = rules.as_array().unwrap();
    list.iter()
        .find(|rule| rule["matchers"] == matchers)
        .unwrap_or_else(|| panic!("no rule for {matchers} in {rules:#}"))
}

fn origin_names(rule: &Value) -> Vec<&str> {
    rule["origin"].as_array().unwrap().iter().map(|meta| meta["name"].as_str().unwrap()).collect()
}

fn service(name: &str) -> Value {
    json!([{"key": "kuma.io/service", "value": name, "not": false}])
}

#[tokio::test]
async fn rules_show_each_outbound_and_inbound_with_their_origins() {
    let api = shop().await;
    let (status, answer) = api.get("/meshes/shop/dataplanes/web-1/_rules").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["resource"], json!({"type": "Dataplane", "mesh": "shop", "name": "web-1", "labels": {}}));
    assert_eq!(answer["shadow"], false);

    let timeout = of_type(&answer, "MeshTimeout");
    let to_backend = with_matchers(&timeout["toRules"], service("backend"));
    assert_eq!(to_backend["conf"]["http"]["requestTimeout"], "2s", "{to_backend:#}");
    assert_eq!(origin_names(to_backend), ["mesh-timeout-all-shop", "backend-timeout"]);
    assert_eq!(to_backend["origin"][1]["type"], "MeshTimeout");
    let everywhere = with_matchers(&timeout["toRules"], json!([]));
    assert_eq!(everywhere["conf"]["http"]["requestTimeout"], "15s");
    assert_eq!(origin_names(everywhere), ["mesh-timeout-all-shop"]);

    // Through the route: the mesh-wide conf, then the policy on the route.
    let route = json!([{"key": "meshhttproute", "value": "web-api", "not": false}]);
    let through_route = with_matchers(&timeout["toRules"], route);
    assert_eq!(through_route["conf"]["http"]["requestTimeout"], "3s", "{through_route:#}");
    assert_eq!(origin_names(through_route), ["mesh-timeout-all-shop", "api-timeout"]);
    let routes = with_matchers(&of_type(&answer, "MeshHTTPRoute")["toRules"], service("backend"));
    assert_eq!(routes["conf"]["rules"][0]["matches"][0]["path"]["value"], "/api", "{routes:#}");
    assert_eq!(origin_names(routes), ["web-api"]);

    let from = timeout["fromRules"].as_array().unwrap();
    assert_eq!(from.len(), 1, "{from:?}");
    assert_eq!(from[0]["inbound"], json!({"port": 10001, "tags": {"kuma.io/service": "web", "version": "v1"}}));
    let any_caller = with_matchers(&from[0]["rules"], json!([]));
    assert_eq!(any_caller["conf"]["idleTimeout"], "30s", "{any_caller:#}");
    assert_eq!(any_caller["conf"]["connectionTimeout"], "10s", "{any_caller:#}");
    assert_eq!(origin_names(any_caller), ["mesh-timeout-all-shop", "web-inbound"]);

    // Callers picked by service get their own conf.
    let faults = &of_type(&answer, "MeshFaultInjection")["fromRules"][0];
    let frontend = with_matchers(&faults["rules"], service("frontend"));
    assert_eq!(frontend["conf"]["http"][0]["abort"]["httpStatus"], 503, "{frontend:#}");
    assert_eq!(origin_names(frontend), ["web-faults"]);

    for kind in ["MeshRetry", "MeshCircuitBreaker"] {
        let everywhere = with_matchers(&of_type(&answer, kind)["toRules"], json!([]));
        assert_eq!(
            origin_names(everywhere),
            [format!("{}-all-shop", if kind == "MeshRetry" { "mesh-retry" } else { "mesh-circuit-breaker" })]
        );
    }
    assert!(!answer.to_string().contains("a-shadow-timeout"), "shadow policies stay out: {answer:#}");

    // The inbound of backend-1: `other` is denied by deny-other, everyone
    // else allowed by the mesh's allow-all; mTLS is off, which is said.
    let (_, answer) = api.get("/meshes/shop/dataplanes/backend-1/_rules").await;
    let permissions = of_type(&answer, "MeshTrafficPermission");
    let inbound = &permissions["fromRules"][0];
    assert_eq!(inbound["inbound"]["port"], 10002);
    let other = with_matchers(&inbound["rules"], service("other"));
    assert_eq!((&other["conf"], origin_names(other)), (&json!({"action": "Deny"}), vec!["deny-other"]));
    let rest = with_matchers(&inbound["rules"], json!([{"key": "kuma.io/service", "value": "other", "not": true}]));
    assert_eq!((&rest["conf"], origin_names(rest)), (&json!({"action": "Allow"}), vec!["allow-all-shop"]));
    assert!(permissions["warnings"][0].as_str().unwrap().contains("mTLS is off"), "{permissions:#}");
    // Nothing selects backend-1's inbound but the mesh-wide timeout.
    let timeout = of_type(&answer, "MeshTimeout");
    assert_eq!(origin_names(with_matchers(&timeout["fromRules"][0]["rules"], json!([]))), ["mesh-timeout-all-shop"]);
}

#[tokio::test]
async fn shadow_policies_count_only_when_asked() {
    let api = shop().await;
    let (status, answer) = api.get("/meshes/shop/dataplanes/web-1/_rules?shadow=true").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["shadow"], true);
    let to_backend = with_matchers(&of_type(&answer, "MeshTimeout")["toRules"], service("backend"));
    assert_eq!(to_backend["conf"]["http"]["requestTimeout"], "9s", "{to_backend:#}");
    assert_eq!(origin_names(to_backend), ["mesh-timeout-all-shop", "backend-timeout", "a-shadow-timeout"]);
    assert_eq!(to_backend["origin"][2]["labels"], json!({"kuma.io/effect": "shadow"}));

    // A shadow permission too: web would be denied on backend's inbound.
    let shadow_deny = json!({"type": "MeshTrafficPermission", "mesh": "shop", "name": "a-shadow-deny",
        "labels": {"kuma.io/effect": "shadow"}, "spec": {
        "targetRef": {"kind": "MeshService", "name": "backend"},
        "from": [{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}}],
    }});
    let (status, _) = api.put("/meshes/shop/meshtrafficpermissions/a-shadow-deny", shadow_deny).await;
    assert!(status.is_success());
    let (_, in_force) = api.get("/meshes/shop/dataplanes/backend-1/_rules").await;
    assert!(!in_force.to_string().contains("a-shadow-deny"), "{in_force:#}");
    let (_, with_shadow) = api.get("/meshes/shop/dataplanes/backend-1/_rules?shadow=true").await;
    let inbound = &of_type(&with_shadow, "MeshTrafficPermission")["fromRules"][0]["rules"];
    let web = inbound
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["matchers"].as_array().unwrap().contains(&service("web")[0]))
        .unwrap_or_else(|| panic!("no rule for web callers: {inbound:#}"));
    assert_eq!((&web["conf"], origin_names(web)), (&json!({"action": "Deny"}), vec!["a-shadow-deny"]));

    let (status, error) = api.get("/meshes/shop/dataplanes/web-1/_rules?shadow=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["invalid_parameters"][0]["field"], "shadow", "{error}");
}

/// The names of the Dataplanes a list answer holds.
fn names(answer: &Value) -> Vec<&str> {
    answer["items"].as_array().unwrap().iter().map(|item| item["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_policy_lists_the_dataplanes_it_affects() {
    let api = shop().await;
    let (status, answer) = api.get("/meshes/shop/meshtimeouts/web-inbound/_resources/dataplanes").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["total"].as_u64(), names(&answer)), (Some(1), vec!["web-1"]));
    assert_eq!(answer["items"][0], json!({"type": "Dataplane", "mesh": "shop", "name": "web-1", "labels": {}}));
    assert_eq!(answer["next"], Value::Null);

    let (_, answer) = api.get("/meshes/shop/meshtrafficpermissions/deny-other/_resources/dataplanes").await;
    assert_eq!(names(&answer), ["backend-1"]);
    // other-1 calls backend too, but the route (and so its timeout) is web's.
    for policy in ["meshtimeouts/api-timeout", "meshhttproutes/web-api"] {
        let (_, answer) = api.get(&format!("/meshes/shop/{policy}/_resources/dataplanes")).await;
        assert_eq!(names(&answer), ["web-1"], "{policy}");
    }

    // Pages like every list.
    let (_, answer) = api.get("/meshes/shop/meshtimeouts/mesh-timeout-all-shop/_resources/dataplanes?size=2").await;
    assert_eq!((answer["total"].as_u64(), names(&answer)), (Some(3), vec!["backend-1", "other-1"]));
    let next = answer["next"].as_str().unwrap();
    assert!(
        next.ends_with("/meshes/shop/meshtimeouts/mesh-timeout-all-shop/_resources/dataplanes?offset=2&size=2"),
        "{next}"
    );
    let (_, answer) =
        api.get("/meshes/shop/meshtimeouts/mesh-timeout-all-shop/_resources/dataplanes?offset=2&size=2").await;
    assert_eq!(names(&answer), ["web-1"]);
    let (_, answer) = api.get("/meshes/shop/meshtimeouts/mesh-timeout-all-shop/_resources/dataplanes?name=web").await;
    assert_eq!((answer["total"].as_u64(), names(&answer)), (Some(1), vec!["web-1"]));

    // A shadow policy lists where it would apply.
    let (_, answer) = api.get("/meshes/shop/meshtimeouts/a-shadow-timeout/_resources/dataplanes").await;
    assert_eq!(names(&answer), ["backend-1", "other-1", "web-1"]);

    // A policy that selects no proxy affects none.
    let (status, _) = api
        .put(
            "/meshes/shop/meshtimeouts/nobody",
            json!({"type": "MeshTimeout", "mesh": "shop", "name": "nobody", "spec": {
                "targetRef": {"kind": "MeshService", "name": "absent"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1s"}}],
            }}),
        )
        .await;
    assert!(status.is_success());
    let (_, answer) = api.get("/meshes/shop/meshtimeouts/nobody/_resources/dataplanes").await;
    assert_eq!((answer["total"].as_u64(), names(&answer)), (Some(0), vec![]));
    // ... and says why: no Dataplane serves the service it names.
    let warnings = answer["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{answer}");
    assert!(
        warnings[0].as_str().unwrap().starts_with("spec.targetRef: no Dataplane of the mesh serves service \"absent\"")
    );
    let (_, answer) = api.get("/meshes/shop/meshtimeouts/web-inbound/_resources/dataplanes").await;
    assert!(answer.get("warnings").is_none(), "only services no Dataplane serves are pointed out: {answer}");
}

/// The status and detail of an error answer, after checking its shape.
async fn error(api: &Api, path: &str) -> (StatusCode, String) {
    let (status, body) = api.get(path).await;
    assert_eq!(body["status"], status.as_u16(), "{path}: {body}");
    (status, body["detail"].as_str().unwrap_or_else(|| panic!("{path}: {body}")).to_owned())
}

#[tokio::test]
async fn what_does_not_exist_or_cannot_be_shown_is_explained() {
    let api = shop().await;
    for view in ["_rules", "_config", "xds"] {
        let (status, detail) = error(&api, &format!("/meshes/shop/dataplanes/nope/{view}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{view}: {detail}");
        assert_eq!(detail, "Dataplane \"nope\" in mesh \"shop\" not found");
    }
    let (status, detail) = error(&api, "/meshes/shop/dataplanes/web-1/_config").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{detail}");
    assert!(detail.contains("its sidecar is not connected"), "{detail}");
    let (status, detail) = error(&api, "/meshes/shop/dataplanes/web-1/xds").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{detail}");
    assert!(detail.contains("sets no networking.admin.port"), "{detail}");

    let (status, detail) = error(&api, "/meshes/shop/meshtimeouts/nope/_resources/dataplanes").await;
    assert_eq!((status, detail.as_str()), (StatusCode::NOT_FOUND, "MeshTimeout \"nope\" in mesh \"shop\" not found"));
    let (status, detail) = error(&api, "/meshes/shop/dataplanes/web-1/_resources/dataplanes").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(detail.contains("Dataplane is not a policy"), "{detail}");
    let (status, detail) = error(&api, "/meshes/shop/meshtimeouts/web-inbound/_resources/dataplanes?size=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{detail}");
    let (status, _) =
        api.http.post(api.url("/meshes/shop/dataplanes/web-1/_rules")).send().await.map(|r| (r.status(), ())).unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn with_mtls_on_an_inbound_nothing_allows_is_pointed_out() {
    let api = Api::memory();
    let mesh = json!({"type": "Mesh", "name": "locked", "skipCreatingInitialPolicies": ["*"],
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}});
    for (path, body) in [
        ("/meshes/locked", mesh),
        (
            "/meshes/locked/dataplanes/db-1",
            json!({"type": "Dataplane", "mesh": "locked", "name": "db-1",
            "networking": {"address": "127.0.0.1", "inbound": [
                {"port": 10005, "servicePort": 5432, "tags": {"kuma.io/service": "db"}},
                {"port": 10006, "servicePort": 9000, "tags": {"kuma.io/service": "db-admin"}},
            ]}}),
        ),
    ] {
        let (status, answer) = api.put(path, body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
    }
    // Before any permission exists, every inbound denies everyone.
    let (_, answer) = api.get("/meshes/locked/dataplanes/db-1/_rules").await;
    let permissions = of_type(&answer, "MeshTrafficPermission");
    assert_eq!(permissions["fromRules"][0]["rules"], json!([]), "{permissions:#}");
    assert_eq!(permissions["warnings"].as_array().unwrap().len(), 2, "{permissions:#}");

    let permission = json!({"type": "MeshTrafficPermission", "mesh": "locked", "name": "db-from-api", "spec": {
        "targetRef": {"kind": "MeshService", "name": "db"},
        "from": [{"targetRef": {"kind": "MeshService", "name": "api"}, "default": {"action": "Allow"}}],
    }});
    let (status, _) = api.put("/meshes/locked/meshtrafficpermissions/db-from-api", permission).await;
    assert!(status.is_success());
    let (_, answer) = api.get("/meshes/locked/dataplanes/db-1/_rules").await;
    let permissions = of_type(&answer, "MeshTrafficPermission");
    let inbounds = permissions["fromRules"].as_array().unwrap();
    let api_callers = with_matchers(&inbounds[0]["rules"], service("api"));
    assert_eq!((&api_callers["conf"], origin_names(api_callers)), (&json!({"action": "Allow"}), vec!["db-from-api"]));
    assert_eq!((&inbounds[1]["inbound"]["port"], &inbounds[1]["rules"]), (&json!(10006), &json!([])));
    assert_eq!(
        permissions["warnings"],
        json!(["no MeshTrafficPermission allows any caller on inbound port 10006: every caller is denied"])
    );
}
