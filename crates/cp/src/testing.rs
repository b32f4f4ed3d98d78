//! Starting a real control plane from tests: on loopback, on free ports,
//! in a thread of its own so synchronous tests can drive it too.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::config::{Config, StoreKind};

/// A control plane running in the background; stopped when dropped.
pub struct TestControlPlane {
    api_url: String,
    diagnostics_url: String,
    dp_server_url: String,
    https_api_url: Option<String>,
    tls_cert_file: Option<PathBuf>,
    /// The data directory of an in-memory control plane (its certificate).
    _data_dir: Option<tempfile::TempDir>,
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

    /// `https://127.0.0.1:<port>` of the dp-server (bootstrap and ADS);
    /// `http://` when `dpServer.tlsEnabled` is false.
    pub fn dp_server_url(&self) -> &str {
        &self.dp_server_url
    }

    /// `https://127.0.0.1:<port>` of the HTTPS API, when it is enabled.
    pub fn https_api_url(&self) -> Option<&str> {
        self.https_api_url.as_deref()
    }

    /// The certificate the TLS servers present (`kodiak-dp --ca-cert-file`).
    pub fn tls_cert_file(&self) -> Option<&Path> {
        self.tls_cert_file.as_deref()
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

/// A control plane on the in-memory store (its certificate in a
/// temporary data directory that lives as long as it does).
pub fn start_memory() -> TestControlPlane {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = loopback_config();
    config.store.kind = StoreKind::Memory;
    config.store.data_dir = dir.path().to_owned();
    let mut control_plane = start(config).expect("the control plane starts");
    control_plane._data_dir = Some(dir);
    control_plane
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
    config.api_server.https.port = 0;
    config.diagnostics.server.port = 0;
    config.dp_server.server.port = 0;
    config
}

/// Starts a control plane with this configuration.
pub fn start(config: Config) -> anyhow::Result<TestControlPlane> {
    let (started_tx, started_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let dp_tls = config.dp_server.tls_enabled;
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            match crate::start(config).await {
                Ok(running) => {
                    let dp_scheme = if dp_tls { "https" } else { "http" };
                    let urls = Urls {
                        api: format!("http://{}", running.api_address()),
                        diagnostics: format!("http://{}", running.diagnostics_address()),
                        dp_server: format!("{dp_scheme}://{}", running.dp_server_address()),
                        https_api: running.https_api_address().map(|address| format!("https://{address}")),
                        tls_cert_file: running.tls_cert_file().map(Path::to_owned),
                    };
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
    let urls: Urls = started_rx.recv().map_err(|_| anyhow::anyhow!("control plane thread died"))??;
    Ok(TestControlPlane {
        api_url: urls.api,
        diagnostics_url: urls.diagnostics,
        dp_server_url: urls.dp_server,
        https_api_url: urls.https_api,
        tls_cert_file: urls.tls_cert_file,
        _data_dir: None,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Where a started control plane can be reached.
struct Urls {
    api: String,
    diagnostics: String,
    dp_server: String,
    https_api: Option<String>,
    tls_cert_file: Option<PathBuf>,
}

/// A TLS client configuration (aws-lc-rs) that trusts only the PEM
/// certificates in `ca_file`, for `reqwest::ClientBuilder::use_preconfigured_tls`.
pub fn client_tls_trusting(ca_file: &Path) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)? {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
