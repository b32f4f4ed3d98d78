//! The control plane's TLS servers with their generated certificate: the
//! HTTPS API answers with it, a restart reuses it, and the dp-server tells
//! a plaintext client to use TLS.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kodiak_cp::testing::{client_tls_trusting, start_memory, start_sqlite};
use kodiak_cp::tls::{CERT_FILE, KEY_FILE};

fn https_client(ca_file: &Path) -> reqwest::Client {
    let tls = client_tls_trusting(ca_file).unwrap();
    reqwest::Client::builder().use_preconfigured_tls(tls).build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_https_api_answers_with_the_persisted_certificate_and_a_restart_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let control_plane = start_sqlite(dir.path()).unwrap();
    let cert_file = dir.path().join(CERT_FILE);
    assert_eq!(control_plane.tls_cert_file(), Some(cert_file.as_path()));
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let modes = (mode(dir.path()), mode(&dir.path().join(KEY_FILE)), mode(&cert_file));
    assert_eq!(modes, (0o750, 0o600, 0o644), "the user's directory keeps its mode, only the key is private");
    let first = std::fs::read_to_string(&cert_file).unwrap();

    let https = control_plane.https_api_url().expect("the HTTPS API is on by default").to_owned();
    assert!(https.starts_with("https://127.0.0.1:"), "{https}");
    let index: serde_json::Value =
        https_client(&cert_file).get(&https).send().await.unwrap().error_for_status().unwrap().json().await.unwrap();
    assert!(index.get("version").is_some(), "the HTTPS API serves the same router: {index}");
    let meshes = https_client(&cert_file).get(format!("{https}/meshes")).send().await.unwrap();
    assert_eq!(meshes.status(), 200);
    control_plane.stop();

    let control_plane = start_sqlite(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), first, "a restart reuses the certificate");
    // A client that trusts only the first start's certificate still connects.
    let https = control_plane.https_api_url().unwrap().to_owned();
    let answer = https_client(&cert_file).get(&https).send().await.unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_trusting_another_certificate_is_refused_by_its_own_tls() {
    let control_plane = start_memory();
    let other = start_memory();
    let https = control_plane.https_api_url().unwrap().to_owned();
    let error = https_client(other.tls_cert_file().unwrap()).get(&https).send().await.unwrap_err();
    let chain = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate"), "{chain}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dp_server_answers_plaintext_with_a_400_that_says_to_use_tls() {
    let control_plane = start_memory();
    let https = control_plane.dp_server_url().to_owned();
    let plaintext = https.replacen("https://", "http://", 1);
    let response = reqwest::Client::new()
        .post(format!("{plaintext}/bootstrap"))
        .body("{}")
        .send()
        .await
        .expect("an HTTP answer, not a reset connection");
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("TLS only") && text.contains("https://"), "{text}");

    // Over TLS the same request reaches the bootstrap handler.
    let client = https_client(control_plane.tls_cert_file().unwrap());
    let response = client.post(format!("{https}/bootstrap")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("bootstrap request is not valid"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_certificate_is_served_and_a_key_that_does_not_match_stops_the_start() {
    // Two generated certificates stand in for the user's own files.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    drop((start_sqlite(a.path()).unwrap(), start_sqlite(b.path()).unwrap()));
    let mut config = kodiak_cp::testing::loopback_config();
    config.store.kind = kodiak_cp::config::StoreKind::Memory;
    let data = tempfile::tempdir().unwrap();
    config.store.data_dir = data.path().to_owned();
    config.general.tls_cert_file = Some(a.path().join(CERT_FILE));
    config.general.tls_key_file = Some(a.path().join(KEY_FILE));
    let control_plane = kodiak_cp::testing::start(config.clone()).unwrap();
    let https = control_plane.https_api_url().unwrap().to_owned();
    let answer = https_client(&a.path().join(CERT_FILE)).get(&https).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(!data.path().join(CERT_FILE).exists(), "nothing is generated when a certificate is given");
    control_plane.stop();

    config.general.tls_key_file = Some(b.path().join(KEY_FILE));
    let error = format!("{:#}", kodiak_cp::testing::start(config).err().expect("a refusal"));
    assert!(
        error.contains("does not belong") && error.contains(&b.path().join(KEY_FILE).display().to_string()),
        "{error}"
    );
}
