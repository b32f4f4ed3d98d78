//! Kodiak's tokens, in the Kuma-compatible format: RS256 JSON Web Tokens whose
//! header names the signing key (`kid`, the key's serial number).
//!
//! - [`DataplaneClaims`]: what a sidecar may register as (name, mesh, tags).
//! - [`UserClaims`]: who calls the REST API (name, groups).
//! - [`SigningKey`]: an RSA 2048 key, stored as PEM in a Secret.
//! - [`Revocations`]: the token ids (`jti`) that no longer count.
//!
//! Pure: no I/O, the clock is an argument. Keys and signatures come from
//! aws-lc-rs, the one crypto backend of the workspace.

mod claims;
mod dataplane;
mod der;
mod error;
mod jwt;
mod revocations;
mod signing_key;

pub use claims::{Claims, DataplaneClaims, Registered, UserClaims};
pub use dataplane::{DataplaneIdentity, check_dataplane};
pub use error::{KeyError, TokenError};
pub use jwt::{Header, header, issue, verify};
pub use revocations::Revocations;
pub use signing_key::SigningKey;
