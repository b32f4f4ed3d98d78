//! Whom kodiak-dp trusts for the control plane: the CA certificates of
//! `--ca-cert-file` only, else the system's trusted roots; and how a TLS
//! failure is told to the user.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kodiak_client::tls::CaCerts;
use rustls::ClientConfig;

/// Where the trusted certificates came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// `--ca-cert-file`: these certificates and nothing else.
    CaFile { path: PathBuf, certs: CaCerts },
    /// The operating system's trusted roots.
    SystemRoots,
}

impl Trust {
    /// Reads `--ca-cert-file`; an unreadable file or one without a PEM
    /// certificate is an error naming it.
    pub fn ca_file(path: &Path) -> anyhow::Result<Trust> {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("cannot read --ca-cert-file {}", path.display()))?;
        let certs = CaCerts::from_pem(&pem).with_context(|| format!("--ca-cert-file {}", path.display()))?;
        Ok(Trust::CaFile { path: path.to_owned(), certs })
    }

    /// The CA certificates (PEM) Envoy is to trust for the control plane,
    /// when the user named them.
    pub fn ca_pem(&self) -> Option<&str> {
        match self {
            Trust::CaFile { certs, .. } => Some(certs.pem()),
            Trust::SystemRoots => None,
        }
    }

    /// A rustls client configuration (aws-lc-rs, TLS 1.2 and later) that
    /// trusts exactly the `--ca-cert-file` certificates; `None` for the
    /// system's roots, which the HTTP client checks by itself.
    pub fn client_config(&self) -> anyhow::Result<Option<ClientConfig>> {
        let Trust::CaFile { path, certs } = self else { return Ok(None) };
        let config = certs.client_config().with_context(|| format!("--ca-cert-file {}", path.display()))?;
        Ok(Some(config))
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

/// The TLS failure behind a request error (shared with kodiakctl's client).
pub use kodiak_client::tls::tls_failure;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `--ca-cert-file` read from `/etc/kodiak/ca.crt`, holding one certificate.
    pub(crate) fn ca_file() -> Trust {
        let cert = rcgen::generate_simple_self_signed(vec!["cp".to_owned()]).unwrap().cert.pem();
        Trust::CaFile { path: "/etc/kodiak/ca.crt".into(), certs: CaCerts::from_pem(&cert).unwrap() }
    }

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
        let file = ca_file();
        let text = file.explain(&failure);
        assert!(text.contains("/etc/kodiak/ca.crt") && text.contains("UnknownIssuer"), "{text}");
        assert!(text.contains("not signed by a CA kodiak-dp trusts"), "{text}");
        assert!(Trust::SystemRoots.explain(&failure).contains("--ca-cert-file"));
        let plaintext = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(file.explain(&plaintext).contains("http://"));
    }
}
