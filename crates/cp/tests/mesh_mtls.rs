//! Mesh mTLS through the REST API: the rules that need the store (a CA
//! swapped under live mTLS, a provided CA that is missing or unusable, a
//! Secret still read by a backend) and the policies a new mesh starts with.

mod support;

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kodiak_ca::{KeyKind, RootCa, WorkloadRequest};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Api;

/// Stores `text` as the Secret `name` of `mesh`.
async fn put_secret(api: &Api, mesh: &str, name: &str, text: &str) {
    let body = json!({"type": "Secret", "mesh": mesh, "name": name, "data": STANDARD.encode(text)});
    assert_eq!(api.put(&format!("/meshes/{mesh}/secrets/{name}"), body).await.0, StatusCode::CREATED);
}

/// Asserts Kuma's error shape and returns the invalid fields with their reasons.
fn violations(status: StatusCode, body: &Value) -> Vec<(String, String)> {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert_eq!(body["type"], "/std-errors", "{body:#}");
    assert_eq!(body["status"], 400, "{body:#}");
    body["invalid_parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalid_parameters: {body:#}"))
        .iter()
        .map(|p| (p["field"].as_str().unwrap().to_owned(), p["reason"].as_str().unwrap().to_owned()))
        .collect()
}

fn fields(found: &[(String, String)]) -> Vec<&str> {
    found.iter().map(|(field, _)| field.as_str()).collect()
}

fn builtin_mesh(name: &str, enabled: &str, backend: &str) -> Value {
    json!({"type": "Mesh", "name": name, "mtls": {"enabledBackend": enabled, "backends": [{"name": backend, "type": "builtin"}]}})
}

fn provided_mesh(name: &str, cert: Value, key: Value) -> Value {
    json!({"type": "Mesh", "name": name, "mtls": {
        "enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "provided", "conf": {"cert": cert, "key": key}}]
    }})
}

fn root(backend: &str) -> kodiak_ca::Ca {
    RootCa::generate("m", backend, KeyKind::EcdsaP256, Duration::from_secs(3600), SystemTime::now()).unwrap()
}

#[tokio::test]
async fn the_ca_cannot_change_while_mtls_is_on() {
    let api = Api::memory();
    assert_eq!(api.put("/meshes/m", builtin_mesh("m", "ca-1", "ca-1")).await.0, StatusCode::CREATED);
    let (status, body) = api.put("/meshes/m", builtin_mesh("m", "ca-2", "ca-2")).await;
    let found = violations(status, &body);
    assert_eq!(fields(&found), ["mtls.enabledBackend"]);
    assert!(found[0].1.starts_with("Changing CA when mTLS is enabled is forbidden. Disable mTLS first"), "{found:?}");
    assert_eq!(api.get("/meshes/m").await.1["mtls"]["enabledBackend"], "ca-1", "nothing changed");

    // The builtin CA's Secret names must be valid resource names.
    let long = "b".repeat(240);
    let (status, body) = api.put("/meshes/m", builtin_mesh("m", "", &long)).await;
    assert_eq!(fields(&violations(status, &body)), ["mtls.backends[0].name"]);

    // Off first, then the other CA: both accepted.
    assert_eq!(api.put("/meshes/m", builtin_mesh("m", "", "ca-1")).await.0, StatusCode::OK);
    assert_eq!(api.put("/meshes/m", builtin_mesh("m", "ca-2", "ca-2")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_provided_ca_must_exist_match_its_key_and_be_a_ca() {
    let api = Api::memory();
    let ca = root("ca-1");
    let other = root("other");
    let leaf = ca
        .issue(&WorkloadRequest {
            mesh: "m".into(),
            services: vec!["web".into()],
            tags: Default::default(),
            key: KeyKind::EcdsaP256,
            lifetime: Duration::from_secs(60),
            now: SystemTime::now(),
        })
        .unwrap();
    api.put("/meshes/m", json!({"type": "Mesh", "name": "m"})).await;
    put_secret(&api, "m", "ca-cert", ca.cert_pem()).await;
    put_secret(&api, "m", "ca-key", ca.key_pem()).await;
    put_secret(&api, "m", "other-key", other.key_pem()).await;
    put_secret(&api, "m", "leaf-cert", &leaf.cert_pem).await;
    put_secret(&api, "m", "leaf-key", &leaf.key_pem).await;
    let secret = |name: &str| json!({"secret": name});

    let cases = [
        (secret("missing"), secret("ca-key"), "mtls.backends[0].conf.cert", "\"missing\" does not exist in mesh \"m\""),
        (secret("ca-cert"), secret("missing"), "mtls.backends[0].conf.key", "\"missing\" does not exist in mesh \"m\""),
        (secret("ca-cert"), secret("other-key"), "mtls.backends[0].conf.key", "does not match"),
        (secret("leaf-cert"), secret("leaf-key"), "mtls.backends[0].conf.cert", "not a CA"),
        (json!({"inlineString": "garbage"}), secret("ca-key"), "mtls.backends[0].conf.cert", "not a PEM-encoded"),
    ];
    for (cert, key, field, reason) in cases {
        let (status, body) = api.put("/meshes/m", provided_mesh("m", cert, key)).await;
        let found = violations(status, &body);
        assert_eq!(fields(&found), [field], "{found:?}");
        assert!(found[0].1.contains(reason), "{found:?}");
        assert!(api.get("/meshes/m").await.1.get("mtls").is_none(), "nothing changed");
    }

    let mut unchecked = provided_mesh("m", secret("missing"), secret("missing"));
    unchecked["mtls"]["skipValidation"] = json!(true);
    assert_eq!(api.put("/meshes/m", unchecked).await.0, StatusCode::OK, "skipValidation stores it unchecked");
    let good = provided_mesh("p", secret("ca-cert"), json!({"inline": STANDARD.encode(ca.key_pem())}));
    let (status, body) = api.put("/meshes/p", good).await;
    let found = violations(status, &body);
    assert!(found[0].1.contains("\"ca-cert\" does not exist in mesh \"p\""), "secrets are the mesh's own: {found:?}");
    api.put("/meshes/p", json!({"type": "Mesh", "name": "p"})).await;
    put_secret(&api, "p", "ca-cert", ca.cert_pem()).await;
    let good = provided_mesh("p", secret("ca-cert"), json!({"inline": STANDARD.encode(ca.key_pem())}));
    assert_eq!(api.put("/meshes/p", good).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_secret_a_ca_backend_reads_cannot_be_deleted() {
    let api = Api::memory();
    let ca = root("ca-1");
    api.put("/meshes/m", json!({"type": "Mesh", "name": "m"})).await;
    put_secret(&api, "m", "ca-cert", ca.cert_pem()).await;
    put_secret(&api, "m", "ca-key", ca.key_pem()).await;
    let mesh = provided_mesh("m", json!({"secret": "ca-cert"}), json!({"secret": "ca-key"}));
    assert_eq!(api.put("/meshes/m", mesh).await.0, StatusCode::OK);

    let (status, body) = api.delete("/meshes/m/secrets/ca-key").await;
    let found = violations(status, &body);
    assert_eq!(fields(&found), ["name"]);
    assert_eq!(
        found[0].1,
        "The secret \"ca-key\" that you are trying to remove is currently in use in Mesh \"m\" in mTLS backend \"ca-1\". \
         Please remove the reference from the \"ca-1\" backend before removing the secret."
    );
    assert_eq!(api.get("/meshes/m/secrets/ca-key").await.0, StatusCode::OK, "nothing changed");

    // Once no backend reads it, it goes.
    assert_eq!(api.put("/meshes/m", json!({"type": "Mesh", "name": "m"})).await.0, StatusCode::OK);
    assert_eq!(api.delete("/meshes/m/secrets/ca-key").await.0, StatusCode::OK);

    // The builtin CA's Secrets, generated before the PUT answers, are held the same way.
    assert_eq!(api.put("/meshes/b", builtin_mesh("b", "ca-1", "ca-1")).await.0, StatusCode::CREATED);
    let path = "/meshes/b/secrets/b.ca-builtin-key-ca-1";
    assert_eq!(api.get(path).await.0, StatusCode::OK, "the builtin CA exists once the Mesh is stored");
    let (status, body) = api.delete(path).await;
    assert_eq!(fields(&violations(status, &body)), ["name"]);
    assert_eq!(api.get("/meshes/b/secrets/b.ca-builtin-cert-ca-1").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_new_mesh_starts_with_an_allow_all_permission_once() {
    let api = Api::memory();
    let (status, policy) = api.get("/meshes/default/meshtrafficpermissions/allow-all-default").await;
    assert_eq!(status, StatusCode::OK, "the default mesh has one: {policy}");
    assert_eq!(policy["spec"]["from"], json!([{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]));

    api.put("/meshes/m", json!({"type": "Mesh", "name": "m"})).await;
    let path = "/meshes/m/meshtrafficpermissions/allow-all-m";
    assert_eq!(api.get(path).await.0, StatusCode::OK);
    assert_eq!(api.delete(path).await.0, StatusCode::OK);
    api.put("/meshes/m", builtin_mesh("m", "ca-1", "ca-1")).await;
    assert_eq!(api.get(path).await.0, StatusCode::NOT_FOUND, "a deleted default does not come back");

    for skip in ["*", "MeshTrafficPermission"] {
        let name = format!("skip-{}", skip.len());
        let mesh = json!({"type": "Mesh", "name": name, "skipCreatingInitialPolicies": [skip]});
        assert_eq!(api.put(&format!("/meshes/{name}"), mesh).await.0, StatusCode::CREATED);
        let (_, list) = api.get(&format!("/meshes/{name}/meshtrafficpermissions")).await;
        assert_eq!(list["total"], 0, "{skip}: {list}");
    }
}

#[tokio::test]
async fn a_new_mesh_starts_with_timeout_circuit_breaker_and_retry_defaults_unless_skipped() {
    let api = Api::memory();
    let defaults = [
        ("meshtimeouts", "mesh-timeout-all"),
        ("meshcircuitbreakers", "mesh-circuit-breaker-all"),
        ("meshretries", "mesh-retry-all"),
    ];
    for (plural, prefix) in defaults {
        let (status, policy) = api.get(&format!("/meshes/default/{plural}/{prefix}-default")).await;
        assert_eq!(status, StatusCode::OK, "{plural}: {policy}");
        assert_eq!(policy["spec"]["to"][0]["targetRef"], json!({"kind": "Mesh"}), "{policy}");
    }
    let (_, timeout) = api.get("/meshes/default/meshtimeouts/mesh-timeout-all-default").await;
    assert_eq!(timeout["spec"]["to"][0]["default"]["http"]["requestTimeout"], "15s");

    let mesh = json!({"type": "Mesh", "name": "lean", "skipCreatingInitialPolicies": ["MeshRetry", "MeshTimeout"]});
    assert_eq!(api.put("/meshes/lean", mesh).await.0, StatusCode::CREATED);
    for (plural, prefix) in defaults {
        let (status, _) = api.get(&format!("/meshes/lean/{plural}/{prefix}-lean")).await;
        let expected = if plural == "meshcircuitbreakers" { StatusCode::OK } else { StatusCode::NOT_FOUND };
        assert_eq!(status, expected, "{plural}");
    }
}
