//! The Envoy JSON of routes built from MeshHTTPRoute confs.

use std::collections::BTreeMap;

use kodiak_xds_server::Resource;
use serde_json::{Value, json};

use super::*;
use crate::test_support::dataplane;

/// Services `backend` (http, instances tagged version v1 and v2), `other`
/// (http), `grpc` (gRPC) and `db` (tcp).
fn mesh() -> BTreeMap<String, ServiceView> {
    let dataplanes: Vec<_> = [
        ("backend-1", "127.0.0.3", "backend", "http", "v1"),
        ("backend-2", "127.0.0.4", "backend", "http", "v2"),
        ("other-1", "127.0.0.5", "other", "http", "v1"),
        ("grpc-1", "127.0.0.6", "grpc", "grpc", "v1"),
        ("db-1", "127.0.0.7", "db", "tcp", "v1"),
    ]
    .iter()
    .map(|(name, address, service, protocol, version)| {
        dataplane(&format!(
            "{{type: Dataplane, mesh: default, name: {name}, networking: {{address: {address}, inbound: [
                {{port: 10001, tags: {{kuma.io/service: {service}, kuma.io/protocol: {protocol}, version: {version}}}}}]}}}}"
        ))
    })
    .collect();
    crate::services(&dataplanes)
}

/// The routes of `backend`'s outbound under the conf `rules`, as Envoy JSON,
/// and the names of the clusters they need.
fn build(rules: Value) -> (Vec<Value>, Vec<String>) {
    let conf = read(&json!({ "rules": rules }));
    let (configuration, clusters) = route_configuration(&conf, "backend", &mesh());
    let rendered = crate::render(&Resource::new(configuration.name.clone(), &configuration));
    assert_eq!(rendered["name"], "outbound:backend");
    assert_eq!(rendered["virtualHosts"][0]["name"], "backend");
    assert_eq!(rendered["virtualHosts"][0]["domains"], json!(["*"]));
    let routes = rendered["virtualHosts"][0]["routes"].as_array().cloned().unwrap_or_default();
    (routes, clusters.iter().map(BackendCluster::name).collect())
}

/// Routes without their names (checked apart).
fn unnamed(mut routes: Vec<Value>) -> Vec<Value> {
    for route in &mut routes {
        route.as_object_mut().unwrap().remove("name");
    }
    routes
}

fn to(cluster: &str) -> Value {
    json!({"cluster": cluster})
}

fn catch_all(cluster: &str) -> Value {
    json!({"match": {"prefix": "/"}, "route": to(cluster)})
}

fn subset_name(service: &str, version: &str) -> String {
    BackendCluster { service: service.into(), tags: BTreeMap::from([("version".into(), version.into())]) }.name()
}

#[test]
fn without_rules_everything_goes_to_the_service() {
    let (routes, clusters) = build(json!([]));
    assert_eq!(unnamed(routes.clone()), [catch_all("backend")]);
    assert_eq!(
        routes[0]["name"],
        order::route_name(
            &read(&json!({"rules": [{"matches": [
        {"path": {"type": "PathPrefix", "value": "/"}}], "default": {}}]}))
            .rules[0]
                .matches
        )
    );
    assert_eq!(clusters, ["backend"]);
}

#[test]
fn each_match_kind_becomes_an_envoy_condition() {
    let rule =
        |m: Value| json!({"matches": [m], "default": {"backendRefs": [{"kind": "MeshService", "name": "other"}]}});
    let (routes, clusters) = build(json!([
        rule(json!({"path": {"type": "Exact", "value": "/exact"}})),
        rule(json!({"path": {"type": "PathPrefix", "value": "/api"}})),
        rule(json!({"path": {"type": "RegularExpression", "value": "/re/[0-9]+"}})),
        rule(json!({"method": "POST"})),
        rule(json!({"headers": [
            {"name": "x-exact", "value": "a"},
            {"type": "Exact", "name": "x-exact", "value": "ignored: named twice"},
            {"type": "Present", "name": "x-present"},
            {"type": "RegularExpression", "name": "x-regex", "value": "a.*"},
            {"type": "Absent", "name": "x-absent"},
            {"type": "Prefix", "name": "x-prefix", "value": "pre"},
            {"type": "Prefix", "name": "x-any", "value": ""}
        ]})),
        rule(json!({"queryParams": [
            {"type": "Exact", "name": "q", "value": "1"},
            {"type": "RegularExpression", "name": "r", "value": "[a-z]+"}
        ]})),
    ]));
    let headers = json!([
        {"name": "x-exact", "stringMatch": {"exact": "a"}},
        {"name": "x-present", "presentMatch": true},
        {"name": "x-regex", "stringMatch": {"safeRegex": {"regex": "a.*"}}},
        {"name": "x-absent", "presentMatch": false},
        {"name": "x-prefix", "stringMatch": {"prefix": "pre"}},
        {"name": "x-any", "presentMatch": true}
    ]);
    let query = json!([
        {"name": "q", "stringMatch": {"exact": "1"}},
        {"name": "r", "stringMatch": {"safeRegex": {"regex": "[a-z]+"}}}
    ]);
    assert_eq!(
        unnamed(routes),
        [
            json!({"match": {"path": "/exact"}, "route": to("other")}),
            json!({"match": {"path": "/api"}, "route": to("other")}),
            json!({"match": {"prefix": "/api/"}, "route": to("other")}),
            json!({"match": {"safeRegex": {"regex": "/re/[0-9]+"}}, "route": to("other")}),
            json!({"match": {"prefix": "/", "headers": [
                {"name": ":method", "stringMatch": {"exact": "POST"}}]}, "route": to("other")}),
            json!({"match": {"prefix": "/", "headers": headers}, "route": to("other")}),
            json!({"match": {"prefix": "/", "queryParameters": query}, "route": to("other")}),
            catch_all("backend"),
        ]
    );
    assert_eq!(clusters, ["backend", "other"]);
}

#[test]
fn routes_follow_match_precedence_and_a_rule_for_slash_replaces_the_catch_all() {
    let rule =
        |m: Value, to: &str| json!({"matches": [m], "default": {"backendRefs": [{"kind": "MeshService", "name": to}]}});
    let (routes, _) = build(json!([
        rule(json!({"path": {"type": "PathPrefix", "value": "/"}}), "other"),
        rule(json!({"path": {"type": "PathPrefix", "value": "/a"}}), "other"),
        rule(json!({"path": {"type": "PathPrefix", "value": "/a"}, "method": "GET"}), "grpc"),
        rule(json!({"path": {"type": "Exact", "value": "/a/b"}}), "grpc"),
    ]));
    let paths: Vec<String> = routes
        .iter()
        .map(|route| {
            let m = &route["match"];
            let path = m["path"].as_str().map(|p| format!("={p}")).or(m["prefix"].as_str().map(|p| format!("{p}*")));
            format!("{} {}", path.unwrap(), route["route"]["cluster"].as_str().unwrap())
        })
        .collect();
    assert_eq!(paths, ["=/a/b grpc", "=/a grpc", "/a/* grpc", "=/a other", "/a/* other", "/* other"]);
}

#[test]
fn backend_refs_split_by_weight_and_subsets_get_their_own_clusters() {
    let (v1, v2) = (subset_name("backend", "v1"), subset_name("backend", "v2"));
    let prefix = |p: &str, refs: Value| json!({"matches": [{"path": {"type": "PathPrefix", "value": p}}], "default": {"backendRefs": refs}});
    let subset = |version: &str, weight: u32| json!({"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": version}, "weight": weight});
    let (routes, clusters) = build(json!([
        prefix("/split", json!([subset("v1", 90), subset("v2", 10)])),
        prefix("/zero", json!([subset("v1", 0), {"kind": "MeshService", "name": "other", "weight": 5}])),
        prefix("/none", json!([subset("v1", 0)])),
        prefix("/tcp", json!([{"kind": "MeshService", "name": "db"}])),
        prefix("/gone", json!([{"kind": "MeshService", "name": "nobody"}])),
        prefix("/external", json!([{"kind": "MeshExternalService", "name": "httpbin"}])),
        prefix("/tagged", json!([{"kind": "MeshService", "name": "backend", "tags": {"version": "v2"}}])),
    ]));
    let weighted = json!({"weightedClusters": {"clusters": [{"name": v1, "weight": 90}, {"name": v2, "weight": 10}]}});
    let by_path: BTreeMap<String, Value> = routes
        .iter()
        .filter_map(|route| Some((route["match"]["path"].as_str()?.to_owned(), route["route"].clone())))
        .collect();
    assert_eq!(by_path["/split"], weighted);
    assert_eq!(by_path["/zero"], to("other"), "a zero weight is left out, one backend left is no split");
    assert!(!by_path.contains_key("/none"), "no backend left: no route");
    assert!(!by_path.contains_key("/tcp"), "a tcp service is no HTTP backend");
    assert!(!by_path.contains_key("/gone"), "a service nobody serves is no backend");
    assert_eq!(by_path["/external"], to("backend"), "nothing Kodiak routes to: the service itself");
    assert_eq!(by_path["/tagged"], to(&v2), "a MeshService with tags is a subset");
    let mut expected = vec!["backend".to_owned(), v1, v2, "other".to_owned()];
    expected.sort();
    assert_eq!(clusters, expected);
}

#[test]
fn header_modifiers_rewrites_and_mirrors() {
    let (routes, clusters) = build(json!([{
        "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
        "default": {"filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier":
                {"set": [{"name": "x-set", "value": "1"}], "add": [{"name": "x-add", "value": "2"}], "remove": ["x-drop"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier":
                {"set": [{"name": "x-resp", "value": "3"}], "remove": ["server"]}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "new.example",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}},
            {"type": "RequestMirror", "requestMirror": {"percentage": "12.5",
                "backendRef": {"kind": "MeshServiceSubset", "name": "other", "tags": {"version": "v1"}}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"kind": "MeshService", "name": "grpc"}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"kind": "MeshService", "name": "db"}}}
        ]}
    }, {
        "matches": [{"path": {"type": "Exact", "value": "/full"}}],
        "default": {"filters": [{"type": "URLRewrite", "urlRewrite": {
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/replaced"}}}]}
    }]));
    let mirror_v1 = subset_name("other", "v1");
    let request_add = json!([
        {"header": {"key": "x-set", "value": "1"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-add", "value": "2"}}
    ]);
    let action = |rewrite: Value| {
        let mut action = json!({
            "cluster": "backend",
            "hostRewriteLiteral": "new.example",
            "requestMirrorPolicies": [
                {"cluster": mirror_v1, "runtimeFraction": {"defaultValue": {"numerator": 1250, "denominator": "TEN_THOUSAND"}}},
                {"cluster": "grpc"}
            ]
        });
        action.as_object_mut().unwrap().extend(rewrite.as_object().unwrap().clone());
        action
    };
    let route = |m: Value, rewrite: Value| {
        json!({
            "match": m,
            "route": action(rewrite),
            "requestHeadersToAdd": request_add,
            "requestHeadersToRemove": ["x-drop"],
            "responseHeadersToAdd": [{"header": {"key": "x-resp", "value": "3"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}],
            "responseHeadersToRemove": ["server"]
        })
    };
    assert_eq!(
        unnamed(routes),
        [
            json!({"match": {"path": "/full"}, "route": {"cluster": "backend",
                "regexRewrite": {"pattern": {"regex": ".*"}, "substitution": "/replaced"}}}),
            route(
                json!({"path": "/old"}),
                json!({"regexRewrite": {"pattern": {"regex": ".*"}, "substitution": "/new"}})
            ),
            route(json!({"prefix": "/old/"}), json!({"prefixRewrite": "/new/"})),
            catch_all("backend"),
        ]
    );
    let mut expected = vec!["backend".to_owned(), "grpc".to_owned(), mirror_v1];
    expected.sort();
    assert_eq!(clusters, expected, "the tcp mirror is left out");
}

#[test]
fn redirects_answer_instead_of_sending_on() {
    let (routes, clusters) = build(json!([{
        "matches": [{"path": {"type": "PathPrefix", "value": "/moved"}}],
        "default": {
            "backendRefs": [{"kind": "MeshService", "name": "other"}],
            "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "new.example",
                    "port": 8443, "statusCode": 301, "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-r", "value": "1"}]}}
            ]
        }
    }, {
        "matches": [{"path": {"type": "Exact", "value": "/old"}}],
        "default": {"filters": [{"type": "RequestRedirect", "requestRedirect": {
            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}}}]}
    }, {
        "matches": [{"path": {"type": "Exact", "value": "/codes"}}],
        "default": {"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 308}}]}
    }]));
    let redirect = |rewrite: Value| {
        // 301 is Envoy's default response code, so it is not written.
        let mut redirect = json!({"schemeRedirect": "https", "hostRedirect": "new.example", "portRedirect": 8443});
        redirect.as_object_mut().unwrap().extend(rewrite.as_object().unwrap().clone());
        redirect
    };
    let response = json!([{"header": {"key": "x-r", "value": "1"}}]);
    assert_eq!(
        unnamed(routes),
        [
            json!({"match": {"path": "/old"}, "redirect": {
                "regexRewrite": {"pattern": {"regex": ".*"}, "substitution": "/new"}, "responseCode": "FOUND"}}),
            json!({"match": {"path": "/codes"}, "redirect": {"responseCode": "PERMANENT_REDIRECT"}}),
            json!({"match": {"path": "/moved"}, "responseHeadersToAdd": response,
                "redirect": redirect(json!({"regexRewrite": {"pattern": {"regex": ".*"}, "substitution": "/"}}))}),
            json!({"match": {"prefix": "/moved/"}, "responseHeadersToAdd": response,
                "redirect": redirect(json!({"prefixRewrite": "/"}))}),
            catch_all("backend"),
        ]
    );
    assert_eq!(clusters, ["backend"], "a redirecting rule sends nowhere");
}

#[test]
fn routes_of_a_rule_share_its_name() {
    let conf = read(&json!({"rules": [{"matches": [
        {"path": {"type": "PathPrefix", "value": "/a"}},
        {"path": {"type": "Exact", "value": "/b"}}
    ], "default": {}}]}));
    let (routes, _) = routes(&conf, "backend", &mesh());
    let expected = order::route_name(&conf.rules[0].matches);
    let names: Vec<&str> = routes.iter().map(|route| route.name.as_str()).collect();
    assert_eq!(names[..3], [expected.as_str(); 3]);
    assert_ne!(names[3], expected, "the catch-all has a name of its own");
}

#[test]
fn host_is_set_by_a_host_rewrite_and_pseudo_headers_are_left_alone() {
    let (routes, _) = build(json!([{
        "matches": [{"path": {"type": "Exact", "value": "/h"}}],
        "default": {"filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier":
                {"set": [{"name": "Host", "value": "set.example"}, {"name": ":path", "value": "/x"}], "remove": ["host"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "host", "value": "x"}]}}
        ]}
    }, {
        "matches": [{"path": {"type": "Exact", "value": "/both"}}],
        "default": {"filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "host", "value": "added.example"}]}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "rewrite.example"}}
        ]}
    }]));
    assert_eq!(
        unnamed(routes)[..2],
        [
            json!({"match": {"path": "/h"}, "route": {"cluster": "backend", "hostRewriteLiteral": "set.example"}}),
            json!({"match": {"path": "/both"}, "route": {"cluster": "backend", "hostRewriteLiteral": "rewrite.example"}}),
        ]
    );
}
