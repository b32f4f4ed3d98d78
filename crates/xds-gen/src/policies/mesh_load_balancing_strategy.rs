//! MeshLoadBalancingStrategy: its conf and its effect on Envoy resources.
//!
//! `loadBalancer` picks the algorithm of the outbound service cluster;
//! `hashPolicies` (or, deprecated, those under `ringHash`/`maglev`) say what
//! of a request the consistent-hashing algorithms hash, on the outbound
//! route. `localityAwareness` is accepted and has no effect: Kodiak runs a
//! single zone, where every endpoint is local.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    LbConfig, LbPolicy, LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig, ring_hash_lb_config,
};
use envoy_types::pb::envoy::config::core::v3::RuntimeDouble;
use envoy_types::pb::envoy::config::route::v3::RouteAction;
use envoy_types::pb::envoy::config::route::v3::route_action::HashPolicy as EnvoyHashPolicy;
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::{self, PolicySpecifier};
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};
use serde_json::Value;

use super::mesh_circuit_breaker::{Decimal, boolean, duration, object, string, uint32};
use crate::envoy;

/// The typed reading of a merged MeshLoadBalancingStrategy `default`
/// (`localityAwareness` is not read: it has no effect in a single zone, and
/// leaving it out keeps callers that differ only there sharing resources).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Conf {
    /// `None`: Envoy's default, round robin.
    pub load_balancer: Option<LoadBalancer>,
    /// The top-level `hashPolicies`; when set they replace those under the
    /// load balancer.
    pub hash_policies: Option<Vec<HashPolicy>>,
}

/// The algorithm, with its section of the conf when the manifest has one
/// (a section of another algorithm, left over from a merge, is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoadBalancer {
    RoundRobin,
    LeastRequest(Option<LeastRequest>),
    RingHash(Option<RingHash>),
    Random,
    Maglev(Option<Maglev>),
}

/// Least request: the fewest active requests among `choice_count` random
/// endpoints (Envoy: 2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LeastRequest {
    pub choice_count: Option<u32>,
    pub active_request_bias: Option<Decimal>,
}

/// Ring hash (Envoy: XXHash, ring of 1024 to 8M entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RingHash {
    pub hash_function: Option<HashFunction>,
    pub min_ring_size: Option<u32>,
    pub max_ring_size: Option<u32>,
    /// Deprecated place for the conf's `hashPolicies`.
    pub hash_policies: Option<Vec<HashPolicy>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFunction {
    XxHash,
    MurmurHash2,
}

/// Maglev (Envoy: a table of 65537 entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Maglev {
    pub table_size: Option<u32>,
    /// Deprecated place for the conf's `hashPolicies`.
    pub hash_policies: Option<Vec<HashPolicy>>,
}

/// One thing a request is hashed on; with `terminal`, a hash found here
/// ends the list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashPolicy {
    pub terminal: bool,
    pub key: HashKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashKey {
    Header {
        name: String,
    },
    /// With a `ttl`, Envoy sets the cookie on answers to requests without it.
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: Option<String>,
    },
    /// Type `Connection` (or its deprecated name `SourceIP`): the caller's
    /// address when `source_ip`.
    Connection {
        source_ip: bool,
    },
    QueryParameter {
        name: String,
    },
    FilterState {
        key: String,
    },
}

/// Reads a merged `default` object leniently: an unknown `loadBalancer.type`
/// means no load balancer, a hash policy without its own section is skipped.
pub fn read(conf: &Value) -> Conf {
    Conf { load_balancer: object(conf, "loadBalancer").and_then(read_load_balancer), hash_policies: policies(conf) }
}

fn read_load_balancer(lb: &Value) -> Option<LoadBalancer> {
    let balancer = match lb.get("type").and_then(Value::as_str)? {
        "RoundRobin" => LoadBalancer::RoundRobin,
        "Random" => LoadBalancer::Random,
        "LeastRequest" => LoadBalancer::LeastRequest(object(lb, "leastRequest").map(|least| LeastRequest {
            choice_count: uint32(least, "choiceCount"),
            active_request_bias: Decimal::read(least, "activeRequestBias"),
        })),
        "RingHash" => LoadBalancer::RingHash(object(lb, "ringHash").map(|ring| RingHash {
            hash_function: match ring.get("hashFunction").and_then(Value::as_str) {
                Some("XXHash") => Some(HashFunction::XxHash),
                Some("MurmurHash2") => Some(HashFunction::MurmurHash2),
                _ => None,
            },
            min_ring_size: uint32(ring, "minRingSize"),
            max_ring_size: uint32(ring, "maxRingSize"),
            hash_policies: policies(ring),
        })),
        "Maglev" => LoadBalancer::Maglev(
            object(lb, "maglev")
                .map(|maglev| Maglev { table_size: uint32(maglev, "tableSize"), hash_policies: policies(maglev) }),
        ),
        _ => return None,
    };
    Some(balancer)
}

/// The `hashPolicies` list of `parent`, if it has one.
fn policies(parent: &Value) -> Option<Vec<HashPolicy>> {
    let list = parent.get("hashPolicies")?.as_array()?;
    Some(list.iter().filter_map(read_hash_policy).collect())
}

fn read_hash_policy(policy: &Value) -> Option<HashPolicy> {
    let named = |section: &str, field: &str| object(policy, section).and_then(|section| string(section, field));
    let key = match policy.get("type")?.as_str()? {
        "Header" => HashKey::Header { name: named("header", "name")? },
        "Cookie" => {
            let cookie = object(policy, "cookie")?;
            HashKey::Cookie {
                name: string(cookie, "name")?,
                ttl: duration(cookie, "ttl"),
                path: string(cookie, "path"),
            }
        }
        "Connection" | "SourceIP" => {
            HashKey::Connection { source_ip: boolean(object(policy, "connection")?, "sourceIP").unwrap_or(false) }
        }
        "QueryParameter" => HashKey::QueryParameter { name: named("queryParameter", "name")? },
        "FilterState" => HashKey::FilterState { key: named("filterState", "key")? },
        _ => return None,
    };
    Some(HashPolicy { terminal: boolean(policy, "terminal").unwrap_or(false), key })
}

/// The hash policies in effect: the top-level ones, else those of the ring
/// hash or maglev section of the chosen algorithm.
pub fn hash_policies(conf: &Conf) -> Option<&[HashPolicy]> {
    if let Some(policies) = &conf.hash_policies {
        return Some(policies);
    }
    match conf.load_balancer.as_ref()? {
        LoadBalancer::RingHash(Some(ring)) => ring.hash_policies.as_deref(),
        LoadBalancer::Maglev(Some(maglev)) => maglev.hash_policies.as_deref(),
        _ => None,
    }
}

/// Lays `conf` on the outbound service cluster (the conf is the caller's
/// `to` conf for that service): the load-balancing policy, and its settings
/// when the manifest has the algorithm's section.
pub fn apply_to_cluster(conf: &Conf, cluster: &mut Cluster) {
    let Some(balancer) = &conf.load_balancer else { return };
    let (policy, config) = match balancer {
        LoadBalancer::RoundRobin => (LbPolicy::RoundRobin, None),
        LoadBalancer::Random => (LbPolicy::Random, None),
        LoadBalancer::LeastRequest(least) => (
            LbPolicy::LeastRequest,
            least.as_ref().map(|least| {
                LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                    choice_count: least.choice_count.map(|value| UInt32Value { value }),
                    active_request_bias: least
                        .active_request_bias
                        .map(|bias| RuntimeDouble { default_value: bias.as_f64(), runtime_key: String::new() }),
                    ..Default::default()
                })
            }),
        ),
        LoadBalancer::RingHash(ring) => (
            LbPolicy::RingHash,
            ring.as_ref().map(|ring| {
                let function = match ring.hash_function {
                    Some(HashFunction::MurmurHash2) => ring_hash_lb_config::HashFunction::MurmurHash2,
                    Some(HashFunction::XxHash) | None => ring_hash_lb_config::HashFunction::XxHash,
                };
                LbConfig::RingHashLbConfig(RingHashLbConfig {
                    minimum_ring_size: ring.min_ring_size.map(|size| UInt64Value { value: size.into() }),
                    maximum_ring_size: ring.max_ring_size.map(|size| UInt64Value { value: size.into() }),
                    hash_function: function as i32,
                })
            }),
        ),
        LoadBalancer::Maglev(maglev) => (
            LbPolicy::Maglev,
            maglev.as_ref().map(|maglev| {
                LbConfig::MaglevLbConfig(MaglevLbConfig {
                    table_size: maglev.table_size.map(|size| UInt64Value { value: size.into() }),
                })
            }),
        ),
    };
    cluster.lb_policy = policy as i32;
    if config.is_some() {
        cluster.lb_config = config;
    }
}

/// Lays `conf` on the action of each route of the outbound route
/// configuration `outbound:<service>` (shared by callers whose `to` confs
/// for the service are equal): appends the hash policies in effect
/// ([`hash_policies`]). They matter to ring hash and maglev only; Envoy
/// ignores them for the other algorithms.
pub fn apply_to_route(conf: &Conf, action: &mut RouteAction) {
    let policies = hash_policies(conf).unwrap_or_default();
    action.hash_policy.extend(policies.iter().map(envoy_hash_policy));
}

fn envoy_hash_policy(policy: &HashPolicy) -> EnvoyHashPolicy {
    let specifier = match &policy.key {
        HashKey::Header { name } => {
            PolicySpecifier::Header(hash_policy::Header { header_name: name.clone(), ..Default::default() })
        }
        HashKey::Cookie { name, ttl, path } => PolicySpecifier::Cookie(hash_policy::Cookie {
            name: name.clone(),
            ttl: ttl.map(envoy::duration),
            path: path.clone().unwrap_or_default(),
            ..Default::default()
        }),
        HashKey::Connection { source_ip } => {
            PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties { source_ip: *source_ip })
        }
        HashKey::QueryParameter { name } => {
            PolicySpecifier::QueryParameter(hash_policy::QueryParameter { name: name.clone() })
        }
        HashKey::FilterState { key } => PolicySpecifier::FilterState(hash_policy::FilterState { key: key.clone() }),
    };
    EnvoyHashPolicy { policy_specifier: Some(specifier), terminal: policy.terminal }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render;
    use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost, route};
    use kodiak_xds_server::Resource;
    use serde_json::json;

    fn cluster_json(conf: Value) -> Value {
        let mut cluster = Cluster { name: "backend".into(), ..Default::default() };
        apply_to_cluster(&read(&conf), &mut cluster);
        render(&Resource::new("backend", &cluster))
    }

    /// The rendered hash policies of a route after applying `conf`.
    fn route_json(conf: Value) -> Value {
        let mut action = RouteAction::default();
        apply_to_route(&read(&conf), &mut action);
        let route = Route { action: Some(route::Action::Route(action)), ..Default::default() };
        let config = RouteConfiguration {
            virtual_hosts: vec![VirtualHost { name: "backend".into(), routes: vec![route], ..Default::default() }],
            ..Default::default()
        };
        let rendered = render(&Resource::new("outbound:backend", &config));
        rendered["virtualHosts"][0]["routes"][0]["route"].get("hashPolicy").cloned().unwrap_or(Value::Null)
    }

    fn header(name: &str) -> HashPolicy {
        HashPolicy { terminal: false, key: HashKey::Header { name: name.into() } }
    }

    #[test]
    fn reads_every_field() {
        let conf = read(&json!({
            "localityAwareness": {"disabled": true},
            "loadBalancer": {"type": "RingHash", "ringHash": {"hashFunction": "MurmurHash2", "minRingSize": 64,
                "maxRingSize": 1024, "hashPolicies": [{"type": "Header", "header": {"name": "x-old"}}]}},
            "hashPolicies": [
                {"type": "Header", "header": {"name": "x-user"}, "terminal": true},
                {"type": "Cookie", "cookie": {"name": "session", "ttl": "1h", "path": "/app"}},
                {"type": "Connection", "connection": {"sourceIP": true}},
                {"type": "SourceIP", "connection": {"sourceIP": false}},
                {"type": "QueryParameter", "queryParameter": {"name": "user"}},
                {"type": "FilterState", "filterState": {"key": "io.example.key"}},
                {"type": "Header"}
            ]
        }));
        let ring = RingHash {
            hash_function: Some(HashFunction::MurmurHash2),
            min_ring_size: Some(64),
            max_ring_size: Some(1024),
            hash_policies: Some(vec![header("x-old")]),
        };
        assert_eq!(conf.load_balancer, Some(LoadBalancer::RingHash(Some(ring))));
        let cookie =
            HashKey::Cookie { name: "session".into(), ttl: Some(Duration::from_secs(3600)), path: Some("/app".into()) };
        let expected = vec![
            HashPolicy { terminal: true, key: HashKey::Header { name: "x-user".into() } },
            HashPolicy { terminal: false, key: cookie },
            HashPolicy { terminal: false, key: HashKey::Connection { source_ip: true } },
            HashPolicy { terminal: false, key: HashKey::Connection { source_ip: false } },
            HashPolicy { terminal: false, key: HashKey::QueryParameter { name: "user".into() } },
            HashPolicy { terminal: false, key: HashKey::FilterState { key: "io.example.key".into() } },
        ];
        assert_eq!(conf.hash_policies, Some(expected.clone()));
        assert_eq!(hash_policies(&conf), Some(&expected[..]), "top-level policies win");

        let least = read(&json!({"loadBalancer": {"type": "LeastRequest",
            "leastRequest": {"choiceCount": 3, "activeRequestBias": "0.5"}}}));
        let bias = Some(Decimal { millionths: 500_000 });
        assert_eq!(
            least.load_balancer,
            Some(LoadBalancer::LeastRequest(Some(LeastRequest { choice_count: Some(3), active_request_bias: bias })))
        );
        let maglev = read(&json!({"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 1031,
            "hashPolicies": [{"type": "Header", "header": {"name": "x-m"}}]}}}));
        assert_eq!(hash_policies(&maglev), Some(&[header("x-m")][..]));
        assert_eq!(read(&json!({"loadBalancer": {"type": "Random"}})).load_balancer, Some(LoadBalancer::Random));
        assert_eq!(
            read(&json!({"loadBalancer": {"type": "RoundRobin"}})).load_balancer,
            Some(LoadBalancer::RoundRobin)
        );
    }

    #[test]
    fn reads_an_empty_or_odd_conf_as_nothing_set() {
        assert_eq!(read(&json!({})), Conf::default());
        assert_eq!(read(&json!({"loadBalancer": {"type": "Fastest"}, "hashPolicies": "x"})), Conf::default());
        // A section of another algorithm, left by a merge, plays no part.
        let merged = read(&json!({"loadBalancer": {"type": "RoundRobin",
            "ringHash": {"hashPolicies": [{"type": "Header", "header": {"name": "x"}}]}}}));
        assert_eq!(merged.load_balancer, Some(LoadBalancer::RoundRobin));
        assert_eq!(hash_policies(&merged), None);
    }

    #[test]
    fn each_algorithm_on_the_cluster() {
        let policy = |conf: Value| cluster_json(conf).get("lbPolicy").cloned();
        assert_eq!(policy(json!({"loadBalancer": {"type": "RoundRobin"}})), None, "ROUND_ROBIN is the default value");
        assert_eq!(policy(json!({"loadBalancer": {"type": "Random"}})), Some(json!("RANDOM")));
        assert_eq!(policy(json!({})), None);
        let least = cluster_json(json!({"loadBalancer": {"type": "LeastRequest",
            "leastRequest": {"choiceCount": 3, "activeRequestBias": "1.5"}}}));
        assert_eq!(least["lbPolicy"], "LEAST_REQUEST");
        assert_eq!(
            least["leastRequestLbConfig"],
            json!({"choiceCount": 3, "activeRequestBias": {"defaultValue": 1.5}})
        );
        let ring = cluster_json(json!({"loadBalancer": {"type": "RingHash",
            "ringHash": {"hashFunction": "MurmurHash2", "minRingSize": 64, "maxRingSize": 1024}}}));
        assert_eq!(ring["lbPolicy"], "RING_HASH");
        assert_eq!(
            ring["ringHashLbConfig"],
            json!({"minimumRingSize": "64", "hashFunction": "MURMUR_HASH_2", "maximumRingSize": "1024"})
        );
        let bare_ring = cluster_json(json!({"loadBalancer": {"type": "RingHash"}}));
        assert_eq!((bare_ring["lbPolicy"].as_str(), bare_ring.get("ringHashLbConfig")), (Some("RING_HASH"), None));
        let maglev = cluster_json(json!({"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 1031}}}));
        assert_eq!(maglev["lbPolicy"], "MAGLEV");
        assert_eq!(maglev["maglevLbConfig"], json!({"tableSize": "1031"}));
    }

    #[test]
    fn hash_policies_on_the_route() {
        let conf = json!({"hashPolicies": [
            {"type": "Header", "header": {"name": "x-user"}, "terminal": true},
            {"type": "Cookie", "cookie": {"name": "session", "ttl": "1h", "path": "/app"}},
            {"type": "Connection", "connection": {"sourceIP": true}},
            {"type": "QueryParameter", "queryParameter": {"name": "user"}},
            {"type": "FilterState", "filterState": {"key": "io.example.key"}}]});
        assert_eq!(
            route_json(conf),
            json!([
                {"header": {"headerName": "x-user"}, "terminal": true},
                {"cookie": {"name": "session", "ttl": "3600s", "path": "/app"}},
                {"connectionProperties": {"sourceIp": true}},
                {"queryParameter": {"name": "user"}},
                {"filterState": {"key": "io.example.key"}}])
        );
        let deprecated = json!({"loadBalancer": {"type": "Maglev",
            "maglev": {"hashPolicies": [{"type": "Header", "header": {"name": "x-m"}}]}}});
        assert_eq!(route_json(deprecated), json!([{"header": {"headerName": "x-m"}}]));
        assert_eq!(route_json(json!({"loadBalancer": {"type": "RingHash"}})), Value::Null);
        assert_eq!(route_json(json!({"hashPolicies": []})), Value::Null);
    }
}
