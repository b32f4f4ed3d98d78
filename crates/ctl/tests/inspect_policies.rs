//! `kodiakctl inspect dataplane` and `kodiakctl inspect <policy-type>`, run
//! the way a user runs them, against a real control plane on loopback.

#[allow(dead_code)]
#[path = "cli/support.rs"]
mod support;

use kodiak_cp::testing::{TestControlPlane, start_memory};
use serde_json::Value;
use support::Kodiakctl;

/// Mesh `shop` (with its default policies), web-1 calling backend, and a
/// MeshTimeout toward backend.
const SHOP: &str = "\
type: Mesh
name: shop
---
type: Dataplane
mesh: shop
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 10001
    servicePort: 8080
    tags: {kuma.io/service: web}
  outbound:
  - port: 20001
    tags: {kuma.io/service: backend}
---
type: Dataplane
mesh: shop
name: backend-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 10002
    servicePort: 8081
    tags: {kuma.io/service: backend}
---
type: MeshTimeout
mesh: shop
name: backend-timeouts
spec:
  targetRef: {kind: MeshService, name: web}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default: {connectionTimeout: 2s}
";

fn shop() -> (TestControlPlane, Kodiakctl) {
    let cp = start_memory();
    let ctl = Kodiakctl::against(cp.api_url());
    ctl.run(&format!("apply -f {}", ctl.file("shop.yaml", SHOP))).ok();
    (cp, ctl)
}

/// The line of `text` that starts with `start`.
fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines().find(|line| line.starts_with(start)).unwrap_or_else(|| panic!("no line {start:?} in\n{text}"))
}

#[test]
fn rules_show_which_policies_shape_each_outbound_and_inbound() {
    let (_cp, ctl) = shop();
    let text = ctl.run("inspect dataplane web-1 -m shop").ok();
    assert!(text.starts_with("Dataplane \"web-1\" in mesh \"shop\"\n"), "{text}");
    let timeouts = &text[text.find("\nMeshTimeout\n").unwrap_or_else(|| panic!("{text}"))..];
    let to_backend = line(timeouts, "outbound backend ");
    assert!(to_backend.contains(" mesh-timeout-all-shop,backend-timeouts "), "{to_backend}");
    assert!(to_backend.contains("\"connectionTimeout\":\"2s\""), "{to_backend}");
    let elsewhere = line(timeouts, "outbound * ");
    assert!(elsewhere.contains("\"connectionTimeout\":\"5s\""), "{elsewhere}");
    let inbound = line(timeouts, "inbound 10001 ");
    assert!(inbound.contains(" * ") && inbound.contains(" mesh-timeout-all-shop "), "{inbound}");
    let permissions = &text[text.find("\nMeshTrafficPermission\n").unwrap_or_else(|| panic!("{text}"))..];
    assert!(line(permissions, "inbound 10001 ").contains("{\"action\":\"Allow\"}"), "{permissions}");
    assert!(permissions.contains("warning: mTLS is off in this mesh"), "{permissions}");

    // The raw answers, for scripts.
    let json: Value = serde_json::from_str(&ctl.run("inspect dataplane web-1 -m shop -o json").ok()).unwrap();
    assert_eq!(json["resource"]["name"], "web-1");
    assert!(json["rules"].as_array().unwrap().iter().any(|rule| rule["type"] == "MeshTimeout"), "{json:#}");
    let yaml = ctl.run("inspect dataplane web-1 -m shop --type rules -o yaml --shadow").ok();
    assert!(yaml.contains("shadow: true\n") && yaml.contains("- type: MeshRetry\n"), "{yaml}");
}

#[test]
fn a_policy_lists_the_dataplanes_it_affects() {
    let (cp, ctl) = shop();
    // The global options may also come after the policy's name.
    let late = Kodiakctl::new().run(&format!("inspect mt backend-timeouts -m shop --cp-address {}", cp.api_url()));
    assert!(late.ok().ends_with("shop   web-1\n"));
    let text = ctl.run("inspect meshtimeout backend-timeouts -m shop").ok();
    assert_eq!(
        text,
        "MeshTimeout \"backend-timeouts\" in mesh \"shop\" affects 1 Dataplane:\nMESH   NAME    LABELS\nshop   web-1\n"
    );
    let text = ctl.run("inspect mt mesh-timeout-all-shop -m shop").ok();
    assert!(text.contains("affects 2 Dataplanes:\n"), "{text}");
    // Each has its line (line() fails otherwise).
    line(&text, "shop   backend-1");
    line(&text, "shop   web-1");
    let json: Value =
        serde_json::from_str(&ctl.run("inspect meshtrafficpermissions allow-all-shop -m shop -o json").ok()).unwrap();
    assert_eq!(json["total"], 2, "{json:#}");
}

#[test]
fn mistakes_are_explained() {
    let (_cp, ctl) = shop();
    let error = ctl.run("inspect dataplane nope -m shop").fails();
    assert!(error.contains("Dataplane \"nope\" in mesh \"shop\" not found"), "{error}");
    let error = ctl.run("inspect dataplane web-1 -m shop --type config").fails();
    assert!(error.contains("its sidecar is not connected"), "{error}");
    let error = ctl.run("inspect dataplane web-1 -m shop --type config-dump").fails();
    assert!(error.contains("networking.admin.port"), "{error}");
    let error = ctl.run("inspect dataplane web-1 -m shop --type config --shadow").fails();
    assert!(error.contains("--shadow applies only to --type rules"), "{error}");
    let error = ctl.run("inspect dataplane web-1 -m shop --include-eds").fails();
    assert!(error.contains("--include-eds applies only to --type config-dump"), "{error}");
    let error = ctl.run("inspect meshtimeout nope -m shop").fails();
    assert!(error.contains("MeshTimeout \"nope\" in mesh \"shop\" not found"), "{error}");
    let error = ctl.run("inspect secrets s -m shop").fails();
    assert!(error.contains("Secret is not a policy"), "{error}");
    let error = ctl.run("inspect widgets w").fails();
    assert!(error.contains("unknown resource type \"widgets\""), "{error}");
    // The existing listing still works.
    assert!(ctl.run("inspect dataplanes -m shop").ok().contains("web-1"));
}
