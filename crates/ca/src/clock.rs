//! Conversions between `SystemTime` and certificate times, which have whole seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use x509_parser::time::ASN1Time;

/// `t` truncated to whole seconds, as a certificate stores it (times before 1970 clamp to the epoch).
pub(crate) fn truncate(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// `t` as the date-time rcgen writes into a certificate.
pub(crate) fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(truncate(t))
}

/// A parsed certificate time as a `SystemTime`.
pub(crate) fn from_asn1(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 { UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()) } else { UNIX_EPOCH }
}

/// `t - d`, saturating at the epoch.
pub(crate) fn sub(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_sub(d).unwrap_or(UNIX_EPOCH).max(UNIX_EPOCH)
}

/// `t + d`, or an error naming `what` when it does not fit.
pub(crate) fn add(t: SystemTime, d: Duration, what: &str) -> Result<SystemTime, crate::CaError> {
    t.checked_add(d).ok_or_else(|| crate::CaError::InvalidRequest(format!("{what} {d:?} is too long")))
}
