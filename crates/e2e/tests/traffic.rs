//! Real traffic through real sidecars: kodiak-dp running Envoy 1.40,
//! configured over ADS (delta and state-of-the-world) by a control plane.

use std::collections::BTreeSet;
use std::time::Duration;

use kodiak_cp::config::StoreKind;
use kodiak_e2e::dataplanes::{backend, client};
use kodiak_e2e::{ControlPlane, Reply, Sidecar, TestService, Transport, eventually, free_port, get, tcp_greeting};

const CONVERGE: Duration = Duration::from_secs(20);

/// A client sidecar with outbounds to `b` (HTTP) and `b-tcp` (TCP).
struct Caller {
    sidecar: Sidecar,
    http_url: String,
    tcp_address: String,
}

impl Caller {
    fn start(control_plane: &ControlPlane, transport: Transport) -> Caller {
        let (http_port, tcp_port) = (free_port(), free_port());
        Caller {
            sidecar: Sidecar::register(control_plane, &client("a-1", "b", http_port, tcp_port), transport),
            http_url: format!("http://127.0.0.1:{http_port}/hello"),
            tcp_address: format!("127.0.0.1:{tcp_port}"),
        }
    }

    /// Waits until an HTTP request through the mesh is answered by `instance`.
    async fn reaches(&self, instance: &str) {
        let expected = Reply { status: 200, instance: Some(instance.to_owned()) };
        eventually(&format!("a request through the mesh answered by {instance}"), CONVERGE, || async {
            let reply = get(&self.http_url).await;
            (reply == expected).then_some(())
        })
        .await;
    }

    /// The instances that answered `count` requests.
    async fn instances(&self, count: usize) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        for _ in 0..count {
            let reply = get(&self.http_url).await;
            assert_eq!(reply.status, 200, "{reply:?}; client log:\n{}", self.sidecar.log());
            seen.insert(reply.instance.expect("the instance header"));
        }
        seen
    }
}

async fn a_calls_b(transport: Transport) {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    let _b = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), transport);
    let a = Caller::start(&control_plane, transport);

    a.reaches("b-1").await;
    let greeting =
        eventually("a TCP connection through the mesh", CONVERGE, || async { tcp_greeting(&a.tcp_address).await.ok() })
            .await;
    assert_eq!(greeting, "b-1");

    let insight = control_plane.overview("default", "a-1").await;
    let subscription = &insight["dataplaneInsight"]["subscriptions"][0];
    assert!(subscription.get("disconnectTime").is_none(), "{insight}");
    assert_eq!(subscription["xdsTransport"], if transport == Transport::Delta { "delta" } else { "sotw" });
    assert_eq!(subscription["status"]["total"]["responsesRejected"], 0, "{insight}");
    assert!(subscription["generation"]["acked"].as_u64() > Some(0), "{insight}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_calls_b_over_http_and_tcp_with_delta_xds() {
    a_calls_b(Transport::Delta).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_calls_b_over_http_and_tcp_with_state_of_the_world_xds() {
    a_calls_b(Transport::Sotw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_instance_gets_traffic_and_a_stopped_one_leaves_before_it_is_gone() {
    let control_plane = ControlPlane::memory();
    let (b1, b2) = (TestService::start("b-1").await, TestService::start("b-2").await);
    let _b1 = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), Transport::Delta);
    let a = Caller::start(&control_plane, Transport::Delta);
    a.reaches("b-1").await;

    let b2_sidecar = Sidecar::register(&control_plane, &backend("b-2", "b", &b2), Transport::Delta);
    a.reaches("b-2").await;
    assert_eq!(a.instances(20).await, BTreeSet::from(["b-1".to_owned(), "b-2".to_owned()]));

    // On SIGTERM kodiak-dp announces the drain first: the control plane
    // withdraws b-2 from a's endpoints within a second, while b-2's Envoy
    // still drains (for the harness's 2 s drain time).
    b2_sidecar.signal("TERM");
    eventually("b-2 withdrawn from a's endpoints", Duration::from_secs(1), || async {
        (a.sidecar.endpoints("b").await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(a.instances(20).await, BTreeSet::from(["b-1".to_owned()]));
    let status = b2_sidecar.stop().await;
    assert!(status.success(), "kodiak-dp exits 0 after a drain: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dataplane_deleted_through_the_api_stops_receiving_traffic() {
    let control_plane = ControlPlane::memory();
    let (b1, b2) = (TestService::start("b-1").await, TestService::start("b-2").await);
    control_plane.apply(&backend("b-1", "b", &b1)).await;
    let _b1 = Sidecar::named(&control_plane, "default", "b-1", Transport::Sotw);
    let _b2 = Sidecar::register(&control_plane, &backend("b-2", "b", &b2), Transport::Sotw);
    let a = Caller::start(&control_plane, Transport::Sotw);
    a.reaches("b-1").await;
    a.reaches("b-2").await;

    control_plane.delete_dataplane("default", "b-1").await;
    eventually("b-1 gone from a's endpoints", Duration::from_secs(5), || async {
        (a.sidecar.endpoints("b").await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(a.instances(20).await, BTreeSet::from(["b-2".to_owned()]));
}

/// Requests sent one after another for `duration`; returns how many failed
/// and how many were sent.
async fn request_loop(url: String, duration: Duration) -> (usize, usize) {
    let deadline = tokio::time::Instant::now() + duration;
    let (mut failed, mut sent) = (0, 0);
    while tokio::time::Instant::now() < deadline && sent < 10_000 {
        sent += 1;
        if get(&url).await.status != 200 {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (failed, sent)
}

/// Both sidecars are connected to the control plane again, and each has
/// applied a configuration from it.
async fn reconnected(control_plane: &ControlPlane) {
    for name in ["a-1", "b-1"] {
        eventually(&format!("{name} reconnected"), CONVERGE, || async {
            let overview = control_plane.overview("default", name).await;
            let subscriptions = overview["dataplaneInsight"]["subscriptions"].as_array().cloned().unwrap_or_default();
            subscriptions
                .iter()
                .any(|s| s.get("disconnectTime").is_none() && s["generation"]["acked"].as_u64() > Some(0))
                .then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_restart_loses_no_request_and_sidecars_reconnect() {
    let mut control_plane = ControlPlane::sqlite();
    let b1 = TestService::start("b-1").await;
    let _b = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), Transport::Delta);
    let a = Caller::start(&control_plane, Transport::Sotw);
    a.reaches("b-1").await;

    let load = tokio::spawn(request_loop(a.http_url.clone(), Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    control_plane.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    control_plane.start();
    reconnected(&control_plane).await;
    let (failed, sent) = load.await.unwrap();
    assert!(sent > 100, "the load loop ran ({sent} requests)");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed across the restart");
    a.reaches("b-1").await;
}

/// The in-memory store forgets every Dataplane on a restart; the sidecars
/// carry the ones kodiak-dp registered and register them again.
#[tokio::test(flavor = "multi_thread")]
async fn an_in_memory_control_plane_learns_registered_dataplanes_again_when_sidecars_reconnect() {
    // An in-memory store forgets its token signing keys on a restart, and
    // with them every token issued before: here sidecars go without.
    let mut control_plane = ControlPlane::with(StoreKind::Memory, |config| {
        config.dp_server.authn.dp_proxy.kind = kodiak_cp::config::DpProxyAuthn::None;
    });
    let b1 = TestService::start("b-1").await;
    let _b = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), Transport::Delta);
    let a = Caller::start(&control_plane, Transport::Sotw);
    a.reaches("b-1").await;

    control_plane.stop();
    control_plane.start();
    reconnected(&control_plane).await;
    a.reaches("b-1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_whose_envoy_dies_leaves_at_once_and_kodiak_dp_exits_with_envoys_status() {
    let control_plane = ControlPlane::memory();
    let (b1, b2) = (TestService::start("b-1").await, TestService::start("b-2").await);
    let _b1 = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), Transport::Delta);
    let mut b2_sidecar = Sidecar::register(&control_plane, &backend("b-2", "b", &b2), Transport::Delta);
    let a = Caller::start(&control_plane, Transport::Delta);
    a.reaches("b-1").await;
    a.reaches("b-2").await;

    // Envoy is kodiak-dp's child: kill it without any warning.
    let dp = b2_sidecar.pid().expect("kodiak-dp runs").to_string();
    let killed = std::process::Command::new("pkill").args(["-KILL", "-P", &dp]).status().unwrap();
    assert!(killed.success(), "Envoy was found and killed");
    eventually("b-2 withdrawn from a's endpoints", Duration::from_secs(1), || async {
        (a.sidecar.endpoints("b").await.len() == 1).then_some(())
    })
    .await;
    let status = b2_sidecar.exit_within(Duration::from_secs(10)).await.expect("kodiak-dp exits with Envoy");
    assert_eq!(status.code(), Some(128 + 9), "128 + SIGKILL: {}", b2_sidecar.log());
    assert_eq!(a.instances(20).await, BTreeSet::from(["b-1".to_owned()]));
}

/// The value of one counter in Envoy's `/stats` text.
async fn counter(sidecar: &Sidecar, name: &str) -> u64 {
    let stats = sidecar.admin(&format!("/stats?filter=^{}$", name.replace('.', "\\."))).await.unwrap_or_default();
    stats.lines().find_map(|line| line.strip_prefix(&format!("{name}: "))?.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_service_is_called_over_http2_on_every_hop() {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    // The backend's HTTP inbound declared as http2 (the test service speaks h2c).
    let dataplane = backend("b-1", "b", &b1).replace("kuma.io/protocol: http\n", "kuma.io/protocol: http2\n");
    let b = Sidecar::register(&control_plane, &dataplane, Transport::Delta);
    let a = Caller::start(&control_plane, Transport::Delta);

    let h2 = reqwest::Client::builder().http2_prior_knowledge().timeout(Duration::from_secs(5)).build().unwrap();
    let version = eventually("an HTTP/2 request through the mesh", CONVERGE, || async {
        let response = h2.get(&a.http_url).send().await.ok()?;
        let instance = response.headers().get("x-kodiak-instance")?.to_str().ok()?.to_owned();
        (response.status() == 200 && instance == "b-1").then_some(response.version())
    })
    .await;
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert!(counter(&a.sidecar, "cluster.b.upstream_cx_http2_total").await > 0, "caller to backend over HTTP/2");
    // Envoy writes the ':' of cluster names as '_' in stat names.
    let service_cluster = format!("cluster.inbound_127.0.0.1_{}.upstream_cx_http2_total", b1.http.port());
    assert!(
        counter(&b, &service_cluster).await > 0,
        "backend's sidecar to the service over HTTP/2: {:?}",
        b.admin("/stats?filter=http2_total").await
    );
}
