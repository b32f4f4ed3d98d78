//! Policies that choose between a service's instances, through real
//! sidecars: outlier detection and connection limits (MeshCircuitBreaker),
//! active health checks (MeshHealthCheck), hashing by a header
//! (MeshLoadBalancingStrategy) and weighted TCP splits (MeshTCPRoute). Each
//! test asserts what a caller sees: who answers, with which status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kodiak_e2e::dataplanes::{backend, client};
use kodiak_e2e::policies::{CONVERGE, NO_RETRIES_TOWARD_B};
use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, eventually, free_port, get, tcp_greeting};

/// One instance of a service: its application and its sidecar.
struct Instance {
    /// `None` once stopped: the sidecar then answers 503 for it.
    app: Option<TestService>,
    /// The port of the sidecar's HTTP inbound, where callers' Envoys send.
    inbound_port: u16,
    _sidecar: Sidecar,
}

/// Starts instances `<service>-1`, `<service>-2`, ... of `service`, each a
/// test service (named after its instance) behind a sidecar of its own.
async fn instances(control_plane: &ControlPlane, service: &str, count: usize) -> Vec<Instance> {
    let mut started = Vec::new();
    for n in 1..=count {
        let name = format!("{service}-{n}");
        let app = TestService::start(&name).await;
        let dataplane = backend(&name, service, &app);
        let document = kodiak_api::parse_document(&dataplane).expect("a Dataplane document");
        let inbound_port = document["networking"]["inbound"][0]["port"].as_u64().expect("an inbound port") as u16;
        let sidecar = Sidecar::register(control_plane, &dataplane, Transport::Delta);
        started.push(Instance { app: Some(app), inbound_port, _sidecar: sidecar });
    }
    started
}

/// The caller `a-1` with outbounds to `service` (HTTP) and `<service>-tcp`
/// (TCP): its sidecar, the HTTP outbound's URL and the TCP outbound's address.
fn caller(control_plane: &ControlPlane, service: &str) -> (Sidecar, String, String) {
    let (http_port, tcp_port) = (free_port(), free_port());
    let sidecar = Sidecar::register(control_plane, &client("a-1", service, http_port, tcp_port), Transport::Delta);
    (sidecar, format!("http://127.0.0.1:{http_port}"), format!("127.0.0.1:{tcp_port}"))
}

/// Waits until every one of `names` has answered a GET of `url`.
async fn until_all_answer(url: &str, names: &[&str]) {
    let seen = std::cell::RefCell::new(BTreeSet::new());
    eventually(&format!("answers from each of {names:?}"), CONVERGE, || async {
        let reply = get(url).await;
        if reply.status == 200
            && let Some(instance) = reply.instance
        {
            seen.borrow_mut().insert(instance);
        }
        names.iter().all(|name| seen.borrow().contains(*name)).then_some(())
    })
    .await;
}

/// Turns off the retries every mesh starts with toward `b`, so a failed
/// request reaches the caller instead of being retried on another instance
/// (which would hide the failures the tests below want to see go away).
async fn no_retries_toward_b(control_plane: &ControlPlane) {
    control_plane.apply(NO_RETRIES_TOWARD_B).await;
}

/// Waits until a GET of `url` fails with a 503: `b-2` is down and nothing
/// yet keeps requests away from it.
async fn until_a_request_fails(url: &str) {
    eventually("a request answered with 503 (b-2 is down, no retries)", CONVERGE, || async {
        (get(url).await.status == 503).then_some(())
    })
    .await;
}

/// Asserts that `count` GETs in a row are answered 200 by `instance`.
async fn all_answered_by(url: &str, count: usize, instance: &str) {
    for n in 0..count {
        let reply = get(url).await;
        assert_eq!((reply.status, reply.instance.as_deref()), (200, Some(instance)), "request {n} of {count} in a row");
    }
}

/// The active cluster `name` in the Envoy config dump of `sidecar`.
async fn active_cluster(sidecar: &Sidecar, name: &str) -> Option<serde_json::Value> {
    let dump = sidecar.admin(&format!("/config_dump?resource=dynamic_active_clusters&name_regex=%5E{name}%24")).await?;
    let dump: serde_json::Value = serde_json::from_str(&dump).ok()?;
    dump["configs"].as_array()?.iter().map(|config| &config["cluster"]).find(|cluster| cluster["name"] == name).cloned()
}

/// The value of one of Envoy's stats on `sidecar`, once it exists.
async fn stat(sidecar: &Sidecar, name: &str) -> Option<u64> {
    let stats = sidecar.admin(&format!("/stats?filter=^{name}$")).await?;
    stats.lines().find_map(|line| line.strip_prefix(&format!("{name}: "))?.trim().parse().ok())
}

/// The health flags Envoy's `/clusters` shows for the endpoint of cluster
/// `cluster` on 127.0.0.1:`port` (`healthy`, `/failed_active_hc`, ...).
async fn health_flags(sidecar: &Sidecar, cluster: &str, port: u16) -> Option<String> {
    let clusters = sidecar.admin("/clusters").await?;
    let prefix = format!("{cluster}::127.0.0.1:{port}::health_flags::");
    clusters.lines().find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
}

/// Outlier detection: an instance that keeps failing is ejected, and the
/// caller's requests all go to the healthy one. Without the circuit
/// breaker (or with outlier detection missing from the generated cluster)
/// no endpoint is ejected and every other request toward `b` is a 503.
#[tokio::test(flavor = "multi_thread")]
async fn outlier_detection_ejects_the_instance_that_keeps_failing() {
    let control_plane = ControlPlane::memory();
    let mut b = instances(&control_plane, "b", 2).await;
    let (a, url, _) = caller(&control_plane, "b");
    let url = format!("{url}/");
    until_all_answer(&url, &["b-1", "b-2"]).await;

    no_retries_toward_b(&control_plane).await;
    // b-2's application goes away (killed when dropped); its sidecar stays
    // and answers 503 for it.
    drop(b[1].app.take());
    until_a_request_fails(&url).await;

    control_plane
        .apply(
            "type: MeshCircuitBreaker
mesh: default
name: b-outliers
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    default:
      outlierDetection:
        interval: 1s
        baseEjectionTime: 5m
        maxEjectionPercent: 100
        detectors:
          totalFailures: {consecutive: 3}
",
        )
        .await;
    eventually("the outlier detection in b's cluster", CONVERGE, || async {
        active_cluster(&a, "b").await?.get("outlier_detection").map(|_| ())
    })
    .await;
    // Round robin sends every other request to b-2: after its third 503
    // in a row it is ejected (the ejection lasts far longer than this test).
    let failures = std::cell::Cell::new(0);
    eventually("b-2 ejected", CONVERGE, || async {
        if get(&url).await.status == 503 {
            failures.set(failures.get() + 1);
        }
        (stat(&a, "cluster.b.outlier_detection.ejections_active").await? == 1).then_some(())
    })
    .await;
    // With no retries, each of the three failures that ejected b-2 reached the caller.
    assert!(failures.get() >= 3, "b-2 ejected after {} failed requests", failures.get());
    all_answered_by(&url, 20, "b-1").await;
    assert_eq!(stat(&a, "cluster.b.outlier_detection.ejections_active").await, Some(1));
}

/// Connection limits: with one request at a time allowed toward `b` and
/// one waiting for it, further requests are refused by the caller's Envoy
/// with a 503 marked `x-envoy-overloaded`. Under the limits every mesh
/// starts with (1024), all of them would be answered 200.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_limit_refuses_requests_beyond_it() {
    let control_plane = ControlPlane::memory();
    let _b = instances(&control_plane, "b", 1).await;
    let (a, url, _) = caller(&control_plane, "b");
    until_all_answer(&format!("{url}/"), &["b-1"]).await;

    control_plane
        .apply(
            "type: MeshCircuitBreaker
mesh: default
name: b-one-at-a-time
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    default:
      connectionLimits: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}
",
        )
        .await;
    eventually("the limit in b's cluster", CONVERGE, || async {
        let cluster = active_cluster(&a, "b").await?;
        (cluster["circuit_breakers"]["thresholds"][0]["max_requests"] == 1).then_some(())
    })
    .await;

    // Six requests at once, each answered after 3 s: the first gets the one
    // request allowed, the others arrive while it is in flight. One of them
    // may wait for it in the single pending slot (when it comes after the
    // first got its connection; before that, the first holds the slot).
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (http, target) = (http.clone(), format!("{url}/delay/3000"));
        requests.spawn(async move {
            let response = http.get(target).send().await.expect("an answer");
            let overloaded = response.headers().get("x-envoy-overloaded").is_some_and(|value| value == "true");
            (response.status().as_u16(), overloaded)
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(answer) = requests.join_next().await {
        *answers.entry(answer.expect("the request task")).or_insert(0) += 1;
    }
    let answered = answers.get(&(200, false)).copied().unwrap_or(0);
    let refused = answers.get(&(503, true)).copied().unwrap_or(0);
    assert!(
        (1..=2).contains(&answered) && answered + refused == 6,
        "(status, overloaded): count {answers:?}; expected 1 or 2 answered, the rest refused"
    );
}

/// Active health checks: the caller's Envoy checks each instance of `b`
/// and stops sending to the one that fails them. Without the health check
/// (or with it missing from the generated cluster) b-2 is never marked
/// failed and every other request is a 503, as the test shows first.
#[tokio::test(flavor = "multi_thread")]
async fn a_health_check_keeps_requests_away_from_an_instance_that_fails_it() {
    let control_plane = ControlPlane::memory();
    let mut b = instances(&control_plane, "b", 2).await;
    let (a, url, _) = caller(&control_plane, "b");
    let url = format!("{url}/");
    until_all_answer(&url, &["b-1", "b-2"]).await;
    let (b1_port, b2_port) = (b[0].inbound_port, b[1].inbound_port);

    no_retries_toward_b(&control_plane).await;
    drop(b[1].app.take());
    until_a_request_fails(&url).await;

    control_plane
        .apply(
            "type: MeshHealthCheck
mesh: default
name: b-checked
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    default:
      interval: 1s
      timeout: 1s
      unhealthyThreshold: 1
      healthyThreshold: 1
      http: {path: /status/200}
",
        )
        .await;
    eventually("b-2 failing its health check and b-1 passing", CONVERGE, || async {
        let b2 = health_flags(&a, "b", b2_port).await?;
        let b1 = health_flags(&a, "b", b1_port).await?;
        (b2.contains("/failed_active_hc") && b1 == "healthy").then_some(())
    })
    .await;
    all_answered_by(&url, 20, "b-1").await;
    let b2 = health_flags(&a, "b", b2_port).await;
    assert!(b2.as_deref().is_some_and(|flags| flags.contains("/failed_active_hc")), "b-2: {b2:?}");
}

/// Ring hash on a header: requests naming the same user always reach the
/// same instance, and different users are spread over the instances.
/// Under the round robin a mesh starts with, one user's requests reach
/// every instance in turn (checked first), which fails the assertions.
#[tokio::test(flavor = "multi_thread")]
async fn a_ring_hash_on_a_header_keeps_each_user_on_one_instance() {
    let control_plane = ControlPlane::memory();
    let _b = instances(&control_plane, "b", 3).await;
    let (a, url, _) = caller(&control_plane, "b");
    let url = format!("{url}/");
    until_all_answer(&url, &["b-1", "b-2", "b-3"]).await;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    // The instances that answered `count` requests of `user`, with how many each.
    let answers = |user: String, count: usize| {
        let (http, url) = (&http, &url);
        async move {
            let mut by_instance = BTreeMap::new();
            for _ in 0..count {
                let response = http.get(url).header("x-user", &user).send().await.expect("an answer");
                assert_eq!(response.status(), 200, "{user}");
                let instance = response.headers().get("x-kodiak-instance").expect("the instance header");
                *by_instance.entry(instance.to_str().unwrap().to_owned()).or_insert(0) += 1;
            }
            by_instance
        }
    };
    let before = answers("user-0".into(), 10).await;
    assert!(before.len() > 1, "round robin spreads one user's requests: {before:?}");

    control_plane
        .apply(
            "type: MeshLoadBalancingStrategy
mesh: default
name: b-by-user
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b}
    default:
      loadBalancer:
        type: RingHash
        ringHash:
          hashPolicies:
          - type: Header
            header: {name: x-user}
",
        )
        .await;
    eventually("ring hash in b's cluster and the header hash on its routes", CONVERGE, || async {
        let cluster = active_cluster(&a, "b").await?;
        let routes = a.admin("/config_dump?resource=dynamic_route_configs").await?;
        (cluster["lb_policy"] == "RING_HASH" && routes.contains("\"header_name\": \"x-user\"")).then_some(())
    })
    .await;

    let mut reached = BTreeSet::new();
    for user in 0..20 {
        let by_instance = answers(format!("user-{user}"), 10).await;
        assert_eq!(by_instance.len(), 1, "user-{user}'s requests reached {by_instance:?}");
        reached.extend(by_instance.into_keys());
    }
    // 20 users all on one of 3 instances: about 3 in 3^20 for an even ring.
    assert!(reached.len() > 1, "all users reached {reached:?}");
}

/// A weighted TCP split: connections to `b-v1-tcp` go 3 to 1 to `b-v1`
/// and `b-v2`. Without the route all of them reach `b-v1`; with the weights
/// swapped or ignored the share is 25 % or 50 %: each fails the assertion.
#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_tcp_route_splits_connections_by_weight() {
    let control_plane = ControlPlane::memory();
    let _v1 = instances(&control_plane, "b-v1", 1).await;
    let _v2 = instances(&control_plane, "b-v2", 1).await;
    let (_a, _, tcp) = caller(&control_plane, "b-v1");
    eventually("a reaches b-v1 over TCP", CONVERGE, || async {
        (tcp_greeting(&tcp).await.ok()? == "b-v1-1").then_some(())
    })
    .await;

    control_plane
        .apply(
            "type: MeshTCPRoute
mesh: default
name: b-split
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: b-v1-tcp}
    rules:
    - default:
        backendRefs:
        - {kind: MeshService, name: b-v1-tcp, weight: 3}
        - {kind: MeshService, name: b-v2-tcp, weight: 1}
",
        )
        .await;
    eventually("a connection reaching b-v2", CONVERGE, || async {
        (tcp_greeting(&tcp).await.ok()? == "b-v2-1").then_some(())
    })
    .await;

    // 600 connections, 20 at a time.
    const CONNECTIONS: usize = 600;
    let mut greetings: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..CONNECTIONS / 20 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let tcp = tcp.clone();
            batch.spawn(async move { tcp_greeting(&tcp).await });
        }
        while let Some(greeting) = batch.join_next().await {
            let greeting = greeting.expect("the connection task").expect("a greeting through the route");
            *greetings.entry(greeting).or_insert(0) += 1;
        }
    }
    let v1 = greetings.get("b-v1-1").copied().unwrap_or(0);
    let v2 = greetings.get("b-v2-1").copied().unwrap_or(0);
    assert_eq!(v1 + v2, CONNECTIONS, "only b-v1 and b-v2 answer: {greetings:?}");
    assert!(v2 > 0, "b-v2 got no connection: {greetings:?}");
    // b-v1's share is binomial, p = 0.75 over 600 connections: its standard
    // deviation is sqrt(0.75 * 0.25 / 600) = 1.8 %, so 10 % either way is
    // about 5.7 sigma (a false failure about once in 10^8 runs).
    let share = v1 as f64 / CONNECTIONS as f64;
    assert!((0.65..=0.85).contains(&share), "b-v1 got {:.1} % of connections: {greetings:?}", share * 100.0);
}
