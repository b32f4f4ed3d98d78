//! The resources of one service that every proxy calling it shares: built
//! and encoded once per change of the service, whatever the number of callers.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action, route_match,
};
use kodiak_api::dataplane_view::Protocol;
use kodiak_xds_server::Resource;

use crate::policies::mesh_http_route::{self, BackendCluster};
use crate::policies::{
    ToPolicies, mesh_circuit_breaker, mesh_health_check, mesh_load_balancing_strategy, mesh_retry, mesh_tcp_route,
    mesh_timeout,
};
use crate::services::ServiceView;
use crate::{envoy, names, security};

/// A service's shared resources.
#[derive(Debug, Clone)]
pub struct ServiceResources {
    /// The protocol the resources were built for.
    pub protocol: Protocol,
    /// The cluster `<service>`, with endpoints from EDS over ADS, and mesh
    /// mTLS when [`ServiceView::mtls`] says so.
    pub cluster: Arc<Resource>,
    /// Whether the cluster uses mesh mTLS ([`ServiceView::mtls`]).
    pub mtls: bool,
    /// Its `ClusterLoadAssignment`.
    pub endpoints: Arc<Resource>,
    /// For http, http2 and gRPC: the route configuration `outbound:<service>`
    /// that outbound listeners fetch over RDS. `None`: callers' outbound
    /// listeners are TCP proxies (a tcp service, or a MeshTCPRoute).
    pub route: Option<Arc<Resource>>,
    /// The clusters the routes (HTTP or TCP) send to, besides or instead of
    /// the service's own: other services and subsets, each once. Every proxy
    /// given these resources needs them too.
    pub backends: Vec<BackendCluster>,
}

/// Builds a service's shared resources, as callers without policies toward
/// it get them.
pub fn service_resources(name: &str, service: &ServiceView) -> ServiceResources {
    let endpoints = service_endpoints(name, service);
    service_resources_for(name, service, &ToPolicies::default(), endpoints, &BTreeMap::new())
}

/// A service's `ClusterLoadAssignment`: the same for every caller.
pub fn service_endpoints(name: &str, service: &ServiceView) -> Arc<Resource> {
    let cluster_name = names::service_cluster(name);
    let assignment = envoy::load_assignment(
        &cluster_name,
        service.endpoints.iter().map(|endpoint| (endpoint.address, endpoint.port)),
    );
    Resource::new(cluster_name, &assignment)
}

/// Builds a service's resources for the callers whose policies toward it
/// are `to`, around its `endpoints` (see [`service_endpoints`]); `services`
/// are the mesh's services, which routes may send to.
pub fn service_resources_for(
    name: &str,
    service: &ServiceView,
    to: &ToPolicies,
    endpoints: Arc<Resource>,
    services: &BTreeMap<String, ServiceView>,
) -> ServiceResources {
    let cluster_name = names::service_cluster(name);
    let mut cluster = Cluster {
        name: cluster_name.clone(),
        cluster_discovery_type: envoy::cluster_type(cluster::DiscoveryType::Eds),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(envoy::ads()),
            service_name: String::new(),
        }),
        connect_timeout: Some(envoy::seconds(envoy::CONNECT_TIMEOUT_SECONDS)),
        ..Default::default()
    };
    if service.protocol.is_http2() {
        envoy::use_http2(&mut cluster);
    }
    if let Some(mesh) = &service.mtls {
        cluster.transport_socket = Some(security::upstream_tls(mesh, name));
    }
    if let Some(timeout) = &to.timeout {
        mesh_timeout::apply_to_cluster(timeout, &mut cluster, service.protocol);
    }
    if let Some(load_balancing) = &to.load_balancing {
        mesh_load_balancing_strategy::apply_to_cluster(load_balancing, &mut cluster);
    }
    if let Some(health_check) = &to.health_check {
        mesh_health_check::apply_to_cluster(health_check, service.protocol, &mut cluster);
    }
    // Last: its healthy panic threshold wins over the health check's.
    if let Some(circuit_breaker) = &to.circuit_breaker {
        mesh_circuit_breaker::apply_to_cluster(circuit_breaker, &mut cluster);
    }
    // A MeshTCPRoute turns an HTTP service's callers into TCP proxies, unless
    // they have HTTP routes toward it too.
    let http = service.protocol.is_http() && (to.http_route.is_some() || to.tcp_route.is_none());
    let mut backends = Vec::new();
    if !http && let Some(tcp_route) = &to.tcp_route {
        backends = mesh_tcp_route::backends(tcp_route, name).into_iter().map(|(backend, _)| backend).collect();
    }
    let route = http.then(|| {
        let route_name = names::outbound_route(name);
        let mut routes = match &to.http_route {
            Some(http_route) => {
                let (routes, used) = mesh_http_route::route_configuration(http_route, name, services);
                backends = used;
                routes
            }
            None => route_to_cluster(route_name.clone(), name, &cluster_name),
        };
        // Routes built from a rule get the timeout and retry toward the
        // MeshHTTPRoute the rule comes from, if some policy names it.
        let origins = to.http_route.as_ref().map(mesh_http_route::route_origins).unwrap_or_default();
        for_each_named_action(&mut routes, |route_name, action| {
            let origin = origins.get(route_name).copied();
            if let Some(timeout) = of_route(&to.route_timeouts, origin).or(to.timeout.as_ref()) {
                mesh_timeout::apply_to_route(timeout, action);
            }
            if let Some(retry) = of_route(&to.route_retries, origin).or(to.retry.as_ref()) {
                mesh_retry::apply_to_route(retry, service.protocol, action);
            }
            if let Some(load_balancing) = &to.load_balancing {
                mesh_load_balancing_strategy::apply_to_route(load_balancing, action);
            }
        });
        Resource::new(route_name, &routes)
    });
    ServiceResources {
        protocol: service.protocol,
        cluster: Resource::new(cluster_name, &cluster),
        mtls: service.mtls.is_some(),
        endpoints,
        route,
        backends,
    }
}

/// The conf toward the MeshHTTPRoute `origin`, if there is one.
fn of_route<'a, T>(confs: &'a BTreeMap<String, T>, origin: Option<&str>) -> Option<&'a T> {
    confs.get(origin?)
}

/// Calls `change` on the action of every route that forwards.
pub(crate) fn for_each_action(routes: &mut RouteConfiguration, mut change: impl FnMut(&mut RouteAction)) {
    for_each_named_action(routes, |_, action| change(action));
}

/// Calls `change` with the name and action of every route that forwards.
fn for_each_named_action(routes: &mut RouteConfiguration, mut change: impl FnMut(&str, &mut RouteAction)) {
    for virtual_host in &mut routes.virtual_hosts {
        for route in &mut virtual_host.routes {
            if let Some(route::Action::Route(action)) = &mut route.action {
                change(&route.name, action);
            }
        }
    }
}

/// A route configuration sending every request, whatever its host, to one
/// cluster. Also used inline by inbound listeners.
pub(crate) fn route_to_cluster(route_name: String, virtual_host: &str, cluster: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: route_name,
        virtual_hosts: vec![VirtualHost {
            name: virtual_host.to_owned(),
            domains: vec!["*".to_owned()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_owned())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use kodiak_policy::rules::{MeshPolicies, proxy_rules};
    use serde_json::Value;

    use super::*;
    use crate::policies::proxy_policies;
    use crate::services::services;
    use crate::test_support::{instance, resource};

    /// Each Envoy route of a route configuration: its match (as JSON text),
    /// its timeout and its number of retries.
    fn timeouts_and_retries(routes: &Resource) -> Vec<(String, Value, Value)> {
        let routes = crate::render(routes);
        let routes = routes["virtualHosts"][0]["routes"].as_array().unwrap().clone();
        routes
            .into_iter()
            .map(|route| {
                let action = &route["route"];
                (route["match"].to_string(), action["timeout"].clone(), action["retryPolicy"]["numRetries"].clone())
            })
            .collect()
    }

    #[test]
    fn rules_of_a_route_that_policies_name_get_the_route_conf_and_the_others_the_service_conf() {
        let web = resource(
            "{type: Dataplane, mesh: default, name: web-1, networking: {address: 127.0.0.2, outbound: [
                {port: 20001, tags: {kuma.io/service: backend}}]}}",
        );
        let route = |name: &str, prefix: &str| {
            resource(&format!(
                "{{type: MeshHTTPRoute, mesh: default, name: {name}, spec: {{targetRef: {{kind: Mesh}}, to: [
                    {{targetRef: {{kind: MeshService, name: backend}}, rules: [
                        {{matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}], default: {{}}}}]}}]}}}}"
            ))
        };
        let policies = [
            route("slow-route", "/slow"),
            route("fast-route", "/fast"),
            resource(
                "{type: MeshTimeout, mesh: default, name: backend-timeout, spec: {targetRef: {kind: Mesh}, to: [
                    {targetRef: {kind: MeshService, name: backend}, default: {http: {requestTimeout: 5s}}}]}}",
            ),
            resource(
                "{type: MeshTimeout, mesh: default, name: slow-timeout, spec: {targetRef: {kind: Mesh}, to: [
                    {targetRef: {kind: MeshHTTPRoute, name: slow-route}, default: {http: {requestTimeout: 30s}}}]}}",
            ),
            resource(
                "{type: MeshRetry, mesh: default, name: slow-retry, spec: {
                    targetRef: {kind: MeshHTTPRoute, name: slow-route}, to: [
                    {targetRef: {kind: Mesh}, default: {http: {numRetries: 7}}}]}}",
            ),
        ];
        let rules = proxy_rules(&web, &MeshPolicies::new("default", &policies));
        let to = proxy_policies(&rules, ["backend"]).to("backend").clone();
        assert_eq!(to.route_timeouts.keys().collect::<Vec<_>>(), ["slow-route"]);
        assert_eq!(to.route_retries.keys().collect::<Vec<_>>(), ["slow-route"]);

        let views = services([&instance("backend-1", "127.0.0.4", "backend", "http")]);
        let built = service_resources_for(
            "backend",
            &views["backend"],
            &to,
            service_endpoints("backend", &views["backend"]),
            &views,
        );
        let routes = timeouts_and_retries(built.route.as_ref().unwrap());
        // Each prefix gives two routes (the path, and below it), then the
        // catch-all.
        assert_eq!(routes.len(), 5, "{routes:?}");
        for (matched, timeout, retries) in routes {
            if matched.contains("/slow") {
                assert_eq!((timeout, retries), ("30s".into(), 7.into()), "{matched}");
            } else {
                assert_eq!((timeout, retries), ("5s".into(), Value::Null), "{matched}");
            }
        }
    }
}
