//! Whom a client trusts for an `https://` control plane's certificate (the
//! system's roots, CA certificates the user gave, or nobody checked), and
//! how a refused certificate is found inside a request error.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// Whose certificates a [`crate::Client`] accepts over `https://`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's trusted roots.
    #[default]
    SystemRoots,
    /// These CA certificates and no others.
    CaCerts(CaCerts),
    /// Any certificate: the connection is encrypted but not authenticated.
    SkipVerify,
}

/// CA certificates read from PEM, checked to be usable as trust anchors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCerts {
    /// The certificate blocks alone, re-encoded (anything else the text held,
    /// such as a private key, is dropped).
    pem: String,
    certs: Vec<CertificateDer<'static>>,
}

/// Why a text cannot serve as CA certificates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaCertsError {
    #[error("is not a PEM file: {0}")]
    NotPem(String),
    #[error(
        "holds no certificate (expected PEM blocks \"-----BEGIN CERTIFICATE-----\", \
         such as the control plane's kodiak-cp.crt)"
    )]
    NoCertificate,
    #[error("holds a certificate that cannot be used as a trust anchor: {0}")]
    NotAnAnchor(String),
}

impl CaCerts {
    /// The `CERTIFICATE` blocks of a PEM text; at least one, each usable as
    /// a trust anchor.
    pub fn from_pem(text: &str) -> Result<CaCerts, CaCertsError> {
        let blocks = pem::parse_many(text).map_err(|error| CaCertsError::NotPem(error.to_string()))?;
        let blocks: Vec<pem::Pem> = blocks.into_iter().filter(|block| block.tag() == "CERTIFICATE").collect();
        if blocks.is_empty() {
            return Err(CaCertsError::NoCertificate);
        }
        let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        let pem = blocks.iter().map(|block| pem::encode_config(block, lf)).collect();
        let certs = blocks.iter().map(|block| CertificateDer::from(block.contents().to_vec())).collect();
        let ca_certs = CaCerts { pem, certs };
        ca_certs.roots()?;
        Ok(ca_certs)
    }

    /// The certificates as PEM, one block after another.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    fn roots(&self) -> Result<rustls::RootCertStore, CaCertsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in &self.certs {
            roots.add(cert.clone()).map_err(|error| CaCertsError::NotAnAnchor(error.to_string()))?;
        }
        Ok(roots)
    }

    /// A rustls client configuration (aws-lc-rs, TLS 1.2 and 1.3) that
    /// trusts these certificates only.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, CaCertsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("aws-lc-rs offers TLS 1.2 and 1.3");
        Ok(builder.with_root_certificates(self.roots()?).with_no_client_auth())
    }
}

/// The TLS failure behind a request error, if that is what it was. rustls'
/// error travels inside `io::Error`s (sometimes one inside another), whose
/// `source()` skips what they wrap.
pub fn tls_failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(failure) = error.downcast_ref::<rustls::Error>() {
        return Some(failure);
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && let Some(failure) = tls_failure(inner)
    {
        return Some(failure);
    }
    error.source().and_then(tls_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate made for the test.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn only_certificate_blocks_are_kept() {
        let ca = ca_pem();
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let certs = CaCerts::from_pem(&format!("comment\n{ca}{key}{ca}")).unwrap();
        assert_eq!(certs.certs.len(), 2);
        assert_eq!(certs.pem(), format!("{ca}{ca}").replace("\r\n", "\n"));
        assert!(!certs.pem().contains("PRIVATE KEY"));
        assert_eq!(CaCerts::from_pem(certs.pem()).unwrap(), certs, "the stored form reads back the same");
        certs.client_config().unwrap();
    }

    #[test]
    fn texts_without_a_usable_certificate_are_refused() {
        assert_eq!(CaCerts::from_pem("").unwrap_err(), CaCertsError::NoCertificate);
        assert_eq!(CaCerts::from_pem("hello\n").unwrap_err(), CaCertsError::NoCertificate);
        let key_only = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(CaCerts::from_pem(key_only).unwrap_err(), CaCertsError::NoCertificate);
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(CaCerts::from_pem(broken).unwrap_err(), CaCertsError::NotPem(_)));
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(CaCerts::from_pem(not_der).unwrap_err(), CaCertsError::NotAnAnchor(_)));
    }

    #[test]
    fn a_tls_failure_is_found_inside_an_io_error() {
        let failure = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, failure.clone());
        assert_eq!(tls_failure(&io), Some(&failure));
        let wrapped = std::io::Error::other(io);
        assert_eq!(tls_failure(&wrapped), Some(&failure));
        assert_eq!(tls_failure(&std::io::Error::other("refused")), None);
    }
}
