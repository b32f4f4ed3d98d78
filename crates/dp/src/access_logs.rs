//! TCP access logs (MeshAccessLog `tcp` backends). Envoy has no logger that
//! sends plain lines over TCP, so the control plane has Envoy write each
//! entry to a named pipe in the work directory as one JSON line,
//! `{"address": "<host:port>", "message": <line or object>}`, and kodiak-dp
//! reads the pipe and sends each message to its address over TCP: a string
//! as it is (it ends with its own newline), an object as compact JSON and a
//! newline.
//!
//! One connection per address is opened on its first entry and kept. An
//! entry whose address cannot be reached (within [`CONNECT_TIMEOUT`]) or
//! whose connection fails is dropped, not retried: a retried backlog would
//! grow without bound and delay every other address. After a failed
//! connection, the address's entries are dropped for [`RETRY_AFTER`] before
//! the next one connects again (one warning a second, not one an entry);
//! after a failed write, the next entry connects again at once.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rustix::fs::{CWD, Mode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::unix::pipe;

/// The pipe's name in the work directory.
pub const PIPE_FILE: &str = "kodiak-access-logs.pipe";
/// How long an address may take to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after a failed connection the next one to that address is tried.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longer lines are dropped (Envoy's entries are far shorter).
const MAX_LINE: usize = 1 << 20;

/// Creates the pipe in `work_dir` and forwards its entries on a task of
/// its own for as long as the runtime runs (the pipe is removed with the
/// task). Returns the pipe's path, which the control plane must write into
/// Envoy's configuration.
pub fn start(work_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = work_dir.join(PIPE_FILE);
    let pipe = AccessLogPipe::create(&path)
        .with_context(|| format!("cannot create the pipe for TCP access logs {}", path.display()))?;
    let path = pipe.path().to_owned();
    tracing::debug!("reading TCP access log entries from {}", path.display());
    tokio::spawn(async move {
        if let Err(error) = pipe.forward().await {
            tracing::warn!("TCP access logs stopped: reading their pipe failed: {error}");
        }
    });
    Ok(path)
}

/// The named pipe Envoy writes TCP access log entries to. It is removed
/// when dropped.
#[derive(Debug)]
pub struct AccessLogPipe {
    path: PathBuf,
    receiver: Option<pipe::Receiver>,
}

impl AccessLogPipe {
    /// Creates the pipe at `path` (replacing whatever is there), readable and
    /// writable by this user only, and opens it. Must be called inside the
    /// Tokio runtime. The pipe is opened for reading and writing, so it
    /// never reports an end when Envoy closes or restarts, and Envoy never
    /// waits for a reader.
    pub fn create(path: &Path) -> io::Result<AccessLogPipe> {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        rustix::fs::mkfifoat(CWD, path, Mode::RUSR | Mode::WUSR)?;
        let receiver = pipe::OpenOptions::new().read_write(true).open_receiver(path)?;
        Ok(AccessLogPipe { path: path.to_owned(), receiver: Some(receiver) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends every entry written to the pipe to its address, until reading
    /// the pipe fails.
    pub async fn forward(mut self) -> io::Result<()> {
        let Some(receiver) = self.receiver.take() else { return Ok(()) };
        let mut lines = BufReader::new(receiver);
        let mut destinations = Destinations::default();
        let mut line = Vec::new();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            if line.len() > MAX_LINE {
                tracing::warn!("dropping an access log entry of {} bytes (more than {MAX_LINE})", line.len());
                continue;
            }
            match entry(&line) {
                Some((address, message)) => destinations.send(&address, &message).await,
                None => tracing::warn!(
                    "dropping an access log entry that is not {{\"address\": ..., \"message\": ...}}: {}",
                    String::from_utf8_lossy(&line).trim_end()
                ),
            }
        }
    }
}

impl Drop for AccessLogPipe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The address and the bytes to send of one line of the pipe.
fn entry(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let address = value.get("address")?.as_str()?.to_owned();
    let message = match value.get("message")? {
        Value::String(text) => text.clone().into_bytes(),
        Value::Null => return None,
        other => {
            let mut bytes = serde_json::to_vec(other).ok()?;
            bytes.push(b'\n');
            bytes
        }
    };
    (!address.is_empty()).then_some((address, message))
}

/// The open connections, by address, and the addresses that could not be
/// reached lately.
#[derive(Default)]
struct Destinations {
    connections: HashMap<String, TcpStream>,
    unreachable: HashMap<String, Unreachable>,
}

/// An address that could not be reached: its entries are dropped without
/// trying again until `until`, so a collector that is down costs neither a
/// connection attempt nor a log line per entry.
struct Unreachable {
    until: tokio::time::Instant,
    dropped: u64,
}

impl Destinations {
    async fn send(&mut self, address: &str, message: &[u8]) {
        if let Some(unreachable) = self.unreachable.get_mut(address)
            && tokio::time::Instant::now() < unreachable.until
        {
            unreachable.dropped += 1;
            return;
        }
        if !self.connections.contains_key(address) {
            let reason = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    let dropped = self.unreachable.remove(address).map_or(0, |unreachable| unreachable.dropped);
                    tracing::info!(
                        "sending access logs to {address} ({dropped} entries dropped while it was unreachable)"
                    );
                    self.connections.insert(address.to_owned(), stream);
                    None
                }
                Ok(Err(error)) => Some(format!("cannot connect: {error}")),
                Err(_) => Some(format!("it did not accept within {CONNECT_TIMEOUT:?}")),
            };
            if let Some(reason) = reason {
                let until = tokio::time::Instant::now() + RETRY_AFTER;
                let unreachable =
                    self.unreachable.entry(address.to_owned()).or_insert(Unreachable { until, dropped: 0 });
                unreachable.until = until;
                unreachable.dropped += 1;
                tracing::warn!(
                    "dropping access log entries for {address} ({} so far): {reason}; trying again in {RETRY_AFTER:?}",
                    unreachable.dropped
                );
                return;
            }
        }
        let Some(stream) = self.connections.get_mut(address) else { return };
        if let Err(error) = stream.write_all(message).await {
            tracing::warn!("dropping an access log entry: sending to {address} failed: {error}");
            self.connections.remove(address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A collector on 127.0.0.1: its address, and each line it receives
    /// (on any connection).
    async fn collector() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (sender, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sender = sender.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stream).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let _ = sender.send(line);
                    }
                });
            }
        });
        (address, received)
    }

    /// The next line `collector` received (5 s at most).
    async fn next(received: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(5), received.recv()).await.unwrap().unwrap()
    }

    /// Reads from `stream` until it holds `expected` bytes (5 s at most).
    async fn read_exactly(stream: &mut TcpStream, expected: usize) -> String {
        let mut bytes = vec![0; expected];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut bytes)).await.unwrap().unwrap();
        String::from_utf8(bytes).unwrap()
    }

    /// Writes `lines` to the pipe the way Envoy does: a writer of its own.
    fn write(pipe: &Path, lines: &[String]) {
        let mut writer = std::fs::OpenOptions::new().write(true).open(pipe).unwrap();
        for line in lines {
            writer.write_all(line.as_bytes()).unwrap();
        }
    }

    fn envelope(address: &str, message: Value) -> String {
        format!("{}\n", serde_json::json!({"address": address, "message": message}))
    }

    #[tokio::test]
    async fn entries_reach_their_tcp_address_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = AccessLogPipe::create(&dir.path().join(PIPE_FILE)).unwrap();
        let path = pipe.path().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let forwarding = tokio::spawn(pipe.forward());
        write(
            &path,
            &[
                envelope(&address, "[start] GET /hello 200\n".into()),
                envelope(&address, serde_json::json!({"mesh": "demo", "status": "200"})),
            ],
        );
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
        let expected = "[start] GET /hello 200\n{\"mesh\":\"demo\",\"status\":\"200\"}\n";
        assert_eq!(read_exactly(&mut stream, expected.len()).await, expected);
        // A second writer (Envoy restarted) is read by the same streamer.
        write(&path, &[envelope(&address, "again\n".into())]);
        assert_eq!(read_exactly(&mut stream, 6).await, "again\n");
        assert!(!forwarding.is_finished());
        forwarding.abort();
    }

    #[tokio::test]
    async fn each_address_gets_its_own_entries_and_bad_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PIPE_FILE);
        std::fs::write(&path, "a regular file left over").unwrap();
        let pipe = AccessLogPipe::create(&path).unwrap();
        let ((one, mut one_received), (two, mut two_received)) = (collector().await, collector().await);
        // A port nothing listens on: bind one and let it go.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let forwarding = tokio::spawn(pipe.forward());
        write(
            &path,
            &[
                envelope(&one, "one-a\n".into()),
                "not json at all\n".to_owned(),
                envelope(&closed, "lost\n".into()),
                "{\"address\": \"\", \"message\": \"x\"}\n".to_owned(),
                envelope(&two, "two-a\n".into()),
                envelope(&one, "one-b\n".into()),
            ],
        );
        assert_eq!(next(&mut one_received).await, "one-a");
        assert_eq!(next(&mut two_received).await, "two-a");
        assert_eq!(next(&mut one_received).await, "one-b");
        assert!(one_received.try_recv().is_err() && two_received.try_recv().is_err());
        forwarding.abort();
        let _ = forwarding.await;
        assert!(!path.exists(), "the pipe is removed once the streamer is gone");
    }

    #[tokio::test]
    async fn an_unreachable_collector_is_tried_again_a_while_later_not_for_every_entry() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut destinations = Destinations::default();
        for _ in 0..3 {
            destinations.send(&address, b"lost\n").await;
        }
        assert_eq!(destinations.unreachable[&address].dropped, 3, "one attempt, then two dropped without one");
        // It comes up: entries are dropped until RETRY_AFTER has passed.
        let listener = TcpListener::bind(&address).await.unwrap();
        destinations.send(&address, b"still lost\n").await;
        assert!(destinations.connections.is_empty());
        // RETRY_AFTER has passed.
        destinations.unreachable.get_mut(&address).unwrap().until = tokio::time::Instant::now();
        destinations.send(&address, b"arrives\n").await;
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
        assert_eq!(read_exactly(&mut stream, 8).await, "arrives\n");
        assert!(destinations.unreachable.is_empty());
    }

    #[tokio::test]
    async fn a_collector_that_went_away_is_connected_again() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = AccessLogPipe::create(&dir.path().join(PIPE_FILE)).unwrap();
        let path = pipe.path().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let forwarding = tokio::spawn(pipe.forward());
        write(&path, &[envelope(&address, "first\n".into())]);
        let accept =
            || async { tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap().0 };
        let mut first = accept().await;
        assert_eq!(read_exactly(&mut first, 6).await, "first\n");
        drop(first);
        // Writes to a closed connection fail once the peer's reset comes
        // back: keep writing (bounded) until an entry arrives on a new one.
        let mut second = None;
        for attempt in 0..50 {
            write(&path, &[envelope(&address, format!("retry {attempt:02}\n").into())]);
            if let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await {
                second = Some(stream);
                break;
            }
        }
        let mut second = second.expect("the streamer connected again within 50 entries");
        let line = read_exactly(&mut second, 9).await;
        assert!(line.starts_with("retry "), "{line:?}");
        forwarding.abort();
    }

    /// Stops the Envoy it holds when dropped.
    struct Running(std::process::Child);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Envoy 1.40 writing the entries of two `tcp` backends (a text line and
    /// a JSON object, in the form kodiak-xds-gen generates) to the pipe: each
    /// request's lines reach the collector.
    #[tokio::test]
    async fn entries_envoy_writes_reach_the_collector() {
        let binary = crate::envoy_binary::find_with(std::env::var_os("ENVOY_BIN").map(PathBuf::from).as_deref())
            .expect("Envoy (scripts/install-envoy.sh installs it)");
        let dir = tempfile::tempdir().unwrap();
        let pipe = start(dir.path()).unwrap();
        let (collector, mut received) = collector().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let file_log = |message: Value| {
            serde_json::json!({"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": pipe, "log_format": {"json_format": {"address": collector, "message": message}}}})
        };
        let config = serde_json::json!({"static_resources": {"listeners": [{
            "name": "inbound", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "inbound",
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "hi"}}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                "access_log": [file_log("%REQ(:PATH)% %RESPONSE_CODE%\n".into()),
                               file_log(serde_json::json!({"path": "%REQ(:PATH)%"}))]}}]}]}]}});
        let config_file = dir.path().join("envoy.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let _envoy = Running(
            std::process::Command::new(binary)
                .args(["--disable-hot-restart", "--concurrency", "1", "--file-flush-interval-msec", "100", "-c"])
                .arg(&config_file)
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        // Up to 30 s for Envoy to listen; a connection without a request logs nothing.
        let mut attempts = 0;
        let mut stream = loop {
            match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(stream) => break stream,
                Err(error) => {
                    attempts += 1;
                    let log = std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default();
                    assert!(attempts < 600, "Envoy does not listen on {port}: {error}\n{log}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        stream.write_all(b"GET /e2e HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"hi") {
            let mut buffer = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.unwrap().unwrap();
            assert!(read > 0, "Envoy closed without answering: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..read]);
        }
        let mut lines = vec![next(&mut received).await, next(&mut received).await];
        lines.sort();
        assert_eq!(lines, ["/e2e 200", "{\"path\":\"/e2e\"}"]);
    }
}
