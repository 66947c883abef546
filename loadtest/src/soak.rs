//! The soak: the official mix held for a long time while the stack is sampled every
//! `INTERVAL` — each service's memory and descriptors, PostgreSQL's relation sizes, each
//! window's latency — and the verdict on whether anything keeps growing.
//!
//! What a 4-minute run never shows: a leak of descriptors or memory, a table that fills the
//! disk, a latency that drifts as the tables grow. The samples are taken here, in the load
//! generator's process, so they share its clock with the requests' records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::model::{Outcome, Record};
use crate::stats::percentile;

/// How often the stack is sampled, and the width of a latency window.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The first part of the run where memory may still rise for good reasons (pools opening,
/// caches and PostgreSQL's shared buffers filling): left out of the growth verdict.
const WARM_UP_FRACTION: f64 = 0.2;

/// The warm-up is at least the first minute, whatever the run's length (a minute's soak
/// would otherwise judge the allocators' first arenas as a leak).
const WARM_UP_SAMPLES: usize = 6;

/// Samples needed past the warm-up to judge growth: two minutes. A shorter soak judges
/// latency, KO and the audit only.
pub const GROWTH_SAMPLES: usize = 12;

/// A service to watch: its name and the cgroup file that lists its processes.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Its name in the report (a compose service).
    pub service: String,
    /// Its cgroup.procs file.
    pub procs: PathBuf,
}

impl std::str::FromStr for Watched {
    type Err = String;

    /// `NAME=PATH`, e.g. `api1=/sys/fs/cgroup/memory/rinha-1-api1/cgroup.procs`.
    fn from_str(text: &str) -> Result<Watched, String> {
        let (service, procs) = text
            .split_once('=')
            .filter(|(s, p)| !s.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("{text}: expected NAME=PATH of a cgroup.procs file"))?;
        Ok(Watched {
            service: service.to_owned(),
            procs: procs.into(),
        })
    }
}

/// One service at one instant, summed over its processes.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Usage {
    /// Processes in it.
    pub processes: usize,
    /// Resident memory, shared pages counted in every process that maps them.
    pub rss_mb: f64,
    /// Private anonymous memory (heap, stacks): what a leak grows. PostgreSQL's shared
    /// buffers are shared memory and fill up to their size, so they are left out here.
    pub anon_mb: f64,
    /// Open file descriptors.
    pub descriptors: usize,
}

/// Everything sampled at `t` seconds since the run began.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the run began.
    pub t: f64,
    /// Each watched service.
    pub services: BTreeMap<String, Usage>,
    /// PostgreSQL relations (tables and indexes) and the WAL directory, in bytes.
    pub storage: BTreeMap<String, u64>,
}

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

/// The processes listed in a cgroup.procs file, summed. A process that ends while it is
/// read counts as gone.
pub fn usage(procs: &Path) -> Usage {
    let pids = std::fs::read_to_string(procs).unwrap_or_default();
    let mut usage = Usage::default();
    for pid in pids.split_whitespace() {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let kb = |field: &str| -> f64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        usage.processes += 1;
        usage.rss_mb += kb("VmRSS:") / 1024.0;
        usage.anon_mb += kb("RssAnon:") / 1024.0;
        usage.descriptors += std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    }
    usage
}

/// The sizes of PostgreSQL's relations in schema public and of its WAL directory, by psql
/// (the benchmarks' client; the load generator keeps no driver of its own).
pub async fn storage(database_url: &str) -> Result<BTreeMap<String, u64>, String> {
    const QUERY: &str = "select relname, pg_relation_size(oid) from pg_class \
        where relnamespace = 'public'::regnamespace and relkind in ('r', 'i') \
        union all select 'WAL', coalesce(sum(size), 0) from pg_ls_waldir()";
    let output = tokio::process::Command::new("psql")
        .args(["-XAtq", "-F", "\t", "-d", database_url, "-c", QUERY])
        .output()
        .await
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, bytes) = line.split_once('\t')?;
            Some((name.to_owned(), bytes.trim().parse().ok()?))
        })
        .collect())
}

/// Samples every `INTERVAL` from `start` into `samples` until aborted.
pub async fn sample(
    start: Instant,
    watched: Vec<Watched>,
    database_url: String,
    samples: Arc<Mutex<Vec<Sample>>>,
) {
    let mut interval = tokio::time::interval(INTERVAL);
    loop {
        interval.tick().await;
        let t = start.elapsed().as_secs_f64();
        let services = watched
            .iter()
            .map(|w| (w.service.clone(), usage(&w.procs)))
            .collect();
        let storage = storage(&database_url).await.unwrap_or_else(|e| {
            eprintln!("soak: at {t:.0} s: {e}");
            BTreeMap::new()
        });
        samples.lock().unwrap().push(Sample {
            t,
            services,
            storage,
        });
    }
}

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
fn memory_tolerance(level_mb: f64) -> f64 {
    2.0 + 0.05 * level_mb
}

/// Descriptors follow the connections in flight, so they wander; 8 plus 10% of the level.
fn descriptor_tolerance(level: f64) -> f64 {
    8.0 + 0.1 * level
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

/// The name `storage` gives the WAL directory's size.
pub const WAL: &str = "WAL";

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
        self.samples.len() >= WARM_UP_SAMPLES + GROWTH_SAMPLES
    }

    /// The services sampled, in order.
    pub fn services(&self) -> Vec<&str> {
        self.samples
            .first()
            .map(|s| s.services.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

/// The soak in a few lines: verdict, each service's first and last values, storage growth.
pub fn text(soak: &Soak) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "soak of {} at x{} for {:.0} min: {} requests, {} full windows\n",
        soak.target,
        soak.rate,
        soak.seconds / 60.0,
        soak.requests,
        soak.windows.len()
    );
    let (first, last) = (soak.samples.first(), soak.samples.last());
    for service in soak.services() {
        let at = |s: Option<&Sample>| {
            s.and_then(|s| s.services.get(service))
                .cloned()
                .unwrap_or_default()
        };
        let (a, b) = (at(first), at(last));
        let _ = writeln!(
            out,
            "  {service:<5} private {:6.1} -> {:6.1} MB  rss {:6.1} -> {:6.1} MB  descriptors {:4} -> {:4}",
            a.anon_mb, b.anon_mb, a.rss_mb, b.rss_mb, a.descriptors, b.descriptors
        );
    }
    if let (Some(a), Some(b)) = (soak.windows.first(), soak.windows.last()) {
        let _ = writeln!(
            out,
            "  p50/p99 first window {:.2}/{:.2} ms, last {:.2}/{:.2} ms",
            a.p50_ms, a.p99_ms, b.p50_ms, b.p99_ms
        );
    }
    let _ = writeln!(
        out,
        "  storage: tables and indexes {:.0} bytes per transaction, {:.0} MB per hour at x1; WAL at most {:.0} MB",
        soak.verdict.storage_bytes_per_transaction, soak.storage_mb_per_hour_at_1x, soak.wal_max_mb
    );
    if !soak.judges_growth() {
        out.push_str(TOO_SHORT);
        out.push('\n');
    }
    if soak.verdict.passed {
        out.push_str("passed\n");
    } else {
        for problem in &soak.verdict.problems {
            let _ = writeln!(out, "FAILED: {problem}");
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
