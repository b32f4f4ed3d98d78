//! `kodiak-bench-dataplane`: what Kodiak's generated Envoy configuration
//! costs on the data path, against the physical limit. Four request paths
//! run side by side, each ending at its own test service on loopback:
//!
//! - `direct`: the load generator straight to the test service;
//! - `plain`: two minimal static Envoys (hand-written bootstrap: a listener,
//!   the router filter, one static cluster), caller → backend → service;
//! - `mtls`: the same two with mutual TLS between them (certificates from
//!   the workspace's CA);
//! - `kodiak`: two Kodiak sidecars (kodiak-dp and Envoy) in a mesh with the
//!   built-in CA in STRICT mode and the default policies every new mesh gets.
//!
//! Every Envoy runs one worker, the same binary. Rounds alternate between
//! the paths (each round starts with the next path in turn); each round
//! sends a 1 KiB POST at a fixed rate over keep-alive connections (open
//! loop, latency counted from when a request was due) after a warm-up that
//! is not counted. It reports, per path, the median over rounds of p50, p90
//! and p99, what each pair of Envoys adds over `direct`, Kodiak's share of
//! the minimal pair's, the time each Envoy spent on a core per request
//! (from `/proc/<pid>/task/*/schedstat`, which waiting for a busy core does
//! not inflate), and the resident memory of every Envoy, idle and after the
//! load.
//!
//! Every loop is bounded by a count and a deadline.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use kodiak_api::{ResourceKey, ResourceType};
use kodiak_bench::load::{LoadResult, fixed_rate, median_percentiles, round_line};
use kodiak_bench::static_envoy::{Extra, Proxy, StaticEnvoy, mesh_certificates};
use kodiak_bench::two_sidecars::{SETUP_TIMEOUT, SidecarPath, apply_strict_mtls_mesh, handshakes};
use kodiak_bench::{rss_kib, sched_times};
use kodiak_e2e::{ControlPlane, TestService, eventually, free_port, get};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the Envoys rest after the warm-up before their idle memory is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Kodiak's memory and latency may be at most this multiple of the minimal pair's.
const TARGET: f64 = 1.1;
static BODY: [u8; 1024] = [b'k'; 1024];

#[derive(Parser)]
#[command(about = "Benchmark two Kodiak sidecars against two minimal static Envoys and a direct call, at a fixed rate")]
struct Args {
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// How long each measured round lasts (after the warm-up).
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Load before every round that is not counted.
    #[arg(long, default_value = "1s")]
    warm_up: humantime::Duration,
    /// Rounds per path; rounds alternate between the paths.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The paths to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "direct,plain,mtls,kodiak")]
    paths: Vec<Which>,
    /// For the path `mtls-with`: what to add to the minimal mTLS pair, so
    /// its cost can be told apart (the backend gets `rbac`, `denied-log` and
    /// `inbound-route`, the caller `retries` and `breakers`, both `alpn`).
    #[arg(long, value_delimiter = ',')]
    extras: Vec<Extra>,
    /// Write every Envoy's `/config_dump` (with EDS), `/stats` and `/memory`
    /// into this directory after the rounds, to compare Kodiak's Envoys with
    /// the minimal ones.
    #[arg(long)]
    dump_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Direct,
    Plain,
    Mtls,
    /// The minimal mTLS pair with `--extras`.
    MtlsWith,
    Kodiak,
}

impl Which {
    fn label(self) -> &'static str {
        match self {
            Which::Direct => "direct",
            Which::Plain => "plain",
            Which::Mtls => "mtls",
            Which::MtlsWith => "mtls-with",
            Which::Kodiak => "kodiak",
        }
    }
}

/// What a path keeps running.
enum Running {
    Direct { _service: TestService },
    Minimal { caller: StaticEnvoy, backend: StaticEnvoy, _service: TestService },
    Kodiak(Box<SidecarPath>),
}

/// One request path: where the load goes and what answers it.
struct Path {
    which: Which,
    url: String,
    running: Running,
}

impl Path {
    /// The caller's and the backend's Envoy, if the path has any.
    fn envoys(&self) -> anyhow::Result<Option<[u32; 2]>> {
        Ok(match &self.running {
            Running::Direct { .. } => None,
            Running::Minimal { caller, backend, .. } => Some([caller.pid(), backend.pid()]),
            Running::Kodiak(path) => Some(path.envoy_pids()?),
        })
    }

    /// TLS handshakes the caller's Envoy made toward the backend.
    async fn handshakes(&self) -> anyhow::Result<u64> {
        match &self.running {
            Running::Direct { .. } => Ok(0),
            Running::Minimal { caller, .. } => {
                Ok(handshakes(&caller.admin("/stats?filter=ssl.handshake").await?, "backend"))
            }
            Running::Kodiak(path) => path.caller_tls_handshakes().await,
        }
    }

    /// What the caller's and the backend's admin API answer to `admin_path`.
    async fn admin(&self, admin_path: &str) -> anyhow::Result<Option<[String; 2]>> {
        Ok(match &self.running {
            Running::Direct { .. } => None,
            Running::Minimal { caller, backend, .. } => {
                Some([caller.admin(admin_path).await?, backend.admin(admin_path).await?])
            }
            Running::Kodiak(path) => {
                let caller = path.caller.admin(admin_path).await.context("the caller's Envoy admin answers")?;
                let backend = path.backend.admin(admin_path).await.context("the backend's Envoy admin answers")?;
                Some([caller, backend])
            }
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.paths.is_empty() || args.rounds == 0 {
        bail!("nothing to run: give --paths and --rounds");
    }
    let envoy = kodiak_e2e::envoy();
    let certificates = tempfile::tempdir()?;
    let control_plane = if args.paths.contains(&Which::Kodiak) { Some(kodiak_control_plane().await?) } else { None };
    let mut paths = Vec::new();
    for which in args.paths.iter().copied() {
        let path = match which {
            Which::Direct => direct().await,
            Which::Plain | Which::Mtls | Which::MtlsWith => {
                minimal(&envoy, which, certificates.path(), &args.extras).await?
            }
            Which::Kodiak => {
                let control_plane = control_plane.as_ref().context("a control plane for the Kodiak path")?;
                let path = SidecarPath::start(control_plane, "kodiak").await;
                Path { which, url: path.url.clone(), running: Running::Kodiak(Box::new(path)) }
            }
        };
        paths.push(path);
    }
    for path in &paths {
        let tls = path.handshakes().await?;
        let expected = matches!(path.which, Which::Mtls | Which::MtlsWith | Which::Kodiak);
        if (tls > 0) != expected {
            bail!(
                "{}: expected TLS between the Envoys to be {expected}, the caller made {tls} handshakes",
                path.which.label()
            );
        }
    }

    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let (duration, warm_up): (Duration, Duration) = (args.duration.into(), args.warm_up.into());
    for path in &paths {
        fixed_rate(&client, &path.url, &BODY, args.rate, warm_up, REQUEST_TIMEOUT).await;
    }
    tokio::time::sleep(SETTLE).await;
    let idle = memory(&paths)?;

    println!(
        "{} rounds per path of {} at {} requests/s (1 KiB POST, keep-alive, {} warm-up), alternating",
        args.rounds, args.duration, args.rate, args.warm_up
    );
    let mut results: Vec<Vec<LoadResult>> = paths.iter().map(|_| Vec::new()).collect();
    // On-core time per request (µs) of each path's caller and backend Envoy, per measured round.
    let mut cpu_used: Vec<Vec<[f64; 2]>> = paths.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        for turn in 0..paths.len() {
            let which = (round + turn) % paths.len();
            let path = &paths[which];
            fixed_rate(&client, &path.url, &BODY, args.rate, warm_up, REQUEST_TIMEOUT).await;
            let before = cpu(path)?;
            let result = fixed_rate(&client, &path.url, &BODY, args.rate, duration, REQUEST_TIMEOUT).await;
            let after = cpu(path)?;
            let [caller, backend] =
                [0, 1].map(|i| after[i].saturating_sub(before[i]).as_secs_f64() * 1e6 / result.sent.max(1) as f64);
            cpu_used[which].push([caller, backend]);
            let cpu = if path.which == Which::Direct {
                String::new()
            } else {
                format!("  CPU/request {caller:.0} / {backend:.0} µs")
            };
            println!("{}{cpu}", round_line(round + 1, path.which.label(), &result));
            results[which].push(result);
        }
    }
    let loaded = memory(&paths)?;

    if let Some(dir) = &args.dump_dir {
        std::fs::create_dir_all(dir)?;
        for path in &paths {
            for (admin_path, what) in
                [("/config_dump?include_eds", "config.json"), ("/stats", "stats.txt"), ("/memory", "memory.json")]
            {
                if let Some([caller, backend]) = path.admin(admin_path).await? {
                    std::fs::write(dir.join(format!("{}-caller-{what}", path.which.label())), caller)?;
                    std::fs::write(dir.join(format!("{}-backend-{what}", path.which.label())), backend)?;
                }
            }
        }
        println!("config dumps, stats and memory of every Envoy written to {}", dir.display());
    }

    let latency: Vec<[f64; 3]> = results.iter().map(|rounds| median_percentiles(rounds)).collect();
    let cpu_per_request: Vec<[f64; 2]> =
        cpu_used.iter().map(|rounds| [0, 1].map(|i| median(rounds.iter().map(|round| round[i])))).collect();
    report(&paths, &latency, &cpu_per_request, &idle, &loaded);
    let errors: usize = results.iter().flatten().map(|r| r.errors).sum();
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}

/// The control plane (in this process, on the in-memory store) with the
/// mesh `kodiak`: built-in CA, STRICT; checks that the policies every new
/// mesh gets are there.
async fn kodiak_control_plane() -> anyhow::Result<ControlPlane> {
    let control_plane = ControlPlane::memory();
    apply_strict_mtls_mesh(&control_plane, "kodiak").await;
    let defaults = [
        (ResourceType::MeshTrafficPermission, "allow-all-kodiak"),
        (ResourceType::MeshTimeout, "mesh-timeout-all-kodiak"),
        (ResourceType::MeshRetry, "mesh-retry-all-kodiak"),
        (ResourceType::MeshCircuitBreaker, "mesh-circuit-breaker-all-kodiak"),
    ];
    for (kind, name) in defaults {
        let key = ResourceKey::new(kind, Some("kodiak"), name);
        eventually(&format!("the default policy {name}"), SETUP_TIMEOUT, || async {
            control_plane.client().get(&key).await.ok().flatten()
        })
        .await;
    }
    Ok(control_plane)
}

async fn direct() -> Path {
    let service = TestService::start("direct-1").await;
    Path {
        which: Which::Direct,
        url: format!("http://{}/", service.http),
        running: Running::Direct { _service: service },
    }
}

/// Two minimal static Envoys in front of a test service: plaintext, or
/// mutual TLS between them.
async fn minimal(
    envoy: &std::path::Path,
    which: Which,
    certificates: &std::path::Path,
    extras: &[Extra],
) -> anyhow::Result<Path> {
    let service = TestService::start(&format!("{}-1", which.label())).await;
    let extras = |side: &[Extra]| -> Vec<Extra> {
        if which == Which::MtlsWith {
            extras.iter().copied().filter(|extra| side.contains(extra)).collect()
        } else {
            Vec::new()
        }
    };
    let (caller_tls, backend_tls) = if which != Which::Plain {
        let (caller, backend) = mesh_certificates(certificates)?;
        (Some(caller), Some(backend))
    } else {
        (None, None)
    };
    let (inbound, outbound) = (free_port(), free_port());
    let backend = Proxy {
        listen: inbound,
        cluster: "application",
        upstream: service.http,
        downstream_tls: backend_tls,
        upstream_tls: None,
        extras: extras(&[Extra::Rbac, Extra::DeniedLog, Extra::InboundRoute, Extra::Alpn]),
    };
    let caller = Proxy {
        listen: outbound,
        cluster: "backend",
        upstream: ([127, 0, 0, 1], inbound).into(),
        downstream_tls: None,
        upstream_tls: caller_tls,
        extras: extras(&[Extra::Retries, Extra::Breakers, Extra::Alpn]),
    };
    let backend = StaticEnvoy::start(envoy, &backend, SETUP_TIMEOUT).await?;
    let caller = StaticEnvoy::start(envoy, &caller, SETUP_TIMEOUT).await?;
    let url = format!("http://127.0.0.1:{outbound}/");
    eventually(&format!("{}: a request through both Envoys is answered", which.label()), SETUP_TIMEOUT, || async {
        (get(&url).await.status == 200).then_some(())
    })
    .await;
    Ok(Path { which, url, running: Running::Minimal { caller, backend, _service: service } })
}

/// The median of some values (NaN for none).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// How long a path's caller and backend Envoy have run on a core so far
/// (zero for a path without Envoys).
fn cpu(path: &Path) -> anyhow::Result<[Duration; 2]> {
    let Some(pids) = path.envoys()? else { return Ok([Duration::ZERO; 2]) };
    Ok([sched_times(pids[0])?.0, sched_times(pids[1])?.0])
}

/// VmRSS (KiB) of every path's caller and backend Envoy, in path order.
fn memory(paths: &[Path]) -> anyhow::Result<Vec<Option<[u64; 2]>>> {
    paths
        .iter()
        .map(|path| {
            let Some(pids) = path.envoys()? else { return Ok(None) };
            Ok(Some([rss_kib(pids[0])?, rss_kib(pids[1])?]))
        })
        .collect()
}

fn report(
    paths: &[Path],
    latency: &[[f64; 3]],
    cpu_per_request: &[[f64; 2]],
    idle: &[Option<[u64; 2]>],
    loaded: &[Option<[u64; 2]>],
) {
    let index = |which: Which| paths.iter().position(|path| path.which == which);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "\nmedian over rounds (ms); each Envoy's CPU per request (µs, median over rounds) and RSS (MiB): caller / backend"
    );
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>13} {:>13} {:>13}",
        "path", "p50", "p90", "p99", "added p50", "added p99", "CPU/request", "RSS idle", "RSS loaded"
    );
    let direct = index(Which::Direct).map(|i| latency[i]);
    for (i, path) in paths.iter().enumerate() {
        let [p50, p90, p99] = latency[i];
        let added = |q: usize| direct.map_or(String::from("-"), |direct| format!("{:+.3}", latency[i][q] - direct[q]));
        let rss =
            |rss: Option<[u64; 2]>| rss.map_or(String::from("-"), |[c, b]| format!("{:.1} / {:.1}", mib(c), mib(b)));
        let cpu = match (path.which, cpu_per_request[i]) {
            (Which::Direct, _) => String::from("-"),
            (_, [caller, backend]) => format!("{caller:.0} / {backend:.0}"),
        };
        println!(
            "{:<8} {p50:>8.3} {p90:>8.3} {p99:>8.3} {:>10} {:>10} {cpu:>13} {:>13} {:>13}",
            path.which.label(),
            added(0),
            added(2),
            rss(idle[i]),
            rss(loaded[i]),
        );
    }

    let (Some(direct), Some(kodiak)) = (direct, index(Which::Kodiak)) else { return };
    let mean_rss = |rss: Option<[u64; 2]>| rss.map_or(f64::NAN, |[c, b]| (c + b) as f64 / 2.0);
    println!("\nKodiak against the minimal pair (target: at most {TARGET}x):");
    for minimal in [Which::Mtls, Which::Plain] {
        let Some(m) = index(minimal) else { continue };
        for (q, name) in [(0, "p50"), (2, "p99")] {
            let ratio = (latency[kodiak][q] - direct[q]) / (latency[m][q] - direct[q]);
            println!("  added {name}, kodiak / {:<6} {ratio:>6.2}  {}", minimal.label(), verdict(ratio));
        }
        let pair_cpu = |i: usize| cpu_per_request[i][0] + cpu_per_request[i][1];
        let ratio = pair_cpu(kodiak) / pair_cpu(m);
        println!("  CPU per request, kodiak / {:<6} {ratio:>6.2}", minimal.label());
        for (name, rss) in [("idle", idle), ("after load", loaded)] {
            let ratio = mean_rss(rss[kodiak]) / mean_rss(rss[m]);
            println!("  RSS {name:<10}, kodiak / {:<6} {ratio:>6.2}  {}", minimal.label(), verdict(ratio));
        }
    }
}

fn verdict(ratio: f64) -> &'static str {
    if ratio <= TARGET { "met" } else { "MISSED" }
}
