//! Policies that name a MeshHTTPRoute, through real sidecars: they change
//! the requests of that route's rules only, and the caller's other requests
//! toward the same service keep the service's conf.

use std::time::Duration;

use kodiak_e2e::eventually;
use kodiak_e2e::policies::{CONVERGE, NO_RETRIES_TOWARD_B, a_and_b, timed_get, until_fail_first_gets};

/// A MeshHTTPRoute `name` toward b with one rule sending matching requests
/// to b itself.
fn route(name: &str, matches: &str) -> String {
    format!(
        "type: MeshHTTPRoute
mesh: default
name: {name}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: b}}
    rules:
    - matches: [{matches}]
      default: {{backendRefs: [{{kind: MeshService, name: b}}]}}
"
    )
}

/// `slow-path` takes /delay requests and `patient` those of them with
/// `x-patient: yes`; a MeshTimeout gives b's requests 4s and slow-path's
/// 1s: a 2 s answer is a 504 on slow-path (a 0.6 s one is not), and
/// arrives through patient.
#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_timeout_naming_a_route_times_out_that_routes_requests_only() {
    let (control_plane, _b1, _sidecars, url) = a_and_b().await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    control_plane.apply(&route("slow-path", "{path: {type: PathPrefix, value: /delay}}")).await;
    control_plane
        .apply(&route(
            "patient",
            "{path: {type: PathPrefix, value: /delay}, headers: [{name: x-patient, value: 'yes'}]}",
        ))
        .await;
    control_plane
        .apply(
            "type: MeshTimeout
mesh: default
name: b-timeouts
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    default:
      http: {requestTimeout: 4s}
  - targetRef: {kind: MeshHTTPRoute, name: slow-path}
    default:
      http: {requestTimeout: 1s}
",
        )
        .await;
    // A 504 for a 2 s answer under b's 4 s timeout: slow-path's is shorter.
    eventually("slow-path's timeout in effect", CONVERGE, || async {
        let (status, ..) = timed_get(&http, &format!("{url}/delay/2000"), &[]).await;
        (status == 504).then_some(())
    })
    .await;
    let (status, ..) = timed_get(&http, &format!("{url}/delay/600"), &[]).await;
    assert_eq!(status, 200, "an answer well within slow-path's 1s passes");
    // Every route comes in one route configuration: patient's is there too.
    let (status, ..) = timed_get(&http, &format!("{url}/delay/2000"), &[("x-patient", "yes")]).await;
    assert_eq!(status, 200, "patient's requests keep b's 4s timeout");
    let (status, ..) = timed_get(&http, &format!("{url}/status/200"), &[]).await;
    assert_eq!(status, 200, "paths no route names reach b");
}

/// A MeshRetry whose top-level targetRef is the route `retried` (for
/// `/fail-first/2`): its requests are retried, while b's others, which a
/// MeshRetry toward b gives no retries, get the first failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_retry_targeting_a_route_retries_that_routes_requests_only() {
    let (control_plane, _b1, _sidecars, url) = a_and_b().await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // First no retries toward b (the mesh's default MeshRetry has some), in
    // effect before the route comes: until the route's own MeshRetry
    // arrives, its requests get none either.
    control_plane.apply(NO_RETRIES_TOWARD_B).await;
    let mut key = 0;
    eventually("no retries toward b", CONVERGE, || {
        key += 1;
        let target = format!("{url}/fail-first/2?key=off-{key}");
        let http = &http;
        async move { (timed_get(http, &target, &[]).await.0 == 503).then_some(()) }
    })
    .await;
    control_plane.apply(&route("retried", "{path: {type: Exact, value: /fail-first/2}}")).await;
    control_plane
        .apply(
            "type: MeshRetry
mesh: default
name: retried-three-times
spec:
  targetRef: {kind: MeshHTTPRoute, name: retried}
  to:
  - targetRef: {kind: Mesh}
    default:
      http: {numRetries: 3, retryOn: [\"503\"], backOff: {baseInterval: 10ms, maxInterval: 50ms}}
",
        )
        .await;
    let attempt = until_fail_first_gets(&http, &url, 2, 200, "the route's retries in effect").await;
    assert_eq!(attempt.as_deref(), Some("3"), "answered on the third attempt");
    let (status, attempt, _) = timed_get(&http, &format!("{url}/fail-first/1?key=catch-all"), &[]).await;
    assert_eq!((status, attempt.as_deref()), (503, Some("1")), "no retries outside the route");
}
