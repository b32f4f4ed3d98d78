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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn due_from_four_fifths_of_the_lifetime_for_any_lifetime() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for secs in [5, 60, 3600, 24 * 3600, 7 * 24 * 3600, 365 * 24 * 3600 + 1] {
            let lifetime = Duration::from_secs(secs);
            let end = start + lifetime;
            let due_at = start + lifetime * 4 / 5;
            assert!(!renewal_due(start, end, start), "{secs}s: fresh");
            assert!(!renewal_due(start, end, due_at - Duration::from_millis(1)), "{secs}s: just before 4/5");
            assert!(renewal_due(start, end, due_at + Duration::from_millis(1)), "{secs}s: just after 4/5");
            assert!(renewal_due(start, end, end), "{secs}s: at expiry");
            assert!(renewal_due(start, end, end + lifetime), "{secs}s: long expired");
        }
    }

    #[test]
    fn a_24_hour_certificate_is_renewed_after_19_h_12_min() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let end = start + Duration::from_secs(24 * 3600);
        assert!(!renewal_due(start, end, start + Duration::from_secs(19 * 3600 + 11 * 60)));
        assert!(renewal_due(start, end, start + Duration::from_secs(19 * 3600 + 12 * 60)));
    }

    #[test]
    fn not_due_before_it_starts_and_always_due_when_its_lifetime_is_empty() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let end = start + Duration::from_secs(3600);
        assert!(!renewal_due(start, end, start - Duration::from_secs(10)));
        assert!(renewal_due(start, start, start));
        assert!(renewal_due(end, start, start));
    }
}
