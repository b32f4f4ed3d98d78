//! A scale scenario, phase by phase: the connect storm, a mesh-wide policy
//! change, one service scaled out, a certificate rotation wave and an idle
//! spell, each timed per proxy from the moment its cause happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::connect::DpServer;
use crate::control_plane::{ControlPlane, Usage};
use crate::fleet::{Fleet, Probe, Totals};
use crate::proxy::{self, Identity, Variant};
use crate::stats::Spread;
use crate::topology::Topology;

/// The longest wait for the proxies to go quiet between phases.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// How the simulated proxies' Dataplanes reach the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Register {
    /// Applied through the REST API before any proxy connects.
    Api,
    /// Carried by each proxy in its node metadata, registered when its stream opens.
    Inline,
}

/// Everything a run is made of.
#[derive(Debug, Clone)]
pub struct Settings {
    pub topology: Topology,
    pub variant: Variant,
    pub register: Register,
    /// The share of responses each proxy NACKs.
    pub nack_share: f64,
    /// Proxies started per second in the connect storm; none: all at once.
    pub ramp_up: Option<f64>,
    /// Instances the scaled-out service ends with.
    pub scale_to: usize,
    pub idle: Duration,
    /// How long a phase waits for every proxy.
    pub phase_timeout: Duration,
    /// REST calls in flight at once while applying Dataplanes.
    pub api_concurrency: usize,
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub name: &'static str,
    /// Per proxy, from the phase's cause to the ACK of a configuration showing it.
    pub spread: Spread,
    /// Everything the proxies received during the phase.
    pub received: Totals,
    /// The control plane's memory and CPU time at the end of the phase.
    pub usage: Option<Usage>,
    /// The control plane's CPU time during the phase as a share of one core.
    pub cpu_share: Option<f64>,
    pub wall: Duration,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub phases: Vec<PhaseReport>,
    /// Proxies connected at the end.
    pub proxies: usize,
    /// The control plane's memory before any proxy connected (Dataplanes stored).
    pub usage_before: Option<Usage>,
}

impl Report {
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|phase| phase.name == name)
    }
}

/// The running proxies and what they report to.
struct Proxies {
    fleet: Arc<Fleet>,
    dp: DpServer,
    token: Option<Arc<str>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Proxies {
    fn launch(
        &mut self,
        settings: &Settings,
        index: usize,
        name: String,
        dataplane: &serde_json::Value,
        delay: Duration,
    ) -> anyhow::Result<()> {
        let identity = Identity {
            index,
            mesh: settings.topology.mesh.clone(),
            name,
            inline_dataplane: (settings.register == Register::Inline).then(|| dataplane.to_string()),
            token: self.token.clone(),
            variant: settings.variant,
            nack_share: settings.nack_share,
        };
        let channel = self.dp.channel()?;
        let (fleet, stop) = (self.fleet.clone(), self.stop.subscribe());
        self.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            proxy::run(identity, channel, fleet, stop).await;
        });
        Ok(())
    }

    async fn shut(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Runs every phase against `control_plane` and reports them.
pub async fn run(
    settings: &Settings,
    control_plane: &ControlPlane,
    progress: &dyn Fn(&PhaseReport),
) -> anyhow::Result<Report> {
    let topology = &settings.topology;
    let deployed = topology.proxies();
    let added = settings.scale_to.saturating_sub(topology.instances);
    if topology.mtls {
        let root = new_root(&topology.mesh, "first")?;
        for secret in topology.ca_secrets(root.cert_pem(), root.key_pem()) {
            control_plane.rest.put(&secret).await.context("cannot apply the CA's Secrets")?;
        }
    }
    control_plane.rest.put(&topology.mesh_document()).await.context("cannot apply the Mesh")?;
    let token = control_plane.rest.dataplane_token(&topology.mesh).await.context("cannot get a dataplane token")?;
    let token: Option<Arc<str>> = Some(Arc::from(token));
    let documents: Vec<serde_json::Value> = (0..deployed).map(|index| topology.dataplane_of(index)).collect();
    if settings.register == Register::Api {
        apply_all(control_plane, &documents, settings.api_concurrency).await?;
    }
    let usage_before = control_plane.usage();
    let fleet = Fleet::new(deployed + added);
    let dp = DpServer::new(&control_plane.dp_server_url, control_plane.ca_pem.as_deref())?;
    let mut proxies = Proxies { fleet: fleet.clone(), dp, token, stop: watch::channel(false).0, tasks: JoinSet::new() };
    let mut phases = Vec::new();
    let mut report_phase = |phase: PhaseReport| {
        progress(&phase);
        phases.push(phase);
    };

    // The connect storm: each proxy timed from its own start.
    let phase = Phase::begin(control_plane, &fleet).await;
    let mut starts = Vec::with_capacity(deployed);
    for (index, document) in documents.iter().enumerate() {
        let delay = settings.ramp_up.map_or(Duration::ZERO, |rate| Duration::from_secs_f64(index as f64 / rate));
        starts.push(phase.start + delay);
        proxies.launch(settings, index, topology.proxy_name(index), document, delay)?;
    }
    let everyone: Vec<usize> = (0..deployed).collect();
    wait_for(&everyone, settings.phase_timeout, |proxy| fleet.first_config(proxy)).await;
    let times =
        everyone.iter().filter_map(|&proxy| Some(fleet.first_config(proxy)?.duration_since(starts[proxy]))).collect();
    report_phase(phase.end("connect storm", Spread::of(times, deployed), control_plane, &fleet));

    // A mesh-wide policy change: the default MeshTimeout gets a connect
    // timeout no cluster has yet.
    let millis = 4_000 + u64::from(std::process::id() % 997);
    let probe = fleet.arm(Probe::ConnectTimeout { millis });
    let mut phase = Phase::begin(control_plane, &fleet).await;
    let path = format!("/meshes/{0}/meshtimeouts/mesh-timeout-all-{0}", topology.mesh);
    let mut timeout = control_plane.rest.get(&path).await.context("cannot read the mesh's default MeshTimeout")?;
    timeout["spec"]["to"][0]["default"]["connectionTimeout"] = format!("{millis}ms").into();
    for field in ["creationTime", "modificationTime"] {
        timeout.as_object_mut().map(|object| object.remove(field));
    }
    control_plane.rest.put(&timeout).await?;
    phase.start = Instant::now();
    report_phase(phase.wait(settings, "mesh-wide policy change", &everyone, probe, control_plane, &fleet).await);

    // One service scaled out: its new instances register and connect; its
    // callers must see every endpoint.
    if added > 0 {
        let scaled = 0;
        let probe = fleet.arm(Probe::Endpoints { assignment: Topology::service(scaled), count: settings.scale_to });
        let mut phase = Phase::begin(control_plane, &fleet).await;
        let new: Vec<serde_json::Value> =
            (topology.instances..settings.scale_to).map(|instance| topology.dataplane(scaled, instance)).collect();
        if settings.register == Register::Api {
            apply_all(control_plane, &new, settings.api_concurrency).await?;
        }
        phase.start = Instant::now();
        for (offset, document) in new.iter().enumerate() {
            let name = document["name"].as_str().unwrap_or_default().to_owned();
            proxies.launch(settings, deployed + offset, name, document, Duration::ZERO)?;
        }
        let callers: Vec<usize> = topology
            .callers(scaled)
            .into_iter()
            .flat_map(|service| (0..topology.instances).map(move |instance| instance * topology.services + service))
            .collect();
        report_phase(phase.wait(settings, "scale one service", &callers, probe, control_plane, &fleet).await);
    }

    // A certificate rotation wave: the mesh's CA gets a new root; every
    // proxy first trusts it, then gets a certificate it issued.
    if topology.mtls {
        let name = format!("identity_cert:secret:{}", topology.mesh);
        let probe = fleet.arm(Probe::SecretReplaced { name });
        let mut phase = Phase::begin(control_plane, &fleet).await;
        let root = new_root(&topology.mesh, "second")?;
        for secret in topology.ca_secrets(root.cert_pem(), root.key_pem()) {
            control_plane.rest.put(&secret).await?;
        }
        phase.start = Instant::now();
        report_phase(phase.wait(settings, "certificate rotation", &everyone, probe, control_plane, &fleet).await);
    }

    // Idle: nothing changes; the control plane should do nothing.
    let phase = Phase::begin(control_plane, &fleet).await;
    tokio::time::sleep(settings.idle).await;
    report_phase(phase.end("idle", Spread::of(Vec::new(), 0), control_plane, &fleet));

    proxies.shut().await;
    Ok(Report { phases, proxies: deployed + added, usage_before })
}

/// A root CA for the mesh's provided backend, valid for a day.
fn new_root(mesh: &str, name: &str) -> anyhow::Result<kodiak_ca::Ca> {
    let validity = Duration::from_secs(24 * 3600);
    Ok(kodiak_ca::RootCa::generate(mesh, name, kodiak_ca::KeyKind::EcdsaP256, validity, std::time::SystemTime::now())?)
}

/// A phase under way: when its cause happened, and what was counted before.
struct Phase {
    start: Instant,
    usage: Option<Usage>,
    totals: Totals,
}

impl Phase {
    /// Once the proxies are quiet, opens a phase whose cause happens now.
    async fn begin(control_plane: &ControlPlane, fleet: &Fleet) -> Phase {
        settle(fleet).await;
        Phase { start: Instant::now(), usage: control_plane.usage(), totals: fleet.totals() }
    }

    /// Waits until every proxy of `concerned` ACKed a configuration showing
    /// probe `id`, or the phase timeout passed.
    async fn wait(
        self,
        settings: &Settings,
        name: &'static str,
        concerned: &[usize],
        id: u32,
        control_plane: &ControlPlane,
        fleet: &Fleet,
    ) -> PhaseReport {
        wait_for(concerned, settings.phase_timeout, |proxy| fleet.probe_seen(proxy, id)).await;
        let times = concerned
            .iter()
            .filter_map(|&proxy| Some(fleet.probe_seen(proxy, id)?.saturating_duration_since(self.start)))
            .collect();
        self.end(name, Spread::of(times, concerned.len()), control_plane, fleet)
    }

    fn end(self, name: &'static str, spread: Spread, control_plane: &ControlPlane, fleet: &Fleet) -> PhaseReport {
        // Whatever the proxies still receive a moment after is part of the phase.
        let usage = control_plane.usage();
        let cpu_share = match (&self.usage, &usage) {
            (Some(before), Some(after)) => Some(after.cpu_share_since(before)),
            _ => None,
        };
        PhaseReport {
            name,
            spread,
            received: fleet.totals() - self.totals,
            usage,
            cpu_share,
            wall: self.start.elapsed(),
        }
    }
}

/// Waits until the proxies received nothing for a second (at most
/// [`SETTLE_LIMIT`]), so what one phase caused is not counted in the next.
async fn settle(fleet: &Fleet) {
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut last = fleet.totals().responses;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = fleet.totals().responses;
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
    }
}

/// Polls until `stamp` is known for every proxy of `concerned`, or `timeout` passes.
async fn wait_for(concerned: &[usize], timeout: Duration, stamp: impl Fn(usize) -> Option<Instant>) {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<usize> = concerned.to_vec();
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain(|&proxy| stamp(proxy).is_none());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Applies documents through the REST API, `concurrency` at a time.
async fn apply_all(
    control_plane: &ControlPlane,
    documents: &[serde_json::Value],
    concurrency: usize,
) -> anyhow::Result<()> {
    let mut puts = JoinSet::new();
    for lane in 0..concurrency.max(1) {
        let rest = control_plane.rest.clone();
        let mine: Vec<serde_json::Value> = documents.iter().skip(lane).step_by(concurrency.max(1)).cloned().collect();
        puts.spawn(async move {
            for document in &mine {
                rest.put(document).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = puts.join_next().await {
        done??;
    }
    Ok(())
}
