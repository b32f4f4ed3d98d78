//! Where routes send traffic: backend references as a route conf names
//! them, the clusters they become, and weighted splits between them.
//! MeshHTTPRoute and MeshTCPRoute share all of it.

use std::collections::BTreeMap;

use base64::Engine;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use kodiak_xds_server::Resource;
use prost::Message;
use serde_json::Value;

use crate::services::ServiceView;
use crate::{envoy, names};

/// The tag that names an instance's service.
use kodiak_api::tags::SERVICE_TAG;

/// A set of instances a route can send traffic to: every instance of
/// `service`, or only those whose tags include all of `tags` (a subset).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendCluster {
    /// The `kuma.io/service` of the instances.
    pub service: String,
    /// Tags every instance of the subset carries (never `kuma.io/service`);
    /// empty for the whole service.
    pub tags: BTreeMap<String, String>,
}

impl BackendCluster {
    /// The whole of `service`.
    pub fn service(service: &str) -> BackendCluster {
        BackendCluster { service: service.to_owned(), tags: BTreeMap::new() }
    }

    /// Whether this is a subset, which needs a cluster of its own; the whole
    /// service uses the service's shared cluster.
    pub fn is_subset(&self) -> bool {
        !self.tags.is_empty()
    }

    /// The Envoy cluster name: the service's cluster name for the whole
    /// service, else `<service>-<16 hex digits>`, the first 8 bytes of the
    /// SHA-256 of the subset's tags with `kuma.io/service` (each key then its
    /// value, keys in order). Kuma names subset clusters the same way, so
    /// MeshProxyPatch manifests that name them carry over.
    pub fn name(&self) -> String {
        if !self.is_subset() {
            return names::service_cluster(&self.service);
        }
        let mut tags: BTreeMap<&str, &str> = self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        tags.insert(SERVICE_TAG, &self.service);
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for (key, value) in tags {
            hash.update(key.as_bytes());
            hash.update(value.as_bytes());
        }
        let digest = hash.finish();
        let hex: String = digest.as_ref()[..8].iter().map(|byte| format!("{byte:02x}")).collect();
        format!("{}-{hex}", self.service)
    }
}

/// One entry of a rule's `backendRefs`: where to send a share (`weight`)
/// of the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendRef {
    /// `None` when the reference names something Kodiak does not route to
    /// yet: a MeshExternalService, a MeshMultiZoneService, a MeshService
    /// picked by labels instead of by name, or a service of another mesh.
    pub cluster: Option<BackendCluster>,
    /// `weight`, 1 when left out.
    pub weight: u32,
}

/// Reads one backend reference (a targetRef with `weight`); `None` when
/// it is not an object.
pub(crate) fn read_backend_ref(value: &Value) -> Option<BackendRef> {
    let object = value.as_object()?;
    let weight = match object.get("weight") {
        Some(weight) => weight.as_u64().and_then(|weight| u32::try_from(weight).ok()).unwrap_or(1),
        None => 1,
    };
    Some(BackendRef { cluster: read_cluster(value), weight })
}

/// The instances a MeshService or MeshServiceSubset reference picks.
fn read_cluster(target: &Value) -> Option<BackendCluster> {
    if !matches!(target["kind"].as_str(), Some("MeshService" | "MeshServiceSubset")) {
        return None;
    }
    if target.get("mesh").is_some_and(|mesh| !mesh.is_null()) {
        return None;
    }
    let service = target["name"].as_str().filter(|name| !name.is_empty())?;
    let tags = target["tags"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.as_str() != SERVICE_TAG)
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
        .collect();
    Some(BackendCluster { service: service.to_owned(), tags })
}

/// A weighted split over `refs`: the references Kodiak can route to and
/// `usable` accepts, without those of weight 0, each cluster once (the
/// weights of repeated ones added up), in the order they first appear.
/// Empty when nothing is left.
pub(crate) fn split(refs: &[BackendRef], usable: impl Fn(&BackendCluster) -> bool) -> Vec<(BackendCluster, u32)> {
    let mut split: Vec<(BackendCluster, u32)> = Vec::new();
    for backend in refs.iter().filter(|backend| backend.weight > 0) {
        let Some(cluster) = backend.cluster.as_ref().filter(|cluster| usable(cluster)) else { continue };
        match split.iter_mut().find(|(known, _)| known == cluster) {
            Some((_, weight)) => *weight = weight.saturating_add(backend.weight),
            None => split.push((cluster.clone(), backend.weight)),
        }
    }
    split
}

/// Whether a reference list names anything Kodiak can route to (whatever
/// the weights): a list that does not leaves the traffic with the
/// destination itself.
pub(crate) fn resolves(refs: &[BackendRef]) -> bool {
    refs.iter().any(|backend| backend.cluster.is_some())
}

/// The cluster and endpoint assignment of `backend`, a subset of a
/// service: `service_cluster` (the service's own cluster, as built for the
/// caller's policies toward the service) named [`BackendCluster::name`],
/// and an assignment of the instances of `service` (the service's view)
/// whose tags include the subset's. The caller adds both to every proxy
/// whose routes use the subset. For the whole service it is the service's
/// own cluster and assignment.
pub fn subset_resources(
    backend: &BackendCluster,
    service_cluster: &Resource,
    service: &ServiceView,
) -> (Arc<Resource>, Arc<Resource>) {
    let name = backend.name();
    // A copy of the service's cluster but for its name, whatever settings
    // and policies it carries (mTLS toward the service's identity among them).
    let mut cluster = Cluster::decode(service_cluster.body.value.as_slice()).unwrap_or_default();
    cluster.name = name.clone();
    let subset = service.subset(&backend.tags);
    let assignment =
        envoy::load_assignment(&name, subset.endpoints.iter().map(|endpoint| (endpoint.address, endpoint.port)));
    (Resource::new(name.clone(), &cluster), Resource::new(name, &assignment))
}

/// A route name from the JSON of a rule's matches, as Kuma names routes:
/// the standard base64 of its SHA-256.
pub(crate) fn hash_name(json: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, json.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::dataplane;
    use serde_json::json;

    fn subset(service: &str, tags: &[(&str, &str)]) -> BackendCluster {
        BackendCluster {
            service: service.into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn subset_clusters_are_named_by_a_hash_of_their_tags() {
        assert_eq!(BackendCluster::service("backend").name(), "backend");
        let v1 = subset("backend", &[("version", "v1")]);
        // The first 8 bytes of sha256("kuma.io/servicebackendversionv1") (openssl dgst -sha256).
        assert_eq!(v1.name(), "backend-154693772bc47249");
        assert_ne!(v1.name(), subset("backend", &[("version", "v2")]).name());
        assert_ne!(v1.name(), subset("other", &[("version", "v1")]).name());
        let two = subset("backend", &[("zone", "a"), ("version", "v1")]);
        assert_eq!(two.name(), subset("backend", &[("version", "v1"), ("zone", "a")]).name());
    }

    #[test]
    fn references_read_leniently() {
        let read = |value: Value| read_backend_ref(&value).unwrap();
        assert_eq!(
            read(json!({"kind": "MeshService", "name": "b"})),
            BackendRef { cluster: Some(BackendCluster::service("b")), weight: 1 }
        );
        assert_eq!(
            read(json!({"kind": "MeshServiceSubset", "name": "b", "tags": {"version": "v1", "kuma.io/service": "x"},
                "weight": 90})),
            BackendRef { cluster: Some(subset("b", &[("version", "v1")])), weight: 90 }
        );
        assert_eq!(read(json!({"kind": "MeshExternalService", "name": "e"})).cluster, None);
        assert_eq!(read(json!({"kind": "MeshService", "labels": {"a": "b"}})).cluster, None);
        assert_eq!(read(json!({"kind": "MeshService", "name": "b", "mesh": "other"})).cluster, None);
        assert_eq!(read(json!({"kind": "MeshService", "name": "b", "weight": -3})).weight, 1);
        assert_eq!(read_backend_ref(&json!("b")), None);
    }

    #[test]
    fn splits_drop_zero_weights_and_unusable_backends_and_add_up_repeats() {
        let a = BackendRef { cluster: Some(BackendCluster::service("a")), weight: 3 };
        let b = BackendRef { cluster: Some(BackendCluster::service("b")), weight: 0 };
        let c = BackendRef { cluster: Some(BackendCluster::service("c")), weight: 1 };
        let external = BackendRef { cluster: None, weight: 5 };
        let refs = [a.clone(), b, external, c, a];
        assert_eq!(split(&refs, |_| true), [(BackendCluster::service("a"), 6), (BackendCluster::service("c"), 1)]);
        assert_eq!(split(&refs, |cluster| cluster.service != "a"), [(BackendCluster::service("c"), 1)]);
        assert!(resolves(&refs));
        assert!(!resolves(&[BackendRef { cluster: None, weight: 1 }]));
    }

    #[test]
    fn a_subset_cluster_is_the_service_cluster_with_matching_endpoints() {
        let v1 = dataplane(
            "{type: Dataplane, mesh: default, name: b-1, networking: {address: 127.0.0.3, inbound: [
                {port: 10001, tags: {kuma.io/service: backend, kuma.io/protocol: grpc, version: v1}}]}}",
        );
        let v2 = dataplane(
            "{type: Dataplane, mesh: default, name: b-2, networking: {address: 127.0.0.4, inbound: [
                {port: 10001, tags: {kuma.io/service: backend, kuma.io/protocol: grpc, version: v2}}]}}",
        );
        let mut view = crate::services([&v1, &v2])["backend"].clone();
        view.mtls = Some("default".into());
        let shared = crate::service_resources("backend", &view);
        let backend = subset("backend", &[("version", "v2")]);
        let (cluster, assignment) = subset_resources(&backend, &shared.cluster, &view);
        let mut expected = crate::render(&shared.cluster);
        expected["name"] = json!(backend.name());
        assert_eq!(crate::render(&cluster), expected, "same settings, mTLS toward the service's identity");
        assert_eq!(
            (cluster.name.as_str(), assignment.name.as_str()),
            (backend.name().as_str(), backend.name().as_str())
        );
        assert_eq!(
            crate::render(&assignment),
            json!({"clusterName": backend.name(), "endpoints": [{"lbEndpoints": [{"endpoint": {"address":
                {"socketAddress": {"address": "127.0.0.4", "portValue": 10001}}}}]}]})
        );
        let (whole, endpoints) = subset_resources(&BackendCluster::service("backend"), &shared.cluster, &view);
        assert_eq!((whole.version.as_str(), whole.name.as_str()), (shared.cluster.version.as_str(), "backend"));
        assert_eq!(endpoints.version, shared.endpoints.version, "the whole service: all its endpoints");
    }
}
