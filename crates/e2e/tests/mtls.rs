//! Mesh mTLS and MeshTrafficPermission with real sidecars: identities from
//! the built-in CA, STRICT and PERMISSIVE inbounds, permissions that name
//! the policy that denied a request, and certificate rotation and mode
//! changes under a request loop that must lose nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kodiak_e2e::{ControlPlane, Sidecar, TestService, Transport, eventually, free_port, get, tcp_greeting};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONVERGE: Duration = Duration::from_secs(30);

/// The response header that names the MeshTrafficPermission behind a 403.
const DENIED_BY: &str = "x-kodiak-denied-by";

fn mesh(mtls: &str) -> String {
    format!("type: Mesh\nname: default\n{mtls}")
}

fn builtin(mode: &str, extra: &str) -> String {
    format!(
        "mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    mode: {mode}
{extra}"
    )
}

/// A service instance with its sidecar: inbounds for `service` (HTTP) and
/// `<service>-tcp` in front of a test service, and outbounds to `calls`
/// and `<calls>-tcp`.
struct Member {
    sidecar: Sidecar,
    inbound_port: u16,
    /// Where the application calls `calls` through its sidecar.
    outbound_url: String,
    /// Where it calls `<calls>-tcp`: every TCP connection there is a new
    /// connection, so a new mTLS handshake, between the two sidecars.
    tcp_outbound: String,
    _service: TestService,
}

impl Member {
    async fn start(control_plane: &ControlPlane, service: &str, calls: &str) -> Member {
        let instance = TestService::start(&format!("{service}-1")).await;
        let (inbound_port, outbound_port) = (free_port(), free_port());
        let (tcp_inbound_port, tcp_outbound_port) = (free_port(), free_port());
        let dataplane = format!(
            "type: Dataplane
mesh: default
name: {service}-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound_port}
    servicePort: {service_port}
    tags:
      kuma.io/service: {service}
      kuma.io/protocol: http
  - port: {tcp_inbound_port}
    servicePort: {tcp_service_port}
    tags:
      kuma.io/service: {service}-tcp
  outbound:
  - port: {outbound_port}
    tags:
      kuma.io/service: {calls}
  - port: {tcp_outbound_port}
    tags:
      kuma.io/service: {calls}-tcp
",
            service_port = instance.http.port(),
            tcp_service_port = instance.tcp.port(),
        );
        Member {
            sidecar: Sidecar::register(control_plane, &dataplane, Transport::Delta),
            inbound_port,
            outbound_url: format!("http://127.0.0.1:{outbound_port}/"),
            tcp_outbound: format!("127.0.0.1:{tcp_outbound_port}"),
            _service: instance,
        }
    }

    /// TLS handshakes this sidecar made to the `service` cluster so far.
    async fn handshakes_to(&self, service: &str) -> u64 {
        let stats = self.sidecar.admin("/stats?filter=ssl.handshake").await.unwrap_or_default();
        let prefix = format!("cluster.{service}.ssl.handshake: ");
        stats.lines().filter_map(|line| line.strip_prefix(&prefix)?.parse::<u64>().ok()).sum()
    }

    /// The serial numbers of the certificates this sidecar's Envoy holds.
    async fn certificate_serials(&self) -> Vec<String> {
        let certs = self.sidecar.admin("/certs").await.unwrap_or_default();
        let certs: serde_json::Value = serde_json::from_str(&certs).unwrap_or_default();
        let mut serials: Vec<String> = certs["certificates"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|entry| entry["cert_chain"].as_array().cloned().unwrap_or_default())
            .filter_map(|cert| cert["serial_number"].as_str().map(str::to_owned))
            .collect();
        serials.sort();
        serials.dedup();
        serials
    }
}

/// Status and the denial header of one GET.
async fn status_and_denial(url: &str) -> (u16, Option<String>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    match client.get(url).send().await {
        Ok(response) => {
            let denied_by = response.headers().get(DENIED_BY).and_then(|value| value.to_str().ok()).map(str::to_owned);
            (response.status().as_u16(), denied_by)
        }
        Err(_) => (0, None),
    }
}

/// Sends a plaintext HTTP request straight to an inbound port, bypassing
/// the caller's sidecar; returns what came back before the connection closed.
async fn plaintext_request(port: u16) -> String {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(("127.0.0.1", port))).await
    else {
        return String::new();
    };
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: direct\r\nConnection: close\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Requests sent one after another until stopped, at most for `limit`,
/// each checked by `probe`; the failures are kept.
struct RequestLoop {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl RequestLoop {
    /// HTTP GETs through `url`, expecting 200 (over the sidecars' kept-alive connections).
    fn http(url: String, limit: Duration) -> RequestLoop {
        Self::start(limit, move || {
            let url = url.clone();
            async move {
                let reply = get(&url).await;
                if reply.status == 200 { Ok(()) } else { Err(format!("status {}", reply.status)) }
            }
        })
    }

    /// A new TCP connection through `address` each time, expecting the
    /// test service's greeting and echo.
    fn tcp(address: String, limit: Duration) -> RequestLoop {
        Self::start(limit, move || {
            let address = address.clone();
            async move { tcp_greeting(&address).await.map(drop).map_err(|error| error.to_string()) }
        })
    }

    fn start<F, Fut>(limit: Duration, probe: F) -> RequestLoop
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let deadline = Instant::now() + limit;
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let outcome = probe().await;
                    let count = sent.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Err(error) = outcome {
                        failures.push(format!("request {count}: {error}"));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (sent.load(Ordering::Relaxed), failures)
            }
        });
        RequestLoop { stop, task }
    }

    /// Stops the loop; returns how many requests were sent and the failures.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the request loop ends")
    }
}

/// Stops both loops and asserts that neither lost a request.
async fn assert_nothing_lost(http: RequestLoop, tcp: RequestLoop, during: &str) {
    let (requests, http_failures) = http.finish().await;
    let (connections, tcp_failures) = tcp.finish().await;
    eprintln!("{requests} HTTP requests and {connections} TCP connections while {during}");
    assert!(requests > 100 && connections > 50, "too little traffic: {requests} requests, {connections} connections");
    assert!(
        http_failures.is_empty(),
        "{} of {requests} HTTP requests failed while {during}: {http_failures:?}",
        http_failures.len()
    );
    assert!(
        tcp_failures.is_empty(),
        "{} of {connections} TCP connections failed while {during}: {tcp_failures:?}",
        tcp_failures.len()
    );
}

#[tokio::test]
async fn a_may_call_b_and_b_calling_a_is_denied_by_the_named_policy() {
    let control_plane = ControlPlane::memory();
    control_plane.apply(&mesh(&builtin("STRICT", ""))).await;
    control_plane
        .apply(
            "type: MeshTrafficPermission
mesh: default
name: deny-b-to-a
spec:
  targetRef: {kind: MeshService, name: a}
  from:
  - targetRef: {kind: MeshService, name: b}
    default: {action: Deny}
",
        )
        .await;
    let a = Member::start(&control_plane, "a", "b").await;
    let b = Member::start(&control_plane, "b", "a").await;

    eventually("A's request to B is answered", CONVERGE, || async {
        (get(&a.outbound_url).await.status == 200).then_some(())
    })
    .await;
    assert!(a.handshakes_to("b").await > 0, "A reached B without TLS");

    let (status, denied_by) = eventually("B's request to A is denied", CONVERGE, || async {
        let answer = status_and_denial(&b.outbound_url).await;
        (answer.0 == 403).then_some(answer)
    })
    .await;
    assert_eq!(status, 403);
    assert_eq!(denied_by.as_deref(), Some("deny-b-to-a"), "the 403 names the policy that denied it");

    // Removing the deny lets the mesh's default allow-all decide again.
    let key =
        kodiak_api::ResourceKey::new(kodiak_api::ResourceType::MeshTrafficPermission, Some("default"), "deny-b-to-a");
    assert!(control_plane.client().delete(&key).await.expect("the delete is answered"));
    eventually("B's request to A is allowed once the deny is gone", CONVERGE, || async {
        (get(&b.outbound_url).await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn strict_refuses_plaintext_and_permissive_accepts_both() {
    let control_plane = ControlPlane::memory();
    control_plane.apply(&mesh(&builtin("STRICT", ""))).await;
    let a = Member::start(&control_plane, "a", "b").await;
    let b = Member::start(&control_plane, "b", "a").await;
    eventually("A's request to B is answered over mTLS", CONVERGE, || async {
        (get(&a.outbound_url).await.status == 200).then_some(())
    })
    .await;
    let answer = plaintext_request(b.inbound_port).await;
    assert!(!answer.starts_with("HTTP/"), "a STRICT inbound answered plaintext: {answer:?}");

    control_plane.apply(&mesh(&builtin("PERMISSIVE", ""))).await;
    eventually("a PERMISSIVE inbound answers plaintext", CONVERGE, || async {
        plaintext_request(b.inbound_port).await.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
    let before = a.handshakes_to("b").await;
    eventually("A still reaches B over mTLS", CONVERGE, || async {
        (get(&a.outbound_url).await.status == 200 && a.handshakes_to("b").await >= before).then_some(())
    })
    .await;
    assert!(before > 0, "A's calls to B were never TLS");
}

#[tokio::test]
async fn certificates_rotated_during_a_request_loop_lose_no_request() {
    let control_plane = ControlPlane::memory();
    let rotation = "    dpCert:\n      rotation: {expiration: 10s}\n";
    control_plane.apply(&mesh(&builtin("STRICT", rotation))).await;
    let a = Member::start(&control_plane, "a", "b").await;
    let b = Member::start(&control_plane, "b", "a").await;
    eventually("A's request to B is answered over mTLS", CONVERGE, || async {
        (get(&a.outbound_url).await.status == 200).then_some(())
    })
    .await;
    let first = b.certificate_serials().await;
    assert!(!first.is_empty(), "B's Envoy holds no certificate");

    let http = RequestLoop::http(a.outbound_url.clone(), Duration::from_secs(40));
    let tcp = RequestLoop::tcp(a.tcp_outbound.clone(), Duration::from_secs(40));
    let mut seen = first.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for serial in b.certificate_serials().await {
            if !seen.contains(&serial) {
                seen.push(serial);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_nothing_lost(http, tcp, "certificates rotated").await;
    assert!(seen.len() >= first.len() + 2, "B's certificate was not renewed at least twice in 30 s: {seen:?}");
}

#[tokio::test]
async fn turning_mtls_on_through_permissive_then_strict_loses_no_request() {
    let control_plane = ControlPlane::memory();
    let a = Member::start(&control_plane, "a", "b").await;
    let b = Member::start(&control_plane, "b", "a").await;
    eventually("A's request to B is answered", CONVERGE, || async {
        (get(&a.outbound_url).await.status == 200).then_some(())
    })
    .await;
    let http = RequestLoop::http(a.outbound_url.clone(), Duration::from_secs(120));
    let tcp = RequestLoop::tcp(a.tcp_outbound.clone(), Duration::from_secs(120));

    control_plane.apply(&mesh(&builtin("PERMISSIVE", ""))).await;
    eventually("A switches to mTLS once B accepts it", CONVERGE, || async {
        (a.handshakes_to("b").await > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    control_plane.apply(&mesh(&builtin("STRICT", ""))).await;
    eventually("B's inbound refuses plaintext", CONVERGE, || async {
        (!plaintext_request(b.inbound_port).await.starts_with("HTTP/")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_nothing_lost(http, tcp, "mTLS was turned on").await;
    assert!(a.handshakes_to("b-tcp").await > 0, "A's TCP connections to B never used TLS");
}

/// The CA of `mesh`'s `ca-1` builtin backend, read from its Secrets.
async fn mesh_ca(control_plane: &ControlPlane, mesh: &str) -> kodiak_ca::Ca {
    let pem = |part: &'static str| {
        let url = format!("{}/meshes/{mesh}/secrets/{mesh}.ca-builtin-{part}-ca-1", control_plane.api_url());
        async move {
            let secret: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            let data = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, secret["data"].as_str()?);
            String::from_utf8(data.ok()?).ok()
        }
    };
    let (cert, key) = eventually(&format!("the CA Secrets of mesh {mesh}"), CONVERGE, || async {
        Some((pem("cert").await?, pem("key").await?))
    })
    .await;
    kodiak_ca::Ca::from_pem(&cert, &key, std::time::SystemTime::now()).expect("the mesh's CA is valid")
}

/// Connects to an inbound as a sidecar of service `a` would, with ALPN
/// `kuma` and a client certificate issued by `ca` for `mesh`, and sends one
/// HTTP request; returns what came back (nothing when TLS was refused).
async fn mtls_request(port: u16, ca: &kodiak_ca::Ca, mesh: &str) -> String {
    let cert = ca
        .issue(&kodiak_ca::WorkloadRequest {
            mesh: mesh.to_owned(),
            services: vec!["a".to_owned()],
            tags: kodiak_ca::tags_of([("kuma.io/service", "a")]),
            key: kodiak_ca::KeyKind::EcdsaP256,
            lifetime: Duration::from_secs(3600),
            now: std::time::SystemTime::now(),
        })
        .expect("a workload certificate");
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the certificate PEM");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("the key PEM");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .expect("a client certificate");
    config.alpn_protocols = vec![b"kuma".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return String::new() };
    let name = rustls::pki_types::ServerName::try_from("b").expect("a server name");
    let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await else {
        return String::new();
    };
    let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Accepts any server certificate: the tests look at what the server
/// accepts, not at who it is.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn a_client_certificate_from_another_meshs_ca_is_refused() {
    let control_plane = ControlPlane::memory();
    control_plane.apply(&mesh(&builtin("STRICT", ""))).await;
    control_plane.apply(&format!("type: Mesh\nname: other\n{}", builtin("STRICT", ""))).await;
    let a = Member::start(&control_plane, "a", "b").await;
    let b = Member::start(&control_plane, "b", "a").await;
    eventually("A's request to B is answered over mTLS", CONVERGE, || async {
        (get(&a.outbound_url).await.status == 200).then_some(())
    })
    .await;

    let own = mesh_ca(&control_plane, "default").await;
    let answer = mtls_request(b.inbound_port, &own, "default").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "a certificate of B's own mesh is accepted: {answer:?}");

    let foreign = mesh_ca(&control_plane, "other").await;
    let answer = mtls_request(b.inbound_port, &foreign, "other").await;
    assert!(answer.is_empty(), "a certificate from mesh other's CA was accepted: {answer:?}");
}

/// Stores `ca` as the mesh Secrets `my-ca-cert` and `my-ca-key`, the
/// certificate first, as a user replacing them one by one would.
async fn put_provided_ca(control_plane: &ControlPlane, ca: &kodiak_ca::Ca) {
    for (name, pem) in [("my-ca-cert", ca.cert_pem()), ("my-ca-key", ca.key_pem())] {
        let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
        control_plane.apply(&format!("type: Secret\nmesh: default\nname: {name}\ndata: {data}\n")).await;
    }
}

#[tokio::test]
async fn replacing_a_provided_ca_under_load_loses_no_request() {
    let control_plane = ControlPlane::memory();
    let root = |now| {
        let year = Duration::from_secs(365 * 24 * 3600);
        kodiak_ca::RootCa::generate("default", "ca-1", kodiak_ca::KeyKind::EcdsaP256, year, now).expect("a root CA")
    };
    put_provided_ca(&control_plane, &root(std::time::SystemTime::now())).await;
    control_plane
        .apply(&mesh(
            "mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: provided
    mode: STRICT
    conf:
      cert: {secret: my-ca-cert}
      key: {secret: my-ca-key}
",
        ))
        .await;
    let a = Member::start(&control_plane, "a", "b").await;
    let b = Member::start(&control_plane, "b", "a").await;
    eventually("A's request to B is answered over mTLS", CONVERGE, || async {
        (get(&a.outbound_url).await.status == 200 && tcp_greeting(&a.tcp_outbound).await.is_ok()).then_some(())
    })
    .await;
    let before = b.certificate_serials().await;

    let http = RequestLoop::http(a.outbound_url.clone(), Duration::from_secs(90));
    let tcp = RequestLoop::tcp(a.tcp_outbound.clone(), Duration::from_secs(90));
    tokio::time::sleep(Duration::from_secs(1)).await;
    put_provided_ca(&control_plane, &root(std::time::SystemTime::now())).await;
    eventually("B gets a certificate from the new CA", CONVERGE, || async {
        let now = b.certificate_serials().await;
        (!now.is_empty() && now.iter().any(|serial| !before.contains(serial))).then_some(())
    })
    .await;
    let handshakes = a.handshakes_to("b-tcp").await;
    eventually("A makes new TLS connections to B under the new CA", CONVERGE, || async {
        (a.handshakes_to("b-tcp").await > handshakes + 20).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_nothing_lost(http, tcp, "the mesh's CA was replaced").await;
}
