//! Applications on 127.0.0.1 and plain HTTP/1.1 requests to them or to Envoy.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

/// An application on a free port of 127.0.0.1, handling each connection
/// with `handle` on a thread of its own.
pub fn serve(handle: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || handle(stream));
        }
    });
    port
}

/// A TCP application sending back what it reads.
pub fn echo_app(mut stream: TcpStream) {
    let mut reader = stream.try_clone().unwrap();
    let _ = std::io::copy(&mut reader, &mut stream);
}

/// An HTTP response as the client sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// GETs `path` with host `host` from 127.0.0.1:`port` over one HTTP/1.1
/// connection (the answer must come within 10 s); a chunked body is joined.
pub fn http_get(port: u16, host: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response from {port}: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok());
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let status = status.unwrap_or_else(|| panic!("no status: {text:?}"));
    let mut response = Response { status, headers, body: String::new() };
    response.body =
        if response.header("transfer-encoding") == Some("chunked") { dechunk(body) } else { body.to_owned() };
    response
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

/// Sends `data` (if any) to `port`, closes the sending side and returns
/// everything it sends back until it closes the connection.
pub fn exchange(port: u16, data: &str) -> String {
    talk(port, data, true)
}

/// Sends `data` (if any) to `port` (then half-closes if `half_close`), and
/// returns everything it sends back until it closes the connection (panics
/// if it does not within 10 s). HTTP proxies take a half-close as the end
/// of the connection, so a request keeps its side open.
pub fn talk(port: u16, data: &str, half_close: bool) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if !data.is_empty() {
        // A refused connection may be reset while the data is written.
        let _ = stream.write_all(data.as_bytes());
        if half_close {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("port {port} neither answered nor closed within 10 s (got {bytes:?})")
            }
            // Reset: closed, what came before stays.
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
