//! Serving connections of the dp-server (and the HTTPS API, which shares
//! this loop), over TLS or plaintext. Sidecars hold one long-lived HTTP/2
//! connection each, so the control plane checks they are alive: TCP
//! keepalive notices a host that went away, HTTP/2 PINGs notice a sidecar
//! that stopped answering; either closes the connection, and the sidecar
//! is withdrawn from its callers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A PING every this long on an idle connection ... Sidecars ping every
/// `ADS_KEEPALIVE_INTERVAL_SECONDS` themselves, and the server's timer does
/// not count their PINGs as activity, so an interval as short would double
/// the idle traffic of thousands of connections: this one is the fallback
/// for a sidecar whose Envoy stopped answering.
const PING_INTERVAL: Duration = Duration::from_secs(2 * kodiak_api::bootstrap::ADS_KEEPALIVE_INTERVAL_SECONDS);
/// ... must be answered within this long.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that opened a connection must finish the TLS handshake this soon.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plaintext HTTP client gets from a TLS-only port, so that curl or
/// a kodiak-dp given `http://` says what is wrong instead of "connection reset".
pub const PLAINTEXT_REFUSAL: &str = "this port speaks TLS only: use https:// (for kodiak-dp: --cp-address https://HOST:PORT --ca-cert-file <the control plane's certificate>)\n";

/// Serves `router` until `stopped` turns true, then waits for open
/// connections to finish (ADS streams end at that same signal). With
/// `tls`, every connection must be TLS.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(PING_INTERVAL).keep_alive_timeout(PING_TIMEOUT);
    let builder = Arc::new(builder);
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        let connection = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match connection {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tcp_keepalive(&stream);
        // The peer's address, as axum's ConnectInfo: the HTTPS API tells requests from this host by it.
        let router = router.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let connection = Connection { builder: builder.clone(), router, watcher: graceful.watcher() };
        match &acceptor {
            Some(acceptor) => tokio::spawn(connection.serve_tls(stream, acceptor.clone())),
            None => tokio::spawn(connection.serve(TokioIo::new(stream))),
        };
    }
    graceful.shutdown().await;
    Ok(())
}

/// One accepted connection and what it is served with.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    watcher: Watcher,
}

impl Connection {
    async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor) {
        let mut first = [0u8; 1];
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
            Ok(Ok(1)) => return refuse_plaintext(stream).await,
            _ => return,
        }
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => self.serve(TokioIo::new(tls)).await,
            Ok(Err(error)) => tracing::info!(%error, "a TLS handshake failed"),
            Err(_) => tracing::info!("a TLS handshake did not finish within {HANDSHAKE_TIMEOUT:?}"),
        }
    }

    async fn serve<I>(self, io: TokioIo<I>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.router);
        let connection = self.watcher.watch(self.builder.serve_connection(io, service).into_owned());
        if let Err(error) = connection.await {
            tracing::debug!(%error, "a connection ended with an error");
        }
    }
}

/// Answers a plaintext request on a TLS port with a 400 saying so.
async fn refuse_plaintext(mut stream: TcpStream) {
    tracing::info!(peer = ?stream.peer_addr().ok(), "refused a plaintext connection on a TLS-only port");
    // Read what the client sent first: closing with unread data would reset
    // the connection before the client sees the answer.
    let mut request = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut request)).await;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PLAINTEXT_REFUSAL}",
        PLAINTEXT_REFUSAL.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A host that vanished without closing its connections (power loss,
/// network cut) is noticed within about a minute.
fn tcp_keepalive(connection: &TcpStream) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(error) = socket2::SockRef::from(connection).set_tcp_keepalive(&probes) {
        tracing::warn!(%error, "cannot turn on TCP keepalive for a connection");
    }
}
