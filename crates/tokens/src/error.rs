//! What can go wrong with a token or a signing key, in words a user can act on.

use std::time::SystemTime;

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token's header has no kid (the serial of the key that signed it); issue a new token")]
    MissingKid,
    #[error("the token is signed with {0:?}; only RS256 tokens are accepted")]
    Algorithm(String),
    #[error(
        "the token's signature does not match the signing key with KID {0}: it was signed by another key (was the key replaced?); issue a new token"
    )]
    Signature(String),
    #[error("token expired at {}", humantime::format_rfc3339_seconds(*.0))]
    Expired(SystemTime),
    #[error("token is not valid before {}", humantime::format_rfc3339_seconds(*.0))]
    NotYetValid(SystemTime),
    #[error("token is revoked")]
    Revoked,
    #[error("the token's claims are not valid: {0}")]
    Claims(String),
    #[error("cannot sign the token: {0}")]
    Signing(String),
}

/// Why a signing key could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not PEM: {0}")]
    Pem(String),
    #[error("the signing key is a PEM {0:?} block; expected \"RSA PRIVATE KEY\" (PKCS#1) or \"PRIVATE KEY\" (PKCS#8)")]
    Label(String),
    #[error("the signing key is not a valid RSA private key: {0}")]
    Rsa(String),
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
}
