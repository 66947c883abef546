//! The requests of each `INTERVAL` of the run: the latency series the verdict judges for drift.

use serde::Serialize;

use super::INTERVAL;
use crate::model::Record;
use crate::stats::percentile;

/// The requests sent in one `INTERVAL`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Window {
    /// Start, in seconds since the run began.
    pub t: f64,
    /// Requests sent in the window.
    pub requests: usize,
    /// Of those, failed a check.
    pub ko: usize,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
}

/// The requests of each full `INTERVAL` of the run, in order.
pub fn windows(records: &[Record], elapsed: f64) -> Vec<Window> {
    let width = INTERVAL.as_secs_f64();
    let full = (elapsed / width).floor() as usize;
    let mut buckets: Vec<Vec<&Record>> = vec![Vec::new(); full];
    for record in records {
        if let Some(bucket) = buckets.get_mut((record.start / width) as usize) {
            bucket.push(record);
        }
    }
    buckets
        .into_iter()
        .enumerate()
        .filter(|(_, bucket)| !bucket.is_empty())
        .map(|(i, bucket)| {
            let mut latencies: Vec<f64> = bucket.iter().map(|r| r.latency_ms).collect();
            latencies.sort_by(f64::total_cmp);
            Window {
                t: i as f64 * width,
                requests: bucket.len(),
                ko: bucket.iter().filter(|r| r.ko.is_some()).count(),
                p50_ms: percentile(&latencies, 50.0),
                p99_ms: percentile(&latencies, 99.0),
            }
        })
        .collect()
}

/// The first window the load fills: the one before it holds the validation phase and the
/// start of the load, a few seconds that say nothing of drift. Full means at least 90% of
/// the median window's requests.
pub fn first_of_load(windows: &[Window]) -> Option<&Window> {
    let mut counts: Vec<usize> = windows.iter().map(|w| w.requests).collect();
    counts.sort_unstable();
    let median = *counts.get(counts.len() / 2)?;
    windows.iter().find(|w| w.requests * 10 >= median * 9)
}
