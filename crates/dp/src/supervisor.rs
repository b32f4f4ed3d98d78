//! Runs Envoy and shuts it down gracefully.
//!
//! Shutdown on SIGINT/SIGTERM, in this order, so no caller sees a refused
//! connection: tell the control plane (callers stop choosing this
//! instance), drain Envoy's inbound listeners (connections are told to
//! close after their current request), wait the drain time, SIGTERM Envoy.
//!
//! Envoy must not outlive kodiak-dp: a kodiak-dp killed with SIGKILL has
//! no chance to stop it, and the Envoy left behind would keep the
//! Dataplane's xDS connection, so the control plane would refuse the next
//! kodiak-dp for that Dataplane. Envoy is therefore started through
//! util-linux `setpriv --pdeathsig KILL`, which asks the kernel to kill it
//! when kodiak-dp dies, then execs Envoy (same pid, so Envoy's own exit
//! status). The workspace forbids `unsafe`, so there is no `prctl` in
//! `pre_exec` instead. Without such a `setpriv`, Envoy starts directly.
//!
//! Once Envoy runs, the control plane may come and go: Envoy keeps its last
//! configuration and reconnects by itself, so there is nothing to do here.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use kodiak_api::bootstrap::DrainRequest;
use tokio::process::{Child, Command};

use crate::bootstrap_client::ControlPlane;
use crate::signals::Signals;

/// Envoy writes its admin address (`127.0.0.1:PORT`) here once it listens.
pub const ADMIN_ADDRESS_FILE: &str = "admin-address.txt";
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
/// How long Envoy may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Envoy {
    pub binary: PathBuf,
    /// `setpriv` with `--pdeathsig`, when there is one (see [`find_setpriv`]).
    pub setpriv: Option<PathBuf>,
    pub concurrency: u32,
    pub log_level: String,
    pub drain_time: Duration,
}

impl Envoy {
    /// The command line. `--disable-hot-restart`: kodiak-dp restarts Envoy
    /// by starting a new one, never by hot restart, and without it every
    /// Envoy on a host claims the same shared memory and domain socket
    /// (base id 0), so a second one fails to start.
    ///
    /// With `setpriv`: `setpriv --pdeathsig KILL -- ENVOY ARGS...`.
    fn command(&self, work_dir: &Path) -> Command {
        let mut command = match &self.setpriv {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("--config-path")
            .arg(work_dir.join(BOOTSTRAP_FILE))
            .arg("--admin-address-path")
            .arg(work_dir.join(ADMIN_ADDRESS_FILE))
            .arg("--disable-hot-restart")
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--log-level", &self.log_level])
            .args(["--drain-time-s", &self.drain_time.as_secs_f64().ceil().to_string()])
            // The control plane has already taken this instance out of its
            // callers' endpoints when the drain starts, so every connection
            // may be told to close at once rather than spread over the
            // drain time ("gradual").
            .args(["--drain-strategy", "immediate"])
            // Access-log files (and the TCP access-log pipe) get their
            // entries within a second, not Envoy's default ten.
            .args(["--file-flush-interval-msec", "1000"])
            .stdin(Stdio::null())
            // A terminal's Ctrl-C goes to the whole foreground process
            // group; Envoy must not get it, or it would exit before draining.
            .process_group(0)
            .kill_on_drop(true);
        command
    }
}

/// Starts Envoy with `bootstrap` and supervises it. Returns the exit code
/// for kodiak-dp: Envoy's when it exits by itself, 0 after a requested shutdown.
pub async fn run(
    envoy: &Envoy,
    work_dir: &Path,
    bootstrap: &serde_json::Value,
    signals: &mut Signals,
    control_plane: &ControlPlane,
    drain: &DrainRequest,
) -> anyhow::Result<i32> {
    let bootstrap_path = work_dir.join(BOOTSTRAP_FILE);
    write_private(&bootstrap_path, &serde_json::to_vec_pretty(bootstrap)?)
        .with_context(|| format!("cannot write {}", bootstrap_path.display()))?;
    let admin_file = work_dir.join(ADMIN_ADDRESS_FILE);
    // A file left by an earlier run in a kept --work-dir would point at a dead Envoy.
    let _ = std::fs::remove_file(&admin_file);

    // PR_SET_PDEATHSIG fires when the *thread* that forked the child exits,
    // not the process. This runs inside the main thread's `block_on`, which
    // lives as long as kodiak-dp; never move the spawn to `spawn_blocking`
    // (its threads exit when idle, and Envoy would be killed with them).
    let mut child =
        envoy.command(work_dir).spawn().with_context(|| format!("cannot start {}", envoy.binary.display()))?;
    tracing::info!(
        "started Envoy (pid {}) with {} in {}",
        child.id().unwrap_or_default(),
        BOOTSTRAP_FILE,
        work_dir.display()
    );

    let mut admin: Option<String> = None;
    let signal = loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for Envoy")?;
                tracing::error!("Envoy exited by itself ({}); kodiak-dp exits with its status", describe(status));
                return Ok(exit_code(status));
            }
            address = wait_for_file(&admin_file), if admin.is_none() => {
                tracing::info!("Envoy is running; admin API at http://{address}");
                admin = Some(address);
            }
            signal = signals.recv() => break signal,
        }
    };

    tracing::info!(
        "received {signal}: draining for {} (a second signal stops Envoy at once)",
        humantime::format_duration(envoy.drain_time)
    );
    control_plane.drain(drain).await;
    let admin = match admin {
        Some(address) => Some(address),
        // Envoy may have come up since the last look.
        None => std::fs::read_to_string(&admin_file).ok().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()),
    };
    match &admin {
        Some(address) => drain_inbound_listeners(address).await,
        None => tracing::warn!("Envoy's admin API is not up yet; stopping without draining"),
    }
    tokio::select! {
        status = child.wait() => {
            let status = status.context("waiting for Envoy")?;
            tracing::info!("Envoy exited while draining ({})", describe(status));
            return Ok(0);
        }
        _ = tokio::time::sleep(envoy.drain_time) => {}
        signal = signals.recv() => tracing::info!("received {signal} again: stopping Envoy now"),
    }
    stop(&mut child).await?;
    Ok(0)
}

/// `setpriv` from `PATH`, if it knows `--pdeathsig` (util-linux 2.33 and
/// later; Debian's has it). None, with a one-line warning, otherwise.
pub async fn find_setpriv() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join("setpriv")).find(|candidate| candidate.is_file())
    });
    let Some(setpriv) = found else {
        tracing::warn!(
            "no setpriv (util-linux) on PATH: Envoy starts directly and would outlive a kodiak-dp killed with SIGKILL"
        );
        return None;
    };
    let help = Command::new(&setpriv).arg("--help").stdin(Stdio::null()).output().await;
    match help {
        Ok(output) if String::from_utf8_lossy(&output.stdout).contains("--pdeathsig") => Some(setpriv),
        _ => {
            tracing::warn!(
                "{} does not know --pdeathsig: Envoy starts directly and would outlive a kodiak-dp killed with SIGKILL",
                setpriv.display()
            );
            None
        }
    }
}

/// `POST /drain_listeners?inboundonly&graceful`: inbound listeners (those
/// with `traffic_direction: INBOUND`) keep accepting during the drain time
/// but ask every connection to close (HTTP/1.1 `Connection: close`,
/// HTTP/2 GOAWAY), then stop listening. Outbound listeners stay, so the
/// application can still finish calls it makes while it winds down.
async fn drain_inbound_listeners(admin: &str) {
    let url = format!("http://{admin}/drain_listeners?inboundonly&graceful");
    let result = async { reqwest::Client::new().post(&url).timeout(ADMIN_TIMEOUT).send().await?.error_for_status() };
    match result.await {
        Ok(_) => tracing::info!("Envoy is draining its inbound listeners"),
        Err(e) => tracing::warn!("could not drain Envoy's listeners ({url}: {e})"),
    }
}

/// SIGTERM (Envoy exits cleanly), then SIGKILL if it takes too long.
async fn stop(child: &mut Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
        tracing::info!("stopping Envoy (SIGTERM to pid {pid})");
        if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
            tracing::warn!("could not send SIGTERM to Envoy: {e}");
        }
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(status) => tracing::info!("Envoy stopped ({})", describe(status?)),
        Err(_) => {
            tracing::warn!("Envoy did not stop within {}s; killing it", STOP_TIMEOUT.as_secs());
            child.kill().await?;
        }
    }
    Ok(())
}

/// Writes a file only its owner may read: the bootstrap carries the
/// dataplane token.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // An existing file keeps its mode on open: narrow it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)
}

/// Envoy writes the admin address file once, right after binding. A short
/// poll at startup only; it stops once the address is known.
async fn wait_for_file(path: &Path) -> String {
    loop {
        if let Ok(text) = tokio::fs::read_to_string(path).await
            && !text.trim().is_empty()
        {
            return text.trim().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// A shell's convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|signal| 128 + signal)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_line(setpriv: Option<&str>) -> String {
        let envoy = Envoy {
            binary: "/x/envoy".into(),
            setpriv: setpriv.map(PathBuf::from),
            concurrency: 2,
            log_level: "warning".into(),
            drain_time: Duration::from_millis(1500),
        };
        let command = envoy.command(Path::new("/w"));
        let command = command.as_std();
        let args = command.get_args().map(|a| a.to_string_lossy().into_owned());
        std::iter::once(command.get_program().to_string_lossy().into_owned()).chain(args).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn envoy_command_line() {
        assert_eq!(
            command_line(None),
            "/x/envoy --config-path /w/bootstrap.json --admin-address-path /w/admin-address.txt \
             --disable-hot-restart --concurrency 2 --log-level warning --drain-time-s 2 --drain-strategy immediate \
             --file-flush-interval-msec 1000"
        );
    }

    #[test]
    fn through_setpriv_envoy_dies_with_kodiak_dp() {
        assert_eq!(
            command_line(Some("/usr/bin/setpriv")),
            "/usr/bin/setpriv --pdeathsig KILL -- /x/envoy --config-path /w/bootstrap.json \
             --admin-address-path /w/admin-address.txt --disable-hot-restart --concurrency 2 --log-level warning \
             --drain-time-s 2 --drain-strategy immediate --file-flush-interval-msec 1000"
        );
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
