//! The `builtin` backend: a self-signed root CA generated for one mesh backend.

use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyUsagePurpose, SanType};

use crate::workload::CLOCK_SKEW;
use crate::{Ca, CaError, KeyKind, clock};

/// Generates the root CA of a `builtin` mTLS backend.
#[derive(Debug)]
pub struct RootCa;

impl RootCa {
    /// A self-signed CA for `backend` of `mesh`, valid from `now` (backdated by
    /// [`CLOCK_SKEW`] so sidecars with a slightly late clock accept it) for
    /// `validity`. Like Kuma's builtin CA it carries the mesh's SPIFFE trust
    /// domain as a URI SAN, `spiffe://<mesh>`.
    pub fn generate(
        mesh: &str,
        backend: &str,
        key: KeyKind,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Ca, CaError> {
        check(mesh, backend, validity)?;
        Self::sign(mesh, backend, key.generate()?, validity, now)
    }

    /// As [`RootCa::generate`], with the key `key_pem` (PKCS#8 PEM) kept from
    /// before: a root whose certificate was lost gets a new one for its key.
    pub fn with_key(
        mesh: &str,
        backend: &str,
        key_pem: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Ca, CaError> {
        check(mesh, backend, validity)?;
        let key_pair = rcgen::KeyPair::from_pem(key_pem).map_err(|e| CaError::KeyPem { reason: e.to_string() })?;
        Self::sign(mesh, backend, key_pair, validity, now)
    }

    fn sign(
        mesh: &str,
        backend: &str,
        key_pair: rcgen::KeyPair,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Ca, CaError> {
        let not_before = clock::truncate(clock::sub(now, CLOCK_SKEW));
        let not_after = clock::truncate(clock::add(now, validity, "CA validity")?);

        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "Kodiak");
        params.distinguished_name.push(DnType::OrganizationalUnitName, format!("Mesh {mesh}"));
        params.distinguished_name.push(DnType::CommonName, format!("{mesh} {backend} root CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{mesh}")
                .try_into()
                .map_err(|_| CaError::InvalidRequest(format!("mesh name `{mesh}` is not ASCII")))?,
        )];
        params.not_before = clock::to_offset(not_before);
        params.not_after = clock::to_offset(not_after);

        let cert = params.self_signed(&key_pair)?;
        let subject = x509_parser::parse_x509_certificate(cert.der())
            .map(|(_, parsed)| parsed.subject().to_string())
            .map_err(|e| CaError::CertificatePem { reason: e.to_string() })?;
        Ok(Ca {
            subject,
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
            issuer: Issuer::new(params, key_pair),
            not_before,
            not_after,
        })
    }
}

fn check(mesh: &str, backend: &str, validity: Duration) -> Result<(), CaError> {
    if mesh.is_empty() || backend.is_empty() {
        return Err(CaError::InvalidRequest("a root CA needs a mesh name and a backend name".into()));
    }
    if validity.is_zero() {
        return Err(CaError::InvalidRequest("a root CA needs a validity longer than zero".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;

    use super::*;

    #[test]
    fn a_root_is_a_self_signed_ca_for_the_mesh_trust_domain() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for key in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            let ca = RootCa::generate("payments", "ca-1", key, Duration::from_secs(3600), now).unwrap();
            assert_eq!(ca.not_before(), now - CLOCK_SKEW);
            assert_eq!(ca.not_after(), now + Duration::from_secs(3600));
            let (_, pem) = parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
            let cert = pem.parse_x509().unwrap();
            assert_eq!(cert.subject(), cert.issuer());
            assert!(ca.subject().contains("payments") && ca.subject().contains("ca-1"), "{}", ca.subject());
            assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.key_cert_sign() && ku.crl_sign());
            let san = cert.subject_alternative_name().unwrap().unwrap();
            assert_eq!(san.value.general_names, [GeneralName::URI("spiffe://payments")]);
            assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(!format!("{ca:?}").contains("PRIVATE"), "Debug must not print the key");
        }
    }

    #[test]
    fn a_root_can_be_signed_again_for_a_kept_key() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let first = RootCa::generate("payments", "ca-1", KeyKind::EcdsaP256, Duration::from_secs(3600), now).unwrap();
        let later = now + Duration::from_secs(60);
        let again = RootCa::with_key("payments", "ca-1", first.key_pem(), Duration::from_secs(3600), later).unwrap();
        assert_eq!(again.key_pem(), first.key_pem());
        assert_ne!(again.cert_pem(), first.cert_pem());
        assert_eq!(again.subject(), first.subject());
        let reread =
            Ca::from_pem(again.cert_pem(), first.key_pem(), later).expect("the new certificate matches the key");
        assert_eq!(reread.not_after(), later + Duration::from_secs(3600));
        let err = RootCa::with_key("payments", "ca-1", "not a key", Duration::from_secs(3600), now).unwrap_err();
        assert!(matches!(err, CaError::KeyPem { .. }), "{err}");
    }

    #[test]
    fn a_root_needs_names_and_a_validity() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let hour = Duration::from_secs(3600);
        for (mesh, backend, validity) in
            [("", "ca-1", hour), ("default", "", hour), ("default", "ca-1", Duration::ZERO)]
        {
            let err = RootCa::generate(mesh, backend, KeyKind::EcdsaP256, validity, now).unwrap_err();
            assert!(matches!(err, CaError::InvalidRequest(_)), "{err}");
        }
    }
}
