//! One connection's phase and since when, in one atomic word the request path stores to.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Where a connection is. Stored in the top byte of `Entry::state`, the time it began in
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Open, nothing read yet.
    Fresh = 0,
    /// Between requests (http), or waiting on the client after the upstream answered (tcp).
    Idle,
    /// Part of a request's head read.
    Head,
    /// Head read, body not complete.
    Body,
    /// A request is being handled (or, in tcp mode, the upstream has yet to answer).
    Busy,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Head,
            3 => Phase::Body,
            _ => Phase::Busy,
        }
    }

    /// Whether a client that is cut off in this phase gets a 408: it has started a request.
    pub fn answers_408(self) -> bool {
        matches!(self, Phase::Head | Phase::Body)
    }
}

const PHASE_SHIFT: u32 = 56;
const SINCE_MASK: u64 = (1 << PHASE_SHIFT) - 1;

/// Milliseconds since the watchlist started. Reading it is a clock_gettime(2) that the
/// vDSO answers without entering the kernel.
pub(super) struct Clock {
    pub(super) start: Instant,
}

impl Clock {
    pub(super) fn read(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn read_micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

pub(super) struct Entry {
    pub(super) state: AtomicU64,
    pub(super) clock: Arc<Clock>,
    /// 0, or 1 + the phase the connection was in when it was told to close.
    pub(super) cut: AtomicU8,
    /// Wakes the connection's task when the sweeper or the shedder closes it.
    pub(super) close: Notify,
    /// Microseconds on `clock` when the current request's first byte was read, for the
    /// request's latency (the phase's own time is in milliseconds, for the deadlines).
    pub(super) request_began: AtomicU64,
}

impl Entry {
    pub(super) fn load(&self) -> (Phase, u64) {
        let state = self.state.load(Relaxed);
        (
            Phase::from_u8((state >> PHASE_SHIFT) as u8),
            state & SINCE_MASK,
        )
    }

    pub(super) fn cut_in(&self) -> Option<Phase> {
        match self.cut.load(Relaxed) {
            0 => None,
            n => Some(Phase::from_u8(n - 1)),
        }
    }

    /// Tells the connection to close, remembering the phase it was in.
    pub(super) fn cut(&self, phase: Phase) {
        crate::metrics::SERVER.cut[phase as usize].inc();
        self.cut.store(phase as u8 + 1, Relaxed);
        self.close.notify_one();
    }

    fn store(&self, phase: Phase, since: u64) {
        self.state
            .store(((phase as u64) << PHASE_SHIFT) | since, Relaxed);
    }
}

/// One connection's phase, for its server's sweeper. The connection is on the list until
/// its last clone is dropped.
#[derive(Clone)]
pub struct Watch(pub(super) Arc<Entry>);

impl Watch {
    /// The phase the connection is in now.
    pub fn phase(&self) -> Phase {
        self.0.load().0
    }

    /// Enters `phase` now.
    pub fn enter(&self, phase: Phase) {
        self.0.store(phase, self.0.clock.read());
    }

    /// Bytes arrived from the client: a head begins, if none had. The first request's
    /// deadline runs from the opening of the connection, a later one's from its first byte.
    pub fn client_sent(&self) {
        let fresh = match self.0.load() {
            (Phase::Fresh, since) => Some(since),
            (Phase::Idle, _) => None,
            _ => return,
        };
        // One clock read for both: the request's start, and the phase's (in milliseconds).
        let now = self.0.clock.read_micros();
        self.0.store(Phase::Head, fresh.unwrap_or(now / 1000));
        self.0.request_began.store(now, Relaxed);
    }

    /// When the current request's first byte was read.
    pub fn request_began(&self) -> Instant {
        let micros = self.0.request_began.load(Relaxed);
        self.0.clock.start + std::time::Duration::from_micros(micros)
    }

    /// Resolves when the connection must close, with the phase it was cut off in.
    pub async fn closed(&self) -> Phase {
        loop {
            let notified = self.0.close.notified();
            if let Some(phase) = self.0.cut_in() {
                return phase;
            }
            notified.await;
        }
    }
}
