//! `kodiak-bench-mtls`: what mesh mTLS adds to a request's latency. Two
//! meshes run side by side on one control plane (in this process, on the
//! in-memory store): `plain` without mTLS and `secure` with the built-in CA
//! in STRICT mode. Each has a caller sidecar and a backend sidecar in front
//! of a test service, so a request crosses two Envoys: caller's outbound →
//! backend's inbound → test service. Rounds alternate between the meshes;
//! each round sends a 1 KiB POST at a fixed rate over keep-alive
//! connections (open loop, latency counted from when a request was due) and
//! the first second of every round is warm-up, not counted.
//!
//! Every loop is bounded by a count and a deadline.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use kodiak_bench::load::{LoadResult, fixed_rate};
use kodiak_bench::{ms, percentile};
use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, eventually, free_port, get};

const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const WARM_UP: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
static BODY: [u8; 1024] = [b'k'; 1024];

#[derive(Parser)]
#[command(about = "Benchmark the latency mesh mTLS adds through two sidecars, at a fixed request rate")]
struct Args {
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// How long each measured round lasts (after one second of warm-up).
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Rounds per mesh; rounds alternate between the meshes.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// One mesh's request path: the caller's outbound URL, kept alive with
/// everything it needs.
struct Path {
    mesh: &'static str,
    url: String,
    caller: Sidecar,
    _backend: Sidecar,
    _service: TestService,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let control_plane = ControlPlane::memory();
    control_plane.apply("type: Mesh\nname: plain\n").await;
    control_plane
        .apply(
            "type: Mesh
name: secure
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    mode: STRICT
",
        )
        .await;
    control_plane
        .apply(
            "type: MeshTrafficPermission
mesh: secure
name: allow-all-secure
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Allow}
",
        )
        .await;
    let paths = [path(&control_plane, "plain").await?, path(&control_plane, "secure").await?];
    check_tls(&paths[1], true).await?;
    check_tls(&paths[0], false).await?;

    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let duration: Duration = args.duration.into();
    println!(
        "{} rounds per mesh of {} at {} requests/s (1 KiB POST, keep-alive), alternating",
        args.rounds, args.duration, args.rate
    );
    let mut results: [Vec<LoadResult>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        for (which, path) in paths.iter().enumerate() {
            fixed_rate(&client, &path.url, &BODY, args.rate, WARM_UP, REQUEST_TIMEOUT).await;
            let result = fixed_rate(&client, &path.url, &BODY, args.rate, duration, REQUEST_TIMEOUT).await;
            print_round(round + 1, path.mesh, &result);
            results[which].push(result);
        }
    }
    println!("\nmedian over rounds (ms):");
    let [plain, secure] = [summary(&results[0]), summary(&results[1])];
    println!("{:<8} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99");
    println!("{:<8} {:>8.3} {:>8.3} {:>8.3}", "plain", plain[0], plain[1], plain[2]);
    println!("{:<8} {:>8.3} {:>8.3} {:>8.3}", "mTLS", secure[0], secure[1], secure[2]);
    println!(
        "{:<8} {:>8.3} {:>8.3} {:>8.3}",
        "added",
        secure[0] - plain[0],
        secure[1] - plain[1],
        secure[2] - plain[2]
    );
    let errors: usize = results.iter().flatten().map(|r| r.errors).sum();
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}

/// Starts a backend (test service and sidecar) and a caller sidecar in
/// `mesh` and waits until a request through both answers.
async fn path(control_plane: &ControlPlane, mesh: &'static str) -> anyhow::Result<Path> {
    let service = TestService::start(&format!("{mesh}-backend-1")).await;
    let backend = Sidecar::register(control_plane, &backend_dataplane(mesh, &service), Transport::Delta);
    let outbound = free_port();
    let caller = Sidecar::register(control_plane, &caller_dataplane(mesh, outbound), Transport::Delta);
    let url = format!("http://127.0.0.1:{outbound}/");
    eventually(&format!("{mesh}: a request through both sidecars is answered"), SETUP_TIMEOUT, || async {
        (get(&url).await.status == 200).then_some(())
    })
    .await;
    Ok(Path { mesh, url, caller, _backend: backend, _service: service })
}

/// Fails unless the caller's connections to the backend are (or are not) TLS.
async fn check_tls(path: &Path, expected: bool) -> anyhow::Result<()> {
    let stats = path.caller.admin("/stats?filter=ssl.handshake").await.context("the caller's Envoy admin answers")?;
    let handshakes: u64 = stats
        .lines()
        .filter(|line| line.starts_with("cluster.backend.ssl.handshake"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    if (handshakes > 0) != expected {
        bail!("{}: expected TLS to the backend to be {expected}, caller's stats say:\n{stats}", path.mesh);
    }
    Ok(())
}

fn print_round(round: usize, mesh: &str, result: &LoadResult) {
    if result.latencies.is_empty() {
        println!("round {round} {mesh:<7} no successful request ({} errors)", result.errors);
        return;
    }
    let l = &result.latencies;
    println!(
        "round {round} {mesh:<7} sent {:>6}  errors {:>3}  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  max {:>8.3} ms",
        result.sent,
        result.errors,
        ms(percentile(l, 0.5)),
        ms(percentile(l, 0.9)),
        ms(percentile(l, 0.99)),
        ms(l[l.len() - 1]),
    );
}

/// The median over rounds of p50, p90 and p99, in milliseconds.
fn summary(rounds: &[LoadResult]) -> [f64; 3] {
    [0.5, 0.9, 0.99].map(|q| {
        let mut values: Vec<f64> =
            rounds.iter().filter(|r| !r.latencies.is_empty()).map(|r| ms(percentile(&r.latencies, q))).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    })
}

fn backend_dataplane(mesh: &str, service: &TestService) -> String {
    format!(
        "type: Dataplane
mesh: {mesh}
name: {mesh}-backend-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {port}
    servicePort: {service_port}
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http
",
        port = free_port(),
        service_port = service.http.port(),
    )
}

fn caller_dataplane(mesh: &str, outbound: u16) -> String {
    format!(
        "type: Dataplane
mesh: {mesh}
name: {mesh}-caller
networking:
  address: 127.0.0.1
  outbound:
  - port: {outbound}
    tags:
      kuma.io/service: backend
"
    )
}
