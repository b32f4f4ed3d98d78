//! Registration by kodiak-dp, seen from the dp-server: one sidecar per
//! Dataplane, and a registered Dataplane whose sidecar never connects.

use std::time::Duration;

use kodiak_cp::config::StoreKind;
use kodiak_e2e::dataplanes::{backend, client};
use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, eventually, free_port};
use serde_json::{Value, json};

/// `POST /bootstrap` as kodiak-dp sends it, registering `dataplane`.
async fn bootstrap(control_plane: &ControlPlane, name: &str, dataplane: &str) -> (u16, Value) {
    let request = json!({
        "mesh": "default", "name": name, "dataplaneResource": dataplane,
        "version": {"kodiakDp": "test", "envoy": "1.40.0"},
        "dataplaneToken": control_plane.dataplane_token("default").await,
    });
    let response = control_plane
        .dp_server_client()
        .post(format!("{}/bootstrap", control_plane.dp_server_url()))
        .json(&request)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sidecar_for_one_dataplane_is_refused_while_the_first_starts() {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    let dataplane = backend("b-1", "b", &b1);
    let (status, _) = bootstrap(&control_plane, "b-1", &dataplane).await;
    assert_eq!(status, 200);
    let (status, error) = bootstrap(&control_plane, "b-1", &dataplane).await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["detail"].as_str().unwrap().contains("another sidecar bootstrapped Dataplane default/b-1"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_dataplane_whose_sidecar_never_connects_gets_no_traffic_and_is_removed() {
    let control_plane = ControlPlane::with(StoreKind::Memory, |config| {
        config.dp_server.inline_dataplane_cleanup_delay = "2s".into();
    });
    let b1 = TestService::start("b-1").await;
    let _b1 = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), Transport::Delta);
    let (http_port, tcp_port) = (free_port(), free_port());
    let a = Sidecar::register(&control_plane, &client("a-1", "b", http_port, tcp_port), Transport::Delta);
    eventually("a reaches b-1", Duration::from_secs(20), || async {
        (a.endpoints("b").await.len() == 1).then_some(())
    })
    .await;

    // A kodiak-dp that registers b-2 and dies before its Envoy connects.
    let (status, _) = bootstrap(&control_plane, "b-2", &backend("b-2", "b", &b1)).await;
    assert_eq!(status, 200);
    // Until it is removed, every look at a's endpoints must show b-1 alone.
    eventually("b-2 removed after the clean-up delay", Duration::from_secs(10), || async {
        assert_eq!(a.endpoints("b").await.len(), 1, "b-2 was offered to a before its sidecar connected");
        let overview = control_plane.overview("default", "b-2").await;
        (overview["status"] == 404).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dataplane_deleted_under_its_running_sidecar_stays_deleted_and_the_sidecar_is_told() {
    let control_plane = ControlPlane::memory();
    let b1 = TestService::start("b-1").await;
    let sidecar = Sidecar::register(&control_plane, &backend("b-1", "b", &b1), Transport::Delta);
    eventually("b-1 online", Duration::from_secs(20), || async {
        let overview = control_plane.overview("default", "b-1").await;
        overview["dataplaneInsight"]["subscriptions"][0]["generation"]["acked"].as_u64().filter(|g| *g > 0)
    })
    .await;

    control_plane.delete_dataplane("default", "b-1").await;
    // Envoy logs every refusal (gRPC messages arrive percent-encoded); after
    // the second one it has reconnected and been turned away at least once.
    eventually("the sidecar told twice that its Dataplane was deleted", Duration::from_secs(20), || async {
        (sidecar.log().matches("was%20deleted%20while%20this%20sidecar%20served%20it").count() >= 2).then_some(())
    })
    .await;
    let overview = control_plane.overview("default", "b-1").await;
    assert_eq!(overview["status"], 404, "the sidecar did not register it again: {overview}");
}
