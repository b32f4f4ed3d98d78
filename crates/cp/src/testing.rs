//! Starting a real control plane from tests: on loopback, on free ports,
//! in a thread of its own so synchronous tests can drive it too.

use std::path::Path;
use std::sync::mpsc;

use crate::config::{Config, StoreKind};

/// A control plane running in the background; stopped when dropped.
pub struct TestControlPlane {
    api_url: String,
    diagnostics_url: String,
    dp_server_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestControlPlane {
    /// `http://127.0.0.1:<port>` of the REST API.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    pub fn diagnostics_url(&self) -> &str {
        &self.diagnostics_url
    }

    /// `http://127.0.0.1:<port>` of the dp-server (bootstrap and ADS).
    pub fn dp_server_url(&self) -> &str {
        &self.dp_server_url
    }

    /// Stops it and waits until the data directory is released.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestControlPlane {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A control plane on the in-memory store.
pub fn start_memory() -> TestControlPlane {
    let mut config = loopback_config();
    config.store.kind = StoreKind::Memory;
    start(config).expect("the control plane starts")
}

/// A control plane on the SQLite store in `data_dir`.
pub fn start_sqlite(data_dir: &Path) -> anyhow::Result<TestControlPlane> {
    let mut config = loopback_config();
    config.store.kind = StoreKind::Sqlite;
    config.store.data_dir = data_dir.to_owned();
    start(config)
}

/// The default configuration on loopback with ports chosen by the kernel.
pub fn loopback_config() -> Config {
    let mut config = Config::default();
    config.api_server.http.port = 0;
    config.diagnostics.server.port = 0;
    config.dp_server.server.port = 0;
    config
}

/// Starts a control plane with this configuration.
pub fn start(config: Config) -> anyhow::Result<TestControlPlane> {
    let (started_tx, started_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            match crate::start(config).await {
                Ok(running) => {
                    let urls = (
                        format!("http://{}", running.api_address()),
                        format!("http://{}", running.diagnostics_address()),
                        format!("http://{}", running.dp_server_address()),
                    );
                    let _ = started_tx.send(Ok(urls));
                    let _ = stop_rx.await;
                    running.shutdown().await;
                }
                Err(error) => {
                    let _ = started_tx.send(Err(error));
                }
            }
        });
    });
    let (api_url, diagnostics_url, dp_server_url) =
        started_rx.recv().map_err(|_| anyhow::anyhow!("control plane thread died"))??;
    Ok(TestControlPlane { api_url, diagnostics_url, dp_server_url, stop: Some(stop_tx), thread: Some(thread) })
}
