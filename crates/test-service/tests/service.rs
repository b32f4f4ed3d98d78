//! Runs the real binary on loopback ports chosen by the kernel and talks to
//! it over raw sockets, so keep-alive and the exact bytes are what is tested.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The service under test; killed when dropped, so a failing test leaves nothing running.
struct Service {
    child: Child,
    http: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kodiak-test-service"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // If the service dies before its ready line, read_line sees EOF at once.
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = |kind: &str| {
        line.split_whitespace().find_map(|token| token.strip_prefix(&format!("{kind}="))).map(|a| a.parse().unwrap())
    };
    let service = Service { http: address("http"), tcp: address("tcp"), child };
    assert!(line.contains("ready:"), "no ready line: {line:?}");
    service
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Sends one request and reads exactly one response (by Content-Length),
/// leaving the connection open for the next one.
fn exchange(reader: &mut BufReader<TcpStream>, request: &str) -> HttpResponse {
    reader.get_mut().write_all(request.as_bytes()).unwrap();
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line.split_whitespace().nth(1).unwrap_or_else(|| panic!("{status_line:?}")).parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut response = HttpResponse { status, headers, body: String::new() };
    let length: usize = response.header("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    response.body = String::from_utf8(body).unwrap();
    response
}

#[test]
fn http_answers_name_the_instance_and_keep_the_connection_alive() {
    let service = start(&["--name", "b-1", "--http", "127.0.0.1:0"]);
    let mut connection = BufReader::new(connect(service.http.unwrap()));

    let first = exchange(
        &mut connection,
        "POST /orders?id=7 HTTP/1.1\r\nHost: backend\r\nX-Custom: one\r\nX-Custom: two\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-kodiak-instance"), Some("b-1"));
    let body = first.json();
    assert_eq!(body["instance"], "b-1");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/orders?id=7");
    assert_eq!(body["headers"]["host"], "backend");
    assert_eq!(body["headers"]["x-custom"], "one, two");

    // Same socket: keep-alive is HTTP/1.1's default.
    let second = exchange(&mut connection, "GET /status/503 HTTP/1.1\r\nHost: backend\r\n\r\n");
    assert_eq!(second.status, 503);
    assert_eq!(second.header("x-kodiak-instance"), Some("b-1"));
    assert_eq!(second.json()["path"], "/status/503");

    let no_content = exchange(&mut connection, "GET /status/204 HTTP/1.1\r\nHost: backend\r\n\r\n");
    assert_eq!(no_content.status, 204);
    assert_eq!(no_content.body, "");

    let bad = exchange(&mut connection, "GET /status/abc HTTP/1.1\r\nHost: backend\r\n\r\n");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("/status/CODE"), "{}", bad.body);
}

#[test]
fn delay_waits_before_answering() {
    let service = start(&["--name", "slow-1", "--http", "127.0.0.1:0"]);
    let mut connection = BufReader::new(connect(service.http.unwrap()));
    let started = Instant::now();
    let response = exchange(&mut connection, "GET /delay/300 HTTP/1.1\r\nHost: x\r\n\r\n");
    let took = started.elapsed();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["instance"], "slow-1");
    assert!(took >= Duration::from_millis(300), "answered after {took:?}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[test]
fn fail_first_fails_as_often_as_asked_per_path_and_query() {
    let service = start(&["--name", "flaky-1", "--http", "127.0.0.1:0"]);
    let mut connection = BufReader::new(connect(service.http.unwrap()));
    let mut get = |target: &str| exchange(&mut connection, &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
    for attempt in 1..=2 {
        let response = get("/fail-first/2?key=a");
        assert_eq!((response.status, response.header("x-kodiak-attempt")), (503, Some(&*attempt.to_string())));
    }
    assert_eq!(get("/fail-first/2?key=a").status, 200);
    assert_eq!(get("/fail-first/2?key=b").status, 503, "another key counts apart");
    assert_eq!(get("/fail-first/0").status, 200);
    assert_eq!(get("/fail-first/x").status, 400);
}

#[test]
fn tcp_greets_with_the_name_then_echoes() {
    let service = start(&["--name", "db-2", "--tcp", "127.0.0.1:0"]);
    assert!(service.http.is_none());
    let mut reader = BufReader::new(connect(service.tcp.unwrap()));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert_eq!(greeting, "db-2\n");
    for message in ["ping\n", "a longer line with spaces\n"] {
        reader.get_mut().write_all(message.as_bytes()).unwrap();
        let mut echoed = String::new();
        reader.read_line(&mut echoed).unwrap();
        assert_eq!(echoed, message);
    }
}

#[test]
fn serves_http_and_tcp_at_once() {
    let service = start(&["--name", "both", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"]);
    let mut http = BufReader::new(connect(service.http.unwrap()));
    assert_eq!(exchange(&mut http, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").header("x-kodiak-instance"), Some("both"));
    let mut greeting = String::new();
    BufReader::new(connect(service.tcp.unwrap())).read_line(&mut greeting).unwrap();
    assert_eq!(greeting, "both\n");
}

#[test]
fn refuses_to_start_with_nothing_to_serve() {
    let output = Command::new(env!("CARGO_BIN_EXE_kodiak-test-service")).args(["--name", "x"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--http") && stderr.contains("--tcp"), "{stderr}");
}
