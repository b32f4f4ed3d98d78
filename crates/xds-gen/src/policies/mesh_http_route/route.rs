//! One rule's match as Envoy routes: the route match, the action (send on
//! to weighted clusters, or redirect) and what the filters change.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RedirectAction, Route, RouteAction, RouteMatch, WeightedCluster,
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier, redirect_action,
    route, route_action, route_match, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::backends::BackendCluster;
use super::conf::{Filter, HeaderMatchKind, HeaderModifier, Match, PathMatchKind, PathRewrite, Redirect, UrlRewrite};

/// How an Envoy route's path condition relates to a PathPrefix match, which
/// decides how a prefix rewrite applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    /// The match is not a PathPrefix one: there is no prefix to replace.
    None,
    /// The route takes exactly the prefix (`/api`): the whole path is it.
    Whole,
    /// The route takes the prefix and a `/` (`/api/...`).
    Slash,
}

/// What one route does.
pub(super) struct Action<'a> {
    /// Where requests go, with weights; never empty.
    pub split: &'a [(BackendCluster, u32)],
    /// Where copies go, with the share mirrored in millionths.
    pub mirrors: &'a [(BackendCluster, u32)],
    pub filters: &'a [Filter],
}

/// The Envoy routes for requests fitting `m` (one, or two for a PathPrefix
/// other than `/`), named `name`.
pub(super) fn envoy_routes(name: &str, m: &Match, action: &Action) -> Vec<Route> {
    path_specifiers(m)
        .into_iter()
        .map(|(path, prefix)| {
            let r#match = RouteMatch {
                path_specifier: Some(path),
                headers: header_matchers(m),
                query_parameters: query_matchers(m),
                ..Default::default()
            };
            let mut route = Route {
                name: name.to_owned(),
                r#match: Some(r#match),
                action: Some(route::Action::Route(route_action(action, prefix))),
                ..Default::default()
            };
            for filter in action.filters {
                match filter {
                    Filter::RequestHeaderModifier(modifier) => {
                        route.request_headers_to_add.extend(header_options(modifier));
                        route.request_headers_to_remove.extend(removed(modifier));
                    }
                    Filter::ResponseHeaderModifier(modifier) => {
                        route.response_headers_to_add.extend(header_options(modifier));
                        route.response_headers_to_remove.extend(removed(modifier));
                    }
                    Filter::RequestRedirect(redirect) => {
                        route.action = Some(route::Action::Redirect(redirect_action(redirect, prefix)));
                    }
                    Filter::UrlRewrite(_) | Filter::RequestMirror(_) => {}
                }
            }
            route
        })
        .collect()
}

/// Envoy's path conditions for `m`. A PathPrefix matches whole segments
/// (`/api` takes `/api` and `/api/x`, not `/apix`), so it becomes an exact
/// path and a prefix ending in `/`; a prefix rewrite then replaces exactly
/// the matched segments in both.
fn path_specifiers(m: &Match) -> Vec<(route_match::PathSpecifier, Prefix)> {
    use route_match::PathSpecifier;
    let Some(path) = &m.path else {
        return vec![(PathSpecifier::Prefix("/".into()), Prefix::None)];
    };
    match path.kind {
        PathMatchKind::Exact => vec![(PathSpecifier::Path(path.value.clone()), Prefix::None)],
        PathMatchKind::RegularExpression => vec![(PathSpecifier::SafeRegex(regex(&path.value)), Prefix::None)],
        PathMatchKind::PathPrefix => {
            let trimmed = path.value.trim_end_matches('/');
            if trimmed.is_empty() {
                return vec![(PathSpecifier::Prefix("/".into()), Prefix::Slash)];
            }
            vec![
                (PathSpecifier::Path(trimmed.to_owned()), Prefix::Whole),
                (PathSpecifier::Prefix(format!("{trimmed}/")), Prefix::Slash),
            ]
        }
    }
}

fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher { regex: pattern.to_owned(), ..Default::default() }
}

fn string_matcher(pattern: MatchPattern) -> StringMatcher {
    StringMatcher { match_pattern: Some(pattern), ..Default::default() }
}

/// The method and header conditions; a header named twice counts once
/// (its first condition).
fn header_matchers(m: &Match) -> Vec<HeaderMatcher> {
    let mut matchers = Vec::new();
    if let Some(method) = &m.method {
        let exact = HeaderMatchSpecifier::StringMatch(string_matcher(MatchPattern::Exact(method.clone())));
        matchers.push(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(exact),
            ..Default::default()
        });
    }
    let mut seen: Vec<&str> = Vec::new();
    for header in &m.headers {
        if seen.contains(&header.name.as_str()) {
            continue;
        }
        seen.push(&header.name);
        let value = header.value.clone();
        let specifier = match header.kind.unwrap_or(HeaderMatchKind::Exact) {
            HeaderMatchKind::Exact => HeaderMatchSpecifier::StringMatch(string_matcher(MatchPattern::Exact(value))),
            HeaderMatchKind::RegularExpression => {
                HeaderMatchSpecifier::StringMatch(string_matcher(MatchPattern::SafeRegex(regex(&value))))
            }
            // Envoy refuses an empty prefix; every value starts with "".
            HeaderMatchKind::Prefix if value.is_empty() => HeaderMatchSpecifier::PresentMatch(true),
            HeaderMatchKind::Prefix => HeaderMatchSpecifier::StringMatch(string_matcher(MatchPattern::Prefix(value))),
            HeaderMatchKind::Present => HeaderMatchSpecifier::PresentMatch(true),
            HeaderMatchKind::Absent => HeaderMatchSpecifier::PresentMatch(false),
        };
        matchers.push(HeaderMatcher {
            name: header.name.clone(),
            header_match_specifier: Some(specifier),
            ..Default::default()
        });
    }
    matchers
}

/// The query parameter conditions; a name given twice counts once.
fn query_matchers(m: &Match) -> Vec<QueryParameterMatcher> {
    let mut seen: Vec<&str> = Vec::new();
    let mut matchers = Vec::new();
    for param in &m.query_params {
        if seen.contains(&param.name.as_str()) {
            continue;
        }
        seen.push(&param.name);
        let pattern = if param.regex {
            MatchPattern::SafeRegex(regex(&param.value))
        } else {
            MatchPattern::Exact(param.value.clone())
        };
        matchers.push(QueryParameterMatcher {
            name: param.name.clone(),
            query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::StringMatch(string_matcher(pattern))),
        });
    }
    matchers
}

/// Sends to the split, with the rule's rewrites and mirrors.
fn route_action(action: &Action, prefix: Prefix) -> RouteAction {
    let mut route_action =
        RouteAction { cluster_specifier: Some(cluster_specifier(action.split)), ..Default::default() };
    for filter in action.filters {
        match filter {
            Filter::UrlRewrite(rewrite) => apply_rewrite(rewrite, prefix, &mut route_action),
            // Envoy changes Host only as a host rewrite.
            Filter::RequestHeaderModifier(modifier) => {
                let host = modifier.set.iter().chain(&modifier.add).find(|(name, _)| name.eq_ignore_ascii_case("host"));
                if let Some((_, host)) = host {
                    route_action.host_rewrite_specifier =
                        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(host.clone()));
                }
            }
            _ => {}
        }
    }
    route_action.request_mirror_policies = action
        .mirrors
        .iter()
        .map(|(cluster, per_million)| route_action::RequestMirrorPolicy {
            cluster: cluster.name(),
            runtime_fraction: (*per_million < 1_000_000).then(|| RuntimeFractionalPercent {
                default_value: Some(fraction(*per_million)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    route_action
}

/// One cluster, or weighted clusters when the split has several.
fn cluster_specifier(split: &[(BackendCluster, u32)]) -> route_action::ClusterSpecifier {
    match split {
        [(cluster, _)] => route_action::ClusterSpecifier::Cluster(cluster.name()),
        _ => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: split
                .iter()
                .map(|(cluster, weight)| ClusterWeight {
                    name: cluster.name(),
                    weight: Some(UInt32Value { value: *weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    }
}

/// A share in millionths in the coarsest denominator that holds it exactly.
fn fraction(per_million: u32) -> FractionalPercent {
    let (numerator, denominator) = if per_million.is_multiple_of(10_000) {
        (per_million / 10_000, DenominatorType::Hundred)
    } else if per_million.is_multiple_of(100) {
        (per_million / 100, DenominatorType::TenThousand)
    } else {
        (per_million, DenominatorType::Million)
    };
    FractionalPercent { numerator, denominator: denominator.into() }
}

/// Replaces the whole path (the query string stays).
fn whole_path(path: &str) -> RegexMatchAndSubstitute {
    RegexMatchAndSubstitute { pattern: Some(regex(".*")), substitution: path.to_owned() }
}

/// What replaces the matched `prefix/` of a path: the new prefix, followed
/// by a `/` so the segments after it stay segments (`/api` to `/v2` turns
/// `/api/x` into `/v2/x`).
fn slash_prefix(replacement: &str) -> String {
    if replacement.ends_with('/') { replacement.to_owned() } else { format!("{replacement}/") }
}

fn apply_rewrite(rewrite: &UrlRewrite, prefix: Prefix, action: &mut RouteAction) {
    if let Some(hostname) = &rewrite.hostname {
        action.host_rewrite_specifier = Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(hostname.clone()));
    }
    if rewrite.host_to_backend_hostname {
        action.host_rewrite_specifier =
            Some(route_action::HostRewriteSpecifier::AutoHostRewrite(BoolValue { value: true }));
    }
    match (&rewrite.path, prefix) {
        (Some(PathRewrite::ReplaceFullPath(path)), _)
        | (Some(PathRewrite::ReplacePrefixMatch(path)), Prefix::Whole) => action.regex_rewrite = Some(whole_path(path)),
        (Some(PathRewrite::ReplacePrefixMatch(path)), Prefix::Slash) => action.prefix_rewrite = slash_prefix(path),
        _ => {}
    }
}

fn redirect_action(redirect: &Redirect, prefix: Prefix) -> RedirectAction {
    use redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier};
    let path_rewrite_specifier = match (&redirect.path, prefix) {
        (Some(PathRewrite::ReplaceFullPath(path)), _)
        | (Some(PathRewrite::ReplacePrefixMatch(path)), Prefix::Whole) => {
            Some(PathRewriteSpecifier::RegexRewrite(whole_path(path)))
        }
        (Some(PathRewrite::ReplacePrefixMatch(path)), Prefix::Slash) => {
            Some(PathRewriteSpecifier::PrefixRewrite(slash_prefix(path)))
        }
        _ => None,
    };
    let response_code = match redirect.status_code {
        301 => RedirectResponseCode::MovedPermanently,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::Found,
    };
    RedirectAction {
        host_redirect: redirect.hostname.clone().unwrap_or_default(),
        port_redirect: redirect.port.map_or(0, u32::from),
        response_code: response_code.into(),
        scheme_rewrite_specifier: redirect.scheme.clone().map(SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier,
        ..Default::default()
    }
}

/// Whether Envoy lets routes add or remove the header: not pseudo-headers
/// (`:path`), nor Host (a request's Host changes by a host rewrite instead),
/// which would make it refuse the whole route configuration.
fn modifiable(name: &str) -> bool {
    !name.starts_with(':') && !name.eq_ignore_ascii_case("host")
}

fn removed(modifier: &HeaderModifier) -> impl Iterator<Item = String> + '_ {
    modifier.remove.iter().filter(|name| modifiable(name)).cloned()
}

/// `set` overwrites a header, `add` appends a value to it.
fn header_options(modifier: &HeaderModifier) -> Vec<HeaderValueOption> {
    let option = |(name, value): &(String, String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue { key: name.clone(), value: value.clone(), ..Default::default() }),
        append_action: action.into(),
        ..Default::default()
    };
    let set = modifier.set.iter().map(|pair| (pair, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let add = modifier.add.iter().map(|pair| (pair, HeaderAppendAction::AppendIfExistsOrAdd));
    set.chain(add).filter(|((name, _), _)| modifiable(name)).map(|(pair, action)| option(pair, action)).collect()
}
