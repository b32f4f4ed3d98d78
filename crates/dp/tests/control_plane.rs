//! kodiak-dp and the control plane's `POST /bootstrap`: what it sends,
//! how it waits for a control plane that is not there, and how it shows
//! the control plane's refusals.

mod support;

use std::time::Duration;

use rustix::process::Signal;
use support::{ControlPlane, Dp, closed_port, dp, run_to_end};

#[test]
fn an_unreachable_control_plane_is_retried_with_backoff_until_a_signal() {
    let address = format!("http://127.0.0.1:{}", closed_port());
    let mut dp =
        Dp::start(dp(&["run", "--name", "web-1", "--cp-address", &address]).env("ENVOY_BIN", support::envoy()));
    let expected = format!("control plane at {address}/ is not reachable (");
    for (attempt, delay) in [(1, "500ms"), (2, "1s"), (3, "2s")] {
        let line = dp.wait_for_lines(&expected, attempt, Duration::from_secs(15));
        assert!(line.ends_with(&format!("; retrying in {delay}")), "{line}");
    }
    assert!(dp.is_running(), "{}", dp.output());
    dp.signal(Signal::TERM);
    let status = dp.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", dp.output());
    assert!(dp.output().contains("received SIGTERM before Envoy started"), "{}", dp.output());
}

#[test]
fn connect_timeout_gives_up() {
    let address = format!("http://127.0.0.1:{}", closed_port());
    let (status, output) = run_to_end(
        dp(&["run", "--name", "web-1", "--cp-address", &address, "--connect-timeout", "1s"])
            .env("ENVOY_BIN", support::envoy()),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("gave up after"), "{output}");
    assert!(output.contains(&format!("the control plane at {address}/ is not reachable")), "{output}");
}

#[test]
fn a_refusal_shows_the_control_planes_message_once_without_retrying() {
    let cp = ControlPlane::start(|_| {
        (
            400,
            r#"{"type":"/std-errors","status":400,"title":"Could not register the Dataplane","detail":"Resource is not valid",
                "invalid_parameters":[{"field":"networking.inbound[0].port","reason":"is already used by web-2"}]}"#
                .into(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, support::dataplane("{{ name }}", 10001).to_string()).unwrap();
    let (status, output) = run_to_end(
        dp(&["run", "--cp-address", &cp.url, "--xds-transport", "sotw", "--admin-port", "9911", "-v", "name=web-1"])
            .arg("-d")
            .arg(&file)
            .env("ENVOY_BIN", support::envoy()),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!(
            "the control plane at {}/ refused the bootstrap (400 Bad Request): \
             Could not register the Dataplane: Resource is not valid\n  * networking.inbound[0].port: is already used by web-2",
            cp.url
        )),
        "{output}"
    );

    let received = cp.received();
    assert_eq!(received.len(), 1, "a 4xx is not retried: {received:?}");
    assert_eq!((received[0].method.as_str(), received[0].path.as_str()), ("POST", "/bootstrap"));
    let request = received[0].json();
    assert_eq!(request["mesh"], "default");
    assert_eq!(request["name"], "web-1");
    assert_eq!(request["adminPort"], 9911);
    assert_eq!(request["xdsTransport"], "sotw");
    assert_eq!(request["version"]["kodiakDp"], env!("CARGO_PKG_VERSION"));
    assert!(request["version"]["envoy"].as_str().unwrap().starts_with("1.40."), "{request}");
    let registered: serde_json::Value = serde_json::from_str(request["dataplaneResource"].as_str().unwrap()).unwrap();
    assert_eq!(registered, support::dataplane("web-1", 10001));
}

#[test]
fn server_errors_are_retried_and_shown() {
    let cp = ControlPlane::start(|_| {
        (503, r#"{"type":"/std-errors","status":503,"title":"Not ready","detail":"the store is starting"}"#.into())
    });
    let (status, output) = run_to_end(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url, "--connect-timeout", "1200ms"])
            .env("ENVOY_BIN", support::envoy()),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("answered 503 Service Unavailable: Not ready: the store is starting; retrying in 500ms"),
        "{output}"
    );
    assert!(cp.received().len() >= 2, "{:?}", cp.received());
    let request = cp.received()[0].json();
    assert_eq!((request["mesh"].as_str(), request["name"].as_str()), (Some("default"), Some("web-1")));
    assert_eq!(request["adminPort"], 0);
    assert_eq!(request["xdsTransport"], "delta");
    assert!(request.get("dataplaneResource").is_none(), "{request}");
}

#[test]
fn an_answer_that_is_not_a_bootstrap_is_an_error() {
    let cp = ControlPlane::start(|_| (200, r#"{"hello":"world"}"#.into()));
    let (status, output) = run_to_end(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("is not a bootstrap"), "{output}");
}

/// The last wait is cut short at the limit and one more attempt is made
/// there: 0, 0.5 s, 1.5 s, 2 s.
#[test]
fn connect_timeout_tries_once_more_at_the_limit() {
    let address = format!("http://127.0.0.1:{}", closed_port());
    let mut dp = Dp::start(
        dp(&["run", "--name", "web-1", "--cp-address", &address, "--connect-timeout", "2s"])
            .env("ENVOY_BIN", support::envoy()),
    );
    let status = dp.wait_exit(Duration::from_secs(20));
    let output = dp.output();
    assert_eq!(status.code(), Some(1), "{output}");
    let retries: Vec<&str> =
        output.lines().filter(|l| l.contains("is not reachable (") && l.contains("; retrying in ")).collect();
    assert_eq!(retries.len(), 3, "{output}");
    assert!(retries[0].ends_with("retrying in 500ms"), "{output}");
    assert!(retries[1].ends_with("retrying in 1s"), "{output}");
    assert!(!retries[2].ends_with("retrying in 2s"), "the last wait is not cut short:\n{output}");
    let gave_up = output.split("gave up after ").nth(1).and_then(|rest| rest.split(':').next()).unwrap();
    let waited = humantime::parse_duration(gave_up).unwrap();
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}:\n{output}");
    assert!(waited < Duration::from_millis(2500), "gave up after {waited:?}:\n{output}");
}

const WRONG_PORT: &str = "does not look like a Kodiak dp-server (it answered 404 for /bootstrap): is --cp-address \
                          the dp-server port (default 5678), not the REST API (5681)?";

/// The REST API's answer to `POST /bootstrap` (kodiak-cp's `api::route`).
#[test]
fn the_rest_api_port_is_recognised_as_the_wrong_one() {
    let cp = ControlPlane::start(|_| {
        (
            404,
            r#"{"type":"/std-errors","status":404,"title":"Not Found","detail":"unknown resource collection \"bootstrap\"; known: meshes, dataplanes"}"#.into(),
        )
    });
    let (status, output) = run_to_end(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains(&format!("{}/ {WRONG_PORT}", cp.url)), "{output}");
    assert!(output.contains(r#"unknown resource collection "bootstrap""#), "{output}");
    assert_eq!(cp.received().len(), 1, "a 404 is not retried");
}

/// The diagnostics port (or any other server) answers a bare 404.
#[test]
fn a_bare_404_is_recognised_as_the_wrong_port() {
    let cp = ControlPlane::start(|_| (404, String::new()));
    let (status, output) = run_to_end(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains(&format!("{}/ {WRONG_PORT}", cp.url)), "{output}");
}

/// The dp-server's own 404 for `--name` of a Dataplane nobody applied.
#[test]
fn a_missing_dataplane_is_the_control_planes_answer_not_a_wrong_port() {
    let cp = ControlPlane::start(|_| {
        (
            404,
            r#"{"type":"/std-errors","status":404,"title":"Not Found","detail":"Dataplane default.web-1 does not exist: apply it first (kodiakctl apply -f dataplane.yaml), or start kodiak-dp with --dataplane-file so it registers one"}"#.into(),
        )
    });
    let (status, output) = run_to_end(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("refused the bootstrap (404 Not Found): Not Found: Dataplane default.web-1 does not exist"),
        "{output}"
    );
    assert!(!output.contains("does not look like"), "{output}");
}

#[test]
fn a_connected_sidecar_conflict_hints_at_a_leftover_envoy() {
    let cp = ControlPlane::start(|_| {
        (
            409,
            r#"{"type":"/std-errors","status":409,"title":"Conflict","detail":"Dataplane default.web-1 already has a connected sidecar: two sidecars cannot serve one Dataplane; stop the other kodiak-dp or give this one another name"}"#.into(),
        )
    });
    let (status, output) = run_to_end(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(
            "refused the bootstrap (409 Conflict): Conflict: Dataplane default.web-1 already has a connected sidecar"
        ),
        "{output}"
    );
    assert!(
        output.contains(
            "hint: an Envoy left over from a kodiak-dp that was killed (SIGKILL) may still hold the connection; \
             look for it with `pgrep -af envoy`"
        ),
        "{output}"
    );
}
