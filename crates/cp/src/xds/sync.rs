//! Keeps every connected sidecar's snapshot up to date, driven by store
//! change events: a burst of changes is collected for a short, bounded
//! time, then only the proxies whose inputs changed are regenerated. Shared
//! service resources (cluster, endpoints, route) are rebuilt only when that
//! service's endpoints change. Nothing runs while nothing changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kodiak_api::dataplane_view::DataplaneView;
use kodiak_api::{Resource, ResourceType};
use kodiak_store::{ChangeEvent, ListQuery, ResourceStore, StoreError};
use kodiak_xds_gen::{ServiceResources, ServiceView};
use kodiak_xds_server::SnapshotCache;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::connections::Connections;
use super::insights::Insights;
use super::proxy_id::ProxyId;

/// What the xDS side tells the sync loop.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A sidecar opened its first stream: it needs a snapshot.
    Arrived(ProxyId),
    /// A sidecar left or started draining: its endpoints go away.
    Departed(ProxyId),
}

/// The Dataplanes that exist, so a stream for an unknown one is refused at
/// once. Filled by the sync loop from the store, and by the bootstrap
/// handler right after it registers one (before the store event arrives).
/// It also remembers Dataplanes deleted while their sidecar was connected:
/// that sidecar must not register its Dataplane again behind the user's back.
#[derive(Debug, Default)]
pub struct KnownDataplanes(RwLock<Known>);

#[derive(Debug, Default)]
struct Known {
    existing: HashSet<ProxyId>,
    deleted_while_connected: HashSet<ProxyId>,
}

impl KnownDataplanes {
    pub fn contains(&self, proxy: &ProxyId) -> bool {
        self.0.read().unwrap().existing.contains(proxy)
    }

    pub fn was_deleted_while_connected(&self, proxy: &ProxyId) -> bool {
        self.0.read().unwrap().deleted_while_connected.contains(proxy)
    }

    pub fn insert(&self, proxy: ProxyId) {
        let mut known = self.0.write().unwrap();
        known.deleted_while_connected.remove(&proxy);
        known.existing.insert(proxy);
    }

    fn remove(&self, proxy: &ProxyId, connected: bool) {
        let mut known = self.0.write().unwrap();
        known.existing.remove(proxy);
        if connected {
            known.deleted_while_connected.insert(proxy.clone());
        }
    }
}

/// The sync loop's inputs and its view of every mesh.
pub struct Sync {
    store: Arc<dyn ResourceStore>,
    cache: Arc<SnapshotCache>,
    connections: Arc<Connections>,
    known: Arc<KnownDataplanes>,
    insights: Arc<Insights>,
    debounce: Duration,
    meshes: HashMap<String, MeshState>,
    generation: u64,
}

/// One mesh as the generator sees it.
#[derive(Default)]
struct MeshState {
    dataplanes: BTreeMap<String, Arc<DataplaneView>>,
    services: BTreeMap<String, ServiceView>,
    resources: BTreeMap<String, Arc<ServiceResources>>,
}

/// What a batch of changes touched.
#[derive(Debug, Default)]
struct Batch {
    /// Dataplanes to read again from the store.
    changed: BTreeSet<ProxyId>,
    /// Meshes whose endpoints may differ (a sidecar came or went).
    presence: BTreeSet<String>,
    /// Proxies that need a snapshot even if nothing else changed.
    arrived: BTreeSet<ProxyId>,
    /// Events were lost (the loop fell behind): read everything again.
    resync: bool,
}

impl Sync {
    pub fn new(parts: &super::Xds, debounce: Duration) -> Self {
        Self {
            store: parts.store.clone(),
            cache: parts.cache.clone(),
            connections: parts.connections.clone(),
            known: parts.known.clone(),
            insights: parts.insights.clone(),
            debounce,
            meshes: HashMap::new(),
            generation: 0,
        }
    }

    /// Follows changes until `stop` turns true. Subscribe to `events`
    /// before the first [`Sync::reload`], so no change falls in between.
    pub async fn run(
        mut self,
        mut events: broadcast::Receiver<ChangeEvent>,
        mut signals: mpsc::UnboundedReceiver<Signal>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let mut batch = Batch::default();
            tokio::select! {
                event = events.recv() => {
                    if matches!(event, Err(broadcast::error::RecvError::Closed)) {
                        return;
                    }
                    batch.add_event(event);
                }
                Some(signal) = signals.recv() => batch.add_signal(signal),
                _ = stop.wait_for(|stop| *stop) => return,
            }
            self.collect(&mut batch, &mut events, &mut signals).await;
            if let Err(error) = self.apply(batch).await {
                tracing::error!(%error, "cannot read changed Dataplanes; reading everything again");
                let _ = self.reload().await;
            }
        }
    }

    /// Adds what arrives until nothing did for `debounce`, or ten times that
    /// passed since the batch opened.
    async fn collect(
        &self,
        batch: &mut Batch,
        events: &mut broadcast::Receiver<ChangeEvent>,
        signals: &mut mpsc::UnboundedReceiver<Signal>,
    ) {
        let deadline = Instant::now() + self.debounce * 10;
        loop {
            let quiet = (Instant::now() + self.debounce).min(deadline);
            tokio::select! {
                event = events.recv() => batch.add_event(event),
                Some(signal) = signals.recv() => batch.add_signal(signal),
                _ = tokio::time::sleep_until(quiet) => return,
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    }

    async fn apply(&mut self, batch: Batch) -> Result<(), StoreError> {
        if batch.resync {
            return self.reload().await;
        }
        let mut touched: BTreeSet<String> = batch.presence;
        for proxy in &batch.changed {
            let dataplane = match self.store.get(&proxy.resource_key()).await? {
                Some(dataplane) => Some(view_of(&dataplane).await),
                None => None,
            };
            self.put_dataplane(proxy, dataplane);
            touched.insert(proxy.mesh.clone());
        }
        let mut regenerate: BTreeSet<ProxyId> = batch.changed;
        regenerate.extend(batch.arrived);
        for mesh in touched {
            let changed_services = self.refresh_services(&mesh);
            regenerate.extend(self.callers_of(&mesh, &changed_services));
        }
        self.publish(regenerate);
        Ok(())
    }

    /// Reads every Dataplane again and regenerates every connected proxy.
    pub async fn reload(&mut self) -> Result<(), StoreError> {
        let dataplanes = list_all(self.store.as_ref(), ResourceType::Dataplane).await?;
        let mut before: BTreeSet<ProxyId> = self.all_proxies().collect();
        self.meshes.clear();
        for dataplane in &dataplanes {
            let Some(proxy) = ProxyId::of(&dataplane.key) else { continue };
            before.remove(&proxy);
            self.put_dataplane(&proxy, Some(view_of(dataplane).await));
        }
        for gone in before {
            self.put_dataplane(&gone, None);
        }
        let meshes: Vec<String> = self.meshes.keys().cloned().collect();
        for mesh in meshes {
            self.refresh_services(&mesh);
        }
        let everyone: BTreeSet<ProxyId> = self.all_proxies().collect();
        self.publish(everyone);
        Ok(())
    }

    fn put_dataplane(&mut self, proxy: &ProxyId, dataplane: Option<DataplaneView>) {
        match dataplane {
            Some(view) => {
                let view = Arc::new(view);
                self.meshes.entry(proxy.mesh.clone()).or_default().dataplanes.insert(proxy.name.clone(), view);
                self.known.insert(proxy.clone());
            }
            None => {
                if let Some(mesh) = self.meshes.get_mut(&proxy.mesh) {
                    mesh.dataplanes.remove(&proxy.name);
                }
                let connected = self.connections.is_connected(proxy);
                self.known.remove(proxy, connected);
                self.connections.forget(proxy);
                self.insights.forget(proxy);
                self.cache.remove(&proxy.node_id());
                if connected {
                    tracing::info!(dataplane = %proxy, "Dataplane deleted while its sidecar is connected: closing its stream");
                    self.cache.close(&proxy.node_id(), deleted(proxy));
                }
            }
        }
    }

    /// Recomputes a mesh's services from its serving Dataplanes, rebuilds
    /// the shared resources of those that changed, and returns their names.
    fn refresh_services(&mut self, mesh_name: &str) -> BTreeSet<String> {
        let Some(mesh) = self.meshes.get_mut(mesh_name) else { return BTreeSet::new() };
        let connections = &self.connections;
        let (serving, departed): (Vec<_>, Vec<_>) = mesh
            .dataplanes
            .iter()
            .partition(|(name, _)| connections.is_serving(&ProxyId::new(mesh_name, name.as_str())));
        // A departed sidecar's inbounds still say which protocol its service
        // speaks (so callers' listeners keep their kind), but offer no endpoint.
        let withdrawn: Vec<DataplaneView> = departed.iter().map(|(_, view)| not_ready(view)).collect();
        let services = kodiak_xds_gen::services(serving.iter().map(|(_, view)| view.as_ref()).chain(withdrawn.iter()));
        let mut changed = BTreeSet::new();
        for (name, view) in &services {
            if mesh.services.get(name) != Some(view) {
                mesh.resources.insert(name.clone(), Arc::new(kodiak_xds_gen::service_resources(name, view)));
                changed.insert(name.clone());
            }
        }
        for name in mesh.services.keys() {
            if !services.contains_key(name) {
                mesh.resources.remove(name);
                changed.insert(name.clone());
            }
        }
        mesh.services = services;
        changed
    }

    /// Connected proxies of a mesh with an outbound to one of `services`.
    fn callers_of(&self, mesh_name: &str, services: &BTreeSet<String>) -> Vec<ProxyId> {
        let Some(mesh) = self.meshes.get(mesh_name) else { return Vec::new() };
        if services.is_empty() {
            return Vec::new();
        }
        mesh.dataplanes
            .iter()
            .filter(|(_, view)| view.outbounds.iter().any(|outbound| services.contains(&outbound.service)))
            .map(|(name, _)| ProxyId::new(mesh_name, name.as_str()))
            .collect()
    }

    /// Generates and publishes a snapshot for each connected proxy given.
    fn publish(&mut self, proxies: impl IntoIterator<Item = ProxyId>) {
        for proxy in proxies {
            if !self.connections.is_connected(&proxy) {
                continue;
            }
            let Some(mesh) = self.meshes.get(&proxy.mesh) else { continue };
            let Some(view) = mesh.dataplanes.get(&proxy.name) else { continue };
            self.generation += 1;
            let snapshot = kodiak_xds_gen::proxy_snapshot(view, &mesh.resources, self.generation);
            self.cache.set(&proxy.node_id(), Arc::new(snapshot));
            self.insights.generated(&proxy, self.generation);
        }
    }

    fn all_proxies(&self) -> impl Iterator<Item = ProxyId> + '_ {
        self.meshes.iter().flat_map(|(mesh, state)| {
            state.dataplanes.keys().map(move |name| ProxyId::new(mesh.as_str(), name.as_str()))
        })
    }
}

impl Batch {
    fn add_event(&mut self, event: Result<ChangeEvent, broadcast::error::RecvError>) {
        match event {
            Ok(event) => {
                if let Some(proxy) = ProxyId::of(&event.key) {
                    self.changed.insert(proxy);
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "the sync loop fell behind the store's changes; reading everything again");
                self.resync = true;
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    fn add_signal(&mut self, signal: Signal) {
        match signal {
            Signal::Arrived(proxy) => {
                self.presence.insert(proxy.mesh.clone());
                self.arrived.insert(proxy);
            }
            Signal::Departed(proxy) => {
                self.presence.insert(proxy.mesh);
            }
        }
    }
}

/// What the sidecar of a Dataplane deleted under it is told (Envoy logs it
/// and keeps its last configuration).
pub fn deleted(proxy: &ProxyId) -> tonic::Status {
    tonic::Status::not_found(format!(
        "Dataplane {proxy} was deleted while this sidecar served it: restart kodiak-dp to register it again"
    ))
}

/// A Dataplane's view with host names resolved: Envoy takes listener and
/// endpoint addresses as IP addresses only. Lookups run off the sync task,
/// so a slow resolver delays this Dataplane, not every proxy's updates.
async fn view_of(dataplane: &Resource) -> DataplaneView {
    let mut view = DataplaneView::from_resource(dataplane);
    let mut names = Vec::new();
    view.clone().resolve_addresses(|host| {
        names.push(host.to_owned());
        None
    });
    if names.is_empty() {
        return view;
    }
    let resolved: HashMap<String, std::net::IpAddr> = tokio::task::spawn_blocking(move || {
        let lookup = |host: &str| std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)).ok()?.next();
        names.into_iter().filter_map(|host| Some((host.clone(), lookup(&host)?.ip()))).collect()
    })
    .await
    .unwrap_or_default();
    view.resolve_addresses(|host| {
        let ip = resolved.get(host).copied();
        if ip.is_none() {
            tracing::warn!(dataplane = ?ProxyId::of(&dataplane.key), host, "cannot resolve a Dataplane address; its endpoints are left out");
        }
        ip
    });
    view
}

fn not_ready(view: &DataplaneView) -> DataplaneView {
    let mut view = view.clone();
    for inbound in &mut view.inbounds {
        inbound.ready = false;
    }
    view
}

/// Every resource of a type, page by page.
pub async fn list_all(store: &dyn ResourceStore, kind: ResourceType) -> Result<Vec<Resource>, StoreError> {
    let size = kodiak_api::MAX_PAGE_SIZE as usize;
    let mut query = ListQuery::all(kind, size);
    let mut all = Vec::new();
    loop {
        let page = store.list(&query).await?;
        let count = page.items.len();
        all.extend(page.items);
        if count < size || all.len() >= page.total {
            return Ok(all);
        }
        query.offset += count;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kodiak_store::MemoryStore;
    use kodiak_xds_server::type_url;

    use super::*;
    use crate::config::Config;
    use crate::xds::Xds;

    fn dataplane(yaml: &str) -> Resource {
        Resource::from_document(&kodiak_api::parse_document(yaml).unwrap()).unwrap()
    }

    fn backend(name: &str, service: &str, port: u16) -> Resource {
        dataplane(&format!(
            "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {port}\n    tags:\n      kuma.io/service: {service}\n"
        ))
    }

    fn caller(name: &str, service: &str, port: u16) -> Resource {
        dataplane(&format!(
            "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  outbound:\n  - port: {port}\n    tags:\n      kuma.io/service: {service}\n"
        ))
    }

    /// The generation of a proxy's snapshot, once it has one.
    async fn generation(xds: &Xds, node: &str) -> u64 {
        for _ in 0..200 {
            if let Some(snapshot) = xds.cache.get(node) {
                return snapshot.generation();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{node} never got a snapshot");
    }

    async fn generation_above(xds: &Xds, node: &str, previous: u64) -> u64 {
        for _ in 0..200 {
            let current = generation(xds, node).await;
            if current > previous {
                return current;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{node} was not regenerated");
    }

    #[tokio::test]
    async fn a_new_endpoint_reaches_only_the_callers_of_its_service() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        for resource in
            [backend("b-1", "b", 10001), backend("d-1", "d", 10002), caller("a", "b", 20001), caller("c", "d", 20002)]
        {
            store.create(resource).await.unwrap();
        }
        let (_stop, stopped) = watch::channel(false);
        let (xds, _routes) = Xds::start(store.clone(), &Config::default(), "cp-test", stopped).await.unwrap();
        for name in ["a", "c"] {
            let proxy = ProxyId::new("default", name);
            xds.connections.opened(&proxy, None).unwrap();
            xds.signals.send(Signal::Arrived(proxy)).unwrap();
        }
        let (a, c) = (generation(&xds, "default.a").await, generation(&xds, "default.c").await);
        assert!(xds.cache.get("default.b-1").is_none(), "proxies without a sidecar get no snapshot");

        store.create(backend("b-2", "b", 10003)).await.unwrap();
        generation_above(&xds, "default.a", a).await;
        assert_eq!(generation(&xds, "default.c").await, c, "c calls d only: nothing changed for it");

        // Both callers of b share one encoded cluster and one endpoint assignment.
        store.create(caller("e", "b", 20003)).await.unwrap();
        let e = ProxyId::new("default", "e");
        xds.connections.opened(&e, None).unwrap();
        xds.signals.send(Signal::Arrived(e)).unwrap();
        generation(&xds, "default.e").await;
        let (snapshot_a, snapshot_e) = (xds.cache.get("default.a").unwrap(), xds.cache.get("default.e").unwrap());
        for kind in [type_url::CLUSTER, type_url::ENDPOINT] {
            let shared = |snapshot: &kodiak_xds_server::Snapshot| snapshot.resources(kind)["b"].clone();
            assert!(Arc::ptr_eq(&shared(&snapshot_a), &shared(&snapshot_e)), "{kind} of b is shared");
        }
    }

    #[tokio::test]
    async fn a_departed_sidecar_is_withdrawn_from_its_callers() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        for resource in [backend("b-1", "b", 10001), backend("b-2", "b", 10003), caller("a", "b", 20001)] {
            store.create(resource).await.unwrap();
        }
        let (_stop, stopped) = watch::channel(false);
        let (xds, _routes) = Xds::start(store.clone(), &Config::default(), "cp-test", stopped).await.unwrap();
        for name in ["a", "b-2"] {
            let proxy = ProxyId::new("default", name);
            xds.connections.opened(&proxy, None).unwrap();
            xds.signals.send(Signal::Arrived(proxy)).unwrap();
        }
        // The ports of b's endpoints in a's snapshot, read from Envoy's JSON form.
        let ports_of_b = |xds: &Xds| -> Vec<u64> {
            let snapshot = xds.cache.get("default.a").unwrap();
            let json = kodiak_xds_gen::render(&snapshot.resources(type_url::ENDPOINT)["b"]);
            json["endpoints"][0]["lbEndpoints"]
                .as_array()
                .map(|endpoints| {
                    endpoints
                        .iter()
                        .filter_map(|e| e["endpoint"]["address"]["socketAddress"]["portValue"].as_u64())
                        .collect()
                })
                .unwrap_or_default()
        };
        let before = generation(&xds, "default.a").await;
        assert_eq!(ports_of_b(&xds), [10001, 10003]);

        let b2 = ProxyId::new("default", "b-2");
        xds.connections.closed(&b2);
        xds.signals.send(Signal::Departed(b2)).unwrap();
        generation_above(&xds, "default.a", before).await;
        assert_eq!(ports_of_b(&xds), [10001], "b-2's endpoint is withdrawn");
    }

    #[tokio::test]
    async fn dataplanes_given_by_host_name_are_offered_by_address() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        let by_name = backend("b-1", "b", 10001).to_document().to_string().replace("127.0.0.1", "localhost");
        store.create(dataplane(&by_name)).await.unwrap();
        store.create(caller("a", "b", 20001)).await.unwrap();
        let (_stop, stopped) = watch::channel(false);
        let (xds, _routes) = Xds::start(store.clone(), &Config::default(), "cp-test", stopped).await.unwrap();
        let a = ProxyId::new("default", "a");
        xds.connections.opened(&a, None).unwrap();
        xds.signals.send(Signal::Arrived(a)).unwrap();
        generation(&xds, "default.a").await;
        let snapshot = xds.cache.get("default.a").unwrap();
        let json = kodiak_xds_gen::render(&snapshot.resources(type_url::ENDPOINT)["b"]);
        let address = &json["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]["address"];
        assert!(matches!(address.as_str(), Some("127.0.0.1" | "::1")), "{json}");
    }
}
