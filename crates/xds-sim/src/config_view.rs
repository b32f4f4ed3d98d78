//! What one simulated proxy holds: a summary of every resource it was sent,
//! enough to know which further resources it must ask for (as Envoy does:
//! endpoints for its EDS clusters, route configurations for its listeners'
//! RDS, secrets named by SDS) and whether a marked change has reached it.
//! Pure: no I/O.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, Secret, UpstreamTlsContext, common_tls_context,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

pub use kodiak_xds_server::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

/// A proxy's view of the configuration it accepted.
#[derive(Debug, Default)]
pub struct ProxyConfig {
    clusters: HashMap<String, ClusterView>,
    listeners: HashMap<String, ListenerView>,
    /// Endpoints per ClusterLoadAssignment.
    endpoints: HashMap<String, usize>,
    routes: BTreeSet<String>,
    /// A fingerprint of each secret's content.
    secrets: HashMap<String, u64>,
    /// Whether a Cluster and a Listener response arrived at least once.
    clusters_seen: bool,
    listeners_seen: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct ClusterView {
    /// The ClusterLoadAssignment an EDS cluster asks for.
    eds: Option<String>,
    connect_timeout_ms: Option<u64>,
    secrets: Vec<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct ListenerView {
    routes: Vec<String>,
    secrets: Vec<String>,
}

/// One resource of a response, still encoded.
pub struct Incoming<'a> {
    pub name: &'a str,
    pub body: &'a Any,
}

impl ProxyConfig {
    /// Applies one response of `type_url`: `resources` are added or
    /// replaced, `removed` go, and with `whole` (a state-of-the-world
    /// response of a wildcard type) every resource of the type not in
    /// `resources` goes too. A resource that does not decode is an error and
    /// nothing of the response is applied, as Envoy rejects a whole update.
    pub fn apply(
        &mut self,
        type_url: &str,
        resources: &[Incoming<'_>],
        removed: &[String],
        whole: bool,
    ) -> Result<(), String> {
        match type_url {
            CLUSTER => {
                let views = decode_all(resources, |cluster: Cluster| (cluster.name.clone(), cluster_view(&cluster)))?;
                replace(&mut self.clusters, views, removed, whole);
                self.clusters_seen = true;
            }
            LISTENER => {
                let views =
                    decode_all(resources, |listener: Listener| (listener.name.clone(), listener_view(&listener)))?;
                replace(&mut self.listeners, views, removed, whole);
                self.listeners_seen = true;
            }
            ENDPOINT => {
                let counts = decode_all(resources, |assignment: ClusterLoadAssignment| {
                    let count = assignment.endpoints.iter().map(|locality| locality.lb_endpoints.len()).sum();
                    (assignment.cluster_name, count)
                })?;
                replace(&mut self.endpoints, counts, removed, whole);
            }
            ROUTE => {
                let names = decode_all(resources, |route: RouteConfiguration| (route.name, ()))?;
                let mut present: HashMap<String, ()> = self.routes.iter().map(|name| (name.clone(), ())).collect();
                replace(&mut present, names, removed, whole);
                self.routes = present.into_keys().collect();
            }
            SECRET => {
                let fingerprints = decode_all(resources, |secret: Secret| {
                    let mut hasher = DefaultHasher::new();
                    secret.encode_to_vec().hash(&mut hasher);
                    (secret.name, hasher.finish())
                })?;
                replace(&mut self.secrets, fingerprints, removed, whole);
            }
            other => return Err(format!("kodiak-xds-sim does not know resources of type {other}")),
        }
        // What the proxy no longer asks for is forgotten, as Envoy drops it.
        let (endpoints, routes, secrets) = (self.wanted(ENDPOINT), self.wanted(ROUTE), self.wanted(SECRET));
        self.endpoints.retain(|name, _| endpoints.contains(name));
        self.routes.retain(|name| routes.contains(name));
        self.secrets.retain(|name, _| secrets.contains(name));
        Ok(())
    }

    /// The names of `type_url` the proxy asks for, given what it holds:
    /// none for the wildcard types (Cluster, Listener).
    pub fn wanted(&self, type_url: &str) -> BTreeSet<String> {
        match type_url {
            ENDPOINT => self.clusters.values().filter_map(|cluster| cluster.eds.clone()).collect(),
            ROUTE => self.listeners.values().flat_map(|listener| listener.routes.iter().cloned()).collect(),
            SECRET => (self.clusters.values().flat_map(|cluster| &cluster.secrets))
                .chain(self.listeners.values().flat_map(|listener| &listener.secrets))
                .cloned()
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Whether the proxy holds a complete configuration: clusters and
    /// listeners, and every endpoint set, route configuration and secret
    /// they name.
    pub fn complete(&self) -> bool {
        self.clusters_seen
            && self.listeners_seen
            && self.wanted(ENDPOINT).iter().all(|name| self.endpoints.contains_key(name))
            && self.wanted(ROUTE).iter().all(|name| self.routes.contains(name))
            && self.wanted(SECRET).iter().all(|name| self.secrets.contains_key(name))
    }

    /// Whether some cluster connects with this timeout.
    pub fn has_connect_timeout(&self, millis: u64) -> bool {
        self.clusters.values().any(|cluster| cluster.connect_timeout_ms == Some(millis))
    }

    /// How many endpoints the proxy holds for a ClusterLoadAssignment.
    pub fn endpoint_count(&self, assignment: &str) -> Option<usize> {
        self.endpoints.get(assignment).copied()
    }

    /// The fingerprint of a secret's content.
    pub fn secret(&self, name: &str) -> Option<u64> {
        self.secrets.get(name).copied()
    }

    #[cfg(test)]
    fn resource_count(&self) -> usize {
        self.clusters.len() + self.listeners.len() + self.endpoints.len() + self.routes.len() + self.secrets.len()
    }
}

fn decode_all<M: Message + Name + Default, V>(
    resources: &[Incoming<'_>],
    view: impl Fn(M) -> (String, V),
) -> Result<Vec<(String, V)>, String> {
    resources
        .iter()
        .map(|incoming| {
            let message = decode::<M>(incoming.body).map_err(|error| format!("resource {}: {error}", incoming.name))?;
            Ok(view(message))
        })
        .collect()
}

fn decode<M: Message + Name + Default>(any: &Any) -> Result<M, String> {
    if any.type_url != M::type_url() {
        return Err(format!("expected {}, got {}", M::type_url(), any.type_url));
    }
    M::decode(any.value.as_slice()).map_err(|error| format!("cannot decode {}: {error}", M::full_name()))
}

fn replace<V>(held: &mut HashMap<String, V>, incoming: Vec<(String, V)>, removed: &[String], whole: bool) {
    if whole {
        held.clear();
    }
    for name in removed {
        held.remove(name);
    }
    held.extend(incoming);
}

fn cluster_view(cluster: &Cluster) -> ClusterView {
    let eds = (cluster.cluster_discovery_type
        == Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32)))
    .then(|| match cluster.eds_cluster_config.as_ref().map(|eds| eds.service_name.as_str()) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => cluster.name.clone(),
    });
    let connect_timeout_ms = cluster.connect_timeout.as_ref().map(|duration| {
        u64::try_from(duration.seconds).unwrap_or(0) * 1000 + u64::try_from(duration.nanos).unwrap_or(0) / 1_000_000
    });
    let mut secrets = Vec::new();
    let sockets = cluster
        .transport_socket
        .iter()
        .chain(cluster.transport_socket_matches.iter().filter_map(|m| m.transport_socket.as_ref()));
    for socket in sockets {
        secrets.extend(socket_secrets::<UpstreamTlsContext>(socket, |context| context.common_tls_context.as_ref()));
    }
    ClusterView { eds, connect_timeout_ms, secrets }
}

fn listener_view(listener: &Listener) -> ListenerView {
    let mut view = ListenerView::default();
    for chain in listener.filter_chains.iter().chain(&listener.default_filter_chain) {
        add_chain(&mut view, chain);
    }
    view
}

fn add_chain(view: &mut ListenerView, chain: &FilterChain) {
    if let Some(socket) = &chain.transport_socket {
        view.secrets
            .extend(socket_secrets::<DownstreamTlsContext>(socket, |context| context.common_tls_context.as_ref()));
    }
    for network_filter in &chain.filters {
        let Some(filter::ConfigType::TypedConfig(any)) = &network_filter.config_type else { continue };
        if any.type_url != HttpConnectionManager::type_url() {
            continue;
        }
        if let Ok(manager) = decode::<HttpConnectionManager>(any)
            && let Some(RouteSpecifier::Rds(rds)) = manager.route_specifier
        {
            view.routes.push(rds.route_config_name);
        }
    }
}

/// The SDS secrets a TLS transport socket names.
fn socket_secrets<C: Message + Name + Default>(
    socket: &TransportSocket,
    common: impl Fn(&C) -> Option<&CommonTlsContext>,
) -> Vec<String> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else { return Vec::new() };
    let Ok(context) = decode::<C>(any) else { return Vec::new() };
    let Some(common) = common(&context) else { return Vec::new() };
    let mut names: Vec<String> = common.tls_certificate_sds_secret_configs.iter().map(|sds| sds.name.clone()).collect();
    match &common.validation_context_type {
        Some(common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(sds)) => {
            names.push(sds.name.clone());
        }
        Some(common_tls_context::ValidationContextType::CombinedValidationContext(combined)) => {
            names.extend(combined.validation_context_sds_secret_config.iter().map(|sds| sds.name.clone()));
        }
        _ => {}
    }
    names
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::TransportSocket;
    use envoy_types::pb::envoy::config::endpoint::v3::{LbEndpoint, LocalityLbEndpoints};
    use envoy_types::pb::envoy::config::listener::v3::Filter;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
    use envoy_types::pb::google::protobuf::Duration as ProtoDuration;

    use super::*;

    fn any<M: Message + Name>(message: &M) -> Any {
        Any { type_url: M::type_url(), value: message.encode_to_vec() }
    }

    fn tls_socket<C: Message + Name>(context: &C) -> Option<TransportSocket> {
        Some(TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(context))),
        })
    }

    fn common(certificate: &str, validation: &str) -> Option<CommonTlsContext> {
        Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                name: certificate.into(),
                ..Default::default()
            }],
            validation_context_type: Some(common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                SdsSecretConfig { name: validation.into(), ..Default::default() },
            )),
            ..Default::default()
        })
    }

    fn eds_cluster(name: &str, connect_ms: i64) -> Any {
        any(&Cluster {
            name: name.into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32)),
            connect_timeout: Some(ProtoDuration {
                seconds: connect_ms / 1000,
                nanos: (connect_ms % 1000) as i32 * 1_000_000,
            }),
            transport_socket: tls_socket(&UpstreamTlsContext {
                common_tls_context: common("identity", "ca"),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn static_cluster(name: &str) -> Any {
        any(&Cluster { name: name.into(), ..Default::default() })
    }

    fn rds_listener(name: &str, route: &str) -> Any {
        let manager = HttpConnectionManager {
            route_specifier: Some(RouteSpecifier::Rds(Rds { route_config_name: route.into(), ..Default::default() })),
            ..Default::default()
        };
        let filter = Filter { name: "hcm".into(), config_type: Some(filter::ConfigType::TypedConfig(any(&manager))) };
        any(&Listener {
            name: name.into(),
            filter_chains: vec![FilterChain {
                filters: vec![filter],
                transport_socket: tls_socket(&DownstreamTlsContext {
                    common_tls_context: common("identity", "ca"),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn assignment(name: &str, endpoints: usize) -> Any {
        any(&ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint::default(); endpoints],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn apply(
        config: &mut ProxyConfig,
        type_url: &str,
        resources: &[Any],
        removed: &[&str],
        whole: bool,
    ) -> Result<(), String> {
        let incoming: Vec<Incoming<'_>> = resources.iter().map(|body| Incoming { name: "", body }).collect();
        let removed: Vec<String> = removed.iter().map(|name| (*name).to_owned()).collect();
        config.apply(type_url, &incoming, &removed, whole)
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_proxy_asks_for_what_its_clusters_and_listeners_name_and_is_complete_once_it_holds_it() {
        let mut config = ProxyConfig::default();
        apply(&mut config, CLUSTER, &[eds_cluster("backend", 5000), static_cluster("inbound:8080")], &[], true)
            .unwrap();
        assert_eq!(config.wanted(ENDPOINT), names(&["backend"]), "static clusters need no endpoints");
        assert!(!config.complete(), "no listeners yet");
        apply(&mut config, LISTENER, &[rds_listener("outbound:backend", "outbound:backend")], &[], true).unwrap();
        assert_eq!(config.wanted(ROUTE), names(&["outbound:backend"]));
        assert_eq!(config.wanted(SECRET), names(&["ca", "identity"]));
        apply(&mut config, ENDPOINT, &[assignment("backend", 2)], &[], false).unwrap();
        apply(
            &mut config,
            ROUTE,
            &[any(&RouteConfiguration { name: "outbound:backend".into(), ..Default::default() })],
            &[],
            false,
        )
        .unwrap();
        assert!(!config.complete(), "no secrets yet");
        let secret = |name: &str| any(&Secret { name: name.into(), ..Default::default() });
        apply(&mut config, SECRET, &[secret("identity"), secret("ca")], &[], false).unwrap();
        assert!(config.complete());
        assert_eq!((config.endpoint_count("backend"), config.has_connect_timeout(5000)), (Some(2), true));
        assert!(config.secret("identity").is_some());
        assert_eq!(config.resource_count(), 7);
    }

    #[test]
    fn a_whole_response_replaces_a_type_and_what_is_no_longer_named_is_dropped() {
        let mut config = ProxyConfig::default();
        apply(&mut config, CLUSTER, &[eds_cluster("a", 1000), eds_cluster("b", 1000)], &[], true).unwrap();
        apply(&mut config, ENDPOINT, &[assignment("a", 1), assignment("b", 3)], &[], false).unwrap();
        apply(&mut config, CLUSTER, &[eds_cluster("b", 2500)], &[], true).unwrap();
        assert_eq!(config.wanted(ENDPOINT), names(&["b"]));
        assert_eq!((config.endpoint_count("a"), config.endpoint_count("b")), (None, Some(3)));
        assert!(config.has_connect_timeout(2500) && !config.has_connect_timeout(1000));
    }

    #[test]
    fn a_delta_response_removes_what_it_lists() {
        let mut config = ProxyConfig::default();
        apply(&mut config, CLUSTER, &[eds_cluster("a", 1000), eds_cluster("b", 1000)], &[], false).unwrap();
        apply(&mut config, CLUSTER, &[], &["a"], false).unwrap();
        assert_eq!(config.wanted(ENDPOINT), names(&["b"]));
    }

    #[test]
    fn a_response_with_a_resource_that_does_not_decode_changes_nothing() {
        let mut config = ProxyConfig::default();
        apply(&mut config, CLUSTER, &[eds_cluster("a", 1000)], &[], true).unwrap();
        let wrong = any(&Listener { name: "not a cluster".into(), ..Default::default() });
        let error = apply(&mut config, CLUSTER, &[eds_cluster("b", 1000), wrong], &[], true).unwrap_err();
        assert!(error.contains("expected type.googleapis.com/envoy.config.cluster.v3.Cluster"), "{error}");
        assert_eq!(config.wanted(ENDPOINT), names(&["a"]));
        let unknown = apply(&mut config, "type.googleapis.com/some.Other", &[], &[], false).unwrap_err();
        assert!(unknown.contains("does not know resources of type"), "{unknown}");
    }
}
