//! Whom kodiak-dp trusts for the control plane: the CA certificates of
//! `--ca-cert-file` only, else the system's trusted roots; and how a TLS
//! failure is told to the user.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Where the trusted certificates came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// `--ca-cert-file`: these certificates and nothing else.
    CaFile { path: PathBuf, pem: String },
    /// The operating system's trusted roots.
    SystemRoots,
}

impl Trust {
    /// Reads `--ca-cert-file`; an unreadable file or one without a PEM
    /// certificate is an error naming it.
    pub fn ca_file(path: &Path) -> anyhow::Result<Trust> {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("cannot read --ca-cert-file {}", path.display()))?;
        certificates(&pem, path)?;
        Ok(Trust::CaFile { path: path.to_owned(), pem })
    }

    /// The CA certificates (PEM) Envoy is to trust for the control plane,
    /// when the user named them.
    pub fn ca_pem(&self) -> Option<&str> {
        match self {
            Trust::CaFile { pem, .. } => Some(pem),
            Trust::SystemRoots => None,
        }
    }

    /// A rustls client configuration (aws-lc-rs, TLS 1.2 and later) that
    /// trusts exactly the `--ca-cert-file` certificates; `None` for the
    /// system's roots, which the HTTP client checks by itself.
    pub fn client_config(&self) -> anyhow::Result<Option<ClientConfig>> {
        let Trust::CaFile { path, pem } = self else { return Ok(None) };
        let mut roots = RootCertStore::empty();
        for cert in certificates(pem, path)? {
            roots.add(cert).with_context(|| {
                format!("--ca-cert-file {}: a certificate in it cannot be used as a trust anchor", path.display())
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(Some(
            ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .context("TLS 1.2 and 1.3 are available")?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }

    /// What to tell the user when the control plane's certificate (or its
    /// TLS) was not accepted: such a failure is final, a retry gets the same.
    pub fn explain(&self, failure: &rustls::Error) -> String {
        use rustls::CertificateError::{
            BadSignature, Expired, ExpiredContext, NotValidForName, NotValidForNameContext, UnknownIssuer,
        };
        let what = match failure {
            rustls::Error::InvalidCertificate(UnknownIssuer | BadSignature) => {
                "the control plane's certificate is not signed by a CA kodiak-dp trusts"
            }
            rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. }) => {
                "the control plane's certificate does not name the host of --cp-address"
            }
            rustls::Error::InvalidCertificate(Expired | ExpiredContext { .. }) => {
                "the control plane's certificate has expired (or this host's clock is wrong)"
            }
            _ => "the TLS handshake failed",
        };
        let advice = match (failure, self) {
            (rustls::Error::InvalidCertificate(_), Trust::CaFile { path, .. }) => format!(
                "kodiak-dp trusts only the certificates in --ca-cert-file {}: give it the control plane's \
                 certificate (kodiak-cp.crt in its data directory, or its general.tlsCertFile) or the CA that signed it",
                path.display()
            ),
            (rustls::Error::InvalidCertificate(_), Trust::SystemRoots) => "kodiak-dp checked it against the \
                 system's trusted roots (no --ca-cert-file); a control plane with its generated certificate needs \
                 --ca-cert-file <its data directory>/kodiak-cp.crt"
                .to_owned(),
            _ => "is --cp-address the dp-server, and does it speak TLS? (with dpServer.tlsEnabled: false, use http://)"
                .to_owned(),
        };
        format!("TLS with the control plane failed: {what} ({failure})\n  {advice}")
    }
}

/// The PEM certificates of a `--ca-cert-file`, at least one.
fn certificates(pem: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--ca-cert-file {} is not a PEM file", path.display()))?;
    if certs.is_empty() {
        bail!(
            "--ca-cert-file {} holds no certificate (expected PEM blocks \"BEGIN CERTIFICATE\", such as the control plane's kodiak-cp.crt)",
            path.display()
        );
    }
    Ok(certs)
}

/// The TLS failure behind a request error (shared with kodiakctl's client).
pub use kodiak_client::tls::tls_failure;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_be_readable_and_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        let error = format!("{:#}", Trust::ca_file(&missing).unwrap_err());
        assert!(error.contains("cannot read --ca-cert-file") && error.contains("missing.crt"), "{error}");
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = format!("{:#}", Trust::ca_file(&empty).unwrap_err());
        assert!(error.contains("holds no certificate") && error.contains("empty.crt"), "{error}");
    }

    #[test]
    fn explanations_name_the_trusted_file_or_the_system_roots() {
        let failure = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let file = Trust::CaFile { path: "/etc/kodiak/ca.crt".into(), pem: String::new() };
        let text = file.explain(&failure);
        assert!(text.contains("/etc/kodiak/ca.crt") && text.contains("UnknownIssuer"), "{text}");
        assert!(text.contains("not signed by a CA kodiak-dp trusts"), "{text}");
        assert!(Trust::SystemRoots.explain(&failure).contains("--ca-cert-file"));
        let plaintext = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(file.explain(&plaintext).contains("http://"));
    }
}
