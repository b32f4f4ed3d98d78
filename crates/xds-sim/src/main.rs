//! `kodiak-xds-sim`: see the crate documentation and `--help`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kodiak_xds_sim::control_plane::{ControlPlane, Launch, Store};
use kodiak_xds_sim::proxy::Variant;
use kodiak_xds_sim::scenario::{self, PhaseReport, Register, Report, Settings};
use kodiak_xds_sim::stats::{mebibytes, seconds};
use kodiak_xds_sim::topology::Topology;

/// A named scale scenario; any flag given as well overrides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Preset {
    /// 2,000 proxies: 1,000 services × 2 instances, 3 outbounds each, mTLS on.
    S1,
    /// 10,000 proxies: 2,000 services × 5 instances, 5 outbounds each, mTLS on.
    S2,
    /// 200 proxies: 100 services × 2 instances, 3 outbounds each, mTLS on.
    Smoke,
}

impl Preset {
    /// (services, instances, outbounds)
    fn shape(self) -> (usize, usize, usize) {
        match self {
            Preset::S1 => (1_000, 2, 3),
            Preset::S2 => (2_000, 5, 5),
            Preset::Smoke => (100, 2, 3),
        }
    }
}

#[derive(Parser)]
#[command(
    version,
    about = "Simulate thousands of Envoy sidecars on ADS streams against a Kodiak control plane and time their convergence",
    long_about = "Simulate thousands of Envoy sidecars on ADS streams against a Kodiak control plane and time their convergence.\n\n\
Each simulated proxy has its own connection and stream, subscribes like Envoy (every Cluster and Listener, then the endpoints, routes and secrets they name) and ACKs every response. A run goes through five phases: the connect storm (every proxy connects at once; time to a complete configuration), a mesh-wide policy change (the default MeshTimeout gets a new connect timeout; time from the API call returning to each proxy's ACK of a configuration with it), one service scaled out (its new instances connect; time until its callers hold every endpoint), a certificate rotation wave (the mesh's provided CA gets a new root; time until each proxy holds a certificate from it) and an idle spell. For each it prints p50/p90/p99/max over the proxies, what they received, and the control plane's memory and CPU time, read from /proc.\n\n\
By default it starts kodiak-cp (the binary next to this one) on free loopback ports with a fresh store, and stops it at the end. With --api-url it uses a control plane that is already running instead.",
    after_help = "Examples:\n  kodiak-xds-sim --scenario s1\n  kodiak-xds-sim --scenario s2 --variant delta\n  kodiak-xds-sim --services 50 --instances 2 --outbounds 3 --nack-share 0.01"
)]
struct Args {
    /// A named shape: s1, s2 or smoke; --services, --instances and --outbounds override it.
    #[arg(long, value_enum, default_value = "smoke")]
    scenario: Preset,
    /// Services in the mesh.
    #[arg(long)]
    services: Option<usize>,
    /// Instances (proxies) per service.
    #[arg(long)]
    instances: Option<usize>,
    /// Services each proxy calls.
    #[arg(long)]
    outbounds: Option<usize>,
    /// Mesh mTLS, from a provided CA whose root the simulator generates (and replaces in the rotation phase).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    mtls: bool,
    /// The mesh the proxies join.
    #[arg(long, default_value = "default")]
    mesh: String,
    /// xDS variant the streams speak.
    #[arg(long, value_enum, default_value = "sotw")]
    variant: Variant,
    /// Whether Dataplanes are applied through the REST API first or carried inline by each proxy.
    #[arg(long, value_enum, default_value = "api")]
    register: Register,
    /// Share of responses each proxy NACKs (0 to 1); a NACKed change never counts as reached.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    nack_share: f64,
    /// Proxies started per second in the connect storm (default: all at once).
    #[arg(long)]
    ramp_up: Option<f64>,
    /// Instances the scaled-out service ends with (0: skip that phase).
    #[arg(long, default_value_t = 20)]
    scale_to: usize,
    /// How long the idle phase lasts.
    #[arg(long, default_value = "60s")]
    idle: humantime::Duration,
    /// How long each phase waits for every proxy.
    #[arg(long, default_value = "120s")]
    phase_timeout: humantime::Duration,
    /// REST calls in flight at once while applying Dataplanes.
    #[arg(long, default_value_t = 16)]
    api_concurrency: usize,
    /// The kodiak-cp binary to start (default: the one next to kodiak-xds-sim).
    #[arg(long)]
    cp_binary: Option<PathBuf>,
    /// Store of the started control plane.
    #[arg(long, value_enum, default_value = "sqlite")]
    store: Store,
    /// Extra setting for the started control plane, as NAME=value (repeatable), e.g. KODIAK_DP_SERVER_SYNC_DEBOUNCE=20ms.
    #[arg(long = "cp-env", value_parser = env_pair)]
    cp_env: Vec<(String, String)>,
    /// Plaintext dp-server instead of TLS (started control plane only).
    #[arg(long)]
    dp_plaintext: bool,
    /// Use a running control plane's REST API (e.g. http://127.0.0.1:5681) instead of starting one.
    #[arg(long, requires = "dp_server_url")]
    api_url: Option<String>,
    /// The running control plane's dp-server (e.g. https://127.0.0.1:5678).
    #[arg(long, requires = "api_url")]
    dp_server_url: Option<String>,
    /// The certificate the running dp-server presents (PEM).
    #[arg(long)]
    ca_cert_file: Option<PathBuf>,
    /// The running control plane's process id, to read its memory and CPU time.
    #[arg(long)]
    cp_pid: Option<u32>,
}

fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) { Ok(value) } else { Err(format!("{value} is not between 0 and 1")) }
}

fn env_pair(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=value"))?;
    if !name.starts_with("KODIAK_") {
        return Err(format!("{name:?} is not a kodiak-cp setting (KODIAK_...)"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (services, instances, outbounds) = args.scenario.shape();
    let topology = Topology {
        mesh: args.mesh.clone(),
        services: args.services.unwrap_or(services),
        instances: args.instances.unwrap_or(instances),
        outbounds: args.outbounds.unwrap_or(outbounds),
        mtls: args.mtls,
    };
    anyhow::ensure!(
        topology.services >= 2 && topology.instances >= 1,
        "the mesh needs at least 2 services and 1 instance each"
    );
    let settings = Settings {
        topology,
        variant: args.variant,
        register: args.register,
        nack_share: args.nack_share,
        ramp_up: args.ramp_up,
        scale_to: args.scale_to,
        idle: args.idle.into(),
        phase_timeout: args.phase_timeout.into(),
        api_concurrency: args.api_concurrency,
    };
    let mut control_plane = match (&args.api_url, &args.dp_server_url) {
        (Some(api), Some(dp)) => ControlPlane::running(api, dp, args.ca_cert_file.as_deref(), args.cp_pid)?,
        _ => {
            let binary = match &args.cp_binary {
                Some(binary) => binary.clone(),
                None => std::env::current_exe()?.with_file_name("kodiak-cp"),
            };
            let launch = Launch { binary, store: args.store, dp_tls: !args.dp_plaintext, env: args.cp_env.clone() };
            ControlPlane::start(&launch).await.context("cannot start the control plane")?
        }
    };
    raise_open_files_limit();
    let topology = &settings.topology;
    println!(
        "kodiak-xds-sim: {} proxies ({} services × {} instances, {} outbounds each), mTLS {}, {:?} xDS, NACK share {}, {} cores",
        topology.proxies(),
        topology.services,
        topology.instances,
        topology.outbounds,
        if topology.mtls { "on" } else { "off" },
        settings.variant,
        settings.nack_share,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let outcome = scenario::run(&settings, &control_plane, &print_phase).await;
    control_plane.stop().await;
    let report = outcome?;
    print_summary(&report);
    Ok(())
}

fn print_phase(phase: &PhaseReport) {
    let mut line = format!("{:<24} {}", phase.name, phase.spread);
    if phase.spread.expected == 0 {
        line = format!("{:<24} {} passed", phase.name, seconds(phase.wall));
    }
    println!("{line}");
    let received = &phase.received;
    let mut details = format!(
        "{:<24} received {} responses, {} resources, {} ({} NACKed, {} reconnects)",
        "",
        received.responses,
        received.resources,
        mebibytes(received.bytes),
        received.nacks,
        received.reconnects
    );
    if let (Some(usage), Some(cpu)) = (&phase.usage, phase.cpu_share) {
        details += &format!("; control plane RSS {}, CPU {:.1} % of a core", mebibytes(usage.rss_bytes), cpu * 100.0);
    }
    println!("{details}");
}

fn print_summary(report: &Report) {
    let last = report.phases.iter().rev().find_map(|phase| phase.usage);
    if let Some(usage) = last {
        let per_proxy = usage.rss_bytes / report.proxies.max(1) as u64;
        let mut line = format!(
            "control plane memory: RSS {} with {} proxies connected = {:.1} KiB per proxy (peak {})",
            mebibytes(usage.rss_bytes),
            report.proxies,
            per_proxy as f64 / 1024.0,
            mebibytes(usage.peak_rss_bytes)
        );
        if let Some(before) = report.usage_before {
            let added = usage.rss_bytes.saturating_sub(before.rss_bytes) / report.proxies.max(1) as u64;
            line += &format!(
                "; {} before any connected, {:.1} KiB per proxy added",
                mebibytes(before.rss_bytes),
                added as f64 / 1024.0
            );
        }
        println!("{line}");
    }
    let unconverged: Vec<&str> =
        report.phases.iter().filter(|phase| !phase.spread.complete()).map(|phase| phase.name).collect();
    if !unconverged.is_empty() {
        println!("not every proxy converged in: {}", unconverged.join(", "));
    }
}

/// Each simulated proxy holds a connection: ask for as many open files as allowed.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    if let Some(hard) = getrlimit(Resource::Nofile).maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) });
    }
}
