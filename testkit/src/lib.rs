//! Test support shared by every crate's integration tests: real PostgreSQL databases, real
//! processes of our binaries, and a plain HTTP client over Unix sockets or TCP.
//!
//! Nothing here mocks anything: a test that needs the database gets a fresh one built from
//! `db/init.sql` on a real server, and fails loudly when there is none.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod metrics;
mod official;
mod postgres;
mod process;
mod stack;

pub use client::{Reply, Target};
pub use hyper::{Method, StatusCode};
pub use metrics::Scrape;
pub use official::run_validations;
pub use postgres::{Cluster, RowLock, TestDb};
pub use process::{binary, handoff_socket, send_signal, spawn_api, Process};
pub use stack::{free_port, Balancer, TestApi};

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the repo")
        .to_owned()
}

/// A directory removed when dropped: `rinha-LABEL-XXXXXX` under the temporary directory,
/// created atomically with a random name by `tempfile`.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new directory, its name starting with `rinha-LABEL-`.
    pub fn new(label: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rinha-{label}-"))
            .tempdir()
            .expect("creating a temporary directory");
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// Unique across the parallel test processes of one run and across runs.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
