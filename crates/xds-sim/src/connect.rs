//! Connections to the control plane's dp-server: one HTTP/2 connection per
//! simulated proxy, as every Envoy has its own, over TLS when the
//! dp-server speaks it (trusting only the certificate given).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the dp-server.
#[derive(Clone)]
pub struct DpServer {
    url: String,
    /// TLS settings when the URL is `https://`.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl DpServer {
    /// `url` is `http://host:port` or `https://host:port`; for `https`, the
    /// server must present a certificate signed by (or equal to) `ca_pem`.
    pub fn new(url: &str, ca_pem: Option<&str>) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("{url:?} is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let ca_pem = ca_pem.context("an https dp-server needs the certificate to trust (--ca-cert-file)")?;
                let mut roots = rustls::RootCertStore::empty();
                for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                    roots.add(certificate.context("the CA certificate file is not PEM")?)?;
                }
                let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
                config.alpn_protocols = vec![b"h2".to_vec()];
                let host = uri.host().context("the dp-server URL has no host")?;
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                    .with_context(|| format!("{host:?} is not a server name"))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
            _ => anyhow::bail!("the dp-server URL {url:?} must start with http:// or https://"),
        };
        Ok(Self { url: url.to_owned(), tls })
    }

    /// A channel with a connection of its own, opened lazily on first use
    /// and again after it breaks.
    pub fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = Endpoint::from_shared(self.url.clone())?
            .connect_timeout(CONNECT_TIMEOUT)
            // As often as a sidecar's Envoy pings the control plane.
            .http2_keep_alive_interval(Duration::from_secs(kodiak_api::bootstrap::ADS_KEEPALIVE_INTERVAL_SECONDS))
            .keep_alive_while_idle(true);
        Ok(match &self.tls {
            None => endpoint.connect_lazy(),
            Some((connector, name)) => {
                let (connector, name) = (connector.clone(), name.clone());
                endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
                    let (connector, name) = (connector.clone(), name.clone());
                    async move {
                        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
                        let tcp = TcpStream::connect(authority).await?;
                        tcp.set_nodelay(true)?;
                        let tls = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(tls))
                    }
                }))
            }
        })
    }
}
