//! Keeps every connected sidecar's snapshot up to date, driven by store
//! change events: a burst of changes is collected for a short, bounded
//! time, then only the proxies whose inputs changed are regenerated. Shared
//! service resources (cluster, endpoints, route) are rebuilt only when how
//! that service is called changes; when only its endpoints do, its callers'
//! last snapshots get the new assignment and nothing else. Nothing runs
//! while nothing changes: the loop sleeps until the next workload
//! certificate renewal, the end of a wait for ACKs, or the retry of a proxy
//! whose certificate could not be issued, and sleeps for good when none is
//! pending.
//!
//! Mesh mTLS: a connected proxy of a mesh with mTLS on gets a workload
//! certificate from the mesh's CA, kept here with its validity and renewed
//! at 4/5 of its life. How each side speaks during a change (mTLS on, STRICT,
//! a new CA, mTLS off) follows what the proxies ACKed ([`super::tls_ready`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use kodiak_api::dataplane_view::DataplaneView;
use kodiak_api::mesh::{CaBackendView, CaKind, MtlsMode, MtlsView};
use kodiak_api::{Resource, ResourceKey, ResourceType};
use kodiak_ca::{Ca, KeyKind};
use kodiak_policy::rules::{MeshPolicies, proxy_rules};
use kodiak_policy::traffic_permission::{MeshTrafficPermission, proxy_permissions};
use kodiak_store::{ChangeEvent, ListQuery, ResourceStore, StoreError};
use kodiak_xds_gen::policies::{ProxyPolicies, proxy_policies};
use kodiak_xds_gen::{Identity, ProxySecurity, ServiceChanges, SharedServices, proxy_resources_with_policies};
use kodiak_xds_server::{Resource as EnvoyResource, SnapshotCache, type_url};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::certs::{self, CertSpec, IssuedCert};
use super::connections::Connections;
use super::insights::{Insights, MtlsInsight};
use super::mesh_ca::{self, MeshCaError};
use super::proxy_id::ProxyId;
use super::tls_ready::{Intent, Latches, MAX_WAIT, Member, Progress, trust_bundle};

/// What the xDS side tells the sync loop.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A sidecar opened its first stream: it needs a snapshot.
    Arrived(ProxyId),
    /// A sidecar left or started draining: its endpoints go away.
    Departed(ProxyId),
    /// A sidecar's Envoy ACKed every resource of this generation; sent only
    /// for the proxies in [`AwaitedAcks`].
    Synced(ProxyId, u64),
}

/// The proxies whose next full ACK the sync loop waits for (a change of how
/// they speak TLS is in flight), so the xDS callbacks signal only those.
#[derive(Debug, Default)]
pub struct AwaitedAcks(RwLock<HashSet<ProxyId>>);

impl AwaitedAcks {
    pub fn wants(&self, proxy: &ProxyId) -> bool {
        self.0.read().unwrap().contains(proxy)
    }

    fn set(&self, proxy: &ProxyId, wanted: bool) {
        if wanted == self.wants(proxy) {
            return;
        }
        let mut awaited = self.0.write().unwrap();
        if wanted {
            awaited.insert(proxy.clone());
        } else {
            awaited.remove(proxy);
        }
    }
}

/// The Dataplanes deleted while their sidecar was connected: that sidecar
/// must not register its Dataplane again behind the user's back. A Dataplane
/// stored again (seen by the sync loop, or registered by the bootstrap
/// handler before the store event arrives) is forgotten here. Whether a
/// Dataplane exists is read from the store when a stream opens.
#[derive(Debug, Default)]
pub struct KnownDataplanes(RwLock<HashSet<ProxyId>>);

impl KnownDataplanes {
    pub fn was_deleted_while_connected(&self, proxy: &ProxyId) -> bool {
        self.0.read().unwrap().contains(proxy)
    }

    pub fn insert(&self, proxy: ProxyId) {
        self.0.write().unwrap().remove(&proxy);
    }

    fn remove(&self, proxy: &ProxyId, connected: bool) {
        if connected {
            self.0.write().unwrap().insert(proxy.clone());
        }
    }
}

/// How long a proxy whose certificate could not be issued waits before it is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// The sync loop's inputs and its view of every mesh.
pub struct Sync {
    store: Arc<dyn ResourceStore>,
    cache: Arc<SnapshotCache>,
    connections: Arc<Connections>,
    known: Arc<KnownDataplanes>,
    insights: Arc<Insights>,
    acks: Arc<AwaitedAcks>,
    debounce: Duration,
    meshes: HashMap<String, MeshState>,
    generation: u64,
}

/// One mesh as the generator sees it.
#[derive(Default)]
struct MeshState {
    dataplanes: BTreeMap<String, Arc<DataplaneView>>,
    /// The stored Dataplanes, which MeshTrafficPermission matching reads.
    documents: BTreeMap<String, Arc<Resource>>,
    /// The mesh's services and their resources, shared between callers.
    services: SharedServices,
    /// The services each proxy's routes send to, for the proxies with
    /// routes: changes to those services reach it as if it called them.
    route_backends: HashMap<String, BTreeSet<String>>,
    /// The mesh's policies other than MeshTrafficPermission, read once;
    /// `None` until they are.
    policies: Option<MeshPolicies>,
    /// Whether some MeshFaultInjection picks callers by tags: then proxies
    /// name their tags on their outbound requests.
    tag_callers: bool,
    tls: MeshTls,
}

/// A mesh's mTLS: its settings, CA, permissions, and each connected proxy's
/// certificate and progress.
#[derive(Default)]
struct MeshTls {
    mtls: MtlsView,
    /// The enabled backend's CA; kept after mTLS goes off, while inbounds
    /// still accept mTLS callers.
    ca: Option<LoadedCa>,
    /// Why the enabled backend's CA cannot be used: no proxy of the mesh
    /// gets a new certificate until its Mesh or CA Secrets change.
    ca_error: Option<String>,
    /// Proxies whose own certificate could not be issued, and when they are
    /// tried again; meanwhile each keeps its last configuration.
    retries: BTreeMap<String, Instant>,
    policies: Vec<MeshTrafficPermission>,
    latches: Latches,
    progress: BTreeMap<String, Progress>,
    certs: BTreeMap<String, IssuedCert>,
    /// The roots every proxy of the mesh is told to trust, last computed.
    bundle: Vec<Arc<str>>,
    /// Whether every connected proxy ACKed a bundle with the current root
    /// (or [`MAX_WAIT`] passed since it came): certificates may move to it.
    /// Once true, it stays so until the root changes.
    root_trusted: bool,
    /// When the current root came.
    root_since: Option<SystemTime>,
    /// When the intent (off, PERMISSIVE, STRICT) last changed; the change
    /// completes at the latest [`MAX_WAIT`] after, ACKed or not.
    intent_since: Option<(Intent, SystemTime)>,
    /// Whether the current change was completed without every ACK.
    forced: bool,
}

struct LoadedCa {
    backend: CaBackendView,
    ca: Arc<Ca>,
    root: Arc<str>,
}

impl MeshTls {
    fn intent(&self) -> Intent {
        match self.mtls.enabled().map(|backend| backend.mode) {
            None => Intent::Off,
            Some(MtlsMode::Permissive) => Intent::Permissive,
            Some(MtlsMode::Strict) => Intent::Strict,
        }
    }

    /// When a change of the mesh's mTLS stops waiting for ACKs (none: nothing waits).
    fn wait_ends(&self) -> Option<SystemTime> {
        if self.idle() {
            return None;
        }
        self.intent_wait_ends().into_iter().chain(self.root_wait_ends()).min()
    }

    /// mTLS off and nothing left to wind down: no proxy waits for anything.
    fn idle(&self) -> bool {
        self.intent() == Intent::Off && self.progress.is_empty() && self.certs.is_empty()
    }

    /// When the current change of intent stops waiting for ACKs.
    fn intent_wait_ends(&self) -> Option<SystemTime> {
        let (_, since) = self.intent_since?;
        (!self.forced).then_some(since + MAX_WAIT)
    }

    /// When certificates move to a new root even if not every proxy trusts it yet.
    fn root_wait_ends(&self) -> Option<SystemTime> {
        (!self.root_trusted).then_some(self.root_since? + MAX_WAIT)
    }

    /// When proxies whose certificate could not be issued are tried again;
    /// none while the mesh's CA cannot issue at all.
    fn retry_times(&self) -> impl Iterator<Item = Instant> + '_ {
        self.retries.values().copied().filter(|_| self.ca_error.is_none())
    }

    /// Whether the Secret `name` of `mesh` is one a backend reads.
    fn reads_secret(&self, mesh: &str, name: &str) -> bool {
        self.mtls.backends.iter().any(|backend| MtlsView::secrets_of(mesh, backend).iter().any(|s| s == name))
    }

    /// When the loop must look at `cert` again: its renewal, or, while the
    /// mesh moves to a new root not yet trusted everywhere, its expiry;
    /// never while the mesh's CA cannot issue.
    fn deadline(&self, cert: &IssuedCert) -> Option<SystemTime> {
        if self.ca_error.is_some() {
            return None;
        }
        let current = self.ca.as_ref().is_none_or(|ca| ca.root == cert.spec.root);
        Some(if current || self.root_trusted { cert.renew_at() } else { cert.cert.not_after })
    }
}

/// What a batch of changes touched.
#[derive(Debug, Default)]
struct Batch {
    /// Dataplanes to read again from the store.
    changed: BTreeSet<ProxyId>,
    /// Sidecars that left or started draining: their endpoints go.
    departed: BTreeSet<ProxyId>,
    /// Proxies that need a snapshot even if nothing else changed.
    arrived: BTreeSet<ProxyId>,
    /// Events were lost (the loop fell behind): read everything again.
    resync: bool,
    /// Meshes whose Mesh resource changed.
    meshes: BTreeSet<String>,
    /// Meshes whose policies changed.
    policies: BTreeSet<String>,
    /// Secrets that changed, by mesh and name.
    secrets: BTreeSet<(String, String)>,
    /// Generations proxies ACKed in full.
    synced: Vec<(ProxyId, u64)>,
}

impl Sync {
    pub fn new(parts: &super::Xds, debounce: Duration) -> Self {
        Self {
            store: parts.store.clone(),
            cache: parts.cache.clone(),
            connections: parts.connections.clone(),
            known: parts.known.clone(),
            insights: parts.insights.clone(),
            acks: parts.acks.clone(),
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
        while self.step(&mut events, &mut signals, &mut stop).await {}
    }

    /// Waits for the next reason to work (a change, a signal, a certificate
    /// or a wait coming due), then does that work. False once stopped.
    async fn step(
        &mut self,
        events: &mut broadcast::Receiver<ChangeEvent>,
        signals: &mut mpsc::UnboundedReceiver<Signal>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut batch = Batch::default();
        let renewal = self.next_renewal();
        tokio::select! {
            event = events.recv() => {
                if matches!(event, Err(broadcast::error::RecvError::Closed)) {
                    return false;
                }
                batch.add_event(event);
            }
            Some(signal) = signals.recv() => batch.add_signal(signal),
            () = sleep_until(renewal) => {}
            _ = stop.wait_for(|stop| *stop) => return false,
        }
        self.collect(&mut batch, events, signals).await;
        if let Err(error) = self.apply(batch).await {
            tracing::error!(%error, "cannot read changed Dataplanes; reading everything again");
            let _ = self.reload().await;
        }
        true
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
        // Meshes whose every proxy is regenerated.
        let mut whole: BTreeSet<String> = BTreeSet::new();
        for mesh in &batch.meshes {
            self.load_mesh(mesh).await?;
            whole.insert(mesh.clone());
        }
        let ca_secrets: BTreeSet<&String> = batch
            .secrets
            .iter()
            .filter(|(mesh, name)| {
                !batch.meshes.contains(mesh)
                    && self.meshes.get(mesh).is_some_and(|state| state.tls.reads_secret(mesh, name))
            })
            .map(|(mesh, _)| mesh)
            .collect();
        for mesh in ca_secrets {
            // The Secrets of a CA just generated come back as events: only a different root matters.
            if self.load_mesh(mesh).await? {
                whole.insert(mesh.clone());
            }
        }
        for mesh in &batch.policies {
            self.load_policies(mesh).await?;
            whole.insert(mesh.clone());
        }
        // Per mesh touched, the services whose views the batch may have
        // changed: those of the sidecars that came, went or changed.
        let mut scopes: BTreeMap<String, Scope> = whole.iter().map(|mesh| (mesh.clone(), Scope::All)).collect();
        for proxy in &batch.changed {
            let before = self.served(proxy);
            let dataplane = match self.store.get(&proxy.resource_key()).await? {
                Some(dataplane) => Some((view_of(&dataplane).await, dataplane)),
                None => None,
            };
            self.put_dataplane(proxy, dataplane);
            let after = self.served(proxy);
            scopes.entry(proxy.mesh.clone()).or_default().add(before.into_iter().chain(after));
        }
        for proxy in batch.arrived.iter().chain(&batch.departed) {
            let served = self.served(proxy);
            scopes.entry(proxy.mesh.clone()).or_default().add(served);
        }
        // ACKs, and waits for them that ended, move only what advance_tls says.
        let now = SystemTime::now();
        for (name, mesh) in &self.meshes {
            if mesh.tls.wait_ends().is_some_and(|end| end <= now) {
                scopes.entry(name.clone()).or_default();
            }
        }
        for (proxy, generation) in batch.synced {
            let progress = self.meshes.get_mut(&proxy.mesh).and_then(|mesh| mesh.tls.progress.get_mut(&proxy.name));
            if let Some(progress) = progress {
                progress.acked(generation);
                self.acks.set(&proxy, progress.awaiting());
                scopes.entry(proxy.mesh.clone()).or_default();
            }
        }
        let mut regenerate: BTreeSet<ProxyId> = batch.changed;
        regenerate.extend(batch.arrived);
        let mut new_endpoints = BTreeMap::new();
        for (mesh, mut scope) in scopes {
            match self.advance_tls(&mesh) {
                TlsChange::Whole => {
                    whole.insert(mesh.clone());
                    scope = Scope::All;
                }
                TlsChange::Moved { inbound, called } => {
                    regenerate.extend(self.instances_of(&mesh, &inbound));
                    scope.add(called);
                }
            }
            if scope.is_empty() {
                continue;
            }
            let changes = self.refresh_services(&mesh, &scope);
            regenerate.extend(self.callers_of(&mesh, &changes.rebuilt));
            new_endpoints.insert(mesh, changes.endpoints);
        }
        for mesh in whole {
            regenerate.extend(self.proxies_of(&mesh));
        }
        regenerate.extend(self.due_for_renewal(now));
        let patches = self.endpoint_patches(&new_endpoints, &mut regenerate);
        self.publish(regenerate);
        self.patch(patches);
        Ok(())
    }

    /// Reads a Mesh's mTLS settings and CA: every builtin backend's root is
    /// generated when missing, the enabled backend's CA is loaded. True when
    /// the CA in use is another one than before.
    async fn load_mesh(&mut self, name: &str) -> Result<bool, StoreError> {
        let Some(resource) = self.store.get(&ResourceKey::mesh(name)).await? else {
            if let Some(state) = self.meshes.get_mut(name) {
                state.tls = MeshTls::default();
            }
            return Ok(true);
        };
        let mtls = MtlsView::of(&resource.body);
        let mut enabled_ca = None;
        let mut error = None;
        for backend in &mtls.backends {
            let enabled = mtls.enabled_backend.as_deref() == Some(backend.name.as_str());
            if !enabled && !matches!(backend.kind, CaKind::Builtin { .. }) {
                continue;
            }
            match mesh_ca::load(self.store.as_ref(), name, backend).await {
                Ok(ca) if enabled => enabled_ca = Some((backend.clone(), ca)),
                Ok(_) => {}
                Err(MeshCaError::Store(error)) => return Err(error),
                Err(problem) => {
                    tracing::error!(mesh = name, backend = %backend.name, error = %problem, "cannot use the CA of an mTLS backend");
                    if enabled {
                        error = Some(problem.to_string());
                    }
                }
            }
        }
        let state = self.meshes.entry(name.to_owned()).or_default();
        let mut other_ca = false;
        if let Some((backend, ca)) = enabled_ca {
            let root: Arc<str> = Arc::from(ca.cert_pem());
            let same = state.tls.ca.as_ref().is_some_and(|loaded| loaded.root == root);
            if !same {
                other_ca = true;
                tracing::info!(mesh = name, backend = %backend.name, subject = ca.subject(), "mTLS CA in use");
                // A first CA has no certificates to move over; a new one waits for every proxy to trust it.
                state.tls.root_trusted = state.tls.ca.is_none();
                state.tls.root_since = Some(SystemTime::now());
                state.tls.ca = Some(LoadedCa { backend, ca: Arc::new(ca), root });
            } else if let Some(loaded) = &mut state.tls.ca {
                loaded.backend = backend;
            }
        }
        state.tls.ca_error = error;
        state.tls.mtls = mtls;
        let intent = state.tls.intent();
        match state.tls.intent_since {
            // First sight of the mesh (a start, or a new mesh): its sidecars,
            // if any, already run with this intent; nothing to wait for.
            None => state.tls.intent_since = Some((intent, SystemTime::UNIX_EPOCH)),
            Some((before, _)) if before != intent => {
                state.tls.intent_since = Some((intent, SystemTime::now()));
                state.tls.forced = false;
            }
            Some(_) => {}
        }
        Ok(other_ca)
    }

    /// Reads a mesh's policies again.
    async fn load_policies(&mut self, mesh: &str) -> Result<(), StoreError> {
        let mut others = Vec::new();
        let mut permissions = Vec::new();
        for kind in ResourceType::ALL.iter().copied().filter(|kind| kind.is_policy()) {
            let resources = list_in(self.store.as_ref(), kind, Some(mesh)).await?;
            if kind == ResourceType::MeshTrafficPermission {
                permissions = resources;
            } else {
                others.extend(resources);
            }
        }
        let policies = MeshPolicies::new(mesh, &others);
        for (policy, error) in policies.unreadable() {
            tracing::error!(%policy, %error, "cannot read a policy; it is left out");
        }
        let permissions = permissions
            .iter()
            .filter_map(|resource| match MeshTrafficPermission::from_resource(resource) {
                Ok(policy) => Some(policy),
                Err(error) => {
                    tracing::error!(policy = %resource.key, %error, "cannot read a MeshTrafficPermission; it is left out");
                    None
                }
            })
            .collect();
        let state = self.meshes.entry(mesh.to_owned()).or_default();
        state.tls.policies = permissions;
        state.policies = Some(policies);
        state.tag_callers = others.iter().any(picks_callers_by_tags);
        state.services.forget_built();
        Ok(())
    }

    /// Moves the mesh's mTLS as far as what its proxies ACKed allows, and
    /// forgets departed proxies' certificates. Says whose snapshots that
    /// changes: every proxy's when the trusted roots changed, else the
    /// instances of the services whose inbound mode changed (callers follow
    /// their services' shared resources, see [`Sync::refresh_services`]).
    fn advance_tls(&mut self, mesh_name: &str) -> TlsChange {
        let Some(mesh) = self.meshes.get_mut(mesh_name) else { return TlsChange::none() };
        if mesh.tls.idle() {
            // No mTLS and nothing left to wind down: the common case costs
            // nothing, and no wait is left pending.
            let latches = std::mem::take(&mut mesh.tls.latches);
            mesh.tls.forced = true;
            mesh.tls.root_trusted = true;
            mesh.tls.retries.clear();
            return TlsChange::Moved { inbound: BTreeSet::new(), called: latches.tls_ready };
        }
        let connections = &self.connections;
        let connected: BTreeSet<&String> = mesh
            .dataplanes
            .keys()
            .filter(|name| connections.is_connected(&ProxyId::new(mesh_name, name.as_str())))
            .collect();
        let tls = &mut mesh.tls;
        let acks = &self.acks;
        tls.progress.retain(|name, _| {
            let keep = connected.contains(name);
            if !keep {
                acks.set(&ProxyId::new(mesh_name, name.as_str()), false);
            }
            keep
        });
        tls.certs.retain(|name, _| connected.contains(name));
        tls.retries.retain(|name, _| connected.contains(name));
        // Names are borrowed, not copied: this runs on every batch of ACKs.
        let roles: Vec<(&String, Vec<&str>, Vec<&str>)> = connected
            .iter()
            .map(|name| {
                let view = &mesh.dataplanes[*name];
                let serving = connections.is_serving(&ProxyId::new(mesh_name, name.as_str()));
                let serves = view
                    .inbounds
                    .iter()
                    .filter(|inbound| serving && inbound.ready && !inbound.service.is_empty())
                    .map(|inbound| inbound.service.as_str())
                    .collect();
                let calls = view.outbounds.iter().map(|outbound| outbound.service.as_str()).collect();
                (*name, serves, calls)
            })
            .collect();
        let fresh = Progress::default();
        let members: Vec<Member<'_>> = roles
            .iter()
            .map(|(name, serves, calls)| Member { progress: tls.progress.get(*name).unwrap_or(&fresh), serves, calls })
            .collect();
        let services: BTreeSet<&String> = mesh
            .dataplanes
            .values()
            .flat_map(|view| view.inbounds.iter().map(|inbound| &inbound.service))
            .filter(|service| !service.is_empty())
            .collect();
        let force = tls.intent_wait_ends().is_some_and(|end| end <= SystemTime::now());
        if force {
            let waiting: Vec<&String> = roles
                .iter()
                .filter(|(name, ..)| tls.progress.get(*name).is_some_and(Progress::awaiting))
                .map(|(name, ..)| *name)
                .collect();
            if !waiting.is_empty() {
                tracing::warn!(mesh = mesh_name, ?waiting, wait = ?MAX_WAIT, "mTLS change completed without every sidecar's ACK");
            }
            tls.forced = true;
        }
        let before = tls.latches.clone();
        let latches_moved = tls.latches.advance(tls.intent(), services.iter().copied(), &members, force);
        if let Some(ca) = &tls.ca {
            let bundle = trust_bundle(&ca.root, members.iter().map(|member| member.progress));
            let trusted = tls.root_trusted
                || tls.root_wait_ends().is_some_and(|end| end <= SystemTime::now())
                || members.iter().all(|member| member.progress.trusts_acked(&ca.root));
            if bundle != tls.bundle || trusted != tls.root_trusted {
                tls.bundle = bundle;
                tls.root_trusted = trusted;
                return TlsChange::Whole;
            }
        }
        if !latches_moved {
            return TlsChange::none();
        }
        let after = &tls.latches;
        let moved = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.symmetric_difference(b).cloned().collect::<Vec<_>>();
        let mut inbound = moved(&before.strict_ready, &after.strict_ready);
        inbound.extend(moved(&before.plaintext_done, &after.plaintext_done));
        let called = moved(&before.tls_ready, &after.tls_ready);
        TlsChange::Moved { inbound: inbound.into_iter().collect(), called: called.into_iter().collect() }
    }

    /// Connected or not, the proxies with an inbound of one of `services`.
    fn instances_of(&self, mesh_name: &str, services: &BTreeSet<String>) -> Vec<ProxyId> {
        let Some(mesh) = self.meshes.get(mesh_name) else { return Vec::new() };
        mesh.dataplanes
            .iter()
            .filter(|(_, view)| view.inbounds.iter().any(|inbound| services.contains(&inbound.service)))
            .map(|(name, _)| ProxyId::new(mesh_name, name.as_str()))
            .collect()
    }

    /// When the loop must wake with no event: the next workload certificate
    /// due, the end of a wait for ACKs, or a proxy's retry.
    fn next_renewal(&self) -> Option<Instant> {
        let earliest = self
            .meshes
            .values()
            .flat_map(|mesh| {
                mesh.tls.certs.values().filter_map(|cert| mesh.tls.deadline(cert)).chain(mesh.tls.wait_ends())
            })
            .min();
        let (now, instant) = (SystemTime::now(), Instant::now());
        let earliest = earliest.map(|at| instant + at.duration_since(now).unwrap_or_default());
        let retry = self.meshes.values().flat_map(|mesh| mesh.tls.retry_times()).min();
        earliest.into_iter().chain(retry).min()
    }

    /// Proxies whose certificate is due at `now`, or whose retry is.
    fn due_for_renewal(&self, now: SystemTime) -> Vec<ProxyId> {
        let instant = Instant::now();
        self.meshes
            .iter()
            .flat_map(|(mesh_name, mesh)| {
                let due = mesh
                    .tls
                    .certs
                    .iter()
                    .filter(move |(_, cert)| mesh.tls.deadline(cert).is_some_and(|deadline| deadline <= now))
                    .map(|(name, _)| name);
                let retried = mesh.tls.retries.iter().filter(move |(_, at)| **at <= instant).map(|(name, _)| name);
                let retried = retried.filter(|_| mesh.tls.ca_error.is_none());
                due.chain(retried).map(move |name| ProxyId::new(mesh_name.as_str(), name.as_str()))
            })
            .collect()
    }

    fn proxies_of(&self, mesh: &str) -> Vec<ProxyId> {
        self.meshes
            .get(mesh)
            .map(|state| state.dataplanes.keys().map(|name| ProxyId::new(mesh, name.as_str())).collect())
            .unwrap_or_default()
    }

    /// Reads every Dataplane again and regenerates every connected proxy.
    pub async fn reload(&mut self) -> Result<(), StoreError> {
        let dataplanes = list_all(self.store.as_ref(), ResourceType::Dataplane).await?;
        let mut before: BTreeSet<ProxyId> = self.all_proxies().collect();
        // Certificates and what proxies ACKed outlive a reload.
        let mut kept: HashMap<String, MeshTls> = self.meshes.drain().map(|(name, state)| (name, state.tls)).collect();
        for dataplane in &dataplanes {
            let Some(proxy) = ProxyId::of(&dataplane.key) else { continue };
            before.remove(&proxy);
            if !self.meshes.contains_key(&proxy.mesh) {
                let tls = kept.remove(&proxy.mesh).unwrap_or_default();
                self.meshes.insert(proxy.mesh.clone(), MeshState { tls, ..MeshState::default() });
            }
            self.put_dataplane(&proxy, Some((view_of(dataplane).await, dataplane.clone())));
        }
        for gone in before {
            self.put_dataplane(&gone, None);
        }
        for mesh in list_all(self.store.as_ref(), ResourceType::Mesh).await? {
            let name = mesh.key.name;
            if let Some(tls) = kept.remove(&name) {
                self.meshes.entry(name.clone()).or_default().tls = tls;
            }
            self.load_mesh(&name).await?;
            self.load_policies(&name).await?;
        }
        let meshes: Vec<String> = self.meshes.keys().cloned().collect();
        for mesh in meshes {
            self.advance_tls(&mesh);
            self.refresh_services(&mesh, &Scope::All);
        }
        let everyone: BTreeSet<ProxyId> = self.all_proxies().collect();
        self.publish(everyone);
        Ok(())
    }

    fn put_dataplane(&mut self, proxy: &ProxyId, dataplane: Option<(DataplaneView, Resource)>) {
        match dataplane {
            Some((view, document)) => {
                let mesh = self.meshes.entry(proxy.mesh.clone()).or_default();
                mesh.dataplanes.insert(proxy.name.clone(), Arc::new(view));
                mesh.documents.insert(proxy.name.clone(), Arc::new(document));
                self.known.insert(proxy.clone());
            }
            None => {
                if let Some(mesh) = self.meshes.get_mut(&proxy.mesh) {
                    mesh.dataplanes.remove(&proxy.name);
                    mesh.documents.remove(&proxy.name);
                    mesh.route_backends.remove(&proxy.name);
                    mesh.tls.progress.remove(&proxy.name);
                    mesh.tls.certs.remove(&proxy.name);
                    mesh.tls.retries.remove(&proxy.name);
                }
                self.acks.set(proxy, false);
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

    /// Recomputes the mesh's services in `scope` from their Dataplanes and
    /// says which changed, and how.
    fn refresh_services(&mut self, mesh_name: &str, scope: &Scope) -> ServiceChanges {
        let Some(mesh) = self.meshes.get_mut(mesh_name) else { return ServiceChanges::default() };
        let connections = &self.connections;
        let (serving, departed): (Vec<_>, Vec<_>) = mesh
            .dataplanes
            .iter()
            .filter(|(_, view)| scope.covers(view))
            .partition(|(name, _)| connections.is_serving(&ProxyId::new(mesh_name, name.as_str())));
        // A departed sidecar's inbounds still say which protocol its service
        // speaks (so callers' listeners keep their kind), but offer no endpoint.
        let withdrawn: Vec<DataplaneView> = departed.iter().map(|(_, view)| not_ready(view)).collect();
        let mut services =
            kodiak_xds_gen::services(serving.iter().map(|(_, view)| view.as_ref()).chain(withdrawn.iter()));
        let intent = mesh.tls.intent();
        for (name, view) in &mut services {
            if mesh.tls.latches.calls_with_tls(intent, name) {
                view.mtls = Some(mesh_name.to_owned());
            }
        }
        match scope {
            Scope::All => mesh.services.update(services),
            Scope::Services(names) => {
                // A Dataplane in scope may serve other services too.
                services.retain(|name, _| names.contains(name));
                mesh.services.update_some(names, services)
            }
        }
    }

    /// The services whose inbounds `proxy`'s Dataplane has (none if unknown).
    fn served(&self, proxy: &ProxyId) -> Vec<String> {
        let view = self.meshes.get(&proxy.mesh).and_then(|mesh| mesh.dataplanes.get(&proxy.name));
        view.map(|view| view.inbounds.iter().map(|inbound| inbound.service.clone()).collect()).unwrap_or_default()
    }

    /// Proxies of a mesh with an outbound, or a route, to one of `services`.
    fn callers_of(&self, mesh_name: &str, services: &BTreeSet<String>) -> Vec<ProxyId> {
        let Some(mesh) = self.meshes.get(mesh_name) else { return Vec::new() };
        if services.is_empty() {
            return Vec::new();
        }
        let routes_to =
            |name: &String| mesh.route_backends.get(name).is_some_and(|backends| !backends.is_disjoint(services));
        mesh.dataplanes
            .iter()
            .filter(|(name, view)| {
                view.outbounds.iter().any(|outbound| services.contains(&outbound.service)) || routes_to(name)
            })
            .map(|(name, _)| ProxyId::new(mesh_name, name.as_str()))
            .collect()
    }

    /// The callers of services whose endpoints alone changed, each with the
    /// new assignments it needs. A caller with routes is added to
    /// `regenerate` instead (its routes may cut subsets out of a service's
    /// instances), and so is one not configured yet.
    fn endpoint_patches(
        &self,
        changes: &BTreeMap<String, BTreeMap<String, Arc<EnvoyResource>>>,
        regenerate: &mut BTreeSet<ProxyId>,
    ) -> Vec<EndpointPatch> {
        let mut patches = Vec::new();
        for (mesh_name, assignments) in changes.iter().filter(|(_, assignments)| !assignments.is_empty()) {
            let Some(mesh) = self.meshes.get(mesh_name) else { continue };
            let changed: BTreeSet<String> = assignments.keys().cloned().collect();
            for proxy in self.callers_of(mesh_name, &changed) {
                if regenerate.contains(&proxy) || !self.connections.is_connected(&proxy) {
                    continue;
                }
                let last = self.cache.get(&proxy.node_id());
                let Some(last) = last.filter(|_| !mesh.route_backends.contains_key(&proxy.name)) else {
                    regenerate.insert(proxy);
                    continue;
                };
                let held = last.resources(type_url::ENDPOINT);
                let view = &mesh.dataplanes[&proxy.name];
                // A MeshProxyPatch may have dropped a cluster, and its endpoints with it.
                let needed: Vec<Arc<EnvoyResource>> = (view.outbounds.iter())
                    .filter_map(|outbound| assignments.get(&outbound.service))
                    .filter(|assignment| held.contains_key(&assignment.name))
                    .cloned()
                    .collect();
                if !needed.is_empty() {
                    patches.push(EndpointPatch { proxy, last, assignments: needed });
                }
            }
        }
        patches
    }

    /// Gives each proxy its last snapshot with the new assignments in place
    /// of their namesakes, as a new generation. How it speaks TLS is as it
    /// was, so the TLS bookkeeping stays as it is.
    fn patch(&mut self, patches: Vec<EndpointPatch>) {
        for EndpointPatch { proxy, last, assignments } in patches {
            self.generation += 1;
            let patched = last.renumbered(self.generation).with(type_url::ENDPOINT, assignments);
            self.cache.set(&proxy.node_id(), Arc::new(patched));
            self.insights.generated(&proxy, self.generation);
        }
    }

    /// Generates and publishes a snapshot for each connected proxy given.
    /// A proxy whose mesh has mTLS on but no usable CA keeps its last
    /// snapshot (a new proxy gets none): it is never given plaintext instead.
    fn publish(&mut self, proxies: impl IntoIterator<Item = ProxyId>) {
        let now = SystemTime::now();
        for proxy in proxies {
            if !self.connections.is_connected(&proxy) {
                continue;
            }
            let Some(mesh) = self.meshes.get_mut(&proxy.mesh) else { continue };
            let Some(view) = mesh.dataplanes.get(&proxy.name).cloned() else { continue };
            let document = mesh.documents.get(&proxy.name).cloned();
            let security = match security_of(&mut mesh.tls, &view, document.as_deref(), &self.insights, now) {
                Ok(security) => {
                    mesh.tls.retries.remove(&proxy.name);
                    security
                }
                Err(Failure::Mesh(reason)) => {
                    // The next change of its Mesh or CA Secrets tries again.
                    tracing::warn!(dataplane = %proxy, %reason, "cannot configure mesh mTLS for the proxy; its configuration is left as it was");
                    continue;
                }
                Err(Failure::Proxy(reason)) => {
                    tracing::warn!(dataplane = %proxy, %reason, retry_in = ?RETRY_DELAY, "cannot issue the proxy's certificate; its configuration is left as it was");
                    mesh.tls.retries.insert(proxy.name.clone(), Instant::now() + RETRY_DELAY);
                    continue;
                }
            };
            if let Some(security) = &security {
                let mode = match security.mode {
                    kodiak_xds_gen::MtlsMode::Strict => "STRICT",
                    kodiak_xds_gen::MtlsMode::Permissive => "PERMISSIVE",
                };
                self.insights.mtls_mode(&proxy, mode);
            }
            self.generation += 1;
            let generation = self.generation;
            let outbound: Vec<(String, bool)> = view
                .outbounds
                .iter()
                .map(|outbound| {
                    let mtls = mesh.services.views().get(&outbound.service).is_some_and(|view| view.mtls.is_some());
                    (outbound.service.clone(), mtls)
                })
                .collect();
            let tls = &mut mesh.tls;
            // A mesh without mTLS and with nothing left to wind down needs no ACKs.
            let quiet = tls.intent() == Intent::Off
                && security.is_none()
                && tls.progress.values().all(|progress| progress.inbound_mtls_since.is_none());
            if quiet {
                tls.progress.remove(&proxy.name);
                self.acks.set(&proxy, false);
            } else {
                let (bundle, cert_root): (&[Arc<str>], _) = match &security {
                    Some(_) => (&tls.bundle, tls.certs.get(&proxy.name).map(|cert| cert.spec.root.clone())),
                    None => (&[], None),
                };
                let progress = tls.progress.entry(proxy.name.clone()).or_default();
                progress.sent(generation, security.is_some(), outbound, bundle, cert_root.as_ref());
                // Listen for the ACK before the snapshot can be sent.
                self.acks.set(&proxy, progress.awaiting());
            }
            let policies = match (&document, &mesh.policies) {
                (Some(document), Some(policies)) => {
                    proxy_policies(&proxy_rules(document, policies), view.outbound_services())
                }
                _ => ProxyPolicies::default(),
            };
            let policies = ProxyPolicies {
                tag_callers: mesh.tag_callers,
                access_log_pipe: self.connections.access_log_pipe(&proxy),
                ..policies
            };
            let (mut resources, problems) =
                proxy_resources_with_policies(&view, &mut mesh.services, security.as_ref(), &policies);
            match std::mem::take(&mut resources.route_backends) {
                backends if backends.is_empty() => mesh.route_backends.remove(&proxy.name),
                backends => mesh.route_backends.insert(proxy.name.clone(), backends),
            };
            for problem in &problems {
                tracing::warn!(dataplane = %proxy, %problem, "a policy does not apply to the proxy as written; what it targets is left as generated");
            }
            self.insights.policy_problems(&proxy, problems.iter().map(ToString::to_string).collect());
            self.cache.set(&proxy.node_id(), Arc::new(resources.into_snapshot(generation)));
            self.insights.generated(&proxy, generation);
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
            Ok(event) => match (event.key.kind, event.key.mesh) {
                (ResourceType::Dataplane, Some(mesh)) => {
                    self.changed.insert(ProxyId::new(mesh, event.key.name));
                }
                (ResourceType::Mesh, _) => {
                    self.meshes.insert(event.key.name);
                }
                (kind, Some(mesh)) if kind.is_policy() => {
                    self.policies.insert(mesh);
                }
                (ResourceType::Secret, Some(mesh)) => {
                    self.secrets.insert((mesh, event.key.name));
                }
                _ => {}
            },
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
                self.arrived.insert(proxy);
            }
            Signal::Departed(proxy) => {
                self.departed.insert(proxy);
            }
            Signal::Synced(proxy, generation) => self.synced.push((proxy, generation)),
        }
    }
}

/// A proxy's last snapshot and the new assignments it is to hold instead
/// of their namesakes.
struct EndpointPatch {
    proxy: ProxyId,
    last: Arc<kodiak_xds_server::Snapshot>,
    assignments: Vec<Arc<EnvoyResource>>,
}

/// Whose snapshots a step of a mesh's mTLS change touches.
enum TlsChange {
    /// Every proxy of the mesh.
    Whole,
    /// Services whose inbounds changed how they treat callers (their
    /// instances' snapshots change), and services whose callers may now use
    /// mTLS to them or must stop (their shared resources change).
    Moved { inbound: BTreeSet<String>, called: BTreeSet<String> },
}

impl TlsChange {
    fn none() -> Self {
        TlsChange::Moved { inbound: BTreeSet::new(), called: BTreeSet::new() }
    }
}

/// The services of a mesh whose views a batch may have changed.
#[derive(Debug)]
enum Scope {
    Services(BTreeSet<String>),
    All,
}

impl Default for Scope {
    fn default() -> Self {
        Scope::Services(BTreeSet::new())
    }
}

impl Scope {
    fn add(&mut self, services: impl IntoIterator<Item = String>) {
        if let Scope::Services(names) = self {
            names.extend(services);
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Scope::Services(names) if names.is_empty())
    }

    fn covers(&self, view: &DataplaneView) -> bool {
        match self {
            Scope::Services(names) => view.inbounds.iter().any(|inbound| names.contains(&inbound.service)),
            Scope::All => true,
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The key of workload certificates: ECDSA P-256, or RSA 2048 when the
/// backend's builtin root is RSA (`caCert.RSAbits`).
fn workload_key(backend: &CaBackendView) -> KeyKind {
    match backend.kind {
        CaKind::Builtin { rsa_bits: Some(_), .. } => KeyKind::Rsa2048,
        _ => KeyKind::EcdsaP256,
    }
}

/// Why a proxy's mTLS configuration cannot be made.
enum Failure {
    /// The mesh has no CA that can issue: every proxy of it waits.
    Mesh(String),
    /// This proxy's certificate could not be issued.
    Proxy(String),
}

/// What mesh mTLS adds to the proxy of `view`: its mode, certificate
/// (issued or renewed here when needed), trusted roots and permissions;
/// `None` when its mesh has mTLS off and nothing is left to wind down.
fn security_of(
    tls: &mut MeshTls,
    view: &DataplaneView,
    document: Option<&Resource>,
    insights: &Insights,
    now: SystemTime,
) -> Result<Option<ProxySecurity>, Failure> {
    let intent = tls.intent();
    let had_mtls = tls.progress.get(&view.name).is_some_and(|progress| progress.inbound_mtls_since.is_some());
    let mode = tls.latches.inbound_mode(intent, had_mtls, view.inbounds.iter().map(|inbound| &inbound.service));
    if intent == Intent::Off && mode.is_none() {
        if tls.certs.remove(&view.name).is_some() {
            insights.mtls(&ProxyId::new(view.mesh.as_str(), view.name.as_str()), None);
        }
        return Ok(None);
    }
    let ca = match (&tls.ca, tls.mtls.enabled()) {
        (Some(ca), Some(enabled)) if ca.backend.name == enabled.name && tls.ca_error.is_none() => ca,
        (Some(ca), None) => ca,
        (_, Some(enabled)) => {
            let reason =
                tls.ca_error.clone().unwrap_or_else(|| format!("the CA of backend {:?} is not loaded", enabled.name));
            return Err(Failure::Mesh(reason));
        }
        (None, None) => return Err(Failure::Mesh("mTLS is winding down but no CA is loaded".into())),
    };
    let spec =
        CertSpec::of(view, &ca.backend.name, &ca.root, ca.backend.workload_cert_lifetime, workload_key(&ca.backend));
    let current = tls.certs.get(&view.name);
    // A certificate from a new root waits until every proxy trusts that root.
    let waits = current.is_some_and(|cert| cert.spec.root != ca.root && !tls.root_trusted && now < cert.cert.not_after);
    if !waits && let Some(reason) = certs::reissue(current, &spec, now) {
        let issued = certs::issue(&ca.ca, spec, current, now).map_err(Failure::Proxy)?;
        tracing::info!(
            dataplane = %ProxyId::new(view.mesh.as_str(), view.name.as_str()),
            serial = %issued.serial,
            backend = %issued.spec.backend,
            reason = reason.as_str(),
            not_after = %humantime::format_rfc3339_seconds(issued.cert.not_after),
            renew_at = %humantime::format_rfc3339_seconds(issued.renew_at()),
            "issued a workload certificate"
        );
        insights.mtls(&ProxyId::new(view.mesh.as_str(), view.name.as_str()), Some(MtlsInsight::of(&issued, &tls.mtls)));
        tls.certs.insert(view.name.clone(), issued);
    }
    let cert = &tls.certs[&view.name];
    if tls.bundle.is_empty() {
        tls.bundle = vec![ca.root.clone()];
    }
    if !tls.bundle.contains(&cert.spec.root) {
        tls.bundle.push(cert.spec.root.clone());
    }
    let ca_bundle_pem = tls.bundle.iter().map(|root| with_newline(root)).collect();
    let permissions = document.map(|document| proxy_permissions(&tls.policies, document)).unwrap_or_default();
    Ok(Some(ProxySecurity {
        mode: if mode == Some(true) { kodiak_xds_gen::MtlsMode::Strict } else { kodiak_xds_gen::MtlsMode::Permissive },
        identity: Identity { cert_chain_pem: cert.cert.cert_pem.clone(), key_pem: cert.cert.key_pem.clone() },
        ca_bundle_pem,
        permissions,
    }))
}

/// Whether `policy` is a MeshFaultInjection with a `from` entry that picks
/// callers by their tags (any kind but Mesh).
fn picks_callers_by_tags(policy: &Resource) -> bool {
    policy.key.kind == ResourceType::MeshFaultInjection
        && policy.body.get("spec").and_then(|spec| spec.get("from")).and_then(serde_json::Value::as_array).is_some_and(
            |from| {
                from.iter()
                    .any(|entry| entry.pointer("/targetRef/kind").and_then(serde_json::Value::as_str) != Some("Mesh"))
            },
        )
}

/// PEM blocks end with a line break, so several can be concatenated.
fn with_newline(pem: &str) -> String {
    if pem.ends_with('\n') { pem.to_owned() } else { format!("{pem}\n") }
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
    list_in(store, kind, None).await
}

/// Every resource of a type in `mesh` (in every mesh when none), page by page.
async fn list_in(
    store: &dyn ResourceStore,
    kind: ResourceType,
    mesh: Option<&str>,
) -> Result<Vec<Resource>, StoreError> {
    let size = kodiak_api::MAX_PAGE_SIZE as usize;
    let mut query = ListQuery::all(kind, size);
    query.mesh = mesh.map(str::to_owned);
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

    /// The default mesh with mTLS on: a builtin backend `ca-1` in `mode`,
    /// with workload certificates living `expiration` when given.
    async fn enable_mtls(store: &dyn ResourceStore, mode: &str, expiration: Option<&str>) {
        let dp_cert = expiration.map(|e| format!(", dpCert: {{rotation: {{expiration: {e}}}}}")).unwrap_or_default();
        let mesh = dataplane(&format!(
            "{{type: Mesh, name: default, mtls: {{enabledBackend: ca-1, backends: [{{name: ca-1, type: builtin, mode: {mode}{dp_cert}}}]}}}}"
        ));
        store.update(mesh, None).await.unwrap();
    }

    fn connect(xds: &Xds, name: &str) {
        let proxy = ProxyId::new("default", name);
        xds.connections.opened(&proxy, None).unwrap();
        xds.signals.send(Signal::Arrived(proxy)).unwrap();
    }

    /// Polls the proxy's snapshot until `check` accepts it (ten seconds at most).
    async fn snapshot_where(
        xds: &Xds,
        node: &str,
        check: impl Fn(&kodiak_xds_server::Snapshot) -> bool,
    ) -> Arc<kodiak_xds_server::Snapshot> {
        for _ in 0..1000 {
            if let Some(snapshot) = xds.cache.get(node)
                && check(&snapshot)
            {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{node} never got the snapshot expected");
    }

    /// The proxy's certificate (PEM) in its identity secret, when it has one.
    fn identity(snapshot: &kodiak_xds_server::Snapshot) -> Option<String> {
        use base64::Engine;
        let secret = snapshot.resources(type_url::SECRET).get("identity_cert:secret:default")?;
        let json = kodiak_xds_gen::render(secret);
        let bytes = json["tlsCertificate"]["certificateChain"]["inlineBytes"].as_str()?;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(bytes).ok()?).ok()
    }

    fn trusted(snapshot: &kodiak_xds_server::Snapshot) -> String {
        use base64::Engine;
        let secret = &snapshot.resources(type_url::SECRET)["mesh_ca:secret:default"];
        let bytes = kodiak_xds_gen::render(secret)["validationContext"]["trustedCa"]["inlineBytes"].clone();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(bytes.as_str().unwrap()).unwrap()).unwrap()
    }

    fn uri_sans(pem: &str) -> Vec<String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Whether `caller`'s cluster of `service` uses mesh mTLS.
    fn calls_with_tls(snapshot: &kodiak_xds_server::Snapshot, service: &str) -> bool {
        let cluster = kodiak_xds_gen::render(&snapshot.resources(type_url::CLUSTER)[service]);
        cluster.get("transportSocket").is_some()
    }

    /// How many filter chains the proxy's listener `name` has (2: PERMISSIVE, 1: STRICT or plaintext).
    fn filter_chains(snapshot: &kodiak_xds_server::Snapshot, name: &str) -> usize {
        let listener = kodiak_xds_gen::render(&snapshot.resources(type_url::LISTENER)[name]);
        listener["filterChains"].as_array().map_or(0, Vec::len)
    }

    async fn started(store: &Arc<dyn ResourceStore>) -> Xds {
        let (stop, stopped) = watch::channel(false);
        std::mem::forget(stop);
        let (xds, _routes) = Xds::start(store.clone(), &Config::default(), "cp-test", stopped).await.unwrap();
        xds
    }

    /// The xDS parts with a sync loop that runs only when the test steps it.
    struct Stepped {
        xds: Xds,
        sync: Sync,
        events: broadcast::Receiver<ChangeEvent>,
        signals: mpsc::UnboundedReceiver<Signal>,
        stop: watch::Receiver<bool>,
        _stop: watch::Sender<bool>,
    }

    impl Stepped {
        async fn new(store: &Arc<dyn ResourceStore>) -> Self {
            let config = Config::default();
            let (signals, signal_rx) = mpsc::unbounded_channel();
            let connections = Arc::new(Connections::default());
            let xds = Xds {
                store: store.clone(),
                cache: Arc::new(SnapshotCache::new()),
                connections: connections.clone(),
                known: Arc::new(KnownDataplanes::default()),
                insights: Arc::new(Insights::new("cp-test")),
                cleanup: crate::xds::cleanup::Cleanup::new(store.clone(), connections, Duration::from_secs(60)),
                signals,
                acks: Arc::new(AwaitedAcks::default()),
                dp_authn: config.dp_server.authn.dp_proxy.kind,
            };
            let events = store.watch();
            let mut sync = Sync::new(&xds, config.sync_debounce());
            sync.reload().await.unwrap();
            let (_stop, stop) = watch::channel(false);
            Stepped { xds, sync, events, signals: signal_rx, stop, _stop }
        }

        async fn step(&mut self) -> bool {
            self.sync.step(&mut self.events, &mut self.signals, &mut self.stop).await
        }

        /// Steps until nothing gives the loop work for a second of (paused)
        /// time: everything sent so far is handled, and no wait for an ACK
        /// (30 s) has been cut short.
        async fn settle(&mut self) {
            while tokio::time::timeout(Duration::from_secs(1), self.step()).await.is_ok() {}
        }

        fn snapshot(&self, name: &str) -> Arc<kodiak_xds_server::Snapshot> {
            self.xds.cache.get(&format!("default.{name}")).unwrap_or_else(|| panic!("{name} has no snapshot"))
        }

        fn synced(&self, name: &str) {
            let generation = self.snapshot(name).generation();
            self.xds.signals.send(Signal::Synced(ProxyId::new("default", name), generation)).unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_mesh_never_wakes_the_sync_loop() {
        for mode in [None, Some("PERMISSIVE"), Some("STRICT")] {
            let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
            crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
            if let Some(mode) = mode {
                enable_mtls(store.as_ref(), mode, None).await;
            }
            for resource in [backend("b-1", "b", 10001), caller("a", "b", 20001)] {
                store.create(resource).await.unwrap();
            }
            let mut stepped = Stepped::new(&store).await;
            connect(&stepped.xds, "b-1");
            connect(&stepped.xds, "a");
            assert!(stepped.step().await, "the arrivals are handled");
            let generations =
                |xds: &Xds| ["default.a", "default.b-1"].map(|node| xds.cache.get(node).unwrap().generation());
            let before = generations(&stepped.xds);
            let b1 = stepped.xds.cache.get("default.b-1").unwrap();
            assert_eq!(identity(&b1).is_some(), mode.is_some(), "{mode:?}");

            let woke = tokio::time::timeout(Duration::from_secs(60), stepped.step()).await;
            assert!(woke.is_err(), "mTLS {mode:?}: the loop woke with nothing to do");
            assert_eq!(generations(&stepped.xds), before, "mTLS {mode:?}: nothing regenerated");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxy_whose_certificate_cannot_be_issued_is_retried_alone() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        enable_mtls(store.as_ref(), "STRICT", None).await;
        // A tag value that cannot be written into a URI SAN (the API refuses
        // it; a store written to by other means may still hold it).
        let mut bad = backend("bad-1", "c", 10002);
        bad.body["networking"]["inbound"][0]["tags"]["team"] = "café".into();
        for resource in [backend("b-1", "b", 10001), bad] {
            store.create(resource).await.unwrap();
        }
        let mut stepped = Stepped::new(&store).await;
        connect(&stepped.xds, "b-1");
        connect(&stepped.xds, "bad-1");
        assert!(stepped.step().await);
        let b1 = stepped.xds.cache.get("default.b-1").unwrap();
        assert!(identity(&b1).is_some());
        assert!(stepped.xds.cache.get("default.bad-1").is_none(), "no configuration without a certificate");
        let tls = &stepped.sync.meshes["default"].tls;
        assert!(tls.ca_error.is_none(), "one proxy's failure is not the mesh's");
        assert!(tls.deadline(&tls.certs["b-1"]).is_some(), "b-1 is still renewed");

        let early = tokio::time::timeout(RETRY_DELAY - Duration::from_millis(100), stepped.step()).await;
        assert!(early.is_err(), "bad-1 is not retried before {RETRY_DELAY:?}");
        let retried = tokio::time::timeout(Duration::from_millis(200), stepped.step()).await;
        assert!(retried.is_ok(), "bad-1 is retried after {RETRY_DELAY:?}");
        assert!(stepped.xds.cache.get("default.bad-1").is_none());
        assert_eq!(stepped.xds.cache.get("default.b-1").unwrap().generation(), b1.generation(), "b-1 is left alone");
        assert!(stepped.sync.meshes["default"].tls.retries.contains_key("bad-1"), "and tried again later");

        // Once its Dataplane is fixed, it gets its certificate and no more retries.
        store.update(backend("bad-1", "c", 10002), None).await.unwrap();
        assert!(stepped.step().await);
        assert!(identity(&stepped.xds.cache.get("default.bad-1").unwrap()).is_some());
        assert!(stepped.sync.meshes["default"].tls.retries.is_empty());
    }

    #[tokio::test]
    async fn a_proxy_in_an_mtls_mesh_gets_a_certificate_for_its_tags_from_the_mesh_ca() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        enable_mtls(store.as_ref(), "STRICT", None).await;
        store
            .create(dataplane(
                "{type: Dataplane, mesh: default, name: b-1, networking: {address: 127.0.0.1, inbound: [
                   {port: 10001, tags: {kuma.io/service: b, version: v1}}]}}",
            ))
            .await
            .unwrap();
        let xds = started(&store).await;
        connect(&xds, "b-1");
        let snapshot = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some()).await;
        let pem = identity(&snapshot).unwrap();
        assert_eq!(uri_sans(&pem), ["spiffe://default/b", "kuma://kuma.io/service/b", "kuma://version/v1"]);

        let key = |name: &str| ResourceKey::new(ResourceType::Secret, Some("default"), name);
        let root = store.get(&key("default.ca-builtin-cert-ca-1")).await.unwrap().expect("the CA Secret exists");
        let root = String::from_utf8(super::mesh_ca::secret_data(&root).unwrap()).unwrap();
        assert_eq!(trusted(&snapshot), root, "the proxy trusts the mesh's root");
        let ca = kodiak_ca::Ca::from_pem(
            &root,
            &{
                let key = store.get(&key("default.ca-builtin-key-ca-1")).await.unwrap().unwrap();
                String::from_utf8(super::mesh_ca::secret_data(&key).unwrap()).unwrap()
            },
            SystemTime::now(),
        );
        assert!(ca.is_ok(), "the CA Secrets hold a usable CA");
        let insight = xds.insights.document(&ProxyId::new("default", "b-1"));
        assert_eq!(insight["mTLS"]["issuedBackend"], "ca-1", "{insight}");
        assert_eq!(insight["mTLS"]["certificateRegenerations"], 0, "{insight}");

        // New tags, new certificate.
        store
            .update(
                dataplane(
                    "{type: Dataplane, mesh: default, name: b-1, networking: {address: 127.0.0.1, inbound: [
                       {port: 10001, tags: {kuma.io/service: b, version: v2}}]}}",
                ),
                None,
            )
            .await
            .unwrap();
        let retagged = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some_and(|p| p != pem)).await;
        assert!(uri_sans(&identity(&retagged).unwrap()).contains(&"kuma://version/v2".to_owned()));
    }

    #[tokio::test]
    async fn a_short_lived_certificate_is_renewed_without_any_event() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        enable_mtls(store.as_ref(), "PERMISSIVE", Some("3s")).await;
        store.create(backend("b-1", "b", 10001)).await.unwrap();
        let xds = started(&store).await;
        connect(&xds, "b-1");
        let first = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some()).await;
        let pem = identity(&first).unwrap();
        let not_after = |pem: &str| {
            let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            pem.parse_x509().unwrap().validity().not_after.timestamp()
        };
        let seen = std::time::Instant::now();
        let renewed = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some_and(|p| p != pem)).await;
        let (after, now) = (seen.elapsed(), SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap());
        // 4/5 of a life of 2 to 3 s (validity ends on a whole second): 1.6 to 2.4 s after issue.
        assert!(after >= Duration::from_millis(1000), "renewed too soon: {after:?}");
        assert!((now.as_secs() as i64) < not_after(&pem), "renewed before the first certificate expired");
        assert!(not_after(&identity(&renewed).unwrap()) > not_after(&pem));
        assert!(renewed.generation() > first.generation());
        let insight = xds.insights.document(&ProxyId::new("default", "b-1"));
        assert_eq!(insight["mTLS"]["certificateRegenerations"], 1, "{insight}");
    }

    #[tokio::test]
    async fn enabling_mtls_creates_the_ca_secrets_and_callers_wait_for_every_instance_to_ack() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        for resource in [backend("b-1", "b", 10001), caller("a", "b", 20001)] {
            store.create(resource).await.unwrap();
        }
        let xds = started(&store).await;
        connect(&xds, "a");
        connect(&xds, "b-1");
        let plain = snapshot_where(&xds, "default.a", |s| s.resources(type_url::CLUSTER).contains_key("b")).await;
        assert!(!calls_with_tls(&plain, "b"));

        enable_mtls(store.as_ref(), "STRICT", None).await;
        let key = ResourceKey::new(ResourceType::Secret, Some("default"), "default.ca-builtin-cert-ca-1");
        let b1 = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some()).await;
        assert!(store.get(&key).await.unwrap().is_some(), "enabling mTLS generated the CA");
        assert_eq!(filter_chains(&b1, "inbound:127.0.0.1:10001"), 2, "PERMISSIVE while callers speak plaintext");
        let b1_proxy = ProxyId::new("default", "b-1");
        assert_eq!(xds.insights.document(&b1_proxy)["mTLS"]["inboundMode"], "PERMISSIVE");
        let a = snapshot_where(&xds, "default.a", |s| s.generation() > plain.generation()).await;
        assert!(!calls_with_tls(&a, "b"), "b-1 has not ACKed its mTLS inbound yet");

        assert!(xds.acks.wants(&b1_proxy), "the loop waits for b-1's ACK");
        xds.signals.send(Signal::Synced(b1_proxy.clone(), b1.generation())).unwrap();
        let a = snapshot_where(&xds, "default.a", |s| calls_with_tls(s, "b")).await;

        let a_proxy = ProxyId::new("default", "a");
        assert!(xds.acks.wants(&a_proxy), "the loop waits for a's ACK before b-1 turns STRICT");
        xds.signals.send(Signal::Synced(a_proxy, a.generation())).unwrap();
        snapshot_where(&xds, "default.b-1", |s| filter_chains(s, "inbound:127.0.0.1:10001") == 1).await;
        assert_eq!(xds.insights.document(&b1_proxy)["mTLS"]["inboundMode"], "STRICT");
    }

    #[tokio::test]
    async fn turning_mtls_off_moves_callers_to_plaintext_before_the_inbounds() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        enable_mtls(store.as_ref(), "PERMISSIVE", None).await;
        for resource in [backend("b-1", "b", 10001), caller("a", "b", 20001)] {
            store.create(resource).await.unwrap();
        }
        let xds = started(&store).await;
        connect(&xds, "a");
        connect(&xds, "b-1");
        let (a_proxy, b1_proxy) = (ProxyId::new("default", "a"), ProxyId::new("default", "b-1"));
        let b1 = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some()).await;
        xds.signals.send(Signal::Synced(b1_proxy.clone(), b1.generation())).unwrap();
        let a = snapshot_where(&xds, "default.a", |s| calls_with_tls(s, "b")).await;
        xds.signals.send(Signal::Synced(a_proxy.clone(), a.generation())).unwrap();

        let mut off = store.get(&ResourceKey::mesh("default")).await.unwrap().unwrap();
        off.body["mtls"]["enabledBackend"] = "".into();
        store.update(off, None).await.unwrap();
        let a = snapshot_where(&xds, "default.a", |s| !calls_with_tls(s, "b")).await;
        let b1 = xds.cache.get("default.b-1").unwrap();
        assert!(identity(&b1).is_some(), "b-1 still accepts mTLS while a may call with it");
        assert_eq!(filter_chains(&b1, "inbound:127.0.0.1:10001"), 2, "PERMISSIVE");
        assert!(xds.acks.wants(&a_proxy));
        xds.signals.send(Signal::Synced(a_proxy, a.generation())).unwrap();
        let b1 = snapshot_where(&xds, "default.b-1", |s| identity(s).is_none()).await;
        assert_eq!(filter_chains(&b1, "inbound:127.0.0.1:10001"), 1, "plaintext only once a ACKed plaintext");
        assert!(xds.insights.document(&b1_proxy).get("mTLS").is_none(), "no certificate any more");
    }

    #[tokio::test]
    async fn a_new_root_is_trusted_everywhere_before_certificates_move_to_it() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        enable_mtls(store.as_ref(), "STRICT", None).await;
        for resource in [backend("b-1", "b", 10001), backend("c-1", "c", 10002)] {
            store.create(resource).await.unwrap();
        }
        let xds = started(&store).await;
        connect(&xds, "b-1");
        connect(&xds, "c-1");
        let old = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some()).await;
        let (old_cert, old_root) = (identity(&old).unwrap(), trusted(&old));
        let c1 = snapshot_where(&xds, "default.c-1", |s| identity(s).is_some()).await;
        let c1_old_cert = identity(&c1).unwrap();

        // A new root: the builtin CA's Secrets are replaced behind the control plane's back.
        for name in ["default.ca-builtin-key-ca-1", "default.ca-builtin-cert-ca-1"] {
            store.delete(&ResourceKey::new(ResourceType::Secret, Some("default"), name)).await.unwrap();
        }
        let both = snapshot_where(&xds, "default.b-1", |s| trusted(s).len() > old_root.len()).await;
        let bundle = trusted(&both);
        assert!(bundle.ends_with(&old_root), "the old root stays trusted: {bundle}");
        assert_eq!(identity(&both).unwrap(), old_cert, "no certificate from the new root before everyone trusts it");

        for name in ["b-1", "c-1"] {
            let snapshot = snapshot_where(&xds, &format!("default.{name}"), |s| trusted(s) == bundle).await;
            xds.signals.send(Signal::Synced(ProxyId::new("default", name), snapshot.generation())).unwrap();
        }
        let moved = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some_and(|c| c != old_cert)).await;
        assert_eq!(trusted(&moved), bundle, "the old root stays while some proxy may still present its certificate");
        for (name, before) in [("b-1", &old_cert), ("c-1", &c1_old_cert)] {
            let snapshot =
                snapshot_where(&xds, &format!("default.{name}"), |s| identity(s).is_some_and(|c| c != *before)).await;
            xds.signals.send(Signal::Synced(ProxyId::new("default", name), snapshot.generation())).unwrap();
        }
        let new_only = snapshot_where(&xds, "default.b-1", |s| !trusted(s).contains(&old_root)).await;
        assert!(bundle.starts_with(&trusted(&new_only)), "only the new root is left");
    }

    #[tokio::test]
    async fn a_mesh_wide_policy_change_reaches_every_caller() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        store
            .create(dataplane(
                "{type: Dataplane, mesh: default, name: b-1, networking: {address: 127.0.0.1, inbound: [
                   {port: 10001, tags: {kuma.io/service: b, kuma.io/protocol: http}}]}}",
            ))
            .await
            .unwrap();
        store.create(caller("a-1", "b", 10002)).await.unwrap();
        let xds = started(&store).await;
        connect(&xds, "b-1");
        connect(&xds, "a-1");
        let cluster = |s: &kodiak_xds_server::Snapshot| {
            s.resources(type_url::CLUSTER).get("b").map(|c| kodiak_xds_gen::render(c).to_string()).unwrap_or_default()
        };
        let before = snapshot_where(&xds, "default.a-1", |s| cluster(s).contains("\"connectTimeout\":\"5s\"")).await;
        for millis in [1001, 1002] {
            let policy = dataplane(&format!(
                "{{type: MeshTimeout, mesh: default, name: bench-timeout, spec: {{targetRef: {{kind: Mesh}},
                   to: [{{targetRef: {{kind: Mesh}}, default: {{connectionTimeout: {millis}ms}}}}]}}}}"
            ));
            if millis == 1001 {
                store.create(policy).await.unwrap();
            } else {
                store.update(policy, None).await.unwrap();
            }
            let expected = format!("\"connectTimeout\":\"1.{:03}s\"", millis - 1000);
            let after = snapshot_where(&xds, "default.a-1", |s| cluster(s).contains(&expected)).await;
            assert!(after.generation() > before.generation());
        }
    }

    #[tokio::test]
    async fn a_permission_change_reaches_the_proxies_of_its_mesh() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        enable_mtls(store.as_ref(), "STRICT", None).await;
        store.create(backend("b-1", "b", 10001)).await.unwrap();
        let xds = started(&store).await;
        connect(&xds, "b-1");
        let listener = |s: &kodiak_xds_server::Snapshot| {
            kodiak_xds_gen::render(&s.resources(type_url::LISTENER)["inbound:127.0.0.1:10001"]).to_string()
        };
        let before = snapshot_where(&xds, "default.b-1", |s| identity(s).is_some()).await;
        assert!(!listener(&before).contains("deny-b"));
        store
            .create(dataplane(
                "{type: MeshTrafficPermission, mesh: default, name: deny-b, spec: {targetRef: {kind: MeshService, name: b},
                   from: [{targetRef: {kind: Mesh}, default: {action: Deny}}]}}",
            ))
            .await
            .unwrap();
        let after = snapshot_where(&xds, "default.b-1", |s| listener(s).contains("deny-b")).await;
        assert!(after.generation() > before.generation());
    }

    #[tokio::test(start_paused = true)]
    async fn a_provided_ca_half_replaced_changes_nothing_until_it_is_whole_again() {
        use base64::Engine;
        let secret = |name: &str, pem: &str| {
            let data = base64::engine::general_purpose::STANDARD.encode(pem);
            dataplane(&format!("{{type: Secret, mesh: default, name: {name}, data: '{data}'}}"))
        };
        let root = |name: &str| {
            kodiak_ca::RootCa::generate(
                "default",
                name,
                KeyKind::EcdsaP256,
                Duration::from_secs(3600),
                SystemTime::now(),
            )
            .unwrap()
        };
        let (one, two) = (root("one"), root("two"));
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        store.create(secret("ca-cert", one.cert_pem())).await.unwrap();
        store.create(secret("ca-key", one.key_pem())).await.unwrap();
        let mesh = "{type: Mesh, name: default, mtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: provided,
                     conf: {cert: {secret: ca-cert}, key: {secret: ca-key}}}]}}";
        store.update(dataplane(mesh), None).await.unwrap();
        store.create(backend("b-1", "b", 10001)).await.unwrap();
        let mut stepped = Stepped::new(&store).await;
        connect(&stepped.xds, "b-1");
        stepped.settle().await;
        let first = stepped.snapshot("b-1");
        assert!(identity(&first).is_some());
        assert_eq!(trusted(&first), one.cert_pem());

        // The certificate is replaced first: until the key follows, the CA is unusable and nothing moves.
        store.update(secret("ca-cert", two.cert_pem()), None).await.unwrap();
        stepped.settle().await;
        assert_eq!(stepped.snapshot("b-1").generation(), first.generation(), "left as it was");

        store.update(secret("ca-key", two.key_pem()), None).await.unwrap();
        stepped.settle().await;
        let both = stepped.snapshot("b-1");
        assert!(trusted(&both).contains(two.cert_pem()), "the new root is trusted");
        assert!(trusted(&both).contains(one.cert_pem()), "the old root stays trusted meanwhile");
        assert_eq!(identity(&both), identity(&first), "the certificate waits until the new root is trusted");
        stepped.synced("b-1");
        stepped.settle().await;
        let moved = stepped.snapshot("b-1");
        assert_ne!(identity(&moved), identity(&first), "the certificate moves once the new root is trusted");
        stepped.synced("b-1");
        stepped.settle().await;
        assert_eq!(trusted(&stepped.snapshot("b-1")), two.cert_pem());
    }

    #[tokio::test(start_paused = true)]
    async fn a_sidecar_joining_an_mtls_mesh_regenerates_only_what_it_touches() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        enable_mtls(store.as_ref(), "STRICT", None).await;
        for resource in [backend("b-1", "b", 10001), backend("d-1", "d", 10002)] {
            store.create(resource).await.unwrap();
        }
        let mut stepped = Stepped::new(&store).await;
        connect(&stepped.xds, "b-1");
        stepped.settle().await;
        assert!(identity(&stepped.snapshot("b-1")).is_some());
        stepped.synced("b-1");
        stepped.settle().await;
        let settled = stepped.snapshot("b-1").generation();

        connect(&stepped.xds, "d-1");
        stepped.settle().await;
        assert!(identity(&stepped.snapshot("d-1")).is_some());
        stepped.synced("d-1");
        stepped.settle().await;
        assert_eq!(stepped.snapshot("b-1").generation(), settled, "b-1 neither calls nor serves d");
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
        let before = xds.cache.get("default.a").unwrap();

        store.create(backend("b-2", "b", 10003)).await.unwrap();
        generation_above(&xds, "default.a", a).await;
        assert_eq!(generation(&xds, "default.c").await, c, "c calls d only: nothing changed for it");
        // Only b's assignment is new in a's snapshot; everything else is the same.
        let after = xds.cache.get("default.a").unwrap();
        for kind in [type_url::CLUSTER, type_url::LISTENER, type_url::ENDPOINT] {
            let (was, now) = (before.resources(kind), after.resources(kind));
            let same = was.len() == now.len() && was.values().zip(now.values()).all(|(x, y)| Arc::ptr_eq(x, y));
            assert_eq!(same, kind != type_url::ENDPOINT, "{kind}");
        }
        assert_eq!(ports_of(&after, "b"), [10001, 10003]);

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

    /// The ports of `service`'s endpoints in `snapshot`, read from Envoy's JSON form.
    fn ports_of(snapshot: &kodiak_xds_server::Snapshot, service: &str) -> Vec<u64> {
        let json = kodiak_xds_gen::render(&snapshot.resources(type_url::ENDPOINT)[service]);
        json["endpoints"][0]["lbEndpoints"]
            .as_array()
            .map(|endpoints| {
                endpoints
                    .iter()
                    .filter_map(|e| e["endpoint"]["address"]["socketAddress"]["portValue"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_new_endpoint_of_a_route_backend_reaches_the_callers_of_the_route() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        crate::defaults::ensure_default_mesh(store.as_ref()).await.unwrap();
        for resource in [backend("b-1", "b", 10001), caller("a", "b", 20001)] {
            store.create(resource).await.unwrap();
        }
        let xds = started(&store).await;
        connect(&xds, "a");
        let first = generation(&xds, "default.a").await;
        let split = "type: MeshTCPRoute\nmesh: default\nname: split\nspec:\n  targetRef: {kind: Mesh}\n  to:\n  - targetRef: {kind: MeshService, name: b}\n    rules:\n    - default:\n        backendRefs:\n        - {kind: MeshService, name: b, weight: 3}\n        - {kind: MeshService, name: c, weight: 1}\n";
        store.create(dataplane(split)).await.unwrap();
        let routed = generation_above(&xds, "default.a", first).await;
        assert_eq!(ports_of(&xds.cache.get("default.a").unwrap(), "c"), [] as [u64; 0], "c has no instance yet");

        // a does not call c itself: c's first instance reaches it through the route.
        store.create(backend("c-1", "c", 10002)).await.unwrap();
        generation_above(&xds, "default.a", routed).await;
        assert_eq!(ports_of(&xds.cache.get("default.a").unwrap(), "c"), [10002]);
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
        let ports_of_b = |xds: &Xds| ports_of(&xds.cache.get("default.a").unwrap(), "b");
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
