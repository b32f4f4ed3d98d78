//! Issued workload certificates chain to their CA under rustls-webpki (aws-lc-rs
//! signature algorithms), and only to their CA.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kodiak_ca::{Ca, KeyKind, RootCa, WorkloadCert, WorkloadRequest};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn root(mesh: &str, key: KeyKind) -> Ca {
    RootCa::generate(mesh, "ca-1", key, 365 * DAY, now()).unwrap()
}

fn leaf(ca: &Ca, mesh: &str, key: KeyKind) -> WorkloadCert {
    ca.issue(&WorkloadRequest {
        mesh: mesh.into(),
        services: vec!["backend".into()],
        tags: kodiak_ca::tags_of([("kuma.io/zone", "east")]),
        key,
        lifetime: DAY,
        now: now(),
    })
    .unwrap()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Verifies `leaf_pem` against `ca_pem` as a trust anchor, for both client and server use.
fn verify(ca_pem: &str, leaf_pem: &str, at: SystemTime) -> Result<(), webpki::Error> {
    let ca_der = der(ca_pem);
    let anchor = anchor_from_trusted_cert(&ca_der)?;
    let leaf_der = der(leaf_pem);
    let leaf = EndEntityCert::try_from(&leaf_der)?;
    let time = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap());
    for usage in [KeyUsage::client_auth(), KeyUsage::server_auth()] {
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&anchor),
            &[],
            time,
            usage,
            None,
            None,
        )?;
    }
    Ok(())
}

#[test]
fn leaves_of_every_key_kind_chain_to_cas_of_every_key_kind() {
    for ca_key in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let ca = root("default", ca_key);
        for leaf_key in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            let cert = leaf(&ca, "default", leaf_key);
            verify(ca.cert_pem(), &cert.cert_pem, now()).unwrap_or_else(|e| panic!("{ca_key:?}/{leaf_key:?}: {e}"));
        }
    }
}

#[test]
fn a_leaf_from_another_meshs_ca_does_not_verify() {
    let ours = root("default", KeyKind::EcdsaP256);
    let theirs = root("other", KeyKind::EcdsaP256);
    let foreign = leaf(&theirs, "other", KeyKind::EcdsaP256);
    assert!(matches!(verify(ours.cert_pem(), &foreign.cert_pem, now()), Err(webpki::Error::UnknownIssuer)));
}

#[test]
fn a_leaf_from_another_ca_of_the_same_mesh_does_not_verify() {
    let ours = root("default", KeyKind::EcdsaP256);
    let replaced = root("default", KeyKind::EcdsaP256);
    let foreign = leaf(&replaced, "default", KeyKind::EcdsaP256);
    assert!(verify(ours.cert_pem(), &foreign.cert_pem, now()).is_err());
}

#[test]
fn a_leaf_verifies_only_within_its_validity() {
    let ca = root("default", KeyKind::EcdsaP256);
    let cert = leaf(&ca, "default", KeyKind::EcdsaP256);
    verify(ca.cert_pem(), &cert.cert_pem, cert.not_before).unwrap();
    verify(ca.cert_pem(), &cert.cert_pem, cert.not_after - Duration::from_secs(1)).unwrap();
    let late = cert.not_after + Duration::from_secs(1);
    assert!(matches!(verify(ca.cert_pem(), &cert.cert_pem, late), Err(webpki::Error::CertExpired { .. })));
    let early = cert.not_before - Duration::from_secs(1);
    assert!(matches!(verify(ca.cert_pem(), &cert.cert_pem, early), Err(webpki::Error::CertNotValidYet { .. })));
}

#[test]
fn a_provided_ca_reloaded_from_its_pem_issues_leaves_that_chain_to_it() {
    for key in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let generated = root("default", key);
        let provided = Ca::from_pem(generated.cert_pem(), generated.key_pem(), now()).unwrap();
        assert_eq!(provided.subject(), generated.subject());
        let cert = leaf(&provided, "default", KeyKind::EcdsaP256);
        verify(generated.cert_pem(), &cert.cert_pem, now()).unwrap();
    }
}
