//! `kodiak-bench-ca`: how many workload certificates the built-in CA issues per
//! second (a fresh key pair, SPIFFE and tag SANs, signed by an ECDSA P-256
//! root), on one thread and on several, for each key kind.
//!
//! Pure CPU, no network. Every run is bounded by a certificate count and a time limit.

use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use kodiak_bench::{ms, percentile};
use kodiak_ca::{Ca, KeyKind, RootCa, WorkloadRequest};

#[derive(Parser)]
#[command(about = "Benchmark workload certificate issuance of the built-in CA")]
struct Args {
    /// Stop a run after this long (checked after each certificate).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop a run after this many certificates, across its threads.
    #[arg(long, default_value_t = 100_000)]
    max_certs: usize,
    /// Thread counts to run with, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
}

/// One run's outcome: certificates issued, wall time and each issuance's latency.
struct Run {
    certs: usize,
    wall: Duration,
    latencies: Vec<Duration>,
}

fn request(key: KeyKind, i: usize) -> WorkloadRequest {
    WorkloadRequest {
        mesh: "default".into(),
        services: vec![format!("svc-{}", i % 500)],
        tags: kodiak_ca::tags_of([
            ("kuma.io/protocol", "http".to_owned()),
            ("kuma.io/service", format!("svc-{}", i % 500)),
            ("kuma.io/zone", "zone-1".to_owned()),
            ("version", "v1".to_owned()),
        ]),
        key,
        lifetime: Duration::from_secs(24 * 3600),
        now: SystemTime::now(),
    }
}

/// Issues certificates on `threads` threads until `max_certs` or `limit` is reached.
fn run(ca: &Ca, key: KeyKind, threads: usize, max_certs: usize, limit: Duration) -> anyhow::Result<Run> {
    let per_thread = max_certs.div_ceil(threads);
    let start = Instant::now();
    let results: Vec<anyhow::Result<Vec<Duration>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    for i in 0..per_thread {
                        let begin = Instant::now();
                        let cert = ca.issue(&request(key, t * per_thread + i))?;
                        latencies.push(begin.elapsed());
                        std::hint::black_box(cert);
                        if start.elapsed() >= limit {
                            break;
                        }
                    }
                    Ok(latencies)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a worker thread panicked")).collect()
    });
    let wall = start.elapsed();
    let mut latencies = Vec::new();
    for result in results {
        latencies.extend(result?);
    }
    latencies.sort_unstable();
    Ok(Run { certs: latencies.len(), wall, latencies })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca = RootCa::generate(
        "default",
        "ca-1",
        KeyKind::EcdsaP256,
        Duration::from_secs(365 * 24 * 3600),
        SystemTime::now(),
    )?;
    println!(
        "workload certificates from an ECDSA P-256 root; each run stops at {} certificates or {:?}",
        args.max_certs, args.duration
    );
    println!(
        "{:<11} {:>7} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "leaf key", "threads", "certs", "wall s", "certs/s", "p50 ms", "p99 ms"
    );
    for key in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        for &threads in &args.threads {
            let run = run(&ca, key, threads.max(1), args.max_certs, args.duration)?;
            println!(
                "{:<11} {:>7} {:>8} {:>8.2} {:>10.0} {:>9.3} {:>9.3}",
                format!("{key:?}"),
                threads,
                run.certs,
                run.wall.as_secs_f64(),
                run.certs as f64 / run.wall.as_secs_f64(),
                ms(percentile(&run.latencies, 0.50)),
                ms(percentile(&run.latencies, 0.99)),
            );
        }
    }
    Ok(())
}
