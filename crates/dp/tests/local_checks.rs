//! What kodiak-dp refuses before it talks to the control plane: no
//! Dataplane, a broken dataplane file, a missing template variable, no
//! Envoy, the wrong Envoy, a port of the dataplane file that is taken.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::{ControlPlane, dp, run_to_end};

const BOUND: Duration = Duration::from_secs(20);

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn an_invalid_dataplane_file_lists_every_violation_and_contacts_no_one() {
    let cp = ControlPlane::start(|_| (500, "{}".into()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    write(
        &file,
        "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  inbound:\n  - port: 70000\n    tags: {}\n",
    );
    let (status, output) = run_to_end(dp(&["run", "--cp-address", &cp.url, "-d"]).arg(&file), BOUND);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains(&format!("dataplane file {}: it is not a valid Dataplane", file.display())), "{output}");
    for field in
        ["networking.address", "networking.inbound[0].port", r#"networking.inbound[0].tags["kuma.io/service"]"#]
    {
        assert!(output.contains(&format!("  * {field}: ")), "no violation for {field}:\n{output}");
    }
    assert!(cp.received().is_empty(), "{:?}", cp.received());
}

#[test]
fn a_missing_template_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    write(&file, "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  address: {{ address }}\n");
    let (status, output) = run_to_end(dp(&["run", "-v", "name=web-1", "-d"]).arg(&file), BOUND);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("no value for {{ address }} (line 5); pass --dataplane-var address=VALUE"), "{output}");
}

#[test]
fn a_missing_envoy_binary_says_how_to_install_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-envoy");
    let (status, output) =
        run_to_end(dp(&["run", "--name", "web-1"]).env("ENVOY_BIN", &missing).current_dir(dir.path()), BOUND);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains(&missing.display().to_string()), "{output}");
    assert!(output.contains("scripts/install-envoy.sh"), "{output}");
}

/// kodiak-dp outside any repository, with an empty PATH: the search finds
/// nothing (inside the repository, .tools/bin/envoy above target/ would be found).
#[test]
fn no_envoy_anywhere_says_how_to_install_one() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("kodiak-dp");
    if std::fs::hard_link(support::DP, &copy).is_err() {
        std::fs::copy(support::DP, &copy).unwrap();
    }
    let mut command = std::process::Command::new(&copy);
    command.args(["run", "--name", "web-1"]).env_remove("ENVOY_BIN").env("PATH", dir.path()).current_dir(dir.path());
    let (status, output) = run_to_end(&mut command, BOUND);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("no Envoy binary found"), "{output}");
    assert!(output.contains("scripts/install-envoy.sh"), "{output}");
}

#[test]
fn another_envoy_version_is_refused_with_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    // Stands in for Envoy only in this check: it prints another version.
    let fake = dir.path().join("envoy");
    write(&fake, "#!/bin/sh\necho\necho \"$0  version: 0123abcd/1.39.2/Clean/RELEASE/BoringSSL\"\n");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, output) = run_to_end(dp(&["run", "--name", "web-1"]).env("ENVOY_BIN", &fake), BOUND);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("found Envoy 1.39.2 at {}, but kodiak-dp needs Envoy 1.40.x", fake.display())),
        "{output}"
    );
    assert!(output.contains("scripts/install-envoy.sh"), "{output}");
}

#[test]
fn version_names_kodiak_dp_and_its_envoy() {
    let output = dp(&["version"]).env("ENVOY_BIN", support::envoy()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.starts_with(&format!("kodiak-dp {}\n", env!("CARGO_PKG_VERSION"))), "{stdout}");
    assert!(stdout.contains("envoy 1.40."), "{stdout}");
}

#[test]
fn run_without_a_dataplane_names_both_ways_to_give_one() {
    let (status, output) = run_to_end(&mut dp(&["run"]), BOUND);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("<--dataplane-file <FILE>|--name <NAME>>"), "{output}");
}

/// kodiak-dp with `dataplane` as its file, against a control plane that
/// records what it gets: (exit status, log, what the control plane got).
fn run_with_file(dataplane: &serde_json::Value) -> (std::process::ExitStatus, String, Vec<support::Received>) {
    let cp = ControlPlane::start(|_| (500, "{}".into()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    write(&file, &dataplane.to_string());
    let (status, output) = run_to_end(
        dp(&["run", "--cp-address", &cp.url, "--connect-timeout", "1s", "-d"])
            .arg(&file)
            .env("ENVOY_BIN", support::envoy()),
        BOUND,
    );
    (status, output, cp.received())
}

/// With a file the Dataplane is known before the control plane is asked, so
/// a sidecar whose port is taken never registers it.
#[test]
fn a_taken_port_in_the_dataplane_file_stops_kodiak_dp_before_it_registers() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (status, output, received) = run_with_file(&support::dataplane("web-1", port));
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("inbound networking.inbound[0] (service web): 127.0.0.1:{port} is already in use")),
        "{output}"
    );
    assert!(received.is_empty(), "the Dataplane was sent: {received:?}");
}

#[test]
fn a_taken_admin_port_from_the_dataplane_file_is_named_before_it_registers() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut dataplane = support::dataplane("web-1", support::closed_port());
    dataplane["networking"]["admin"] = serde_json::json!({"port": port});
    let (status, output, received) = run_with_file(&dataplane);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains(&format!("Envoy's admin API: 127.0.0.1:{port} is already in use")), "{output}");
    assert!(received.is_empty(), "the Dataplane was sent: {received:?}");
}
