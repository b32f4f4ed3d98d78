//! kodiak-test-service: a workload for demos and end-to-end tests. Every
//! answer names the instance that gave it, so a test sees where the mesh
//! sent a request.
//!
//! HTTP (HTTP/1.1 with keep-alive, and HTTP/2 with prior knowledge): any
//! method and path answers `200` with the header `x-kodiak-instance: NAME`
//! and a JSON body `{"instance", "method", "path", "headers"}`;
//! `/status/CODE` answers CODE, `/delay/MS` waits MS milliseconds first,
//! `/fail-first/N` answers 503 to the first N requests for that path and
//! query (add `?key=...` to count apart) and 200 after, numbering each
//! attempt in `x-kodiak-attempt`.
//! TCP: on connect it writes `NAME\n`, then echoes every byte back.
//!
//! Once every socket is bound it prints one line on stdout,
//! `kodiak-test-service NAME ready: http=ADDR tcp=ADDR`, with the real
//! addresses, so callers can ask for port 0 and read the ports back.

mod http;
mod tcp;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "An HTTP and TCP echo service that says which instance answered",
    after_help = "Examples:\n  \
        kodiak-test-service --name backend-1 --http 127.0.0.1:8080\n  \
        kodiak-test-service --name db-1 --tcp 127.0.0.1:5432\n  \
        kodiak-test-service --name b-1 --http 127.0.0.1:0 --tcp 127.0.0.1:0   # ports chosen by the kernel, see the ready line"
)]
struct Cli {
    /// The instance name, returned in `x-kodiak-instance`, in JSON bodies and as the TCP greeting.
    #[arg(long)]
    name: String,
    /// Serve HTTP on this address (repeatable; port 0 lets the kernel choose).
    #[arg(long, value_name = "ADDR:PORT")]
    http: Vec<SocketAddr>,
    /// Serve the TCP greeting and echo on this address (repeatable; port 0 lets the kernel choose).
    #[arg(long, value_name = "ADDR:PORT")]
    tcp: Vec<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.http.is_empty() && cli.tcp.is_empty() {
        anyhow::bail!("nothing to serve: give at least one --http ADDR:PORT or --tcp ADDR:PORT");
    }
    let name: std::sync::Arc<str> = cli.name.into();
    let mut ready = format!("kodiak-test-service {name} ready:");
    let mut servers = JoinSet::new();
    for (kind, addresses) in [("http", &cli.http), ("tcp", &cli.tcp)] {
        for address in addresses {
            let listener =
                TcpListener::bind(address).await.with_context(|| format!("cannot listen for {kind} on {address}"))?;
            ready.push_str(&format!(" {kind}={}", listener.local_addr()?));
            let name = name.clone();
            match kind {
                "http" => servers.spawn(http::serve(listener, name)),
                _ => servers.spawn(tcp::serve(listener, name)),
            };
        }
    }
    // println! flushes at the newline only on a terminal; tests read a pipe.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{ready}")?;
        stdout.flush()?;
    }
    // A server only returns when its listener fails.
    if let Some(result) = servers.join_next().await {
        result??;
    }
    Ok(())
}
