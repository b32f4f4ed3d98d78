//! Looking at the mesh from outside, as a user would: HTTP requests and TCP
//! connections through a sidecar's outbound, and waiting for a condition
//! with a deadline (never a bare sleep).

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What an HTTP request through the mesh came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The test service instance that answered (`x-kodiak-instance`).
    pub instance: Option<String>,
}

/// One HTTP GET with a short timeout; a connection failure is status 0.
pub async fn get(url: &str) -> Reply {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap());
    match client.get(url).send().await {
        Ok(response) => Reply {
            status: response.status().as_u16(),
            instance: response
                .headers()
                .get("x-kodiak-instance")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        },
        Err(_) => Reply { status: 0, instance: None },
    }
}

/// Connects over TCP, reads the test service's greeting line (its instance
/// name), checks that a message is echoed back, and returns the name.
pub async fn tcp_greeting(address: &str) -> anyhow::Result<String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(address)).await??;
    let mut stream = BufReader::new(stream);
    let mut greeting = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut greeting)).await??;
    anyhow::ensure!(greeting.ends_with('\n'), "no greeting line (got {greeting:?})");
    stream.get_mut().write_all(b"ping through the mesh\n").await?;
    let mut echo = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut echo)).await??;
    anyhow::ensure!(echo == "ping through the mesh\n", "echo was {echo:?}");
    Ok(greeting.trim_end().to_owned())
}

/// Polls `check` every 50 ms until it returns `Some`, or panics naming
/// `what` once `timeout` passed.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
