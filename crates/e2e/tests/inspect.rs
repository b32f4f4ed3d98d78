//! Inspecting a running sidecar: after a user applies a MeshTimeout, the
//! control plane's `_config` for the caller holds it, `_rules` names it as
//! the origin of the outbound's conf, and `xds` returns the sidecar Envoy's
//! own config dump, which holds it too once Envoy took it.

use kodiak_e2e::dataplanes::{backend, client};
use kodiak_e2e::policies::CONVERGE;
use kodiak_e2e::{ControlPlane, Reply, Sidecar, TestService, Transport, eventually, free_port, get};
use serde_json::Value;

const TIMEOUT: &str = "type: MeshTimeout
mesh: default
name: b-quick
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    default:
      http: {requestTimeout: 1700ms}
";

/// Whether `value` holds, anywhere, `key` with the value `wanted`.
fn holds(value: &Value, key: &str, wanted: &str) -> bool {
    match value {
        Value::Object(object) => object.iter().any(|(k, v)| (k == key && v == wanted) || holds(v, key, wanted)),
        Value::Array(items) => items.iter().any(|item| holds(item, key, wanted)),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_sidecars_config_and_envoy_dump_hold_the_applied_timeout() {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    let _b = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), Transport::Delta);
    let port = free_port();
    let admin_port = free_port();
    let a_document = client("a-1", "b", port, free_port())
        .replace("networking:\n", &format!("networking:\n  admin: {{port: {admin_port}}}\n"));
    let _a = Sidecar::register(&control_plane, &a_document, Transport::Delta);
    let url = format!("http://127.0.0.1:{port}/");
    let expected = Reply { status: 200, instance: Some("b-1".into()) };
    eventually("a reaches b", CONVERGE, || async { (get(&url).await == expected).then_some(()) }).await;

    let api = control_plane.client();
    let config = |segment: &'static str| {
        let api = api.clone();
        async move { api.get_path(&["meshes", "default", "dataplanes", "a-1", segment], &[]).await }
    };
    let before = config("_config").await.expect("the sidecar is connected: its configuration is there");
    assert!(before["generation"].as_u64().is_some_and(|generation| generation > 0), "{before:#}");
    assert!(!holds(&before["xds"]["routes"], "timeout", "1.700s"), "no such timeout yet: {before:#}");

    control_plane.apply(TIMEOUT).await;
    let after = eventually("the MeshTimeout in the generated configuration", CONVERGE, || async {
        let answer = config("_config").await.ok()?;
        holds(&answer["xds"]["routes"], "timeout", "1.700s").then_some(answer)
    })
    .await;
    assert!(after["generation"].as_u64() > before["generation"].as_u64(), "{after:#}");
    assert!(!after.to_string().contains("PRIVATE KEY"), "private keys are redacted");

    let rules = config("_rules").await.expect("rules");
    let timeouts = rules["rules"].as_array().unwrap().iter().find(|rule| rule["type"] == "MeshTimeout").unwrap();
    let to_b = timeouts["toRules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["matchers"][0]["value"] == "b")
        .unwrap_or_else(|| panic!("no rule toward b: {timeouts:#}"));
    let origins: Vec<&str> = to_b["origin"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(origins, ["mesh-timeout-all-default", "b-quick"]);

    // Envoy's own dump: this sidecar's node, with the timeout once Envoy took it.
    let dump = eventually("the MeshTimeout in Envoy's config dump", CONVERGE, || async {
        let dump = config("xds").await.ok()?;
        holds(&dump, "timeout", "1.700s").then_some(dump)
    })
    .await;
    let configs = dump["configs"].as_array().expect("a config dump");
    // The sidecar's dataplane token (a JWT: eyJ...) is not given away.
    assert!(control_plane.requires_dataplane_tokens(), "the sidecars show tokens");
    assert!(!dump.to_string().contains("eyJ"), "a token in the dump: {dump:#}");
    let node = configs.iter().find_map(|config| config.pointer("/bootstrap/node/id")).expect("the bootstrap's node");
    assert_eq!(node, "default.a-1");
    assert!(configs.iter().any(|config| config["@type"].as_str().is_some_and(|t| t.ends_with("RoutesConfigDump"))));

    // With the endpoints when asked: b's instance, as Envoy holds it.
    let with_eds =
        api.get_path(&["meshes", "default", "dataplanes", "a-1", "xds"], &[("include_eds", "true")]).await.unwrap();
    let endpoints = with_eds["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|config| config["@type"].as_str().is_some_and(|t| t.ends_with("EndpointsConfigDump")));
    assert!(endpoints.is_some_and(|dump| holds(dump, "cluster_name", "b")), "{with_eds:#}");

    // The caller without an admin port cannot be dumped, and says why.
    let error = api.get_path(&["meshes", "default", "dataplanes", "b-1", "xds"], &[]).await.unwrap_err().to_string();
    assert!(error.contains("networking.admin.port"), "{error}");
}
