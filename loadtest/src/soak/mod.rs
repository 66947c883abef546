//! The soak: the official mix held for a long time while the stack is sampled every
//! `INTERVAL` — each service's memory and descriptors, PostgreSQL's relation sizes, each
//! window's latency — and the verdict on whether anything keeps growing.
//!
//! What a 4-minute run never shows: a leak of descriptors or memory, a table that fills the
//! disk, a latency that drifts as the tables grow. The samples are taken here, in the load
//! generator's process, so they share its clock with the requests' records.
//!
//! `sample`: what is sampled and how; `window`: the requests of each interval; `verdict`:
//! whether anything keeps growing or drifting; `text`: the summary printed at the end.

mod sample;
mod text;
mod verdict;
mod window;

use std::time::Duration;

use serde::Serialize;

use crate::model::Outcome;

pub use sample::{sample, storage, usage, Sample, Usage, Watched, WAL};
pub use text::text;
pub use verdict::{keeps_growing, verdict, Verdict, GROWTH_SAMPLES, P99_DRIFT, TOO_SHORT};
pub use window::{first_of_load, windows, Window};

/// How often the stack is sampled, and the width of a latency window.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The official peak's transactions per second at 1x (220 debits, 110 credits).
pub const PEAK_TRANSACTIONS_PER_SECOND: f64 = 330.0;

/// A whole soak, as soak.json holds it and soak.html draws it.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    /// host:port soaked.
    pub target: String,
    /// Multiple of the official peak rate held.
    pub rate: f64,
    /// How long the load ran.
    pub seconds: f64,
    /// Requests sent.
    pub requests: usize,
    /// Whether it passed, and why not.
    pub verdict: Verdict,
    /// PostgreSQL's storage growth per hour at the official peak (1x), from the run's
    /// growth per transaction.
    pub storage_mb_per_hour_at_1x: f64,
    /// The WAL directory's largest size: checkpoints recycle it, so it does not grow with
    /// the tables.
    pub wal_max_mb: f64,
    /// Latency groups of the whole soak.
    pub groups: Vec<crate::stats::Group>,
    /// The requests of each INTERVAL.
    pub windows: Vec<Window>,
    /// The stack sampled each INTERVAL.
    pub samples: Vec<Sample>,
}

impl Soak {
    /// The soak of `outcome` and `samples`, judged.
    pub fn new(outcome: &Outcome, samples: Vec<Sample>, target: &str, rate: f64) -> Soak {
        let windows = windows(&outcome.records, outcome.elapsed);
        let verdict = verdict(&samples, &windows, outcome);
        Soak {
            target: target.to_owned(),
            rate,
            seconds: outcome.load_seconds,
            requests: outcome.records.len(),
            storage_mb_per_hour_at_1x: verdict.storage_bytes_per_transaction
                * PEAK_TRANSACTIONS_PER_SECOND
                * 3600.0
                / 1e6,
            wal_max_mb: samples
                .iter()
                .filter_map(|s| s.storage.get(WAL))
                .fold(0.0, |max, bytes| f64::max(max, *bytes as f64 / 1e6)),
            verdict,
            groups: crate::stats::groups(&outcome.records),
            windows,
            samples,
        }
    }

    /// Whether the run was long enough for the growth verdict (`keeps_growing`).
    pub fn judges_growth(&self) -> bool {
        self.samples.len() >= verdict::WARM_UP_SAMPLES + GROWTH_SAMPLES
    }

    /// The services sampled, in order.
    pub fn services(&self) -> Vec<&str> {
        self.samples
            .first()
            .map(|s| s.services.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::verdict::{descriptor_tolerance, memory_tolerance};
    use super::*;
    use crate::model::Record;
    use std::collections::BTreeMap;

    /// A soak of one service that passed, for the page's test.
    pub(crate) fn passed() -> Soak {
        let mut outcome = outcome();
        outcome.records = (0..60)
            .map(|i| Record {
                name: crate::model::Name::Creditos,
                start: f64::from(i),
                latency_ms: 1.0,
                ko: None,
                outcome_unknown: false,
            })
            .collect();
        outcome.elapsed = 60.0;
        outcome.load_seconds = 60.0;
        Soak::new(&outcome, samples(|_| 1.0), "http://x<y>", 2.0)
    }

    #[test]
    fn a_leak_keeps_growing_a_plateau_does_not() {
        let leak: Vec<f64> = (0..180).map(|i| 10.0 + f64::from(i) * 0.05).collect();
        assert!(keeps_growing(&leak, memory_tolerance(19.0)));
        // A step early on (caches filling), then flat with noise.
        let plateau: Vec<f64> = (0..180)
            .map(|i| {
                if i < 30 {
                    10.0
                } else {
                    40.0 + f64::from(i % 3)
                }
            })
            .collect();
        assert!(!keeps_growing(&plateau, memory_tolerance(42.0)));
        // Connections in flight: a wandering count, no trend.
        let wander: Vec<f64> = (0..180).map(|i| 20.0 + f64::from((i * 7) % 13)).collect();
        assert!(!keeps_growing(&wander, descriptor_tolerance(32.0)));
        assert!(!keeps_growing(&[1.0, 100.0], 0.0), "too short to tell");
        // A one-minute soak: the first arenas fill while it runs; not judged.
        let minute: Vec<f64> = (0..7).map(|i| 0.3 + f64::from(i) * 0.6).collect();
        assert!(!keeps_growing(&minute, memory_tolerance(3.9)));
    }

    #[test]
    fn windows_are_full_intervals_of_the_requests_sent_in_them() {
        let record = |start: f64, latency_ms: f64, ko: bool| Record {
            name: crate::model::Name::Debitos,
            start,
            latency_ms,
            ko: ko.then(|| "KO".to_owned()),
            outcome_unknown: false,
        };
        let records = vec![
            record(1.0, 1.0, false),
            record(9.9, 3.0, true),
            record(10.0, 2.0, false),
            record(25.0, 9.0, false), // in the partial window at the end: left out
        ];
        let w = windows(&records, 29.0);
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].t, w[0].requests, w[0].ko, w[0].p99_ms),
            (0.0, 2, 1, 3.0)
        );
        assert_eq!((w[1].t, w[1].requests, w[1].p50_ms), (10.0, 1, 2.0));
    }

    fn window(t: f64, requests: usize, p99_ms: f64) -> Window {
        Window {
            t,
            requests,
            ko: 0,
            p50_ms: 1.0,
            p99_ms,
        }
    }

    fn outcome() -> Outcome {
        Outcome {
            records: Vec::new(),
            samples: Vec::new(),
            max_lag_ms: 0.0,
            elapsed: 0.0,
            load_seconds: 0.0,
            cpu_ms: 0.0,
            audit: Vec::new(),
            statuses: Default::default(),
        }
    }

    /// 60 samples of one service whose private memory follows `anon`, with storage growing
    /// by 100 bytes a sample in tables and 1 MB in WAL.
    fn samples(anon: impl Fn(usize) -> f64) -> Vec<Sample> {
        (0..60)
            .map(|i| Sample {
                t: i as f64 * 10.0,
                services: BTreeMap::from([(
                    "api1".to_owned(),
                    Usage {
                        processes: 1,
                        rss_mb: 5.0,
                        anon_mb: anon(i),
                        descriptors: 20,
                    },
                )]),
                storage: BTreeMap::from([
                    ("transacoes".to_owned(), 100 * i as u64),
                    (WAL.to_owned(), (i as u64) << 20),
                ]),
            })
            .collect()
    }

    #[test]
    fn the_verdict_names_a_leak_and_a_drift_and_passes_a_steady_run() {
        let steady = [
            window(0.0, 300, 9.0),
            window(10.0, 6800, 2.0),
            window(20.0, 6800, 3.9),
        ];
        let v = verdict(&samples(|_| 1.0), &steady, &outcome());
        assert!(v.passed, "{:?}", v.problems);
        // The warm-up window (validations, 300 requests) is not the reference.
        let drift = [
            window(0.0, 300, 9.0),
            window(10.0, 6800, 2.0),
            window(20.0, 6800, 4.1),
        ];
        let v = verdict(&samples(|_| 1.0), &drift, &outcome());
        assert_eq!(v.problems.len(), 1);
        assert!(v.problems[0].contains("p99 (4.10 ms)"), "{:?}", v.problems);
        let v = verdict(&samples(|i| 1.0 + i as f64 * 0.2), &steady, &outcome());
        assert_eq!(v.problems.len(), 1);
        assert!(v.problems[0].starts_with("api1: private memory keeps growing"));
        // Tables grew 5,900 bytes over no transactions (counted as one); the WAL is not counted.
        assert_eq!(v.storage_bytes_per_transaction, 5900.0);
    }

    #[test]
    fn a_service_is_named_with_its_procs_file() {
        let w: Watched = "api1=/sys/fs/cgroup/x/cgroup.procs".parse().unwrap();
        assert_eq!(w.service, "api1");
        assert!("api1".parse::<Watched>().is_err() && "=x".parse::<Watched>().is_err());
    }

    #[test]
    fn this_process_is_seen_with_its_memory_and_descriptors() {
        let dir = testkit::TempDir::new("soak");
        let procs = dir.join("cgroup.procs");
        // This process, and one that is gone by the time it is read.
        std::fs::write(&procs, format!("{}\n999999999\n", std::process::id())).unwrap();
        let u = usage(&procs);
        assert_eq!(u.processes, 1);
        assert!(
            u.rss_mb > 0.0 && u.anon_mb > 0.0 && u.descriptors >= 3,
            "{u:?}"
        );
    }
}
