//! `kodiak-bench-sidecars`: real sidecars (`kodiak-dp` running Envoy 1.40
//! with one worker thread) against a real `kodiak-cp` child process on the
//! in-memory store, everything on loopback, built with the kodiak-e2e
//! harness. Three measurements:
//!
//! 1. Start-up. The clock starts when `kodiak-dp run` is spawned. For a
//!    backend (a Dataplane with an inbound in front of a test service) it
//!    stops when a GET sent straight to the inbound port is answered 200 by
//!    the test service; for a caller (a client-only Dataplane with an
//!    outbound to that backend's service, started once the backend serves)
//!    it stops at the first 200 through the outbound port, i.e. caller's
//!    Envoy → backend's Envoy → test service.
//! 2. Endpoint propagation. N caller sidecars; each round applies a new
//!    Dataplane of the service they call through the REST API. The clock
//!    starts when the PUT returns and stops, per caller, when a poll of its
//!    Envoy's admin `/clusters` lists the new endpoint. Envoy's own stamp of
//!    the update it applied (`cluster.b.update_time`) is read as well. In
//!    "quiet" rounds the first poll comes late, so polling 50 Envoys on a
//!    small machine cannot slow the update down, and only the stamps count.
//!    Policy propagation: each round applies a mesh-wide MeshTimeout with a
//!    new connection timeout, and the clock stops, per caller, when its
//!    Envoy's config dump shows that timeout on the cluster of `b`
//!    (Envoy's stamp: `cluster_manager.cds.update_time`).
//! 3. Idle. The control plane's CPU time (all its threads' run time from
//!    /proc/<pid>/task/*/schedstat) and resident memory with the callers
//!    connected and nothing changing.
//!
//! Every loop is bounded by a count and a deadline.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use kodiak_bench::{CpProcess, children, ms, percentile, rss_kib, sched_times};
use kodiak_e2e::dataplanes::{backend, client};
use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, free_port, get};

/// How long one sidecar may take to serve its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the callers may take to start and see the first endpoint.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Callers started at once while setting up.
const START_BATCH: usize = 10;

#[derive(Parser)]
#[command(about = "Benchmark Kodiak with real sidecars: start-up, endpoint and policy propagation, idle cost")]
struct Args {
    /// The kodiak-cp binary to run (build it with --release).
    #[arg(long, default_value = "target/release/kodiak-cp")]
    cp_binary: PathBuf,
    /// Start-up runs (each with a fresh backend and a fresh caller sidecar); 0 skips them.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Caller sidecars for the propagation and idle measurements; 0 skips both.
    #[arg(long, default_value_t = 50)]
    callers: usize,
    /// Propagation rounds (each applies one new endpoint) polling every
    /// caller's /clusters from the PUT on.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// How long a round may take before the callers still waiting count as misses.
    #[arg(long, default_value_t = 10)]
    round_timeout_seconds: u64,
    /// Pause between rounds, so each starts with a quiet control plane.
    #[arg(long, default_value_t = 300)]
    pause_ms: u64,
    /// Pause between two polls of one sidecar (its /clusters, or its
    /// ports during start-up); the resolution is this plus one request.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// Quiet rounds after those: the first poll of /clusters comes this
    /// long after the PUT, so polling cannot slow the update down, and
    /// only Envoy's own time stamps measure it; 0 skips them.
    #[arg(long, default_value_t = 30)]
    quiet_rounds: usize,
    /// When the first poll of a quiet round comes, in ms after the PUT.
    #[arg(long, default_value_t = 250)]
    quiet_first_poll_ms: u64,
    /// Policy rounds after those (each applies a mesh-wide MeshTimeout with
    /// a new value), polling every caller's config dump from the PUT on; 0
    /// skips them.
    #[arg(long, default_value_t = 10)]
    policy_rounds: usize,
    /// Seconds of idle over which the control plane's CPU time is read.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// The ADS flavour the sidecars speak.
    #[arg(long, value_enum, default_value_t = XdsTransport::Delta)]
    xds_transport: XdsTransport,
    /// The control plane's dpServer.syncDebounce (default: its own, 10ms).
    #[arg(long)]
    sync_debounce: Option<String>,
    /// The control plane's log level (its log is kept in a temporary file).
    #[arg(long, default_value = "warn")]
    cp_log_level: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum XdsTransport {
    Delta,
    Sotw,
}

impl From<XdsTransport> for Transport {
    fn from(transport: XdsTransport) -> Self {
        match transport {
            XdsTransport::Delta => Transport::Delta,
            XdsTransport::Sotw => Transport::Sotw,
        }
    }
}

/// A `kodiak-cp` process on free loopback ports, and the harness's handle on it.
struct Cp {
    process: CpProcess,
    harness: ControlPlane,
    /// One REST client for every PUT, made before any clock starts (making
    /// one loads the system's trusted roots, milliseconds a round would count).
    rest: kodiak_client::Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cp {
    async fn start(args: &Args) -> anyhow::Result<Cp> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("kodiak-cp.log");
        let (api, dp_server, diagnostics) = (free_port(), free_port(), free_port());
        let https_api = free_port();
        let data_dir = dir.path().to_string_lossy().into_owned();
        let cp_args: Vec<String> = [
            "--store",
            "memory",
            "--data-dir",
            &data_dir,
            "--api-port",
            &api.to_string(),
            "--api-https-port",
            &https_api.to_string(),
            "--dp-server-port",
            &dp_server.to_string(),
            "--diagnostics-port",
            &diagnostics.to_string(),
        ]
        .map(str::to_owned)
        .into();
        // The benchmark's sidecars carry no dataplane tokens.
        let mut env =
            vec![("KODIAK_LOG_LEVEL", args.cp_log_level.as_str()), ("KODIAK_DP_SERVER_AUTHN_DP_PROXY_TYPE", "none")];
        if let Some(debounce) = &args.sync_debounce {
            env.push(("KODIAK_DP_SERVER_SYNC_DEBOUNCE", debounce));
        }
        let stderr = Stdio::from(std::fs::File::create(&log)?);
        let process = CpProcess::start(&args.cp_binary, &cp_args, &env, diagnostics, stderr).await?;
        // The control plane generated its certificate in the data directory; sidecars trust it.
        let harness = ControlPlane::external(api, dp_server).with_ca_cert_file(&dir.path().join("kodiak-cp.crt"));
        let rest = harness.client();
        Ok(Cp { process, harness, rest, log, _dir: dir })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// The inbound (or outbound) port of the first `- port:` line of a Dataplane document.
fn first_port(document: &str) -> anyhow::Result<u16> {
    document
        .lines()
        .find_map(|line| line.trim().strip_prefix("- port: "))
        .context("no port in the Dataplane document")?
        .parse()
        .context("a port number")
}

/// Stops sidecars at once (two SIGINTs: no drain), all before waiting for any.
fn stop_all(sidecars: Vec<Arc<Sidecar>>) {
    for sidecar in &sidecars {
        sidecar.signal("INT");
        sidecar.signal("INT");
    }
    drop(sidecars); // each Drop waits (bounded) for its kodiak-dp to exit
}

/// When a sidecar reached each step, counted from `kodiak-dp run` being spawned.
#[derive(Clone, Copy)]
struct Startup {
    /// kodiak-dp logged "using Envoy" (it has run `envoy --version`).
    version_checked: Option<Duration>,
    /// kodiak-dp logged "started Envoy" (bootstrap received, Envoy spawned).
    envoy_spawned: Option<Duration>,
    /// Envoy's admin address file appeared (Envoy is up, config pending).
    admin_up: Duration,
    /// The first 200 from the test service through this sidecar.
    served: Duration,
}

/// Polls `url` until the test service `instance` answers 200 through the
/// sidecar spawned at `spawned`.
async fn until_served(
    sidecar: &Sidecar,
    url: &str,
    instance: &str,
    spawned: (Instant, SystemTime),
    poll: Duration,
) -> anyhow::Result<Startup> {
    let deadline = spawned.0 + START_TIMEOUT;
    let mut admin_up = None;
    loop {
        if admin_up.is_none() && sidecar.admin_address().is_some() {
            admin_up = Some(spawned.0.elapsed());
        }
        let reply = get(url).await;
        if reply.status == 200 && reply.instance.as_deref() == Some(instance) {
            let served = spawned.0.elapsed();
            let log = sidecar.log();
            return Ok(Startup {
                version_checked: logged_at(&log, "using Envoy", spawned.1),
                envoy_spawned: logged_at(&log, "started Envoy", spawned.1),
                admin_up: admin_up.unwrap_or(served),
                served,
            });
        }
        if Instant::now() > deadline {
            bail!("{url} not served by {instance} within {START_TIMEOUT:?}; kodiak-dp log:\n{}", sidecar.log());
        }
        tokio::time::sleep(poll).await;
    }
}

/// When kodiak-dp logged a line containing `what`, counted from `since`
/// (its log lines start with an RFC 3339 time stamp).
fn logged_at(log: &str, what: &str, since: SystemTime) -> Option<Duration> {
    let line = log.lines().find(|line| line.contains(what))?;
    let stamp = humantime::parse_rfc3339_weak(line.split_whitespace().next()?).ok()?;
    stamp.duration_since(since).ok()
}

/// Start-up runs: a fresh backend sidecar, then a fresh caller sidecar.
async fn startup(args: &Args) -> anyhow::Result<(Vec<Startup>, Vec<Startup>)> {
    let cp = Cp::start(args).await?;
    let service = TestService::start("b-1").await;
    let poll = Duration::from_millis(args.poll_ms);
    let (mut backends, mut callers) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let document = backend(&format!("b-{run}"), "b", &service);
        let inbound = first_port(&document)?;
        let spawned = (Instant::now(), SystemTime::now());
        let b = Arc::new(Sidecar::register(&cp.harness, &document, args.xds_transport.into()));
        let url = format!("http://127.0.0.1:{inbound}/backend-{run}");
        let b_startup = match until_served(&b, &url, &service.name, spawned, poll).await {
            Ok(startup) => startup,
            Err(error) => {
                stop_all(vec![b]);
                return Err(error);
            }
        };

        let (http, tcp) = (free_port(), free_port());
        let spawned = (Instant::now(), SystemTime::now());
        let a = Arc::new(Sidecar::register(
            &cp.harness,
            &client(&format!("a-{run}"), "b", http, tcp),
            args.xds_transport.into(),
        ));
        let url = format!("http://127.0.0.1:{http}/caller-{run}");
        let a_startup = until_served(&a, &url, &service.name, spawned, poll).await;
        stop_all(vec![a, b]);
        let a_startup = a_startup?;
        println!(
            "  run {:>2}: backend served after {:>6.1} ms, caller's first 200 after {:>6.1} ms",
            run + 1,
            ms(b_startup.served),
            ms(a_startup.served)
        );
        backends.push(b_startup);
        callers.push(a_startup);
    }
    cp.process.stop()?;
    Ok((backends, callers))
}

/// One caller seeing one new endpoint.
#[derive(Clone, Copy)]
struct Seen {
    /// From the PUT returning to the answer of the first poll that listed it.
    latency: Duration,
    /// From the PUT returning to the send of the last poll that did not
    /// (zero if the first poll listed it): the endpoint arrived in between.
    before: Duration,
    /// Envoy's own stamp of the EDS update it applied.
    envoy: Stamp,
}

/// Envoy's `cluster.b.update_time` (wall clock, whole ms) after it listed
/// the endpoint, against the wall clock when the PUT returned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// This long after the PUT returned (the stamp is floored to the ms).
    At(Duration),
    /// Not readable.
    Missing,
    /// More than 1 ms before the PUT returned: an older update's.
    Early,
    /// The wall clock moved against the monotonic one meanwhile.
    ClockStepped,
}

impl Stamp {
    fn at(self) -> Option<Duration> {
        match self {
            Stamp::At(after) => Some(after),
            _ => None,
        }
    }

    /// Reads the stat `stat` from Envoy.
    async fn read(sidecar: &Sidecar, stat: &str, applied: Applied) -> Stamp {
        let Some(stamp) = envoy_update_time(sidecar, stat).await else { return Stamp::Missing };
        let (now, wall_now) = (Instant::now(), SystemTime::now());
        let wall_elapsed = wall_now.duration_since(applied.wall).unwrap_or_default();
        if wall_elapsed.abs_diff(now - applied.at) > Duration::from_millis(1) {
            return Stamp::ClockStepped;
        }
        let put_returned = applied.wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        match stamp.checked_sub(put_returned) {
            Some(after) => Stamp::At(after),
            None if put_returned - stamp <= Duration::from_millis(1) => Stamp::At(Duration::ZERO),
            None => Stamp::Early,
        }
    }
}

/// When the PUT returned, on both clocks (Envoy stamps with the wall clock).
#[derive(Clone, Copy)]
struct Applied {
    at: Instant,
    wall: SystemTime,
}

/// What a round changes, and how a caller's Envoy shows it has it.
struct Change {
    /// The resource applied through the API.
    document: String,
    /// The admin path polled, and the text it shows once the change is in.
    admin_path: &'static str,
    needle: String,
    /// The stat Envoy stamps (ms since the epoch) when it applies such an update.
    stamp: &'static str,
}

/// Polls a sidecar's admin until it shows `change`, or `deadline`; then
/// reads Envoy's stamp of its last update of that kind.
async fn wait_for_change(
    sidecar: Arc<Sidecar>,
    change: Arc<Change>,
    applied: Applied,
    (first_poll, poll): (Duration, Duration),
    deadline: Instant,
) -> Option<Seen> {
    let mut last_miss = None;
    tokio::time::sleep(first_poll).await;
    loop {
        let asked = Instant::now();
        let found = sidecar.admin(change.admin_path).await.is_some_and(|text| text.contains(change.needle.as_str()));
        let answered = Instant::now();
        if found {
            let before = last_miss.map(|missed: Instant| missed - applied.at).unwrap_or_default();
            let envoy = Stamp::read(&sidecar, change.stamp, applied).await;
            return Some(Seen { latency: answered - applied.at, before, envoy });
        }
        if answered > deadline {
            return None;
        }
        last_miss = Some(asked);
        tokio::time::sleep(poll).await;
    }
}

/// An `update_time` stat of Envoy, such as `cluster.b.update_time`: when
/// (since the epoch, in ms) that subscription last applied an update.
async fn envoy_update_time(sidecar: &Sidecar, stat: &str) -> Option<Duration> {
    let stats = sidecar.admin(&format!("/stats?filter={stat}")).await?;
    let value = stats.lines().find_map(|line| line.strip_prefix(&format!("{stat}: ")))?;
    value.trim().parse().ok().map(Duration::from_millis)
}

/// The processes whose CPU time a quiet round accounts for.
struct CpuProbe {
    cp: u32,
    envoys: Vec<u32>,
    /// When the probe began: readings count their window from it.
    origin: Instant,
}

/// CPU time used (and time spent waiting for a core) since a reading.
#[derive(Default, Clone, Copy)]
struct CpuUse {
    /// How long the reading spans.
    window: Duration,
    cp_ran: Duration,
    cp_waited: Duration,
    envoys_ran: Duration,
    envoys_waited: Duration,
}

impl CpuProbe {
    fn read(&self) -> CpuUse {
        let (cp_ran, cp_waited) = sched_times(self.cp).unwrap_or_default();
        let envoys: Vec<(Duration, Duration)> = self.envoys.iter().filter_map(|pid| sched_times(*pid).ok()).collect();
        CpuUse {
            window: self.origin.elapsed(),
            cp_ran,
            cp_waited,
            envoys_ran: envoys.iter().map(|(ran, _)| *ran).sum(),
            envoys_waited: envoys.iter().map(|(_, waited)| *waited).sum(),
        }
    }

    fn since(&self, before: CpuUse) -> CpuUse {
        let now = self.read();
        CpuUse {
            window: now.window.saturating_sub(before.window),
            cp_ran: now.cp_ran.saturating_sub(before.cp_ran),
            cp_waited: now.cp_waited.saturating_sub(before.cp_waited),
            envoys_ran: now.envoys_ran.saturating_sub(before.envoys_ran),
            envoys_waited: now.envoys_waited.saturating_sub(before.envoys_waited),
        }
    }
}

/// New Dataplanes `b-0`, `b-1`... of service `b`, each on an inbound port
/// of its own ([`free_port`] never repeats one).
struct NewEndpoints<'a> {
    service: &'a TestService,
    count: usize,
}

impl NewEndpoints<'_> {
    /// The next one: its number and the change (a Dataplane no sidecar runs
    /// for: it is offered at once).
    fn next(&mut self) -> anyhow::Result<(usize, Change)> {
        let number = self.count;
        self.count += 1;
        let document = backend(&format!("b-{number}"), "b", self.service);
        let port = first_port(&document)?;
        let change = Change {
            document,
            admin_path: "/clusters",
            needle: format!("b::127.0.0.1:{port}::"),
            stamp: "cluster.b.update_time",
        };
        Ok((number, change))
    }
}

/// The next mesh-wide MeshTimeout: `bench-timeout`, with a connection
/// timeout of 1 s plus the round in ms. It outranks the mesh's default
/// MeshTimeout (equally specific, and the smaller name wins).
fn new_timeout(round: usize) -> Change {
    let millis = 1001 + round;
    Change {
        document: format!(
            "type: MeshTimeout\nmesh: default\nname: bench-timeout\nspec:\n  targetRef: {{kind: Mesh}}\n  to:\n  \
             - targetRef: {{kind: Mesh}}\n    default: {{connectionTimeout: {millis}ms}}\n"
        ),
        admin_path: "/config_dump?resource=dynamic_active_clusters&name_regex=%5Eb%24",
        needle: format!("\"connect_timeout\": \"{}.{:03}s\"", millis / 1000, millis % 1000),
        stamp: "cluster_manager.cds.update_time",
    }
}

/// Applies `change` and waits for every caller to show it. With a `probe`
/// and a first poll late enough, also returns the CPU time used from just
/// before the PUT to just before the first poll.
async fn propagate(
    cp: &Cp,
    callers: &[Arc<Sidecar>],
    change: Change,
    polls: (Duration, Duration),
    timeout: Duration,
    probe: Option<&CpuProbe>,
) -> anyhow::Result<(Duration, Vec<Option<Seen>>, Option<CpuUse>)> {
    let change = Arc::new(change);
    let probe = probe.filter(|_| polls.0 >= Duration::from_millis(50));
    let cpu_before = probe.map(CpuProbe::read);
    let resource = kodiak_api::Resource::from_document(&kodiak_api::parse_document(&change.document)?)?;
    let sent = Instant::now();
    cp.rest.put(&resource).await.with_context(|| format!("the control plane accepts {}", resource.key))?;
    let applied = Applied { at: Instant::now(), wall: SystemTime::now() };
    let deadline = applied.at + timeout;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, caller) in callers.iter().enumerate() {
        let (caller, change) = (caller.clone(), change.clone());
        tasks.spawn(async move { (i, wait_for_change(caller, change, applied, polls, deadline).await) });
    }
    let mut cpu = None;
    if let (Some(probe), Some(before)) = (probe, cpu_before) {
        tokio::time::sleep_until((applied.at + polls.0 - Duration::from_millis(20)).into()).await;
        cpu = Some(probe.since(before));
    }
    let mut seen = vec![None; callers.len()];
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined?;
        seen[i] = result;
    }
    Ok((applied.at - sent, seen, cpu))
}

/// The rounds of one way of polling.
#[derive(Default)]
struct Rounds {
    api: Vec<Duration>,
    seen: Vec<Seen>,
    /// Per round: the slowest caller by /clusters.
    slowest: Vec<Duration>,
    /// Per round: the first and the last Envoy's stamp.
    first_stamp: Vec<Duration>,
    last_stamp: Vec<Duration>,
    /// Per quiet round: CPU time from before the PUT to the first poll.
    cpu: Vec<CpuUse>,
    missed: usize,
}

impl Rounds {
    /// Applies `count` changes from `next`, one a round, a quiet pause before each.
    async fn run(
        args: &Args,
        cp: &Cp,
        callers: &[Arc<Sidecar>],
        next: &mut dyn FnMut() -> anyhow::Result<(usize, Change)>,
        (polls, count): ((Duration, Duration), usize),
        probe: Option<&CpuProbe>,
    ) -> anyhow::Result<Rounds> {
        let mut rounds = Rounds::default();
        for _ in 0..count {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
            let timeout = Duration::from_secs(args.round_timeout_seconds);
            let (round, change) = next()?;
            let (api, seen, cpu) = propagate(cp, callers, change, polls, timeout, probe).await?;
            rounds.cpu.extend(cpu);
            let found: Vec<Seen> = seen.iter().flatten().copied().collect();
            let slowest = found.iter().map(|seen| seen.latency).max().unwrap_or_default();
            let stamps: Vec<Duration> = found.iter().filter_map(|seen| seen.envoy.at()).collect();
            let (first_stamp, last_stamp) =
                (stamps.iter().min().copied().unwrap_or_default(), stamps.iter().max().copied().unwrap_or_default());
            let missed = callers.len() - found.len();
            println!(
                "  round {round:>2}: PUT {:>4.1} ms; Envoys applied it {:>5.1}..{:>5.1} ms; last caller showing it {:>6.1} ms{}",
                ms(api),
                ms(first_stamp),
                ms(last_stamp),
                ms(slowest),
                if missed > 0 { format!("; {missed} MISSED") } else { String::new() }
            );
            rounds.missed += missed;
            rounds.api.push(api);
            rounds.slowest.push(slowest);
            rounds.first_stamp.push(first_stamp);
            rounds.last_stamp.push(last_stamp);
            rounds.seen.extend(found);
        }
        Ok(rounds)
    }
}

struct Propagation {
    setup: Duration,
    first_endpoint: Duration,
    /// /clusters polled from the PUT on.
    polled: Rounds,
    /// /clusters polled only once the update is surely through.
    quiet: Rounds,
    /// Mesh-wide MeshTimeouts, the config dump polled from the PUT on.
    policy: Rounds,
    idle: Option<Idle>,
}

struct Idle {
    seconds: u64,
    cp_cpu: Duration,
    cp_rss_kib: u64,
    cp_rss_before_kib: u64,
    envoys: usize,
    envoy_cpu: Duration,
    envoy_rss_kib: u64,
    dp_rss_kib: u64,
}

/// Starts the callers, then runs the propagation rounds, then the idle reading.
async fn propagation(args: &Args) -> anyhow::Result<Propagation> {
    let cp = Cp::start(args).await?;
    let cp_rss_before_kib = rss_kib(cp.process.pid())?;
    let service = TestService::start("b-1").await;
    let poll = Duration::from_millis(args.poll_ms);
    let started = Instant::now();
    let mut callers: Vec<Arc<Sidecar>> = Vec::new();
    let result = async {
        for batch in (0..args.callers).collect::<Vec<_>>().chunks(START_BATCH) {
            for i in batch {
                let document = client(&format!("a-{i}"), "b", free_port(), free_port());
                callers.push(Arc::new(Sidecar::register(&cp.harness, &document, args.xds_transport.into())));
            }
            let deadline = Instant::now() + SETUP_TIMEOUT;
            while callers.iter().any(|caller| caller.admin_address().is_none()) {
                for caller in callers.iter_mut() {
                    // No clone of the Arc exists yet during set-up.
                    if let Some(sidecar) = Arc::get_mut(caller)
                        && let Some(status) = sidecar.exit_within(Duration::ZERO).await
                    {
                        bail!("a caller's kodiak-dp exited during set-up ({status}); its log:\n{}", sidecar.log());
                    }
                }
                if Instant::now() > deadline {
                    bail!("{} callers' Envoys not up after {SETUP_TIMEOUT:?}", args.callers);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let setup = started.elapsed();
        println!("  {} callers' Envoys up after {:.1} s", callers.len(), setup.as_secs_f64());

        // The first endpoint also tells that every caller has its config.
        let mut endpoints = NewEndpoints { service: &service, count: 0 };
        let (_, change) = endpoints.next()?;
        let (_, first, _) = propagate(&cp, &callers, change, (Duration::ZERO, poll), SETUP_TIMEOUT, None).await?;
        let latencies: Option<Vec<Duration>> = first.iter().map(|seen| seen.map(|seen| seen.latency)).collect();
        let Some(first_endpoint) = latencies.and_then(|latencies| latencies.into_iter().max()) else {
            bail!("not every caller saw the first endpoint within {SETUP_TIMEOUT:?}")
        };
        println!("  first endpoint at every caller after {:.1} ms", ms(first_endpoint));

        println!("  -- polling /clusters every {} ms from the PUT on", args.poll_ms);
        let polls = (Duration::ZERO, poll);
        let next_endpoint = &mut || endpoints.next();
        let polled = Rounds::run(args, &cp, &callers, next_endpoint, (polls, args.rounds), None).await?;
        println!("  -- quiet: first poll {} ms after the PUT", args.quiet_first_poll_ms);
        let dps: Vec<u32> = callers.iter().filter_map(|caller| caller.pid()).collect();
        let probe = CpuProbe {
            cp: cp.process.pid(),
            envoys: dps.iter().flat_map(|dp| children(*dp)).collect(),
            origin: Instant::now(),
        };
        let quiet_polls = (Duration::from_millis(args.quiet_first_poll_ms), poll);
        let quiet =
            Rounds::run(args, &cp, &callers, next_endpoint, (quiet_polls, args.quiet_rounds), Some(&probe)).await?;
        println!(
            "  -- a mesh-wide MeshTimeout each round, config dumps polled every {} ms from the PUT on",
            args.poll_ms
        );
        let mut timeouts = 0;
        let next_timeout = &mut || {
            timeouts += 1;
            Ok((timeouts, new_timeout(timeouts)))
        };
        let policy = Rounds::run(args, &cp, &callers, next_timeout, (polls, args.policy_rounds), None).await?;
        let idle = Some(idle(args, &probe, &dps, cp_rss_before_kib).await?);
        Ok(Propagation { setup, first_endpoint, polled, quiet, policy, idle })
    }
    .await;
    stop_all(callers);
    if result.is_err() {
        eprintln!("kodiak-cp log (tail):\n{}", cp.log_tail());
    }
    cp.process.stop()?;
    result
}

/// CPU time and memory with the callers connected and nothing changing.
async fn idle(args: &Args, probe: &CpuProbe, dps: &[u32], cp_rss_before_kib: u64) -> anyhow::Result<Idle> {
    tokio::time::sleep(Duration::from_secs(2)).await; // let the last round settle
    let before = probe.read();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let used = probe.since(before);
    Ok(Idle {
        seconds: args.idle_seconds,
        cp_cpu: used.cp_ran,
        cp_rss_kib: rss_kib(probe.cp)?,
        cp_rss_before_kib,
        envoys: probe.envoys.len(),
        envoy_cpu: used.envoys_ran,
        envoy_rss_kib: probe.envoys.iter().filter_map(|pid| rss_kib(*pid).ok()).sum(),
        dp_rss_kib: dps.iter().filter_map(|pid| rss_kib(*pid).ok()).sum(),
    })
}

fn row(what: &str, mut samples: Vec<Duration>, quantiles: &[f64]) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let values: Vec<String> = quantiles.iter().map(|q| format!("{:>8.1}", ms(percentile(&samples, *q)))).collect();
    println!("  {what:<62} {}", values.join(" "));
}

/// A table's title line with its column names over [`row`]'s values.
fn header(title: &str, columns: &[&str]) -> String {
    let columns: Vec<String> = columns.iter().map(|column| format!("{column:>8}")).collect();
    format!("{title:<64} {}", columns.join(" "))
}

fn report_startup(backends: &[Startup], callers: &[Startup]) {
    let title = format!("Start-up, {} runs (ms from `kodiak-dp run` spawned)", backends.len());
    println!("\n{}", header(&title, &["p50", "p90", "max"]));
    for (who, runs) in [("backend", backends), ("caller", callers)] {
        let step = |f: fn(&Startup) -> Option<Duration>| runs.iter().filter_map(f).collect::<Vec<_>>();
        row(&format!("{who}: Envoy version checked"), step(|s| s.version_checked), &[0.5, 0.9, 1.0]);
        row(&format!("{who}: bootstrap received, Envoy spawned"), step(|s| s.envoy_spawned), &[0.5, 0.9, 1.0]);
        row(&format!("{who}: Envoy admin up"), step(|s| Some(s.admin_up)), &[0.5, 0.9, 1.0]);
        let served = if who == "backend" {
            "backend: first 200 through its inbound"
        } else {
            "caller: first 200 through its outbound (aim < 1000)"
        };
        row(served, step(|s| Some(s.served)), &[0.5, 0.9, 1.0]);
    }
}

fn report_propagation(args: &Args, measured: &Propagation) {
    let all = [0.0, 0.5, 0.9, 0.99, 1.0];
    let title = format!("Propagation to {} callers (ms from the PUT returning)", args.callers);
    println!("\n{}", header(&title, &["min", "p50", "p90", "p99", "max"]));
    let polled = &measured.polled;
    println!(
        "  polling /clusters every {} ms from the PUT on: {} rounds, {} samples",
        args.poll_ms,
        polled.api.len(),
        polled.seen.len()
    );
    row("  PUT of the new Dataplane (API latency)", polled.api.clone(), &all);
    row("  endpoint listed in /clusters (aim p99 < 100)", polled.seen.iter().map(|s| s.latency).collect(), &all);
    row("    last poll without it was sent (lower bound)", polled.seen.iter().map(|s| s.before).collect(), &all);
    row("    polling window (upper - lower bound)", polled.seen.iter().map(|s| s.latency - s.before).collect(), &all);
    row(
        "  Envoy's own stamp of applying it (whole ms)",
        polled.seen.iter().filter_map(|s| s.envoy.at()).collect(),
        &all,
    );
    row("  per round: last caller listing it", polled.slowest.clone(), &all);
    let tolerance = Duration::from_millis(1);
    let consistent = polled
        .seen
        .iter()
        .filter(|s| s.envoy.at().is_some_and(|stamp| stamp + tolerance >= s.before && stamp <= s.latency + tolerance))
        .count();
    println!(
        "  Envoy's stamp lies within the polling window (+-1 ms) for {consistent} of {} samples",
        polled.seen.len()
    );
    let quiet = &measured.quiet;
    if !quiet.api.is_empty() {
        println!(
            "  quiet, first poll {} ms after the PUT: {} rounds, {} samples",
            args.quiet_first_poll_ms,
            quiet.api.len(),
            quiet.seen.len()
        );
        row(
            "  Envoy's own stamp of applying it (aim p99 < 100)",
            quiet.seen.iter().filter_map(|s| s.envoy.at()).collect(),
            &all,
        );
        row("  per round: first caller's Envoy", quiet.first_stamp.clone(), &all);
        row("  per round: last caller's Envoy", quiet.last_stamp.clone(), &all);
        if !quiet.cpu.is_empty() {
            let n = quiet.cpu.len() as u32;
            let mean = |f: fn(&CpuUse) -> Duration| ms(quiet.cpu.iter().map(f).sum::<Duration>() / n);
            println!(
                "  CPU of a quiet round over its {:.0} ms from before the PUT to the first poll (mean of {n} rounds):",
                mean(|c| c.window)
            );
            println!(
                "    kodiak-cp ran {:.1} ms (waited {:.1} ms for a core); {} Envoys ran {:.1} ms together (waited {:.1} ms)",
                mean(|c| c.cp_ran),
                mean(|c| c.cp_waited),
                args.callers,
                mean(|c| c.envoys_ran),
                mean(|c| c.envoys_waited),
            );
            if let Some(idle) = &measured.idle {
                let background = idle.envoy_cpu.as_secs_f64() / idle.seconds as f64 * mean(|c| c.window);
                println!(
                    "    of the Envoys' time, {background:.1} ms is what they use idle over as long (see Idle below)"
                );
            }
        }
    }
    let policy = &measured.policy;
    if !policy.api.is_empty() {
        println!(
            "  mesh-wide MeshTimeout, config dumps polled every {} ms from the PUT on: {} rounds, {} samples",
            args.poll_ms,
            policy.api.len(),
            policy.seen.len()
        );
        row("  PUT of the MeshTimeout (API latency)", policy.api.clone(), &all);
        row("  timeout in the caller's config dump", policy.seen.iter().map(|s| s.latency).collect(), &all);
        row(
            "  Envoy's own stamp of applying it (whole ms)",
            policy.seen.iter().filter_map(|s| s.envoy.at()).collect(),
            &all,
        );
        row("  per round: last caller having it", policy.slowest.clone(), &all);
    }
    for (rounds, how) in [(polled, "polled"), (quiet, "quiet"), (policy, "policy")] {
        let count = |stamp: Stamp| rounds.seen.iter().filter(|s| s.envoy == stamp).count();
        let (missing, early, stepped) = (count(Stamp::Missing), count(Stamp::Early), count(Stamp::ClockStepped));
        if rounds.missed + missing + early + stepped > 0 {
            println!(
                "  {how}: MISSED {} (caller, round) pairs within {} s; Envoy's stamp unreadable {missing}, \
                 older than the PUT {early}, clock stepped {stepped}",
                rounds.missed, args.round_timeout_seconds
            );
        }
    }
    println!(
        "  set-up: {} callers' Envoys up in {:.1} s; first endpoint at all of them after {:.1} ms",
        args.callers,
        measured.setup.as_secs_f64(),
        ms(measured.first_endpoint)
    );
    if let Some(idle) = &measured.idle {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!("\nIdle for {} s with {} callers connected", idle.seconds, args.callers);
        println!(
            "  kodiak-cp: {:.2} ms CPU ({:.3} % of one core); RSS {:.1} MiB (before any sidecar: {:.1} MiB)",
            ms(idle.cp_cpu),
            idle.cp_cpu.as_secs_f64() / idle.seconds as f64 * 100.0,
            mib(idle.cp_rss_kib),
            mib(idle.cp_rss_before_kib)
        );
        println!(
            "  {} Envoys: {:.0} ms CPU together; RSS {:.0} MiB together ({:.1} MiB each); {} kodiak-dp: RSS {:.0} MiB together",
            idle.envoys,
            ms(idle.envoy_cpu),
            mib(idle.envoy_rss_kib),
            mib(idle.envoy_rss_kib) / idle.envoys.max(1) as f64,
            args.callers,
            mib(idle.dp_rss_kib)
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.callers > 0 && args.rounds == 0 {
        bail!("--rounds must be at least 1 when there are callers");
    }
    println!(
        "kodiak-bench-sidecars: {} xDS, Envoy --concurrency 1, kodiak-cp {} (memory store, debounce {})",
        if args.xds_transport == XdsTransport::Delta { "delta" } else { "state-of-the-world" },
        args.cp_binary.display(),
        args.sync_debounce.as_deref().unwrap_or("default")
    );
    let startup = if args.runs > 0 {
        println!("\nStart-up runs:");
        Some(startup(&args).await?)
    } else {
        None
    };
    let propagation = if args.callers > 0 {
        println!("\nPropagation rounds:");
        Some(propagation(&args).await?)
    } else {
        None
    };
    if let Some((backends, callers)) = &startup {
        report_startup(backends, callers);
    }
    if let Some(measured) = &propagation {
        report_propagation(&args, measured);
    }
    Ok(())
}
