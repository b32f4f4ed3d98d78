//! MeshRetry: how a proxy retries what failed toward a destination. HTTP
//! (http and http2 services) and gRPC requests get a route retry policy;
//! TCP connections get more attempts to connect.

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, RetryPolicy, RouteAction, retry_policy};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::retry::host::omit_host_metadata::v3::OmitHostMetadataConfig;
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use kodiak_api::dataplane_view::Protocol;
use prost::encoding;
use serde_json::Value;

use super::header_match::HeaderMatch;
use crate::envoy;

/// What an HTTP retry policy retries on when the conf names nothing.
const HTTP_RETRY_ON_DEFAULT: &str = "gateway-error,connect-failure,refused-stream";
/// What a gRPC retry policy retries on when the conf names nothing.
const GRPC_RETRY_ON_DEFAULT: &str =
    "cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable";
/// The first back-off interval of gRPC retries with a back-off but no base interval.
const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);

/// A merged MeshRetry conf.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Conf {
    /// `tcp.maxConnectAttempt`.
    pub tcp_max_connect_attempt: Option<u32>,
    pub http: Option<Retries>,
    pub grpc: Option<Retries>,
}

/// The `http` or `grpc` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Retries {
    /// Zero turns retries off.
    pub num_retries: Option<u32>,
    pub per_try_timeout: Option<Duration>,
    /// `backOff`: (baseInterval, maxInterval), when set.
    pub back_off: Option<(Option<Duration>, Option<Duration>)>,
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    /// `retryOn` as written (`5xx`, `GatewayError`, `503`, `HttpMethodGet`, `Unavailable`, ...).
    pub retry_on: Option<Vec<String>>,
    pub retriable_response_headers: Vec<HeaderMatch>,
    pub retriable_request_headers: Vec<HeaderMatch>,
    pub host_selection: Vec<Predicate>,
    pub host_selection_max_attempts: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RateLimitedBackOff {
    /// (header name, `Seconds` or `UnixTimestamp`).
    pub reset_headers: Vec<(String, String)>,
    pub max_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Predicate {
    OmitPreviousHosts,
    OmitHostsWithTags(Vec<(String, String)>),
    OmitPreviousPriorities(i32),
}

/// Reads a merged MeshRetry `default`.
pub fn read(conf: &Value) -> Conf {
    Conf {
        tcp_max_connect_attempt: conf
            .pointer("/tcp/maxConnectAttempt")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        http: conf.get("http").filter(|v| v.is_object()).map(read_retries),
        grpc: conf.get("grpc").filter(|v| v.is_object()).map(read_retries),
    }
}

fn duration(value: Option<&Value>) -> Option<Duration> {
    value.and_then(Value::as_str).and_then(|text| kodiak_api::duration::parse_duration(text).ok())
}

fn read_retries(section: &Value) -> Retries {
    let strings = |value: Option<&Value>| -> Option<Vec<String>> {
        Some(value?.as_array()?.iter().filter_map(|item| Some(item.as_str()?.to_owned())).collect())
    };
    Retries {
        num_retries: section.get("numRetries").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()),
        per_try_timeout: duration(section.get("perTryTimeout")),
        back_off: section
            .get("backOff")
            .filter(|v| v.is_object())
            .map(|back_off| (duration(back_off.get("baseInterval")), duration(back_off.get("maxInterval")))),
        rate_limited_back_off: section.get("rateLimitedBackOff").filter(|v| v.is_object()).map(|back_off| {
            RateLimitedBackOff {
                reset_headers: back_off
                    .get("resetHeaders")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|header| {
                        Some((header.get("name")?.as_str()?.to_owned(), header.get("format")?.as_str()?.to_owned()))
                    })
                    .collect(),
                max_interval: duration(back_off.get("maxInterval")),
            }
        }),
        retry_on: strings(section.get("retryOn")),
        retriable_response_headers: HeaderMatch::read_list(section.get("retriableResponseHeaders")),
        retriable_request_headers: HeaderMatch::read_list(section.get("retriableRequestHeaders")),
        host_selection: section
            .get("hostSelection")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(read_predicate)
            .collect(),
        host_selection_max_attempts: section.get("hostSelectionMaxAttempts").and_then(Value::as_i64),
    }
}

fn read_predicate(predicate: &Value) -> Option<Predicate> {
    Some(match predicate.get("predicate")?.as_str()? {
        "OmitPreviousHosts" => Predicate::OmitPreviousHosts,
        "OmitHostsWithTags" => Predicate::OmitHostsWithTags(
            predicate
                .get("tags")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect(),
        ),
        "OmitPreviousPriorities" => Predicate::OmitPreviousPriorities(
            predicate.get("updateFrequency").and_then(Value::as_i64).and_then(|n| i32::try_from(n).ok()).unwrap_or(0),
        ),
        _ => return None,
    })
}

/// Sets the retry policy of a route to the destination (each route of its
/// outbound route configuration): the `http` section for http and http2
/// services, `grpc` for gRPC ones. Nothing changes without that section or
/// with `numRetries: 0`.
pub fn apply_to_route(conf: &Conf, protocol: Protocol, action: &mut RouteAction) {
    if let Some(policy) = retry_policy(conf, protocol) {
        action.retry_policy = Some(policy);
    }
}

/// Sets how often a TCP outbound listener tries to connect.
pub fn apply_to_tcp_proxy(conf: &Conf, proxy: &mut TcpProxy) {
    if let Some(attempts) = conf.tcp_max_connect_attempt {
        proxy.max_connect_attempts = Some(UInt32Value { value: attempts });
    }
}

/// The route retry policy for a destination speaking `protocol`.
pub fn retry_policy(conf: &Conf, protocol: Protocol) -> Option<RetryPolicy> {
    let (section, grpc) = match protocol {
        Protocol::Http | Protocol::Http2 => (conf.http.as_ref()?, false),
        Protocol::Grpc => (conf.grpc.as_ref()?, true),
        Protocol::Tcp => return None,
    };
    if section.num_retries == Some(0) {
        return None;
    }
    let mut policy = RetryPolicy {
        retry_on: (if grpc { GRPC_RETRY_ON_DEFAULT } else { HTTP_RETRY_ON_DEFAULT }).to_owned(),
        num_retries: section.num_retries.map(|value| UInt32Value { value }),
        per_try_timeout: section.per_try_timeout.map(envoy::duration),
        retry_back_off: section.back_off.map(|(base, max)| retry_policy::RetryBackOff {
            // Envoy needs a base once there is a back-off (Kuma's default, 25ms).
            base_interval: Some(envoy::duration(base.unwrap_or(DEFAULT_BASE_INTERVAL))),
            // Envoy refuses a ceiling under the base, which merging one
            // policy's base with another's ceiling can make; without one,
            // its ceiling is ten times the base.
            max_interval: max.filter(|max| *max >= base.unwrap_or(DEFAULT_BASE_INTERVAL)).map(envoy::duration),
        }),
        rate_limited_retry_back_off: section.rate_limited_back_off.as_ref().map(rate_limited),
        retriable_headers: section.retriable_response_headers.iter().map(HeaderMatch::matcher).collect(),
        retriable_request_headers: section.retriable_request_headers.iter().map(HeaderMatch::matcher).collect(),
        host_selection_retry_max_attempts: section.host_selection_max_attempts.unwrap_or_default(),
        ..Default::default()
    };
    let (retry_on, codes, methods) = split_retry_on(section.retry_on.as_deref().unwrap_or_default(), grpc);
    if !retry_on.is_empty() {
        policy.retry_on = retry_on.join(",");
    }
    if !codes.is_empty() {
        policy.retriable_status_codes = codes;
        if !policy.retry_on.split(',').any(|item| item == "retriable-status-codes") {
            policy.retry_on.push_str(",retriable-status-codes");
        }
    }
    policy.retriable_request_headers.splice(0..0, methods.into_iter().map(method_matcher));
    for predicate in &section.host_selection {
        match predicate {
            Predicate::OmitPreviousHosts => policy.retry_host_predicate.push(retry_policy::RetryHostPredicate {
                name: "envoy.retry_host_predicates.previous_hosts".into(),
                config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(envoy::any(
                    &PreviousHostsPredicate::default(),
                ))),
            }),
            Predicate::OmitHostsWithTags(tags) => policy.retry_host_predicate.push(retry_policy::RetryHostPredicate {
                name: "envoy.retry_host_predicates.omit_host_metadata".into(),
                config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(omit_hosts_with_tags(
                    tags,
                ))),
            }),
            Predicate::OmitPreviousPriorities(update_frequency) => {
                policy.retry_priority = Some(retry_policy::RetryPriority {
                    name: "envoy.retry_priorities.previous_priorities".into(),
                    config_type: Some(retry_policy::retry_priority::ConfigType::TypedConfig(envoy::any(
                        &PreviousPrioritiesConfig { update_frequency: *update_frequency },
                    ))),
                })
            }
        }
    }
    Some(policy)
}

/// Splits `retryOn` into Envoy's conditions, retriable status codes and
/// retriable methods.
fn split_retry_on(items: &[String], grpc: bool) -> (Vec<String>, Vec<u32>, Vec<String>) {
    let (mut conditions, mut codes, mut methods) = (Vec::new(), Vec::new(), Vec::new());
    for item in items {
        if let Ok(code) = item.parse::<u32>() {
            codes.push(code);
        } else if let Some(method) = item.strip_prefix("HttpMethod").filter(|_| !grpc) {
            methods.push(method.to_ascii_uppercase());
        } else {
            conditions.push(condition(item).to_owned());
        }
    }
    (conditions, codes, methods)
}

/// Envoy's name of a named retry condition.
fn condition(name: &str) -> &str {
    match name {
        "GatewayError" => "gateway-error",
        "Reset" => "reset",
        "Retriable4xx" => "retriable-4xx",
        "ConnectFailure" => "connect-failure",
        "EnvoyRatelimited" => "envoy-ratelimited",
        "RefusedStream" => "refused-stream",
        "Http3PostConnectFailure" => "http3-post-connect-failure",
        "Canceled" => "cancelled",
        "DeadlineExceeded" => "deadline-exceeded",
        "Internal" => "internal",
        "ResourceExhausted" => "resource-exhausted",
        "Unavailable" => "unavailable",
        other => other,
    }
}

fn method_matcher(method: String) -> HeaderMatcher {
    HeaderMatcher {
        name: ":method".into(),
        header_match_specifier: Some(
            envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(method)),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

fn rate_limited(back_off: &RateLimitedBackOff) -> retry_policy::RateLimitedRetryBackOff {
    retry_policy::RateLimitedRetryBackOff {
        reset_headers: back_off
            .reset_headers
            .iter()
            .map(|(name, format)| retry_policy::ResetHeader {
                name: name.clone(),
                format: match format.as_str() {
                    "UnixTimestamp" => retry_policy::ResetHeaderFormat::UnixTimestamp,
                    _ => retry_policy::ResetHeaderFormat::Seconds,
                }
                .into(),
            })
            .collect(),
        max_interval: back_off.max_interval.map(envoy::duration),
    }
}

/// The `OmitHostMetadataConfig` that skips hosts whose metadata under
/// Envoy's load-balancing key (`envoy.lb`) has `tags`. Encoded by hand in
/// key order: the tags are a protobuf `Struct`, a map prost encodes in no
/// fixed order, which would give the route a new version on every build.
fn omit_hosts_with_tags(tags: &[(String, String)]) -> Any {
    let sorted: BTreeMap<&String, &String> = tags.iter().map(|(key, text)| (key, text)).collect();
    let mut fields = Vec::new();
    for (key, text) in sorted {
        let mut value = Vec::new();
        encoding::string::encode(3, text, &mut value); // Value.string_value
        let mut entry = Vec::new();
        encoding::string::encode(1, key, &mut entry);
        encoding::bytes::encode(2, &value, &mut entry);
        encoding::bytes::encode(1, &entry, &mut fields); // Struct.fields
    }
    let mut filter = Vec::new();
    encoding::string::encode(1, &"envoy.lb".to_owned(), &mut filter);
    encoding::bytes::encode(2, &fields, &mut filter);
    let mut metadata = Vec::new();
    encoding::bytes::encode(1, &filter, &mut metadata); // Metadata.filter_metadata
    let mut value = Vec::new();
    encoding::bytes::encode(1, &metadata, &mut value); // OmitHostMetadataConfig.metadata_match
    Any { type_url: <OmitHostMetadataConfig as prost::Name>::type_url(), value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kodiak_xds_server::Resource;
    use serde_json::json;

    fn policy(conf: Value, protocol: Protocol) -> Value {
        let mut action = RouteAction::default();
        apply_to_route(&read(&conf), protocol, &mut action);
        crate::render(&Resource::new("x", &action))
    }

    #[test]
    fn http_retries_name_their_conditions_codes_and_methods() {
        let rendered = policy(
            json!({"http": {"numRetries": 3, "perTryTimeout": "2s", "backOff": {"baseInterval": "10ms", "maxInterval": "1s"},
                "retryOn": ["5xx", "GatewayError", "503", "HttpMethodGet"],
                "retriableResponseHeaders": [{"name": "x-retry", "type": "Present"}]}}),
            Protocol::Http,
        );
        assert_eq!(
            rendered["retryPolicy"],
            json!({
                "retryOn": "5xx,gateway-error,retriable-status-codes",
                "numRetries": 3,
                "perTryTimeout": "2s",
                "retryBackOff": {"baseInterval": "0.010s", "maxInterval": "1s"},
                "retriableStatusCodes": [503],
                "retriableHeaders": [{"name": "x-retry", "presentMatch": true}],
                "retriableRequestHeaders": [{"name": ":method", "stringMatch": {"exact": "GET"}}],
            })
        );
    }

    #[test]
    fn defaults_follow_the_protocol_and_zero_retries_turns_them_off() {
        let conf = json!({"http": {"numRetries": 2}, "grpc": {"backOff": {"maxInterval": "1s"}}});
        assert_eq!(
            policy(conf.clone(), Protocol::Http2)["retryPolicy"],
            json!({"retryOn": HTTP_RETRY_ON_DEFAULT, "numRetries": 2})
        );
        assert_eq!(
            policy(conf.clone(), Protocol::Grpc)["retryPolicy"],
            json!({"retryOn": GRPC_RETRY_ON_DEFAULT, "retryBackOff": {"baseInterval": "0.025s", "maxInterval": "1s"}})
        );
        assert_eq!(policy(conf, Protocol::Tcp), json!({}));
        assert_eq!(policy(json!({"http": {"numRetries": 0}}), Protocol::Http), json!({}));
        assert_eq!(policy(json!({"grpc": {"numRetries": 1}}), Protocol::Http), json!({}));
    }

    /// The encoded route action under `conf`.
    fn policy_bytes(conf: &Value) -> Vec<u8> {
        use prost::Message;
        let mut action = RouteAction::default();
        apply_to_route(&read(conf), Protocol::Http, &mut action);
        action.encode_to_vec()
    }

    #[test]
    fn a_merged_ceiling_under_the_base_is_left_to_envoy() {
        // A user's base of 1s laid over the default ceiling of 250ms.
        let merged = json!({"http": {"backOff": {"baseInterval": "1s", "maxInterval": "250ms"}}});
        assert_eq!(policy(merged, Protocol::Http)["retryPolicy"]["retryBackOff"], json!({"baseInterval": "1s"}));
        let unset_base = json!({"http": {"backOff": {"maxInterval": "10ms"}}});
        assert_eq!(
            policy(unset_base, Protocol::Http)["retryPolicy"]["retryBackOff"],
            json!({"baseInterval": "0.025s"})
        );
        let fine = json!({"http": {"backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}}});
        assert_eq!(
            policy(fine, Protocol::Http)["retryPolicy"]["retryBackOff"],
            json!({"baseInterval": "0.025s", "maxInterval": "0.250s"})
        );
    }

    #[test]
    fn hosts_to_omit_by_several_tags_encode_the_same_every_time() {
        let several = json!({"http": {"hostSelection": [
            {"predicate": "OmitHostsWithTags", "tags": {"version": "v1", "zone": "a", "team": "blue", "tier": "x"}}]}});
        let (once, again) = (policy_bytes(&several), policy_bytes(&several));
        assert_eq!(once, again, "the same tags encode the same bytes every time");
        assert_eq!(
            policy(several, Protocol::Http)["retryPolicy"]["retryHostPredicate"][0]["typedConfig"]["metadataMatch"],
            json!({"filterMetadata": {"envoy.lb": {"team": "blue", "tier": "x", "version": "v1", "zone": "a"}}})
        );
    }

    #[test]
    fn host_selection_and_rate_limited_back_off() {
        let rendered = policy(
            json!({"http": {"hostSelection": [{"predicate": "OmitPreviousHosts"},
                    {"predicate": "OmitHostsWithTags", "tags": {"version": "v1"}},
                    {"predicate": "OmitPreviousPriorities", "updateFrequency": 2}],
                "hostSelectionMaxAttempts": 4,
                "rateLimitedBackOff": {"resetHeaders": [{"name": "retry-after", "format": "Seconds"}], "maxInterval": "30s"}}}),
            Protocol::Http,
        );
        let policy = &rendered["retryPolicy"];
        assert_eq!(policy["retryHostPredicate"][0]["name"], "envoy.retry_host_predicates.previous_hosts");
        assert_eq!(
            policy["retryHostPredicate"][1]["typedConfig"]["metadataMatch"],
            json!({"filterMetadata": {"envoy.lb": {"version": "v1"}}})
        );
        assert_eq!(policy["retryPriority"]["typedConfig"]["updateFrequency"], 2);
        assert_eq!(policy["hostSelectionRetryMaxAttempts"], "4");
        assert_eq!(
            policy["rateLimitedRetryBackOff"],
            json!({"resetHeaders": [{"name": "retry-after"}], "maxInterval": "30s"})
        );
    }

    #[test]
    fn tcp_gets_more_connect_attempts() {
        let mut proxy = TcpProxy::default();
        apply_to_tcp_proxy(&read(&json!({"tcp": {"maxConnectAttempt": 5}})), &mut proxy);
        assert_eq!(crate::render(&Resource::new("x", &proxy))["maxConnectAttempts"], 5);
    }
}
