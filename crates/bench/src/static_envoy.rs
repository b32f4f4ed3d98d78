//! Hand-written, minimal static Envoys: the least configuration that proxies
//! HTTP from a listener to one upstream (an HTTP connection manager with the
//! router filter and nothing else, one static cluster, default options), as
//! a yardstick for what a sidecar's generated configuration costs. Two of
//! them chained, caller → backend → application, are the shortest path a
//! request through two sidecars can take; the hop between them is plaintext
//! or mutual TLS with certificates from the workspace's CA.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use kodiak_ca::{KeyKind, RootCa, WorkloadRequest};

/// The certificate files of one side of a mutual-TLS hop: its own
/// certificate and key, and the CA it trusts.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

/// A root CA (ECDSA P-256, as the built-in CA's default) and a workload
/// certificate for the caller and one for the backend, written into `dir`.
/// Returns (caller, backend).
pub fn mesh_certificates(dir: &Path) -> anyhow::Result<(TlsFiles, TlsFiles)> {
    let now = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let ca = RootCa::generate("bench", "ca-1", KeyKind::EcdsaP256, day, now)?;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem())?;
    let issue = |service: &str| -> anyhow::Result<TlsFiles> {
        let cert = ca.issue(&WorkloadRequest {
            mesh: "bench".into(),
            services: vec![service.into()],
            tags: kodiak_ca::tags_of([("kuma.io/service", service)]),
            key: KeyKind::EcdsaP256,
            lifetime: day,
            now,
        })?;
        let (cert_file, key_file) = (dir.join(format!("{service}.pem")), dir.join(format!("{service}.key")));
        std::fs::write(&cert_file, &cert.cert_pem)?;
        std::fs::write(&key_file, &cert.key_pem)?;
        Ok(TlsFiles { cert: path_text(&cert_file), key: path_text(&key_file), ca: path_text(&ca_file) })
    };
    Ok((issue("caller")?, issue("backend")?))
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// What one static Envoy does: listen on `listen` (with `downstream_tls`,
/// requiring a client certificate) and send every request to `upstream`
/// (with `upstream_tls`), through a cluster named `cluster`, with `extras`.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub listen: u16,
    pub cluster: &'static str,
    pub upstream: SocketAddr,
    pub downstream_tls: Option<TlsFiles>,
    pub upstream_tls: Option<TlsFiles>,
    pub extras: Vec<Extra>,
}

/// A piece of what Kodiak's generated configuration has and the minimal one
/// lacks, to add to the minimal one and measure its cost alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Extra {
    /// The RBAC HTTP filter before the router, denying nothing (as for an
    /// inbound under `allow-all`).
    Rbac,
    /// An access log of denied requests only, chosen per request by a CEL
    /// expression on the response's code details.
    DeniedLog,
    /// The route of the default MeshTimeout and MeshRetry: a 15 s request
    /// timeout, a 30 min stream idle timeout, up to 5 retries with back-off.
    Retries,
    /// The default MeshCircuitBreaker's thresholds, with remaining counts tracked.
    Breakers,
    /// An inbound's route and connection manager: no request timeout, a 1 h
    /// stream idle timeout on the route, no connection idle timeout.
    InboundRoute,
    /// The mesh's ALPN and SNI: the caller offers `kuma` and names the
    /// service; the backend reads them with the TLS inspector and takes
    /// only TLS connections offering `kuma`.
    Alpn,
}

impl Proxy {
    /// The bootstrap (YAML), with the admin API on `admin_port`.
    pub fn bootstrap(&self, admin_port: u16) -> String {
        let Proxy { listen, cluster, upstream, extras, .. } = self;
        let rbac = if extras.contains(&Extra::Rbac) {
            "
          - name: envoy.filters.http.rbac
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules: {action: DENY}"
        } else {
            ""
        };
        let access_log = if extras.contains(&Extra::DeniedLog) {
            "
          access_log:
          - name: envoy.access_loggers.stderr
            filter:
              extension_filter:
                name: envoy.access_loggers.extension_filters.cel
                typed_config:
                  \"@type\": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                  expression: response.code_details.startsWith('rbac_access_denied')
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog
              log_format: {text_format_source: {inline_string: \"denied %REQ(:PATH)% %RESPONSE_CODE_DETAILS%\\n\"}}"
        } else {
            ""
        };
        let has = |extra: Extra| extras.contains(&extra);
        // The backend side (TLS from downstream) checks ALPN, the caller side offers it.
        let inspect = has(Extra::Alpn) && self.downstream_tls.is_some();
        let (listener_filters, chain_match) = if inspect {
            (
                "
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                "
    - filter_chain_match: {transport_protocol: tls, application_protocols: [kuma]}
      filters:",
            )
        } else {
            (
                "",
                "
    - filters:",
            )
        };
        let alpn = if has(Extra::Alpn) && self.upstream_tls.is_some() {
            "
          alpn_protocols: [kuma]
        sni: backend"
        } else {
            ""
        };
        let inbound_route = if has(Extra::InboundRoute) {
            "
                  timeout: 0s
                  idle_timeout: 3600s
          common_http_protocol_options: {idle_timeout: 0s}"
        } else {
            ""
        };
        let route = if extras.contains(&Extra::Retries) {
            "
                  timeout: 15s
                  idle_timeout: 1800s
                  retry_policy:
                    retry_on: gateway-error,connect-failure,refused-stream
                    num_retries: 5
                    per_try_timeout: 16s
                    retry_back_off: {base_interval: 0.025s, max_interval: 0.250s}"
        } else {
            ""
        };
        let breakers = if extras.contains(&Extra::Breakers) {
            "
    circuit_breakers:
      thresholds:
      - {max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3, track_remaining: true}"
        } else {
            ""
        };
        let downstream_tls = self.downstream_tls.as_ref().map_or(String::new(), |tls| {
            format!(
                "
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
{}",
                common_tls_context(tls, 10)
            )
        });
        let upstream_tls = self.upstream_tls.as_ref().map_or(String::new(), |tls| {
            format!(
                "
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
{}{alpn}",
                common_tls_context(tls, 8),
            )
        });
        format!(
            "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:{chain_match}
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: listener
          route_config:
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: {{prefix: /}}
                route:
                  cluster: {cluster}{route}{inbound_route}{access_log}
          http_filters:{rbac}
          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router{downstream_tls}{listener_filters}
  clusters:
  - name: {cluster}
    type: STATIC
    connect_timeout: 5s{breakers}
    load_assignment:
      cluster_name: {cluster}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: {ip}, port_value: {port}}}}}{upstream_tls}
",
            ip = upstream.ip(),
            port = upstream.port(),
        )
    }
}

/// `common_tls_context` with a certificate, its key and the trusted CA,
/// indented by `indent` spaces.
fn common_tls_context(tls: &TlsFiles, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}common_tls_context:
{pad}  tls_certificates:
{pad}  - certificate_chain: {{filename: {cert}}}
{pad}    private_key: {{filename: {key}}}
{pad}  validation_context:
{pad}    trusted_ca: {{filename: {ca}}}",
        cert = tls.cert,
        key = tls.key,
        ca = tls.ca,
    )
}

/// A static Envoy process (one worker), killed when dropped.
pub struct StaticEnvoy {
    child: Child,
    admin: String,
    dir: tempfile::TempDir,
}

impl StaticEnvoy {
    /// Starts `envoy` with `proxy`'s bootstrap and waits (up to `timeout`)
    /// until its admin API says it is LIVE.
    pub async fn start(envoy: &Path, proxy: &Proxy, timeout: Duration) -> anyhow::Result<StaticEnvoy> {
        let dir = tempfile::tempdir()?;
        let admin_port = kodiak_e2e::free_port();
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(&config, proxy.bootstrap(admin_port))?;
        let log = std::fs::File::create(dir.path().join("envoy.log"))?;
        let child = Command::new(envoy)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "1", "--log-level", "warning"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", envoy.display()))?;
        let mut started = StaticEnvoy { child, admin: format!("127.0.0.1:{admin_port}"), dir };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + timeout;
        loop {
            let ready = http.get(format!("http://{}/ready", started.admin)).send().await;
            if let Ok(response) = ready
                && response.text().await.is_ok_and(|text| text.trim() == "LIVE")
            {
                return Ok(started);
            }
            if let Some(status) = started.child.try_wait()? {
                bail!("Envoy exited during start ({status}):\n{}", started.log());
            }
            if Instant::now() > deadline {
                bail!("Envoy was not LIVE within {timeout:?}:\n{}", started.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the admin API answers to a GET of `path`.
    pub async fn admin(&self, path: &str) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("http://{}{path}", self.admin)).await?.error_for_status()?.text().await?)
    }

    /// What Envoy printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for StaticEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
