//! Dataplane tokens with real kodiak-dp and Envoy: a sidecar whose token
//! does not allow its Dataplane is stopped at bootstrap with the reason and
//! registers nothing; one whose token allows it connects.

use std::time::Duration;

use kodiak_client::DataplaneTokenRequest;
use kodiak_e2e::dataplanes::backend;
use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, eventually};

/// A token for Dataplanes whose every service is one of `services`.
async fn token(control_plane: &ControlPlane, services: &[&str]) -> String {
    let request = DataplaneTokenRequest {
        mesh: "default".into(),
        tags: [("kuma.io/service".to_owned(), services.iter().map(|s| (*s).to_owned()).collect())].into(),
        valid_for: "1h".into(),
        ..Default::default()
    };
    control_plane.client().generate_dataplane_token(&request).await.expect("a token")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_claiming_a_service_its_token_does_not_carry_is_stopped_and_registers_nothing() {
    let control_plane = ControlPlane::memory();
    assert!(control_plane.requires_dataplane_tokens(), "tokens are required by default");
    let service = TestService::start("b-1").await;
    let dataplane = backend("b-1", "b", &service);

    let for_payments = token(&control_plane, &["payments"]).await;
    let mut refused = Sidecar::register_with_token(&control_plane, &dataplane, Transport::Delta, &for_payments);
    let status = refused.exit_within(Duration::from_secs(20)).await.expect("kodiak-dp stops at once");
    assert!(!status.success(), "{}", refused.log());
    let log = refused.log();
    assert!(log.contains("403"), "{log}");
    assert!(
        log.contains(
            "dataplane contains tag \"kuma.io/service\" with value \"b\" which is not allowed with this token"
        ),
        "{log}"
    );
    let key = kodiak_api::ResourceKey::new(kodiak_api::ResourceType::Dataplane, Some("default"), "b-1");
    assert!(control_plane.client().get(&key).await.unwrap().is_none(), "nothing was registered");

    // The Dataplane's inbounds serve b and b-tcp: a token for b alone is refused too.
    let for_b_only = token(&control_plane, &["b"]).await;
    let mut refused = Sidecar::register_with_token(&control_plane, &dataplane, Transport::Delta, &for_b_only);
    refused.exit_within(Duration::from_secs(20)).await.expect("kodiak-dp stops at once");
    assert!(refused.log().contains("with value \"b-tcp\" which is not allowed"), "{}", refused.log());
    let for_b = token(&control_plane, &["b", "b-tcp"]).await;
    let allowed = Sidecar::register_with_token(&control_plane, &dataplane, Transport::Delta, &for_b);
    eventually("the allowed sidecar's ADS stream", Duration::from_secs(30), || async {
        allowed.admin("/stats?filter=^control_plane.connected_state$").await.filter(|text| text.ends_with(": 1\n"))
    })
    .await;
    allowed.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_without_a_token_is_stopped_with_a_hint() {
    let control_plane = ControlPlane::memory();
    let service = TestService::start("b-1").await;
    let mut refused = Sidecar::register_without_token(&control_plane, &backend("b-1", "b", &service), Transport::Sotw);
    let status = refused.exit_within(Duration::from_secs(20)).await.expect("kodiak-dp stops at once");
    assert!(!status.success(), "{}", refused.log());
    let log = refused.log();
    assert!(log.contains("401") && log.contains("no dataplane token"), "{log}");
    assert!(log.contains("kodiakctl generate dataplane-token"), "the fix is named: {log}");
}
