//! What the control plane tells a user about sidecars: online state, ACKs,
//! and Envoy's reason when it refuses a configuration.

use std::time::Duration;

use kodiak_e2e::dataplanes::backend;
use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, binary, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_configuration_is_reported_with_envoys_reason_and_the_proxy_keeps_serving() {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    let dataplane = backend("b-1", "b", &b1);
    let sidecar = Sidecar::register(&control_plane, &dataplane, Transport::Delta);
    let inbound_port: u16 = dataplane
        .lines()
        .find_map(|line| line.trim().strip_prefix("- port: "))
        .and_then(|port| port.parse().ok())
        .expect("the backend document has an inbound port");
    let inbound = format!("http://127.0.0.1:{inbound_port}/");
    eventually("b-1 serving through its inbound", Duration::from_secs(20), || async {
        (kodiak_e2e::get(&inbound).await.status == 200).then_some(())
    })
    .await;

    // An outbound on a port another program holds: Envoy cannot bind it and
    // refuses the listener update.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let with_outbound =
        format!("{dataplane}  outbound:\n  - port: {taken}\n    tags:\n      kuma.io/service: elsewhere\n");
    control_plane.apply(&with_outbound).await;

    let nack = eventually("a NACK in b-1's insight", Duration::from_secs(20), || async {
        let overview = control_plane.overview("default", "b-1").await;
        let lds = &overview["dataplaneInsight"]["subscriptions"][0]["status"]["lds"];
        lds.get("lastNack").map(|nack| nack["error"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    assert!(nack.contains(&taken.to_string()), "Envoy's reason names the port: {nack}");

    // The table a user reads.
    let output = std::process::Command::new(binary("kodiakctl"))
        .args(["inspect", "dataplanes", "--cp-address", &control_plane.api_url()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}{}", String::from_utf8_lossy(&output.stderr));
    let row = table.lines().find(|line| line.contains("b-1")).unwrap_or_else(|| panic!("no b-1 row:\n{table}"));
    assert!(row.contains("Online") && row.contains("lds:"), "{table}");

    // Envoy keeps its last good configuration.
    assert_eq!(kodiak_e2e::get(&inbound).await.status, 200);
    drop(sidecar);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_for_a_dataplane_that_does_not_exist_stops_with_a_clear_message() {
    let control_plane = ControlPlane::memory();
    let mut sidecar = Sidecar::named(&control_plane, "default", "nobody", Transport::Delta);
    let status = sidecar.exit_within(Duration::from_secs(20)).await.expect("kodiak-dp gives up");
    assert!(!status.success());
    let log = sidecar.log();
    assert!(log.contains("Dataplane default/nobody does not exist") && log.contains("--dataplane-file"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_whose_inbound_port_is_taken_stops_before_starting_envoy() {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let dataplane = backend("b-1", "b", &b1);
    let first_port = dataplane.lines().find_map(|line| line.trim().strip_prefix("- port: ")).unwrap().to_owned();
    let dataplane = dataplane.replacen(&format!("- port: {first_port}"), &format!("- port: {taken}"), 1);
    let mut sidecar = Sidecar::register(&control_plane, &dataplane, Transport::Delta);
    let status = sidecar.exit_within(Duration::from_secs(20)).await.expect("kodiak-dp gives up");
    assert!(!status.success());
    let log = sidecar.log();
    assert!(log.contains(&format!("127.0.0.1:{taken}")) && !log.contains("started Envoy"), "{log}");
}
