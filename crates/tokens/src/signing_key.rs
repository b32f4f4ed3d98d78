//! RSA signing keys: generated at 2048 bits, written as PEM `RSA PRIVATE
//! KEY` (PKCS#1), read from PKCS#1 or PKCS#8 PEM.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};

use crate::der::pkcs1_of_pkcs8;
use crate::error::KeyError;

/// A private key that signs tokens; its public half verifies them.
pub struct SigningKey {
    key: KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(RSA {} bits)", self.key.public_modulus_len() * 8)
    }
}

const PKCS1_LABEL: &str = "RSA PRIVATE KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";

impl SigningKey {
    /// A new RSA 2048 key.
    pub fn generate() -> Result<Self, KeyError> {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(Self { key })
    }

    /// Reads a PEM `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8) block.
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let block = pem::parse(text).map_err(|e| KeyError::Pem(e.to_string()))?;
        let key = match block.tag() {
            PKCS1_LABEL => KeyPair::from_der(block.contents()),
            PKCS8_LABEL => KeyPair::from_pkcs8(block.contents()),
            other => return Err(KeyError::Label(other.to_owned())),
        };
        Ok(Self { key: key.map_err(|e| KeyError::Rsa(e.to_string()))? })
    }

    /// The key as PEM `RSA PRIVATE KEY` (PKCS#1).
    pub fn to_pem(&self) -> String {
        let pkcs8 = self.key.as_der().expect("a key that was read or generated serializes");
        let pkcs1 = pkcs1_of_pkcs8(pkcs8.as_ref()).expect("aws-lc-rs writes a well-formed PKCS#8 RSA key");
        pem::encode(&pem::Pem::new(PKCS1_LABEL, pkcs1.to_vec()))
    }

    /// An RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let mut signature = vec![0; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature).map_err(|e| e.to_string())?;
        Ok(signature)
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, self.key.public_key().as_ref())
            .verify(message, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_as_pkcs1_and_pkcs8() {
        let key = SigningKey::generate().unwrap();
        let pem_text = key.to_pem();
        assert!(pem_text.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem_text}");
        let again = SigningKey::from_pem(pem_text.as_bytes()).unwrap();
        let signature = key.sign(b"message").unwrap();
        assert!(again.verifies(b"message", &signature));
        assert!(!again.verifies(b"other message", &signature));
        assert_eq!(format!("{again:?}"), "SigningKey(RSA 2048 bits)");

        let pkcs8 = pem::encode(&pem::Pem::new(PKCS8_LABEL, key.key.as_der().unwrap().as_ref().to_vec()));
        assert!(SigningKey::from_pem(pkcs8.as_bytes()).unwrap().verifies(b"message", &signature));
    }

    #[test]
    fn bad_pem_is_named() {
        let error = SigningKey::from_pem(b"not a key").unwrap_err();
        assert!(matches!(error, KeyError::Pem(_)), "{error}");
        let certificate = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        let error = SigningKey::from_pem(certificate.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("\"CERTIFICATE\""), "{error}");
        let garbage = pem::encode(&pem::Pem::new(PKCS1_LABEL, vec![1, 2, 3]));
        assert!(matches!(SigningKey::from_pem(garbage.as_bytes()).unwrap_err(), KeyError::Rsa(_)));
    }
}
