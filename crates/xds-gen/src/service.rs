//! The resources of one service that every proxy calling it shares: built
//! and encoded once per change of the service, whatever the number of callers.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action, route_match,
};
use kodiak_api::dataplane_view::Protocol;
use kodiak_xds_server::Resource;

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

/// Builds a service's shared resources.
pub fn service_resources(name: &str, service: &ServiceView) -> ServiceResources {
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
    let assignment = envoy::load_assignment(
        &cluster_name,
        service.endpoints.iter().map(|endpoint| (endpoint.address, endpoint.port)),
    );
    let route = service.protocol.is_http().then(|| {
        let route_name = names::outbound_route(name);
        Resource::new(route_name.clone(), &route_to_cluster(route_name, name, &cluster_name))
    });
    ServiceResources {
        protocol: service.protocol,
        cluster: Resource::new(cluster_name.clone(), &cluster),
        mtls: service.mtls.is_some(),
        endpoints: Resource::new(cluster_name, &assignment),
        route,
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
