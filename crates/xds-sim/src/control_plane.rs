//! The control plane under test: a `kodiak-cp` process the simulator
//! starts (on loopback ports of its own, in a temporary data directory) or
//! one already running; its REST API; its memory and CPU time from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which store a started control plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    Sqlite,
    Memory,
}

pub struct ControlPlane {
    pub dp_server_url: String,
    /// The certificate the dp-server presents, when it speaks TLS.
    pub ca_pem: Option<String>,
    pub pid: Option<u32>,
    pub rest: Rest,
    child: Option<Child>,
    _data_dir: Option<tempfile::TempDir>,
}

/// How a started control plane is set up.
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: PathBuf,
    pub store: Store,
    pub dp_tls: bool,
    /// Extra `KODIAK_*` settings, `NAME=value`.
    pub env: Vec<(String, String)>,
}

impl ControlPlane {
    /// Starts `kodiak-cp` and waits until its REST API answers.
    pub async fn start(launch: &Launch) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("kodiak-xds-sim-").tempdir()?;
        let [api, https, diagnostics, dp] = free_ports()?;
        let log = std::fs::File::create(data_dir.path().join("kodiak-cp.log"))?;
        let store = match launch.store {
            Store::Sqlite => "sqlite",
            Store::Memory => "memory",
        };
        let mut command = Command::new(&launch.binary);
        command
            .arg("run")
            .env("KODIAK_STORE_TYPE", store)
            .env("KODIAK_STORE_DATA_DIR", data_dir.path())
            .env("KODIAK_API_SERVER_HTTP_PORT", api.to_string())
            .env("KODIAK_API_SERVER_HTTPS_PORT", https.to_string())
            .env("KODIAK_DIAGNOSTICS_SERVER_PORT", diagnostics.to_string())
            .env("KODIAK_DP_SERVER_PORT", dp.to_string())
            .env("KODIAK_DP_SERVER_TLS_ENABLED", launch.dp_tls.to_string())
            .env("KODIAK_LOG_LEVEL", "warn");
        for (name, value) in &launch.env {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", launch.binary.display()))?;
        let pid = child.id();
        let scheme = if launch.dp_tls { "https" } else { "http" };
        let mut control_plane = Self {
            dp_server_url: format!("{scheme}://127.0.0.1:{dp}"),
            ca_pem: None,
            pid,
            rest: Rest::new(&format!("http://127.0.0.1:{api}")),
            child: Some(child),
            _data_dir: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while control_plane.rest.http.get(&control_plane.rest.url).send().await.is_err() {
            if let Some(status) = control_plane.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(data_dir.path().join("kodiak-cp.log")).unwrap_or_default();
                bail!("kodiak-cp exited ({status}) before it answered:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("kodiak-cp did not answer on {} within {START_TIMEOUT:?}", control_plane.rest.url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if launch.dp_tls {
            let certificate = data_dir.path().join("kodiak-cp.crt");
            control_plane.ca_pem = Some(
                std::fs::read_to_string(&certificate)
                    .with_context(|| format!("cannot read the dp-server's certificate {}", certificate.display()))?,
            );
        }
        control_plane._data_dir = Some(data_dir);
        Ok(control_plane)
    }

    /// One already running, reached at these URLs; `pid` lets its memory and CPU time be read.
    pub fn running(
        api_url: &str,
        dp_server_url: &str,
        ca_cert_file: Option<&Path>,
        pid: Option<u32>,
    ) -> anyhow::Result<Self> {
        let ca_pem = ca_cert_file
            .map(|path| std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display())))
            .transpose()?;
        Ok(Self {
            dp_server_url: dp_server_url.trim_end_matches('/').to_owned(),
            ca_pem,
            pid,
            rest: Rest::new(api_url),
            child: None,
            _data_dir: None,
        })
    }

    /// Stops a started control plane.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Its resident memory and CPU time so far, when its pid is known.
    pub fn usage(&self) -> Option<Usage> {
        Usage::of(self.pid?).ok()
    }
}

/// The REST API (cheap to clone).
#[derive(Clone)]
pub struct Rest {
    url: String,
    http: reqwest::Client,
}

impl Rest {
    fn new(url: &str) -> Self {
        Self { url: url.trim_end_matches('/').to_owned(), http: reqwest::Client::new() }
    }

    /// `PUT`s a resource document (JSON) at its REST path.
    pub async fn put(&self, document: &Value) -> anyhow::Result<()> {
        let path = resource_path(document)?;
        let response = self.http.put(format!("{}{path}", self.url)).json(document).send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("PUT {path} answered {status}: {}", response.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// `GET`s a JSON document.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}{path}", self.url)).send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("GET {path} answered {status}: {}", response.text().await.unwrap_or_default());
        }
        Ok(response.json().await?)
    }

    /// A dataplane token for every Dataplane of `mesh` (from loopback, which is admin).
    pub async fn dataplane_token(&self, mesh: &str) -> anyhow::Result<String> {
        let url = format!("{}/tokens/dataplane", self.url);
        let response = self.http.post(url).json(&serde_json::json!({"mesh": mesh})).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("the control plane refused a dataplane token ({status}): {text}");
        }
        Ok(text)
    }
}

/// A process's memory and CPU time, read from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub cpu: Duration,
    pub at: Instant,
}

impl Usage {
    pub fn of(pid: u32) -> anyhow::Result<Usage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |field: &str| -> anyhow::Result<u64> {
            let line = status.lines().find(|line| line.starts_with(field)).with_context(|| format!("no {field}"))?;
            let number = line[field.len()..].trim().trim_end_matches("kB").trim();
            Ok(number.parse::<u64>()? * 1024)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command (which may hold spaces) start at the state, field 3.
        let after = stat.rsplit_once(')').context("unreadable /proc/<pid>/stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11).context("no utime")?.parse::<u64>()? + fields.get(12).context("no stime")?.parse::<u64>()?;
        let per_second = rustix::param::clock_ticks_per_second();
        Ok(Usage {
            rss_bytes: kib("VmRSS:")?,
            peak_rss_bytes: kib("VmHWM:")?,
            cpu: Duration::from_secs_f64(ticks as f64 / per_second as f64),
            at: Instant::now(),
        })
    }

    /// CPU time between `before` and this reading, as a share of one core.
    pub fn cpu_share_since(&self, before: &Usage) -> f64 {
        let wall = self.at.duration_since(before.at).as_secs_f64();
        if wall <= 0.0 { 0.0 } else { (self.cpu.saturating_sub(before.cpu)).as_secs_f64() / wall }
    }
}

/// `/meshes/{mesh}/{plural}/{name}` for a mesh-scoped resource, `/meshes/{name}` for a Mesh.
fn resource_path(document: &Value) -> anyhow::Result<String> {
    let text = |field: &str| document.get(field).and_then(Value::as_str);
    let kind = text("type").context("the document has no type")?;
    let name = text("name").context("the document has no name")?;
    if kind == "Mesh" {
        return Ok(format!("/meshes/{name}"));
    }
    let mesh = text("mesh").context("the document has no mesh")?;
    let plural = format!("{}s", kind.to_lowercase());
    Ok(format!("/meshes/{mesh}/{plural}/{name}"))
}

fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}
