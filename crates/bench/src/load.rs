//! An open-loop load generator: requests leave at a fixed rate whether or
//! not earlier ones have been answered, and each latency is measured from
//! the moment its request was due, so a stall shows up in the percentiles
//! instead of silently lowering the rate (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::time::MissedTickBehavior;

/// What one run of [`fixed_rate`] saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Latencies of the requests answered with a 2xx, sorted.
    pub latencies: Vec<Duration>,
    /// Requests that failed or were answered with anything but a 2xx.
    pub errors: usize,
    /// Requests sent.
    pub sent: usize,
}

/// POSTs `body` to `url` `rate` times a second for `duration`, over the
/// keep-alive connections of `client`, and waits (at most `timeout` each)
/// for every answer.
pub async fn fixed_rate(
    client: &reqwest::Client,
    url: &str,
    body: &'static [u8],
    rate: u32,
    duration: Duration,
    timeout: Duration,
) -> LoadResult {
    let result = Arc::new(Mutex::new(LoadResult::default()));
    let interval = Duration::from_secs(1) / rate.max(1);
    let count = (duration.as_secs_f64() * f64::from(rate)).round() as usize;
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(start, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..count {
        ticks.tick().await;
        let due = start.into_std() + interval * n as u32;
        let request = client.post(url).body(body).timeout(timeout);
        let result = result.clone();
        requests.spawn(async move {
            let answer = match request.send().await {
                Ok(response) if response.status().is_success() => response.bytes().await.is_ok(),
                _ => false,
            };
            let latency = Instant::now().saturating_duration_since(due);
            let mut result = result.lock().await;
            if answer {
                result.latencies.push(latency);
            } else {
                result.errors += 1;
            }
        });
    }
    while requests.join_next().await.is_some() {}
    let mut result = std::mem::take(&mut *result.lock().await);
    result.sent = count;
    result.latencies.sort();
    result
}

/// One line about one round: requests sent, errors, p50, p90, p99 and the maximum.
pub fn round_line(round: usize, path: &str, result: &LoadResult) -> String {
    if result.latencies.is_empty() {
        return format!("round {round} {path:<10} no successful request ({} errors)", result.errors);
    }
    let l = &result.latencies;
    format!(
        "round {round} {path:<10} sent {:>6}  errors {:>3}  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  max {:>8.3} ms",
        result.sent,
        result.errors,
        crate::ms(crate::percentile(l, 0.5)),
        crate::ms(crate::percentile(l, 0.9)),
        crate::ms(crate::percentile(l, 0.99)),
        crate::ms(l[l.len() - 1]),
    )
}

/// The median over rounds of p50, p90 and p99, in milliseconds (NaN when
/// no round had a successful request).
pub fn median_percentiles(rounds: &[LoadResult]) -> [f64; 3] {
    [0.5, 0.9, 0.99].map(|q| {
        let mut values: Vec<f64> = rounds
            .iter()
            .filter(|r| !r.latencies.is_empty())
            .map(|r| crate::ms(crate::percentile(&r.latencies, q)))
            .collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    })
}
