//! What can go wrong when loading a CA or issuing a certificate, worded for the
//! operator who has to fix it.

/// A CA could not be loaded or a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The certificate text is not a PEM `CERTIFICATE` block holding X.509.
    #[error(
        "the CA certificate is not a PEM-encoded X.509 certificate ({reason}); \
         give the text that starts with `-----BEGIN CERTIFICATE-----`"
    )]
    CertificatePem {
        /// What the parser refused.
        reason: String,
    },
    /// The key text is not a PEM private key that aws-lc-rs can load.
    #[error(
        "the CA private key is not a usable PEM private key ({reason}); give an unencrypted \
         PKCS#8 (`BEGIN PRIVATE KEY`), SEC1 (`BEGIN EC PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) key"
    )]
    KeyPem {
        /// What the parser refused.
        reason: String,
    },
    /// The certificate has no `basicConstraints CA:true`, so peers would not accept what it signs.
    #[error(
        "the certificate `{subject}` is not a CA (it lacks basicConstraints CA:true); \
         provide the CA certificate that signs workloads, not a leaf certificate"
    )]
    NotCa {
        /// The certificate's subject.
        subject: String,
    },
    /// The certificate is a CA but its key usage forbids signing certificates.
    #[error(
        "the CA certificate `{subject}` may not sign certificates (its keyUsage lacks keyCertSign); \
         reissue it with keyUsage keyCertSign, cRLSign"
    )]
    CannotSignCertificates {
        /// The certificate's subject.
        subject: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error(
        "the private key does not match the public key of the CA certificate `{subject}`; \
         provide the key that belongs to this certificate"
    )]
    KeyMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// The CA certificate's validity ended before `now`.
    #[error("the CA certificate `{subject}` expired at {not_after}; renew it or provide a new CA")]
    Expired {
        /// The certificate's subject.
        subject: String,
        /// When it stopped being valid.
        not_after: String,
    },
    /// The CA certificate's validity starts after `now`.
    #[error(
        "the CA certificate `{subject}` is not valid before {not_before}; \
         check this machine's clock or provide a CA that is valid now"
    )]
    NotYetValid {
        /// The certificate's subject.
        subject: String,
        /// When it starts being valid.
        not_before: String,
    },
    /// A workload or root request that cannot become a valid certificate.
    #[error("invalid certificate request: {0}")]
    InvalidRequest(String),
    /// Key generation, encoding or signing failed inside rcgen / aws-lc-rs.
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
}
