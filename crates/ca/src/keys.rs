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
}

impl KeyKind {
    /// Generates a fresh key pair of this kind.
    pub(crate) fn generate(self) -> Result<KeyPair, CaError> {
        Ok(match self {
            KeyKind::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
            KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?,
        })
    }
}
