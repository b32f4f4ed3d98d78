//! MeshRateLimit: its conf and its effect on Envoy resources.
//!
//! Limits are local: each receiving proxy counts for itself, with a token
//! bucket of `num` tokens refilled every `interval`. HTTP requests past the
//! limit get a local reply (429 unless configured otherwise) from the HTTP
//! local rate-limit filter ([`http_filters`]); TCP connections past the
//! limit are closed at once by the network local rate-limit filter
//! ([`network_filters`]). Both sit on the inbound listener.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit as HttpLocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{HttpFilter, http_filter};
use envoy_types::pb::envoy::extensions::filters::network::local_ratelimit::v3::LocalRateLimit as TcpLocalRateLimit;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, HttpStatus, StatusCode, TokenBucket};
use envoy_types::pb::google::protobuf::UInt32Value;
use kodiak_api::duration::parse_duration;
use serde_json::Value;

use crate::envoy;

/// The name of the HTTP filter (Envoy's, and the one MeshProxyPatch
/// manifests written for Kuma look for).
pub const HTTP_FILTER: &str = "envoy.filters.http.local_ratelimit";
/// The name of the network filter (the one MeshProxyPatch manifests written
/// for Kuma look for).
pub const NETWORK_FILTER: &str = "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit";
/// The status of a limited request when the conf names none (Envoy's default too).
pub const DEFAULT_STATUS: u32 = 429;

/// The merged `default` of the MeshRateLimit entries for one inbound.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Conf {
    /// The limit on HTTP requests; None when there is none or it is disabled.
    pub http: Option<HttpLimit>,
    /// The limit on TCP connections; None when there is none or it is disabled.
    pub tcp: Option<Rate>,
}

/// `num` units (requests or connections) per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub num: u32,
    pub interval: Duration,
}

/// A limit on HTTP requests, and the reply to those past it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpLimit {
    pub rate: Rate,
    /// The status of a limited request; None means [`DEFAULT_STATUS`].
    pub status: Option<u32>,
    /// Response headers of a limited request that replace any of the same name.
    pub set_headers: Vec<(String, String)>,
    /// Response headers of a limited request added beside any of the same name.
    pub add_headers: Vec<(String, String)>,
}

/// Reads a merged MeshRateLimit `default`. A limit that is `disabled`, has
/// no rate, or whose rate does not read (or Envoy would refuse: no units, an
/// interval under 50ms) is left out.
pub fn read(conf: &Value) -> Conf {
    let local = conf.get("local");
    let http = local.and_then(|local| local.get("http")).filter(|http| !disabled(http)).and_then(|http| {
        let rate = rate(http.get("requestRate")?)?;
        let on_limit = http.get("onRateLimit");
        let headers = |list: &str| {
            let entries = on_limit.and_then(|on| on.get("headers")?.get(list)?.as_array().cloned());
            entries
                .unwrap_or_default()
                .iter()
                .filter_map(|header| {
                    Some((header.get("name")?.as_str()?.to_owned(), header.get("value")?.as_str()?.to_owned()))
                })
                .collect()
        };
        let status = on_limit.and_then(|on| on.get("status")?.as_u64()).and_then(|status| u32::try_from(status).ok());
        Some(HttpLimit { rate, status, set_headers: headers("set"), add_headers: headers("add") })
    });
    let tcp = local
        .and_then(|local| local.get("tcp"))
        .filter(|tcp| !disabled(tcp))
        .and_then(|tcp| rate(tcp.get("connectionRate")?));
    Conf { http, tcp }
}

fn disabled(limit: &Value) -> bool {
    limit.get("disabled").and_then(Value::as_bool).unwrap_or(false)
}

fn rate(rate: &Value) -> Option<Rate> {
    let num = u32::try_from(rate.get("num")?.as_u64()?).ok().filter(|num| *num > 0)?;
    // Envoy refuses to refill a bucket more often than every 50ms.
    let interval = parse_duration(rate.get("interval")?.as_str()?).ok().filter(|i| *i >= Duration::from_millis(50))?;
    Some(Rate { num, interval })
}

fn token_bucket(rate: Rate) -> TokenBucket {
    TokenBucket {
        max_tokens: rate.num,
        tokens_per_fill: Some(UInt32Value { value: rate.num }),
        fill_interval: Some(envoy::duration(rate.interval)),
    }
}

/// Always on: 100% of requests are counted and limited. The runtime keys let
/// an operator turn it down on one Envoy without the control plane.
fn everyone(runtime_key: &str) -> Option<RuntimeFractionalPercent> {
    Some(RuntimeFractionalPercent {
        default_value: Some(FractionalPercent { numerator: 100, ..Default::default() }),
        runtime_key: runtime_key.to_owned(),
    })
}

/// The HTTP local rate-limit filter of `conf` (none without an HTTP limit).
/// Apply to the HTTP connection manager of each filter chain of the inbound
/// listener (HTTP, http2 and gRPC inbounds), after RBAC and before the
/// router. Each filter chain has one bucket, shared by Envoy's workers: on
/// a PERMISSIVE inbound, plaintext and mesh mTLS callers are counted apart.
///
/// A status Envoy does not know (it takes only the codes of its
/// `envoy.type.v3.StatusCode`) falls back to [`DEFAULT_STATUS`].
pub fn http_filters(conf: &Conf) -> Vec<HttpFilter> {
    let Some(limit) = &conf.http else { return Vec::new() };
    let header = |(name, value): &(String, String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue { key: name.clone(), value: value.clone(), ..Default::default() }),
        append_action: action.into(),
        ..Default::default()
    };
    let headers = limit.set_headers.iter().map(|h| header(h, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let headers = headers.chain(limit.add_headers.iter().map(|h| header(h, HeaderAppendAction::AppendIfExistsOrAdd)));
    let status = limit
        .status
        .and_then(|code| StatusCode::try_from(i32::try_from(code).ok()?).ok())
        .filter(|code| *code != StatusCode::Empty)
        .map(|code| HttpStatus { code: code.into() });
    let config = HttpLocalRateLimit {
        stat_prefix: "rate_limit".to_owned(),
        status,
        token_bucket: Some(token_bucket(limit.rate)),
        filter_enabled: everyone("local_rate_limit_enabled"),
        filter_enforced: everyone("local_rate_limit_enforced"),
        response_headers_to_add: headers.collect(),
        ..Default::default()
    };
    vec![HttpFilter {
        name: HTTP_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(envoy::any(&config))),
        ..Default::default()
    }]
}

/// The network local rate-limit filter of `conf` (none without a TCP
/// limit). Apply to every filter chain of the inbound listener, HTTP ones
/// included (it counts connections), as the chain's first filter: before
/// RBAC, the HTTP connection manager and the TCP proxy. A connection past
/// the limit is closed before any byte is forwarded. As with HTTP, each
/// filter chain counts its own connections.
pub fn network_filters(conf: &Conf) -> Vec<Filter> {
    let Some(rate) = conf.tcp else { return Vec::new() };
    let config = TcpLocalRateLimit {
        stat_prefix: "tcp_rate_limit".to_owned(),
        token_bucket: Some(token_bucket(rate)),
        ..Default::default()
    };
    vec![envoy::filter(NETWORK_FILTER, &config)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::FilterChain;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use serde_json::json;

    #[test]
    fn reads_http_and_tcp_limits() {
        let conf = read(&json!({"local": {
            "http": {"requestRate": {"num": 5, "interval": "10s"},
                     "onRateLimit": {"status": 503, "headers": {
                         "set": [{"name": "x-limited", "value": "yes"}],
                         "add": [{"name": "x-why", "value": "a,b"}]}}},
            "tcp": {"connectionRate": {"num": 2, "interval": "1m"}}}}));
        assert_eq!(
            conf,
            Conf {
                http: Some(HttpLimit {
                    rate: Rate { num: 5, interval: Duration::from_secs(10) },
                    status: Some(503),
                    set_headers: vec![("x-limited".into(), "yes".into())],
                    add_headers: vec![("x-why".into(), "a,b".into())],
                }),
                tcp: Some(Rate { num: 2, interval: Duration::from_secs(60) }),
            }
        );
    }

    #[test]
    fn disabled_or_rateless_limits_are_left_out() {
        let off = read(&json!({"local": {
            "http": {"disabled": true, "requestRate": {"num": 5, "interval": "10s"}},
            "tcp": {"disabled": true, "connectionRate": {"num": 2, "interval": "1s"}}}}));
        assert_eq!(off, Conf::default());
        let rateless = read(&json!({"local": {"http": {"onRateLimit": {"status": 503}}, "tcp": {"disabled": false}}}));
        assert_eq!(rateless, Conf::default());
        let broken = read(&json!({"local": {"http": {"requestRate": {"num": 0, "interval": "1s"}},
            "tcp": {"connectionRate": {"num": 1, "interval": "often"}}}}));
        assert_eq!(broken, Conf::default());
        let too_often = read(&json!({"local": {"tcp": {"connectionRate": {"num": 1, "interval": "10ms"}}}}));
        assert_eq!(too_often, Conf::default());
        assert_eq!(read(&json!("nonsense")), Conf::default());
        assert!(http_filters(&off).is_empty() && network_filters(&off).is_empty());
    }

    #[test]
    fn the_http_filter_limits_every_request_with_the_configured_reply() {
        let conf = read(&json!({"local": {"http": {"requestRate": {"num": 5, "interval": "10s"},
            "onRateLimit": {"status": 503, "headers": {"set": [{"name": "x-limited", "value": "yes"}],
                "add": [{"name": "x-why", "value": "busy"}]}}}}}));
        let manager = HttpConnectionManager { http_filters: http_filters(&conf), ..Default::default() };
        let rendered = crate::render(&kodiak_xds_server::Resource::new("m", &manager));
        let percent = json!({"defaultValue": {"numerator": 100}, "runtimeKey": "local_rate_limit_enabled"});
        let enforced = json!({"defaultValue": {"numerator": 100}, "runtimeKey": "local_rate_limit_enforced"});
        assert_eq!(
            rendered["httpFilters"],
            json!([{"name": "envoy.filters.http.local_ratelimit", "typedConfig": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "statPrefix": "rate_limit",
            "status": {"code": "ServiceUnavailable"},
            "tokenBucket": {"maxTokens": 5, "tokensPerFill": 5, "fillInterval": "10s"},
            "filterEnabled": percent,
            "filterEnforced": enforced,
            "responseHeadersToAdd": [
                {"header": {"key": "x-limited", "value": "yes"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"},
                {"header": {"key": "x-why", "value": "busy"}}
            ]}}])
        );
    }

    #[test]
    fn a_status_envoy_does_not_know_falls_back_to_429() {
        for status in [299u64, 0, 4_000_000_000] {
            let conf = read(&json!({"local": {"http": {"requestRate": {"num": 1, "interval": "1s"},
                "onRateLimit": {"status": status}}}}));
            let manager = HttpConnectionManager { http_filters: http_filters(&conf), ..Default::default() };
            let rendered = crate::render(&kodiak_xds_server::Resource::new("m", &manager));
            assert_eq!(rendered["httpFilters"][0]["typedConfig"].get("status"), None, "{status}");
        }
    }

    #[test]
    fn the_network_filter_is_a_connection_token_bucket() {
        let conf = read(&json!({"local": {"tcp": {"connectionRate": {"num": 2, "interval": "1500ms"}}}}));
        let chain = FilterChain { filters: network_filters(&conf), ..Default::default() };
        let listener =
            envoy_types::pb::envoy::config::listener::v3::Listener { filter_chains: vec![chain], ..Default::default() };
        let rendered = crate::render(&kodiak_xds_server::Resource::new("l", &listener));
        assert_eq!(
            rendered["filterChains"][0]["filters"],
            json!([{"name": NETWORK_FILTER, "typedConfig": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
                "statPrefix": "tcp_rate_limit",
                "tokenBucket": {"maxTokens": 2, "tokensPerFill": 2, "fillInterval": "1.500s"}}}])
        );
    }

    /// The example of the user docs is valid and reads as they say.
    #[test]
    fn the_documented_example_limits_the_inbound() {
        use crate::test_support::resource;
        use kodiak_api::ResourceType;
        let backend = resource(
            "{type: Dataplane, mesh: default, name: backend-1, networking: {address: 127.0.0.4, inbound: [
                {port: 10001, tags: {kuma.io/service: backend, kuma.io/protocol: http}}]}}",
        );
        let policy = resource(
            "
type: MeshRateLimit
mesh: default
name: backend-rate-limit
spec:
  targetRef:
    kind: MeshService
    name: backend
  from:
    - targetRef:
        kind: Mesh
      default:
        local:
          http:
            requestRate:
              num: 100
              interval: 10s
            onRateLimit:
              status: 429
              headers:
                set:
                  - name: x-kodiak-rate-limited
                    value: \"true\"
          tcp:
            connectionRate:
              num: 20
              interval: 1s
",
        );
        let rules =
            kodiak_policy::rules::proxy_rules(&backend, &kodiak_policy::rules::MeshPolicies::new("default", [&policy]));
        let merged = rules.types[&ResourceType::MeshRateLimit].from[0].conf.as_ref().unwrap();
        let conf = read(&merged.conf);
        let http = conf.http.as_ref().unwrap();
        assert_eq!(http.rate, Rate { num: 100, interval: Duration::from_secs(10) });
        assert_eq!(http.set_headers, [("x-kodiak-rate-limited".to_owned(), "true".to_owned())]);
        assert_eq!(conf.tcp, Some(Rate { num: 20, interval: Duration::from_secs(1) }));
    }
}
