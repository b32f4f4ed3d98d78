//! Tokens against a real control plane on loopback: issuing them over the
//! REST API, who may read Secrets, and every way a sidecar's bootstrap or
//! ADS stream is refused for its dataplane token.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use kodiak_cp::config::Config;
use kodiak_cp::testing::{TestControlPlane, loopback_config, start};
use kodiak_tokens::{DataplaneClaims, Registered, SigningKey, UserClaims};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tonic::Code;
use tonic::codegen::tokio_stream;

/// A control plane on the in-memory store with plain-HTTP servers (these
/// tests are about tokens, not TLS).
fn config(adjust: impl FnOnce(&mut Config)) -> Config {
    let plain = |name: &str| {
        matches!(name, "KODIAK_DP_SERVER_TLS_ENABLED" | "KODIAK_API_SERVER_HTTPS_ENABLED").then(|| "false".to_owned())
    };
    let mut config = Config::load(None, plain).unwrap();
    let loopback = loopback_config();
    config.api_server.http = loopback.api_server.http;
    config.diagnostics = loopback.diagnostics;
    config.dp_server.server = loopback.dp_server.server;
    config.store.kind = kodiak_cp::config::StoreKind::Memory;
    // Test clients keep their ADS streams open to the end: do not wait for them.
    config.general.shutdown_timeout = "100ms".into();
    adjust(&mut config);
    config
}

struct Cp {
    cp: TestControlPlane,
    http: reqwest::Client,
}

/// Who sends a request.
#[derive(Clone, Copy)]
enum From<'a> {
    /// Straight from this host without a token: an admin while localhostIsAdmin is on.
    Local,
    /// Straight from this host with this bearer token: that token's user.
    LocalWith(&'a str),
    /// Through a proxy (`X-Forwarded-For`), with this bearer token if any.
    Remote(Option<&'a str>),
}

impl Cp {
    fn start(adjust: impl FnOnce(&mut Config)) -> Cp {
        Cp { cp: start(config(adjust)).unwrap(), http: reqwest::Client::new() }
    }

    async fn request(&self, from: From<'_>, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.cp.api_url()));
        match from {
            From::Local => {}
            From::LocalWith(token) => request = request.bearer_auth(token),
            From::Remote(token) => {
                request = request.header("x-forwarded-for", "10.0.0.9");
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
            }
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn get(&self, from: From<'_>, path: &str) -> (StatusCode, String) {
        self.request(from, Method::GET, path, None).await
    }

    async fn put(&self, path: &str, body: Value) {
        let (status, text) = self.request(From::Local, Method::PUT, path, Some(body)).await;
        assert!(status.is_success(), "{status} {text}");
    }

    /// A token issued by a local admin.
    async fn token(&self, kind: &str, body: Value) -> String {
        let (status, token) = self.request(From::Local, Method::POST, &format!("/tokens/{kind}"), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{token}");
        token
    }

    async fn admin_token(&self) -> String {
        String::from_utf8(self.secret("/global-secrets/admin-user-token").await).unwrap()
    }

    /// A Secret's decoded data, read as a local admin.
    async fn secret(&self, path: &str) -> Vec<u8> {
        let (status, text) = self.get(From::Local, path).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let document: Value = serde_json::from_str(&text).unwrap();
        STANDARD.decode(document["data"].as_str().unwrap()).unwrap()
    }

    async fn signing_key(&self, path: &str) -> SigningKey {
        SigningKey::from_pem(&self.secret(path).await).unwrap()
    }

    async fn bootstrap(&self, name: &str, token: Option<&str>, inline: Option<&str>) -> (StatusCode, Value) {
        let mut body = json!({"mesh": "default", "name": name, "version": {"kodiakDp": "test", "envoy": "1.40.0"}});
        if let Some(token) = token {
            body["dataplaneToken"] = token.into();
        }
        if let Some(inline) = inline {
            body["dataplaneResource"] = inline.into();
        }
        let url = format!("{}/bootstrap", self.cp.dp_server_url());
        let response = self.http.post(url).body(body.to_string()).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn drain(&self, name: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut body = json!({"mesh": "default", "name": name});
        if let Some(token) = token {
            body["dataplaneToken"] = token.into();
        }
        let url = format!("{}/drain", self.cp.dp_server_url());
        let response = self.http.post(url).body(body.to_string()).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn ads(&self) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
        AggregatedDiscoveryServiceClient::connect(self.cp.dp_server_url().to_owned()).await.unwrap()
    }
}

fn dataplane(name: &str, service: &str) -> Value {
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.2",
            "inbound": [{"port": 10001, "servicePort": 8080, "tags": {"kuma.io/service": service}}]
        }
    })
}

/// The error's `title` and `detail`, after checking Kuma's error shape.
fn error(status: StatusCode, text: &str, expected: StatusCode) -> (String, String) {
    assert_eq!(status, expected, "{text}");
    let body: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["status"], expected.as_u16(), "{body:#}");
    (body["title"].as_str().unwrap().to_owned(), body["detail"].as_str().unwrap().to_owned())
}

fn invalid_fields(status: StatusCode, text: &str) -> Vec<String> {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let body: Value = serde_json::from_str(text).unwrap();
    body["invalid_parameters"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap().to_owned()).collect()
}

/// The claims of a token, read without checking it.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

/// Validity that ended an hour ago.
fn expired() -> Registered {
    Registered::new(SystemTime::now() - Duration::from_secs(7200), Duration::from_secs(3600))
}

fn valid() -> Registered {
    Registered::new(SystemTime::now(), Duration::from_secs(3600))
}

fn dp_claims(name: &str, registered: Registered) -> DataplaneClaims {
    DataplaneClaims {
        name: name.into(),
        mesh: "default".into(),
        tags: Default::default(),
        proxy_type: String::new(),
        workload: String::new(),
        registered,
    }
}

#[tokio::test]
async fn dataplane_tokens_are_issued_with_the_meshs_newest_key() {
    let cp = Cp::start(|_| {});
    let post = |body: Value| cp.request(From::Local, Method::POST, "/tokens/dataplane", Some(body));
    assert_eq!(invalid_fields_of(post(json!({"name": "web-1"})).await), ["mesh"]);
    assert_eq!(invalid_fields_of(post(json!({"mesh": "nowhere"})).await), ["mesh"]);
    assert_eq!(invalid_fields_of(post(json!({"mesh": "default", "validFor": "30d"})).await), ["validFor"]);
    assert_eq!(invalid_fields_of(post(json!({"mesh": "default", "type": "ingress"})).await), ["type"]);
    assert_eq!(invalid_fields_of(post(json!({"mesh": "default", "name": "Web 1"})).await), ["name"]);
    let (status, text) = post(json!({"mesh": "default", "nmae": "web-1"})).await;
    assert!(error(status, &text, StatusCode::BAD_REQUEST).1.contains("nmae"), "{text}");

    let token = cp
        .token(
            "dataplane",
            json!({"mesh": "default", "name": "web-1", "tags": {"kuma.io/service": ["web"]}, "validFor": "720h"}),
        )
        .await;
    assert_eq!(header(&token)["kid"], "1");
    assert_eq!(header(&token)["alg"], "RS256");
    let claims = claims(&token);
    assert_eq!((claims["Name"].as_str(), claims["Mesh"].as_str()), (Some("web-1"), Some("default")));
    assert_eq!(claims["Tags"], json!({"kuma.io/service": ["web"]}));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 720 * 3600 + 5);

    // Rotation: a key with a higher serial signs from now on; the first still verifies.
    let pem = SigningKey::generate().unwrap().to_pem();
    let secret = json!({"type": "Secret", "mesh": "default", "name": "dataplane-token-signing-key-default-2", "data": STANDARD.encode(pem)});
    cp.put("/meshes/default/secrets/dataplane-token-signing-key-default-2", secret).await;
    let rotated = cp.token("dataplane", json!({"mesh": "default"})).await;
    assert_eq!(header(&rotated)["kid"], "2");
    cp.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web")).await;
    assert_eq!(cp.bootstrap("web-1", Some(&token), None).await.0, StatusCode::OK, "the old key still verifies");
}

fn invalid_fields_of((status, text): (StatusCode, String)) -> Vec<String> {
    invalid_fields(status, &text)
}

#[tokio::test]
async fn user_tokens_need_a_name_and_a_validity() {
    let cp = Cp::start(|_| {});
    let post = |body: Value| cp.request(From::Local, Method::POST, "/tokens/user", Some(body));
    assert_eq!(invalid_fields_of(post(json!({"groups": ["team"], "validFor": "24h"})).await), ["name"]);
    assert_eq!(invalid_fields_of(post(json!({"name": "alice"})).await), ["validFor"]);
    assert_eq!(invalid_fields_of(post(json!({"name": "alice", "validFor": "0s"})).await), ["validFor"]);
    let token = cp.token("user", json!({"name": "alice", "groups": ["team"], "validFor": "24h"})).await;
    let claims = claims(&token);
    assert_eq!((claims["Name"].clone(), claims["Groups"].clone()), (json!("alice"), json!(["team"])));
    assert_eq!(header(&token)["kid"], "1");
    let admin = claims_of_admin(&cp).await;
    assert_eq!(
        (admin["Name"].clone(), admin["Groups"].clone()),
        (json!("mesh-system:admin"), json!(["mesh-system:admin"]))
    );
}

async fn claims_of_admin(cp: &Cp) -> Value {
    claims(&cp.admin_token().await)
}

#[tokio::test]
async fn secrets_and_token_issuing_are_for_admins_only() {
    let cp = Cp::start(|_| {});
    let user = cp.token("user", json!({"name": "alice", "groups": ["team"], "validFor": "1h"})).await;
    let admin = cp.admin_token().await;
    let admin_only = [
        (Method::GET, "/meshes/default/secrets", None),
        (Method::GET, "/global-secrets", None),
        (Method::GET, "/global-secrets/admin-user-token", None),
        (
            Method::PUT,
            "/meshes/default/secrets/s1",
            Some(json!({"type": "Secret", "mesh": "default", "name": "s1", "data": "YQ=="})),
        ),
        (Method::DELETE, "/global-secrets/admin-user-token", None),
        (Method::POST, "/tokens/dataplane", Some(json!({"mesh": "default"}))),
        (Method::POST, "/tokens/user", Some(json!({"name": "mallory", "validFor": "1h"}))),
    ];
    for caller in [None, Some(user.as_str())] {
        for (method, path, body) in &admin_only {
            let (status, text) = cp.request(From::Remote(caller), method.clone(), path, body.clone()).await;
            let (title, detail) = error(status, &text, StatusCode::FORBIDDEN);
            assert_eq!(title, "Access Denied", "{method} {path}");
            assert!(detail.contains("mesh-system:admin"), "{detail}");
        }
        // Everything else is open, as in Kuma.
        assert_eq!(cp.get(From::Remote(caller), "/meshes/default").await.0, StatusCode::OK);
    }
    for (method, path, body) in &admin_only[..4] {
        let (status, text) = cp.request(From::Remote(Some(&admin)), method.clone(), path, body.clone()).await;
        assert!(status.is_success(), "{method} {path}: {status} {text}");
    }
    let (status, token) =
        cp.request(From::Remote(Some(&admin)), Method::POST, "/tokens/user", admin_only[6].2.clone()).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(claims(&token)["Name"], "mallory");
    // A user in the admin group is an admin too.
    let ops = cp.token("user", json!({"name": "ops", "groups": ["mesh-system:admin"], "validFor": "1h"})).await;
    assert_eq!(cp.get(From::Remote(Some(&ops)), "/global-secrets").await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_user_tokens_get_401_with_the_reason() {
    let cp = Cp::start(|_| {});
    let key = cp.signing_key("/global-secrets/user-token-signing-key-1").await;
    let user = |registered| UserClaims { name: "alice".into(), groups: vec![], registered };
    let good = cp.token("user", json!({"name": "alice", "validFor": "1h"})).await;
    let revoked = cp.token("user", json!({"name": "bob", "validFor": "1h"})).await;
    let jti = claims(&revoked)["jti"].as_str().unwrap().to_owned();
    let list = json!({"type": "GlobalSecret", "name": "user-token-revocations", "data": STANDARD.encode(format!("other,{jti}"))});
    cp.put("/global-secrets/user-token-revocations", list).await;
    let other_key = SigningKey::generate().unwrap();
    let cases = [
        ("not-a-jwt".to_owned(), "the token is not a JWT"),
        (kodiak_tokens::issue(&user(expired()), "1", &key).unwrap(), "token expired at"),
        (revoked, "token is revoked"),
        (kodiak_tokens::issue(&user(valid()), "1", &other_key).unwrap(), "does not match the signing key with KID 1"),
        (
            kodiak_tokens::issue(&user(valid()), "2", &key).unwrap(),
            "there is no signing key with KID 2. GlobalSecret of name \"user-token-signing-key-2\" is not found",
        ),
    ];
    for (token, reason) in &cases {
        let (status, text) = cp.get(From::Remote(Some(token)), "/meshes").await;
        let (title, detail) = error(status, &text, StatusCode::UNAUTHORIZED);
        assert_eq!(title, "Invalid authentication data");
        assert!(detail.contains(reason), "{detail}");
    }
    let response = cp.http.get(format!("{}/meshes", cp.cp.api_url())).header("x-real-ip", "10.0.0.9");
    let response = response.header("authorization", format!("Basic {good}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(cp.get(From::Remote(Some(&good)), "/meshes").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_token_sent_from_localhost_is_that_tokens_user() {
    let cp = Cp::start(|_| {});
    let alice = cp.token("user", json!({"name": "alice", "groups": ["team"], "validFor": "1h"})).await;
    let (status, text) = cp.get(From::LocalWith("garbage"), "/meshes").await;
    let (title, detail) = error(status, &text, StatusCode::UNAUTHORIZED);
    assert_eq!(title, "Invalid authentication data");
    assert!(detail.contains("the token is not a JWT"), "{detail}");
    let (status, text) = cp.get(From::LocalWith(&alice), "/meshes/default/secrets").await;
    let (title, detail) = error(status, &text, StatusCode::FORBIDDEN);
    assert_eq!(title, "Access Denied");
    assert!(detail.contains("user \"alice\" cannot access Secret resources"), "{detail}");
    assert_eq!(cp.get(From::LocalWith(&alice), "/meshes/default").await.0, StatusCode::OK);
    let admin = cp.admin_token().await;
    assert_eq!(cp.get(From::LocalWith(&admin), "/meshes/default/secrets").await.0, StatusCode::OK);
    let (status, text) = cp.get(From::Local, "/meshes/default/secrets").await;
    assert_eq!(status, StatusCode::OK, "no Authorization header from localhost is an admin: {text}");
}

#[tokio::test]
async fn localhost_is_admin_can_be_turned_off() {
    let data = tempfile::tempdir().unwrap();
    let sqlite = |localhost_is_admin: bool| {
        let dir = data.path().to_owned();
        move |config: &mut Config| {
            config.store.kind = kodiak_cp::config::StoreKind::Sqlite;
            config.store.data_dir = dir;
            config.api_server.authn.localhost_is_admin = localhost_is_admin;
        }
    };
    let first = Cp::start(sqlite(true));
    let admin = first.admin_token().await;
    first.cp.stop();
    let cp = Cp::start(sqlite(false));
    let (status, text) = cp.get(From::Local, "/meshes/default/secrets").await;
    assert_eq!(error(status, &text, StatusCode::FORBIDDEN).0, "Access Denied");
    let (status, text) =
        cp.request(From::Local, Method::POST, "/tokens/user", Some(json!({"name": "a", "validFor": "1h"}))).await;
    assert_eq!(error(status, &text, StatusCode::FORBIDDEN).0, "Access Denied");
    assert_eq!(cp.get(From::Local, "/meshes").await.0, StatusCode::OK);
    let authorized = cp.http.get(format!("{}/global-secrets/admin-user-token", cp.cp.api_url())).bearer_auth(&admin);
    assert_eq!(authorized.send().await.unwrap().status(), StatusCode::OK, "the admin token still works");
}

#[tokio::test]
async fn the_admin_token_bootstrap_can_be_turned_off() {
    let cp = Cp::start(|config| config.api_server.authn.tokens.bootstrap_admin_token = false);
    assert_eq!(cp.get(From::Local, "/global-secrets/admin-user-token").await.0, StatusCode::NOT_FOUND);
    let on = Cp::start(|_| {});
    assert_eq!(on.get(From::Local, "/global-secrets/admin-user-token").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_bootstrap_is_refused_unless_its_token_matches_the_dataplane() {
    let cp = Cp::start(|_| {});
    cp.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web")).await;
    cp.put("/meshes/other", json!({"type": "Mesh", "name": "other"})).await;
    let key = cp.signing_key("/meshes/default/secrets/dataplane-token-signing-key-default-1").await;
    let issue = |body: Value| cp.token("dataplane", body);
    let for_web = issue(json!({"mesh": "default", "tags": {"kuma.io/service": ["web"]}})).await;
    let revoked = issue(json!({"mesh": "default", "name": "web-1"})).await;
    let jti = claims(&revoked)["jti"].as_str().unwrap().to_owned();
    let list = json!({"type": "Secret", "mesh": "default", "name": "dataplane-token-revocations-default", "data": STANDARD.encode(&jti)});
    cp.put("/meshes/default/secrets/dataplane-token-revocations-default", list).await;

    let unauthorized = [
        (None, "no dataplane token"),
        (Some(issue(json!({"mesh": "other", "name": "web-1"})).await), "does not match the signing key with KID 1"),
        (Some(kodiak_tokens::issue(&dp_claims("web-1", expired()), "1", &key).unwrap()), "token expired at"),
        (Some(revoked), "token is revoked"),
        (
            Some(kodiak_tokens::issue(&dp_claims("web-1", valid()), "1", &SigningKey::generate().unwrap()).unwrap()),
            "does not match the signing key with KID 1",
        ),
        (
            Some(kodiak_tokens::issue(&dp_claims("web-1", valid()), "2", &key).unwrap()),
            "there is no signing key with KID 2. Secret of name \"dataplane-token-signing-key-default-2\" in mesh \"default\" is not found",
        ),
    ];
    for (token, reason) in &unauthorized {
        let (status, body) = cp.bootstrap("web-1", token.as_deref(), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:#}");
        let title = if token.is_some() { "Invalid dataplane token" } else { "Dataplane token required" };
        assert_eq!(body["title"], title, "{body:#}");
        assert!(body["detail"].as_str().unwrap().contains(reason), "{body:#}");
        assert!(!body["detail"].as_str().unwrap().contains("invalid dataplane token"), "said twice: {body:#}");
    }
    let forbidden = [
        (
            issue(json!({"mesh": "default", "name": "web-2"})).await,
            "proxy name from requestor: web-1 is different than in token: web-2",
        ),
        (
            issue(json!({"mesh": "default", "tags": {"kuma.io/service": ["backend"]}})).await,
            "dataplane contains tag \"kuma.io/service\" with value \"web\" which is not allowed with this token",
        ),
        (
            issue(json!({"mesh": "default", "tags": {"kuma.io/zone": ["east"]}})).await,
            "dataplane has no tag \"kuma.io/zone\"",
        ),
    ];
    for (token, reason) in &forbidden {
        let (status, body) = cp.bootstrap("web-1", Some(token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
        assert_eq!(body["title"], "Dataplane token does not match", "{body:#}");
        assert!(body["detail"].as_str().unwrap().starts_with(reason), "said twice: {body:#}");
    }
    // A sidecar registering a Dataplane that claims a service its token does not carry: nothing is created.
    let claiming = dataplane("web-9", "payments").to_string();
    let (status, body) = cp.bootstrap("web-9", Some(&for_web), Some(&claiming)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    assert!(body["detail"].as_str().unwrap().contains("value \"payments\""), "{body:#}");
    assert_eq!(cp.get(From::Local, "/meshes/default/dataplanes/web-9").await.0, StatusCode::NOT_FOUND);

    let (status, body) = cp.bootstrap("web-1", Some(&for_web), None).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
}

fn node(id: &str) -> Option<Node> {
    Some(Node { id: id.into(), ..Default::default() })
}

/// Opens a SotW stream for `node_id` with this `authorization` metadata and
/// returns how it ended (or `Code::Ok` when a response came). NOT_FOUND is
/// retried for a while: the control plane learns of a Dataplane from its
/// store's events, a moment after the Dataplane was applied.
async fn sotw(cp: &Cp, node_id: &str, token: Option<&str>) -> (Code, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = sotw_once(cp, node_id, token).await;
        if outcome.0 != Code::NotFound || tokio::time::Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sotw_once(cp: &Cp, node_id: &str, token: Option<&str>) -> (Code, String) {
    let first = DiscoveryRequest {
        node: node(node_id),
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        ..Default::default()
    };
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    sender.send(first).await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(requests));
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", token.parse().unwrap());
    }
    let outcome = match cp.ads().await.stream_aggregated_resources(request).await {
        Err(status) => (status.code(), status.message().to_owned()),
        Ok(response) => {
            let mut responses = response.into_inner();
            match tokio::time::timeout(Duration::from_secs(10), responses.message()).await.expect("an answer") {
                Ok(Some(_)) => (Code::Ok, String::new()),
                Ok(None) => (Code::Unknown, "ended without a status".into()),
                Err(status) => (status.code(), status.message().to_owned()),
            }
        }
    };
    drop(sender);
    outcome
}

#[tokio::test]
async fn ads_streams_are_refused_unless_their_token_matches() {
    let cp = Cp::start(|_| {});
    cp.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web")).await;
    let for_web_1 = cp.token("dataplane", json!({"mesh": "default", "name": "web-1"})).await;
    let for_web_2 = cp.token("dataplane", json!({"mesh": "default", "name": "web-2"})).await;

    let (code, message) = sotw(&cp, "default.web-1", None).await;
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("no dataplane token"), "{message}");
    let (code, message) = sotw(&cp, "default.web-1", Some("garbage")).await;
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("not a JWT"), "{message}");
    let (code, message) = sotw(&cp, "default.web-1", Some(&for_web_2)).await;
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("proxy name from requestor: web-1 is different than in token: web-2"), "{message}");

    // Delta streams are checked the same way.
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    let first = DeltaDiscoveryRequest {
        node: node("default.web-1"),
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        ..Default::default()
    };
    sender.send(first).await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(requests));
    request.metadata_mut().insert("authorization", for_web_2.parse().unwrap());
    let status = match cp.ads().await.delta_aggregated_resources(request).await {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.expect_err("the stream is refused"),
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let (code, message) = sotw(&cp, "default.web-1", Some(&for_web_1)).await;
    assert_eq!(code, Code::Ok, "{message}");
}

const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

type Responses = tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>;

/// A SotW stream for `node_id` that answered its first request, kept open.
/// The control plane learns of a Dataplane from its store's events: NOT_FOUND
/// is retried until it has.
async fn open_stream(
    cp: &Cp,
    node_id: &str,
    token: Option<&str>,
) -> (
    tokio::sync::mpsc::Sender<DiscoveryRequest>,
    Responses,
    envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (sender, requests) = tokio::sync::mpsc::channel(4);
        let first = DiscoveryRequest { node: node(node_id), type_url: CLUSTER.into(), ..Default::default() };
        sender.send(first).await.unwrap();
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(requests));
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", token.parse().unwrap());
        }
        let answer = match cp.ads().await.stream_aggregated_resources(request).await {
            Ok(response) => {
                let mut responses = response.into_inner();
                responses.message().await.map(|first| (responses, first))
            }
            Err(status) => Err(status),
        };
        match answer {
            Ok((responses, Some(first))) => return (sender, responses, first),
            Err(status) if status.code() == Code::NotFound && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("the stream did not open: {status:?}"),
            Ok((_, None)) => panic!("the stream ended at once"),
        }
    }
}

#[tokio::test]
async fn a_drain_is_refused_unless_its_token_matches_the_dataplane() {
    let cp = Cp::start(|_| {});
    cp.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web")).await;
    let for_web_1 = cp.token("dataplane", json!({"mesh": "default", "name": "web-1"})).await;
    let for_web_2 = cp.token("dataplane", json!({"mesh": "default", "name": "web-2"})).await;
    let _stream = open_stream(&cp, "default.web-1", Some(&for_web_1)).await;

    let refusals = [
        ("web-1", None, StatusCode::UNAUTHORIZED, "no dataplane token"),
        ("web-1", Some("garbage"), StatusCode::UNAUTHORIZED, "not a JWT"),
        ("web-1", Some(for_web_2.as_str()), StatusCode::FORBIDDEN, "is different than in token: web-2"),
        ("web-3", Some(for_web_1.as_str()), StatusCode::NOT_FOUND, "Dataplane default/web-3 does not exist"),
    ];
    for (name, token, expected, reason) in refusals {
        let (status, text) = cp.drain(name, token).await;
        let (_, detail) = error(status, &text, expected);
        assert!(detail.contains(reason), "{detail}");
    }
    // The refusals changed nothing: the sidecar is still connected and serving until its own drain.
    assert_eq!(cp.drain("web-1", Some(&for_web_1)).await, (StatusCode::OK, r#"{"draining":true}"#.to_owned()));
}

#[tokio::test]
async fn a_drain_checks_the_token_before_saying_whether_the_dataplane_exists() {
    let cp = Cp::start(|_| {});
    let key = cp.signing_key("/meshes/default/secrets/dataplane-token-signing-key-default-1").await;
    let revoked = cp.token("dataplane", json!({"mesh": "default", "name": "ghost"})).await;
    let jti = claims(&revoked)["jti"].as_str().unwrap().to_owned();
    let list = json!({"type": "Secret", "mesh": "default", "name": "dataplane-token-revocations-default", "data": STANDARD.encode(&jti)});
    cp.put("/meshes/default/secrets/dataplane-token-revocations-default", list).await;
    let foreign = kodiak_tokens::issue(&dp_claims("ghost", valid()), "1", &SigningKey::generate().unwrap()).unwrap();
    let expired = kodiak_tokens::issue(&dp_claims("ghost", expired()), "1", &key).unwrap();
    let unauthorized = [
        (None, "no dataplane token"),
        (Some("garbage"), "not a JWT"),
        (Some(foreign.as_str()), "does not match the signing key with KID 1"),
        (Some(expired.as_str()), "token expired at"),
        (Some(revoked.as_str()), "token is revoked"),
    ];
    for (token, reason) in unauthorized {
        let (status, text) = cp.drain("ghost", token).await;
        let (_, detail) = error(status, &text, StatusCode::UNAUTHORIZED);
        assert!(detail.contains(reason) && !detail.contains("ghost does not exist"), "{detail}");
    }
    // Only a valid token learns that the Dataplane does not exist.
    let for_ghost = cp.token("dataplane", json!({"mesh": "default", "name": "ghost"})).await;
    let (status, text) = cp.drain("ghost", Some(&for_ghost)).await;
    let (_, detail) = error(status, &text, StatusCode::NOT_FOUND);
    assert!(detail.contains("Dataplane default/ghost does not exist"), "{detail}");
}

#[tokio::test]
async fn drains_need_no_token_when_dataplane_authentication_is_off() {
    let cp = Cp::start(|config| config.dp_server.authn.dp_proxy.kind = kodiak_cp::config::DpProxyAuthn::None);
    cp.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web")).await;
    let _stream = open_stream(&cp, "default.web-1", None).await;
    assert_eq!(cp.drain("web-1", None).await, (StatusCode::OK, r#"{"draining":true}"#.to_owned()));
}

#[tokio::test]
async fn a_stream_may_not_change_its_node() {
    let cp = Cp::start(|config| config.dp_server.authn.dp_proxy.kind = kodiak_cp::config::DpProxyAuthn::None);
    cp.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web")).await;
    let (sender, mut responses, first) = open_stream(&cp, "default.web-1", None).await;
    let other = DiscoveryRequest {
        node: node("default.web-2"),
        type_url: CLUSTER.into(),
        response_nonce: first.nonce,
        version_info: first.version_info,
        ..Default::default()
    };
    sender.send(other).await.unwrap();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), responses.message()).await.expect("an answer") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("node id changed within the stream"), "{status:?}");
}

#[tokio::test]
async fn the_https_api_knows_requests_from_this_host_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config();
    config.store.kind = kodiak_cp::config::StoreKind::Memory;
    config.store.data_dir = dir.path().to_owned();
    let cp = start(config).unwrap();
    let tls = kodiak_cp::testing::client_tls_trusting(cp.tls_cert_file().unwrap()).unwrap();
    let https = reqwest::Client::builder().use_preconfigured_tls(tls).build().unwrap();
    let url = format!("{}/global-secrets", cp.https_api_url().unwrap());
    assert_eq!(https.get(&url).send().await.unwrap().status(), StatusCode::OK, "local is admin over HTTPS");
    let proxied = https.get(&url).header("x-forwarded-for", "10.0.0.9").send().await.unwrap();
    assert_eq!(proxied.status(), StatusCode::FORBIDDEN);
}
