//! What the benchmark programs share: a real `kodiak-cp` as a child process
//! (so its CPU time and memory are its own), readings from `/proc`,
//! percentiles, an open-loop load generator, request paths through two
//! Kodiak sidecars and through two minimal static Envoys.

pub mod load;
pub mod static_envoy;
pub mod two_sidecars;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A `kodiak-cp` process, killed when dropped.
pub struct CpProcess(Child);

impl CpProcess {
    /// Runs `binary run <args>` with `env` set, and waits (up to 30 s)
    /// until its `/ready` on `diagnostics_port` answers.
    pub async fn start(
        binary: &Path,
        args: &[String],
        env: &[(&str, &str)],
        diagnostics_port: u16,
        stderr: Stdio,
    ) -> anyhow::Result<CpProcess> {
        if !binary.exists() {
            bail!("{} not found: run `cargo build --release -p kodiak-cp` first", binary.display());
        }
        let child = Command::new(binary)
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut cp = CpProcess(child);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let ready = format!("http://127.0.0.1:{diagnostics_port}/ready");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
            if let Some(status) = cp.0.try_wait()? {
                bail!("kodiak-cp exited during start ({status}); are its ports ({}) free?", args.join(" "));
            }
            if Instant::now() > deadline {
                bail!("kodiak-cp did not become ready in 30s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(cp)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Stops it with SIGTERM, as an operator would, and waits for the exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status()?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for CpProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory (`VmRSS`) of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")
}

/// How long all threads of a process have run on a core so far, and how
/// long they waited for one while runnable, to the nanosecond (from
/// `/proc/<pid>/task/*/schedstat`; threads that already ended are not counted).
pub fn sched_times(pid: u32) -> anyhow::Result<(Duration, Duration)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("process {pid}"))?;
    let (mut ran, mut waited) = (0u64, 0u64);
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let mut fields = text.split_whitespace().map(|field| field.parse::<u64>().unwrap_or(0));
        ran += fields.next().unwrap_or(0);
        waited += fields.next().unwrap_or(0);
    }
    Ok((Duration::from_nanos(ran), Duration::from_nanos(waited)))
}

/// The children of a process (from `/proc/<pid>/task/*/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    assert!(!sorted.is_empty(), "no samples");
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, for printing.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
