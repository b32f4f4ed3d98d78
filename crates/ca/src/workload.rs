//! Workload (leaf) certificates: the SPIFFE identity a sidecar presents in mesh mTLS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};

use crate::{Ca, CaError, KeyKind, clock};

/// How far a new certificate's `not_before` is moved into the past, so a peer
/// whose clock is a little behind ours still accepts it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What a workload certificate should say and how long it should live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRequest {
    /// The mesh the workload belongs to (the SPIFFE trust domain).
    pub mesh: String,
    /// The services (`kuma.io/service` values) the workload serves; one
    /// `spiffe://<mesh>/<service>` SAN each.
    pub services: Vec<String>,
    /// The Dataplane's tags; one `kuma://<tag>/<value>` SAN each, which
    /// MeshTrafficPermission matches on.
    pub tags: BTreeMap<String, String>,
    /// The kind of key to generate for the workload.
    pub key: KeyKind,
    /// How long the certificate lives (Kuma's `dpCert.rotation.expiration`, 24 h by default).
    pub lifetime: Duration,
    /// The time of issuance.
    pub now: SystemTime,
}

/// A freshly issued workload certificate and its private key.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkloadCert {
    /// The leaf certificate in PEM.
    pub cert_pem: String,
    /// The leaf's private key in PEM (PKCS#8).
    pub key_pem: String,
    /// Start of validity, as written in the certificate (whole seconds).
    pub not_before: SystemTime,
    /// End of validity, as written in the certificate (whole seconds).
    pub not_after: SystemTime,
}

impl std::fmt::Debug for WorkloadCert {
    /// Leaves the private key out, so a logged certificate leaks nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Issues a workload certificate signed by this CA, with a new key.
    ///
    /// URI SANs are `spiffe://<mesh>/<service>` for each service and
    /// `kuma://<tag>/<value>` for each tag (Kuma 2.x), sorted and deduplicated
    /// so the same request gives the same names. Key usage is
    /// digitalSignature + keyEncipherment, extended key usage serverAuth +
    /// clientAuth. `not_before` is backdated by [`CLOCK_SKEW`] but never before
    /// the CA's own; `not_after` is `now + lifetime`, cut to the CA's
    /// `not_after` so a leaf never outlives its issuer.
    pub fn issue(&self, request: &WorkloadRequest) -> Result<WorkloadCert, CaError> {
        let WorkloadRequest { mesh, services, tags, key, lifetime, now } = request;
        let now = *now;
        if mesh.is_empty() {
            return Err(CaError::InvalidRequest("a workload certificate needs a mesh name".into()));
        }
        let services: BTreeSet<&str> = services.iter().map(String::as_str).collect();
        if services.is_empty() || services.contains("") {
            return Err(CaError::InvalidRequest(format!(
                "a workload certificate in mesh `{mesh}` needs at least one service, and no empty service name"
            )));
        }
        if lifetime.is_zero() {
            return Err(CaError::InvalidRequest("a workload certificate needs a lifetime longer than zero".into()));
        }
        if now < self.not_before {
            return Err(CaError::NotYetValid {
                subject: self.subject.clone(),
                not_before: clock::to_offset(self.not_before).to_string(),
            });
        }
        if now >= self.not_after {
            return Err(CaError::Expired {
                subject: self.subject.clone(),
                not_after: clock::to_offset(self.not_after).to_string(),
            });
        }

        let not_before = clock::truncate(clock::sub(now, CLOCK_SKEW)).max(self.not_before);
        let not_after =
            clock::truncate(clock::add(now, *lifetime, "workload certificate lifetime")?.min(self.not_after));

        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, mesh.as_str());
        // The first service names the certificate for people; peers authorize on the SANs.
        params.distinguished_name.push(DnType::CommonName, *services.first().unwrap_or(&""));
        params.subject_alt_names = services
            .iter()
            .map(|service| format!("spiffe://{mesh}/{service}"))
            .chain(tags.iter().map(|(tag, value)| format!("kuma://{tag}/{value}")))
            .map(uri_san)
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = clock::to_offset(not_before);
        params.not_after = clock::to_offset(not_after);

        let key_pair = key.generate()?;
        let cert = params.signed_by(&key_pair, &self.issuer)?;
        Ok(WorkloadCert { cert_pem: cert.pem(), key_pem: key_pair.serialize_pem(), not_before, not_after })
    }
}

fn uri_san(uri: String) -> Result<SanType, CaError> {
    match uri.as_str().try_into() {
        Ok(ia5) => Ok(SanType::URI(ia5)),
        Err(_) => Err(CaError::InvalidRequest(format!("`{uri}` is not ASCII, so it cannot be a URI SAN"))),
    }
}
