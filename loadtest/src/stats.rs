//! Aggregates: Gatling's per-name statistics, the official scoring, and per-second series.

use serde::Serialize;

use crate::checks::is_inconsistency;
use crate::model::{Name, Record};

/// The official response-time groups (docs/challenge.md, "The official test").
pub const FAST_MS: f64 = 250.0;
/// The official response-time groups' upper bound (docs/challenge.md).
pub const SLOW_MS: f64 = 1200.0;

/// Latency figures of a set of requests, as the official report gives them.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// The request name, or "Todas as requisições".
    pub name: String,
    /// Requests.
    pub count: usize,
    /// Of those, passed every check.
    pub ok: usize,
    /// Of those, failed one.
    pub ko: usize,
    /// Fastest.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 75th percentile.
    pub p75_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// OK requests answered under FAST_MS.
    pub under_250: usize,
    /// OK requests answered from FAST_MS to SLOW_MS.
    pub from_250_to_1200: usize,
    /// OK requests answered over SLOW_MS.
    pub over_1200: usize,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The latency group of `records`, named `name`.
pub fn group<'a>(name: &str, records: impl Iterator<Item = &'a Record>) -> Group {
    let records: Vec<&Record> = records.collect();
    let mut latencies: Vec<f64> = records.iter().map(|r| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let ok: Vec<&&Record> = records.iter().filter(|r| r.ko.is_none()).collect();
    Group {
        name: name.to_owned(),
        count: records.len(),
        ok: ok.len(),
        ko: records.len() - ok.len(),
        min_ms: latencies.first().copied().unwrap_or(0.0),
        p50_ms: percentile(&latencies, 50.0),
        p75_ms: percentile(&latencies, 75.0),
        p95_ms: percentile(&latencies, 95.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        mean_ms: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
        under_250: ok.iter().filter(|r| r.latency_ms < FAST_MS).count(),
        from_250_to_1200: ok
            .iter()
            .filter(|r| (FAST_MS..SLOW_MS).contains(&r.latency_ms))
            .count(),
        over_1200: ok.iter().filter(|r| r.latency_ms >= SLOW_MS).count(),
    }
}

/// "Todas as requisições" first, then each request name that occurred.
pub fn groups(records: &[Record]) -> Vec<Group> {
    let mut groups = vec![group("all requests", records.iter())];
    for name in Name::ALL {
        if records.iter().any(|r| r.name == name) {
            groups.push(group(
                name.label(),
                records.iter().filter(|r| r.name == name),
            ));
        }
    }
    groups
}

/// The official "Contrato" (docs/challenge.md, "Scoring").
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    /// Requests in the run.
    pub requests: usize,
    /// OK requests answered under FAST_MS.
    pub ok_under_250: usize,
    /// Their share of all requests, in percent.
    pub percent_under_250: f64,
    /// The fine for the share under 98%.
    pub sla_fine: f64,
    /// Balance inconsistencies found.
    pub inconsistencies: usize,
    /// Their fine.
    pub inconsistency_fine: f64,
    /// What the contract pays after the fines.
    pub payout: f64,
}

/// The official scoring of `records`.
pub fn score(records: &[Record]) -> Score {
    let ok_under_250 = records
        .iter()
        .filter(|r| r.ko.is_none() && r.latency_ms < FAST_MS)
        .count();
    let percent = if records.is_empty() {
        0.0
    } else {
        (ok_under_250 as f64 / records.len() as f64 * 10_000.0).round() / 100.0
    };
    let sla_fine = ((98.0 - percent) * 1000.0).max(0.0);
    let inconsistencies = records
        .iter()
        .filter(|r| r.ko.as_deref().is_some_and(is_inconsistency))
        .count();
    let inconsistency_fine = inconsistencies as f64 * 803.01;
    Score {
        requests: records.len(),
        ok_under_250,
        percent_under_250: percent,
        sla_fine,
        inconsistencies,
        inconsistency_fine,
        payout: (100_000.0 - sla_fine - inconsistency_fine).max(0.0),
    }
}

/// KO messages, most frequent first.
pub fn failures(records: &[Record]) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<(Name, &str), usize> = Default::default();
    for record in records {
        if let Some(message) = &record.ko {
            *counts.entry((record.name, message.as_str())).or_default() += 1;
        }
    }
    let mut list: Vec<(String, usize)> = counts
        .into_iter()
        .map(|((name, message), n)| (format!("{}: {message}", name.label()), n))
        .collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    list
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Second since the run began.
    pub t: usize,
    /// Requests sent in it that passed.
    pub ok: usize,
    /// Requests sent in it that failed.
    pub ko: usize,
    /// Transactions sent in this second whose outcome the client cannot know.
    pub unknown: usize,
    /// Median latency.
    pub p50_ms: f64,
    /// 95th percentile latency.
    pub p95_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// The run second by second.
pub fn seconds(records: &[Record]) -> Vec<Second> {
    let last = records.iter().map(|r| r.start as usize).max().unwrap_or(0);
    let mut buckets: Vec<Vec<&Record>> = vec![Vec::new(); last + 1];
    for record in records {
        buckets[record.start as usize].push(record);
    }
    buckets
        .iter()
        .enumerate()
        .map(|(t, bucket)| {
            let mut latencies: Vec<f64> = bucket.iter().map(|r| r.latency_ms).collect();
            latencies.sort_by(f64::total_cmp);
            let ko = bucket.iter().filter(|r| r.ko.is_some()).count();
            Second {
                t,
                ok: bucket.len() - ko,
                ko,
                unknown: bucket.iter().filter(|r| r.outcome_unknown).count(),
                p50_ms: percentile(&latencies, 50.0),
                p95_ms: percentile(&latencies, 95.0),
                p99_ms: percentile(&latencies, 99.0),
                max_ms: latencies.last().copied().unwrap_or(0.0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(latency_ms: f64, ko: Option<&str>) -> Record {
        Record {
            name: Name::Debitos,
            start: 0.5,
            latency_ms,
            ko: ko.map(str::to_owned),
            outcome_unknown: false,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn scoring_follows_the_contract() {
        // 100 requests: 94 fast OK, 2 slow OK, 2 plain KO, 2 inconsistencies.
        let mut records: Vec<Record> = (0..94).map(|_| record(1.0, None)).collect();
        records.extend((0..2).map(|_| record(300.0, None)));
        records.extend(
            (0..2).map(|_| record(1.0, Some("status.find.in(200), but actually found 500"))),
        );
        records.push(record(
            1.0,
            Some("ConsistenciaSaldoLimite - Transação: Limite ultrapassado!"),
        ));
        records.push(record(
            1.0,
            Some("jmesPath(saldo.total).find.is(-25), but actually found -24"),
        ));
        let score = score(&records);
        assert_eq!(score.percent_under_250, 94.0);
        assert_eq!(score.sla_fine, 4000.0);
        assert_eq!(score.inconsistencies, 2);
        assert!((score.payout - (100_000.0 - 4000.0 - 2.0 * 803.01)).abs() < 1e-6);
        let g = group("x", records.iter());
        assert_eq!(
            (g.count, g.ok, g.ko, g.under_250, g.from_250_to_1200),
            (100, 96, 4, 94, 2)
        );
    }
}
