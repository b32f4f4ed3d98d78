//! A control plane in this process on loopback. Its ports are chosen by the
//! kernel at the first start and kept, so it can be stopped and started
//! again where sidecars expect it. Its dp-server speaks TLS with the
//! certificate it generates in its data directory, which sidecars trust
//! through `--ca-cert-file`.

use std::path::{Path, PathBuf};

use kodiak_cp::config::{Config, DpProxyAuthn, StoreKind};
use kodiak_cp::testing::TestControlPlane;

pub struct ControlPlane {
    config: Config,
    running: Option<TestControlPlane>,
    /// Runs elsewhere (see [`ControlPlane::external`]): never started or stopped here.
    external: bool,
    /// The certificate sidecars trust (`--ca-cert-file`).
    ca_cert_file: Option<PathBuf>,
    _data_dir: Option<tempfile::TempDir>,
}

impl ControlPlane {
    /// On the in-memory store.
    pub fn memory() -> Self {
        Self::with(StoreKind::Memory, |_| {})
    }

    /// On a fresh SQLite store.
    pub fn sqlite() -> Self {
        Self::with(StoreKind::Sqlite, |_| {})
    }

    /// On `store`, with further settings changed by `adjust`.
    pub fn with(store: StoreKind, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = kodiak_cp::testing::loopback_config();
        config.store.kind = store;
        // Every store gets a data directory of its own: the certificate lives there.
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        config.store.data_dir = data_dir.path().to_owned();
        adjust(&mut config);
        let mut control_plane =
            Self { config, running: None, external: false, ca_cert_file: None, _data_dir: Some(data_dir) };
        control_plane.start();
        control_plane
    }

    /// One that runs elsewhere, for example a `kodiak-cp` process a
    /// benchmark started, with its REST API and dp-server on these loopback
    /// ports: sidecars and requests go there; it is never started or stopped here.
    pub fn external(api_port: u16, dp_server_port: u16) -> Self {
        let mut config = kodiak_cp::testing::loopback_config();
        config.api_server.http.port = api_port;
        config.dp_server.server.port = dp_server_port;
        Self { config, running: None, external: true, ca_cert_file: None, _data_dir: None }
    }

    /// The certificate an external control plane's dp-server presents
    /// (`kodiak-cp.crt` in its data directory), for sidecars to trust.
    pub fn with_ca_cert_file(mut self, path: &Path) -> Self {
        self.ca_cert_file = Some(path.to_owned());
        self
    }

    pub fn start(&mut self) {
        assert!(!self.external, "an external control plane is started by its owner");
        assert!(self.running.is_none(), "the control plane is already running");
        let running = kodiak_cp::testing::start(self.config.clone()).expect("the control plane starts");
        // Keep the ports the kernel chose (or were asked for) for a restart.
        self.config.api_server.http.port = port_of(running.api_url());
        self.config.dp_server.server.port = port_of(running.dp_server_url());
        self.ca_cert_file = running.tls_cert_file().map(Path::to_owned);
        self.running = Some(running);
    }

    /// Stops it (sidecars lose their xDS stream; Envoy keeps its config).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.config.api_server.http.port)
    }

    /// `https://127.0.0.1:<port>` (`http://` with `dpServer.tlsEnabled: false`).
    pub fn dp_server_url(&self) -> String {
        let scheme = if self.config.dp_server.tls_enabled { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.config.dp_server.server.port)
    }

    /// The certificate file sidecars are given as `--ca-cert-file`, once
    /// the control plane has started (or was named for an external one).
    pub fn ca_cert_file(&self) -> Option<&Path> {
        self.ca_cert_file.as_deref()
    }

    /// An HTTP client for the dp-server that trusts its certificate only.
    pub fn dp_server_client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &self.ca_cert_file {
            let tls = kodiak_cp::testing::client_tls_trusting(path).expect("the control plane's certificate");
            builder = builder.use_preconfigured_tls(tls);
        }
        builder.build().expect("an HTTP client")
    }

    pub fn client(&self) -> kodiak_client::Client {
        kodiak_client::Client::new(&self.api_url()).expect("a valid URL")
    }

    /// Whether its sidecars must show a dataplane token (the default).
    pub fn requires_dataplane_tokens(&self) -> bool {
        self.config.dp_server.authn.dp_proxy.kind == DpProxyAuthn::DpToken
    }

    /// A dataplane token for any Dataplane of `mesh`, issued by a local admin.
    pub async fn dataplane_token(&self, mesh: &str) -> String {
        let request =
            kodiak_client::DataplaneTokenRequest { mesh: mesh.into(), valid_for: "24h".into(), ..Default::default() };
        self.client().generate_dataplane_token(&request).await.expect("the control plane issues a dataplane token")
    }

    /// [`ControlPlane::dataplane_token`] for synchronous code: on a thread and runtime of its own.
    pub fn dataplane_token_blocking(&self, mesh: &str) -> String {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(self.dataplane_token(mesh))
                })
                .join()
                .expect("the token is issued")
        })
    }
}

impl ControlPlane {
    /// Applies one resource document (YAML or JSON) through the REST API.
    pub async fn apply(&self, document: &str) {
        let value = kodiak_api::parse_document(document).expect("a well-formed document");
        let resource = kodiak_api::Resource::from_document(&value).expect("a valid resource");
        self.client().put(&resource).await.expect("the control plane accepts it");
    }

    /// Deletes a Dataplane through the REST API.
    pub async fn delete_dataplane(&self, mesh: &str, name: &str) {
        let key = kodiak_api::ResourceKey::new(kodiak_api::ResourceType::Dataplane, Some(mesh), name);
        assert!(self.client().delete(&key).await.expect("the delete is answered"), "{mesh}/{name} existed");
    }

    /// The `_overview` of one Dataplane (its insight included).
    pub async fn overview(&self, mesh: &str, name: &str) -> serde_json::Value {
        let url = format!("{}/meshes/{mesh}/dataplanes/{name}/_overview", self.api_url());
        reqwest::get(&url).await.expect("the API answers").json().await.expect("JSON")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The port of an `http://host:port` URL.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|port| port.parse().ok()).unwrap_or_else(|| panic!("no port in {url}"))
}
