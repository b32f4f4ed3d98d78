//! The `provided` backend: a CA certificate and key the user brings, checked before use.

use std::time::SystemTime;

use rcgen::{Issuer, KeyPair};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::parse_x509_pem;

use crate::{Ca, CaError, clock};

impl Ca {
    /// Loads a user's CA from PEM text and refuses it, with a message saying
    /// what to fix, when it is not a CA, may not sign certificates, does not
    /// match `key_pem`, or is not valid at `now`. Only the first certificate of
    /// `cert_pem` is used; both texts are kept as given.
    pub fn from_pem(cert_pem: &str, key_pem: &str, now: SystemTime) -> Result<Ca, CaError> {
        let (_, pem) =
            parse_x509_pem(cert_pem.as_bytes()).map_err(|e| CaError::CertificatePem { reason: e.to_string() })?;
        if pem.label != "CERTIFICATE" {
            return Err(CaError::CertificatePem { reason: format!("found a `{}` PEM block", pem.label) });
        }
        let cert = pem.parse_x509().map_err(|e| CaError::CertificatePem { reason: e.to_string() })?;
        let subject = cert.subject().to_string();

        check_is_ca(&cert, &subject)?;
        let not_before = clock::from_asn1(cert.validity().not_before);
        let not_after = clock::from_asn1(cert.validity().not_after);
        if now < not_before {
            return Err(CaError::NotYetValid { subject, not_before: cert.validity().not_before.to_string() });
        }
        if now > not_after {
            return Err(CaError::Expired { subject, not_after: cert.validity().not_after.to_string() });
        }

        let key_pair = KeyPair::from_pem(key_pem).map_err(|e| CaError::KeyPem { reason: e.to_string() })?;
        // Compare the raw public keys, not the SubjectPublicKeyInfo: algorithm
        // parameters may be encoded differently for the same key.
        if cert.public_key().subject_public_key.data.as_ref() != key_pair.public_key_raw() {
            return Err(CaError::KeyMismatch { subject });
        }

        let issuer = Issuer::from_ca_cert_der(&pem.contents.clone().into(), key_pair)?;
        Ok(Ca { subject, cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned(), issuer, not_before, not_after })
    }
}

/// `basicConstraints CA:true` and, when keyUsage is present, keyCertSign (RFC 5280 §4.2.1.3, §4.2.1.9).
fn check_is_ca(cert: &X509Certificate<'_>, subject: &str) -> Result<(), CaError> {
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(CaError::NotCa { subject: subject.to_owned() });
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            Err(CaError::CannotSignCertificates { subject: subject.to_owned() })
        }
        Ok(_) => Ok(()),
        Err(e) => Err(CaError::CertificatePem { reason: format!("unreadable keyUsage extension: {e}") }),
    }
}
