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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyUsagePurpose};

    use super::*;
    use crate::{KeyKind, RootCa, WorkloadRequest};

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn root(key: KeyKind, validity: Duration) -> Ca {
        RootCa::generate("default", "ca-1", key, validity, t0()).unwrap()
    }

    #[test]
    fn a_generated_root_loads_back_at_any_time_inside_its_validity() {
        for key in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            let ca = root(key, 10 * HOUR);
            for offset in [Duration::ZERO, HOUR, 5 * HOUR, 10 * HOUR] {
                let loaded = Ca::from_pem(ca.cert_pem(), ca.key_pem(), t0() + offset).unwrap();
                assert_eq!((loaded.not_before(), loaded.not_after()), (ca.not_before(), ca.not_after()));
                assert_eq!(loaded.cert_pem(), ca.cert_pem());
                assert_eq!(loaded.key_pem(), ca.key_pem());
            }
        }
    }

    #[test]
    fn a_leaf_certificate_is_refused_as_not_a_ca() {
        let ca = root(KeyKind::EcdsaP256, 10 * HOUR);
        let leaf = ca
            .issue(&WorkloadRequest {
                mesh: "default".into(),
                services: vec!["web".into()],
                tags: Default::default(),
                key: KeyKind::EcdsaP256,
                lifetime: HOUR,
                now: t0(),
            })
            .unwrap();
        let err = Ca::from_pem(&leaf.cert_pem, &leaf.key_pem, t0()).unwrap_err();
        assert!(matches!(&err, CaError::NotCa { subject } if subject.contains("web")), "{err}");
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn a_certificate_without_basic_constraints_is_refused_as_not_a_ca() {
        let key = KeyKind::EcdsaP256.generate().unwrap();
        let cert = CertificateParams::new(vec!["example.com".to_owned()]).unwrap().self_signed(&key).unwrap();
        let err = Ca::from_pem(&cert.pem(), &key.serialize_pem(), t0()).unwrap_err();
        assert!(matches!(err, CaError::NotCa { .. }), "{err}");
    }

    #[test]
    fn a_ca_whose_key_usage_forbids_signing_certificates_is_refused() {
        let key = KeyKind::EcdsaP256.generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        let err = Ca::from_pem(&cert.pem(), &key.serialize_pem(), t0()).unwrap_err();
        assert!(matches!(err, CaError::CannotSignCertificates { .. }), "{err}");
        assert!(err.to_string().contains("keyCertSign"), "{err}");
    }

    #[test]
    fn a_key_of_another_ca_is_refused_for_every_combination_of_key_kinds() {
        for cert_kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            for key_kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
                let ca = root(cert_kind, 10 * HOUR);
                let other = root(key_kind, 10 * HOUR);
                let err = Ca::from_pem(ca.cert_pem(), other.key_pem(), t0()).unwrap_err();
                assert!(matches!(err, CaError::KeyMismatch { .. }), "{cert_kind:?}/{key_kind:?}: {err}");
                assert!(err.to_string().contains("does not match"), "{err}");
            }
        }
    }

    #[test]
    fn an_expired_ca_is_refused_from_the_first_second_after_its_not_after() {
        let ca = root(KeyKind::EcdsaP256, 10 * HOUR);
        for late in [Duration::from_secs(1), HOUR, 1000 * HOUR] {
            let err = Ca::from_pem(ca.cert_pem(), ca.key_pem(), ca.not_after() + late).unwrap_err();
            assert!(matches!(err, CaError::Expired { .. }), "{err}");
            assert!(err.to_string().contains("expired at"), "{err}");
        }
    }

    #[test]
    fn a_ca_that_is_not_yet_valid_is_refused() {
        let ca = root(KeyKind::EcdsaP256, 10 * HOUR);
        for early in [Duration::from_secs(1), HOUR] {
            let err = Ca::from_pem(ca.cert_pem(), ca.key_pem(), ca.not_before() - early).unwrap_err();
            assert!(matches!(err, CaError::NotYetValid { .. }), "{err}");
            assert!(err.to_string().contains("clock"), "{err}");
        }
    }

    #[test]
    fn garbage_certificate_text_is_refused_with_what_to_give_instead() {
        let ca = root(KeyKind::EcdsaP256, 10 * HOUR);
        let truncated = &ca.cert_pem()[..ca.cert_pem().len() / 2];
        let corrupted = ca.cert_pem().replacen("MII", "AAA", 1);
        for garbage in ["", "hello", truncated, &corrupted, ca.key_pem()] {
            let err = Ca::from_pem(garbage, ca.key_pem(), t0()).unwrap_err();
            assert!(matches!(err, CaError::CertificatePem { .. }), "{garbage:?}: {err}");
            assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
        }
    }

    #[test]
    fn garbage_key_text_is_refused_with_the_formats_that_work() {
        let ca = root(KeyKind::EcdsaP256, 10 * HOUR);
        let truncated = &ca.key_pem()[..ca.key_pem().len() / 2];
        for garbage in ["", "hello", truncated, ca.cert_pem()] {
            let err = Ca::from_pem(ca.cert_pem(), garbage, t0()).unwrap_err();
            assert!(matches!(err, CaError::KeyPem { .. }), "{garbage:?}: {err}");
            assert!(err.to_string().contains("PKCS#8"), "{err}");
        }
    }
}
