//! Which route Envoy tries first, and route names.
//!
//! Envoy takes the first route that matches, so the routes are ordered by
//! the Gateway API's precedence for HTTPRoute matches: a match with a path
//! before one without; an Exact path before a PathPrefix before a
//! RegularExpression, and among prefixes (or expressions) the longer value
//! first; then a match with a method first; then the one with more header
//! conditions, then more query parameter conditions. Matches equal in all
//! of that keep the order of the conf's rules.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::backends::hash_name;
use super::conf::{HeaderMatchKind, Match, PathMatch, PathMatchKind};

/// `Less` when a request matching both should take `a`'s route.
pub fn compare(a: &Match, b: &Match) -> Ordering {
    compare_paths(a.path.as_ref(), b.path.as_ref())
        .then_with(|| b.method.is_some().cmp(&a.method.is_some()))
        .then_with(|| b.headers.len().cmp(&a.headers.len()))
        .then_with(|| b.query_params.len().cmp(&a.query_params.len()))
}

fn compare_paths(a: Option<&PathMatch>, b: Option<&PathMatch>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(a), Some(b)) => a.kind.cmp(&b.kind).then_with(|| match a.kind {
            PathMatchKind::Exact => Ordering::Equal,
            PathMatchKind::PathPrefix | PathMatchKind::RegularExpression => b.value.len().cmp(&a.value.len()),
        }),
    }
}

/// The name of the Envoy routes of a rule: the base64 SHA-256 of its
/// matches as Kuma's JSON encoding writes them (fields in Kuma's order,
/// `<`, `>` and `&` escaped), so routes keep Kuma's names.
pub fn route_name(matches: &[Match]) -> String {
    let json: Vec<Value> = matches.iter().map(match_json).collect();
    let text = serde_json::to_string(&json).unwrap_or_default();
    let escaped = text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    hash_name(&escaped)
}

fn match_json(m: &Match) -> Value {
    let mut object = Map::new();
    if let Some(path) = &m.path {
        let kind = match path.kind {
            PathMatchKind::Exact => "Exact",
            PathMatchKind::PathPrefix => "PathPrefix",
            PathMatchKind::RegularExpression => "RegularExpression",
        };
        object.insert("path".into(), json!({"value": path.value, "type": kind}));
    }
    if let Some(method) = &m.method {
        object.insert("method".into(), json!(method));
    }
    if !m.query_params.is_empty() {
        let params = m.query_params.iter().map(|param| {
            let kind = if param.regex { "RegularExpression" } else { "Exact" };
            json!({"type": kind, "name": param.name, "value": param.value})
        });
        object.insert("queryParams".into(), params.collect());
    }
    if !m.headers.is_empty() {
        let headers = m.headers.iter().map(|header| {
            let mut entry = Map::new();
            if let Some(kind) = header.kind {
                let kind = match kind {
                    HeaderMatchKind::Exact => "Exact",
                    HeaderMatchKind::Present => "Present",
                    HeaderMatchKind::RegularExpression => "RegularExpression",
                    HeaderMatchKind::Absent => "Absent",
                    HeaderMatchKind::Prefix => "Prefix",
                };
                entry.insert("type".into(), json!(kind));
            }
            entry.insert("name".into(), json!(header.name));
            if !header.value.is_empty() {
                entry.insert("value".into(), json!(header.value));
            }
            Value::Object(entry)
        });
        object.insert("headers".into(), headers.collect());
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::mesh_http_route::conf::{HeaderMatch, QueryParamMatch};

    fn path(kind: PathMatchKind, value: &str) -> Match {
        Match { path: Some(PathMatch { kind, value: value.into() }), ..Match::default() }
    }

    fn header(name: &str) -> HeaderMatch {
        HeaderMatch { kind: None, name: name.into(), value: "v".into() }
    }

    #[test]
    fn more_specific_matches_come_first() {
        use PathMatchKind::*;
        let with_method = Match { method: Some("GET".into()), ..path(PathPrefix, "/a") };
        let with_header = Match { headers: vec![header("x")], ..path(PathPrefix, "/a") };
        let with_two_headers = Match { headers: vec![header("x"), header("y")], ..path(PathPrefix, "/a") };
        let query = QueryParamMatch { regex: false, name: "q".into(), value: "1".into() };
        let with_query = Match { query_params: vec![query], ..path(PathPrefix, "/a") };
        // Each before the next, whatever order they come in.
        let expected = vec![
            Match { method: Some("GET".into()), ..path(Exact, "/") },
            path(Exact, "/a"),
            path(PathPrefix, "/longer"),
            with_method.clone(),
            with_two_headers.clone(),
            with_header.clone(),
            with_query.clone(),
            path(PathPrefix, "/a"),
            path(RegularExpression, "/.*/x"),
            path(RegularExpression, "/.*"),
            Match { method: Some("GET".into()), ..Match::default() },
            Match::default(),
        ];
        for rotation in 0..expected.len() {
            let mut shuffled = expected.clone();
            shuffled.rotate_left(rotation);
            shuffled.reverse();
            shuffled.sort_by(compare);
            assert_eq!(shuffled, expected, "rotation {rotation}");
        }
        assert_eq!(compare(&path(Exact, "/a"), &path(Exact, "/bb")), Ordering::Equal);
    }

    #[test]
    fn route_names_hash_the_matches_like_kuma() {
        // echo -n '[{"path":{"value":"/","type":"PathPrefix"}}]' | openssl dgst -sha256 -binary | base64
        assert_eq!(route_name(&[path(PathMatchKind::PathPrefix, "/")]), "9Zuf5Tg79OuZcQITwBbQykxAk2u4fRKrwYn3//AL4Yo=");
        assert_eq!(
            route_name(&[path(PathMatchKind::PathPrefix, "/v1")]),
            "bzv64o+joRk33jfDADgGv5ar4QyONO0NEVKnoBfJW/E="
        );
        let full = Match {
            method: Some("GET".into()),
            headers: vec![HeaderMatch { kind: Some(HeaderMatchKind::Present), name: "x".into(), value: String::new() }],
            query_params: vec![QueryParamMatch { regex: true, name: "q".into(), value: "a<b&c>".into() }],
            ..path(PathMatchKind::Exact, "/e")
        };
        let expected = r#"[{"path":{"value":"/e","type":"Exact"},"method":"GET","queryParams":[{"type":"RegularExpression","name":"q","value":"a\u003cb\u0026c\u003e"}],"headers":[{"type":"Present","name":"x"}]}]"#;
        assert_eq!(route_name(&[full]), hash_name(expected));
    }
}
