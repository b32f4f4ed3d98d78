//! The typed reading of a merged MeshHTTPRoute `default`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::backends::{BackendRef, read_backend_ref};

/// A merged MeshHTTPRoute conf toward one destination: its rules, in the
/// order the merge left them (rules from several policies with the same
/// `matches` already merged into one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Conf {
    pub rules: Vec<Rule>,
}

impl Conf {
    /// The MeshHTTPRoutes the rules come from.
    pub fn origins(&self) -> BTreeSet<&str> {
        self.rules.iter().filter_map(|rule| rule.origin.as_deref()).collect()
    }

    /// The services the rules send or mirror to, besides the destination:
    /// what the routes depend on beyond their own service (a change of one
    /// of them, in protocol or instances, changes the routes or the
    /// subset clusters).
    pub fn backend_services(&self) -> BTreeSet<&str> {
        let mirrors = self.rules.iter().flat_map(|rule| &rule.filters).filter_map(|filter| match filter {
            Filter::RequestMirror(mirror) => Some(&mirror.backend),
            _ => None,
        });
        let backends = self.rules.iter().flat_map(|rule| &rule.backend_refs);
        backends.chain(mirrors).filter_map(|backend| Some(backend.cluster.as_ref()?.service.as_str())).collect()
    }
}

/// One rule: requests that fit any of `matches` get the filters and go to
/// the backends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Never empty.
    pub matches: Vec<Match>,
    pub filters: Vec<Filter>,
    /// Empty: the destination itself.
    pub backend_refs: Vec<BackendRef>,
    /// The MeshHTTPRoute the rule comes from (the one that has the last word
    /// on it), when known: policies naming that route apply to the rule's
    /// requests.
    pub origin: Option<String>,
}

/// What a request must look like; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Match {
    pub path: Option<PathMatch>,
    /// An HTTP method such as `GET`.
    pub method: Option<String>,
    pub query_params: Vec<QueryParamMatch>,
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathMatch {
    pub kind: PathMatchKind,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathMatchKind {
    /// The whole path.
    Exact,
    /// The path, or the path followed by `/` and more (whole segments).
    PathPrefix,
    /// An RE2 regular expression matching the whole path.
    RegularExpression,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryParamMatch {
    /// True for `RegularExpression`, false for `Exact`.
    pub regex: bool,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderMatch {
    /// `None` when the conf leaves `type` out: `Exact`.
    pub kind: Option<HeaderMatchKind>,
    /// Lower case.
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderMatchKind {
    Exact,
    Present,
    RegularExpression,
    Absent,
    Prefix,
}

/// What a rule does to matching requests beside sending them on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    RequestHeaderModifier(HeaderModifier),
    ResponseHeaderModifier(HeaderModifier),
    RequestRedirect(Redirect),
    UrlRewrite(UrlRewrite),
    RequestMirror(Mirror),
}

/// Headers to overwrite (`set`), append (`add`) and drop (`remove`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HeaderModifier {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

/// Answers the request with a redirect instead of sending it on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// `http` or `https`; the request's when `None`.
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathRewrite>,
    pub port: Option<u16>,
    /// 301, 302 (the default), 303, 307 or 308.
    pub status_code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathRewrite {
    /// The whole path becomes this.
    ReplaceFullPath(String),
    /// The part the rule's PathPrefix match matched becomes this.
    ReplacePrefixMatch(String),
}

/// Changes the request before it is sent on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UrlRewrite {
    /// The new Host header.
    pub hostname: Option<String>,
    pub path: Option<PathRewrite>,
    /// Host becomes the host name of the instance the request goes to.
    pub host_to_backend_hostname: bool,
}

/// Sends a copy of (a share of) the requests to another backend; its
/// answers are thrown away.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mirror {
    pub backend: BackendRef,
    /// The share of requests mirrored in millionths (1 000 000 is all of
    /// them, the default).
    pub per_million: u32,
}

/// Reads a merged MeshHTTPRoute `default` (`{"rules": [...]}`). Entries that
/// are not what the schema allows are left out (a rule without a usable
/// match, a filter whose type has no settings), so reading never fails.
pub fn read(conf: &Value) -> Conf {
    read_with_origins(conf, &[])
}

/// Reads a merged conf whose rules come from the routes `origins`, one per
/// rule in their order (see `kodiak_policy::rules::Conf::rule_origins`).
pub fn read_with_origins(conf: &Value, origins: &[String]) -> Conf {
    let origins = origins.iter().map(|origin| Some(origin.clone())).chain(std::iter::repeat(None));
    let rules = items(&conf["rules"]).iter().zip(origins);
    Conf { rules: rules.filter_map(|(rule, origin)| Some(Rule { origin, ..read_rule(rule)? })).collect() }
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

fn read_rule(rule: &Value) -> Option<Rule> {
    let matches: Vec<Match> = items(&rule["matches"]).iter().filter_map(read_match).collect();
    if matches.is_empty() {
        return None;
    }
    let default = &rule["default"];
    Some(Rule {
        matches,
        filters: items(&default["filters"]).iter().filter_map(read_filter).collect(),
        backend_refs: items(&default["backendRefs"]).iter().filter_map(read_backend_ref).collect(),
        origin: None,
    })
}

fn read_match(value: &Value) -> Option<Match> {
    value.as_object()?;
    let path = match value.get("path").filter(|path| !path.is_null()) {
        None => None,
        Some(path) => {
            let kind = match path["type"].as_str()? {
                "Exact" => PathMatchKind::Exact,
                "PathPrefix" => PathMatchKind::PathPrefix,
                "RegularExpression" => PathMatchKind::RegularExpression,
                _ => return None,
            };
            Some(PathMatch { kind, value: text(&path["value"])? })
        }
    };
    let query_params = items(&value["queryParams"])
        .iter()
        .filter_map(|param| {
            let regex = match param["type"].as_str()? {
                "Exact" => false,
                "RegularExpression" => true,
                _ => return None,
            };
            Some(QueryParamMatch {
                regex,
                name: text(&param["name"])?,
                value: text(&param["value"]).unwrap_or_default(),
            })
        })
        .collect();
    let headers = items(&value["headers"]).iter().filter_map(read_header_match).collect();
    Some(Match { path, method: text(&value["method"]), query_params, headers })
}

fn read_header_match(header: &Value) -> Option<HeaderMatch> {
    let kind = match header["type"].as_str() {
        None => None,
        Some("Exact") => Some(HeaderMatchKind::Exact),
        Some("Present") => Some(HeaderMatchKind::Present),
        Some("RegularExpression") => Some(HeaderMatchKind::RegularExpression),
        Some("Absent") => Some(HeaderMatchKind::Absent),
        Some("Prefix") => Some(HeaderMatchKind::Prefix),
        Some(_) => return None,
    };
    let name = header["name"].as_str().filter(|name| !name.is_empty())?.to_ascii_lowercase();
    Some(HeaderMatch { kind, name, value: text(&header["value"]).unwrap_or_default() })
}

fn read_filter(filter: &Value) -> Option<Filter> {
    Some(match filter["type"].as_str()? {
        "RequestHeaderModifier" => {
            Filter::RequestHeaderModifier(read_header_modifier(&filter["requestHeaderModifier"])?)
        }
        "ResponseHeaderModifier" => {
            Filter::ResponseHeaderModifier(read_header_modifier(&filter["responseHeaderModifier"])?)
        }
        "RequestRedirect" => Filter::RequestRedirect(read_redirect(filter.get("requestRedirect")?)?),
        "URLRewrite" => Filter::UrlRewrite(read_rewrite(filter.get("urlRewrite")?)?),
        "RequestMirror" => Filter::RequestMirror(read_mirror(filter.get("requestMirror")?)?),
        _ => return None,
    })
}

fn read_header_modifier(value: &Value) -> Option<HeaderModifier> {
    value.as_object()?;
    let pairs = |field: &str| -> Vec<(String, String)> {
        items(&value[field])
            .iter()
            .filter_map(|pair| Some((text(&pair["name"])?, text(&pair["value"]).unwrap_or_default())))
            .collect()
    };
    Some(HeaderModifier {
        set: pairs("set"),
        add: pairs("add"),
        remove: items(&value["remove"]).iter().filter_map(text).collect(),
    })
}

fn read_path_rewrite(value: &Value) -> Option<PathRewrite> {
    match value["type"].as_str()? {
        "ReplaceFullPath" => Some(PathRewrite::ReplaceFullPath(text(&value["replaceFullPath"])?)),
        "ReplacePrefixMatch" => Some(PathRewrite::ReplacePrefixMatch(text(&value["replacePrefixMatch"])?)),
        _ => None,
    }
}

fn read_redirect(value: &Value) -> Option<Redirect> {
    value.as_object()?;
    let status_code = match value["statusCode"].as_u64() {
        Some(code @ (301 | 302 | 303 | 307 | 308)) => code as u16,
        _ => 302,
    };
    Some(Redirect {
        scheme: text(&value["scheme"]),
        hostname: text(&value["hostname"]),
        path: read_path_rewrite(&value["path"]),
        port: value["port"].as_u64().and_then(|port| u16::try_from(port).ok()).filter(|port| *port > 0),
        status_code,
    })
}

fn read_rewrite(value: &Value) -> Option<UrlRewrite> {
    value.as_object()?;
    Some(UrlRewrite {
        hostname: text(&value["hostname"]),
        path: read_path_rewrite(&value["path"]),
        host_to_backend_hostname: value["hostToBackendHostname"].as_bool().unwrap_or(false),
    })
}

fn read_mirror(value: &Value) -> Option<Mirror> {
    let per_million = match value.get("percentage").filter(|percentage| !percentage.is_null()) {
        None => 1_000_000,
        Some(percentage) => per_million(percentage)?,
    };
    Some(Mirror { backend: read_backend_ref(&value["backendRef"])?, per_million })
}

/// A percentage (`50`, `12.5` or `"12.5"`, at most 100) in millionths.
fn per_million(percentage: &Value) -> Option<u32> {
    let millionths = match percentage {
        Value::Number(number) => match number.as_u64() {
            Some(whole) => whole.checked_mul(10_000)?,
            // Only rounding of a decimal the schema already checked.
            None => (number.as_f64()? * 10_000.0).round() as u64,
        },
        Value::String(text) => {
            let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(whole) || !(fraction.is_empty() || digits(fraction)) {
                return None;
            }
            // Four decimal places are millionths; further ones are dropped.
            let fraction = format!("{fraction:0<4}");
            whole.parse::<u64>().ok()?.checked_mul(10_000)? + fraction[..4].parse::<u64>().ok()?
        }
        _ => return None,
    };
    u32::try_from(millionths.min(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::mesh_http_route::BackendCluster;
    use serde_json::json;

    fn service(name: &str, weight: u32) -> BackendRef {
        BackendRef { cluster: Some(BackendCluster::service(name)), weight }
    }

    #[test]
    fn reads_every_field() {
        let conf = read(&json!({"rules": [{
            "matches": [
                {"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
                 "queryParams": [{"type": "RegularExpression", "name": "q", "value": "a+"}],
                 "headers": [{"name": "X-Team", "value": "a"}, {"type": "Absent", "name": "x-no"}]},
                {"path": {"type": "Exact", "value": "/x"}}
            ],
            "default": {
                "filters": [
                    {"type": "RequestHeaderModifier", "requestHeaderModifier":
                        {"set": [{"name": "a", "value": "1"}], "add": [{"name": "b", "value": "2"}], "remove": ["c"]}},
                    {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["d"]}},
                    {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "x.example",
                        "port": 8443, "statusCode": 301, "path": {"type": "ReplaceFullPath", "replaceFullPath": "/n"}}},
                    {"type": "URLRewrite", "urlRewrite": {"hostname": "h.example",
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
                    {"type": "RequestMirror", "requestMirror": {"percentage": "12.5",
                        "backendRef": {"kind": "MeshService", "name": "shadow"}}}
                ],
                "backendRefs": [{"kind": "MeshService", "name": "backend", "weight": 90},
                                {"kind": "MeshService", "name": "backend-next", "weight": 10}]
            }
        }]}));
        let expected = Rule {
            matches: vec![
                Match {
                    path: Some(PathMatch { kind: PathMatchKind::PathPrefix, value: "/api".into() }),
                    method: Some("GET".into()),
                    query_params: vec![QueryParamMatch { regex: true, name: "q".into(), value: "a+".into() }],
                    headers: vec![
                        HeaderMatch { kind: None, name: "x-team".into(), value: "a".into() },
                        HeaderMatch { kind: Some(HeaderMatchKind::Absent), name: "x-no".into(), value: String::new() },
                    ],
                },
                Match { path: Some(PathMatch { kind: PathMatchKind::Exact, value: "/x".into() }), ..Match::default() },
            ],
            filters: vec![
                Filter::RequestHeaderModifier(HeaderModifier {
                    set: vec![("a".into(), "1".into())],
                    add: vec![("b".into(), "2".into())],
                    remove: vec!["c".into()],
                }),
                Filter::ResponseHeaderModifier(HeaderModifier { remove: vec!["d".into()], ..Default::default() }),
                Filter::RequestRedirect(Redirect {
                    scheme: Some("https".into()),
                    hostname: Some("x.example".into()),
                    path: Some(PathRewrite::ReplaceFullPath("/n".into())),
                    port: Some(8443),
                    status_code: 301,
                }),
                Filter::UrlRewrite(UrlRewrite {
                    hostname: Some("h.example".into()),
                    path: Some(PathRewrite::ReplacePrefixMatch("/v2".into())),
                    host_to_backend_hostname: false,
                }),
                Filter::RequestMirror(Mirror { backend: service("shadow", 1), per_million: 125_000 }),
            ],
            backend_refs: vec![service("backend", 90), service("backend-next", 10)],
            origin: None,
        };
        assert_eq!(conf, Conf { rules: vec![expected] });
        assert_eq!(conf.backend_services(), BTreeSet::from(["backend", "backend-next", "shadow"]));
    }

    #[test]
    fn defaults_and_leniency() {
        assert_eq!(read(&json!({})), Conf::default());
        assert_eq!(read(&json!({"rules": "x"})), Conf::default());
        let conf = read(&json!({"rules": [
            {"matches": [], "default": {}},
            {"matches": [{"path": {"type": "Glob", "value": "/*"}}], "default": {}},
            {"matches": [{}], "default": {"filters": [
                {"type": "RequestRedirect", "requestRedirect": {"statusCode": 399}},
                {"type": "RequestMirror", "requestMirror": {"backendRef": {"kind": "MeshService", "name": "m"}}},
                {"type": "URLRewrite"},
                {"type": "Unknown"}
            ]}}
        ]}));
        assert_eq!(conf.rules.len(), 1, "rules without a usable match are left out: {conf:?}");
        let rule = &conf.rules[0];
        assert_eq!(rule.matches, [Match::default()]);
        assert!(rule.backend_refs.is_empty());
        assert_eq!(
            rule.filters,
            [
                Filter::RequestRedirect(Redirect {
                    scheme: None,
                    hostname: None,
                    path: None,
                    port: None,
                    status_code: 302
                }),
                Filter::RequestMirror(Mirror { backend: service("m", 1), per_million: 1_000_000 }),
            ]
        );
    }

    #[test]
    fn percentages_become_millionths() {
        let cases = [
            (json!(50), Some(500_000)),
            (json!(12.5), Some(125_000)),
            (json!("12.5"), Some(125_000)),
            (json!("0.0001"), Some(1)),
            (json!("0.00019"), Some(1)),
            (json!("100"), Some(1_000_000)),
            (json!(0), Some(0)),
            (json!("1e3"), None),
            (json!("-1"), None),
            (json!(true), None),
        ];
        for (value, expected) in cases {
            assert_eq!(per_million(&value), expected, "{value}");
        }
    }
}
