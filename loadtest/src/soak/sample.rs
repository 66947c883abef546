//! What the soak samples every `INTERVAL`: each watched service's processes, memory and
//! descriptors (from /proc), and PostgreSQL's relation and WAL sizes (by psql).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::INTERVAL;

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

/// The name `storage` gives the WAL directory's size.
pub const WAL: &str = "WAL";
