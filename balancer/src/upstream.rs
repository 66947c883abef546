//! One upstream: its address, counters, health, the load it reports (handoff mode) and its
//! pool of HTTP connections (http mode).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serverkit::backoff::Backoff;
use serverkit::load::{count_path, CountView};

use crate::address::UpstreamAddr;
use crate::pool::Pool;

/// How long a failed upstream is skipped: doubles per consecutive failure, up to a second.
pub const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));

pub struct Upstream {
    pub addr: UpstreamAddr,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    failures: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Milliseconds on `clock()` before which the upstream is skipped; 0 when up.
    down_until: AtomicU64,
    pub pool: Pool,
    /// The connections the upstream itself reports open (handoff mode, where the balancer
    /// never sees a connection close): `serverkit::load`.
    reported: Mutex<Option<CountView>>,
}

/// Counts one request or connection in flight for as long as it lives.
pub struct InFlight<'a>(&'a Upstream);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Upstream {
    pub fn new(addr: UpstreamAddr) -> Upstream {
        Upstream {
            addr,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            pool: Pool::default(),
            reported: Mutex::new(None),
        }
    }

    /// Requests (http mode) or connections (tcp mode) in flight through us, plus the
    /// connections the upstream reports open itself (handoff mode).
    pub fn in_flight(&self) -> usize {
        let reported = self.reported.lock().unwrap();
        self.in_flight.load(Relaxed) + reported.as_ref().map_or(0, |c| c.get() as usize)
    }

    /// Starts (or keeps) reading the count the upstream publishes beside its handoff socket
    /// at `socket`; a restarted upstream reuses the file, a new file is mapped afresh.
    pub fn read_reported_count(&self, socket: &std::path::Path) -> std::io::Result<()> {
        let path = count_path(socket);
        let mut reported = self.reported.lock().unwrap();
        if !reported.as_ref().is_some_and(|c| c.maps(&path)) {
            *reported = Some(CountView::open(&path)?);
        }
        Ok(())
    }

    /// Counts connections handed over to this upstream (handoff mode).
    pub fn handed_over(&self, connections: usize) {
        self.requests.fetch_add(connections as u64, Relaxed);
    }

    /// Starts counting a request (or, in tcp mode, a connection) against this upstream.
    /// Taken as soon as the upstream is chosen, before any await: connections arriving
    /// together (a burst, or clients coming back from the same slow answer) must each see
    /// the ones placed before them, or a load-aware strategy splits them as if all were idle.
    pub fn begin(&self) -> InFlight<'_> {
        self.requests.fetch_add(1, Relaxed);
        self.reserve()
    }

    /// Counts a connection being placed (handoff mode) until the upstream's own count can
    /// show it; not a request of its own in the statistics.
    pub fn reserve(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    pub fn is_down(&self) -> bool {
        let until = self.down_until.load(Relaxed);
        until != 0 && clock() < until
    }

    /// A failure: counted, and the upstream is skipped for a backoff that grows while the
    /// failures continue, so a dead instance costs almost nothing and a restarted one is
    /// back within a second.
    pub fn mark_failed(&self) {
        self.failures.fetch_add(1, Relaxed);
        let streak = self
            .consecutive_failures
            .fetch_add(1, Relaxed)
            .saturating_add(1);
        let backoff = BACKOFF.after(streak);
        self.down_until
            .store(clock() + backoff.as_millis() as u64, Relaxed);
        // Connections to a failing upstream are suspect; open fresh ones when it is back.
        self.pool.clear();
    }

    pub fn mark_ok(&self) {
        if self.down_until.load(Relaxed) != 0 {
            self.down_until.store(0, Relaxed);
            self.consecutive_failures.store(0, Relaxed);
        }
    }

    /// `{"upstream": ..., "requests": ..., "in_flight": ..., "failures": ..., "up": ...}`
    pub fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "upstream": self.addr.to_string(),
            "requests": self.requests.load(Relaxed),
            "in_flight": self.in_flight(),
            "failures": self.failures.load(Relaxed),
            "up": !self.is_down(),
        })
    }
}
