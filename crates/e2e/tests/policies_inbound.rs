//! MeshFaultInjection, MeshRateLimit and MeshAccessLog through real
//! sidecars: what the callers of a service see, and what lands in access-log
//! files, once a policy applied through the API is in effect.
//!
//! A policy is in effect once the sidecar's Envoy shows it on the listener
//! in its config dump and has no listener or filter chain warming or
//! draining ([`until_listener`]): the connections of the older configuration
//! are closed by then, so every request goes through the new one (each
//! phase also uses a new HTTP client). Where counting matters
//! (rate limits, access-log lines), the policy is applied before the
//! sidecars start and no request is sent before that point, so nothing is
//! counted or logged under an older configuration.

use std::time::{Duration, Instant};

use kodiak_e2e::dataplanes::{backend, client};
use kodiak_e2e::policies::CONVERGE;
use kodiak_e2e::{ControlPlane, Reply, Sidecar, TestService, Transport, eventually, free_port, get, tcp_greeting};
use serde_json::Value;

/// The port of the `index`th inbound of a Dataplane document.
fn inbound_port(dataplane: &str, index: usize) -> u16 {
    let document = kodiak_api::parse_document(dataplane).expect("a Dataplane document");
    let port = document["networking"]["inbound"][index]["port"].as_u64();
    port.and_then(|port| u16::try_from(port).ok()).expect("the inbound has a port")
}

/// Envoy's name of the listener of an inbound or outbound on 127.0.0.1.
fn listener_name(direction: &str, port: u16) -> String {
    format!("{direction}:127.0.0.1:{port}")
}

/// A caller `name` of service `service` (with `extra_tags`, e.g.
/// `", team: blue"`) that calls `b` over HTTP on 127.0.0.1:`port`. Its
/// inbound gives it the tags callees know it by; nothing calls it.
fn caller(name: &str, service: &str, extra_tags: &str, port: u16) -> String {
    format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound}
    servicePort: {service_port}
    tags: {{kuma.io/service: {service}, kuma.io/protocol: http{extra_tags}}}
  outbound:
  - port: {port}
    tags: {{kuma.io/service: b}}
",
        inbound = free_port(),
        service_port = free_port(),
    )
}

/// Whether `sidecar`'s Envoy has no listener warming or draining, and no
/// filter chain draining: a changed listener has replaced the old one and
/// the connections of the old one are closed.
async fn listeners_settled(sidecar: &Sidecar) -> bool {
    let Some(stats) = sidecar.admin("/stats?filter=listener_manager.total_").await else { return false };
    ["total_listeners_warming", "total_listeners_draining", "total_filter_chains_draining"]
        .iter()
        .all(|gauge| stats.lines().any(|line| line == format!("listener_manager.{gauge}: 0")))
}

/// The active configuration of `sidecar`'s listener `name` from Envoy's
/// config dump (compact JSON), while it is neither warming nor draining.
async fn active_listener(sidecar: &Sidecar, name: &str) -> Option<String> {
    let dump: Value = serde_json::from_str(&sidecar.admin("/config_dump?resource=dynamic_listeners").await?).ok()?;
    let listener = dump["configs"].as_array()?.iter().find(|listener| listener["name"] == name)?;
    if listener.get("warming_state").is_some() || listener.get("draining_state").is_some() {
        return None;
    }
    let active = &listener["active_state"]["listener"];
    (!active.is_null()).then(|| active.to_string())
}

/// Waits until `sidecar`'s listener `name` is active, its configuration
/// (compact JSON, proto field names) satisfies `check`, and every listener
/// of the sidecar has settled ([`listeners_settled`]).
async fn until_listener(sidecar: &Sidecar, name: &str, what: &str, check: impl Fn(&str) -> bool) {
    let check = &check;
    eventually(what, CONVERGE, || async move {
        let listener = active_listener(sidecar, name).await?;
        (check(&listener) && listeners_settled(sidecar).await).then_some(())
    })
    .await;
}

/// Waits until `caller` has an endpoint for `service` and its listener on
/// `port` is active and settled, without sending anything through it.
async fn until_caller_ready(caller: &Sidecar, service: &str, port: u16) {
    let what = format!("an endpoint of {service} at the caller");
    eventually(&what, CONVERGE, || async { (!caller.endpoints(service).await.is_empty()).then_some(()) }).await;
    until_listener(caller, &listener_name("outbound", port), "the caller's outbound", |_| true).await;
}

/// A client of its own, so no connection made before a change is reused.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// A GET's status, the instance that answered (`x-kodiak-instance`), the
/// response headers and body, and how long it took; when it failed,
/// status 0 with the error in place of the instance.
async fn request(http: &reqwest::Client, url: &str) -> (Reply, reqwest::header::HeaderMap, String, Duration) {
    let started = Instant::now();
    match http.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let instance = headers.get("x-kodiak-instance").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response.text().await.unwrap_or_default();
            (Reply { status, instance }, headers, body, started.elapsed())
        }
        Err(error) => (
            Reply { status: 0, instance: Some(error.to_string()) },
            Default::default(),
            String::new(),
            started.elapsed(),
        ),
    }
}

fn served_by_b() -> Reply {
    Reply { status: 200, instance: Some("b-1".into()) }
}

/// A reply Envoy made itself with `status` (the application never saw the request).
fn from_envoy(status: u16) -> Reply {
    Reply { status, instance: None }
}

// ---- MeshFaultInjection ----------------------------------------------------

/// A MeshFaultInjection on `b`'s inbound for every caller, of `faults`
/// (the YAML flow list of its `http` faults).
fn faults_for_everyone(faults: &str) -> String {
    format!(
        "type: MeshFaultInjection
mesh: default
name: b-faults
spec:
  targetRef: {{kind: MeshService, name: b}}
  from:
  - targetRef: {{kind: Mesh}}
    default:
      http: {faults}
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_injection_aborts_its_share_of_requests_then_delays_every_one() {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    let b_dataplane = backend("b-1", "b", &b1);
    let b_inbound = listener_name("inbound", inbound_port(&b_dataplane, 0));
    let b = Sidecar::register(&control_plane, &b_dataplane, Transport::Delta);
    let port = free_port();
    let _a = Sidecar::register(&control_plane, &client("a-1", "b", port, free_port()), Transport::Delta);
    let url = format!("http://127.0.0.1:{port}/");
    eventually("a reaches b", CONVERGE, || async { (get(&url).await == served_by_b()).then_some(()) }).await;

    control_plane.apply(&faults_for_everyone("[{abort: {httpStatus: 418, percentage: 50}}]")).await;
    until_listener(&b, &b_inbound, "the abort on b's inbound", |listener| listener.contains(r#""http_status":418"#))
        .await;
    let http = fresh_client();
    let mut aborted = 0;
    for i in 0..400 {
        let (reply, ..) = request(&http, &url).await;
        match reply {
            reply if reply == from_envoy(418) => aborted += 1,
            reply => assert_eq!(reply, served_by_b(), "request {i}: neither aborted nor served"),
        }
    }
    // Each request is aborted with probability 1/2, independently: the count
    // is binomial(400, 1/2), 200 on average with a standard deviation of
    // sqrt(400 / 4) = 10. 140..=260 is 6 standard deviations either side:
    // a correct proxy falls outside about once in 500 million runs, while
    // no abort, every request aborted, or a 1-in-10 share all fall outside.
    assert!((140..=260).contains(&aborted), "{aborted} of 400 requests aborted, expected about 200");

    control_plane.apply(&faults_for_everyone("[{delay: {value: 1s, percentage: 100}}]")).await;
    until_listener(&b, &b_inbound, "the delay on b's inbound", |listener| {
        listener.contains(r#""fixed_delay":"1s""#) && !listener.contains("http_status")
    })
    .await;
    let http = fresh_client();
    for i in 0..3 {
        let (reply, _, _, took) = request(&http, &url).await;
        assert_eq!(reply, served_by_b(), "request {i}: delayed, then served");
        // Envoy's timers may fire up to a millisecond early.
        assert!(took >= Duration::from_millis(995), "request {i} took {took:?}, less than the 1s delay");
    }
}

/// A fault for the callers of one service (then of one tag) only: callers
/// are known by the tags header their own sidecars add, which the callee's
/// sidecar removes before the application sees the request.
#[tokio::test(flavor = "multi_thread")]
async fn a_fault_injection_for_some_callers_leaves_the_others_alone() {
    let control_plane = ControlPlane::memory();
    let faults_from = |source: &str| {
        format!(
            "type: MeshFaultInjection
mesh: default
name: b-faults
spec:
  targetRef: {{kind: MeshService, name: b}}
  from:
  - targetRef: {source}
    default:
      http: [{{abort: {{httpStatus: 418, percentage: 100}}}}]
"
        )
    };
    // Applied before the sidecars start: the callers' first requests already
    // carry their tags, and no connection predates the fault.
    control_plane.apply(&faults_from("{kind: MeshService, name: a}")).await;
    let b1 = TestService::start("b-1").await;
    let b_dataplane = backend("b-1", "b", &b1);
    let b_inbound = listener_name("inbound", inbound_port(&b_dataplane, 0));
    let b = Sidecar::register(&control_plane, &b_dataplane, Transport::Delta);
    let (a_port, c_port) = (free_port(), free_port());
    let a = Sidecar::register(&control_plane, &caller("a-1", "a", ", team: blue", a_port), Transport::Delta);
    let c = Sidecar::register(&control_plane, &caller("c-1", "c", ", team: red", c_port), Transport::Delta);
    until_listener(&b, &b_inbound, "the fault for a on b's inbound", |listener| {
        listener.contains("x-kuma-tags") && listener.contains(r#""http_status":418"#)
    })
    .await;
    for (sidecar, port) in [(&a, a_port), (&c, c_port)] {
        until_caller_ready(sidecar, "b", port).await;
        let outbound = listener_name("outbound", port);
        until_listener(sidecar, &outbound, "the tags header on the caller's outbound", |listener| {
            listener.contains("x-kuma-tags")
        })
        .await;
    }
    let (a_url, c_url) = (format!("http://127.0.0.1:{a_port}/"), format!("http://127.0.0.1:{c_port}/"));
    let http = fresh_client();
    for i in 0..10 {
        assert_eq!(request(&http, &a_url).await.0, from_envoy(418), "a's request {i}");
        let (reply, _, body, _) = request(&http, &c_url).await;
        assert_eq!(reply, served_by_b(), "c's request {i}");
        // The test service echoes the request headers it received.
        let echo: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(echo["headers"].is_object(), "{echo}");
        assert_eq!(echo["headers"].get("x-kuma-tags"), None, "the application got the callers' tags: {echo}");
    }

    // Now the callers of team red: c, not a.
    control_plane.apply(&faults_from("{kind: MeshSubset, tags: {team: red}}")).await;
    until_listener(&b, &b_inbound, "the fault for team red on b's inbound", |listener| {
        listener.contains("&team=") && !listener.contains("service=")
    })
    .await;
    let http = fresh_client();
    for i in 0..10 {
        assert_eq!(request(&http, &a_url).await.0, served_by_b(), "a's request {i}");
        assert_eq!(request(&http, &c_url).await.0, from_envoy(418), "c's request {i}");
    }
}

// ---- MeshRateLimit ---------------------------------------------------------

/// A MeshRateLimit on the inbound of `service` for every caller, of the
/// `local` conf (YAML flow mapping).
fn rate_limit(service: &str, local: &str) -> String {
    format!(
        "type: MeshRateLimit
mesh: default
name: {service}-limit
spec:
  targetRef: {{kind: MeshService, name: {service}}}
  from:
  - targetRef: {{kind: Mesh}}
    default:
      local: {local}
"
    )
}

/// Envoy's token buckets refill continuously (`num` tokens spread over
/// `interval`) and start full: with 5 requests per 10 s, a token comes back
/// every 2 s, so of 6 requests sent within that time the 6th is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_refuses_requests_past_the_limit() {
    let control_plane = ControlPlane::memory();
    // Before the sidecars start: every request the test sends is counted
    // under this limit, and nothing else is.
    control_plane
        .apply(&rate_limit(
            "b",
            "{http: {requestRate: {num: 5, interval: 10s}, onRateLimit: {headers: {
                set: [{name: x-kodiak-limited, value: 'yes'}], add: [{name: x-kodiak-why, value: busy}]}}}}",
        ))
        .await;
    let b1 = TestService::start("b-1").await;
    let b_dataplane = backend("b-1", "b", &b1);
    let b_inbound = listener_name("inbound", inbound_port(&b_dataplane, 0));
    let b = Sidecar::register(&control_plane, &b_dataplane, Transport::Delta);
    let port = free_port();
    let a = Sidecar::register(&control_plane, &client("a-1", "b", port, free_port()), Transport::Delta);
    until_listener(&b, &b_inbound, "the limit on b's inbound", |listener| listener.contains("local_ratelimit")).await;
    until_caller_ready(&a, "b", port).await;

    let url = format!("http://127.0.0.1:{port}/");
    let http = fresh_client();
    for i in 1..=5 {
        let (reply, headers, ..) = request(&http, &url).await;
        assert_eq!(reply, served_by_b(), "request {i} of 5");
        assert_eq!(headers.get("x-kodiak-limited"), None, "request {i} of 5");
    }
    let (reply, headers, ..) = request(&http, &url).await;
    assert_eq!(reply, from_envoy(429), "the 6th request");
    assert_eq!(headers.get("x-kodiak-limited").map(|v| v.as_bytes()), Some(&b"yes"[..]), "{headers:?}");
    assert_eq!(headers.get("x-kodiak-why").map(|v| v.as_bytes()), Some(&b"busy"[..]), "{headers:?}");

    // A configured status replaces 429. The changed filter chain starts
    // with a full bucket of its own: one request per minute.
    control_plane
        .apply(&rate_limit(
            "b",
            "{http: {requestRate: {num: 1, interval: 1m}, onRateLimit: {status: 503, headers: {
                set: [{name: x-kodiak-limited, value: 'again'}]}}}}",
        ))
        .await;
    until_listener(&b, &b_inbound, "the new limit on b's inbound", |listener| listener.contains("ServiceUnavailable"))
        .await;
    let http = fresh_client();
    assert_eq!(request(&http, &url).await.0, served_by_b(), "the first request of the minute");
    let (reply, headers, ..) = request(&http, &url).await;
    assert_eq!(reply, from_envoy(503), "the second request of the minute");
    assert_eq!(headers.get("x-kodiak-limited").map(|v| v.as_bytes()), Some(&b"again"[..]), "{headers:?}");
}

/// 2 connections per 10 s: a token comes back every 5 s, so the 3rd and 4th
/// connections, made at once, are closed before reaching the service.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_rate_limit_closes_connections_past_the_limit() {
    let control_plane = ControlPlane::memory();
    control_plane.apply(&rate_limit("b-tcp", "{tcp: {connectionRate: {num: 2, interval: 10s}}}")).await;
    let b1 = TestService::start("b-1").await;
    let b_dataplane = backend("b-1", "b", &b1);
    let b_tcp_inbound = listener_name("inbound", inbound_port(&b_dataplane, 1));
    let b = Sidecar::register(&control_plane, &b_dataplane, Transport::Delta);
    let (http_port, tcp_port) = (free_port(), free_port());
    let a = Sidecar::register(&control_plane, &client("a-1", "b", http_port, tcp_port), Transport::Delta);
    until_listener(&b, &b_tcp_inbound, "the limit on b's TCP inbound", |listener| listener.contains("tcp_rate_limit"))
        .await;
    until_caller_ready(&a, "b-tcp", tcp_port).await;

    let address = format!("127.0.0.1:{tcp_port}");
    for i in 1..=2 {
        assert_eq!(tcp_greeting(&address).await.expect("a greeting"), "b-1", "connection {i} of 2");
    }
    for i in 3..=4 {
        let refused = tcp_greeting(&address).await;
        assert!(refused.is_err(), "connection {i} past the limit was served: {refused:?}");
    }
    // The limit is the TCP inbound's only: b's HTTP inbound serves on.
    until_caller_ready(&a, "b", http_port).await;
    let url = format!("http://127.0.0.1:{http_port}/");
    let http = fresh_client();
    for i in 0..5 {
        assert_eq!(request(&http, &url).await.0, served_by_b(), "HTTP request {i}");
    }
}

// ---- MeshAccessLog ---------------------------------------------------------

/// The lines of `path` once it has at least `count` (kodiak-dp has Envoy
/// flush access-log files every second; Envoy's own default is 10 s, which
/// the 30 s bound covers too).
async fn log_lines(path: &std::path::Path, count: usize) -> Vec<String> {
    let what = format!("{count} lines in {}", path.display());
    eventually(&what, Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= count).then_some(lines)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn access_logs_record_each_request_on_the_callers_outbound_and_the_inbound() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = |name: &str| dir.path().join(name);
    let control_plane = ControlPlane::memory();
    // Before the sidecars start: every request is logged, under these formats.
    control_plane
        .apply(&format!(
            "type: MeshAccessLog
mesh: default
name: a-to-b
spec:
  targetRef: {{kind: MeshService, name: a}}
  to:
  - targetRef: {{kind: MeshService, name: b}}
    default:
      backends:
      - type: File
        file: {{path: {out_default}}}
      - type: File
        file:
          path: {out_plain}
          format:
            type: Plain
            plain: '%START_TIME% %KUMA_SOURCE_SERVICE% %KUMA_DESTINATION_SERVICE% %RESPONSE_CODE% %REQ(:PATH)%'
",
            out_default = file("out-default.log").display(),
            out_plain = file("out-plain.log").display(),
        ))
        .await;
    control_plane
        .apply(&format!(
            "type: MeshAccessLog
mesh: default
name: b-inbound
spec:
  targetRef: {{kind: MeshService, name: b}}
  from:
  - targetRef: {{kind: Mesh}}
    default:
      backends:
      - type: File
        file: {{path: {in_default}}}
      - type: File
        file:
          path: {in_json}
          format:
            type: Json
            json:
            - {{key: source, value: '%KUMA_SOURCE_SERVICE%'}}
            - {{key: destination, value: '%KUMA_DESTINATION_SERVICE%'}}
            - {{key: direction, value: '%KUMA_TRAFFIC_DIRECTION%'}}
            - {{key: method, value: '%REQ(:METHOD)%'}}
            - {{key: path, value: '%REQ(:PATH)%'}}
            - {{key: status, value: '%RESPONSE_CODE%'}}
",
            in_default = file("in-default.log").display(),
            in_json = file("in-json.log").display(),
        ))
        .await;
    let b1 = TestService::start("b-1").await;
    let b_dataplane = backend("b-1", "b", &b1);
    let b_port = inbound_port(&b_dataplane, 0);
    let b = Sidecar::register(&control_plane, &b_dataplane, Transport::Delta);
    let port = free_port();
    let a = Sidecar::register(&control_plane, &caller("a-1", "a", "", port), Transport::Delta);
    until_listener(&b, &listener_name("inbound", b_port), "the access logs on b's inbound", |listener| {
        listener.contains("in-default.log") && listener.contains("in-json.log")
    })
    .await;
    until_caller_ready(&a, "b", port).await;
    until_listener(&a, &listener_name("outbound", port), "the access logs on a's outbound", |listener| {
        listener.contains("out-default.log") && listener.contains("out-plain.log")
    })
    .await;

    let http = fresh_client();
    let ok = format!("http://127.0.0.1:{port}/access-log/ok?n=1");
    assert_eq!(request(&http, &ok).await.0, served_by_b());
    let teapot = format!("http://127.0.0.1:{port}/status/418");
    assert_eq!(request(&http, &teapot).await.0, Reply { status: 418, instance: Some("b-1".into()) });
    let requests = [("/access-log/ok?n=1", 200), ("/status/418", 418)];

    // The caller's outbound: a (its first service) calls b.
    let plain = log_lines(&file("out-plain.log"), 2).await;
    assert_eq!(plain.len(), 2, "{plain:?}");
    for (line, (path, status)) in plain.iter().zip(requests) {
        let (start, rest) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert_eq!(rest, format!("a b {status} {path}"), "{line}");
        // %START_TIME%: 2025-06-01T12:34:56.789Z
        let looks_like_time =
            start.len() >= 20 && start[..4].bytes().all(|b| b.is_ascii_digit()) && start.contains('T');
        assert!(looks_like_time, "start time {start:?} in {line}");
    }
    let default = log_lines(&file("out-default.log"), 2).await;
    assert_eq!(default.len(), 2, "{default:?}");
    for (line, (path, status)) in default.iter().zip(requests) {
        assert!(line.contains(&format!(r#"] default "GET {path} HTTP/1.1" {status} "#)), "{line}");
        let upstream = format!(r#""a" "b" "127.0.0.1" "127.0.0.1:{b_port}""#);
        assert!(line.ends_with(&upstream), "{line} should end with {upstream}");
    }

    // b's inbound: the caller is not known there ("unknown"), b is.
    let default = log_lines(&file("in-default.log"), 2).await;
    assert_eq!(default.len(), 2, "{default:?}");
    for (line, (path, status)) in default.iter().zip(requests) {
        assert!(line.contains(&format!(r#"] default "GET {path} HTTP/1.1" {status} "#)), "{line}");
        let upstream = format!(r#""unknown" "b" "127.0.0.1" "{}""#, b1.http);
        assert!(line.ends_with(&upstream), "{line} should end with {upstream}");
    }
    let json = log_lines(&file("in-json.log"), 2).await;
    assert_eq!(json.len(), 2, "{json:?}");
    for (line, (path, status)) in json.iter().zip(requests) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(
            (&entry["source"], &entry["destination"], &entry["direction"], &entry["method"], &entry["path"]),
            (
                &Value::from("unknown"),
                &Value::from("b"),
                &Value::from("INBOUND"),
                &Value::from("GET"),
                &Value::from(path)
            ),
            "{line}"
        );
        // Envoy writes a format that is only %RESPONSE_CODE% as a number.
        assert_eq!(entry["status"], Value::from(status), "{line}");
    }
}
