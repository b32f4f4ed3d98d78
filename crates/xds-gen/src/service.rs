//! The resources of one service that every proxy calling it shares: built
//! and encoded once per change of the service, whatever the number of callers.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action, route_match,
};
use kodiak_api::dataplane_view::Protocol;
use kodiak_xds_server::Resource;

use crate::policies::{
    ToPolicies, mesh_circuit_breaker, mesh_health_check, mesh_load_balancing_strategy, mesh_retry, mesh_timeout,
};
use crate::services::ServiceView;
use crate::{envoy, names, security};

/// A service's shared resources.
#[derive(Debug, Clone)]
pub struct ServiceResources {
    /// The protocol the resources were built for; outbound listeners to the
    /// service follow it (HTTP connection manager or TCP proxy).
    pub protocol: Protocol,
    /// The cluster `<service>`, with endpoints from EDS over ADS, and mesh
    /// mTLS when [`ServiceView::mtls`] says so.
    pub cluster: Arc<Resource>,
    /// Whether the cluster uses mesh mTLS ([`ServiceView::mtls`]).
    pub mtls: bool,
    /// Its `ClusterLoadAssignment`.
    pub endpoints: Arc<Resource>,
    /// For http, http2 and gRPC: the route configuration `outbound:<service>`
    /// that outbound listeners fetch over RDS.
    pub route: Option<Arc<Resource>>,
}

/// Builds a service's shared resources, as callers without policies toward
/// it get them.
pub fn service_resources(name: &str, service: &ServiceView) -> ServiceResources {
    let endpoints = service_endpoints(name, service);
    service_resources_for(name, service, &ToPolicies::default(), endpoints)
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
/// are `to`, around its `endpoints` (see [`service_endpoints`]).
pub fn service_resources_for(
    name: &str,
    service: &ServiceView,
    to: &ToPolicies,
    endpoints: Arc<Resource>,
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
    let route = service.protocol.is_http().then(|| {
        let route_name = names::outbound_route(name);
        let mut routes = route_to_cluster(route_name.clone(), name, &cluster_name);
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
