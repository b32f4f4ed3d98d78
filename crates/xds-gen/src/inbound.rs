//! An inbound: a listener where other proxies send the service's traffic,
//! and a cluster that forwards it to the application beside the proxy.
//! Both belong to one proxy only.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::google::protobuf::Duration;
use kodiak_api::dataplane_view::InboundView;
use kodiak_policy::traffic_permission::InboundPermissions;

use crate::policies::{FromPolicies, mesh_circuit_breaker, mesh_fault_injection, mesh_rate_limit, mesh_timeout};
use crate::security::{self, MESH_ALPN, MtlsMode};
use crate::service::{for_each_action, route_to_cluster};
use crate::{envoy, names, rbac, refusals};

/// How long an mTLS inbound waits for a caller's first bytes to tell TLS
/// from plaintext. A caller that sends nothing first (a server-first
/// protocol) is taken as plaintext when it runs out: served on PERMISSIVE,
/// refused on STRICT. Mesh callers send their TLS hello at once.
const TLS_DETECTION_TIMEOUT: Duration = Duration { seconds: 1, nanos: 0 };

/// Mesh mTLS on one inbound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InboundMtls<'a> {
    pub mesh: &'a str,
    pub mode: MtlsMode,
    pub permissions: &'a InboundPermissions,
}

/// The inbound listener `inbound:<address>:<port>`, under the policies
/// toward that inbound.
///
/// With mesh mTLS, a filter chain for mTLS callers (TLS with ALPN
/// [`MESH_ALPN`], client certificate required, MeshTrafficPermission
/// enforced) comes beside the plaintext chain (PERMISSIVE) or replaces it
/// (STRICT). The plaintext chain is the same as without mTLS, and both modes
/// share the listener settings, so a PERMISSIVE to STRICT switch changes only
/// the filter chains and Envoy updates the listener in place, leaving the
/// connections of the mTLS chain alone.
pub fn listener(inbound: &InboundView, mtls: Option<InboundMtls<'_>>, from: &FromPolicies) -> Listener {
    let name = names::inbound_listener(&inbound.address, inbound.port);
    let mut listener = envoy::listener(
        name.clone(),
        (&inbound.address, inbound.port),
        TrafficDirection::Inbound,
        filters(inbound, from, None, &name),
    );
    let Some(mtls) = mtls else { return listener };
    let chain = FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "tls".to_owned(),
            application_protocols: vec![MESH_ALPN.to_owned()],
            ..Default::default()
        }),
        filters: filters(inbound, from, Some(mtls), &name),
        transport_socket: Some(security::downstream_tls(mtls.mesh)),
        ..Default::default()
    };
    match mtls.mode {
        MtlsMode::Permissive => listener.filter_chains.push(chain),
        MtlsMode::Strict => listener.filter_chains = vec![chain],
    }
    listener.listener_filters = vec![ListenerFilter {
        name: envoy::names::TLS_INSPECTOR.to_owned(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(envoy::any(&TlsInspector::default()))),
        ..Default::default()
    }];
    listener.listener_filters_timeout = Some(TLS_DETECTION_TIMEOUT);
    listener.access_log = vec![refusals::unmatched_connections(&listener.name)];
    listener.continue_on_listener_filters_timeout = true;
    listener
}

/// The network filters of a filter chain of `listener`: an HTTP connection
/// manager with the inbound's route inline, or a TCP proxy, to the inbound
/// cluster. On the chain of mesh mTLS callers, MeshTrafficPermission's RBAC
/// comes first and denials are logged.
fn filters(inbound: &InboundView, from: &FromPolicies, mtls: Option<InboundMtls<'_>>, listener: &str) -> Vec<Filter> {
    let cluster = names::inbound_cluster(&inbound.service_address, inbound.service_port);
    let stat_prefix = envoy::stat_prefix(&cluster);
    if inbound.protocol.is_http() {
        // The route is inline: it is specific to this proxy and changes only
        // with its own Dataplane, so RDS would add a round trip for nothing.
        // Envoy needs a virtual host name; an inbound without a service tag
        // (not valid today, but cheap to survive) is named by its listener.
        let service = if inbound.service.is_empty() { listener } else { &inbound.service };
        let mut routes = route_to_cluster(names::inbound_route(service), service, &cluster);
        if let Some(timeout) = &from.timeout {
            for_each_action(&mut routes, |action| mesh_timeout::apply_to_route(timeout, action));
        }
        if from.strip_caller_tags {
            mesh_fault_injection::strip_tags_header(&mut routes);
        }
        let mut manager = envoy::http_connection_manager(stat_prefix, RouteSpecifier::RouteConfig(routes));
        if let Some(timeout) = &from.timeout {
            mesh_timeout::apply_to_http_manager(timeout, &mut manager);
        }
        // Faults, then rate limits, between the permission check and the router.
        let mut policies =
            from.fault_injection.as_ref().map(mesh_fault_injection::inbound_http_filters).unwrap_or_default();
        policies.extend(from.rate_limit.as_ref().map(mesh_rate_limit::http_filters).unwrap_or_default());
        let router = manager.http_filters.len() - 1;
        manager.http_filters.splice(router..router, policies);
        if let Some(mtls) = mtls {
            rbac::protect_http(&mut manager, mtls.mesh, mtls.permissions, listener);
        }
        let mut filters = connection_limits(from);
        filters.push(envoy::filter(envoy::names::HTTP_CONNECTION_MANAGER, &manager));
        return filters;
    }
    let mut proxy = envoy::tcp_proxy(stat_prefix, &cluster);
    if let Some(timeout) = &from.timeout {
        mesh_timeout::apply_to_tcp_proxy(timeout, &mut proxy);
    }
    let mut filters = connection_limits(from);
    if let Some(mtls) = mtls {
        proxy.access_log.extend([refusals::denied_connections(listener), refusals::failed_handshakes(listener)]);
        filters.push(rbac::network_filter(mtls.mesh, mtls.permissions, &envoy::stat_prefix(listener)));
    }
    filters.push(envoy::filter(envoy::names::TCP_PROXY, &proxy));
    filters
}

/// The network filters that limit an inbound's connections, first on every
/// chain (MeshRateLimit `local.tcp`).
fn connection_limits(from: &FromPolicies) -> Vec<Filter> {
    from.rate_limit.as_ref().map(mesh_rate_limit::network_filters).unwrap_or_default()
}

/// The cluster `inbound:<serviceAddress>:<servicePort>` to the application.
/// Under the policies toward the inbound.
pub fn cluster(inbound: &InboundView, from: &FromPolicies) -> Cluster {
    let name = names::inbound_cluster(&inbound.service_address, inbound.service_port);
    // A service address is an IP unless it defaulted to a Dataplane address
    // given as a host name; Envoy resolves that one itself.
    let kind = match inbound.service_address.parse::<IpAddr>() {
        Ok(_) => cluster::DiscoveryType::Static,
        Err(_) => cluster::DiscoveryType::StrictDns,
    };
    let mut cluster = Cluster {
        load_assignment: Some(envoy::load_assignment_to_host(&name, &inbound.service_address, inbound.service_port)),
        name,
        cluster_discovery_type: envoy::cluster_type(kind),
        connect_timeout: Some(envoy::seconds(envoy::CONNECT_TIMEOUT_SECONDS)),
        ..Default::default()
    };
    if inbound.protocol.is_http2() {
        envoy::use_http2(&mut cluster);
    }
    if let Some(timeout) = &from.timeout {
        mesh_timeout::apply_to_cluster(timeout, &mut cluster, inbound.protocol);
    }
    if let Some(circuit_breaker) = &from.circuit_breaker {
        mesh_circuit_breaker::apply_to_cluster(circuit_breaker, &mut cluster);
    }
    cluster
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::instance;

    fn inbound(protocol: &str) -> InboundView {
        instance("backend-1", "127.0.0.4", "backend", protocol).inbounds.remove(0)
    }

    fn with_mode(inbound: &InboundView, mode: MtlsMode) -> Listener {
        let permissions = InboundPermissions::default();
        listener(
            inbound,
            Some(InboundMtls { mesh: "default", mode, permissions: &permissions }),
            &FromPolicies::default(),
        )
    }

    fn chain_matches(listener: &Listener) -> Vec<Option<(String, Vec<String>)>> {
        let matches = listener.filter_chains.iter().map(|chain| chain.filter_chain_match.as_ref());
        matches.map(|m| m.map(|m| (m.transport_protocol.clone(), m.application_protocols.clone()))).collect()
    }

    #[test]
    fn permissive_adds_an_mtls_chain_beside_the_unchanged_plaintext_one() {
        for protocol in ["http", "tcp"] {
            let inbound = inbound(protocol);
            let plain = listener(&inbound, None, &FromPolicies::default());
            let permissive = with_mode(&inbound, MtlsMode::Permissive);
            assert_eq!(permissive.filter_chains[0], plain.filter_chains[0], "{protocol}");
            assert_eq!(chain_matches(&permissive), [None, Some(("tls".into(), vec!["kuma".into()]))]);
            assert!(permissive.filter_chains[1].transport_socket.is_some());
            assert!(plain.listener_filters.is_empty());
            let inspector: Vec<&str> = permissive.listener_filters.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(inspector, ["envoy.filters.listener.tls_inspector"]);
            assert!(permissive.continue_on_listener_filters_timeout);
        }
    }

    #[test]
    fn strict_keeps_only_the_mtls_chain_and_differs_from_permissive_in_chains_only() {
        for protocol in ["http", "tcp"] {
            let inbound = inbound(protocol);
            let mut permissive = with_mode(&inbound, MtlsMode::Permissive);
            let mut strict = with_mode(&inbound, MtlsMode::Strict);
            assert_eq!(strict.filter_chains, permissive.filter_chains[1..], "{protocol}");
            // Envoy updates a listener in place when nothing but its chains changes.
            permissive.filter_chains.clear();
            strict.filter_chains.clear();
            assert_eq!(strict, permissive, "{protocol}");
        }
    }

    #[test]
    fn the_mtls_chain_enforces_permissions_before_forwarding() {
        let filter_names = |listener: &Listener| -> Vec<String> {
            listener.filter_chains[0].filters.iter().map(|filter| filter.name.clone()).collect()
        };
        let tcp = with_mode(&inbound("tcp"), MtlsMode::Strict);
        assert_eq!(filter_names(&tcp), ["envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"]);
        let http = with_mode(&inbound("http"), MtlsMode::Strict);
        let rendered = crate::render(&kodiak_xds_server::Resource::new("l", &http));
        let manager = &rendered["filterChains"][0]["filters"][0]["typedConfig"];
        let http_filters: Vec<&str> =
            manager["httpFilters"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(http_filters, ["envoy.filters.http.rbac", "envoy.filters.http.router"]);
        assert_eq!(manager["localReplyConfig"]["mappers"][0]["headersToAdd"][0]["header"]["value"], NO_PERMISSION);
    }

    const NO_PERMISSION: &str = crate::rbac::NO_PERMISSION_ALLOWS;
}
