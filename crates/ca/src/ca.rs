//! A loaded certificate authority: its certificate, its key and the issuer that signs with it.

use std::fmt;
use std::time::SystemTime;

use rcgen::{Issuer, KeyPair};

/// A certificate authority that can issue workload certificates: a generated
/// root ([`RootCa::generate`](crate::RootCa::generate)) or a user's CA
/// ([`Ca::from_pem`]).
pub struct Ca {
    pub(crate) subject: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl Ca {
    /// The CA certificate in PEM, to hand to sidecars as their trust anchor.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key in PEM, to keep in a Secret; never sent to a sidecar.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate's subject, as people read it in errors and logs.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// When the CA certificate starts being valid (whole seconds).
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// When the CA certificate stops being valid (whole seconds); workload
    /// certificates it issues never outlive it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

impl fmt::Debug for Ca {
    /// Leaves the private key out, so a logged `Ca` leaks nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}
