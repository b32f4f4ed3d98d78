//! What the policy end-to-end tests share: a small mesh to shape, requests
//! whose timing and retry attempt they read, and manifests they start from.

use std::time::{Duration, Instant};

use crate::dataplanes::{backend, client};
use crate::{ControlPlane, Reply, Sidecar, TestService, Transport, eventually, free_port, get};

/// How long a change may take to reach the sidecars before a test fails.
pub const CONVERGE: Duration = Duration::from_secs(20);

/// Turns off, toward `b`, the retries every mesh starts with, so a failed
/// request reaches the caller instead of being retried.
pub const NO_RETRIES_TOWARD_B: &str = "type: MeshRetry
mesh: default
name: b-no-retries
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    default:
      http: {numRetries: 0}
";

/// A mesh with one instance of `b` and a caller `a-1` that reaches it;
/// returns the control plane, `b`'s application, the sidecars and the
/// caller's HTTP outbound to `b`.
pub async fn a_and_b() -> (ControlPlane, TestService, [Sidecar; 2], String) {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    let b = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), Transport::Delta);
    let port = free_port();
    let a = Sidecar::register(&control_plane, &client("a-1", "b", port, free_port()), Transport::Delta);
    let url = format!("http://127.0.0.1:{port}");
    let expected = Reply { status: 200, instance: Some("b-1".into()) };
    eventually("a reaches b", CONVERGE, || async { (get(&format!("{url}/")).await == expected).then_some(()) }).await;
    (control_plane, b1, [a, b], url)
}

/// A GET with `headers`: its status (0 when none came), the attempt header
/// of the test service's `/fail-first`, and how long it took.
pub async fn timed_get(http: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let request = headers.iter().fold(http.get(url), |request, (name, value)| request.header(*name, *value));
    match request.send().await {
        Ok(response) => {
            let attempt = response.headers().get("x-kodiak-attempt").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (response.status().as_u16(), attempt, started.elapsed())
        }
        Err(_) => (0, None, started.elapsed()),
    }
}

/// Sends `GET {url}/fail-first/{failures}`, each time with a new key (the
/// test service fails the first `failures` attempts of each key), until
/// one gets `status`: the retries a policy gives are in effect. Returns the
/// attempt that answered.
pub async fn until_fail_first_gets(
    http: &reqwest::Client,
    url: &str,
    failures: u32,
    status: u16,
    what: &str,
) -> Option<String> {
    let prefix = what.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let mut key = 0;
    eventually(what, CONVERGE, || {
        key += 1;
        let target = format!("{url}/fail-first/{failures}?key={prefix}-{key}");
        async move {
            let (got, attempt, _) = timed_get(http, &target, &[]).await;
            (got == status).then_some(attempt)
        }
    })
    .await
}
