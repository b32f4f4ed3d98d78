//! `kodiak-bench-api`: measures the REST API of a real `kodiak-cp` on the
//! embedded SQLite store: PUT throughput and latency while storing N
//! Dataplanes, GET throughput and latency with all of them stored, and the
//! control plane's resident memory at idle afterwards.
//!
//! Every loop is bounded by a request count; traffic goes to loopback only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use kodiak_bench::{CpProcess, rss_kib};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Benchmark the Kodiak REST API on the SQLite store")]
struct Args {
    /// The kodiak-cp binary to run (build it with --release).
    #[arg(long, default_value = "target/release/kodiak-cp")]
    cp_binary: PathBuf,
    /// How many Dataplanes to store (each one PUT is measured).
    #[arg(long, default_value_t = 10_000)]
    dataplanes: usize,
    /// How many GETs to send once they are stored.
    #[arg(long, default_value_t = 50_000)]
    gets: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Port of the REST API of the control plane under test.
    #[arg(long, default_value_t = 15681)]
    api_port: u16,
    /// Port of its diagnostics server.
    #[arg(long, default_value_t = 15680)]
    diagnostics_port: u16,
    /// Seconds to let the control plane settle before reading idle memory.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
}

/// Dataplane number `i`; `version` changes its tags, so a second PUT with
/// another version is a real update.
fn dataplane(i: usize, version: &str) -> serde_json::Value {
    json!({
        "type": "Dataplane", "mesh": "default", "name": format!("dp-{i}"),
        "networking": {
            "address": format!("127.0.{}.{}", i / 250 % 250, i % 250 + 1),
            "inbound": [{"port": 10001, "servicePort": 8080,
                         "tags": {"kuma.io/service": format!("svc-{}", i / 2), "kuma.io/protocol": "http", "version": version}}],
            "outbound": [{"port": 20001, "tags": {"kuma.io/service": format!("svc-{}", (i / 2 + 1) % 5000)}}]
        }
    })
}

/// Latencies of one phase and its wall time.
struct Phase {
    name: &'static str,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Phase {
    fn report(&mut self) {
        self.latencies.sort();
        let pick = |q: f64| self.latencies[((self.latencies.len() - 1) as f64 * q) as usize];
        let rate = self.latencies.len() as f64 / self.elapsed.as_secs_f64();
        println!(
            "{:<12} {:>7} requests  {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            self.name,
            self.latencies.len(),
            rate,
            pick(0.50).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            pick(1.0).as_secs_f64() * 1e3,
        );
    }
}

/// Sends `count` requests made by `request(i)` with `concurrency` in flight.
async fn run_phase<F, Fut>(name: &'static str, count: usize, concurrency: usize, request: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (request, next) = (request.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let sent = Instant::now();
                request(i).await?;
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok(Phase { name, latencies, elapsed: started.elapsed() })
}

/// PUTs every Dataplane once with the given version tag and expects
/// `status` (201 on the first round, 200 on the next).
async fn put_phase(
    name: &'static str,
    http: &reqwest::Client,
    base: &str,
    args: &Args,
    version: &'static str,
    status: u16,
) -> anyhow::Result<Phase> {
    let (client, url) = (http.clone(), base.to_owned());
    run_phase(name, args.dataplanes, args.concurrency, move |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client
                .put(format!("{url}/meshes/default/dataplanes/dp-{i}"))
                .json(&dataplane(i, version))
                .send()
                .await?;
            if response.status() != status {
                bail!("{name} dp-{i}: {}", response.status());
            }
            Ok(())
        }
    })
    .await
}

/// Starts `kodiak-cp` on the SQLite store in `data_dir` and waits until it is ready.
async fn start_cp(args: &Args, data_dir: &Path) -> anyhow::Result<CpProcess> {
    let cp_args = [
        "--data-dir".to_owned(),
        data_dir.to_string_lossy().into_owned(),
        "--api-port".to_owned(),
        args.api_port.to_string(),
        "--diagnostics-port".to_owned(),
        args.diagnostics_port.to_string(),
    ];
    CpProcess::start(
        &args.cp_binary,
        &cp_args,
        &[("KODIAK_LOG_LEVEL", "warn")],
        args.diagnostics_port,
        Stdio::inherit(),
    )
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.dataplanes == 0 || args.gets == 0 || args.concurrency == 0 {
        bail!("--dataplanes, --gets and --concurrency must each be at least 1");
    }
    let data = tempfile::tempdir()?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let cp = start_cp(&args, data.path()).await?;
    let pid = cp.pid();
    println!("kodiak-cp pid {pid}, SQLite store, {} Dataplanes, {} in flight", args.dataplanes, args.concurrency);
    let base = format!("http://127.0.0.1:{}", args.api_port);

    let mut create = put_phase("PUT (create)", &http, &base, &args, "v1", 201).await?;
    create.report();
    let mut update = put_phase("PUT (update)", &http, &base, &args, "v2", 200).await?;
    update.report();

    let (client, url, stored) = (http.clone(), base.clone(), args.dataplanes);
    let mut get = run_phase("GET", args.gets, args.concurrency, move |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let name = (i * 7919) % stored;
            let response = client.get(format!("{url}/meshes/default/dataplanes/dp-{name}")).send().await?;
            if response.status() != 200 {
                bail!("GET dp-{name}: {}", response.status());
            }
            response.bytes().await?;
            Ok(())
        }
    })
    .await?;
    get.report();

    let total: serde_json::Value =
        http.get(format!("{base}/meshes/default/dataplanes?size=1")).send().await?.json().await?;
    println!("stored Dataplanes: {}", total["total"]);
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    println!("idle RSS of kodiak-cp after the load: {:.1} MiB", rss_kib(pid)? as f64 / 1024.0);

    cp.stop()?;
    let cp = start_cp(&args, data.path()).await?;
    let page: serde_json::Value =
        http.get(format!("{base}/meshes/default/dataplanes?size=1")).send().await?.json().await?;
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    println!(
        "idle RSS of kodiak-cp restarted on the same store ({} Dataplanes): {:.1} MiB",
        page["total"],
        rss_kib(cp.pid())? as f64 / 1024.0
    );
    Ok(())
}
