//! Serving the dp-server's connections. Sidecars hold one long-lived
//! HTTP/2 connection each, so the control plane checks they are alive:
//! TCP keepalive notices a host that went away, HTTP/2 PINGs notice a
//! sidecar that stopped answering; either closes the connection, and the
//! sidecar is withdrawn from its callers.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A PING every this long on an idle connection ...
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// ... must be answered within this long.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` until `stopped` turns true, then waits for open
/// connections to finish (ADS streams end at that same signal).
pub async fn serve(listener: TcpListener, router: Router, mut stopped: watch::Receiver<bool>) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(PING_INTERVAL).keep_alive_timeout(PING_TIMEOUT);
    let graceful = GracefulShutdown::new();
    loop {
        let connection = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let stream = match connection {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(%error, "cannot accept a sidecar connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tcp_keepalive(&stream);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a sidecar connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// A host that vanished without closing its connections (power loss,
/// network cut) is noticed within about a minute.
fn tcp_keepalive(connection: &TcpStream) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(error) = socket2::SockRef::from(connection).set_tcp_keepalive(&probes) {
        tracing::warn!(%error, "cannot turn on TCP keepalive for a sidecar connection");
    }
}
