//! MeshFaultInjection: its conf and its effect on Envoy resources.
//!
//! Faults are injected by the proxy that receives the traffic: each fault of
//! the conf becomes one Envoy HTTP fault filter on the inbound's HTTP
//! connection manager, after RBAC and before the router ([`http_filters`]).
//! A `from` entry that covers only some callers (MeshService, MeshSubset,
//! MeshServiceSubset) restricts its faults to requests whose
//! [`TAGS_HEADER`] carries the callers' tags ([`inbound_http_filters`]).
//! That header is added by the caller's own proxy on its outbound HTTP
//! listeners ([`tags_header_filter`] with [`tags_header_value`]) and removed
//! by the receiving inbound's route before the request reaches the
//! application ([`strip_tags_header`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use envoy_types::pb::envoy::config::common::mutation_rules::v3::{HeaderMutation, header_mutation};
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption, header_value_option};
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, RouteConfiguration, header_matcher};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, FaultRateLimit, fault_delay, fault_rate_limit,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{FaultAbort, HttpFault, fault_abort};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{
    HeaderMutation as HeaderMutationFilter, Mutations,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{HttpFilter, http_filter};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use kodiak_api::dataplane_view::DataplaneView;
use kodiak_api::duration::parse_duration;
use kodiak_policy::rules::InboundRules;
use serde_json::Value;

use crate::envoy;

/// Envoy's name of the HTTP fault filter; every fault filter carries it.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// Envoy's name of the header mutation filter that adds [`TAGS_HEADER`].
pub const HEADER_MUTATION_FILTER: &str = "envoy.filters.http.header_mutation";
/// The request header that names the caller's tags, in the form of
/// [`tags_header_value`] (Kuma-compatible).
pub const TAGS_HEADER: &str = "x-kuma-tags";

/// The merged `default` of the MeshFaultInjection `from` entries covering
/// one inbound (and one set of callers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Conf {
    /// The HTTP faults, each injected independently, in order.
    pub http: Vec<Fault>,
}

/// One fault: any of an abort, a delay and a bandwidth limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Fault {
    pub abort: Option<Abort>,
    pub delay: Option<Delay>,
    pub response_bandwidth: Option<ResponseBandwidth>,
}

/// Answer the request with `http_status` instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Abort {
    pub http_status: u32,
    pub percentage: Percentage,
}

/// Hold the request for `value` before forwarding it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delay {
    pub value: Duration,
    pub percentage: Percentage,
}

/// Send the response body at no more than `limit_kbps` KiB per second.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResponseBandwidth {
    /// `100kbps` is 100, `5Mbps` 5000, `1Gbps` 1000000; Envoy reads the
    /// number as KiB (1024 bytes) per second.
    pub limit_kbps: u64,
    pub percentage: Percentage,
}

/// A share of requests, exact to a ten-thousandth of a percent: parts per
/// million (100% is 1000000). Finer decimals are rounded half up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Percentage {
    pub per_million: u32,
}

impl Percentage {
    pub const ALL: Percentage = Percentage { per_million: 1_000_000 };

    /// A percentage given as a JSON number or a decimal string (`50`,
    /// `12.5`, `"0.01"`), capped at 100%. None when it is neither.
    pub fn from_json(value: &Value) -> Option<Percentage> {
        match value {
            Value::Number(number) => Self::parse(&number.to_string()),
            Value::String(text) => Self::parse(text.trim()),
            _ => None,
        }
    }

    /// Parses a non-negative decimal (`12`, `12.5`, `.5`) without going
    /// through floating point.
    fn parse(text: &str) -> Option<Percentage> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
            return None;
        }
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok().filter(|w| *w <= 100)? };
        let mut per_million = whole * 10_000;
        let mut scale = 1_000;
        let mut fraction = fraction.bytes().map(|b| u64::from(b - b'0'));
        for digit in fraction.by_ref().take(4) {
            per_million += digit * scale;
            scale /= 10;
        }
        if fraction.next().is_some_and(|digit| digit >= 5) {
            per_million += 1;
        }
        Some(Percentage { per_million: u32::try_from(per_million.min(1_000_000)).unwrap_or(1_000_000) })
    }

    /// Envoy's form, with the coarsest denominator that keeps it exact.
    pub fn to_envoy(self) -> FractionalPercent {
        let (numerator, denominator) = match self.per_million {
            n if n % 10_000 == 0 => (n / 10_000, DenominatorType::Hundred),
            n if n % 100 == 0 => (n / 100, DenominatorType::TenThousand),
            n => (n, DenominatorType::Million),
        };
        FractionalPercent { numerator, denominator: denominator.into() }
    }
}

/// Reads a merged MeshFaultInjection `default`. Parts that do not read (a
/// missing percentage) or that Envoy refuses (an abort status below 200, a
/// zero delay or bandwidth) are left out; a fault left with nothing is
/// dropped.
pub fn read(conf: &Value) -> Conf {
    let faults = conf.get("http").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Conf { http: faults.iter().map(read_fault).filter(|fault| *fault != Fault::default()).collect() }
}

fn read_fault(fault: &Value) -> Fault {
    let percentage = |part: &Value| part.get("percentage").and_then(Percentage::from_json);
    let abort = fault.get("abort").and_then(|abort| {
        let http_status = abort.get("httpStatus")?.as_u64().filter(|status| (200..600).contains(status))?;
        Some(Abort { http_status: u32::try_from(http_status).ok()?, percentage: percentage(abort)? })
    });
    let delay = fault.get("delay").and_then(|delay| {
        let value = parse_duration(delay.get("value")?.as_str()?).ok().filter(|value| !value.is_zero())?;
        Some(Delay { value, percentage: percentage(delay)? })
    });
    let response_bandwidth = fault.get("responseBandwidth").and_then(|bandwidth| {
        let limit_kbps = bandwidth_kbps(bandwidth.get("limit")?.as_str()?).filter(|kbps| *kbps > 0)?;
        Some(ResponseBandwidth { limit_kbps, percentage: percentage(bandwidth)? })
    });
    Fault { abort, delay, response_bandwidth }
}

/// `100kbps`, `5Mbps`, `1Gbps` in kbps (a space before the unit is allowed).
fn bandwidth_kbps(text: &str) -> Option<u64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let factor = match unit.trim_start() {
        "kbps" => 1,
        "Mbps" => 1_000,
        "Gbps" => 1_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

/// The HTTP fault filters of `conf` for every caller. Apply to the HTTP
/// connection manager of each filter chain of the inbound listener (HTTP,
/// http2 and gRPC inbounds), after RBAC and before the router, in this order.
pub fn http_filters(conf: &Conf) -> Vec<HttpFilter> {
    fault_filters(conf, &[])
}

/// The tags a caller must all carry for a `from` entry (MeshSubset,
/// MeshService, MeshServiceSubset) to cover it.
pub type CallerTags = BTreeMap<String, String>;

/// The faults of one inbound when `from` entries pick callers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct InboundConf {
    /// For the callers no selector matches (the merge of `Mesh` entries).
    pub every_caller: Option<Conf>,
    /// Caller selectors, most specific first, each with the conf a caller
    /// gets when it is the first selector the caller matches.
    pub callers: Vec<(CallerTags, Conf)>,
}

/// Reads the MeshFaultInjection rules of one inbound as kodiak-policy
/// computes them (`conf` for every caller, `callers` by selector). Rules
/// entries with `matches` (SPIFFE ID, SNI) are not applied yet.
pub fn read_inbound(rules: &InboundRules) -> InboundConf {
    InboundConf {
        every_caller: rules.conf.as_ref().map(|merged| read(&merged.conf)),
        callers: rules.callers.iter().map(|caller| (caller.tags.clone(), read(&caller.conf.conf))).collect(),
    }
}

/// The HTTP fault filters of one inbound whose `from` entries pick callers
/// (see [`InboundConf`]). Apply like [`http_filters`]; with no selectors
/// they are the same.
///
/// Callers are told apart by [`TAGS_HEADER`], which callers' proxies add
/// ([`tags_header_filter`]); a request without it matches no selector. The
/// sets are disjoint: each selector's faults exclude the callers of the
/// selectors before it, and the every-caller faults exclude all selectors'
/// callers, so a request gets the faults of exactly one conf.
pub fn inbound_http_filters(conf: &InboundConf) -> Vec<HttpFilter> {
    let callers = &conf.callers;
    let not_earlier = |count: usize| -> Vec<HeaderMatcher> {
        callers[..count].iter().map(|(tags, _)| carries_all(tags, true)).collect()
    };
    let every_caller = conf.every_caller.as_ref();
    let mut filters = every_caller.map(|every| fault_filters(every, &not_earlier(callers.len()))).unwrap_or_default();
    for (i, (tags, conf)) in callers.iter().enumerate() {
        let mut headers = vec![carries_all(tags, false)];
        headers.extend(not_earlier(i));
        filters.extend(fault_filters(conf, &headers));
    }
    filters
}

/// One fault filter per fault of `conf`, each for the requests matching
/// every one of `headers`.
fn fault_filters(conf: &Conf, headers: &[HeaderMatcher]) -> Vec<HttpFilter> {
    conf.http
        .iter()
        .map(|fault| {
            let config = HttpFault {
                abort: fault.abort.as_ref().map(|abort| FaultAbort {
                    percentage: Some(abort.percentage.to_envoy()),
                    error_type: Some(fault_abort::ErrorType::HttpStatus(abort.http_status)),
                    ..Default::default()
                }),
                delay: fault.delay.as_ref().map(|delay| FaultDelay {
                    percentage: Some(delay.percentage.to_envoy()),
                    fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(envoy::duration(
                        delay.value,
                    ))),
                }),
                response_rate_limit: fault.response_bandwidth.as_ref().map(|bandwidth| FaultRateLimit {
                    percentage: Some(bandwidth.percentage.to_envoy()),
                    limit_type: Some(fault_rate_limit::LimitType::FixedLimit(fault_rate_limit::FixedLimit {
                        limit_kbps: bandwidth.limit_kbps,
                    })),
                }),
                headers: headers.to_vec(),
                ..Default::default()
            };
            http_filter(FAULT_FILTER, &config)
        })
        .collect()
}

fn http_filter<M: prost::Message + prost::Name>(name: &str, config: &M) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(envoy::any(config))),
        ..Default::default()
    }
}

/// A header matcher true when [`TAGS_HEADER`] names every one of `tags`
/// (among the values of each key), or, `negated`, when it does not (a
/// request without the header then matches: it carries no tags). The
/// header lists keys in sorted order, as a `BTreeMap` does, so one pattern
/// per key in that order matches them all.
fn carries_all(tags: &CallerTags, negated: bool) -> HeaderMatcher {
    let mut regex = String::from(".*");
    for (key, value) in tags {
        regex.push_str(&format!("&{}=([^&,]*,)*{}(,[^&,]*)*&.*", escape_regex(key), escape_regex(value)));
    }
    HeaderMatcher {
        name: TAGS_HEADER.to_owned(),
        invert_match: negated,
        treat_missing_header_as_empty: negated,
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher { regex, ..Default::default() })),
            ..Default::default()
        })),
    }
}

/// `text` with every RE2 special character escaped.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The [`TAGS_HEADER`] value naming `tags`: `&key=value1,value2&` per tag,
/// keys and values sorted (Kuma's form), e.g.
/// `&kuma.io/service=web&&version=v1,v2&`.
pub fn tags_header_value(tags: &BTreeMap<String, BTreeSet<String>>) -> String {
    tags.iter()
        .map(|(key, values)| format!("&{key}={}&", values.iter().map(String::as_str).collect::<Vec<_>>().join(",")))
        .collect()
}

/// The tags of a caller proxy for [`tags_header_value`]: every tag of every
/// inbound, with all the values it takes.
pub fn dataplane_tags(dataplane: &DataplaneView) -> BTreeMap<String, BTreeSet<String>> {
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for inbound in &dataplane.inbounds {
        for (key, value) in &inbound.tags {
            tags.entry(key.clone()).or_default().insert(value.clone());
        }
    }
    tags
}

/// The filter that makes a caller's requests carry its tags: it sets
/// [`TAGS_HEADER`] to `value` (see [`tags_header_value`]), replacing any
/// the application sent. It goes on the HTTP connection manager of every
/// outbound HTTP listener, before the router, in meshes where some
/// MeshFaultInjection picks callers by tags (elsewhere the header would
/// only cost bytes). The outbound listener is the proxy's own, so the
/// service's shared route stays shared.
pub fn tags_header_filter(value: &str) -> HttpFilter {
    let set = HeaderMutation {
        action: Some(header_mutation::Action::Append(HeaderValueOption {
            header: Some(HeaderValue { key: TAGS_HEADER.to_owned(), value: value.to_owned(), ..Default::default() }),
            append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
            ..Default::default()
        })),
    };
    let config = HeaderMutationFilter {
        mutations: Some(Mutations { request_mutations: vec![set], ..Default::default() }),
        ..Default::default()
    };
    http_filter(HEADER_MUTATION_FILTER, &config)
}

/// Keeps [`TAGS_HEADER`] from reaching the application: apply to the
/// inbound listener's route configuration. The router removes it, so the
/// fault filters before the router still see it.
pub fn strip_tags_header(route: &mut RouteConfiguration) {
    if !route.request_headers_to_remove.iter().any(|name| name == TAGS_HEADER) {
        route.request_headers_to_remove.push(TAGS_HEADER.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use serde_json::json;

    fn percent(text: &str) -> Option<u32> {
        Percentage::from_json(&json!(text)).map(|p| p.per_million)
    }

    #[test]
    fn percentages_are_exact_decimals() {
        assert_eq!(Percentage::from_json(&json!(50)).map(|p| p.per_million), Some(500_000));
        assert_eq!(Percentage::from_json(&json!(12.5)).map(|p| p.per_million), Some(125_000));
        assert_eq!(percent("0.01"), Some(100));
        assert_eq!(percent("0.0001"), Some(1));
        assert_eq!(percent("0.00005"), Some(1), "rounded half up");
        assert_eq!(percent("0.00004"), Some(0));
        assert_eq!(percent(".5"), Some(5_000));
        assert_eq!(percent("100"), Some(1_000_000));
        for bad in ["", ".", "-1", "1e2", "abc", "101", "1.2.3"] {
            assert_eq!(percent(bad), None, "{bad:?}");
        }
        assert_eq!(Percentage::from_json(&json!(true)), None);
    }

    #[test]
    fn envoy_percentages_use_the_coarsest_exact_denominator() {
        let envoy = |per_million| {
            let fraction = Percentage { per_million }.to_envoy();
            (fraction.numerator, DenominatorType::try_from(fraction.denominator).unwrap())
        };
        assert_eq!(envoy(500_000), (50, DenominatorType::Hundred));
        assert_eq!(envoy(125_000), (1250, DenominatorType::TenThousand));
        assert_eq!(envoy(1), (1, DenominatorType::Million));
    }

    #[test]
    fn reads_every_kind_of_fault() {
        let conf = read(&json!({"http": [
            {"abort": {"httpStatus": 503, "percentage": "12.5"},
             "delay": {"value": "1500ms", "percentage": 50},
             "responseBandwidth": {"limit": "5Mbps", "percentage": 100}},
            {"delay": {"value": "1s", "percentage": 10}}
        ]}));
        let expected = Conf {
            http: vec![
                Fault {
                    abort: Some(Abort { http_status: 503, percentage: Percentage { per_million: 125_000 } }),
                    delay: Some(Delay {
                        value: Duration::from_millis(1500),
                        percentage: Percentage { per_million: 500_000 },
                    }),
                    response_bandwidth: Some(ResponseBandwidth { limit_kbps: 5000, percentage: Percentage::ALL }),
                },
                Fault {
                    delay: Some(Delay {
                        value: Duration::from_secs(1),
                        percentage: Percentage { per_million: 100_000 },
                    }),
                    ..Default::default()
                },
            ],
        };
        assert_eq!(conf, expected);
    }

    #[test]
    fn reading_leaves_out_what_envoy_could_not_take() {
        let conf = read(&json!({"http": [
            {"abort": {"httpStatus": 150, "percentage": 10}},
            {"abort": {"httpStatus": 500}},
            {"responseBandwidth": {"limit": "5 parsecs", "percentage": 1}},
            {"responseBandwidth": {"limit": "0kbps", "percentage": 1}, "delay": {"value": "0s", "percentage": 1}},
            {"delay": {"value": "soon", "percentage": 1}, "abort": {"httpStatus": 429, "percentage": 1}}
        ]}));
        assert_eq!(conf.http.len(), 1, "{conf:?}");
        assert_eq!(conf.http[0].abort.as_ref().map(|a| a.http_status), Some(429));
        assert!(conf.http[0].delay.is_none());
        assert_eq!(read(&json!(null)), Conf::default());
        assert_eq!(read(&json!({"http": "no"})), Conf::default());
    }

    fn rendered(filters: &[HttpFilter]) -> Value {
        let manager = HttpConnectionManager { http_filters: filters.to_vec(), ..Default::default() };
        crate::render(&kodiak_xds_server::Resource::new("m", &manager))["httpFilters"].clone()
    }

    #[test]
    fn every_caller_gets_one_fault_filter_per_fault() {
        let conf = read(&json!({"http": [
            {"abort": {"httpStatus": 503, "percentage": 50}, "delay": {"value": "2s", "percentage": "0.5"}},
            {"responseBandwidth": {"limit": "100kbps", "percentage": 100}}
        ]}));
        let fault = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
        assert_eq!(
            rendered(&http_filters(&conf)),
            json!([
                {"name": FAULT_FILTER, "typedConfig": {"@type": fault,
                    "delay": {"fixedDelay": "2s", "percentage": {"numerator": 50, "denominator": "TEN_THOUSAND"}},
                    "abort": {"httpStatus": 503, "percentage": {"numerator": 50}}}},
                {"name": FAULT_FILTER, "typedConfig": {"@type": fault,
                    "responseRateLimit": {"fixedLimit": {"limitKbps": "100"}, "percentage": {"numerator": 100}}}}
            ])
        );
    }

    #[test]
    fn faults_for_some_callers_match_their_tags_header_and_exclude_earlier_selectors() {
        let abort = |status| read(&json!({"http": [{"abort": {"httpStatus": status, "percentage": 100}}]}));
        let tags = |pairs: &[(&str, &str)]| -> CallerTags {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let web_blue = tags(&[("kuma.io/service", "web.v1"), ("team", "blue")]);
        let blue = tags(&[("team", "blue")]);
        let filters = rendered(&inbound_http_filters(&InboundConf {
            every_caller: Some(abort(500)),
            callers: vec![(web_blue, abort(503)), (blue, abort(502))],
        }));
        let matcher = |regex: &str, negated: bool| {
            let mut matcher = json!({"name": "x-kuma-tags", "stringMatch": {"safeRegex": {"regex": regex}}});
            if negated {
                matcher["invertMatch"] = json!(true);
                matcher["treatMissingHeaderAsEmpty"] = json!(true);
            }
            matcher
        };
        let web_blue = ".*&kuma\\.io/service=([^&,]*,)*web\\.v1(,[^&,]*)*&.*&team=([^&,]*,)*blue(,[^&,]*)*&.*";
        let blue = ".*&team=([^&,]*,)*blue(,[^&,]*)*&.*";
        let summary: Vec<(Value, Value)> = filters
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["typedConfig"]["abort"]["httpStatus"].clone(), f["typedConfig"]["headers"].clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (json!(500), json!([matcher(web_blue, true), matcher(blue, true)])),
                (json!(503), json!([matcher(web_blue, false)])),
                (json!(502), json!([matcher(blue, false), matcher(web_blue, true)])),
            ]
        );
        // Without selectors, every caller's faults match every request.
        let every = rendered(&inbound_http_filters(&InboundConf { every_caller: Some(abort(500)), callers: vec![] }));
        assert_eq!(every[0]["typedConfig"].get("headers"), None);
        assert_eq!(inbound_http_filters(&InboundConf::default()), []);
    }

    #[test]
    fn reads_what_the_policy_engine_computes_for_an_inbound() {
        use crate::test_support::resource;
        use kodiak_api::ResourceType;
        let backend = resource(
            "{type: Dataplane, mesh: default, name: backend-1, networking: {address: 127.0.0.4, inbound: [
                {port: 10001, tags: {kuma.io/service: backend, kuma.io/protocol: http}}]}}",
        );
        let policies = [
            resource(
                "{type: MeshFaultInjection, mesh: default, name: everyone, spec: {targetRef: {kind: Mesh, proxyTypes: [Sidecar]}, from: [
                    {targetRef: {kind: Mesh}, default: {http: [{abort: {httpStatus: 500, percentage: 10}}]}}]}}",
            ),
            resource(
                "{type: MeshFaultInjection, mesh: default, name: delay-web, spec: {targetRef: {kind: Mesh, proxyTypes: [Sidecar]}, from: [
                    {targetRef: {kind: MeshService, name: web}, default: {http: [{delay: {value: 1s, percentage: 50}}]}}]}}",
            ),
        ];
        let rules =
            kodiak_policy::rules::proxy_rules(&backend, &kodiak_policy::rules::MeshPolicies::new("default", &policies));
        let inbound = read_inbound(&rules.types[&ResourceType::MeshFaultInjection].from[0]);
        let abort = Abort { http_status: 500, percentage: Percentage { per_million: 100_000 } };
        let delay = Delay { value: Duration::from_secs(1), percentage: Percentage { per_million: 500_000 } };
        assert_eq!(inbound.every_caller, Some(Conf { http: vec![Fault { abort: Some(abort), ..Default::default() }] }));
        assert_eq!(inbound.callers.len(), 1, "{inbound:?}");
        assert_eq!(inbound.callers[0].0, CallerTags::from([("kuma.io/service".to_owned(), "web".to_owned())]));
        assert_eq!(
            inbound.callers[0].1.http,
            [Fault { delay: Some(delay), ..Default::default() }],
            "lists are replaced"
        );
    }

    #[test]
    fn the_tags_header_names_every_value_of_every_tag() {
        let web = crate::test_support::dataplane(
            "{type: Dataplane, mesh: default, name: web-1, networking: {address: 127.0.0.2, inbound: [
                {port: 10001, tags: {kuma.io/service: web, version: v2}},
                {port: 10002, tags: {kuma.io/service: web-admin, version: v1}}]}}",
        );
        let tags = dataplane_tags(&web);
        assert_eq!(tags_header_value(&tags), "&kuma.io/service=web,web-admin&&version=v1,v2&");
        let filter = rendered(&[tags_header_filter(&tags_header_value(&tags))]);
        assert_eq!(
            filter[0]["typedConfig"]["mutations"]["requestMutations"],
            json!([{"append": {"header": {"key": "x-kuma-tags", "value": "&kuma.io/service=web,web-admin&&version=v1,v2&"},
                "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}}])
        );
    }

    #[test]
    fn the_inbound_route_strips_the_tags_header_once() {
        let mut route = RouteConfiguration::default();
        strip_tags_header(&mut route);
        strip_tags_header(&mut route);
        assert_eq!(route.request_headers_to_remove, [TAGS_HEADER]);
    }

    /// The example of the user docs is valid and reads as they say.
    #[test]
    fn the_documented_example_faults_the_inbound() {
        use crate::test_support::resource;
        use kodiak_api::ResourceType;
        let backend = resource(
            "{type: Dataplane, mesh: default, name: backend-1, networking: {address: 127.0.0.4, inbound: [
                {port: 10001, tags: {kuma.io/service: backend, kuma.io/protocol: http}}]}}",
        );
        let policy = resource(
            "
type: MeshFaultInjection
mesh: default
name: backend-faults
spec:
  targetRef:
    kind: MeshService
    name: backend
  from:
    - targetRef:
        kind: Mesh
      default:
        http:
          - abort:
              httpStatus: 503
              percentage: \"2.5\"
          - delay:
              value: 2s
              percentage: 10
    - targetRef:
        kind: MeshService
        name: web
      default:
        http:
          - responseBandwidth:
              limit: 100kbps
              percentage: 100
",
        );
        let rules =
            kodiak_policy::rules::proxy_rules(&backend, &kodiak_policy::rules::MeshPolicies::new("default", [&policy]));
        let inbound = read_inbound(&rules.types[&ResourceType::MeshFaultInjection].from[0]);
        let every = inbound.every_caller.as_ref().unwrap();
        assert_eq!(every.http.len(), 2);
        assert_eq!(
            every.http[0].abort,
            Some(Abort { http_status: 503, percentage: Percentage { per_million: 25_000 } })
        );
        let (tags, web) = &inbound.callers[0];
        assert_eq!(tags, &CallerTags::from([("kuma.io/service".to_owned(), "web".to_owned())]));
        assert_eq!(
            web.http[0].response_bandwidth,
            Some(ResponseBandwidth { limit_kbps: 100, percentage: Percentage::ALL })
        );
        assert_eq!(inbound_http_filters(&inbound).len(), 3);
    }
}
