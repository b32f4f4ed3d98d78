//! Scenario tests (YAML policies and Dataplanes in, readable rules out) and
//! property tests against a brute-force evaluation of every caller.

use std::collections::{BTreeMap, BTreeSet};

use kodiak_api::Resource;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::test_support::{resources, shuffled};

fn policies(yaml: &str) -> Vec<MeshTrafficPermission> {
    resources(yaml).iter().map(|r| MeshTrafficPermission::from_resource(r).unwrap()).collect()
}

const WEB: &str = "
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 10001
    tags: {kuma.io/service: web, version: v1}
";

/// Each inbound's rules, written as `[conditions] Action policy`.
fn permissions(policy_yaml: &str, dataplane_yaml: &str) -> Vec<Vec<String>> {
    let dataplane = resources(dataplane_yaml).remove(0);
    proxy_permissions(&policies(policy_yaml), &dataplane).iter().map(show).collect()
}

fn show(permissions: &InboundPermissions) -> Vec<String> {
    permissions.rules.iter().map(ToString::to_string).collect()
}

const ALLOW_ALL: &str = "
type: MeshTrafficPermission
mesh: default
name: allow-all-default
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Allow}
";

/// A policy (one YAML document) giving every caller `action`.
fn for_everyone(name: &str, labels: &str, target: &str, action: &str) -> String {
    format!(
        "---
type: MeshTrafficPermission
mesh: default
name: {name}
labels: {labels}
spec:
  targetRef: {target}
  from:
  - targetRef: {{kind: Mesh}}
    default: {{action: {action}}}
"
    )
}

#[test]
fn a_service_deny_wins_over_the_mesh_wide_allow_for_its_caller_only() {
    let yaml = format!(
        "{ALLOW_ALL}---
type: MeshTrafficPermission
mesh: default
name: web-denies-backend
spec:
  targetRef: {{kind: MeshService, name: web}}
  from:
  - targetRef: {{kind: MeshService, name: backend}}
    default: {{action: Deny}}
"
    );
    assert_eq!(
        permissions(&yaml, WEB),
        [["[kuma.io/service=backend] Deny web-denies-backend", "[!kuma.io/service=backend] Allow allow-all-default"]]
    );
}

#[test]
fn equally_specific_policies_are_decided_by_name_the_smaller_one_wins() {
    let deny = |name: &str| {
        format!(
            "---
type: MeshTrafficPermission
mesh: default
name: {name}
spec:
  targetRef: {{kind: Mesh}}
  from:
  - targetRef: {{kind: MeshService, name: backend}}
    default: {{action: Deny}}
"
        )
    };
    // "allow-all-default" < "deny-backend": the mesh-wide allow comes last
    // and covers backend too.
    assert_eq!(permissions(&format!("{ALLOW_ALL}{}", deny("deny-backend")), WEB), [["[] Allow allow-all-default"]]);
    // "a-deny-backend" < "allow-all-default": the deny comes last.
    assert_eq!(
        permissions(&format!("{ALLOW_ALL}{}", deny("a-deny-backend")), WEB),
        [["[kuma.io/service=backend] Deny a-deny-backend", "[!kuma.io/service=backend] Allow allow-all-default"]]
    );
}

#[test]
fn within_one_policy_later_entries_override_earlier_ones() {
    let yaml = "
type: MeshTrafficPermission
mesh: default
name: p
spec:
  from:
  - targetRef: {kind: MeshService, name: backend}
    default: {action: Allow}
  - targetRef: {kind: Mesh}
    default: {action: Deny}
";
    assert_eq!(permissions(yaml, WEB), [["[] Deny p"]]);
}

#[test]
fn subset_callers_get_negated_conditions_where_a_more_specific_entry_takes_over() {
    // Deny the us-east zone except backend v2 (which is allowed only on web
    // v1's inbound).
    let yaml = "
type: MeshTrafficPermission
mesh: default
name: mtp-1
spec:
  targetRef: {kind: MeshServiceSubset, name: web, tags: {version: v1}}
  from:
  - targetRef: {kind: MeshServiceSubset, name: backend, tags: {kuma.io/zone: us-east, version: v2}}
    default: {action: Allow}
---
type: MeshTrafficPermission
mesh: default
name: mtp-2
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: MeshSubset, tags: {kuma.io/zone: us-east}}
    default: {action: Deny}
";
    let dataplane = "
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags: {kuma.io/service: web, version: v1}
  - port: 8081
    tags: {kuma.io/service: web, version: v3}
";
    assert_eq!(
        permissions(yaml, dataplane),
        [
            vec![
                "[kuma.io/service=backend kuma.io/zone=us-east version=v2] Allow mtp-1",
                "[kuma.io/service=backend kuma.io/zone=us-east !version=v2] Deny mtp-2",
                "[!kuma.io/service=backend kuma.io/zone=us-east] Deny mtp-2",
            ],
            vec!["[kuma.io/zone=us-east] Deny mtp-2"],
        ]
    );
}

#[test]
fn a_caller_with_two_values_of_a_key_gets_the_later_entry_of_either() {
    let yaml = "
type: MeshTrafficPermission
mesh: default
name: envs
spec:
  from:
  - targetRef: {kind: Mesh}
    default: {action: Allow}
  - targetRef: {kind: MeshSubset, tags: {zone: us-east}}
    default: {action: Deny}
  - targetRef: {kind: MeshSubset, tags: {env: dev}}
    default: {action: Allow}
  - targetRef: {kind: MeshSubset, tags: {env: prod}}
    default: {action: Allow}
";
    assert_eq!(
        permissions(yaml, WEB),
        [[
            "[env=prod] Allow envs",
            "[env=dev !env=prod] Allow envs",
            "[!env=dev !env=prod zone=us-east] Deny envs",
            "[!env=dev !env=prod !zone=us-east] Allow envs",
        ]]
    );
}

#[test]
fn same_kind_policies_keep_their_name_order_across_entries() {
    // rule-a < rule-b: rule-a comes last, so its deny of service-payment
    // overrides rule-b's allow.
    let yaml = "
type: MeshTrafficPermission
mesh: default
name: rule-b
spec:
  targetRef: {kind: MeshSubset, tags: {app: demo}}
  from:
  - targetRef: {kind: MeshSubset, tags: {app.kubernetes.io/name: ui}}
    default: {action: Allow}
  - targetRef: {kind: MeshSubset, tags: {app.kubernetes.io/name: service-payment}}
    default: {action: Allow}
---
type: MeshTrafficPermission
mesh: default
name: rule-a
spec:
  targetRef: {kind: MeshSubset, tags: {app: demo}}
  from:
  - targetRef: {kind: MeshSubset, tags: {app.kubernetes.io/name: service-payment}}
    default: {action: Deny}
";
    let dataplane = "
type: Dataplane
mesh: default
name: demo-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags: {kuma.io/service: demo, app: demo}
";
    assert_eq!(
        permissions(yaml, dataplane),
        [[
            "[app.kubernetes.io/name=service-payment] Deny rule-a",
            // A caller named both ui and service-payment is rule-a's.
            "[!app.kubernetes.io/name=service-payment app.kubernetes.io/name=ui] Allow rule-b"
        ]]
    );
}

#[test]
fn allow_with_shadow_deny_is_a_decision_of_its_own() {
    let yaml = "
type: MeshTrafficPermission
mesh: default
name: trial
spec:
  targetRef: {kind: MeshService, name: web}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Deny}
  - targetRef: {kind: MeshSubset, tags: {team: payments}}
    default: {action: AllowWithShadowDeny}
";
    assert_eq!(permissions(yaml, WEB), [["[team=payments] AllowWithShadowDeny trial", "[!team=payments] Deny trial"]]);
}

#[test]
fn top_level_targets_select_inbounds_one_by_one() {
    let dataplane = "
type: Dataplane
mesh: default
name: multi-1
labels: {team: core}
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags: {kuma.io/service: web, version: v1}
  - port: 8081
    name: admin
    tags: {kuma.io/service: web-admin, version: v2}
";
    let selected = |target: &str| -> Vec<bool> {
        permissions(&for_everyone("p", "{}", target, "Allow"), dataplane)
            .iter()
            .map(|rules| !rules.is_empty())
            .collect()
    };
    assert_eq!(selected("{kind: Mesh}"), [true, true]);
    let view = kodiak_api::dataplane_view::DataplaneView::from_resource(&resources(dataplane)[0]);
    let ports: Vec<u16> = view.inbounds.iter().map(|inbound| inbound.port).collect();
    assert_eq!(ports, [8080, 8081], "the permissions line up with the view's inbounds");
    assert_eq!(selected("{kind: MeshSubset, tags: {version: v2}}"), [false, true]);
    assert_eq!(selected("{kind: MeshSubset, tags: {version: '*'}}"), [true, true]);
    assert_eq!(selected("{kind: MeshSubset, proxyTypes: [Gateway], tags: {version: v1}}"), [false, false]);
    assert_eq!(selected("{kind: Mesh, proxyTypes: [Sidecar]}"), [true, true]);
    assert_eq!(selected("{kind: MeshService, name: web}"), [true, false]);
    assert_eq!(selected("{kind: MeshServiceSubset, name: web, tags: {version: v2}}"), [false, false]);
    assert_eq!(selected("{kind: MeshServiceSubset, name: web-admin, tags: {version: v2}}"), [false, true]);
    assert_eq!(selected("{kind: Dataplane}"), [true, true]);
    assert_eq!(selected("{kind: Dataplane, name: multi-1}"), [true, true]);
    assert_eq!(selected("{kind: Dataplane, name: other}"), [false, false]);
    assert_eq!(selected("{kind: Dataplane, name: multi-1, namespace: prod}"), [false, false]);
    assert_eq!(selected("{kind: Dataplane, labels: {team: core}}"), [true, true]);
    assert_eq!(selected("{kind: Dataplane, labels: {team: edge}}"), [false, false]);
    assert_eq!(selected("{kind: Dataplane, name: multi-1, sectionName: admin}"), [false, true]);
    assert_eq!(selected("{kind: Dataplane, sectionName: '8080'}"), [true, false]);
}

#[test]
fn dataplane_targets_rank_name_over_labels_and_section_over_none() {
    let dataplane = "
type: Dataplane
mesh: default
name: web-1
labels: {team: core}
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags: {kuma.io/service: web}
";
    let policy = |name, target, action| for_everyone(name, "{}", target, action);
    // Names are chosen so that the name tie-break would pick the other one.
    let by_name = policy("z-by-name", "{kind: Dataplane, name: web-1}", "Deny");
    let by_labels = policy("a-by-labels", "{kind: Dataplane, labels: {team: core}}", "Allow");
    let by_section = policy("z-by-section", "{kind: Dataplane, labels: {team: core}, sectionName: '8080'}", "Allow");
    let subset = policy("z-subset", "{kind: MeshSubset, tags: {kuma.io/service: web}}", "AllowWithShadowDeny");
    assert_eq!(permissions(&format!("{by_name}{by_labels}"), dataplane), [["[] Deny z-by-name"]]);
    assert_eq!(permissions(&format!("{by_labels}{by_section}"), dataplane), [["[] Allow z-by-section"]]);
    assert_eq!(
        permissions(&format!("{subset}{by_name}{by_section}"), dataplane),
        [["[] AllowWithShadowDeny z-subset"]],
        "any MeshSubset is more specific than any Dataplane target"
    );
}

#[test]
fn zone_made_policies_override_global_ones_and_display_names_break_ties() {
    let policy = |name, labels, action| for_everyone(name, labels, "{kind: Mesh}", action);
    let global = policy("a-global", "{kuma.io/origin: global}", "Allow");
    let unlabelled = policy("b-plain", "{}", "AllowWithShadowDeny");
    let zone = policy("c-zone", "{kuma.io/origin: zone}", "Deny");
    assert_eq!(permissions(&format!("{global}{unlabelled}"), WEB), [["[] AllowWithShadowDeny b-plain"]]);
    assert_eq!(permissions(&format!("{global}{unlabelled}{zone}"), WEB), [["[] Deny c-zone"]]);
    // The display name, not the stored name, breaks the tie.
    let first = policy("z-stored", "{kuma.io/display-name: a-shown}", "Deny");
    let second = policy("b-stored", "{}", "Allow");
    assert_eq!(permissions(&format!("{first}{second}"), WEB), [["[] Deny z-stored"]]);
}

#[test]
fn shadow_policies_and_other_meshes_take_no_effect() {
    let yaml = format!(
        "{ALLOW_ALL}---
type: MeshTrafficPermission
mesh: default
name: a-trying-a-deny
labels: {{kuma.io/effect: shadow}}
spec:
  from:
  - targetRef: {{kind: Mesh}}
    default: {{action: Deny}}
---
type: MeshTrafficPermission
mesh: other
name: a-other-mesh
spec:
  from:
  - targetRef: {{kind: Mesh}}
    default: {{action: Deny}}
"
    );
    let all = policies(&yaml);
    assert!(all[1].is_shadow() && !all[0].is_shadow());
    assert_eq!(permissions(&yaml, WEB), [["[] Allow allow-all-default"]]);
}

#[test]
fn an_inbound_without_permissions_denies_everyone() {
    let other = "
type: MeshTrafficPermission
mesh: default
name: api-only
spec:
  targetRef: {kind: MeshService, name: api}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Allow}
";
    assert_eq!(permissions(other, WEB), [Vec::<String>::new()]);
    assert_eq!(permissions("", WEB), [Vec::<String>::new()]);
}

#[test]
fn a_rules_policy_makes_the_inbounds_it_selects_deny_everyone_naming_it() {
    let yaml = format!(
        "{ALLOW_ALL}---
type: MeshTrafficPermission
mesh: default
name: by-spiffe-id
spec:
  targetRef: {{kind: MeshService, name: web}}
  rules:
  - default:
      allow:
      - spiffeID: {{type: Exact, value: 'spiffe://default/backend'}}
"
    );
    assert!(policies(&yaml)[1].uses_rules());
    assert_eq!(permissions(&yaml, WEB), [["[] Deny by-spiffe-id"]]);
    let api = WEB.replace("service: web", "service: api");
    assert_eq!(
        permissions(&yaml, &api),
        [["[] Allow allow-all-default"]],
        "inbounds it does not select are unaffected"
    );
}

#[test]
fn a_service_subset_whose_tags_name_another_service_covers_no_caller() {
    let yaml = "
type: MeshTrafficPermission
mesh: default
name: p
spec:
  from:
  - targetRef: {kind: MeshServiceSubset, name: backend, tags: {kuma.io/service: frontend}}
    default: {action: Allow}
  - targetRef: {kind: MeshServiceSubset, name: backend, tags: {kuma.io/service: backend, version: v1}}
    default: {action: Allow}
";
    assert_eq!(permissions(yaml, WEB), [["[kuma.io/service=backend version=v1] Allow p"]]);
}

#[test]
fn reading_a_resource_that_is_not_a_valid_permission_names_the_field() {
    let timeout = &resources(
        "
type: MeshTimeout
mesh: default
name: t
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 1s}
",
    )[0];
    let error = MeshTrafficPermission::from_resource(timeout).unwrap_err();
    assert_eq!(error.to_string(), "type: expected MeshTrafficPermission, got MeshTimeout");

    // Stored resources are validated; a body edited behind validation's back
    // is still refused field by field.
    let mut broken = resources(ALLOW_ALL).remove(0);
    broken.body["spec"] = json!({
        "targetRef": {"kind": "MeshGateway", "name": "gw"},
        "from": [
            {"targetRef": {"kind": "MeshService"}, "default": {"action": "Allow"}},
            {"targetRef": {"kind": "MeshSubset", "tags": {"version": 1}}, "default": {"action": "Maybe"}}
        ]
    });
    let error = MeshTrafficPermission::from_resource(&broken).unwrap_err();
    let fields: Vec<&str> = error.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.targetRef.kind",
            "spec.from[0].targetRef.name",
            r#"spec.from[1].targetRef.tags["version"]"#,
            "spec.from[1].default.action"
        ]
    );
}

// ---- Properties ------------------------------------------------------------

/// Tag values callers may carry in the property tests; a caller may lack a
/// key or carry several of its values.
const CALLER_TAGS: &[(&str, &[&str])] =
    &[("kuma.io/service", &["a", "b", "web"]), ("version", &["v1", "v2"]), ("zone", &["x", "y"])];

const PROPERTY_DATAPLANE: &str = "
type: Dataplane
mesh: default
name: dp-1
labels: {team: core}
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags: {kuma.io/service: web, version: v1}
  - port: 8081
    tags: {kuma.io/service: api, version: v2}
";

/// A caller's identity: each tag it carries with all of its values.
type Caller = BTreeMap<&'static str, BTreeSet<&'static str>>;

/// Every caller the property tests consider: for each key, any subset of
/// its values (none: the key is absent).
fn all_callers() -> Vec<Caller> {
    let mut callers = vec![Caller::new()];
    for (key, values) in CALLER_TAGS {
        callers = callers
            .into_iter()
            .flat_map(|caller| {
                (0..1u32 << values.len()).map(move |mask| {
                    let mut with = caller.clone();
                    let chosen: BTreeSet<&str> =
                        values.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, v)| *v).collect();
                    if !chosen.is_empty() {
                        with.insert(*key, chosen);
                    }
                    with
                })
            })
            .collect();
    }
    callers
}

/// Whether `caller` carries `key` with `value` among its values.
fn carries(caller: &Caller, key: &str, value: &str) -> bool {
    caller.get(key).is_some_and(|values| values.contains(value))
}

fn covers(callers: &Callers, caller: &Caller) -> bool {
    callers.0.iter().all(|c| carries(caller, &c.key, &c.value) != c.negated)
}

fn tag_subset() -> impl Strategy<Value = BTreeMap<String, String>> {
    let pick = |key: &'static str, values: &'static [&'static str]| {
        proptest::option::of(proptest::sample::select(values))
            .prop_map(move |v| v.map(|v| (key.to_owned(), v.to_owned())))
    };
    (pick("version", &["v1", "v2"]), pick("zone", &["x", "y"]))
        .prop_map(|(a, b)| a.into_iter().chain(b).collect::<BTreeMap<_, _>>())
        .prop_filter("a subset names at least one tag", |tags| !tags.is_empty())
}

fn from_ref() -> impl Strategy<Value = Value> {
    let service = proptest::sample::select(&["a", "b", "web"][..]);
    prop_oneof![
        Just(json!({"kind": "Mesh"})),
        tag_subset().prop_map(|tags| json!({"kind": "MeshSubset", "tags": tags})),
        service.clone().prop_map(|name| json!({"kind": "MeshService", "name": name})),
        (service, tag_subset())
            .prop_map(|(name, tags)| json!({"kind": "MeshServiceSubset", "name": name, "tags": tags})),
    ]
}

fn top_ref() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        Just(json!({"kind": "Mesh"})),
        Just(json!({"kind": "MeshSubset", "tags": {"version": "v1"}})),
        Just(json!({"kind": "MeshService", "name": "web"})),
        Just(json!({"kind": "MeshService", "name": "api"})),
        Just(json!({"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v1"}})),
        Just(json!({"kind": "Dataplane", "name": "dp-1"})),
        Just(json!({"kind": "Dataplane", "labels": {"team": "core"}})),
    ])
}

/// Up to six policies with distinct names in random order.
fn policy_set() -> impl Strategy<Value = Vec<MeshTrafficPermission>> {
    let action = proptest::sample::select(&["Allow", "Deny", "AllowWithShadowDeny"][..]);
    let entries = proptest::collection::vec((from_ref(), action), 1..4);
    let names = Just(vec!["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]).prop_shuffle();
    (proptest::collection::vec((top_ref(), entries), 0..6), names).prop_map(|(specs, names)| {
        specs
            .into_iter()
            .zip(names)
            .map(|((top, entries), name)| {
                let from: Vec<Value> = entries
                    .into_iter()
                    .map(|(target, action)| json!({"targetRef": target, "default": {"action": action}}))
                    .collect();
                let mut spec = json!({"from": from});
                if let Some(top) = top {
                    spec["targetRef"] = top;
                }
                let document = json!({"type": "MeshTrafficPermission", "mesh": "default", "name": name, "spec": spec});
                MeshTrafficPermission::from_resource(&Resource::from_document(&document).unwrap()).unwrap()
            })
            .collect()
    })
}

/// How specific a generated policy is, written out independently of
/// [`MeshTrafficPermission::specificity`] for the generated shapes.
fn rank(policy: &MeshTrafficPermission) -> (u8, u8) {
    use super::policy::{DataplaneRef, Target, TopKind};
    match &policy.target {
        Target::Tags { kind: TopKind::Mesh, .. } => (1, 0),
        Target::Dataplane { by: DataplaneRef::Labels(_), .. } => (2, 0),
        Target::Dataplane { .. } => (2, 1),
        Target::Tags { kind: TopKind::MeshSubset, .. } => (3, 0),
        Target::Tags { kind: TopKind::MeshService, .. } => (5, 0),
        Target::Tags { .. } => (8, 0),
    }
}

/// The decision for `caller` by reading every entry: the last one covering
/// it, in the order of policy specificity.
fn expected_decision(selecting: &[&MeshTrafficPermission], caller: &Caller) -> Option<(Action, String)> {
    let mut ordered = selecting.to_vec();
    ordered.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.name.cmp(&a.name)));
    let mut decision = None;
    for policy in ordered {
        for from in &policy.from {
            let covered = from.callers.as_ref().is_some_and(|tags| tags.iter().all(|(k, v)| carries(caller, k, v)));
            if covered {
                decision = Some((from.action, policy.name.clone()));
            }
        }
    }
    decision
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn each_caller_meets_at_most_one_rule_and_gets_the_last_covering_entry(policies in policy_set()) {
        let dataplane = resources(PROPERTY_DATAPLANE).remove(0);
        let proxy = Proxy::from_resource(&dataplane);
        let permissions = proxy_permissions(&policies, &dataplane);
        prop_assert_eq!(permissions.len(), 2);
        for (inbound, permissions) in proxy.inbounds.iter().zip(&permissions) {
            let selecting: Vec<&MeshTrafficPermission> =
                policies.iter().filter(|p| proxy.selects(&p.target, inbound)).collect();
            for caller in all_callers() {
                let met: Vec<&PermissionRule> =
                    permissions.rules.iter().filter(|rule| covers(&rule.callers, &caller)).collect();
                prop_assert!(met.len() <= 1, "caller {:?} meets {:?}", caller, met);
                let decided = met.first().map(|rule| (rule.action, rule.policy.clone()));
                prop_assert_eq!(decided, expected_decision(&selecting, &caller), "caller {:?}", caller);
            }
        }
    }

    #[test]
    fn the_order_of_the_policy_list_does_not_matter(policies in policy_set(), seed in any::<u64>()) {
        let dataplane = resources(PROPERTY_DATAPLANE).remove(0);
        let shuffled = shuffled(&policies, seed);
        prop_assert_eq!(proxy_permissions(&policies, &dataplane), proxy_permissions(&shuffled, &dataplane));
    }

    #[test]
    fn the_most_specific_policy_covering_a_caller_decides_for_it(policies in policy_set()) {
        let dataplane = resources(PROPERTY_DATAPLANE).remove(0);
        let proxy = Proxy::from_resource(&dataplane);
        let permissions = proxy_permissions(&policies, &dataplane);
        for (inbound, permissions) in proxy.inbounds.iter().zip(&permissions) {
            let selecting: Vec<&MeshTrafficPermission> =
                policies.iter().filter(|p| proxy.selects(&p.target, inbound)).collect();
            for caller in all_callers() {
                let covering = |policy: &&&MeshTrafficPermission| {
                    policy.from.iter().any(|from| {
                        from.callers.as_ref().is_some_and(|tags| tags.iter().all(|(k, v)| carries(&caller, k, v)))
                    })
                };
                let Some(most_specific) = selecting
                    .iter()
                    .filter(covering)
                    .max_by(|a, b| rank(a).cmp(&rank(b)).then(b.name.cmp(&a.name)))
                else {
                    continue;
                };
                let rule = permissions.rules.iter().find(|rule| covers(&rule.callers, &caller));
                prop_assert_eq!(rule.map(|r| r.policy.as_str()), Some(most_specific.name.as_str()), "caller {:?}", caller);
            }
        }
    }
}
