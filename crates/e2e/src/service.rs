//! kodiak-test-service instances on kernel-chosen loopback ports.

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::binary;

pub struct TestService {
    pub name: String,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    _child: Child,
}

impl TestService {
    /// Starts an instance serving HTTP and TCP on 127.0.0.1.
    pub async fn start(name: &str) -> TestService {
        let mut child = Command::new(binary("kodiak-test-service"))
            .args(["--name", name, "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kodiak-test-service starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = lines.next_line().await.ok().flatten().expect("kodiak-test-service prints its ready line");
        let address = |kind: &str| -> SocketAddr {
            let prefix = format!("{kind}=");
            ready
                .split_whitespace()
                .find_map(|word| word.strip_prefix(&prefix))
                .and_then(|address| address.parse().ok())
                .unwrap_or_else(|| panic!("no {kind} address in {ready:?}"))
        };
        TestService { name: name.to_owned(), http: address("http"), tcp: address("tcp"), _child: child }
    }
}
