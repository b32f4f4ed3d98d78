//! kodiak-dp with the real Envoy 1.40: the port check before it starts,
//! the graceful shutdown, several sidecars on one host, Envoy dying, and
//! Envoy dying with a killed kodiak-dp.

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

/// A stand-in control plane for web-1: a bootstrap Envoy runs without it.
fn web_1_control_plane() -> ControlPlane {
    ControlPlane::bootstrapping(json!({
        "bootstrap": static_bootstrap("web-1"),
        "dataplane": dataplane("web-1", support::closed_port()),
    }))
}

/// kodiak-dp for web-1 with its Envoy up; Envoy's pid.
fn start_web_1(cp: &ControlPlane) -> (Dp, i32) {
    let mut dp = Dp::start(dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()));
    let started = dp.wait_for_line("started Envoy (pid ", START);
    let pid = started.split("(pid ").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
    dp.wait_for_line("admin API at http://", START);
    (dp, pid)
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
    let cp = web_1_control_plane();
    let mut dp = Dp::start(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url, "--drain-time", "1s", "--concurrency", "1"])
            .args(["--dataplane-token", "the.dataplane.token"])
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
    // The drain carries the token the bootstrap did: only this sidecar may drain its Dataplane.
    assert_eq!(drains[0].json(), json!({"mesh": "default", "name": "web-1", "dataplaneToken": "the.dataplane.token"}));
    assert!(TcpStream::connect(&admin).is_err(), "Envoy's admin API still answers");
    assert_eq!(work_dirs(tmp.path()), Vec::<String>::new(), "the work directory is left behind");
}

/// A terminal's Ctrl-C reaches every process of the foreground group; Envoy
/// runs in a group of its own, so it still drains instead of quitting at once.
#[test]
fn ctrl_c_in_a_terminal_still_drains() {
    use std::os::unix::process::CommandExt;
    let cp = web_1_control_plane();
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
    let cp = web_1_control_plane();
    let (mut dp, pid) = start_web_1(&cp);
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

/// Two entries of the Dataplane on one address:port cannot both be Envoy
/// listeners; each later one is named with the first, and Envoy never starts.
#[test]
fn two_entries_on_one_port_are_both_named() {
    let port = support::closed_port();
    let mut returned = dataplane("web-1", port);
    returned["networking"]["inbound"]
        .as_array_mut()
        .unwrap()
        .push(json!({"port": port, "servicePort": 8081, "tags": {"kuma.io/service": "web-admin"}}));
    returned["networking"]["outbound"] = json!([{"port": port, "tags": {"kuma.io/service": "backend"}}]);
    let cp = ControlPlane::bootstrapping(json!({"bootstrap": static_bootstrap("web-1"), "dataplane": returned}));
    let mut dp = Dp::start(dp(&["run", "--name", "web-1", "--cp-address", &cp.url]).env("ENVOY_BIN", support::envoy()));
    let status = dp.wait_exit(START);
    let output = dp.output();
    assert_eq!(status.code(), Some(1), "{output}");
    for later in ["inbound networking.inbound[1] (service web-admin)", "outbound networking.outbound[0] (to backend)"] {
        assert!(
            output.contains(&format!(
                "{later}: 127.0.0.1:{port} is also where inbound networking.inbound[0] (service web) listens"
            )),
            "{output}"
        );
    }
    assert!(!output.contains("started Envoy"), "{output}");
}

/// Whether `pid` is a live process (a zombie waiting for its parent counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// SIGKILL leaves kodiak-dp no chance to stop Envoy; the kernel does it
/// (setpriv --pdeathsig), so the Envoy does not keep the Dataplane's xDS
/// connection and a restarted kodiak-dp is not refused.
#[test]
fn envoy_dies_with_a_kodiak_dp_killed_by_sigkill() {
    let cp = web_1_control_plane();
    let (mut dp, pid) = start_web_1(&cp);
    // Seconds after the start: the thread that spawned Envoy is still there.
    std::thread::sleep(Duration::from_secs(1));
    assert!(alive(pid), "Envoy died early:\n{}", dp.output());
    // setpriv has exec'd Envoy: the pid kodiak-dp logs and waits on is Envoy's.
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim(), "envoy");
    dp.signal(Signal::KILL);
    dp.wait_exit(Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = alive(pid);
    if survived {
        let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), Signal::KILL);
    }
    assert!(!survived, "Envoy (pid {pid}) outlived kodiak-dp by 5s:\n{}", dp.output());
}

/// Without setpriv Envoy starts directly, and kodiak-dp says what that costs.
#[test]
fn without_setpriv_envoy_starts_directly_with_a_warning() {
    let empty = tempfile::tempdir().unwrap();
    let cp = web_1_control_plane();
    let mut dp = Dp::start(
        dp(&["run", "--name", "web-1", "--cp-address", &cp.url, "--drain-time", "0s"])
            .env("ENVOY_BIN", support::envoy())
            .env("PATH", empty.path()),
    );
    let warning = dp.wait_for_line("no setpriv (util-linux) on PATH", START);
    assert!(warning.contains("would outlive a kodiak-dp killed with SIGKILL"), "{warning}");
    dp.wait_for_line("admin API at http://", START);
    dp.signal(Signal::TERM);
    assert_eq!(dp.wait_exit(Duration::from_secs(15)).code(), Some(0), "{}", dp.output());
}
