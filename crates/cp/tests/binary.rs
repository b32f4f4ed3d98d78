//! The `kodiak-cp` binary as a user runs it: help, start, readiness,
//! refusal of a second instance, and a clean exit on SIGTERM.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_kodiak-cp");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(data_dir: &std::path::Path, api_port: u16, diagnostics_port: u16) -> Child {
    Command::new(BINARY)
        .args(["run", "--data-dir"])
        .arg(data_dir)
        .args(["--api-port", &api_port.to_string(), "--diagnostics-port", &diagnostics_port.to_string()])
        .args(["--api-https-port", &free_port().to_string(), "--dp-server-port", &free_port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `/ready` answers 200, or fails after a deadline.
fn wait_ready(diagnostics_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{diagnostics_port}/ready");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    while Instant::now() < deadline {
        let ready =
            runtime.block_on(async { reqwest::get(&url).await.map(|r| r.status().is_success()).unwrap_or(false) });
        if ready {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("kodiak-cp did not become ready within 30s");
}

fn wait_exit(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "kodiak-cp did not exit within 30s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn help_documents_the_environment() {
    let output = Command::new(BINARY).args(["run", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in ["KODIAK_STORE_TYPE", "KODIAK_API_SERVER_HTTP_PORT", "--config-file", "--store", "--data-dir"] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn runs_refuses_a_twin_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (api_port, diagnostics_port) = (free_port(), free_port());
    let first = start(dir.path(), api_port, diagnostics_port);
    wait_ready(diagnostics_port);

    let twin = wait_exit(start(dir.path(), free_port(), free_port()));
    assert!(!twin.status.success());
    let message = String::from_utf8_lossy(&twin.stderr);
    assert!(message.contains("already in use by another kodiak-cp"), "{message}");

    let killed = Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let output = wait_exit(first);
    assert!(output.status.success(), "exit status {:?}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("received SIGTERM") && log.contains("control plane stopped"), "{log}");
}

#[test]
fn bad_configuration_is_named() {
    let output = Command::new(BINARY)
        .args(["run", "--store", "memory"])
        .env("KODIAK_API_SERVER_HTTP_PORT", "not-a-port")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("KODIAK_API_SERVER_HTTP_PORT"), "{message}");
}

#[test]
fn a_new_data_directory_and_its_database_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("new").join("data");
    let (api_port, diagnostics_port) = (free_port(), free_port());
    // Under the common umask 022 new files would be world-readable.
    let child = Command::new("sh")
        .args(["-c", "umask 022 && exec \"$@\"", "sh", BINARY, "run", "--data-dir"])
        .arg(&data_dir)
        .args(["--api-port", &api_port.to_string(), "--diagnostics-port", &diagnostics_port.to_string()])
        .args(["--api-https-port", &free_port().to_string(), "--dp-server-port", &free_port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(diagnostics_port);
    let mode = |name: &str| {
        let path = data_dir.join(name);
        std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
    };
    let modes = [("", mode("")), ("kodiak.db", mode("kodiak.db")), ("kodiak.db-wal", mode("kodiak.db-wal"))];
    let shm = mode("kodiak.db-shm");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = wait_exit(child);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(modes[0].1, 0o700, "the data directory");
    for (name, mode) in modes.into_iter().skip(1).chain([("kodiak.db-shm", shm)]) {
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
}
