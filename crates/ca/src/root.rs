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
        if mesh.is_empty() || backend.is_empty() {
            return Err(CaError::InvalidRequest("a root CA needs a mesh name and a backend name".into()));
        }
        if validity.is_zero() {
            return Err(CaError::InvalidRequest("a root CA needs a validity longer than zero".into()));
        }
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

        let key_pair = key.generate()?;
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
