//! Key types the CA can generate.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize};

use crate::CaError;

/// The kind of key pair generated for a CA or a workload certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256: small, fast to generate and to sign with (Linkerd's choice).
    #[default]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures, for peers that only speak RSA.
    Rsa2048,
    /// RSA 3072, as [`KeyKind::Rsa2048`] with a larger key (a root CA's `RSAbits: 3072`).
    Rsa3072,
    /// RSA 4096, as [`KeyKind::Rsa2048`] with a larger key (a root CA's `RSAbits: 4096`).
    Rsa4096,
}

impl KeyKind {
    /// Generates a fresh key pair of this kind.
    pub(crate) fn generate(self) -> Result<KeyPair, CaError> {
        Ok(match self {
            KeyKind::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?,
            KeyKind::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072)?,
            KeyKind::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use x509_parser::pem::parse_x509_pem;
    use x509_parser::public_key::PublicKey;

    use super::*;

    #[test]
    fn each_rsa_kind_gives_a_key_of_its_size() {
        for (kind, bits) in [(KeyKind::Rsa2048, 2048), (KeyKind::Rsa3072, 3072)] {
            let key = kind.generate().unwrap();
            let cert = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&key).unwrap();
            let (_, pem) = parse_x509_pem(cert.pem().as_bytes()).unwrap();
            match pem.parse_x509().unwrap().public_key().parsed().unwrap() {
                PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), bits, "{kind:?}"),
                other => panic!("{kind:?}: expected an RSA key, got {other:?}"),
            }
        }
    }
}
