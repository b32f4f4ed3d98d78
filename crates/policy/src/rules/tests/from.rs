//! `from` and `rules` confs per inbound.

use serde_json::json;

use super::*;

#[test]
fn each_inbound_gets_the_mesh_wide_from_entries_of_the_policies_that_select_it() {
    let rules = type_rules(
        ResourceType::MeshTimeout,
        "
type: MeshTimeout
mesh: default
name: all-inbounds
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default: {idleTimeout: 1h, http: {requestTimeout: 10s}}
---
type: MeshTimeout
mesh: default
name: web-inbound
spec:
  targetRef: {kind: MeshService, name: web}
  from:
  - targetRef: {kind: Mesh}
    default: {http: {requestTimeout: 3s}}
---
type: MeshTimeout
mesh: default
name: admin-section
spec:
  targetRef: {kind: Dataplane, name: web-1, sectionName: admin}
  from:
  - targetRef: {kind: Mesh}
    default: {idleTimeout: 5m}
",
    );
    let [web, admin] = &rules.from[..] else { panic!("two inbounds expected: {:?}", rules.from) };
    assert_eq!((web.port, web.section_name.as_str()), (10001, "10001"));
    assert_eq!((admin.port, admin.section_name.as_str()), (10002, "admin"));
    assert_eq!(
        web.conf,
        conf(json!({"idleTimeout": "1h", "http": {"requestTimeout": "3s"}}), &["all-inbounds", "web-inbound"])
    );
    assert_eq!(
        admin.conf,
        conf(json!({"idleTimeout": "5m", "http": {"requestTimeout": "10s"}}), &["all-inbounds", "admin-section"])
    );
    assert!(web.callers.is_empty() && web.matched.is_empty());
    assert_eq!(rules.to, ToRules::default());
    assert_eq!(rules.proxy, None);
}

#[test]
fn inbounds_no_policy_selects_are_listed_empty() {
    let rules = type_rules(
        ResourceType::MeshTimeout,
        "
type: MeshTimeout
mesh: default
name: admin-only
spec:
  targetRef: {kind: MeshService, name: web-admin}
  from:
  - targetRef: {kind: Mesh}
    default: {idleTimeout: 5m}
",
    );
    assert_eq!(rules.from.len(), 2);
    assert_eq!(rules.from[0], InboundRules { port: 10001, section_name: "10001".into(), ..InboundRules::default() });
    assert_eq!(rules.from[1].conf, conf(json!({"idleTimeout": "5m"}), &["admin-only"]));
}

const FAULTS: &str = "
type: MeshFaultInjection
mesh: default
name: everyone
spec:
  targetRef: {kind: Mesh, proxyTypes: [Sidecar]}
  from:
  - targetRef: {kind: Mesh}
    default: {http: [{delay: {value: 1s, percentage: 10}}]}
---
type: MeshFaultInjection
mesh: default
name: from-frontend
spec:
  targetRef: {kind: MeshService, name: web}
  from:
  - targetRef: {kind: MeshService, name: frontend}
    default: {http: [{abort: {httpStatus: 500, percentage: 50}}]}
  - targetRef: {kind: MeshSubset, tags: {version: v2}}
    default: {http: [{delay: {value: 5s, percentage: 100}}]}
  - targetRef: {kind: MeshServiceSubset, name: frontend, tags: {kuma.io/service: other}}
    default: {http: []}
";

#[test]
fn callers_picked_by_tags_get_every_entry_that_covers_them_most_specific_selector_first() {
    let rules = type_rules(ResourceType::MeshFaultInjection, FAULTS);
    let web = &rules.from[0];
    let delay_10 = json!({"http": [{"delay": {"value": "1s", "percentage": 10}}]});
    assert_eq!(web.conf, conf(delay_10.clone(), &["everyone"]));
    let groups: Vec<(Vec<(&str, &str)>, &Value)> = web
        .callers
        .iter()
        .map(|caller| (caller.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(), &caller.conf.conf))
        .collect();
    // Lists are replaced, so each group's conf is its most specific entry's.
    let abort = json!({"http": [{"abort": {"httpStatus": 500, "percentage": 50}}]});
    let delay_5 = json!({"http": [{"delay": {"value": "5s", "percentage": 100}}]});
    assert_eq!(
        groups,
        [
            (vec![("kuma.io/service", "frontend"), ("version", "v2")], &delay_5),
            (vec![("kuma.io/service", "frontend")], &abort),
            (vec![("version", "v2")], &delay_5),
        ]
    );
    assert_eq!(web.callers[0].conf.origins, ["everyone", "from-frontend"]);
    // The admin inbound is selected by the Mesh policy only.
    assert_eq!(rules.from[1].conf, conf(delay_10, &["everyone"]));
    assert!(rules.from[1].callers.is_empty());
}

#[test]
fn caller_groups_stop_at_the_limit() {
    let entries: String = (0..10)
        .map(|i| format!("  - targetRef: {{kind: MeshSubset, tags: {{k{i}: v}}}}\n    default: {{http: []}}\n"))
        .collect();
    let rules = type_rules(
        ResourceType::MeshFaultInjection,
        &format!(
            "
type: MeshFaultInjection
mesh: default
name: many
spec:
  targetRef: {{kind: Mesh, proxyTypes: [Sidecar]}}
  from:
{entries}"
        ),
    );
    let callers = &rules.from[0].callers;
    assert_eq!(callers.len(), MAX_CALLER_GROUPS);
    // The ten given selectors are all there, after the combinations.
    assert_eq!(callers.iter().filter(|caller| caller.tags.len() == 1).count(), 10);
    assert!(callers.windows(2).all(|pair| pair[0].tags.len() >= pair[1].tags.len()));
}

#[test]
fn rules_replace_from_and_matched_rules_are_kept_apart_most_specific_match_first() {
    let rules = type_rules(
        ResourceType::MeshTimeout,
        "
type: MeshTimeout
mesh: default
name: legacy
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default: {idleTimeout: 1h, connectionTimeout: 2s}
---
type: MeshTimeout
mesh: default
name: with-rules
spec:
  targetRef: {kind: MeshService, name: web}
  rules:
  - matches: [{sni: {type: Exact, value: web.mesh}}]
    default: {http: {requestTimeout: 3m}}
  - default: {idleTimeout: 2h}
  - matches: [{spiffeID: {type: Prefix, value: 'spiffe://default'}}]
    default: {http: {requestTimeout: 2m}}
  - matches: [{spiffeID: {type: Exact, value: 'spiffe://default/frontend'}}]
    default: {http: {requestTimeout: 1m}}
",
    );
    let web = &rules.from[0];
    assert_eq!(web.conf, conf(json!({"idleTimeout": "2h", "connectionTimeout": "2s"}), &["legacy", "with-rules"]));
    let matched: Vec<(&Value, &Value)> =
        web.matched.iter().map(|m| (&m.matches[0], &m.conf.conf["http"]["requestTimeout"])).collect();
    assert_eq!(
        matched,
        [
            (&json!({"spiffeID": {"type": "Exact", "value": "spiffe://default/frontend"}}), &json!("1m")),
            (&json!({"spiffeID": {"type": "Prefix", "value": "spiffe://default"}}), &json!("2m")),
            (&json!({"sni": {"type": "Exact", "value": "web.mesh"}}), &json!("3m")),
        ]
    );
    assert!(web.matched.iter().all(|m| m.conf.origins == ["with-rules"]));
    assert_eq!(rules.from[1].conf, conf(json!({"idleTimeout": "1h", "connectionTimeout": "2s"}), &["legacy"]));
}

#[test]
fn traffic_permissions_read_like_any_other_type() {
    let rules = type_rules(
        ResourceType::MeshTrafficPermission,
        "
type: MeshTrafficPermission
mesh: default
name: allow-all
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Allow}
  - targetRef: {kind: MeshService, name: intruder}
    default: {action: Deny}
",
    );
    assert_eq!(rules.from[0].conf, conf(json!({"action": "Allow"}), &["allow-all"]));
    assert_eq!(rules.from[0].callers[0].conf.conf, json!({"action": "Deny"}));
}
