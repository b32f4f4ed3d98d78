//! MeshTCPRoute: where a caller's outbound listener sends each TCP
//! connection toward a service, as a weighted split between services and
//! service subsets.
//!
//! The conf's one rule lists `backendRefs` with weights: the outbound
//! listener's TCP proxy sends each new connection to one of them, chosen
//! at random by weight. Backends of weight 0 are left out; references to
//! what Kodiak does not route to yet (MeshExternalService,
//! MeshMultiZoneService, MeshService by labels) are left out too, and a
//! conf left with no backend sends to the service itself. Any service may
//! be a backend, whatever its protocol, even one no Dataplane serves yet
//! (its connections then fail until one does).
//!
//! On a service that speaks HTTP, a MeshTCPRoute applies only when the
//! caller has no MeshHTTPRoute toward it: the outbound listener is then a
//! TCP proxy (see [`replaces_http_routes`]).

use std::collections::BTreeSet;

use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use serde_json::Value;

use super::mesh_http_route::{BackendRef, read_backend_ref, resolves, split};

pub use super::mesh_http_route::{BackendCluster, subset_resources};

/// A merged MeshTCPRoute conf toward one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Conf {
    /// The backends of the conf's rule (the last one, should the merge
    /// leave several); empty: the destination itself.
    pub backend_refs: Vec<BackendRef>,
}

impl Conf {
    /// The services the conf sends to, besides the destination: what the
    /// outbound depends on beyond its own service.
    pub fn backend_services(&self) -> BTreeSet<&str> {
        self.backend_refs.iter().filter_map(|backend| Some(backend.cluster.as_ref()?.service.as_str())).collect()
    }
}

/// Reads a merged MeshTCPRoute `default` (`{"rules": [{"default":
/// {"backendRefs": [...]}}]}`); what is not a backend reference is left out.
pub fn read(conf: &Value) -> Conf {
    let rule = conf["rules"].as_array().and_then(|rules| rules.last());
    let refs = rule.and_then(|rule| rule["default"]["backendRefs"].as_array());
    Conf { backend_refs: refs.into_iter().flatten().filter_map(read_backend_ref).collect() }
}

/// Where connections to `destination` go under `conf`, with weights: never
/// empty.
pub fn backends(conf: &Conf, destination: &str) -> Vec<(BackendCluster, u32)> {
    let backends = if resolves(&conf.backend_refs) { split(&conf.backend_refs, |_| true) } else { Vec::new() };
    if backends.is_empty() { vec![(BackendCluster::service(destination), 1)] } else { backends }
}

/// Points the TCP proxy of the caller's outbound listener toward
/// `destination` at the conf's backends: one cluster, or weighted
/// clusters. Returns the clusters it now uses (each once, sorted), which
/// the caller's proxy must have.
pub fn apply_to_tcp_proxy(conf: &Conf, destination: &str, proxy: &mut TcpProxy) -> Vec<BackendCluster> {
    let backends = backends(conf, destination);
    proxy.cluster_specifier = Some(match backends.as_slice() {
        [(cluster, _)] => tcp_proxy::ClusterSpecifier::Cluster(cluster.name()),
        _ => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: backends
                .iter()
                .map(|(cluster, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                    name: cluster.name(),
                    weight: *weight,
                    ..Default::default()
                })
                .collect(),
        }),
    });
    let mut clusters: Vec<BackendCluster> = backends.into_iter().map(|(cluster, _)| cluster).collect();
    clusters.sort();
    clusters
}

/// Whether the outbound listener toward a service that speaks HTTP is a TCP
/// proxy under the caller's MeshTCPRoute conf rather than HTTP routes:
/// only when the caller has a MeshTCPRoute conf toward it and no
/// MeshHTTPRoute conf.
pub fn replaces_http_routes(has_tcp_route: bool, has_http_route: bool) -> bool {
    has_tcp_route && !has_http_route
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::envoy;
    use kodiak_xds_server::Resource;
    use serde_json::json;

    fn conf(refs: Value) -> Conf {
        read(&json!({"rules": [{"default": {"backendRefs": refs}}]}))
    }

    fn proxy_json(conf: &Conf) -> (Value, Vec<String>) {
        let mut proxy = envoy::tcp_proxy("db".into(), "db");
        let clusters = apply_to_tcp_proxy(conf, "db", &mut proxy);
        let rendered = crate::render(&Resource::new("db", &proxy));
        (rendered, clusters.iter().map(BackendCluster::name).collect())
    }

    #[test]
    fn reads_the_backends_of_the_rule() {
        let read = conf(json!([
            {"kind": "MeshService", "name": "db", "weight": 3},
            {"kind": "MeshServiceSubset", "name": "db", "tags": {"version": "v2"}},
            "not a reference"
        ]));
        let v2 = BackendCluster { service: "db".into(), tags: BTreeMap::from([("version".into(), "v2".into())]) };
        assert_eq!(
            read.backend_refs,
            [
                BackendRef { cluster: Some(BackendCluster::service("db")), weight: 3 },
                BackendRef { cluster: Some(v2), weight: 1 }
            ]
        );
        assert_eq!(read.backend_services(), BTreeSet::from(["db"]));
        assert_eq!(super::read(&json!({})), Conf::default());
        assert_eq!(super::read(&json!({"rules": [{"default": {}}]})), Conf::default());
    }

    #[test]
    fn a_split_becomes_weighted_clusters() {
        let v2 = BackendCluster { service: "db".into(), tags: BTreeMap::from([("version".into(), "v2".into())]) };
        let (proxy, clusters) = proxy_json(&conf(json!([
            {"kind": "MeshServiceSubset", "name": "db", "tags": {"version": "v2"}, "weight": 80},
            {"kind": "MeshService", "name": "db-next", "weight": 20},
            {"kind": "MeshService", "name": "db-old", "weight": 0}
        ])));
        assert_eq!(
            proxy,
            json!({"statPrefix": "db", "weightedClusters": {"clusters": [
                {"name": v2.name(), "weight": 80}, {"name": "db-next", "weight": 20}]}})
        );
        let mut expected = vec![v2.name(), "db-next".to_owned()];
        expected.sort();
        assert_eq!(clusters, expected);
    }

    #[test]
    fn one_backend_is_one_cluster_and_none_is_the_service_itself() {
        let (proxy, clusters) = proxy_json(&conf(json!([{"kind": "MeshService", "name": "db-next", "weight": 5}])));
        assert_eq!(proxy, json!({"statPrefix": "db", "cluster": "db-next"}));
        assert_eq!(clusters, ["db-next"]);
        for nothing in [
            json!([]),
            json!([{"kind": "MeshExternalService", "name": "x"}]),
            json!([{"kind": "MeshService", "name": "db-next", "weight": 0}]),
        ] {
            let (proxy, clusters) = proxy_json(&conf(nothing.clone()));
            assert_eq!(proxy, json!({"statPrefix": "db", "cluster": "db"}), "{nothing}");
            assert_eq!(clusters, ["db"]);
        }
    }

    #[test]
    fn tcp_routes_take_an_http_service_only_without_http_routes() {
        assert!(replaces_http_routes(true, false));
        assert!(!replaces_http_routes(true, true));
        assert!(!replaces_http_routes(false, false));
    }
}
