//! A request path through two Kodiak sidecars, as the latency benchmarks
//! use it: a caller sidecar whose outbound reaches `backend`, and the
//! backend's sidecar in front of a test service, so a request crosses the
//! caller's outbound → the backend's inbound → the test service, all on
//! loopback.

use std::time::Duration;

use anyhow::Context;
use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, eventually, free_port, get};

/// How long a path may take to answer its first request.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Applies the Mesh `mesh` with mutual TLS from a built-in CA in STRICT mode.
pub async fn apply_strict_mtls_mesh(control_plane: &ControlPlane, mesh: &str) {
    let document = format!(
        "type: Mesh\nname: {mesh}\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    mode: STRICT\n"
    );
    control_plane.apply(&document).await;
}

/// The caller's outbound URL, kept alive with everything it needs.
pub struct SidecarPath {
    pub mesh: String,
    pub url: String,
    pub caller: Sidecar,
    pub backend: Sidecar,
    _service: TestService,
}

impl SidecarPath {
    /// Starts a backend (test service and sidecar) and a caller sidecar in
    /// `mesh` and waits until a request through both answers.
    pub async fn start(control_plane: &ControlPlane, mesh: &str) -> SidecarPath {
        let service = TestService::start(&format!("{mesh}-backend-1")).await;
        let backend = Sidecar::register(control_plane, &backend_dataplane(mesh, &service), Transport::Delta);
        let outbound = free_port();
        let caller = Sidecar::register(control_plane, &caller_dataplane(mesh, outbound), Transport::Delta);
        let url = format!("http://127.0.0.1:{outbound}/");
        eventually(&format!("{mesh}: a request through both sidecars is answered"), SETUP_TIMEOUT, || async {
            (get(&url).await.status == 200).then_some(())
        })
        .await;
        SidecarPath { mesh: mesh.to_owned(), url, caller, backend, _service: service }
    }

    /// TLS handshakes the caller's Envoy made toward the backend so far.
    pub async fn caller_tls_handshakes(&self) -> anyhow::Result<u64> {
        let stats =
            self.caller.admin("/stats?filter=ssl.handshake").await.context("the caller's Envoy admin answers")?;
        Ok(handshakes(&stats, "backend"))
    }

    /// The process ids of the caller's and the backend's Envoy.
    pub fn envoy_pids(&self) -> anyhow::Result<[u32; 2]> {
        Ok([envoy_of(&self.caller)?, envoy_of(&self.backend)?])
    }
}

/// The sum of `cluster.<cluster>.ssl.handshake` in Envoy's `/stats` text.
pub fn handshakes(stats: &str, cluster: &str) -> u64 {
    let prefix = format!("cluster.{cluster}.ssl.handshake");
    stats
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The Envoy a sidecar's kodiak-dp runs: its child named `envoy`.
fn envoy_of(sidecar: &Sidecar) -> anyhow::Result<u32> {
    let dp = sidecar.pid().context("kodiak-dp is running")?;
    crate::children(dp)
        .into_iter()
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "envoy"))
        .with_context(|| format!("kodiak-dp {dp} has no envoy child"))
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
