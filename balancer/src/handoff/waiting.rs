//! Connections that found every upstream full: they wait here in arrival order, holding their
//! permits (so the balancer stops accepting once LB_MAX_CONNECTIONS wait), and are offered
//! again every RETRY, oldest first; past LB_TIMEOUT_MS they get 503.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serverkit::server::Connection;
use tokio::sync::Notify;

/// How often waiting connections try again. A timer rather than write readiness:
/// registering the links for writability would wake the balancer each time an upstream
/// takes a message (see serverkit::quiet).
pub(super) const RETRY: Duration = Duration::from_millis(2);

/// The waiting line.
#[derive(Default)]
pub(super) struct Waiting {
    /// Oldest first, with when each came.
    line: Mutex<VecDeque<(Instant, Connection)>>,
    /// Wakes the retry task when the line stops being empty.
    wake: Notify,
}

impl Waiting {
    /// Queues `batch` behind the connections already waiting, if any; false (and `batch`
    /// untouched) when none waits, so the batch may be placed at once.
    pub(super) fn queue_behind(&self, batch: &mut Vec<Connection>) -> bool {
        let mut line = self.line.lock().unwrap();
        if line.is_empty() {
            return false;
        }
        let now = Instant::now();
        line.extend(batch.drain(..).map(|c| (now, c)));
        true
    }

    /// Starts `connections` waiting, and wakes the retry task.
    pub(super) fn push(&self, connections: &mut Vec<Connection>) {
        let now = Instant::now();
        let mut line = self.line.lock().unwrap();
        line.extend(connections.drain(..).map(|c| (now, c)));
        self.wake.notify_one();
    }

    /// Resolves once a connection may be waiting.
    pub(super) async fn started(&self) {
        self.wake.notified().await
    }

    /// The oldest waiting connection, with when it came.
    pub(super) fn pop(&self) -> Option<(Instant, Connection)> {
        self.line.lock().unwrap().pop_front()
    }

    /// Puts a connection back at the head of the line, keeping its place.
    pub(super) fn put_back(&self, since: Instant, connection: Connection) {
        self.line.lock().unwrap().push_front((since, connection));
    }
}
