//! One proxy's snapshot: its own inbound and outbound listeners and inbound
//! clusters, plus the shared resources of every service it calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kodiak_api::dataplane_view::DataplaneView;
use kodiak_policy::traffic_permission::InboundPermissions;
use kodiak_xds_server::{Resource, Snapshot, type_url};

use crate::inbound::InboundMtls;
use crate::policies::mesh_access_log::{self, LogContext};
use crate::policies::mesh_fault_injection;
use crate::policies::mesh_http_route::subset_resources;
use crate::policies::mesh_proxy_patch::{self, PatchError};
use crate::policies::{ProxyPolicies, ToPolicies};
use crate::security::{self, ProxySecurity};
use crate::service::{ServiceResources, service_resources};
use crate::services::ServiceView;
use crate::shared::SharedServices;
use crate::{inbound, names, outbound};

/// Everything one proxy gets, by xDS type, each list sorted by name.
#[derive(Debug, Clone, Default)]
pub struct ProxyResources {
    /// The SDS secrets of mesh mTLS (none when it is off).
    pub secrets: Vec<Arc<Resource>>,
    pub clusters: Vec<Arc<Resource>>,
    pub endpoints: Vec<Arc<Resource>>,
    pub listeners: Vec<Arc<Resource>>,
    pub routes: Vec<Arc<Resource>>,
    /// The services the proxy's routes send to (whether it also calls them
    /// directly or not): their changes reach the proxy too, subsets of their
    /// instances among them.
    pub route_backends: BTreeSet<String>,
}

impl ProxyResources {
    /// The lists by type URL, in make-before-break order (SDS, CDS, EDS, LDS, RDS).
    pub fn by_type(&self) -> [(&'static str, &[Arc<Resource>]); 5] {
        [
            (type_url::SECRET, &self.secrets),
            (type_url::CLUSTER, &self.clusters),
            (type_url::ENDPOINT, &self.endpoints),
            (type_url::LISTENER, &self.listeners),
            (type_url::ROUTE, &self.routes),
        ]
    }

    pub fn into_snapshot(self, generation: u64) -> Snapshot {
        Snapshot::new(generation)
            .with(type_url::SECRET, self.secrets)
            .with(type_url::CLUSTER, self.clusters)
            .with(type_url::ENDPOINT, self.endpoints)
            .with(type_url::LISTENER, self.listeners)
            .with(type_url::ROUTE, self.routes)
    }
}

/// The snapshot of `dataplane`'s proxy, numbered `generation`; see
/// [`proxy_resources`].
pub fn proxy_snapshot(
    dataplane: &DataplaneView,
    services: &BTreeMap<String, Arc<ServiceResources>>,
    security: Option<&ProxySecurity>,
    generation: u64,
) -> Snapshot {
    proxy_resources(dataplane, services, security).into_snapshot(generation)
}

/// Builds the resources of `dataplane`'s proxy from the mesh's shared
/// service resources (see [`service_resources`]), without policies.
pub fn proxy_resources(
    dataplane: &DataplaneView,
    services: &BTreeMap<String, Arc<ServiceResources>>,
    security: Option<&ProxySecurity>,
) -> ProxyResources {
    build(dataplane, security, &ProxyPolicies::default(), &mut Prebuilt(services))
}

/// Where a proxy's generation takes the services it calls from.
trait ServiceSource {
    /// The resources of `name` for callers whose policies toward it are `to`.
    fn service(&mut self, name: &str, to: &ToPolicies) -> Arc<ServiceResources>;
    /// What is known of `name`, for clusters of a subset of its instances.
    fn view(&self, name: &str) -> Option<&ServiceView>;
}

impl ServiceSource for SharedServices {
    fn service(&mut self, name: &str, to: &ToPolicies) -> Arc<ServiceResources> {
        self.get(name, to)
    }

    fn view(&self, name: &str) -> Option<&ServiceView> {
        self.views().get(name)
    }
}

/// Services built beforehand, without policies.
struct Prebuilt<'a>(&'a BTreeMap<String, Arc<ServiceResources>>);

impl ServiceSource for Prebuilt<'_> {
    fn service(&mut self, name: &str, _: &ToPolicies) -> Arc<ServiceResources> {
        self.0.get(name).cloned().unwrap_or_else(|| Arc::new(service_resources(name, &ServiceView::default())))
    }

    fn view(&self, _: &str) -> Option<&ServiceView> {
        None
    }
}

/// Builds the resources of `dataplane`'s proxy under its `policies`, taking
/// the services it calls from `services`, where proxies with the same
/// policies toward a service share its resources. MeshProxyPatch
/// modifications come last; those that do not apply to this proxy leave
/// what they target unchanged and come back as errors.
///
/// Every inbound gets a listener, ready or not: readiness only decides
/// whether callers are sent there. An outbound to a service `services`
/// does not hold (no instance registered yet) still gets a TCP listener,
/// a cluster and an empty assignment, so the application's calls fail
/// fast and start working once the service appears. When two inbounds or
/// outbounds share an address and port, the first one wins.
///
/// `security` is mesh mTLS for this proxy, `None` when the mesh has it off.
/// With it, the inbound listeners accept mTLS callers (and plaintext ones
/// too when PERMISSIVE) under the inbounds' permissions, and the proxy gets
/// its certificate and trusted CAs as the SDS secrets its mTLS inbounds and
/// clusters use (only when something uses them: Envoy asks for a secret only
/// once a resource names it). Whether a cluster uses mTLS is the service's
/// choice ([`ServiceView::mtls`]); give such services only to proxies that
/// get `security` too, since nothing else serves the secrets they name.
pub fn proxy_resources_with_policies(
    dataplane: &DataplaneView,
    services: &mut SharedServices,
    security: Option<&ProxySecurity>,
    policies: &ProxyPolicies,
) -> (ProxyResources, Vec<PatchError>) {
    let mut resources = build(dataplane, security, policies, services);
    let errors = match &policies.patch {
        Some(patch) => mesh_proxy_patch::apply(patch, &mut resources, &mesh_proxy_patch::listener_tags(dataplane)),
        None => Vec::new(),
    };
    (resources, errors)
}

fn build(
    dataplane: &DataplaneView,
    security: Option<&ProxySecurity>,
    policies: &ProxyPolicies,
    services: &mut dyn ServiceSource,
) -> ProxyResources {
    let mut listeners: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
    let mut clusters: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
    let mut endpoints: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
    let mut routes: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
    let mut route_backends: BTreeSet<String> = BTreeSet::new();

    let no_permissions = InboundPermissions::default();
    let mut uses_secrets = false;
    // The clusters of OpenTelemetry access-log collectors.
    let mut log_collectors = Vec::new();
    for (i, inbound) in dataplane.inbounds.iter().enumerate() {
        let name = names::inbound_listener(&inbound.address, inbound.port);
        if listeners.contains_key(&name) {
            continue;
        }
        let mtls = security.map(|security| InboundMtls {
            mesh: &dataplane.mesh,
            mode: security.mode,
            permissions: security.permissions.get(i).unwrap_or(&no_permissions),
        });
        uses_secrets |= mtls.is_some();
        let from = policies.from(i);
        let mut listener = inbound::listener(inbound, mtls, &from);
        if let Some(access_log) = &from.access_log {
            let context = LogContext::inbound(dataplane, inbound, policies.access_log_pipe.clone());
            mesh_access_log::apply_to_listener(access_log, &context, &mut listener);
            log_collectors.extend(mesh_access_log::clusters(access_log));
        }
        listeners.insert(name.clone(), Resource::new(name, &listener));
        let cluster = names::inbound_cluster(&inbound.service_address, inbound.service_port);
        clusters.entry(cluster.clone()).or_insert_with(|| Resource::new(cluster, &inbound::cluster(inbound, &from)));
    }

    let caller_tags = policies
        .tag_callers
        .then(|| mesh_fault_injection::tags_header_value(&mesh_fault_injection::dataplane_tags(dataplane)));
    for outbound in &dataplane.outbounds {
        let name = names::outbound_listener(&outbound.address, outbound.port);
        if listeners.contains_key(&name) {
            continue;
        }
        let to = policies.to(&outbound.service);
        let service = services.service(&outbound.service, to);
        let mut listener = outbound::listener(outbound, &service, to, caller_tags.as_deref());
        if let Some(access_log) = policies.access_log_to(&outbound.service) {
            let pipe = policies.access_log_pipe.clone();
            let context = LogContext::outbound(dataplane, &outbound.service, service.protocol, pipe);
            mesh_access_log::apply_to_listener(access_log, &context, &mut listener);
            log_collectors.extend(mesh_access_log::clusters(access_log));
        }
        listeners.insert(name.clone(), Resource::new(name, &listener));
        uses_secrets |= service.mtls;
        clusters.entry(service.cluster.name.clone()).or_insert_with(|| service.cluster.clone());
        endpoints.entry(service.endpoints.name.clone()).or_insert_with(|| service.endpoints.clone());
        if let Some(route) = &service.route {
            routes.entry(route.name.clone()).or_insert_with(|| route.clone());
        }
        // What the routes send to, as built for this proxy's policies toward
        // each of those services.
        for backend in &service.backends {
            let target = services.service(&backend.service, policies.to(&backend.service));
            uses_secrets |= target.mtls;
            let (cluster, assignment) = if backend.is_subset() {
                let unknown = ServiceView::default();
                let view = services.view(&backend.service).unwrap_or(&unknown);
                subset_resources(backend, &target.cluster, view)
            } else {
                (target.cluster.clone(), target.endpoints.clone())
            };
            clusters.entry(cluster.name.clone()).or_insert(cluster);
            endpoints.entry(assignment.name.clone()).or_insert(assignment);
            route_backends.insert(backend.service.clone());
        }
    }

    for collector in log_collectors {
        clusters.entry(collector.name.clone()).or_insert_with(|| Resource::new(collector.name.clone(), &collector));
    }
    let secrets = match security {
        Some(security) if uses_secrets => security::secrets(&dataplane.mesh, security)
            .iter()
            .map(|secret| Resource::new(secret.name.clone(), secret))
            .collect(),
        _ => Vec::new(),
    };
    ProxyResources {
        secrets,
        clusters: clusters.into_values().collect(),
        endpoints: endpoints.into_values().collect(),
        listeners: listeners.into_values().collect(),
        routes: routes.into_values().collect(),
        route_backends,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::services;
    use crate::test_support::{dataplane, instance};

    fn caller(name: &str, address: &str) -> DataplaneView {
        dataplane(&format!(
            "{{type: Dataplane, mesh: default, name: {name}, networking: {{address: {address},
                inbound: [{{port: 10001, tags: {{kuma.io/service: web, kuma.io/protocol: http}}}}],
                outbound: [{{port: 20001, tags: {{kuma.io/service: backend}}}}]}}}}"
        ))
    }

    fn shared<'a>(dataplanes: impl IntoIterator<Item = &'a DataplaneView>) -> BTreeMap<String, Arc<ServiceResources>> {
        services(dataplanes)
            .iter()
            .map(|(name, view)| (name.clone(), Arc::new(service_resources(name, view))))
            .collect()
    }

    fn versions(resources: &ProxyResources) -> Vec<(String, String)> {
        resources
            .by_type()
            .iter()
            .flat_map(|(_, list)| list.iter())
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect()
    }

    #[test]
    fn proxies_share_the_service_resources() {
        let (web_1, web_2) = (caller("web-1", "127.0.0.2"), caller("web-2", "127.0.0.3"));
        let backend = instance("backend-1", "127.0.0.4", "backend", "http");
        let services = shared([&web_1, &web_2, &backend]);
        let (one, two) = (proxy_resources(&web_1, &services, None), proxy_resources(&web_2, &services, None));
        let backend_cluster = |r: &ProxyResources| r.clusters.iter().find(|c| c.name == "backend").unwrap().clone();
        assert!(Arc::ptr_eq(&backend_cluster(&one), &backend_cluster(&two)));
        assert!(Arc::ptr_eq(&one.endpoints[0], &two.endpoints[0]));
        assert!(Arc::ptr_eq(&one.routes[0], &two.routes[0]));
        assert!(Arc::ptr_eq(&one.routes[0], services["backend"].route.as_ref().unwrap()));
        // The listeners are each proxy's own: web-2's inbound listens elsewhere.
        assert_ne!(one.listeners[0].name, two.listeners[0].name);
    }

    #[test]
    fn versions_are_stable_across_rebuilds() {
        let web = caller("web-1", "127.0.0.2");
        let grpc = dataplane(
            "{type: Dataplane, mesh: default, name: backend-1, networking: {address: 127.0.0.4, inbound: [
                {port: 10001, tags: {kuma.io/service: backend, kuma.io/protocol: grpc}}]}}",
        );
        let build = || proxy_resources(&web, &shared([&web, &grpc]), None);
        let first = versions(&build());
        for _ in 0..20 {
            assert_eq!(versions(&build()), first);
        }
        assert!(first.iter().all(|(_, version)| version.len() == 16), "{first:?}");
    }

    #[test]
    fn a_new_endpoint_changes_only_the_assignment() {
        let web = caller("web-1", "127.0.0.2");
        let (b1, b2) = (
            instance("backend-1", "127.0.0.4", "backend", "http"),
            instance("backend-2", "127.0.0.5", "backend", "http"),
        );
        let before = shared([&web, &b1]);
        let after = shared([&web, &b1, &b2]);
        let (before, after) = (&before["backend"], &after["backend"]);
        assert_eq!(before.cluster.version, after.cluster.version);
        assert_eq!(before.route.as_ref().unwrap().version, after.route.as_ref().unwrap().version);
        assert_ne!(before.endpoints.version, after.endpoints.version);
    }

    fn security() -> ProxySecurity {
        ProxySecurity {
            mode: crate::MtlsMode::Strict,
            identity: crate::Identity { cert_chain_pem: "cert".into(), key_pem: "key".into() },
            ca_bundle_pem: "ca".into(),
            permissions: vec![],
        }
    }

    fn names(list: &[Arc<Resource>]) -> Vec<&str> {
        list.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn secrets_come_first_and_only_with_mtls() {
        let web = caller("web-1", "127.0.0.2");
        let services = shared([&web]);
        assert!(proxy_resources(&web, &services, None).secrets.is_empty());
        let secured = proxy_resources(&web, &services, Some(&security()));
        assert_eq!(names(&secured.secrets), ["identity_cert:secret:default", "mesh_ca:secret:default"]);
        assert_eq!(secured.by_type()[0], (type_url::SECRET, &secured.secrets[..]));
        let snapshot = secured.clone().into_snapshot(1);
        assert_eq!(snapshot.resources(type_url::SECRET).len(), 2);
    }

    #[test]
    fn mtls_changes_only_the_cluster_of_a_service() {
        let backend = instance("backend-1", "127.0.0.4", "backend", "http");
        let mut view = services([&backend])["backend"].clone();
        let plain = service_resources("backend", &view);
        view.mtls = Some("default".into());
        let mtls = service_resources("backend", &view);
        assert_ne!(plain.cluster.version, mtls.cluster.version);
        assert_eq!(plain.endpoints.version, mtls.endpoints.version);
        assert_eq!(plain.route.as_ref().unwrap().version, mtls.route.as_ref().unwrap().version);
        assert!(!plain.mtls && mtls.mtls);
    }

    #[test]
    fn secrets_are_left_out_when_nothing_uses_them() {
        let client = dataplane(
            "{type: Dataplane, mesh: default, name: client, networking: {address: 127.0.0.2, inbound: [],
                outbound: [{port: 20001, tags: {kuma.io/service: backend}}]}}",
        );
        let backend = instance("backend-1", "127.0.0.4", "backend", "http");
        let mut views = services([&backend]);
        let plain: BTreeMap<String, Arc<ServiceResources>> =
            views.iter().map(|(name, view)| (name.clone(), Arc::new(service_resources(name, view)))).collect();
        assert!(proxy_resources(&client, &plain, Some(&security())).secrets.is_empty());
        views.get_mut("backend").unwrap().mtls = Some("default".into());
        let mtls: BTreeMap<String, Arc<ServiceResources>> =
            views.iter().map(|(name, view)| (name.clone(), Arc::new(service_resources(name, view)))).collect();
        assert_eq!(proxy_resources(&client, &mtls, Some(&security())).secrets.len(), 2);
    }

    #[test]
    fn an_unknown_service_gets_a_cluster_and_an_empty_assignment() {
        let web = caller("web-1", "127.0.0.2");
        let resources = proxy_resources(&web, &BTreeMap::new(), None);
        let names = |list: &[Arc<Resource>]| list.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&resources.clusters), ["backend", "inbound:127.0.0.2:10001"]);
        assert_eq!(names(&resources.endpoints), ["backend"]);
        assert_eq!(names(&resources.listeners), ["inbound:127.0.0.2:10001", "outbound:127.0.0.1:20001"]);
        assert!(resources.routes.is_empty(), "an unknown service is tcp: no route");
        let empty = crate::render(&resources.endpoints[0]);
        assert_eq!(empty, serde_json::json!({"clusterName": "backend"}));
    }
}
