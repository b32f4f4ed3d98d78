//! `kodiak-dp` processes (each running its own Envoy) with their logs kept
//! in a work directory of their own.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::{ControlPlane, binary, envoy};

/// The ADS flavour a sidecar speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Delta,
    Sotw,
}

impl Transport {
    fn flag(self) -> &'static str {
        match self {
            Transport::Delta => "delta",
            Transport::Sotw => "sotw",
        }
    }
}

pub struct Sidecar {
    child: Child,
    dir: tempfile::TempDir,
    /// For Envoy's admin API.
    admin_client: reqwest::Client,
}

impl Sidecar {
    /// `kodiak-dp run` registering `dataplane` (a Dataplane document).
    pub fn register(control_plane: &ControlPlane, dataplane: &str, transport: Transport) -> Sidecar {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("dataplane.yaml");
        std::fs::write(&file, dataplane).expect("the dataplane file is written");
        let file = file.to_string_lossy().into_owned();
        Self::run(control_plane, dir, &["--dataplane-file", &file, "--xds-transport", transport.flag()])
    }

    /// `kodiak-dp run` for a Dataplane applied beforehand.
    pub fn named(control_plane: &ControlPlane, mesh: &str, name: &str, transport: Transport) -> Sidecar {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::run(control_plane, dir, &["--mesh", mesh, "--name", name, "--xds-transport", transport.flag()])
    }

    /// `kodiak-dp run` registering `dataplane` with a dataplane token
    /// (given through `--dataplane-token-file`).
    pub fn register_with_token(
        control_plane: &ControlPlane,
        dataplane: &str,
        transport: Transport,
        token: &str,
    ) -> Sidecar {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("dataplane.yaml");
        std::fs::write(&file, dataplane).expect("the dataplane file is written");
        let token_file = Self::token_file(&dir, token);
        let file = file.to_string_lossy().into_owned();
        let args =
            ["--dataplane-file", &file, "--xds-transport", transport.flag(), "--dataplane-token-file", &token_file];
        Self::run(control_plane, dir, &args)
    }

    /// `kodiak-dp run` for a Dataplane applied beforehand, with a dataplane token.
    pub fn named_with_token(
        control_plane: &ControlPlane,
        mesh: &str,
        name: &str,
        transport: Transport,
        token: &str,
    ) -> Sidecar {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let token_file = Self::token_file(&dir, token);
        let args = [
            "--mesh",
            mesh,
            "--name",
            name,
            "--xds-transport",
            transport.flag(),
            "--dataplane-token-file",
            &token_file,
        ];
        Self::run(control_plane, dir, &args)
    }

    /// Writes `token` into the sidecar's directory; returns the file's path.
    fn token_file(dir: &tempfile::TempDir, token: &str) -> String {
        let path = dir.path().join("dataplane.token");
        std::fs::write(&path, token).expect("the token file is written");
        path.to_string_lossy().into_owned()
    }

    /// `kodiak-dp run` with these arguments (plus the control plane's
    /// address and certificate, a work directory and a short drain time).
    /// Without a `--dataplane-token-file`, a control plane that requires
    /// tokens gets one for the Dataplane's mesh.
    pub fn run(control_plane: &ControlPlane, dir: tempfile::TempDir, args: &[&str]) -> Sidecar {
        Self::start(control_plane, dir, args, true)
    }

    /// `kodiak-dp run` registering `dataplane` with no dataplane token at all,
    /// whatever the control plane requires.
    pub fn register_without_token(control_plane: &ControlPlane, dataplane: &str, transport: Transport) -> Sidecar {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("dataplane.yaml");
        std::fs::write(&file, dataplane).expect("the dataplane file is written");
        let file = file.to_string_lossy().into_owned();
        Self::start(control_plane, dir, &["--dataplane-file", &file, "--xds-transport", transport.flag()], false)
    }

    fn start(control_plane: &ControlPlane, dir: tempfile::TempDir, args: &[&str], issue_token: bool) -> Sidecar {
        let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let has_token = args.iter().any(|arg| arg == "--dataplane-token-file");
        if issue_token && control_plane.requires_dataplane_tokens() && !has_token {
            let token = control_plane.dataplane_token_blocking(&mesh_of(&args));
            args.extend(["--dataplane-token-file".to_owned(), Self::token_file(&dir, &token)]);
        }
        let log = std::fs::File::create(dir.path().join("kodiak-dp.log")).expect("the log file is created");
        let work_dir = dir.path().join("work");
        let mut command = Command::new(binary("kodiak-dp"));
        command.arg("run").args(["--cp-address", &control_plane.dp_server_url()]);
        if let Some(ca) = control_plane.ca_cert_file().filter(|_| control_plane.dp_server_url().starts_with("https")) {
            command.arg("--ca-cert-file").arg(ca);
        }
        let child = command
            .arg("--work-dir")
            .arg(&work_dir)
            .arg("--envoy-binary")
            .arg(envoy())
            .args(["--drain-time", "2s", "--concurrency", "1"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("kodiak-dp starts");
        let admin_client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client");
        Sidecar { child, dir, admin_client }
    }

    /// kodiak-dp's work directory (bootstrap.json, Envoy's admin address).
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Everything kodiak-dp (and Envoy) printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kodiak-dp.log")).unwrap_or_default()
    }

    /// Envoy's admin address, once Envoy listens.
    pub fn admin_address(&self) -> Option<String> {
        let path: PathBuf = self.dir.path().join("work").join("admin-address.txt");
        std::fs::read_to_string(path).ok().map(|text| text.trim().to_owned()).filter(|text| !text.is_empty())
    }

    /// kodiak-dp's process id (Envoy is its child), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What Envoy's admin API answers to a GET of `path` (`/clusters`,
    /// `/stats?filter=...`), or `None` while it is not up. The sidecar's own
    /// client keeps its connection to Envoy, so polling it often stays cheap.
    pub async fn admin(&self, path: &str) -> Option<String> {
        let admin = self.admin_address()?;
        let response = self.admin_client.get(format!("http://{admin}{path}")).send().await.ok()?;
        response.text().await.ok()
    }

    /// The endpoints Envoy currently has for a cluster (from its admin API).
    pub async fn endpoints(&self, cluster: &str) -> Vec<String> {
        let Some(text) = self.admin("/clusters").await else { return Vec::new() };
        let prefix = format!("{cluster}::");
        let mut endpoints: Vec<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| rest.split_once("::cx_active::").map(|(endpoint, _)| endpoint.to_owned()))
            .collect();
        endpoints.sort();
        endpoints
    }

    /// Waits (up to `timeout`) for kodiak-dp to exit by itself.
    pub async fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("kodiak-dp is waited for"))
    }

    /// SIGTERM, then waits for kodiak-dp to drain Envoy and exit.
    pub async fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        match self.exit_within(Duration::from_secs(20)).await {
            Some(status) => status,
            None => panic!("kodiak-dp did not stop within 20s after SIGTERM; log:\n{}", self.log()),
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        // Envoy is kodiak-dp's child: ask kodiak-dp to stop it rather than
        // killing kodiak-dp and leaving Envoy behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal("INT");
            self.signal("INT");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The mesh a kodiak-dp command line serves: `--mesh`, else the dataplane
/// file's `mesh`, else `default`.
fn mesh_of(args: &[String]) -> String {
    let after = |flag: &str| args.iter().position(|arg| arg == flag).and_then(|i| args.get(i + 1));
    if let Some(mesh) = after("--mesh") {
        return mesh.clone();
    }
    after("--dataplane-file")
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| kodiak_api::parse_document(&text).ok())
        .and_then(|document| document["mesh"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned())
}
