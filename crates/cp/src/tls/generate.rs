//! The certificate a control plane makes for itself when the user gives
//! none: a private CA that signs one server certificate. The CA's key is
//! thrown away once the server certificate is signed, so nothing else can
//! ever be issued under it.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

/// Ten years: long enough that nobody has to renew it by hand.
pub const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Clients whose clock is a little behind still accept a fresh certificate.
const BACKDATE: Duration = Duration::from_secs(3600);

/// PEM texts of a generated certificate.
pub struct Generated {
    /// The server certificate, then the CA that signed it: the file a
    /// server presents and a client may trust alike.
    pub chain_pem: String,
    pub key_pem: String,
}

/// A server certificate (ECDSA P-256) for `names` (host names and IP
/// addresses), valid from `now` for [`VALIDITY`], signed by a new CA.
pub fn generate(names: &[String], now: SystemTime) -> Result<Generated, rcgen::Error> {
    let not_before = OffsetDateTime::from(now - BACKDATE);
    let not_after = OffsetDateTime::from(now + VALIDITY);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::OrganizationName, "Kodiak");
    // A name of its own, so two control planes' CAs are told apart.
    let id = uuid::Uuid::new_v4().simple().to_string();
    ca.distinguished_name.push(DnType::CommonName, format!("kodiak-cp CA {}", &id[..12]));
    // It signs the one server certificate below and nothing under it.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut server = CertificateParams::new(names.to_vec())?;
    server.distinguished_name.push(DnType::OrganizationName, "Kodiak");
    server.distinguished_name.push(DnType::CommonName, "kodiak-cp");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = not_before;
    server.not_after = not_after;
    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let server_cert = server.signed_by(&server_key, &Issuer::from_params(&ca, &ca_key))?;
    Ok(Generated { chain_pem: format!("{}{}", server_cert.pem(), ca_cert.pem()), key_pem: server_key.serialize_pem() })
}

/// The names the generated certificate carries: this host's name,
/// `localhost`, the loopback addresses, and each concrete address the
/// servers listen on (`0.0.0.0` and `::` name no address).
pub fn names(hostname: &str, interfaces: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let candidates = [hostname, "localhost", "127.0.0.1", "::1"].into_iter().chain(interfaces.iter().copied());
    for name in candidates {
        let unspecified = name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if !name.is_empty() && !unspecified && !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::Pem;

    #[test]
    fn names_leave_out_duplicates_and_wildcard_addresses() {
        let names = names("box-1", &["127.0.0.1", "0.0.0.0", "::", "10.1.2.3"]);
        assert_eq!(names, ["box-1", "localhost", "127.0.0.1", "::1", "10.1.2.3"]);
    }

    #[test]
    fn a_server_certificate_signed_by_a_ca_of_its_own() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let generated = generate(&names("box-1", &[]), now).unwrap();
        let pems: Vec<Pem> = Pem::iter_from_buffer(generated.chain_pem.as_bytes()).map(Result::unwrap).collect();
        assert_eq!(pems.len(), 2, "the server certificate, then its CA");
        let server = pems[0].parse_x509().unwrap();
        let ca = pems[1].parse_x509().unwrap();
        assert_eq!(server.issuer(), ca.subject());
        assert!(!server.is_ca() && ca.is_ca());
        server.verify_signature(Some(ca.public_key())).unwrap();
        let sans = server.subject_alternative_name().unwrap().unwrap().value.general_names.clone();
        assert!(sans.contains(&GeneralName::DNSName("box-1")), "{sans:?}");
        assert!(sans.contains(&GeneralName::DNSName("localhost")), "{sans:?}");
        assert!(sans.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])), "{sans:?}");
        let years = (server.validity().not_after.timestamp() - 1_800_000_000) / (365 * 24 * 3600);
        assert_eq!(years, 10);
        assert!(generated.key_pem.contains("PRIVATE KEY"));
    }
}
