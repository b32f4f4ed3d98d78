//! Helpers for running the real kodiak-dp binary: a stand-in for the
//! control plane's HTTP answers (only `/bootstrap` and `/drain`; the real
//! dp-server is exercised by the end-to-end tests), the real Envoy 1.40,
//! and a handle on a running kodiak-dp that collects its log.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const DP: &str = env!("CARGO_BIN_EXE_kodiak-dp");

/// The real Envoy, installed by the project's script (fast when present).
pub fn envoy() -> PathBuf {
    static ENVOY: OnceLock<PathBuf> = OnceLock::new();
    ENVOY
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-envoy.sh");
            let output = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().unwrap();
            assert!(output.status.success(), "{} failed", script.display());
            let stdout = String::from_utf8(output.stdout).unwrap();
            PathBuf::from(stdout.lines().last().unwrap().trim())
        })
        .clone()
}

/// One request the stand-in control plane received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Answers each request with `answer(path) -> (status, JSON body)`, one
/// request per connection, and records what it got.
pub struct ControlPlane {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl ControlPlane {
    pub fn start(answer: impl Fn(&str) -> (u16, String) + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(request) = read_request(&stream) {
                    let (status, body) = answer(&request.path);
                    log.lock().unwrap().push(request);
                    let _ = write!(
                        &stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        });
        Self { url, received }
    }

    /// Answers `/bootstrap` with `response` and everything else with `{}`.
    pub fn bootstrapping(response: Value) -> Self {
        let body = response.to_string();
        Self::start(move |path| if path == "/bootstrap" { (200, body.clone()) } else { (200, "{}".into()) })
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received { method, path, body: String::from_utf8(body).ok()? })
}

/// A valid Dataplane document with one inbound on 127.0.0.1:`inbound_port`.
pub fn dataplane(name: &str, inbound_port: u16) -> Value {
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": inbound_port, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}]
        }
    })
}

/// A bootstrap Envoy accepts without any control plane: admin on a
/// kernel-chosen port and one static inbound TCP listener.
pub fn static_bootstrap(name: &str) -> Value {
    json!({
        "node": {"id": format!("default.{name}"), "cluster": "web"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "inbound:127.0.0.1:0",
                "traffic_direction": "INBOUND",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "inbound", "cluster": "app"
                    }
                }]}]
            }],
            "clusters": [{
                "name": "app", "type": "STATIC",
                "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}
                }}]}]}
            }]
        }
    })
}

/// A running kodiak-dp; its stderr is collected line by line. Dropping it
/// stops it (SIGTERM twice: no drain wait), then kills it if it hangs.
pub struct Dp {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    pub started: Instant,
}

impl Dp {
    pub fn start(command: &mut Command) -> Dp {
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[kodiak-dp] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Dp { child, lines, started: Instant::now() }
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until `count` log lines contain `needle`; returns the last one.
    pub fn wait_for_lines(&mut self, needle: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let matching: Vec<String> =
                self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).cloned().collect();
            if matching.len() >= count {
                return matching[count - 1].clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100)); // let the reader thread catch up
                panic!("kodiak-dp exited ({status}) before logging {needle:?}:\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in kodiak-dp's log within {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_lines(needle, 1, timeout)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, signal);
    }

    /// To the process group whose leader kodiak-dp is (started with `process_group(0)`).
    pub fn signal_group(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process_group(pid, signal).unwrap();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(Instant::now() < deadline, "kodiak-dp still runs after {timeout:?}:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dp {
    fn drop(&mut self) {
        if self.is_running() {
            self.signal(rustix::process::Signal::TERM);
            std::thread::sleep(Duration::from_millis(200));
            self.signal(rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `kodiak-dp ARGS` with a clean environment for the variables it reads.
pub fn dp(args: &[&str]) -> Command {
    let mut command = Command::new(DP);
    command.args(args).env_remove("KODIAK_DP_CP_ADDRESS").env_remove("ENVOY_BIN").env_remove("KODIAK_DP_LOG_LEVEL");
    command
}

/// Runs kodiak-dp to completion (bounded) and returns (status, stderr).
pub fn run_to_end(command: &mut Command, timeout: Duration) -> (ExitStatus, String) {
    let mut dp = Dp::start(command);
    let status = dp.wait_exit(timeout);
    let output = dp.output();
    (status, output)
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
