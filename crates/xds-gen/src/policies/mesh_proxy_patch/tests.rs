//! Modifications on the resources of a real proxy: `web-1` with an HTTP
//! inbound, an outbound to the HTTP service `backend` (routes over RDS) and
//! one to the TCP service `db`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kodiak_xds_server::{Resource, type_url};
use serde_json::{Value, json};

use super::*;
use crate::test_support::{dataplane, instance};
use crate::{proxy_resources, render, service_resources, services};

const INBOUND_LISTENER: &str = "inbound:127.0.0.2:10001";
const INBOUND_CLUSTER: &str = "inbound:127.0.0.1:8080";
const BACKEND_LISTENER: &str = "outbound:127.0.0.1:20001";
const DB_LISTENER: &str = "outbound:127.0.0.1:20002";

fn web() -> kodiak_api::dataplane_view::DataplaneView {
    dataplane(
        "{type: Dataplane, mesh: default, name: web-1, networking: {address: 127.0.0.2,
            inbound: [{port: 10001, servicePort: 8080, serviceAddress: 127.0.0.1,
                       tags: {kuma.io/service: web, kuma.io/protocol: http}}],
            outbound: [{port: 20001, tags: {kuma.io/service: backend}}, {port: 20002, tags: {kuma.io/service: db}}]}}",
    )
}

/// `conf`'s modifications applied to `resources` of `web()`.
fn apply(conf: &Conf, resources: &mut ProxyResources) -> Vec<PatchError> {
    super::apply(conf, resources, &listener_tags(&web()))
}

fn proxy() -> ProxyResources {
    let web = web();
    let backend = instance("backend-1", "127.0.0.4", "backend", "http");
    let db = instance("db-1", "127.0.0.5", "db", "tcp");
    let shared: BTreeMap<_, _> = services([&web, &backend, &db])
        .iter()
        .map(|(name, view)| (name.clone(), Arc::new(service_resources(name, view))))
        .collect();
    proxy_resources(&web, &shared, None)
}

fn conf(yaml: &str) -> Conf {
    read(&kodiak_api::parse_document(yaml).unwrap())
}

/// `proxy()` after `yaml`'s modifications, which must all apply.
fn patched(yaml: &str) -> ProxyResources {
    let mut resources = proxy();
    let errors = apply(&conf(yaml), &mut resources);
    assert!(errors.is_empty(), "{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    resources
}

/// `proxy()` after `yaml`'s modifications, and the errors.
fn patched_with_errors(yaml: &str) -> (ProxyResources, Vec<String>) {
    let mut resources = proxy();
    let errors = apply(&conf(yaml), &mut resources);
    (resources, errors.iter().map(ToString::to_string).collect())
}

fn get<'a>(list: &'a [Arc<Resource>], name: &str) -> &'a Arc<Resource> {
    list.iter().find(|resource| resource.name == name).unwrap_or_else(|| panic!("no {name}"))
}

fn names(list: &[Arc<Resource>]) -> Vec<&str> {
    list.iter().map(|resource| resource.name.as_str()).collect()
}

fn filter_names(chain: &Value) -> Vec<&str> {
    chain["filters"].as_array().unwrap().iter().map(|filter| filter["name"].as_str().unwrap()).collect()
}

fn http_filter_names(listener: &Value) -> Vec<&str> {
    let filters = listener["filterChains"][0]["filters"][0]["typedConfig"]["httpFilters"].as_array().unwrap();
    filters.iter().map(|filter| filter["name"].as_str().unwrap()).collect()
}

/// Every resource of `after` other than the clusters, listeners and route
/// configurations named in `changed` is as in `before`.
fn only_changed(before: &ProxyResources, after: &ProxyResources, changed: &[&str]) {
    for ((type_url, old), (_, new)) in before.by_type().iter().zip(after.by_type().iter()) {
        let patchable = [type_url::CLUSTER, type_url::LISTENER, type_url::ROUTE].contains(type_url);
        let changed: &[&str] = if patchable { changed } else { &[] };
        for resource in new.iter() {
            let previous = old.iter().find(|r| r.name == resource.name);
            match previous {
                Some(previous) if changed.contains(&resource.name.as_str()) => {
                    assert_ne!(previous.version, resource.version, "{} must change", resource.name);
                }
                Some(previous) => assert_eq!(previous, resource, "{} must not change", resource.name),
                None => assert!(changed.contains(&resource.name.as_str()), "{} is new", resource.name),
            }
        }
    }
}

#[test]
fn the_fixture_is_what_the_tests_expect() {
    let resources = proxy();
    assert_eq!(names(&resources.clusters), ["backend", "db", INBOUND_CLUSTER]);
    assert_eq!(names(&resources.listeners), [INBOUND_LISTENER, BACKEND_LISTENER, DB_LISTENER]);
    assert_eq!(names(&resources.routes), ["outbound:backend"]);
    assert_eq!(names(&resources.endpoints), ["backend", "db"]);
}

#[test]
fn read_takes_every_field_and_numbers_the_entries() {
    let conf = conf(
        r#"{appendModifications: [
            {cluster: {operation: Patch, match: {name: backend, origin: outbound}, value: "connectTimeout: 1s"}},
            {httpFilter: {operation: AddBefore, match: {name: r, listenerName: l, listenerTags: {a: b}, origin: inbound},
                          value: "name: x"}},
            {listener: {operation: Patch, match: {tags: {k: v}}, jsonPatches: [
                {op: add, path: /a, value: {b: [1]}}, {op: move, path: /c, from: /a}]}},
            {virtualHost: {operation: Remove, match: {name: h, routeConfigurationName: rc}}},
            {something: {operation: Patch}}]}"#,
    );
    let m = &conf.modifications;
    assert_eq!(m.len(), 5);
    assert_eq!(
        (m[0].target, &m[0].operation, m[0].value.as_deref()),
        (Target::Cluster, &Operation::Patch, Some("connectTimeout: 1s"))
    );
    assert_eq!((m[0].matcher.name.as_deref(), m[0].matcher.origin.as_deref()), (Some("backend"), Some("outbound")));
    assert_eq!(m[1].matcher.listener_name.as_deref(), Some("l"));
    assert_eq!(m[1].matcher.listener_tags, BTreeMap::from([("a".to_owned(), "b".to_owned())]));
    assert_eq!(m[2].matcher.listener_tags, BTreeMap::from([("k".to_owned(), "v".to_owned())]));
    assert_eq!(
        m[2].json_patches,
        [
            JsonPatch { op: "add".into(), path: "/a".into(), from: None, value: Some(r#"{"b":[1]}"#.into()) },
            JsonPatch { op: "move".into(), path: "/c".into(), from: Some("/a".into()), value: None },
        ]
    );
    assert_eq!(m[3].matcher.route_configuration_name.as_deref(), Some("rc"));
    assert_eq!(m[4].target, Target::Unknown);
    assert_eq!(m.iter().map(|m| m.source.index).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(read(&json!("junk")), Conf::default());
}

#[test]
fn read_policies_numbers_entries_within_each_policy() {
    let one = json!({"appendModifications": [{"cluster": {"operation": "Remove"}}]});
    let two =
        json!({"appendModifications": [{"listener": {"operation": "Remove"}}, {"cluster": {"operation": "Remove"}}]});
    let conf = read_policies([("one", &one), ("two", &two)]);
    let sources: Vec<(Option<&str>, usize)> =
        conf.modifications.iter().map(|m| (m.source.policy.as_deref(), m.source.index)).collect();
    assert_eq!(sources, [(Some("one"), 0), (Some("two"), 0), (Some("two"), 1)]);
}

#[test]
fn an_empty_conf_changes_nothing() {
    let before = proxy();
    let mut after = before.clone();
    assert!(apply(&Conf::default(), &mut after).is_empty());
    only_changed(&before, &after, &[]);
}

#[test]
fn cluster_patch_merges_the_value_into_the_matching_cluster_only() {
    let after = patched(
        "{appendModifications: [{cluster: {operation: Patch, match: {name: backend},
            value: '{connect_timeout: 0.25s, per_connection_buffer_limit_bytes: 4096}'}}]}",
    );
    let cluster = render(get(&after.clusters, "backend"));
    assert_eq!(cluster["connectTimeout"], "0.250s");
    assert_eq!(cluster["perConnectionBufferLimitBytes"], 4096);
    assert_eq!(cluster["type"], "EDS", "the rest of the cluster stays");
    only_changed(&proxy(), &after, &["backend"]);
}

#[test]
fn unchanged_resources_stay_shared() {
    let before = proxy();
    let mut after = before.clone();
    let conf =
        conf("{appendModifications: [{cluster: {operation: Patch, match: {name: db}, value: 'connectTimeout: 1s'}}]}");
    assert!(apply(&conf, &mut after).is_empty());
    assert!(!Arc::ptr_eq(&before.clusters[1], &after.clusters[1]), "db is this proxy's own now");
    for (old, new) in [(&before.clusters[0], &after.clusters[0]), (&before.routes[0], &after.routes[0])] {
        assert!(Arc::ptr_eq(old, new), "{} is still the shared one", old.name);
    }
    assert!(before.listeners.iter().zip(&after.listeners).all(|(old, new)| Arc::ptr_eq(old, new)));
}

#[test]
fn patched_versions_follow_the_content() {
    let yaml =
        "{appendModifications: [{cluster: {operation: Patch, match: {name: backend}, value: 'connectTimeout: 2s'}}]}";
    let (one, two) = (patched(yaml), patched(yaml));
    assert_eq!(get(&one.clusters, "backend").version, get(&two.clusters, "backend").version);
    assert_eq!(get(&one.clusters, "backend").body, get(&two.clusters, "backend").body);
    let other = patched(
        "{appendModifications: [{cluster: {operation: Patch, match: {name: backend}, value: 'connectTimeout: 3s'}}]}",
    );
    assert_ne!(get(&one.clusters, "backend").version, get(&other.clusters, "backend").version);
    // A patch that leaves the content as it was keeps the generated resource.
    let same = patched(
        "{appendModifications: [{cluster: {operation: Patch, match: {name: backend}, value: 'connectTimeout: 5s'}}]}",
    );
    only_changed(&proxy(), &same, &[]);
}

#[test]
fn origin_tells_inbound_from_outbound_resources() {
    let inbound = patched(
        "{appendModifications: [{cluster: {operation: Patch, match: {origin: inbound}, value: 'connectTimeout: 1s'}}]}",
    );
    only_changed(&proxy(), &inbound, &[INBOUND_CLUSTER]);
    let outbound = patched(
        "{appendModifications: [{cluster: {operation: Patch, match: {origin: outbound}, value: 'connectTimeout: 1s'}}]}",
    );
    only_changed(&proxy(), &outbound, &["backend", "db"]);
    let listeners = patched(
        "{appendModifications: [{listener: {operation: Patch, match: {origin: outbound}, value: 'perConnectionBufferLimitBytes: 1'}}]}",
    );
    only_changed(&proxy(), &listeners, &[BACKEND_LISTENER, DB_LISTENER]);
    let none = patched(
        "{appendModifications: [{cluster: {operation: Patch, match: {origin: prometheus}, value: 'connectTimeout: 1s'}}]}",
    );
    only_changed(&proxy(), &none, &[]);
}

#[test]
fn cluster_add_inserts_by_name_and_later_modifications_see_it() {
    let after = patched(
        "{appendModifications: [
            {cluster: {operation: Add, value: '{name: audit, type: STATIC, connect_timeout: 1s}'}},
            {cluster: {operation: Patch, match: {origin: mesh-proxy-patch}, jsonPatches: [
                {op: replace, path: /connectTimeout, value: 3s}]}}]}",
    );
    assert_eq!(names(&after.clusters), ["audit", "backend", "db", INBOUND_CLUSTER]);
    assert_eq!(
        render(get(&after.clusters, "audit")),
        json!({"name": "audit", "type": "STATIC", "connectTimeout": "3s"})
    );
    only_changed(&proxy(), &after, &["audit"]);
}

#[test]
fn add_replaces_a_resource_of_the_same_name() {
    let after = patched("{appendModifications: [{cluster: {operation: Add, value: '{name: db, type: STRICT_DNS}'}}]}");
    assert_eq!(render(get(&after.clusters, "db")), json!({"name": "db", "type": "STRICT_DNS"}));
    assert_eq!(after.clusters.len(), 3);
}

#[test]
fn removing_a_cluster_drops_its_endpoints() {
    let after = patched("{appendModifications: [{cluster: {operation: Remove, match: {name: db}}}]}");
    assert_eq!(names(&after.clusters), ["backend", INBOUND_CLUSTER]);
    assert_eq!(names(&after.endpoints), ["backend"]);
}

#[test]
fn removing_a_listener_drops_the_routes_only_it_fetched() {
    let after = patched(&format!(
        "{{appendModifications: [{{listener: {{operation: Remove, match: {{name: '{BACKEND_LISTENER}'}}}}}}]}}"
    ));
    assert_eq!(names(&after.listeners), [INBOUND_LISTENER, DB_LISTENER]);
    assert!(after.routes.is_empty());
    assert_eq!(names(&after.clusters), ["backend", "db", INBOUND_CLUSTER], "clusters stay");
    let kept = patched(&format!(
        "{{appendModifications: [{{listener: {{operation: Remove, match: {{name: '{DB_LISTENER}'}}}}}}]}}"
    ));
    assert_eq!(names(&kept.routes), ["outbound:backend"]);
}

#[test]
fn listener_json_patches_and_tags() {
    // The first modification gives the db listener tags; the second matches them.
    let after = patched(&format!(
        "{{appendModifications: [
            {{listener: {{operation: Patch, match: {{name: '{DB_LISTENER}'}}, jsonPatches: [
                {{op: add, path: /metadata/filterMetadata/io.kuma.tags, value: {{kuma.io/service: db, team: a}}}}]}}}},
            {{listener: {{operation: Patch, match: {{tags: {{team: '*', kuma.io/service: db}}}}, jsonPatches: [
                {{op: add, path: /perConnectionBufferLimitBytes, value: 1024}}]}}}},
            {{listener: {{operation: Patch, match: {{tags: {{team: b}}}}, jsonPatches: [
                {{op: add, path: /perConnectionBufferLimitBytes, value: 1}}]}}}}]}}"
    ));
    let listener = render(get(&after.listeners, DB_LISTENER));
    assert_eq!(listener["perConnectionBufferLimitBytes"], 1024);
    assert_eq!(listener["metadata"]["filterMetadata"]["io.kuma.tags"]["team"], "a");
    only_changed(&proxy(), &after, &[DB_LISTENER]);
}

#[test]
fn generated_listeners_match_by_the_tags_of_what_they_serve() {
    // An outbound listener has its service's tag, an inbound its tags.
    let after = patched(
        "{appendModifications: [
            {listener: {operation: Patch, match: {tags: {kuma.io/service: backend}}, jsonPatches: [
                {op: add, path: /perConnectionBufferLimitBytes, value: 2048}]}},
            {networkFilter: {operation: Patch, match: {listenerTags: {kuma.io/protocol: http},
                name: envoy.filters.network.http_connection_manager}, jsonPatches: [
                {op: replace, path: /statPrefix, value: tagged}]}},
            {listener: {operation: Patch, match: {tags: {kuma.io/service: nobody}}, jsonPatches: [
                {op: add, path: /perConnectionBufferLimitBytes, value: 1}]}}]}",
    );
    assert_eq!(render(get(&after.listeners, BACKEND_LISTENER))["perConnectionBufferLimitBytes"], 2048);
    let inbound = render(get(&after.listeners, INBOUND_LISTENER));
    assert_eq!(inbound["filterChains"][0]["filters"][0]["typedConfig"]["statPrefix"], "tagged");
    only_changed(&proxy(), &after, &[BACKEND_LISTENER, INBOUND_LISTENER]);
}

#[test]
fn network_filters_are_added_around_named_filters_removed_and_patched() {
    let filter = |name: &str| {
        format!(
            "{{name: {name}, typedConfig: {{\"@type\": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, statPrefix: {name}}}}}"
        )
    };
    let after = patched(&format!(
        "{{appendModifications: [
            {{networkFilter: {{operation: AddFirst, match: {{listenerName: '{DB_LISTENER}'}}, value: '{}'}}}},
            {{networkFilter: {{operation: AddLast, match: {{listenerName: '{DB_LISTENER}'}}, value: '{}'}}}},
            {{networkFilter: {{operation: AddBefore, match: {{listenerName: '{DB_LISTENER}', name: envoy.filters.network.tcp_proxy}}, value: '{}'}}}},
            {{networkFilter: {{operation: AddAfter, match: {{listenerName: '{DB_LISTENER}', name: envoy.filters.network.tcp_proxy}}, value: '{}'}}}},
            {{networkFilter: {{operation: AddAfter, match: {{listenerName: '{DB_LISTENER}', name: no.such.filter}}, value: '{}'}}}},
            {{networkFilter: {{operation: Remove, match: {{listenerName: '{DB_LISTENER}', name: last}}}}}},
            {{networkFilter: {{operation: Patch, match: {{origin: outbound, name: envoy.filters.network.tcp_proxy}},
                jsonPatches: [{{op: replace, path: /statPrefix, value: patched}}]}}}},
            {{networkFilter: {{operation: Patch, match: {{listenerName: '{DB_LISTENER}', name: before}},
                value: '{{name: before, typedConfig: {{\"@type\": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, shadowRulesStatPrefix: shadow}}}}'}}}}]}}",
        filter("first"),
        filter("last"),
        filter("before"),
        filter("after"),
        filter("never"),
    ));
    let listener = render(get(&after.listeners, DB_LISTENER));
    let chain = &listener["filterChains"][0];
    assert_eq!(filter_names(chain), ["first", "before", "envoy.filters.network.tcp_proxy", "after"]);
    assert_eq!(chain["filters"][2]["typedConfig"]["statPrefix"], "patched");
    assert_eq!(chain["filters"][2]["typedConfig"]["cluster"], "db", "a JSON patch changes only its path");
    assert_eq!(
        chain["filters"][1]["typedConfig"],
        json!({"@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
               "statPrefix": "before", "shadowRulesStatPrefix": "shadow"}),
        "a value merges into the filter's config"
    );
    // The HTTP listeners have no tcp_proxy: untouched.
    only_changed(&proxy(), &after, &[DB_LISTENER]);
}

#[test]
fn http_filters_are_added_patched_and_removed_in_every_http_connection_manager() {
    let rbac = "{name: deny-all, typedConfig: {'@type': type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, rules: {action: DENY}}}";
    let after = patched(&format!(
        "{{appendModifications: [
            {{httpFilter: {{operation: AddBefore, match: {{name: envoy.filters.http.router}}, value: \"{rbac}\"}}}},
            {{httpFilter: {{operation: Patch, match: {{name: envoy.filters.http.router, origin: inbound}},
                value: '{{name: envoy.filters.http.router, typedConfig: {{\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, suppressEnvoyHeaders: true}}}}'}}}}]}}"
    ));
    for name in [INBOUND_LISTENER, BACKEND_LISTENER] {
        let listener = render(get(&after.listeners, name));
        assert_eq!(http_filter_names(&listener), ["deny-all", "envoy.filters.http.router"], "{name}");
        let router = &listener["filterChains"][0]["filters"][0]["typedConfig"]["httpFilters"][1]["typedConfig"];
        assert_eq!(router["suppressEnvoyHeaders"] == true, name == INBOUND_LISTENER, "{name}: {router}");
    }
    only_changed(&proxy(), &after, &[INBOUND_LISTENER, BACKEND_LISTENER]);

    let removed = patched(&format!(
        "{{appendModifications: [{{httpFilter: {{operation: Remove, match: {{name: envoy.filters.http.router, listenerName: '{INBOUND_LISTENER}'}}}}}}]}}"
    ));
    let manager = &render(get(&removed.listeners, INBOUND_LISTENER))["filterChains"][0]["filters"][0]["typedConfig"];
    assert!(manager.get("httpFilters").is_none(), "{manager}");
    only_changed(&proxy(), &removed, &[INBOUND_LISTENER]);
}

#[test]
fn virtual_hosts_of_rds_and_inline_route_configurations() {
    let after = patched(
        "{appendModifications: [
            {virtualHost: {operation: Patch, match: {name: backend, routeConfigurationName: 'outbound:backend'},
                value: '{responseHeadersToAdd: [{header: {key: x-patched, value: yes}}]}'}},
            {virtualHost: {operation: Add, match: {origin: inbound}, value: '{name: extra, domains: [extra.local]}'}},
            {virtualHost: {operation: Patch, match: {origin: inbound, name: web}, jsonPatches: [
                {op: add, path: /domains/0, value: web.local}]}}]}",
    );
    let route = render(get(&after.routes, "outbound:backend"));
    assert_eq!(
        route["virtualHosts"][0]["responseHeadersToAdd"][0]["header"],
        json!({"key": "x-patched", "value": "yes"})
    );
    let listener = render(get(&after.listeners, INBOUND_LISTENER));
    let hosts = &listener["filterChains"][0]["filters"][0]["typedConfig"]["routeConfig"]["virtualHosts"];
    assert_eq!(hosts[0]["domains"], json!(["web.local", "*"]));
    assert_eq!(hosts[1], json!({"name": "extra", "domains": ["extra.local"]}));
    only_changed(&proxy(), &after, &["outbound:backend", INBOUND_LISTENER]);

    let removed = patched("{appendModifications: [{virtualHost: {operation: Remove, match: {name: backend}}}]}");
    assert_eq!(render(get(&removed.routes, "outbound:backend")), json!({"name": "outbound:backend"}));
    let other = patched(
        "{appendModifications: [{virtualHost: {operation: Remove, match: {routeConfigurationName: elsewhere}}}]}",
    );
    only_changed(&proxy(), &other, &[]);
}

#[test]
fn a_json_patch_that_does_not_apply_leaves_the_resource_and_names_the_place() {
    let (after, errors) = patched_with_errors(
        "{appendModifications: [
            {cluster: {operation: Patch, match: {origin: outbound}, jsonPatches: [
                {op: add, path: /perConnectionBufferLimitBytes, value: 1},
                {op: test, path: /name, value: db}]}}]}",
    );
    assert_eq!(
        errors,
        ["MeshProxyPatch appendModifications[0].cluster (Patch) on cluster \"backend\": \
          jsonPatches[1] (test /name): test failed: /name is \"backend\", not \"db\""]
    );
    assert_eq!(render(get(&after.clusters, "db"))["perConnectionBufferLimitBytes"], 1);
    only_changed(&proxy(), &after, &["db"]);
}

#[test]
fn a_missing_path_is_an_error_for_replace() {
    let mut resources = proxy();
    let conf = read_policies([(
        "timeouts",
        &json!({"appendModifications": [{"cluster": {"operation": "Patch", "match": {"name": "backend"},
            "jsonPatches": [{"op": "replace", "path": "/commonLbConfig/healthyPanicThreshold", "value": {"value": 1}}]}}]}),
    )]);
    let errors = apply(&conf, &mut resources);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "MeshProxyPatch timeouts: spec.default.appendModifications[0].cluster (Patch) on cluster \"backend\": \
         jsonPatches[0] (replace /commonLbConfig/healthyPanicThreshold): /commonLbConfig/healthyPanicThreshold does not exist"
    );
    assert_eq!(errors[0].json_patch, Some((0, "replace".into(), "/commonLbConfig/healthyPanicThreshold".into())));
    only_changed(&proxy(), &resources, &[]);
}

#[test]
fn a_result_that_is_no_valid_message_is_refused() {
    let (after, errors) = patched_with_errors(
        "{appendModifications: [
            {cluster: {operation: Patch, match: {name: db}, jsonPatches: [{op: add, path: /connectTimeout, value: soon}]}},
            {cluster: {operation: Patch, match: {name: db}, jsonPatches: [{op: add, path: /noSuchField, value: 1}]}},
            {cluster: {operation: Patch, match: {name: db}, value: 'lbPolicy: NO_SUCH_POLICY'}},
            {listener: {operation: Patch, match: {name: 'outbound:127.0.0.1:20002'}, jsonPatches: [
                {op: replace, path: /filterChains/0/filters/0/typedConfig/@type, value: type.googleapis.com/no.Such}]}},
            {cluster: {operation: Patch, match: {name: backend}, value: 'connectTimeout: 9s'}}]}",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(
        errors[0],
        "MeshProxyPatch appendModifications[0].cluster (Patch) on cluster \"db\": \
         the result is not a valid envoy.config.cluster.v3.Cluster: failed to parse duration"
    );
    assert!(errors[1].contains("noSuchField"), "{}", errors[1]);
    assert!(
        errors[2].contains("value is not a valid envoy.config.cluster.v3.Cluster")
            && errors[2].contains("NO_SUCH_POLICY"),
        "{}",
        errors[2]
    );
    assert!(!errors[2].contains("on cluster"), "a bad value applies nowhere: {}", errors[2]);
    assert!(
        errors[3].contains("on listener \"outbound:127.0.0.1:20002\"") && errors[3].contains("no.Such"),
        "{}",
        errors[3]
    );
    // The last modification still applies.
    only_changed(&proxy(), &after, &["backend"]);
}

#[test]
fn wrong_modifications_are_reported_once() {
    let (after, errors) = patched_with_errors(
        "{appendModifications: [
            {cluster: {operation: Add, value: 'a: ['}},
            {cluster: {operation: Add, value: '{type: STATIC}'}},
            {listener: {operation: AddFirst, value: '{name: x}'}},
            {httpFilter: {operation: Add, value: '{name: x}'}},
            {httpFilter: {operation: Patch, match: {name: envoy.filters.http.router},
                value: '{name: r, typedConfig: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC}}'}},
            {virtualHost: {operation: Patch, match: {name: backend}}},
            {something: {operation: Patch}}]}",
    );
    assert_eq!(
        errors,
        [
            "MeshProxyPatch appendModifications[0].cluster (Add): value is not valid YAML: line 2, column 1: \
             did not find expected node content"
                .to_owned(),
            "MeshProxyPatch appendModifications[1].cluster (Add): the cluster to add has no name".into(),
            "MeshProxyPatch appendModifications[2].listener (AddFirst): operation AddFirst does not apply to a listener \
             (use Add, Remove or Patch)"
                .into(),
            "MeshProxyPatch appendModifications[3].httpFilter (Add): operation Add does not apply to a httpFilter \
             (use AddFirst, AddLast, AddBefore, AddAfter, Remove or Patch)"
                .into(),
            format!("MeshProxyPatch appendModifications[4].httpFilter (Patch) on listener \"{INBOUND_LISTENER}\": the value's typedConfig is a envoy.extensions.filters.http.rbac.v3.RBAC, the filter's a envoy.extensions.filters.http.router.v3.Router: only the same type can be merged"),
            format!("MeshProxyPatch appendModifications[4].httpFilter (Patch) on listener \"{BACKEND_LISTENER}\": the value's typedConfig is a envoy.extensions.filters.http.rbac.v3.RBAC, the filter's a envoy.extensions.filters.http.router.v3.Router: only the same type can be merged"),
            "MeshProxyPatch appendModifications[5].virtualHost (Patch): operation Patch needs value or jsonPatches".into(),
            "MeshProxyPatch appendModifications[6].(unknown) (): names none of cluster, listener, networkFilter, \
             httpFilter, virtualHost"
                .into(),
        ]
    );
    only_changed(&proxy(), &after, &[]);
}

/// The example of the user documentation, as a user applies it.
const EXAMPLE: &str = r#"
type: MeshProxyPatch
mesh: default
name: web-tuning
spec:
  targetRef:
    kind: MeshService
    name: web
  default:
    appendModifications:
      - cluster:
          operation: Patch
          match:
            name: backend
            origin: outbound
          value: |
            connectTimeout: 2s
      - virtualHost:
          operation: Patch
          match:
            routeConfigurationName: "outbound:backend"
          jsonPatches:
            - op: add
              path: /responseHeadersToAdd
              value:
                - header: {key: x-served-through, value: kodiak}
      - httpFilter:
          operation: AddBefore
          match:
            name: envoy.filters.http.router
            origin: inbound
          value: |
            name: deny-everyone
            typedConfig:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules: {}
      - listener:
          operation: Remove
          match:
            name: "outbound:127.0.0.1:20002"
"#;

#[test]
fn the_documented_example_is_accepted_and_applies() {
    let document = kodiak_api::parse_document(EXAMPLE).unwrap();
    let resource = kodiak_api::Resource::from_document(&document).unwrap_or_else(|e| panic!("{e}"));
    let default = &resource.body["spec"]["default"];
    let mut violations = kodiak_api::Violations::new();
    validate(default, &kodiak_api::FieldPath::root().field("spec").field("default"), &mut violations);
    assert!(violations.is_empty(), "{violations}");
    let mut after = proxy();
    assert_eq!(apply(&read_policies([("web-tuning", default)]), &mut after), []);
    assert_eq!(render(get(&after.clusters, "backend"))["connectTimeout"], "2s");
    let route = render(get(&after.routes, "outbound:backend"));
    assert_eq!(route["virtualHosts"][0]["responseHeadersToAdd"][0]["header"]["key"], "x-served-through");
    assert_eq!(http_filter_names(&render(get(&after.listeners, INBOUND_LISTENER)))[0], "deny-everyone");
    assert_eq!(names(&after.listeners), [INBOUND_LISTENER, BACKEND_LISTENER]);
}
