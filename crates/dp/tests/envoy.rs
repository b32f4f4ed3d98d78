//! kodiak-dp with the real Envoy 1.40: the port check before it starts,
//! the graceful shutdown, several sidecars on one host, and Envoy dying.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use rustix::process::Signal;
use serde_json::json;
use support::{ControlPlane, Dp, dataplane, dp, static_bootstrap};

const START: Duration = Duration::from_secs(30);

/// `GET path` on Envoy's admin API.
fn admin_get(admin: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn admin_address(line: &str) -> String {
    line.rsplit("http://").next().unwrap().trim().to_owned()
}

fn work_dirs(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_taken_inbound_port_stops_kodiak_dp_before_envoy_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cp = ControlPlane::bootstrapping(
        json!({"bootstrap": static_bootstrap("web-1"), "dataplane": dataplane("web-1", port)}),
    );
    let mut dp = Dp::start(dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()));
    let status = dp.wait_exit(START);
    let output = dp.output();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("inbound networking.inbound[0] (service web): 127.0.0.1:{port} is already in use")),
        "{output}"
    );
    assert!(!output.contains("started Envoy"), "{output}");
}

#[test]
fn envoy_runs_until_sigterm_then_drains_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrapping(json!({
        "bootstrap": static_bootstrap("web-1"),
        "dataplane": dataplane("web-1", support::closed_port()),
    }));
    let mut dp = Dp::start(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url, "--drain-time", "1s", "--concurrency", "1"])
            .env("ENVOY_BIN", support::envoy())
            .env("TMPDIR", tmp.path()),
    );
    let admin = admin_address(&dp.wait_for_line("admin API at http://", START));
    assert!(admin_get(&admin, "/ready").contains("LIVE"), "Envoy is not live");
    let dirs = work_dirs(tmp.path());
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].starts_with("kodiak-dp-default.web-1-"), "{dirs:?}");
    let bootstrap: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join(&dirs[0]).join("bootstrap.json")).unwrap()).unwrap();
    assert_eq!(bootstrap, static_bootstrap("web-1"));

    let signalled = std::time::Instant::now();
    dp.signal(Signal::TERM);
    let status = dp.wait_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    let output = dp.output();
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(took >= Duration::from_secs(1), "exited after {took:?}, before the drain time:\n{output}");
    assert!(output.contains("Envoy is draining its inbound listeners"), "{output}");
    assert!(output.contains("Envoy stopped (exit code 0)"), "{output}");

    let drains: Vec<_> = cp.received().into_iter().filter(|r| r.path == "/drain").collect();
    assert_eq!(drains.len(), 1, "{:?}", cp.received());
    assert_eq!(drains[0].json(), json!({"mesh": "default", "name": "web-1"}));
    assert!(TcpStream::connect(&admin).is_err(), "Envoy's admin API still answers");
    assert_eq!(work_dirs(tmp.path()), Vec::<String>::new(), "the work directory is left behind");
}

/// A terminal's Ctrl-C reaches every process of the foreground group; Envoy
/// runs in a group of its own, so it still drains instead of quitting at once.
#[test]
fn ctrl_c_in_a_terminal_still_drains() {
    use std::os::unix::process::CommandExt;
    let cp = ControlPlane::bootstrapping(json!({
        "bootstrap": static_bootstrap("web-1"),
        "dataplane": dataplane("web-1", support::closed_port()),
    }));
    let mut dp = Dp::start(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url, "--drain-time", "1s"])
            .env("ENVOY_BIN", support::envoy())
            .process_group(0),
    );
    dp.wait_for_line("admin API at http://", START);
    dp.signal_group(Signal::INT);
    assert_eq!(dp.wait_exit(Duration::from_secs(15)).code(), Some(0), "{}", dp.output());
    let output = dp.output();
    assert!(output.contains("received SIGINT: draining for 1s"), "{output}");
    assert!(output.contains("Envoy is draining its inbound listeners"), "{output}");
    assert!(output.contains("Envoy stopped (exit code 0)"), "{output}");
}

#[test]
fn two_sidecars_share_a_host() {
    let cp = ControlPlane::start(|path| {
        if path == "/bootstrap" {
            let body = json!({"bootstrap": static_bootstrap("web"), "dataplane": dataplane("web", 0)});
            (200, body.to_string())
        } else {
            (200, "{}".into())
        }
    });
    let start = |name: &str| {
        Dp::start(
            dp(&["run", "--name", name, "--cp-address", &cp.url, "--drain-time", "0s", "--concurrency", "1"])
                .env("ENVOY_BIN", support::envoy()),
        )
    };
    let (mut first, mut second) = (start("web-1"), start("web-2"));
    let first_admin = admin_address(&first.wait_for_line("admin API at http://", START));
    let second_admin = admin_address(&second.wait_for_line("admin API at http://", START));
    assert_ne!(first_admin, second_admin);
    for (dp, admin) in [(&mut first, &first_admin), (&mut second, &second_admin)] {
        assert!(admin_get(admin, "/ready").contains("LIVE"), "{}", dp.output());
        assert!(dp.is_running());
        dp.signal(Signal::TERM);
    }
    assert_eq!(first.wait_exit(Duration::from_secs(15)).code(), Some(0), "{}", first.output());
    assert_eq!(second.wait_exit(Duration::from_secs(15)).code(), Some(0), "{}", second.output());
}

#[test]
fn when_envoy_dies_kodiak_dp_exits_with_its_status() {
    let cp = ControlPlane::bootstrapping(json!({
        "bootstrap": static_bootstrap("web-1"),
        "dataplane": dataplane("web-1", support::closed_port()),
    }));
    let mut dp = Dp::start(dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()));
    let started = dp.wait_for_line("started Envoy (pid ", START);
    dp.wait_for_line("admin API at http://", START);
    let pid: i32 = started.split("(pid ").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), Signal::KILL).unwrap();
    let status = dp.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(128 + 9), "{}", dp.output());
    assert!(dp.output().contains("Envoy exited by itself (killed by signal 9)"), "{}", dp.output());
}

#[test]
fn a_bootstrap_envoy_rejects_ends_kodiak_dp_with_envoys_exit_code() {
    let cp = ControlPlane::bootstrapping(json!({
        "bootstrap": {"node": {"id": "default.web-1"}, "no_such_field": true},
        "dataplane": dataplane("web-1", support::closed_port()),
    }));
    let mut dp = Dp::start(dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()));
    let status = dp.wait_exit(START);
    assert_eq!(status.code(), Some(1), "{}", dp.output());
    assert!(dp.output().contains("Envoy exited by itself (exit code 1)"), "{}", dp.output());
}
