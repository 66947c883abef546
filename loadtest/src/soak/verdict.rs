//! The verdict: whether memory or descriptors keep growing past the warm-up, whether the
//! latency drifts, and whether any request failed or money went astray.

use serde::Serialize;

use super::{first_of_load, Sample, Usage, Window, WAL};
use crate::model::Outcome;
use crate::stats::percentile;

/// The first part of the run where memory may still rise for good reasons (pools opening,
/// caches and PostgreSQL's shared buffers filling): left out of the growth verdict.
const WARM_UP_FRACTION: f64 = 0.2;

/// The warm-up is at least the first minute, whatever the run's length (a minute's soak
/// would otherwise judge the allocators' first arenas as a leak).
pub(super) const WARM_UP_SAMPLES: usize = 6;

/// Samples needed past the warm-up to judge growth: two minutes. A shorter soak judges
/// latency, KO and the audit only.
pub const GROWTH_SAMPLES: usize = 12;

/// Whether a series keeps growing: past the warm-up, the median and the maximum of its
/// second half both exceed those of its first half by more than `tolerance`. A step that
/// settles in the first half, or a series that merely wanders, passes.
pub fn keeps_growing(values: &[f64], tolerance: f64) -> bool {
    let skip = ((values.len() as f64 * WARM_UP_FRACTION).ceil() as usize).max(WARM_UP_SAMPLES);
    let rest = &values[skip.min(values.len())..];
    if rest.len() < GROWTH_SAMPLES {
        return false;
    }
    let (first, second) = rest.split_at(rest.len() / 2);
    let sorted = |half: &[f64]| {
        let mut v = half.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (first, second) = (sorted(first), sorted(second));
    let grew = |a: f64, b: f64| b - a > tolerance;
    grew(percentile(&first, 50.0), percentile(&second, 50.0))
        && grew(*first.last().unwrap(), *second.last().unwrap())
}

/// How much a service's memory may rise between the halves: 2 MB plus 5% — a leak of ten
/// bytes a request shows as ~6 MB in half an hour at 2×.
pub(super) fn memory_tolerance(level_mb: f64) -> f64 {
    2.0 + 0.05 * level_mb
}

/// Descriptors follow the connections in flight, so they wander; 8 plus 10% of the level.
pub(super) fn descriptor_tolerance(level: f64) -> f64 {
    8.0 + 0.1 * level
}

/// The largest factor the last full window's p99 may be of the first's.
pub const P99_DRIFT: f64 = 2.0;

/// What the soak found, service by service, and whether it passed.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// No problem found.
    pub passed: bool,
    /// One line per problem: a series that keeps growing, a p99 drift, KO, an audit.
    pub problems: Vec<String>,
    /// Growth of PostgreSQL's tables and indexes over the run, per transaction sent.
    pub storage_bytes_per_transaction: f64,
}

/// The verdict on a soak's samples and windows (and its outcome's KO and audit).
pub fn verdict(samples: &[Sample], windows: &[Window], outcome: &Outcome) -> Verdict {
    let mut problems = Vec::new();
    let services: Vec<&String> = samples
        .first()
        .map(|s| s.services.keys().collect())
        .unwrap_or_default();
    for service in services {
        let series = |value: fn(&Usage) -> f64| -> Vec<f64> {
            samples
                .iter()
                .map(|s| s.services.get(service).map_or(0.0, value))
                .collect()
        };
        let anon = series(|u| u.anon_mb);
        let descriptors = series(|u| u.descriptors as f64);
        let level = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        if keeps_growing(&anon, memory_tolerance(level(&anon))) {
            problems.push(format!(
                "{service}: private memory keeps growing ({:.1} MB to {:.1} MB)",
                anon[0],
                anon[anon.len() - 1]
            ));
        }
        if keeps_growing(&descriptors, descriptor_tolerance(level(&descriptors))) {
            problems.push(format!(
                "{service}: open descriptors keep growing ({} to {})",
                descriptors[0],
                descriptors[descriptors.len() - 1]
            ));
        }
    }
    if let (Some(first), Some(last)) = (first_of_load(windows), windows.last()) {
        if last.p99_ms > P99_DRIFT * first.p99_ms {
            problems.push(format!(
                "the last window's p99 ({:.2} ms) is over {P99_DRIFT}x the first's at {:.0} s ({:.2} ms)",
                last.p99_ms, first.t, first.p99_ms
            ));
        }
    } else {
        problems.push("no full window of requests".to_owned());
    }
    let ko = outcome.records.iter().filter(|r| r.ko.is_some()).count();
    if ko > 0 {
        problems.push(format!("{ko} requests KO"));
    }
    if let Some(audit) = outcome.audit.iter().find(|a| !a.clean()) {
        problems.push(format!(
            "client {}'s balance is {:?}, {} acknowledged",
            audit.client, audit.reported, audit.acknowledged
        ));
    }
    // Tables and indexes: the WAL is recycled at checkpoints (max_wal_size bounds it).
    let total = |s: &Sample| {
        s.storage
            .iter()
            .filter(|(name, _)| *name != WAL)
            .map(|(_, bytes)| bytes)
            .sum::<u64>()
    };
    let transactions = outcome
        .records
        .iter()
        .filter(|r| r.name != crate::model::Name::Extratos)
        .count()
        .max(1);
    let storage_bytes_per_transaction = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => (total(b) as f64 - total(a) as f64) / transactions as f64,
        _ => 0.0,
    };
    Verdict {
        passed: problems.is_empty(),
        problems,
        storage_bytes_per_transaction,
    }
}

/// What a soak too short for the growth verdict says instead.
pub const TOO_SHORT: &str = "Too short to judge memory and descriptor growth (3 minutes at least).";
