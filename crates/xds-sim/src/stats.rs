//! Percentiles of the times the proxies took, and how they are printed.

use std::fmt;
use std::time::Duration;

/// The spread of one measure over the proxies it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// Proxies the measure concerns.
    pub expected: usize,
    /// Proxies that got there within the time allowed.
    pub reached: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Spread {
    /// From the times of the proxies that got there, out of `expected`.
    /// Percentiles are over `expected`: a proxy that never got there counts
    /// as slower than any that did (it pushes the high percentiles to "—").
    pub fn of(mut times: Vec<Duration>, expected: usize) -> Spread {
        times.sort_unstable();
        let reached = times.len();
        let at = |share: f64| -> Duration {
            if expected == 0 {
                return Duration::ZERO;
            }
            // Nearest rank over every expected proxy.
            let rank = ((share * expected as f64).ceil() as usize).clamp(1, expected);
            times.get(rank - 1).copied().unwrap_or(Duration::MAX)
        };
        Spread { expected, reached, p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) }
    }

    pub fn complete(&self) -> bool {
        self.reached == self.expected
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} proxies  p50 {}  p90 {}  p99 {}  max {}",
            self.reached,
            self.expected,
            seconds(self.p50),
            seconds(self.p90),
            seconds(self.p99),
            seconds(self.max)
        )
    }
}

/// `0.123 s`, or `—` for a proxy that never got there.
pub fn seconds(duration: Duration) -> String {
    if duration == Duration::MAX { "—".into() } else { format!("{:.3} s", duration.as_secs_f64()) }
}

/// `12.3 MiB`.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|value| Duration::from_millis(*value)).collect()
    }

    #[test]
    fn percentiles_are_nearest_ranks() {
        let spread = Spread::of(ms(&(1..=100).rev().collect::<Vec<_>>()), 100);
        assert_eq!(
            (spread.p50, spread.p90, spread.p99, spread.max),
            (ms(&[50])[0], ms(&[90])[0], ms(&[99])[0], ms(&[100])[0])
        );
        assert!(spread.complete());
    }

    #[test]
    fn proxies_that_never_got_there_are_the_slowest() {
        let spread = Spread::of(ms(&[1, 2, 3]), 4);
        assert_eq!(spread.reached, 3);
        assert_eq!(spread.p50, Duration::from_millis(2));
        assert_eq!(spread.max, Duration::MAX);
        assert!(!spread.complete());
        assert!(spread.to_string().contains("max —"), "{spread}");
    }

    #[test]
    fn no_proxy_concerned_is_no_time() {
        assert_eq!(Spread::of(Vec::new(), 0).max, Duration::ZERO);
    }
}
