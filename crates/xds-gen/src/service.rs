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
        for_each_action(&mut routes, |action| {
            if let Some(timeout) = &to.timeout {
                mesh_timeout::apply_to_route(timeout, action);
            }
            if let Some(retry) = &to.retry {
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

/// Calls `change` on the action of every route that forwards.
pub(crate) fn for_each_action(routes: &mut RouteConfiguration, mut change: impl FnMut(&mut RouteAction)) {
    for virtual_host in &mut routes.virtual_hosts {
        for route in &mut virtual_host.routes {
            if let Some(route::Action::Route(action)) = &mut route.action {
                change(action);
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
