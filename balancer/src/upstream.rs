//! One upstream as every mode sees it: its address, its health (`crate::health`), the load
//! the strategies read, and its statistics. What only one mode keeps per upstream lives in
//! that mode's module (http mode's pool of connections), or is the handoff link, whose
//! receiver reports its own load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use serverkit::handoff::Link;

use crate::address::UpstreamAddr;
use crate::health::Health;

/// An upstream API instance.
pub struct Upstream {
    /// Where it is.
    pub addr: UpstreamAddr,
    /// Whether it is worth trying.
    pub health: Health,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Handoff mode: the link to its handoff socket, which also reads the connections the
    /// upstream reports open (the balancer never sees a handed-over connection close).
    pub handoff: Option<Link>,
}

/// Counts one request or connection in flight for as long as it lives.
pub struct InFlight<'a>(&'a Upstream);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl Upstream {
    /// An upstream at `addr`, up, with nothing in flight; `handoff` for handoff mode.
    pub fn new(addr: UpstreamAddr, handoff: Option<Link>) -> Upstream {
        Upstream {
            addr,
            health: Health::default(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            handoff,
        }
    }

    /// Requests (http mode) or connections (tcp mode) in flight through us, plus the
    /// connections the upstream reports open itself (handoff mode).
    pub fn in_flight(&self) -> usize {
        let reported = self.handoff.as_ref().map_or(0, Link::open_connections);
        self.in_flight.load(Relaxed) + reported as usize
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

    /// Requests (http mode) or connections (tcp and handoff modes) it was chosen for.
    pub fn chosen(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// `{"upstream": ..., "requests": ..., "in_flight": ..., "failures": ..., "up": ...}`
    pub fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "upstream": self.addr.to_string(),
            "requests": self.chosen(),
            "in_flight": self.in_flight(),
            "failures": self.health.failures(),
            "up": !self.health.is_down(),
        })
    }
}
