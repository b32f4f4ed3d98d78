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

use anyhow::bail;
use clap::Parser;
use kodiak_bench::load::{LoadResult, fixed_rate, median_percentiles, round_line};
use kodiak_bench::two_sidecars::{SidecarPath, apply_strict_mtls_mesh};
use kodiak_e2e::ControlPlane;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let control_plane = ControlPlane::memory();
    control_plane.apply("type: Mesh\nname: plain\n").await;
    apply_strict_mtls_mesh(&control_plane, "secure").await;
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
    let paths = [SidecarPath::start(&control_plane, "plain").await, SidecarPath::start(&control_plane, "secure").await];
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
            println!("{}", round_line(round + 1, &path.mesh, &result));
            results[which].push(result);
        }
    }
    println!("\nmedian over rounds (ms):");
    let [plain, secure] = [median_percentiles(&results[0]), median_percentiles(&results[1])];
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

/// Fails unless the caller's connections to the backend are (or are not) TLS.
async fn check_tls(path: &SidecarPath, expected: bool) -> anyhow::Result<()> {
    let handshakes = path.caller_tls_handshakes().await?;
    if (handshakes > 0) != expected {
        bail!("{}: expected TLS to the backend to be {expected}, the caller made {handshakes} handshakes", path.mesh);
    }
    Ok(())
}
