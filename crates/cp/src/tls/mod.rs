//! TLS for the control plane's own servers (the dp-server and the HTTPS
//! API): one certificate, the user's (`general.tlsCertFile`/`tlsKeyFile`)
//! or one generated in the data directory on the first start and reused
//! after. TLS 1.2 and 1.3 on aws-lc-rs.

mod files;
mod generate;

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use files::{CERT_FILE, CertPair, KEY_FILE, Origin};

use crate::config::Config;

/// The control plane's certificate, ready to serve.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub pair: CertPair,
    pub config: Arc<ServerConfig>,
}

/// The certificate `config` asks for: the configured files, else the
/// data directory's (generated when missing) for this host's names.
/// File reads, key generation and waiting for a control plane starting
/// alongside run on a blocking thread, off the async workers.
pub async fn setup(config: &Config, hostname: &str) -> anyhow::Result<ServerTls> {
    let (config, hostname) = (config.clone(), hostname.to_owned());
    tokio::task::spawn_blocking(move || setup_blocking(&config, &hostname))
        .await
        .context("the TLS set-up thread did not finish")?
}

fn setup_blocking(config: &Config, hostname: &str) -> anyhow::Result<ServerTls> {
    let pair = match (&config.general.tls_cert_file, &config.general.tls_key_file) {
        (Some(cert), Some(key)) => files::read_configured(cert, key)?,
        _ => {
            let interfaces = [
                config.api_server.http.interface.as_str(),
                config.api_server.https.interface.as_str(),
                config.dp_server.server.interface.as_str(),
            ];
            let names = generate::names(hostname, &interfaces);
            files::load_or_generate(&config.store.data_dir, &names, SystemTime::now())?
        }
    };
    let server_config = server_config(&pair)?;
    match pair.origin {
        Origin::Configured => {
            tracing::info!(cert = %pair.cert_path.display(), "serving TLS with the configured certificate")
        }
        Origin::Generated => tracing::info!(
            cert = %pair.cert_path.display(),
            "generated the control plane's TLS certificate; give this file to kodiak-dp --ca-cert-file"
        ),
        Origin::Reused => {
            tracing::info!(cert = %pair.cert_path.display(), "serving TLS with the certificate generated earlier")
        }
    }
    Ok(ServerTls { pair, config: server_config })
}

/// A rustls server configuration for the pair: TLS 1.2 and later, ALPN h2
/// and http/1.1 (gRPC and HTTP/2 clients pick h2, curl and browsers either).
pub fn server_config(pair: &CertPair) -> anyhow::Result<Arc<ServerConfig>> {
    let cert_file = pair.cert_path.display();
    let key_file = pair.key_path.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pair.chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{cert_file} is not a PEM certificate file"))?;
    if chain.is_empty() {
        bail!("{cert_file} holds no certificate (expected PEM blocks \"BEGIN CERTIFICATE\")");
    }
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
        .with_context(|| format!("{key_file} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2 and 1.3 are available")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| match error {
            rustls::Error::InconsistentKeys(_) => {
                anyhow::anyhow!("the private key in {key_file} does not belong to the certificate in {cert_file}")
            }
            other => anyhow::anyhow!("cannot use the certificate {cert_file} with the key {key_file}: {other}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn setup_leaves_the_runtime_free_while_it_waits() {
        let dir = tempfile::tempdir().unwrap();
        // A lone certificate: set-up waits for a key another start might be
        // about to link, then gives up.
        std::fs::write(dir.path().join(CERT_FILE), "x").unwrap();
        let mut config = Config::default();
        config.store.data_dir = dir.path().to_owned();
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let error = setup(&config, "localhost").await.unwrap_err().to_string();
        ticker.abort();
        assert!(error.contains("delete both"), "{error}");
        let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(ticks >= 10, "other tasks ran only {ticks} times during the two-second wait");
    }

    #[test]
    fn a_key_of_another_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        let mine = files::load_or_generate(&dir.path().join("a"), &names, SystemTime::now()).unwrap();
        let other = files::load_or_generate(&dir.path().join("b"), &names, SystemTime::now()).unwrap();
        server_config(&mine).unwrap();
        let mixed = CertPair { key_pem: other.key_pem, ..mine.clone() };
        let error = server_config(&mixed).unwrap_err().to_string();
        assert!(error.contains("does not belong") && error.contains(KEY_FILE), "{error}");
        let garbage = CertPair { chain_pem: "hello".into(), ..mine };
        let error = server_config(&garbage).unwrap_err().to_string();
        assert!(error.contains("no certificate"), "{error}");
    }
}
