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
    /// The Dataplane's tags, each with every value its inbounds give it;
    /// one `kuma://<tag>/<value>` SAN per value, which MeshTrafficPermission
    /// matches on.
    pub tags: Tags,
    /// The kind of key to generate for the workload.
    pub key: KeyKind,
    /// How long the certificate lives (Kuma's `dpCert.rotation.expiration`, 24 h by default).
    pub lifetime: Duration,
    /// The time of issuance.
    pub now: SystemTime,
}

/// A workload's tags: each tag with every value it has (on one inbound or another).
pub type Tags = BTreeMap<String, BTreeSet<String>>;

/// [`Tags`] from `(tag, value)` pairs; a tag given twice keeps both values.
pub fn tags_of<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Tags {
    let mut tags = Tags::new();
    for (tag, value) in pairs {
        tags.entry(tag.into()).or_default().insert(value.into());
    }
    tags
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

impl WorkloadCert {
    /// The certificate's serial number in lower-case hex, as logs and
    /// `openssl x509 -serial` name it; empty when the PEM cannot be read.
    pub fn serial_hex(&self) -> String {
        x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .ok()
            .and_then(|(_, pem)| pem.parse_x509().ok().map(|cert| cert.raw_serial_as_string().replace(':', "")))
            .unwrap_or_default()
    }
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
            .chain(
                tags.iter().flat_map(|(tag, values)| values.iter().map(move |value| format!("kuma://{tag}/{value}"))),
            )
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

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;
    use x509_parser::public_key::PublicKey;

    use super::*;
    use crate::RootCa;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn ca() -> Ca {
        RootCa::generate("default", "ca-1", KeyKind::EcdsaP256, 24 * 365 * HOUR, t0()).unwrap()
    }

    fn request() -> WorkloadRequest {
        WorkloadRequest {
            mesh: "default".into(),
            services: vec!["web".into(), "backend".into(), "web".into()],
            tags: tags_of([
                ("kuma.io/service", "backend"),
                ("version", "v2"),
                ("kuma.io/zone", "east"),
                ("version", "v1"),
            ]),
            key: KeyKind::EcdsaP256,
            lifetime: 24 * HOUR,
            now: t0() + HOUR,
        }
    }

    /// Runs `check` on the parsed certificate in `pem`.
    fn parsed<T>(pem: &str, check: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> T) -> T {
        let (_, pem) = parse_x509_pem(pem.as_bytes()).unwrap();
        check(&pem.parse_x509().unwrap())
    }

    fn uris(pem: &str) -> Vec<String> {
        parsed(pem, |cert| {
            let san = cert.subject_alternative_name().unwrap().unwrap();
            san.value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::URI(uri) => uri.to_string(),
                    other => panic!("unexpected SAN {other:?}"),
                })
                .collect()
        })
    }

    #[test]
    fn sans_are_spiffe_ids_of_the_services_then_kuma_ids_of_the_tags_sorted_and_deduplicated() {
        let cert = ca().issue(&request()).unwrap();
        assert_eq!(
            uris(&cert.cert_pem),
            [
                "spiffe://default/backend",
                "spiffe://default/web",
                "kuma://kuma.io/service/backend",
                "kuma://kuma.io/zone/east",
                "kuma://version/v1",
                "kuma://version/v2",
            ]
        );
    }

    #[test]
    fn a_leaf_is_for_signing_and_key_exchange_in_both_directions_and_is_not_a_ca() {
        let cert = ca().issue(&request()).unwrap();
        parsed(&cert.cert_pem, |cert| {
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature() && ku.key_encipherment());
            assert!(!ku.key_cert_sign() && !ku.crl_sign());
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && eku.client_auth);
            assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
            assert!(cert.issuer().to_string().contains("default ca-1 root CA"), "{}", cert.issuer());
        });
    }

    #[test]
    fn validity_is_backdated_for_clock_skew_and_written_as_returned() {
        let req = request();
        let cert = ca().issue(&req).unwrap();
        assert_eq!(cert.not_before, req.now - CLOCK_SKEW);
        assert_eq!(cert.not_after, req.now + req.lifetime);
        parsed(&cert.cert_pem, |parsed| {
            assert_eq!(clock::from_asn1(parsed.validity().not_before), cert.not_before);
            assert_eq!(clock::from_asn1(parsed.validity().not_after), cert.not_after);
        });
    }

    #[test]
    fn validity_stays_inside_the_cas() {
        let ca = RootCa::generate("default", "ca-1", KeyKind::EcdsaP256, 10 * HOUR, t0()).unwrap();
        let first = ca.issue(&WorkloadRequest { now: ca.not_before(), ..request() }).unwrap();
        assert_eq!(first.not_before, ca.not_before());
        let late = ca.issue(&WorkloadRequest { now: t0() + 9 * HOUR, ..request() }).unwrap();
        assert_eq!(late.not_after, ca.not_after());
    }

    #[test]
    fn an_expired_or_not_yet_valid_ca_issues_nothing() {
        let ca = RootCa::generate("default", "ca-1", KeyKind::EcdsaP256, 10 * HOUR, t0()).unwrap();
        let err = ca.issue(&WorkloadRequest { now: ca.not_after(), ..request() }).unwrap_err();
        assert!(matches!(err, CaError::Expired { .. }), "{err}");
        let err = ca.issue(&WorkloadRequest { now: ca.not_before() - HOUR, ..request() }).unwrap_err();
        assert!(matches!(err, CaError::NotYetValid { .. }), "{err}");
    }

    #[test]
    fn the_rsa_option_gives_a_2048_bit_rsa_key_signed_by_an_ecdsa_ca() {
        let cert = ca().issue(&WorkloadRequest { key: KeyKind::Rsa2048, ..request() }).unwrap();
        assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        parsed(&cert.cert_pem, |cert| match cert.public_key().parsed().unwrap() {
            PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 2048),
            other => panic!("expected an RSA key, got {other:?}"),
        });
        let key = rcgen::KeyPair::from_pem(&cert.key_pem).unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_RSA_SHA256);
    }

    #[test]
    fn the_default_key_is_ecdsa_p256_and_every_leaf_gets_its_own() {
        assert_eq!(KeyKind::default(), KeyKind::EcdsaP256);
        let ca = ca();
        let a = ca.issue(&request()).unwrap();
        let b = ca.issue(&request()).unwrap();
        assert_ne!(a.key_pem, b.key_pem);
        assert_eq!(uris(&a.cert_pem), uris(&b.cert_pem));
        let key = rcgen::KeyPair::from_pem(&a.key_pem).unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        let serial = a.serial_hex();
        assert!(!serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit()), "{serial}");
        assert_ne!(serial, b.serial_hex());
        assert!(!format!("{a:?}").contains("PRIVATE"), "Debug must not print the key");
    }

    #[test]
    fn requests_that_cannot_become_a_certificate_are_refused() {
        let ca = ca();
        let bad = [
            WorkloadRequest { mesh: String::new(), ..request() },
            WorkloadRequest { services: vec![], ..request() },
            WorkloadRequest { services: vec![String::new()], ..request() },
            WorkloadRequest { lifetime: Duration::ZERO, ..request() },
            WorkloadRequest { services: vec!["caf\u{e9}".into()], ..request() },
        ];
        for req in bad {
            let err = ca.issue(&req).unwrap_err();
            assert!(matches!(err, CaError::InvalidRequest(_)), "{req:?}: {err}");
        }
    }
}
