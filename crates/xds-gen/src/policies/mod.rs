//! What policies change in the generated Envoy configuration. Each policy
//! type has a module: its conf as Kodiak reads the merged `default` JSON
//! that `kodiak-policy` computed for a proxy (typed, comparable and
//! hashable, so services' resources stay shared between callers whose
//! confs are equal), and the functions that lay it on Envoy resources.

pub mod header_match;
pub mod mesh_access_log;
pub mod mesh_circuit_breaker;
pub mod mesh_fault_injection;
pub mod mesh_health_check;
pub mod mesh_http_route;
pub mod mesh_load_balancing_strategy;
pub mod mesh_proxy_patch;
pub mod mesh_rate_limit;
pub mod mesh_retry;
pub mod mesh_tcp_route;
pub mod mesh_timeout;

use std::collections::{BTreeMap, BTreeSet};

use kodiak_api::ResourceType;
use kodiak_policy::rules::{Conf as Merged, ProxyRules};
use serde_json::Value;

/// What policies say about calls from one proxy to one destination
/// service. Callers with equal `ToPolicies` toward a service share its
/// cluster and routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ToPolicies {
    pub timeout: Option<mesh_timeout::Conf>,
    pub retry: Option<mesh_retry::Conf>,
    pub circuit_breaker: Option<mesh_circuit_breaker::Conf>,
    pub health_check: Option<mesh_health_check::Conf>,
    pub load_balancing: Option<mesh_load_balancing_strategy::Conf>,
    pub http_route: Option<mesh_http_route::Conf>,
    pub tcp_route: Option<mesh_tcp_route::Conf>,
}

impl ToPolicies {
    /// The other services the routes send to: what is built under these
    /// policies changes with them too.
    pub fn route_backends(&self) -> BTreeSet<&str> {
        let http = self.http_route.iter().flat_map(mesh_http_route::Conf::backend_services);
        http.chain(self.tcp_route.iter().flat_map(mesh_tcp_route::Conf::backend_services)).collect()
    }
}

/// What policies say about the traffic one inbound receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FromPolicies {
    pub timeout: Option<mesh_timeout::Conf>,
    pub circuit_breaker: Option<mesh_circuit_breaker::Conf>,
}

/// Every policy's effect on one proxy, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPolicies {
    /// Toward each destination service some policy covers.
    pub to: BTreeMap<String, ToPolicies>,
    /// Toward any other destination.
    pub to_any: ToPolicies,
    /// One per inbound of the Dataplane, in its order.
    pub from: Vec<FromPolicies>,
    /// The MeshProxyPatch modifications, applied to the finished resources.
    pub patch: Option<mesh_proxy_patch::Conf>,
}

impl ProxyPolicies {
    /// The policies toward `service`.
    pub fn to(&self, service: &str) -> &ToPolicies {
        self.to.get(service).unwrap_or(&self.to_any)
    }

    /// The policies of the inbound at `index`.
    pub fn from(&self, index: usize) -> FromPolicies {
        self.from.get(index).cloned().unwrap_or_default()
    }
}

/// Reads the merged confs of `rules` (a proxy's, from kodiak-policy) into
/// typed policies.
pub fn proxy_policies(rules: &ProxyRules) -> ProxyPolicies {
    let mut policies = ProxyPolicies::default();
    let mut services: Vec<&String> = Vec::new();
    let mut inbounds = 0;
    for type_rules in rules.types.values() {
        services.extend(type_rules.to.services.keys());
        inbounds = inbounds.max(type_rules.from.len());
    }
    let to = |service: Option<&str>| {
        let conf = |kind: ResourceType| -> Option<&Value> {
            let to = &rules.types.get(&kind)?.to;
            let merged: Option<&Merged> = match service {
                Some(service) => to.for_service(service),
                None => to.mesh.as_ref(),
            };
            merged.map(|merged| &merged.conf)
        };
        ToPolicies {
            timeout: conf(ResourceType::MeshTimeout).map(mesh_timeout::read),
            retry: conf(ResourceType::MeshRetry).map(mesh_retry::read),
            circuit_breaker: conf(ResourceType::MeshCircuitBreaker).map(mesh_circuit_breaker::read),
            health_check: conf(ResourceType::MeshHealthCheck).map(mesh_health_check::read),
            load_balancing: conf(ResourceType::MeshLoadBalancingStrategy).map(mesh_load_balancing_strategy::read),
            http_route: conf(ResourceType::MeshHTTPRoute).map(mesh_http_route::read),
            tcp_route: conf(ResourceType::MeshTCPRoute).map(mesh_tcp_route::read),
        }
    };
    policies.to_any = to(None);
    for service in services {
        policies.to.insert(service.clone(), to(Some(service)));
    }
    policies.patch = rules
        .types
        .get(&ResourceType::MeshProxyPatch)
        .and_then(|patch| patch.proxy.as_ref())
        .map(|merged| mesh_proxy_patch::read(&merged.conf));
    policies.from = (0..inbounds)
        .map(|index| {
            let conf = |kind: ResourceType| -> Option<&Value> {
                rules.types.get(&kind)?.from.get(index)?.conf.as_ref().map(|merged| &merged.conf)
            };
            FromPolicies {
                timeout: conf(ResourceType::MeshTimeout).map(mesh_timeout::read),
                circuit_breaker: conf(ResourceType::MeshCircuitBreaker).map(mesh_circuit_breaker::read),
            }
        })
        .collect();
    policies
}
