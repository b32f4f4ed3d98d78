//! The REST API against a real control plane on loopback: every endpoint,
//! status code and error shape.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Api;

/// Every test runs against both stores: the in-memory one and the SQLite
/// one that `kodiak-cp run` uses by default.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Api::memory()).await
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Api::sqlite()).await
            })*
        }
    };
}

on_both_stores!(
    index_config_and_resource_types,
    default_mesh_exists_after_start,
    put_creates_then_updates_and_get_reads_back,
    yaml_bodies_and_identity_from_the_path,
    stale_version_is_a_conflict_and_changes_nothing,
    invalid_bodies_are_refused_with_every_field,
    proxy_patches_with_wrong_envoy_values_are_refused,
    bad_identity_and_types_are_refused,
    resource_in_a_missing_mesh_is_refused,
    long_mesh_names_are_refused_and_nothing_is_stored,
    malformed_documents_name_line_and_column,
    flow_style_yaml_bodies,
    if_match_star_requires_an_existing_resource,
    concurrent_puts_create_exactly_once,
    oversized_bodies_get_413,
    lists_page_with_size_offset_and_next,
    label_filters_and_cross_mesh_lists,
    delete_and_not_found,
    deleting_a_mesh_deletes_what_is_in_it,
    global_types,
    dataplane_overview_shape,
    unknown_paths_and_methods,
    diagnostics_ready_and_healthy,
);

fn secret(mesh: &str, name: &str) -> Value {
    json!({"type": "Secret", "mesh": mesh, "name": name, "data": "c2VjcmV0"})
}

fn dataplane(name: &str) -> Value {
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.2",
            "inbound": [{"port": 10001, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}]
        }
    })
}

/// Asserts Kuma's error shape and returns the invalid fields.
fn error_fields(status: StatusCode, body: &Value, expected: StatusCode) -> Vec<String> {
    assert_eq!(status, expected, "{body:#}");
    assert_eq!(body["type"], "/std-errors", "{body:#}");
    assert_eq!(body["status"], expected.as_u16(), "{body:#}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body:#}");
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()), "{body:#}");
    body["invalid_parameters"]
        .as_array()
        .map(|list| list.iter().map(|p| p["field"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn index_config_and_resource_types(api: Api) {
    let (status, index) = api.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(index["product"], "Kodiak");
    assert!(index["instanceId"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(index["version"].is_string() && index["hostname"].is_string());

    let (status, config) = api.get("/config").await;
    assert_eq!(status, StatusCode::OK);
    assert!(["memory", "sqlite"].contains(&config["store"]["type"].as_str().unwrap()), "{config}");

    let (status, types) = api.get("/_resources").await;
    assert_eq!(status, StatusCode::OK);
    let paths: Vec<&str> = types["resources"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    for expected in ["meshes", "dataplanes", "meshtimeouts", "meshtrafficpermissions", "zones", "global-secrets"] {
        assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
    }
}

async fn default_mesh_exists_after_start(api: Api) {
    let (status, mesh) = api.get("/meshes/default").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mesh["type"], "Mesh");
    assert!(mesh["creationTime"].is_string());
}

async fn put_creates_then_updates_and_get_reads_back(api: Api) {
    let doc = json!({"type": "Mesh", "name": "payments", "labels": {"team": "pay"}});
    assert_eq!(api.put("/meshes/payments", doc.clone()).await.0, StatusCode::CREATED);
    assert_eq!(api.put("/meshes/payments", doc).await.0, StatusCode::OK);
    let response = api.http.get(api.url("/meshes/payments")).send().await.unwrap();
    assert_eq!(response.headers()["etag"], "\"2\"");
    let mesh: Value = response.json().await.unwrap();
    assert_eq!(mesh["labels"]["team"], "pay");

    let (status, _) = api.put("/meshes/default/dataplanes/web-1", dataplane("web-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, dp) = api.get("/meshes/default/dataplanes/web-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dp["networking"]["inbound"][0]["tags"]["kuma.io/service"], "web");
}

async fn yaml_bodies_and_identity_from_the_path(api: Api) {
    let (status, body) = api.put_text("/meshes/default/secrets/s1", "type: Secret\ndata: c2VjcmV0\n".into()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, stored) = api.get("/meshes/default/secrets/s1").await;
    assert_eq!((stored["mesh"].as_str(), stored["name"].as_str()), (Some("default"), Some("s1")));
}

async fn stale_version_is_a_conflict_and_changes_nothing(api: Api) {
    api.put("/meshes/default/secrets/s1", secret("default", "s1")).await;
    let mut newer = secret("default", "s1");
    newer["data"] = "bmV3".into();
    let response = api
        .http
        .put(api.url("/meshes/default/secrets/s1"))
        .header("If-Match", "\"7\"")
        .body(newer.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    error_fields(status, &body, StatusCode::CONFLICT);
    assert_eq!(api.get("/meshes/default/secrets/s1").await.1["data"], "c2VjcmV0");

    let response = api
        .http
        .put(api.url("/meshes/default/secrets/s1"))
        .header("If-Match", "\"1\"")
        .body(newer.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.get("/meshes/default/secrets/s1").await.1["data"], "bmV3");

    let response = api
        .http
        .put(api.url("/meshes/default/secrets/s1"))
        .header("If-Match", "soon")
        .body(newer.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(error_fields(status, &response.json().await.unwrap(), StatusCode::BAD_REQUEST), vec!["If-Match"]);
}

async fn invalid_bodies_are_refused_with_every_field(api: Api) {
    let bad = json!({
        "type": "Dataplane", "mesh": "default", "name": "web-1",
        "networking": {"address": "127.0.0.2", "inbound": [{"port": 70000, "tags": {}}], "colour": "red"}
    });
    let (status, body) = api.put("/meshes/default/dataplanes/web-1", bad).await;
    let fields = error_fields(status, &body, StatusCode::BAD_REQUEST);
    assert!(fields.contains(&"networking.inbound[0].port".to_owned()), "{fields:?}");
    assert!(fields.contains(&"networking.colour".to_owned()), "{fields:?}");
    assert!(fields.len() >= 3, "{fields:?}");
    assert_eq!(api.get("/meshes/default/dataplanes/web-1").await.0, StatusCode::NOT_FOUND);
}

async fn proxy_patches_with_wrong_envoy_values_are_refused(api: Api) {
    let patch = |value: &str| {
        json!({
            "type": "MeshProxyPatch", "mesh": "default", "name": "p",
            "spec": {"targetRef": {"kind": "Mesh"}, "default": {"appendModifications": [
                {"cluster": {"operation": "Patch", "match": {"name": "backend"}, "value": value}},
            ]}}
        })
    };
    let (status, body) = api.put("/meshes/default/meshproxypatches/p", patch("connectTimeout: [1, 2]")).await;
    assert_eq!(
        error_fields(status, &body, StatusCode::BAD_REQUEST),
        vec!["spec.default.appendModifications[0].cluster.value"]
    );
    assert_eq!(api.get("/meshes/default/meshproxypatches/p").await.0, StatusCode::NOT_FOUND);
    let (status, body) = api.put("/meshes/default/meshproxypatches/p", patch("connectTimeout: 2s")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn bad_identity_and_types_are_refused(api: Api) {
    let (status, body) = api.put("/meshes/default/secrets/s1", secret("default", "s2")).await;
    assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["name"]);
    let (status, body) = api.put("/meshes/default/secrets/s1", secret("other", "s1")).await;
    assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["mesh"]);
    let (status, body) = api.put("/meshes/default/secrets/s1", json!({"type": "Zone", "name": "s1"})).await;
    assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["type"]);
    let (status, body) = api.put("/meshes/default/meshtimeouts/s1", secret("default", "s1")).await;
    assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["type"]);
    let (status, body) = api.put("/meshes/default/secrets/s1", json!({"type": "Sekret", "data": "c2VjcmV0"})).await;
    assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["type"]);
    let (status, body) = api.put("/meshes/Bad_Name", json!({"type": "Mesh"})).await;
    assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["name"]);
}

async fn long_mesh_names_are_refused_and_nothing_is_stored(api: Api) {
    for length in [64, 240] {
        let name = "m".repeat(length);
        let (status, body) = api.put(&format!("/meshes/{name}"), json!({"type": "Mesh"})).await;
        assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["name"], "{length}");
        assert!(body.to_string().contains("cannot be longer than 63 characters"), "{body}");
        assert_eq!(api.get(&format!("/meshes/{name}")).await.0, StatusCode::NOT_FOUND, "{length}");
        let (_, secrets) = api.get(&format!("/meshes/{name}/secrets")).await;
        assert_eq!(secrets["total"].as_u64().unwrap_or_default(), 0, "{secrets}");
    }
    let name = "m".repeat(63);
    assert_eq!(api.put(&format!("/meshes/{name}"), json!({"type": "Mesh"})).await.0, StatusCode::CREATED);
}

async fn resource_in_a_missing_mesh_is_refused(api: Api) {
    let (status, body) = api.put("/meshes/nowhere/secrets/s1", secret("nowhere", "s1")).await;
    assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["mesh"]);
    assert!(body["detail"].as_str().unwrap().contains("nowhere"), "{body}");
}

async fn flow_style_yaml_bodies(api: Api) {
    let (status, body) = api.put_text("/meshes/flowing", "{type: Mesh, name: flowing}".into()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn if_match_star_requires_an_existing_resource(api: Api) {
    let put_if_match = |path: &str, tag: &str| {
        api.http.put(api.url(path)).header("If-Match", tag).body(secret("default", "s1").to_string()).send()
    };
    let response = put_if_match("/meshes/default/secrets/s1", "*").await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = put_if_match("/meshes/default/secrets/s1", "\"1\"").await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.get("/meshes/default/secrets/s1").await.0, StatusCode::NOT_FOUND);
    api.put("/meshes/default/secrets/s1", secret("default", "s1")).await;
    let response = put_if_match("/meshes/default/secrets/s1", "*").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
}

async fn concurrent_puts_create_exactly_once(api: Api) {
    let puts: Vec<_> = (0..8)
        .map(|_| {
            let request =
                api.http.put(api.url("/meshes/default/secrets/raced")).body(secret("default", "raced").to_string());
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for put in puts {
        statuses.push(put.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201]);
    let response = api.http.get(api.url("/meshes/default/secrets/raced")).send().await.unwrap();
    assert_eq!(response.headers()["etag"], "\"8\"");
}

async fn malformed_documents_name_line_and_column(api: Api) {
    let (status, body) =
        api.put_text("/meshes/default/secrets/s1", "{\n  \"type\": \"Secret\",\n  \"data\": }".into()).await;
    error_fields(status, &body, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().starts_with("line 3, column"), "{body}");
    let (status, body) = api.put_text("/meshes/default/secrets/s1", "type: Secret\ndata: [c2V\n".into()).await;
    error_fields(status, &body, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().starts_with("line "), "{body}");
    let (status, body) = api.put_text("/meshes/default/secrets/s1", "- a\n- b\n".into()).await;
    error_fields(status, &body, StatusCode::BAD_REQUEST);
}

async fn oversized_bodies_get_413(api: Api) {
    let huge = json!({"type": "Secret", "mesh": "default", "name": "big", "data": "QUFB".repeat(400_000)});
    let (status, body) = api.put("/meshes/default/secrets/big", huge).await;
    error_fields(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.get("/meshes/default/secrets/big").await.0, StatusCode::NOT_FOUND);
}

async fn lists_page_with_size_offset_and_next(api: Api) {
    for i in 0..5 {
        api.put(&format!("/meshes/default/secrets/s{i}"), secret("default", &format!("s{i}"))).await;
    }
    let (status, page) = api.get("/meshes/default/secrets?size=2").await;
    assert_eq!(status, StatusCode::OK);
    // Every mesh has its dataplane-token signing key Secret, made with the mesh.
    assert_eq!(page["total"], 6);
    let names: Vec<&str> = page["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dataplane-token-signing-key-default-1", "s0"]);
    let next = page["next"].as_str().unwrap();
    assert!(next.starts_with(api.cp.api_url()) && next.contains("offset=2"), "{next}");
    let last: Value = api.http.get(next.replace("offset=2", "offset=5")).send().await.unwrap().json().await.unwrap();
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert!(last["next"].is_null());

    let (_, filtered) = api.get("/meshes/default/secrets?name=s3").await;
    assert_eq!(filtered["total"], 1);

    let huge_offset = format!("offset={}", u64::MAX);
    let bad_queries =
        ["size=0", "size=5000", "size=many", "offset=-2", "colour=blue", "size=1&size=2", "labels.a%20b=x"];
    for query in bad_queries.iter().copied().chain([huge_offset.as_str()]) {
        let (status, body) = api.get(&format!("/meshes/default/secrets?{query}")).await;
        let fields = error_fields(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(fields.len(), 1, "{query}: {body}");
    }
}

async fn label_filters_and_cross_mesh_lists(api: Api) {
    api.put("/meshes/other", json!({"type": "Mesh", "name": "other"})).await;
    api.put("/meshes/default/secrets/a", secret("default", "a")).await;
    let mut labelled = secret("other", "b");
    labelled["labels"] = json!({"team": "x"});
    api.put("/meshes/other/secrets/b", labelled).await;
    let (_, all) = api.get("/secrets").await;
    // Each mesh's dataplane-token signing key, and the two above.
    assert_eq!(all["total"], 4);
    let (_, by_label) = api.get("/secrets?labels.team=x").await;
    assert_eq!(by_label["total"], 1);
    assert_eq!(by_label["items"][0]["mesh"], "other");
    let (_, meshes) = api.get("/meshes").await;
    assert_eq!(meshes["total"], 2);
}

async fn delete_and_not_found(api: Api) {
    api.put("/meshes/default/secrets/s1", secret("default", "s1")).await;
    assert_eq!(api.delete("/meshes/default/secrets/s1").await.0, StatusCode::OK);
    let (status, body) = api.delete("/meshes/default/secrets/s1").await;
    error_fields(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = api.get("/meshes/default/secrets/s1").await;
    error_fields(status, &body, StatusCode::NOT_FOUND);
}

async fn deleting_a_mesh_deletes_what_is_in_it(api: Api) {
    api.put("/meshes/doomed", json!({"type": "Mesh", "name": "doomed"})).await;
    api.put("/meshes/doomed/secrets/s1", secret("doomed", "s1")).await;
    api.put("/meshes/default/secrets/s1", secret("default", "s1")).await;
    assert_eq!(api.delete("/meshes/doomed").await.0, StatusCode::OK);
    assert_eq!(api.get("/meshes/doomed/secrets/s1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/meshes/default/secrets/s1").await.0, StatusCode::OK);
}

async fn global_types(api: Api) {
    assert_eq!(
        api.put("/zones/east", json!({"type": "Zone", "name": "east", "enabled": true})).await.0,
        StatusCode::CREATED
    );
    let gs = json!({"type": "GlobalSecret", "name": "admin", "data": "c2VjcmV0"});
    assert_eq!(api.put("/global-secrets/admin", gs).await.0, StatusCode::CREATED);
    assert_eq!(api.get("/zones").await.1["total"], 1);
    assert_eq!(api.get("/global-secrets/admin").await.1["data"], "c2VjcmV0");
    let (status, body) = api.put("/zones/west", json!({"type": "Zone", "name": "west", "mesh": "default"})).await;
    assert_eq!(error_fields(status, &body, StatusCode::BAD_REQUEST), vec!["mesh"]);
}

async fn dataplane_overview_shape(api: Api) {
    api.put("/meshes/default/dataplanes/web-1", dataplane("web-1")).await;
    let (status, page) = api.get("/meshes/default/dataplanes/_overview").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 1);
    let item = &page["items"][0];
    assert_eq!(item["type"], "DataplaneOverview");
    assert_eq!(item["name"], "web-1");
    assert_eq!(item["dataplane"]["networking"]["address"], "127.0.0.2");
    assert_eq!(item["dataplaneInsight"]["subscriptions"], json!([]));
    let (status, one) = api.get("/meshes/default/dataplanes/web-1/_overview").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["name"], "web-1");
    let (status, body) = api.get("/meshes/default/dataplanes/nope/_overview").await;
    error_fields(status, &body, StatusCode::NOT_FOUND);
}

async fn unknown_paths_and_methods(api: Api) {
    for path in ["/widgets", "/meshes/default/widgets", "/dataplanes/web-1", "/meshes/default/zones", "/a/b/c/d/e/f"] {
        let (status, body) = api.get(path).await;
        error_fields(status, &body, StatusCode::NOT_FOUND);
    }
    let response = api.http.post(api.url("/meshes/default")).body("{}").send().await.unwrap();
    let status = response.status();
    error_fields(status, &response.json().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED);
    let response = api.http.delete(api.url("/meshes")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET");
    let response = api.http.post(api.url("/meshes/default")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, PUT, DELETE");
}

async fn diagnostics_ready_and_healthy(api: Api) {
    for path in ["/ready", "/healthy"] {
        let response = api.http.get(format!("{}{path}", api.cp.diagnostics_url())).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}
