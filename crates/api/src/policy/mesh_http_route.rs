//! MeshHTTPRoute: routes HTTP requests by path, method, headers and query
//! parameters to weighted backends, with header, redirect, rewrite and
//! mirror filters.

use serde_json::Value;

use super::{
    BACKEND_REF_FIELDS, BACKEND_REFS, DESTINATION_KINDS, HEADER_MATCH, HEADER_VALUES, HOSTNAME, MESH_GATEWAY,
    MESH_SERVICE, TOP_KINDS, entries, items, regular_expression, route_destinations, top_kind,
};
use crate::schema::{Schema, optional, required};
use crate::violations::{FieldPath, Violations};

const PATH_MATCH: Schema = Schema::Check(
    &Schema::Object(&[
        required("type", Schema::Enum(&["Exact", "PathPrefix", "RegularExpression"])),
        required("value", Schema::NonEmptyString),
    ]),
    path_match,
);

const QUERY_PARAMS: Schema = Schema::Check(
    &Schema::List(&Schema::Object(&[
        required("type", Schema::Enum(&["Exact", "RegularExpression"])),
        required("name", Schema::NonEmptyString),
        required("value", Schema::String),
    ])),
    query_params,
);

const MATCH: Schema = Schema::Object(&[
    optional("path", PATH_MATCH),
    optional("method", Schema::Enum(&["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"])),
    optional("queryParams", QUERY_PARAMS),
    optional("headers", Schema::List(&HEADER_MATCH)),
]);

const HEADER_MODIFIER: Schema = Schema::Check(
    &Schema::AtLeastOneOf(
        &["set", "add", "remove"],
        &Schema::Object(&[
            optional("set", HEADER_VALUES),
            optional("add", HEADER_VALUES),
            optional("remove", Schema::List(&Schema::NonEmptyString)),
        ]),
    ),
    unique_header_names,
);

/// How a redirect or rewrite changes the path.
const PATH_REWRITE: Schema = Schema::Union(
    &[("ReplaceFullPath", "replaceFullPath"), ("ReplacePrefixMatch", "replacePrefixMatch")],
    &Schema::Object(&[
        required("type", Schema::Enum(&["ReplaceFullPath", "ReplacePrefixMatch"])),
        optional("replaceFullPath", Schema::String),
        optional("replacePrefixMatch", Schema::String),
    ]),
);

const REQUEST_REDIRECT: Schema = Schema::Object(&[
    optional("scheme", Schema::Enum(&["http", "https"])),
    optional("hostname", Schema::Check(&HOSTNAME, not_an_ip)),
    optional("path", PATH_REWRITE),
    optional("port", Schema::Port),
    optional("statusCode", Schema::Check(&Schema::Int { min: 301, max: 308 }, redirect_status)),
]);

const URL_REWRITE: Schema = Schema::Object(&[
    optional("hostname", Schema::Check(&HOSTNAME, not_an_ip)),
    optional("path", PATH_REWRITE),
    optional("hostToBackendHostname", Schema::Bool),
]);

const REQUEST_MIRROR: Schema = Schema::Object(&[
    optional("percentage", Schema::Percentage),
    required("backendRef", Schema::TargetRefWith(&[MESH_SERVICE, "MeshServiceSubset"], BACKEND_REF_FIELDS)),
]);

const FILTER: Schema = Schema::Union(
    &[
        ("RequestHeaderModifier", "requestHeaderModifier"),
        ("ResponseHeaderModifier", "responseHeaderModifier"),
        ("RequestRedirect", "requestRedirect"),
        ("URLRewrite", "urlRewrite"),
        ("RequestMirror", "requestMirror"),
    ],
    &Schema::Object(&[
        required(
            "type",
            Schema::Enum(&[
                "RequestHeaderModifier",
                "ResponseHeaderModifier",
                "RequestRedirect",
                "URLRewrite",
                "RequestMirror",
            ]),
        ),
        optional("requestHeaderModifier", HEADER_MODIFIER),
        optional("responseHeaderModifier", HEADER_MODIFIER),
        optional("requestRedirect", REQUEST_REDIRECT),
        optional("urlRewrite", URL_REWRITE),
        optional("requestMirror", REQUEST_MIRROR),
    ]),
);

const RULE: Schema = Schema::Check(
    &Schema::Object(&[
        required("matches", Schema::NonEmptyList(&MATCH)),
        required(
            "default",
            Schema::Object(&[optional("filters", Schema::List(&FILTER)), optional("backendRefs", BACKEND_REFS)]),
        ),
    ]),
    prefix_rewrites_need_prefix_matches,
);

const TO: Schema = Schema::Object(&[
    required("targetRef", Schema::TargetRef(DESTINATION_KINDS)),
    optional("hostnames", Schema::List(&Schema::NonEmptyString)),
    required("rules", Schema::List(&RULE)),
]);

const SPEC: Schema = Schema::Check(
    &Schema::Object(&[optional("targetRef", Schema::TargetRef(TOP_KINDS)), optional("to", Schema::List(&TO))]),
    spec_rules,
);

pub const SCHEMA: Schema = Schema::Object(&[required("spec", SPEC)]);

fn spec_rules(spec: &Value, path: &FieldPath, out: &mut Violations) {
    route_destinations(spec, path, out);
    let on_gateway = top_kind(spec) == MESH_GATEWAY;
    for (i, to) in entries(spec, "to").iter().enumerate() {
        let to_path = path.field("to").index(i);
        if !on_gateway && !entries(to, "hostnames").is_empty() {
            out.add(&to_path.field("hostnames"), "must not be defined unless the top-level targetRef is a MeshGateway");
        }
        for (j, rule) in entries(to, "rules").iter().enumerate() {
            let default_path = to_path.field("rules").index(j).field("default");
            let filters = entries(&rule["default"], "filters");
            // A gateway route needs somewhere to send traffic unless it redirects.
            let redirects = filters.iter().any(|f| f["type"] == "RequestRedirect");
            if on_gateway && entries(&rule["default"], "backendRefs").is_empty() && !redirects {
                out.add(
                    &default_path.field("backendRefs"),
                    "must not be empty on a MeshGateway route without a RequestRedirect filter",
                );
            }
            for (k, filter) in filters.iter().enumerate() {
                let rewrite = &filter["urlRewrite"];
                if rewrite["hostToBackendHostname"] != Value::Bool(true) {
                    continue;
                }
                let at = default_path.field("filters").index(k).field("urlRewrite").field("hostToBackendHostname");
                if !on_gateway {
                    out.add(&at, "can only be set when the top-level targetRef is a MeshGateway");
                }
                if rewrite.get("hostname").is_some_and(|h| !h.is_null()) {
                    out.add(&at, "cannot be set together with hostname");
                }
            }
        }
    }
}

fn path_match(value: &Value, path: &FieldPath, out: &mut Violations) {
    let text = value["value"].as_str().unwrap_or_default();
    let at = path.field("value");
    match value["type"].as_str() {
        Some("Exact" | "PathPrefix") if !text.starts_with('/') => out.add(&at, "must be an absolute path"),
        Some("PathPrefix") if text != "/" && text.ends_with('/') => {
            out.add(&at, "must not end with '/': a prefix matches whole '/'-separated segments")
        }
        Some("RegularExpression") => regular_expression(&value["value"], &at, out),
        _ => {}
    }
}

/// Each parameter named once, and its regular expression one Envoy takes.
fn query_params(value: &Value, path: &FieldPath, out: &mut Violations) {
    let mut seen = Vec::new();
    for (i, param) in items(value).iter().enumerate() {
        if param["type"] == "RegularExpression" {
            regular_expression(&param["value"], &path.index(i).field("value"), out);
        }
        let name = param["name"].as_str().unwrap_or_default();
        if seen.contains(&name) {
            out.add(&path.index(i).field("name"), format!("multiple entries for name {name}"));
        }
        seen.push(name);
    }
}

/// A header may be named once across `set`, `add` and `remove`.
fn unique_header_names(value: &Value, path: &FieldPath, out: &mut Violations) {
    let mut seen = Vec::new();
    for list in ["set", "add", "remove"] {
        for (i, entry) in entries(value, list).iter().enumerate() {
            let (name, at) = match entry.as_str() {
                Some(name) => (name, path.field(list).index(i)),
                None => (entry["name"].as_str().unwrap_or_default(), path.field(list).index(i).field("name")),
            };
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                out.add(&at, format!("duplicate header name {name}"));
            }
            seen.push(name);
        }
    }
}

fn not_an_ip(value: &Value, path: &FieldPath, out: &mut Violations) {
    if value.as_str().is_some_and(|text| text.parse::<std::net::IpAddr>().is_ok()) {
        out.add(path, "cannot be an IP address");
    }
}

fn redirect_status(value: &Value, path: &FieldPath, out: &mut Violations) {
    if !matches!(value.as_i64(), Some(301 | 302 | 303 | 307 | 308)) {
        out.add(path, "must be one of 301, 302, 303, 307, 308");
    }
}

/// `replacePrefixMatch` replaces the matched prefix, so every match of the
/// rule has to be a path prefix match.
fn prefix_rewrites_need_prefix_matches(rule: &Value, path: &FieldPath, out: &mut Violations) {
    let all_prefix =
        entries(rule, "matches").iter().all(|m| m.pointer("/path/type").is_some_and(|t| t == "PathPrefix"));
    if all_prefix {
        return;
    }
    for (i, filter) in entries(&rule["default"], "filters").iter().enumerate() {
        for field in ["requestRedirect", "urlRewrite"] {
            if filter.pointer(&format!("/{field}/path/replacePrefixMatch")).is_some_and(|v| !v.is_null()) {
                let at = path
                    .field("default")
                    .field("filters")
                    .index(i)
                    .field(field)
                    .field("path")
                    .field("replacePrefixMatch");
                out.add(&at, "can only be used when every match of the rule is a PathPrefix match");
            }
        }
    }
}
