//! The AGE column, and other times relative to now: how long ago a
//! timestamp was (or how long until it comes), rounded the way kubectl
//! rounds (`45s`, `3m20s`, `2h`, `4d`), so the output reads the same.

use std::time::{Duration, SystemTime};

/// How long before `now` the RFC 3339 `timestamp` was; `-` when unknown.
pub fn age(timestamp: Option<&str>, now: SystemTime) -> String {
    let Some(then) = timestamp.and_then(|t| humantime::parse_rfc3339(t).ok()) else {
        return "-".to_owned();
    };
    match now.duration_since(then) {
        Ok(elapsed) => human_duration(elapsed),
        // Clocks of two machines differ a little; a moment ahead is "now".
        Err(ahead) if ahead.duration() < Duration::from_secs(2) => "0s".to_owned(),
        Err(_) => "<invalid>".to_owned(),
    }
}

/// How long after `now` the RFC 3339 `timestamp` is (`in 23h`), or how
/// long ago it passed (`expired 5m ago`); `-` when unknown.
pub fn until(timestamp: Option<&str>, now: SystemTime) -> String {
    let Some(then) = timestamp.and_then(|t| humantime::parse_rfc3339(t).ok()) else {
        return "-".to_owned();
    };
    match then.duration_since(now) {
        Ok(left) => format!("in {}", human_duration(left)),
        Err(past) => format!("expired {} ago", human_duration(past.duration())),
    }
}

/// kubectl's rounding: more precision for short ages, less for long ones.
fn human_duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    let with_rest = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 { format!("{big}{big_unit}") } else { format!("{big}{big_unit}{small}{small_unit}") }
    };
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        with_rest(minutes, "m", seconds % 60, "s")
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        with_rest(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with_rest(days, "d", hours % 24, "h")
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        with_rest(years, "y", days % 365, "d")
    } else {
        format!("{years}y")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(seconds: u64) -> String {
        let now = humantime::parse_rfc3339("2025-06-01T12:00:00Z").unwrap();
        let then = humantime::format_rfc3339(now - Duration::from_secs(seconds)).to_string();
        age(Some(&then), now)
    }

    #[test]
    fn rounds_like_kubectl() {
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(119), "119s");
        assert_eq!(ago(200), "3m20s");
        assert_eq!(ago(180), "3m");
        assert_eq!(ago(45 * 60), "45m");
        assert_eq!(ago(2 * 3600), "120m");
        assert_eq!(ago(4 * 3600), "4h");
        assert_eq!(ago(4 * 3600 + 90), "4h1m");
        assert_eq!(ago(20 * 3600), "20h");
        assert_eq!(ago(4 * 86400), "4d");
        assert_eq!(ago(4 * 86400 + 3 * 3600), "4d3h");
        assert_eq!(ago(100 * 86400), "100d");
        assert_eq!(ago(3 * 365 * 86400 + 86400), "3y1d");
        assert_eq!(ago(10 * 365 * 86400), "10y");
    }

    #[test]
    fn times_ahead_count_down_and_passed_ones_say_so() {
        let now = humantime::parse_rfc3339("2025-06-01T12:00:00Z").unwrap();
        assert_eq!(until(Some("2025-06-02T11:00:00Z"), now), "in 23h");
        assert_eq!(until(Some("2025-06-01T12:03:20Z"), now), "in 3m20s");
        assert_eq!(until(Some("2025-06-01T12:00:00Z"), now), "in 0s");
        assert_eq!(until(Some("2025-06-01T11:55:00Z"), now), "expired 5m ago");
        assert_eq!(until(None, now), "-");
        assert_eq!(until(Some("tomorrow"), now), "-");
    }

    #[test]
    fn unknown_and_future_times() {
        let now = humantime::parse_rfc3339("2025-06-01T12:00:00Z").unwrap();
        assert_eq!(age(None, now), "-");
        assert_eq!(age(Some("yesterday"), now), "-");
        assert_eq!(age(Some("2025-06-01T12:00:01Z"), now), "0s");
        assert_eq!(age(Some("2025-06-02T12:00:00Z"), now), "<invalid>");
        assert_eq!(age(Some("2025-06-01T11:59:00.123456+00:00"), now), "59s");
    }
}
