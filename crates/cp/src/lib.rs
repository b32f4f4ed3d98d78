//! The Kodiak control plane: configuration, storage wiring, the REST API
//! (HTTP and HTTPS), the dp-server and the diagnostics server, started and
//! stopped as one unit.

pub mod api;
pub mod config;
pub mod data_dir;
mod defaults;
mod diagnostics;
mod dp_server;
mod secrets;
pub mod testing;
pub mod tls;
mod tokens;
mod xds;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use kodiak_store::{MemoryStore, ResourceStore};
use kodiak_store_sql::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, Listen, StoreKind};
use crate::data_dir::DataDirLock;

/// A started control plane. Stop it with [`RunningControlPlane::shutdown`].
pub struct RunningControlPlane {
    api_address: SocketAddr,
    https_api_address: Option<SocketAddr>,
    diagnostics_address: SocketAddr,
    dp_server_address: SocketAddr,
    tls_cert_file: Option<PathBuf>,
    stop: watch::Sender<bool>,
    servers: JoinSet<std::io::Result<()>>,
    shutdown_timeout: std::time::Duration,
    /// The SQLite store, closed on shutdown so its write-ahead log is folded in.
    sqlite: Option<Arc<SqliteStore>>,
    _lock: Option<DataDirLock>,
}

impl RunningControlPlane {
    pub fn api_address(&self) -> SocketAddr {
        self.api_address
    }

    /// The HTTPS API, unless `apiServer.https.enabled` is false.
    pub fn https_api_address(&self) -> Option<SocketAddr> {
        self.https_api_address
    }

    /// The certificate file the dp-server and the HTTPS API present (what
    /// `kodiak-dp --ca-cert-file` is given), when either serves TLS.
    pub fn tls_cert_file(&self) -> Option<&Path> {
        self.tls_cert_file.as_deref()
    }

    pub fn diagnostics_address(&self) -> SocketAddr {
        self.diagnostics_address
    }

    pub fn dp_server_address(&self) -> SocketAddr {
        self.dp_server_address
    }

    /// Stops accepting connections, lets in-flight requests finish (up to
    /// `general.shutdownTimeout`), then releases the data directory.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while let Some(result) = self.servers.join_next().await {
                if let Ok(Err(error)) = result {
                    tracing::warn!(%error, "server stopped with an error");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(timeout = ?self.shutdown_timeout, "in-flight requests did not finish in time; closing them");
            self.servers.abort_all();
        }
        if let Some(sqlite) = &self.sqlite {
            sqlite.close().await;
        }
        tracing::info!("control plane stopped");
    }
}

/// Opens the store, makes sure the defaults exist and starts the servers.
pub async fn start(config: Config) -> anyhow::Result<RunningControlPlane> {
    let (store, sqlite, lock): (Arc<dyn ResourceStore>, _, _) = match config.store.kind {
        StoreKind::Memory => (Arc::new(MemoryStore::new()), None, None),
        StoreKind::Sqlite => {
            let lock = DataDirLock::acquire(&config.store.data_dir)?;
            let sqlite = Arc::new(
                SqliteStore::open(&config.store.data_dir)
                    .await
                    .with_context(|| format!("cannot open the store in {}", config.store.data_dir.display()))?,
            );
            (sqlite.clone(), Some(sqlite), Some(lock))
        }
    };
    match config.store.kind {
        StoreKind::Memory => tracing::info!("using the in-memory store: nothing is kept after exit"),
        StoreKind::Sqlite => tracing::info!(data_dir = %config.store.data_dir.display(), "using the SQLite store"),
    }
    if !config.defaults.skip_mesh_creation {
        defaults::ensure_default_mesh(store.as_ref()).await?;
    }

    let https = config.api_server.https.enabled;
    let tls = match config.dp_server.tls_enabled || https {
        true => Some(tls::setup(&config, &hostname()).await?),
        false => None,
    };
    if !config.dp_server.tls_enabled {
        tracing::warn!(
            "the dp-server serves plaintext (dpServer.tlsEnabled is false): dataplane tokens and proxy configuration cross the network unencrypted"
        );
    }

    let api_listener = bind(&config.api_server.http, "REST API").await?;
    let https_listener = match https {
        true => Some(bind(&config.api_server.https.listen(), "HTTPS REST API").await?),
        false => None,
    };
    let diagnostics_listener = bind(&config.diagnostics.server, "diagnostics").await?;
    let dp_server_listener = bind(&config.dp_server.server, "dp-server").await?;
    let api_address = api_listener.local_addr()?;
    let https_api_address = https_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let diagnostics_address = diagnostics_listener.local_addr()?;
    let dp_server_address = dp_server_listener.local_addr()?;

    let (stop, stopped) = watch::channel(false);
    tokens::start(store.clone(), config.api_server.authn.tokens.bootstrap_admin_token, api_address).await?;
    if config.dp_server.authn.dp_proxy.kind == config::DpProxyAuthn::None {
        tracing::warn!(
            "sidecars are not authenticated (dpServer.authn.dpProxy.type is none): anything that reaches the dp-server can register and serve any Dataplane"
        );
    }
    let instance_id = instance_id();
    let (xds, ads) = xds::Xds::start(store.clone(), &config, &instance_id, stopped.clone()).await?;
    let state = Arc::new(api::ApiState {
        store: store.clone(),
        config: config.clone(),
        instance_id,
        hostname: hostname(),
        insights: xds.insights.clone(),
        cache: xds.cache.clone(),
    });
    let dp_tls = tls.as_ref().filter(|_| config.dp_server.tls_enabled);
    let dp_state = Arc::new(dp_server::DpServerState {
        xds,
        address: dp_server_address,
        tls_chain: dp_tls.map(|tls| tls.pair.chain_pem.clone()),
    });
    let mut servers = JoinSet::new();
    let api = api::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    if let (Some(listener), Some(tls)) = (https_listener, &tls) {
        servers.spawn(dp_server::serve(listener, api.clone(), Some(tls.config.clone()), stopped.clone()));
    }
    servers.spawn(serve(api_listener, api, stopped.clone()));
    servers.spawn(serve(diagnostics_listener, diagnostics::router(store), stopped.clone()));
    let dp_router = dp_server::router(dp_state, ads);
    servers.spawn(dp_server::serve(dp_server_listener, dp_router, dp_tls.map(|tls| tls.config.clone()), stopped));
    let https_api = https_api_address.map(|address| address.to_string()).unwrap_or_else(|| "off".into());
    tracing::info!(
        %api_address,
        %https_api,
        %diagnostics_address,
        %dp_server_address,
        dp_server_tls = config.dp_server.tls_enabled,
        "control plane started"
    );
    Ok(RunningControlPlane {
        api_address,
        https_api_address,
        diagnostics_address,
        dp_server_address,
        tls_cert_file: tls.map(|tls| tls.pair.cert_path),
        stop,
        servers,
        shutdown_timeout: config.shutdown_timeout(),
        sqlite,
        _lock: lock,
    })
}

async fn bind<const PORT: u16>(listen: &Listen<PORT>, what: &str) -> anyhow::Result<TcpListener> {
    let address = format!("{}:{}", listen.interface, listen.port);
    TcpListener::bind(&address).await.with_context(|| {
        format!(
            "cannot listen on {address} for the {what}: is another kodiak-cp running, is the port taken, or did two of its servers (API, dp-server, diagnostics) get the same port?"
        )
    })
}

async fn serve(listener: TcpListener, router: axum::Router, mut stopped: watch::Receiver<bool>) -> std::io::Result<()> {
    // The peer address tells requests from this host apart (apiServer.authn.localhostIsAdmin).
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await
}

fn instance_id() -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", hostname(), &suffix[..4])
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
