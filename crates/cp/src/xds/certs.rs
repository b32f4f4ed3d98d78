//! Workload certificates of connected proxies: what a proxy's certificate
//! must say, when it is renewed, and issuing it from the mesh's CA.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kodiak_api::dataplane_view::DataplaneView;
use kodiak_ca::{Ca, KeyKind, Tags, WorkloadCert, WorkloadRequest};

/// A proxy's certificate may not be renewed sooner than this after it was
/// issued, so a tiny lifetime cannot make the sync loop spin.
pub const MIN_RENEWAL_DELAY: Duration = Duration::from_secs(1);

/// What a certificate certifies and how it is made: a certificate is reissued
/// as soon as what a proxy needs differs from what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub mesh: String,
    pub services: Vec<String>,
    pub tags: Tags,
    pub backend: String,
    /// The root of the CA that signs it.
    pub root: Arc<str>,
    pub lifetime: Duration,
    pub key: KeyKind,
}

impl CertSpec {
    /// The identity of `dataplane`: its services and the union of its
    /// inbounds' tags (a tag keeps every value its inbounds give it). A
    /// Dataplane that serves nothing (outbounds only) still needs a
    /// certificate to call mTLS services: it is named
    /// `spiffe://<mesh>/dataplane/<name>`, which no service can be named
    /// (service names hold no `/`), so it matches only `from: Mesh` permissions.
    pub fn of(dataplane: &DataplaneView, backend: &str, root: &Arc<str>, lifetime: Duration, key: KeyKind) -> CertSpec {
        let mut services: Vec<String> = dataplane
            .inbounds
            .iter()
            .map(|inbound| inbound.service.clone())
            .filter(|service| !service.is_empty())
            .collect();
        services.sort();
        services.dedup();
        if services.is_empty() {
            services.push(format!("dataplane/{}", dataplane.name));
        }
        let tags = kodiak_ca::tags_of(
            dataplane
                .inbounds
                .iter()
                .flat_map(|inbound| inbound.tags.iter())
                .map(|(tag, value)| (tag.as_str(), value.as_str())),
        );
        CertSpec {
            mesh: dataplane.mesh.clone(),
            services,
            tags,
            backend: backend.to_owned(),
            root: root.clone(),
            lifetime,
            key,
        }
    }
}

/// A certificate a proxy was given.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub spec: CertSpec,
    pub cert: WorkloadCert,
    /// When it was issued (its `not_before` is earlier, for clock skew).
    pub issued_at: SystemTime,
    /// Its serial number in hex, for logs.
    pub serial: String,
    /// How many certificates the proxy had before this one (0 for the first).
    pub renewals: u64,
}

impl IssuedCert {
    /// When it is renewed: 4/5 into its life counted from its issue, but
    /// never sooner than [`MIN_RENEWAL_DELAY`] after it.
    pub fn renew_at(&self) -> SystemTime {
        renewal_time(self.issued_at, self.cert.not_after)
    }
}

/// 4/5 of the way from `issued_at` to `not_after`, at least
/// [`MIN_RENEWAL_DELAY`] after `issued_at`.
pub fn renewal_time(issued_at: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(issued_at).unwrap_or_default();
    issued_at + (life * 4 / 5).max(MIN_RENEWAL_DELAY)
}

/// Why a proxy gets a new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    First,
    Renewal,
    Changed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::First => "first",
            Reason::Renewal => "renewal",
            Reason::Changed => "identity or CA changed",
        }
    }
}

/// Whether a proxy holding `current` needs a new certificate for `wanted` at `now`.
pub fn reissue(current: Option<&IssuedCert>, wanted: &CertSpec, now: SystemTime) -> Option<Reason> {
    match current {
        None => Some(Reason::First),
        Some(cert) if cert.spec != *wanted => Some(Reason::Changed),
        Some(cert) if now >= cert.renew_at() => Some(Reason::Renewal),
        Some(_) => None,
    }
}

/// Issues a certificate for `spec` from `ca`.
pub fn issue(ca: &Ca, spec: CertSpec, previous: Option<&IssuedCert>, now: SystemTime) -> Result<IssuedCert, String> {
    let request = WorkloadRequest {
        mesh: spec.mesh.clone(),
        services: spec.services.clone(),
        tags: spec.tags.clone(),
        key: spec.key,
        lifetime: spec.lifetime,
        now,
    };
    let cert = ca.issue(&request).map_err(|e| e.to_string())?;
    let serial = cert.serial_hex();
    let renewals = previous.map_or(0, |previous| previous.renewals + 1);
    Ok(IssuedCert { spec, cert, issued_at: now, serial, renewals })
}

#[cfg(test)]
mod tests {
    use kodiak_ca::RootCa;

    use super::*;

    fn view(yaml: &str) -> DataplaneView {
        let document = kodiak_api::parse_document(yaml).unwrap();
        DataplaneView::from_resource(&kodiak_api::Resource::from_document(&document).unwrap())
    }

    fn spec(root: &Arc<str>, lifetime: Duration) -> CertSpec {
        let dataplane = view(
            "{type: Dataplane, mesh: m, name: web-1, networking: {address: 127.0.0.1, inbound: [
               {port: 1, tags: {kuma.io/service: web, version: v1}},
               {port: 2, tags: {kuma.io/service: admin, version: v2, team: a}},
               {port: 3, tags: {kuma.io/service: web, version: v1, team: a}}]}}",
        );
        CertSpec::of(&dataplane, "ca-1", root, lifetime, KeyKind::EcdsaP256)
    }

    #[test]
    fn the_identity_is_every_service_and_the_union_of_inbound_tags() {
        let spec = spec(&Arc::from("root"), Duration::from_secs(60));
        assert_eq!(spec.services, ["admin", "web"]);
        let tags: Vec<(&str, Vec<&str>)> =
            spec.tags.iter().map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect())).collect();
        assert_eq!(
            tags,
            [("kuma.io/service", vec!["admin", "web"]), ("team", vec!["a"]), ("version", vec!["v1", "v2"])],
            "every value of a tag, once and sorted"
        );
    }

    #[test]
    fn a_tag_with_two_values_on_two_inbounds_gives_a_name_for_each() {
        let dataplane = view(
            "{type: Dataplane, mesh: m, name: web-1, networking: {address: 127.0.0.1, inbound: [
               {port: 1, tags: {kuma.io/service: web, team: red}},
               {port: 2, tags: {kuma.io/service: web, team: blue}}]}}",
        );
        let now = SystemTime::now();
        let ca = RootCa::generate("m", "ca-1", KeyKind::EcdsaP256, Duration::from_secs(3600), now).unwrap();
        let spec =
            CertSpec::of(&dataplane, "ca-1", &Arc::from(ca.cert_pem()), Duration::from_secs(60), KeyKind::EcdsaP256);
        let cert = issue(&ca, spec, None, now).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.cert.cert_pem.as_bytes()).unwrap();
        let parsed = pem.parse_x509().unwrap();
        let sans: Vec<String> = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            sans,
            ["URI(spiffe://m/web)", "URI(kuma://kuma.io/service/web)", "URI(kuma://team/blue)", "URI(kuma://team/red)"]
        );
    }

    #[test]
    fn a_dataplane_without_inbounds_is_named_apart_from_every_service() {
        let caller = view(
            "{type: Dataplane, mesh: m, name: client-1, networking: {address: 127.0.0.1, outbound: [
               {port: 20001, tags: {kuma.io/service: web}}]}}",
        );
        let spec = CertSpec::of(&caller, "ca-1", &Arc::from("root"), Duration::from_secs(60), KeyKind::EcdsaP256);
        assert_eq!(spec.services, ["dataplane/client-1"]);
        assert!(spec.tags.is_empty());
    }

    #[test]
    fn renewal_comes_at_four_fifths_of_the_life_from_issue_and_never_in_a_spin() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(renewal_time(t0, t0 + Duration::from_secs(10)), t0 + Duration::from_secs(8));
        assert_eq!(renewal_time(t0, t0 + Duration::from_secs(86_400)), t0 + Duration::from_secs(69_120));
        assert_eq!(renewal_time(t0, t0), t0 + MIN_RENEWAL_DELAY);
        assert_eq!(renewal_time(t0, t0 - Duration::from_secs(5)), t0 + MIN_RENEWAL_DELAY);
    }

    #[test]
    fn a_certificate_is_reissued_when_due_or_when_what_it_says_changes() {
        let now = SystemTime::now();
        let ca = RootCa::generate("m", "ca-1", KeyKind::EcdsaP256, Duration::from_secs(3600), now).unwrap();
        let root: Arc<str> = Arc::from(ca.cert_pem());
        let wanted = spec(&root, Duration::from_secs(10));
        assert_eq!(reissue(None, &wanted, now), Some(Reason::First));
        let cert = issue(&ca, wanted.clone(), None, now).unwrap();
        assert!(!cert.serial.is_empty(), "the serial is logged");
        assert_eq!(reissue(Some(&cert), &wanted, now + Duration::from_secs(7)), None);
        assert_eq!(reissue(Some(&cert), &wanted, now + Duration::from_secs(8)), Some(Reason::Renewal));
        let other_root = CertSpec { root: Arc::from("other"), ..wanted.clone() };
        assert_eq!(reissue(Some(&cert), &other_root, now), Some(Reason::Changed));
        let mut retagged = wanted.clone();
        retagged.tags.entry("version".into()).or_default().insert("v3".into());
        assert_eq!(reissue(Some(&cert), &retagged, now), Some(Reason::Changed));
        let next = issue(&ca, wanted, Some(&cert), now).unwrap();
        assert_eq!(next.renewals, 1);
        assert_ne!(next.serial, cert.serial);
    }
}
