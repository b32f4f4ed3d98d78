//! Durations in the Go `time.ParseDuration` form Kuma manifests use:
//! `300ms`, `5s`, `1m30s`, `1.5h`, `0`.

use std::time::Duration;

/// Parses a Go-style duration. Negative durations are refused: no Kodiak
/// field accepts one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = "expected a duration such as 300ms, 5s, 1m30s or 1h";
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err(format!("must not be negative, got {text:?}"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(format!("{expected}, got {text:?}"));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_len];
        let value: f64 = match number.parse() {
            Ok(value) if !number.is_empty() => value,
            _ => return Err(format!("{expected}, got {text:?}")),
        };
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit in duration {text:?} ({expected})")),
            unit => return Err(format!("unknown unit {unit:?} in duration {text:?} ({expected})")),
        };
        rest = &rest[unit_len..];
        total += value * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("duration {text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "5", "s", "5 s", "-1s", "5x", "1..5s", "abc", "+"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
