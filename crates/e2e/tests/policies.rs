//! Policies through real sidecars: a policy applied through the API changes
//! what a caller sees, as a user would check it.

use std::time::{Duration, Instant};

use kodiak_e2e::dataplanes::client;
use kodiak_e2e::policies::{CONVERGE, a_and_b, timed_get, until_fail_first_gets};
use kodiak_e2e::{ControlPlane, Reply, Sidecar, TestService, Transport, eventually, free_port, get};

#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_timeout_turns_a_slow_answer_into_a_504_after_the_configured_time() {
    let (control_plane, _b1, _sidecars, url) = a_and_b().await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let (status, _, _) = timed_get(&http, &format!("{url}/delay/2500"), &[]).await;
    assert_eq!(status, 200, "a slow answer within the default timeouts");

    control_plane
        .apply(
            "type: MeshTimeout
mesh: default
name: b-quick
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    default:
      http: {requestTimeout: 1s}
",
        )
        .await;
    let took = eventually("the timeout in effect", CONVERGE, || async {
        let (status, _, took) = timed_get(&http, &format!("{url}/delay/2500"), &[]).await;
        (status == 504).then_some(took)
    })
    .await;
    // Envoy's timers may fire a little early (a 999.8 ms 504 was seen); the
    // bound tells the 1s timeout from an immediate failure.
    assert!(took >= Duration::from_millis(900), "504 after {took:?}, well before the 1s timeout");
    assert!(took < Duration::from_millis(2500), "504 after {took:?}: the answer's own delay, not the timeout");
    let (status, _, _) = timed_get(&http, &format!("{url}/delay/200"), &[]).await;
    assert_eq!(status, 200, "a quick answer still passes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_retry_gets_the_answer_of_an_upstream_that_fails_at_first() {
    let (control_plane, _b1, _sidecars, url) = a_and_b().await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let retry = |retries: u32| {
        format!(
            "type: MeshRetry
mesh: default
name: b-retries
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: b}}
    default:
      http: {{numRetries: {retries}, retryOn: [\"503\"], backOff: {{baseInterval: 10ms, maxInterval: 50ms}}}}
"
        )
    };
    // Without retries, the first failure is what the caller gets.
    control_plane.apply(&retry(0)).await;
    until_fail_first_gets(&http, &url, 1, 503, "no retries").await;

    control_plane.apply(&retry(3)).await;
    let attempt = until_fail_first_gets(&http, &url, 2, 200, "three retries").await;
    assert_eq!(attempt.as_deref(), Some("3"), "answered on the third attempt");
    let (status, attempt, _) = timed_get(&http, &format!("{url}/fail-first/4?key=too-many"), &[]).await;
    assert_eq!((status, attempt.as_deref()), (503, Some("4")), "three retries, then the failure comes through");
}

/// A policy that changes only clusters reaches Envoy at once: an updated
/// cluster needs its endpoints again before Envoy uses it (within Envoy's
/// 15 s warming timeout, which this test must not wait for).
#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_wide_connection_timeout_reaches_the_callers_clusters() {
    let (control_plane, _b1, [a, _b], _url) = a_and_b().await;
    control_plane
        .apply(
            "type: MeshTimeout
mesh: default
name: connect-quickly
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 1250ms}
",
        )
        .await;
    eventually("the connect timeout in b's cluster", Duration::from_secs(10), || async {
        let dump = a.admin("/config_dump?resource=dynamic_active_clusters&name_regex=%5Eb%24").await?;
        dump.contains("\"connect_timeout\": \"1.250s\"").then_some(())
    })
    .await;
    let overview = control_plane.overview("default", "a-1").await;
    let status = &overview["dataplaneInsight"]["subscriptions"][0]["status"];
    assert_eq!(status["total"]["responsesRejected"], 0, "{status}");
    assert_eq!(status["cds"]["responsesSent"], status["cds"]["responsesAcknowledged"], "{status}");
}

/// A MeshProxyPatch whose result Envoy refuses: the sidecar NACKs it, the
/// Dataplane's insight carries Envoy's reason, and traffic goes on with the
/// last configuration Envoy accepted. A patch that does not fit the proxy
/// is reported as a policy problem and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_patch_envoy_refuses_is_reported_and_the_last_good_config_stays() {
    let (control_plane, _b1, _sidecars, url) = a_and_b().await;
    let patch = |name: &str, modification: &str| {
        format!(
            "type: MeshProxyPatch\nmesh: default\nname: {name}\nspec:\n  targetRef: {{kind: Dataplane, name: a-1}}\n  \
             default:\n    appendModifications:\n    - {modification}\n"
        )
    };
    control_plane
        .apply(&patch("zero-timeout", "cluster: {operation: Patch, match: {name: b}, value: 'connectTimeout: 0s'}"))
        .await;
    let nack = eventually("Envoy's NACK in the insight", CONVERGE, || async {
        let overview = control_plane.overview("default", "a-1").await;
        let nack = &overview["dataplaneInsight"]["subscriptions"][0]["status"]["cds"]["lastNack"];
        nack["error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(nack.contains("ConnectTimeout"), "{nack}");
    let expected = Reply { status: 200, instance: Some("b-1".into()) };
    assert_eq!(get(&format!("{url}/")).await, expected, "the last good configuration serves");

    control_plane.apply(&patch("zero-timeout", "cluster: {operation: Patch, match: {name: b}, jsonPatches: [{op: replace, path: /no/such/field, value: 1}]}")).await;
    let problems = eventually("the policy problem in the insight", CONVERGE, || async {
        let overview = control_plane.overview("default", "a-1").await;
        overview["dataplaneInsight"]["policyProblems"].as_array().cloned()
    })
    .await;
    assert!(
        problems[0].as_str().is_some_and(|p| p
            .starts_with("MeshProxyPatch zero-timeout: spec.default.appendModifications[0].cluster (Patch)")
            && p.contains("/no/such/field")),
        "{problems:?}"
    );
    // kodiakctl inspect dataplane shows it under MeshProxyPatch too.
    let path = ["meshes", "default", "dataplanes", "a-1", "_rules"];
    let rules = control_plane.client().get_path(&path, &[]).await.unwrap();
    let patch = rules["rules"].as_array().unwrap().iter().find(|rule| rule["type"] == "MeshProxyPatch").unwrap();
    assert_eq!(
        patch["warnings"],
        serde_json::json!([format!("not applied to the proxy: {}", problems[0].as_str().unwrap())])
    );
    assert_eq!(get(&format!("{url}/")).await, expected);
}

/// A Dataplane for `instance` serving `b` over HTTP with a `version` tag.
fn versioned_b(name: &str, version: &str, instance: &TestService) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  \
         - port: {port}\n    servicePort: {service_port}\n    \
         tags: {{kuma.io/service: b, kuma.io/protocol: http, version: {version}}}\n",
        port = free_port(),
        service_port = instance.http.port(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_http_route_sends_matching_requests_to_a_subset_of_instances() {
    let control_plane = ControlPlane::memory();
    let (v1, v2) = (TestService::start("b-v1").await, TestService::start("b-v2").await);
    let _b1 = Sidecar::register(&control_plane, &versioned_b("b-v1", "v1", &v1), Transport::Delta);
    let _b2 = Sidecar::register(&control_plane, &versioned_b("b-v2", "v2", &v2), Transport::Delta);
    let port = free_port();
    let _a = Sidecar::register(&control_plane, &client("a-1", "b", port, free_port()), Transport::Delta);
    let url = format!("http://127.0.0.1:{port}/");
    control_plane
        .apply(
            "type: MeshHTTPRoute
mesh: default
name: b-canary
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    rules:
    # A match with a path goes before one without: the canary rule names the
    # path too, and wins over the other by its header.
    - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-canary, value: 'yes'}]}]
      default: {backendRefs: [{kind: MeshServiceSubset, name: b, tags: {version: v2}}]}
    - matches: [{path: {type: PathPrefix, value: /}}]
      default: {backendRefs: [{kind: MeshServiceSubset, name: b, tags: {version: v1}}]}
",
        )
        .await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let instance = |canary: bool| {
        let (http, url) = (&http, &url);
        async move {
            let request = http.get(url.as_str());
            let request = if canary { request.header("x-canary", "yes") } else { request };
            let response = request.send().await.ok()?;
            let instance = response.headers().get("x-kodiak-instance")?.to_str().ok()?.to_owned();
            (response.status() == 200).then_some(instance)
        }
    };
    eventually("canary requests reach v2", CONVERGE, || async { (instance(true).await? == "b-v2").then_some(()) })
        .await;
    eventually("other requests reach only v1", CONVERGE, || async { (instance(false).await? == "b-v1").then_some(()) })
        .await;
    for _ in 0..20 {
        assert_eq!(instance(false).await.as_deref(), Some("b-v1"));
        assert_eq!(instance(true).await.as_deref(), Some("b-v2"));
    }
}

/// A MeshAccessLog with a TCP backend: the caller's Envoy hands each entry
/// to kodiak-dp (through the pipe it named when it asked for its
/// bootstrap), which sends it as one line to the collector's address.
#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_access_log_backend_receives_a_line_per_request() {
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = collector.local_addr().unwrap();
    let (control_plane, _b1, _sidecars, url) = a_and_b().await;
    control_plane
        .apply(&format!(
            "type: MeshAccessLog
mesh: default
name: to-collector
spec:
  targetRef: {{kind: Dataplane, name: a-1}}
  to:
  - targetRef: {{kind: MeshService, name: b}}
    default:
      backends:
      - type: Tcp
        tcp:
          address: {address}
          format: {{type: Plain, plain: '%KUMA_MESH% %KUMA_DESTINATION_SERVICE% %REQ(:PATH)% %RESPONSE_CODE%'}}
"
        ))
        .await;
    let (lines, mut sink) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let (stream, _) = collector.accept().await.unwrap();
        let mut stream = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = stream.next_line().await {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Requests until the policy is in place and the first entry arrives.
    let deadline = Instant::now() + CONVERGE;
    let line = loop {
        assert_eq!(get(&format!("{url}/logged")).await.status, 200);
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(500), sink.recv()).await {
            break line;
        }
        assert!(Instant::now() < deadline, "no access-log line at the collector within {CONVERGE:?}");
    };
    assert_eq!(line, "default b /logged 200", "the entry in the policy's format");
    reader.abort();
}
