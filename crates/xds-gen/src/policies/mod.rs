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
    /// MeshTimeout toward the MeshHTTPRoutes `http_route`'s rules come from
    /// (by route name), for the routes some policy names: the requests of
    /// those rules get it instead of `timeout`.
    pub route_timeouts: BTreeMap<String, mesh_timeout::Conf>,
    /// MeshRetry likewise, instead of `retry`.
    pub route_retries: BTreeMap<String, mesh_retry::Conf>,
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
    pub fault_injection: Option<mesh_fault_injection::InboundConf>,
    pub rate_limit: Option<mesh_rate_limit::Conf>,
    pub access_log: Option<mesh_access_log::Conf>,
    /// Remove the header that names callers' tags before the application
    /// sees it (callers add it, see [`ProxyPolicies::tag_callers`]).
    pub strip_caller_tags: bool,
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
    /// MeshAccessLog toward each destination some policy names: only the
    /// proxy's own outbound listener changes, so it is kept apart from
    /// [`ToPolicies`], whose resources callers share.
    pub access_logs_to: BTreeMap<String, mesh_access_log::Conf>,
    /// MeshAccessLog toward any other destination.
    pub access_log_to_any: Option<mesh_access_log::Conf>,
    /// Whether the proxy's outbound HTTP requests name its tags in a header,
    /// for MeshFaultInjections that pick callers by tags (the caller of
    /// [`proxy_policies`] sets it for meshes that have such policies).
    pub tag_callers: bool,
    /// The named pipe on the proxy's host that kodiak-dp forwards TCP access
    /// logs from; without it, TCP access-log backends are left out (the
    /// caller of [`proxy_policies`] sets it from what the sidecar reported).
    pub access_log_pipe: Option<String>,
}

impl ProxyPolicies {
    /// The policies toward `service`.
    pub fn to(&self, service: &str) -> &ToPolicies {
        self.to.get(service).unwrap_or(&self.to_any)
    }

    /// The policies of the inbound at `index`.
    pub fn from(&self, index: usize) -> FromPolicies {
        let from = self.from.get(index).cloned().unwrap_or_default();
        FromPolicies { strip_caller_tags: self.tag_callers, ..from }
    }

    /// The access logs toward `service`.
    pub fn access_log_to(&self, service: &str) -> Option<&mesh_access_log::Conf> {
        self.access_logs_to.get(service).or(self.access_log_to_any.as_ref())
    }
}

/// Reads the merged confs of `rules` (a proxy's, from kodiak-policy) into
/// typed policies, toward the services the proxy calls (`outbound`) and
/// those their routes send to: a mesh's policies may name many more
/// services than one proxy calls, and only these are ever looked up.
pub fn proxy_policies<'a>(rules: &ProxyRules, outbound: impl IntoIterator<Item = &'a str>) -> ProxyPolicies {
    let mut policies = ProxyPolicies::default();
    let mut named: BTreeSet<&str> = BTreeSet::new();
    let mut inbounds = 0;
    for type_rules in rules.types.values() {
        named.extend(type_rules.to.services.keys().map(String::as_str));
        inbounds = inbounds.max(type_rules.from.len());
    }
    let to = |service: Option<&str>| {
        let merged = |kind: ResourceType| -> Option<&Merged> {
            let to = &rules.types.get(&kind)?.to;
            match service {
                Some(service) => to.for_service(service),
                None => to.mesh.as_ref(),
            }
        };
        let conf = |kind: ResourceType| merged(kind).map(|merged| &merged.conf);
        let http_route = merged(ResourceType::MeshHTTPRoute)
            .map(|merged| mesh_http_route::read_with_origins(&merged.conf, &merged.rule_origins));
        let origins = http_route.as_ref().map(mesh_http_route::Conf::origins).unwrap_or_default();
        // The confs toward the routes the rules come from.
        let routes = |kind: ResourceType| -> Vec<(String, &Value)> {
            let Some(type_rules) = rules.types.get(&kind) else { return Vec::new() };
            let named = type_rules.to.routes.iter().filter(|(route, _)| origins.contains(route.as_str()));
            named.map(|(route, merged)| (route.clone(), &merged.conf)).collect()
        };
        ToPolicies {
            timeout: conf(ResourceType::MeshTimeout).map(mesh_timeout::read),
            retry: conf(ResourceType::MeshRetry).map(mesh_retry::read),
            circuit_breaker: conf(ResourceType::MeshCircuitBreaker).map(mesh_circuit_breaker::read),
            health_check: conf(ResourceType::MeshHealthCheck).map(mesh_health_check::read),
            load_balancing: conf(ResourceType::MeshLoadBalancingStrategy).map(mesh_load_balancing_strategy::read),
            tcp_route: conf(ResourceType::MeshTCPRoute).map(mesh_tcp_route::read),
            route_timeouts: routes(ResourceType::MeshTimeout)
                .into_iter()
                .map(|(route, conf)| (route, mesh_timeout::read(conf)))
                .collect(),
            route_retries: routes(ResourceType::MeshRetry)
                .into_iter()
                .map(|(route, conf)| (route, mesh_retry::read(conf)))
                .collect(),
            http_route,
        }
    };
    let access_log = |service: Option<&str>| {
        let to = &rules.types.get(&ResourceType::MeshAccessLog)?.to;
        let merged = match service {
            Some(service) => to.for_service(service),
            None => to.mesh.as_ref(),
        };
        merged.map(|merged| mesh_access_log::read(&merged.conf))
    };
    policies.to_any = to(None);
    policies.access_log_to_any = access_log(None);
    // The services to read policies toward: the outbounds' and, in turn,
    // their routes' backends (and those of the routes toward any service).
    // Services no policy names get the policies toward any service.
    let mut wanted: Vec<String> = outbound.into_iter().map(str::to_owned).collect();
    wanted.extend(policies.to_any.route_backends().into_iter().map(str::to_owned));
    while let Some(service) = wanted.pop() {
        if !named.contains(service.as_str()) || policies.to.contains_key(&service) {
            continue;
        }
        let toward = to(Some(&service));
        wanted.extend(toward.route_backends().into_iter().map(str::to_owned));
        if let Some(conf) = access_log(Some(&service)) {
            policies.access_logs_to.insert(service.clone(), conf);
        }
        policies.to.insert(service, toward);
    }
    policies.patch = rules.types.get(&ResourceType::MeshProxyPatch).and_then(|patch| patch.proxy.as_ref()).map(
        |merged| match merged.origins.as_slice() {
            // One policy's list as written: problems name it and its entry.
            [only] => mesh_proxy_patch::read_policies([(only.as_str(), &merged.conf)]),
            _ => mesh_proxy_patch::read(&merged.conf),
        },
    );
    policies.from = (0..inbounds)
        .map(|index| {
            let conf = |kind: ResourceType| -> Option<&Value> {
                rules.types.get(&kind)?.from.get(index)?.conf.as_ref().map(|merged| &merged.conf)
            };
            let faults = rules.types.get(&ResourceType::MeshFaultInjection).and_then(|faults| faults.from.get(index));
            FromPolicies {
                timeout: conf(ResourceType::MeshTimeout).map(mesh_timeout::read),
                circuit_breaker: conf(ResourceType::MeshCircuitBreaker).map(mesh_circuit_breaker::read),
                fault_injection: faults.map(mesh_fault_injection::read_inbound),
                rate_limit: conf(ResourceType::MeshRateLimit).map(mesh_rate_limit::read),
                access_log: conf(ResourceType::MeshAccessLog).map(mesh_access_log::read),
                strip_caller_tags: false,
            }
        })
        .collect();
    policies
}
