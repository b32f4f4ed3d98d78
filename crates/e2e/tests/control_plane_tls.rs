//! The dp-server over TLS, seen from kodiak-dp: Envoy streams its
//! configuration over TLS trusting only the given CA, and a certificate
//! kodiak-dp cannot verify stops it at once with a message that says why.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use kodiak_e2e::dataplanes::backend;
use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, binary, envoy, eventually};

/// Runs `kodiak-dp run --name web-1 ARGS` against `cp_address` and returns
/// its exit status and what it printed; it must exit within 20 seconds.
async fn run_dp(cp_address: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = tokio::process::Command::new(binary("kodiak-dp"))
        .args(["run", "--name", "web-1", "--cp-address", cp_address])
        .arg("--envoy-binary")
        .arg(envoy())
        .args(args)
        .env_remove("KODIAK_CONTROL_PLANE_CA_CERT_FILE")
        .env_remove("SSL_CERT_FILE")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("kodiak-dp gives up at once instead of retrying")
        .expect("kodiak-dp runs");
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn kodiak_dp_refuses_a_control_plane_its_ca_file_does_not_vouch_for() {
    let control_plane = ControlPlane::memory();
    let other = ControlPlane::memory();
    let wrong = other.ca_cert_file().unwrap().to_string_lossy().into_owned();
    let (status, output) = run_dp(&control_plane.dp_server_url(), &["--ca-cert-file", &wrong]).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("TLS with the control plane failed"), "{output}");
    assert!(output.contains("not signed by a CA kodiak-dp trusts"), "the reason is named: {output}");
    assert!(output.contains(&wrong), "the file is named: {output}");
    assert!(!output.contains("retrying"), "a certificate problem is not retried: {output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_ca_file_the_generated_certificate_is_refused_with_a_hint() {
    let control_plane = ControlPlane::memory();
    let (status, output) = run_dp(&control_plane.dp_server_url(), &[]).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("system's trusted roots") && output.contains("--ca-cert-file"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plaintext_address_for_a_tls_dp_server_is_told_to_use_https() {
    let control_plane = ControlPlane::memory();
    let plaintext = control_plane.dp_server_url().replacen("https://", "http://", 1);
    let (status, output) = run_dp(&plaintext, &[]).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("400") && output.contains("TLS only") && output.contains("https://"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_streams_over_tls_trusting_only_the_given_ca() {
    let control_plane = ControlPlane::memory();
    let service = TestService::start("b-1").await;
    let sidecar = Sidecar::register(&control_plane, &backend("b-1", "b", &service), Transport::Delta);
    let stats = eventually("a TLS handshake with the control plane", Duration::from_secs(30), || async {
        sidecar.admin("/stats?filter=^cluster.kodiak_xds.ssl.handshake$").await.filter(|text| !text.ends_with(": 0\n"))
    })
    .await;
    assert!(stats.contains("cluster.kodiak_xds.ssl.handshake"), "{stats}");

    let bootstrap_file = sidecar.work_dir().join("bootstrap.json");
    let mode = std::fs::metadata(&bootstrap_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the bootstrap may carry a token");
    let bootstrap: serde_json::Value = serde_json::from_slice(&std::fs::read(&bootstrap_file).unwrap()).unwrap();
    let context = &bootstrap["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
    let trusted = context["common_tls_context"]["validation_context"]["trusted_ca"]["inline_string"].as_str();
    let ca = std::fs::read_to_string(control_plane.ca_cert_file().unwrap()).unwrap();
    assert_eq!(trusted, Some(ca.as_str()), "{context:#}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tls_turned_off_sidecars_stream_in_plaintext() {
    let control_plane = ControlPlane::with(kodiak_cp::config::StoreKind::Memory, |config| {
        config.dp_server.tls_enabled = false;
    });
    assert!(control_plane.dp_server_url().starts_with("http://"));
    let service = TestService::start("b-1").await;
    let sidecar = Sidecar::register(&control_plane, &backend("b-1", "b", &service), Transport::Sotw);
    let connected = eventually("the sidecar's ADS stream", Duration::from_secs(30), || async {
        sidecar.admin("/stats?filter=^control_plane.connected_state$").await.filter(|text| text.ends_with(": 1\n"))
    })
    .await;
    assert!(connected.contains("connected_state: 1"), "{connected}");
    let bootstrap: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar.work_dir().join("bootstrap.json")).unwrap()).unwrap();
    assert!(bootstrap["static_resources"]["clusters"][0].get("transport_socket").is_none());
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dataplane_token_reaches_envoy_as_ads_metadata_over_tls() {
    let control_plane = ControlPlane::memory();
    assert!(control_plane.requires_dataplane_tokens());
    let token = control_plane.dataplane_token("default").await;
    let service = TestService::start("b-1").await;
    let sidecar =
        Sidecar::register_with_token(&control_plane, &backend("b-1", "b", &service), Transport::Delta, &token);
    let connected = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let stats = sidecar.admin("/stats?filter=^control_plane.connected_state$").await;
            if stats.is_some_and(|text| text.ends_with(": 1\n")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(connected.await.is_ok(), "the sidecar's ADS stream with its token:\n{}", sidecar.log());
    let bootstrap: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar.work_dir().join("bootstrap.json")).unwrap()).unwrap();
    let grpc_service = &bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0];
    let metadata = &grpc_service["initial_metadata"][0];
    assert_eq!((&metadata["key"], metadata["value"].as_str()), (&"authorization".into(), Some(token.trim())));
    sidecar.stop().await;
}
