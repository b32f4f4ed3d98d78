use serde_json::json;

use super::*;

fn added(shape: Shape, confs: &[(&'static str, Value)]) -> Conf {
    let mut acc = Acc::new();
    for (origin, conf) in confs {
        acc.add(shape, conf, origin);
    }
    acc.finish(shape)
}

#[test]
fn origins_are_listed_once_in_the_order_they_first_contributed() {
    let conf = added(Shape::Default, &[("a", json!({"x": 1})), ("b", json!({"x": 2})), ("a", json!({"y": 3}))]);
    assert_eq!(conf.origins, ["a", "b"]);
    assert_eq!(conf.conf, json!({"x": 2, "y": 3}));
}

#[test]
fn tcp_route_rules_merge_as_one_rule() {
    let first = json!({"default": {"backendRefs": [{"name": "a"}]}});
    let second = json!({"default": {"backendRefs": [{"name": "b"}, {"name": "c"}]}});
    let conf = added(Shape::TcpRoute, &[("p", first), ("q", second)]);
    assert_eq!(conf.conf, json!({"rules": [{"default": {"backendRefs": [{"name": "b"}, {"name": "c"}]}}]}));
}

#[test]
fn http_route_rules_with_equal_matches_merge_their_defaults_and_take_the_later_place() {
    let matches = |path: &str| json!([{"path": {"type": "Exact", "value": path}}]);
    let less = json!({"rules": [
        {"matches": matches("/x"), "default": {"backendRefs": [{"name": "x"}], "filters": [{"type": "URLRewrite"}]}},
        {"matches": matches("/y"), "default": {"backendRefs": [{"name": "y"}]}},
    ]});
    let more = json!({"rules": [
        {"matches": matches("/z"), "default": {}},
        {"matches": matches("/x"), "default": {"backendRefs": [{"name": "x2"}]}},
    ]});
    let conf = added(Shape::HttpRoute, &[("less", less), ("more", more)]);
    assert_eq!(
        conf.conf,
        json!({"rules": [
            {"matches": matches("/z"), "default": {}},
            {"matches": matches("/x"), "default": {"backendRefs": [{"name": "x2"}], "filters": [{"type": "URLRewrite"}]}},
            {"matches": matches("/y"), "default": {"backendRefs": [{"name": "y"}]}},
        ]})
    );
    // A merged rule comes from the route whose rule was added last.
    assert_eq!(conf.rule_origins, ["more", "more", "less"]);
    // Matches compare as values: key order does not matter.
    let reordered =
        json!({"rules": [{"matches": [{"path": {"value": "/y", "type": "Exact"}}], "default": {"filters": []}}]});
    let conf = added(Shape::HttpRoute, &[("a", conf.conf.clone()), ("b", reordered)]);
    assert_eq!(conf.conf["rules"].as_array().unwrap().len(), 3);
    assert_eq!(conf.conf["rules"][0]["default"], json!({"backendRefs": [{"name": "y"}], "filters": []}));
    assert_eq!(conf.rule_origins, ["b", "a", "a"]);
}

#[test]
fn only_route_confs_have_rule_origins() {
    let conf = added(Shape::Default, &[("a", json!({"x": 1}))]);
    assert!(conf.rule_origins.is_empty());
    let conf = added(Shape::TcpRoute, &[("a", json!({"default": {"backendRefs": [{"name": "a"}]}}))]);
    assert!(conf.rule_origins.is_empty());
}
