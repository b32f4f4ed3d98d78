//! When a workload certificate should be replaced.

use std::time::SystemTime;

/// Whether a certificate valid from `not_before` to `not_after` is due for
/// renewal at `now`: once 4/5 of its lifetime has passed (Kuma's rule), so a
/// new one is in place well before the old one expires. A certificate with
/// an empty or inverted lifetime is always due.
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return true;
    };
    if lifetime.is_zero() {
        return true;
    }
    match now.duration_since(not_before) {
        Ok(elapsed) => elapsed.as_nanos() * 5 >= lifetime.as_nanos() * 4,
        Err(_) => false,
    }
}
