//! Handoff mode: each client connection itself goes to an upstream, as a descriptor over the
//! upstream's handoff socket (`serverkit::handoff`), and the upstream answers the client
//! directly. The balancer never reads or writes a byte of HTTP: per connection it pays an
//! accept, its share of one `sendmsg` (the connections accepted together go in one message
//! per upstream) and a close.
//!
//! A connection not yet handed over has not been read, so moving it is safe for any method:
//! an upstream whose link refuses or breaks is skipped for the usual backoff and the
//! connection goes to the next candidate. An upstream with too many connections queued
//! (at its connection limit, it stops reading) is passed over for this connection only; when
//! every upstream is full, connections wait here, in arrival order, holding their permits
//! (so the balancer stops accepting once `LB_MAX_CONNECTIONS` wait) and get 503 after
//! `LB_TIMEOUT_MS` (`waiting`). With no upstream up the balancer answers 503 itself.
//! Moving a connection (the links, their reconnection, the upstreams' own counts) is
//! `serverkit::handoff`; this module only places.

mod waiting;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use serverkit::deadline::Phase;
use serverkit::handoff::{Sent, MAX_BATCH};
use serverkit::server::{Connection, Drain, Handler};

use crate::state::State;
use crate::unavailable;
use waiting::{Waiting, RETRY};

/// handoff mode's handler: places each batch of accepted connections on the upstreams.
pub(crate) struct Dispatcher {
    state: Arc<State>,
    waiting: Waiting,
}

impl Handler for Dispatcher {
    fn serve(&self, batch: &mut Vec<Connection>, _drain: &Drain) {
        // The balancer never reads these clients: the API that takes one applies the client
        // deadlines, and a wait here is bounded by LB_TIMEOUT_MS (then 503), not shed.
        for connection in batch.iter() {
            connection.watch.enter(Phase::Busy);
        }
        // Older connections waiting for room go first.
        if self.waiting.queue_behind(batch) {
            return;
        }
        let full = self.hand_over(batch);
        self.left_over(batch, full);
    }
}

impl Dispatcher {
    /// The dispatcher, and its task that retries waiting connections (call on the runtime).
    pub(crate) fn start(state: Arc<State>) -> Arc<Dispatcher> {
        assert!(
            state.upstreams.iter().all(|u| u.handoff.is_some()),
            "handoff mode gives every upstream a link"
        );
        let dispatcher = Arc::new(Dispatcher {
            state,
            waiting: Waiting::default(),
        });
        tokio::spawn(dispatcher.clone().retry());
        dispatcher
    }

    /// Hands over what it can of `todo`, each connection to its first candidate that takes
    /// it, leaving in `todo` those no upstream took. Returns whether an upstream was full
    /// (rather than all of them down).
    fn hand_over(&self, todo: &mut Vec<Connection>) -> bool {
        let upstreams = &self.state.upstreams;
        let mut passed = vec![false; upstreams.len()];
        let mut groups: Vec<Vec<Connection>> = upstreams.iter().map(|_| Vec::new()).collect();
        let mut unplaced = Vec::new();
        let mut full = false;
        // Each placement counts against its upstream until this batch is sent, so the
        // connections of one batch see each other (the upstream's own count lags behind).
        let mut placed = Vec::new();
        while !todo.is_empty() {
            for connection in todo.drain(..) {
                match self.state.candidates(None).find(|&(i, _)| !passed[i]) {
                    Some((i, upstream)) => {
                        placed.push(upstream.reserve());
                        groups[i].push(connection)
                    }
                    None => unplaced.push(connection),
                }
            }
            for (i, group) in groups.iter_mut().enumerate() {
                for chunk_start in (0..group.len()).step_by(MAX_BATCH).rev() {
                    match self.send(i, &group[chunk_start..]) {
                        Sent::Yes => group.truncate(chunk_start), // ours to close now
                        Sent::Full => {
                            full = true;
                            passed[i] = true;
                            break;
                        }
                        Sent::Down => {
                            passed[i] = true;
                            break;
                        }
                    }
                }
                todo.append(group);
            }
        }
        todo.append(&mut unplaced);
        full
    }

    /// One message with `connections` (at most MAX_BATCH) to upstream `index`, and what it
    /// tells of the upstream's health.
    fn send(&self, index: usize, connections: &[Connection]) -> Sent {
        let upstream = &self.state.upstreams[index];
        let link = upstream.handoff.as_ref().expect("checked at start");
        let mut fds: [RawFd; MAX_BATCH] = [-1; MAX_BATCH];
        let count = connections.len().min(MAX_BATCH);
        for (slot, connection) in fds.iter_mut().zip(connections) {
            *slot = connection.fd.as_raw_fd();
        }
        let sent = link.send(&fds[..count]);
        match sent {
            Sent::Yes => {
                upstream.health.mark_ok();
                upstream.handed_over(count);
            }
            Sent::Full => {}
            Sent::Down => upstream.health.mark_failed(),
        }
        sent
    }

    /// Connections no upstream took: they wait for room when an upstream was full, and get
    /// 503 when none is up.
    fn left_over(&self, connections: &mut Vec<Connection>, full: bool) {
        if connections.is_empty() {
            return;
        }
        if full {
            self.waiting.push(connections);
        } else {
            connections.drain(..).for_each(unavailable::spawn_refuse);
        }
    }

    /// Offers the waiting connections again every RETRY, oldest first; those that waited
    /// longer than LB_TIMEOUT_MS get 503. Sleeps while nothing waits.
    async fn retry(self: Arc<Dispatcher>) {
        let patience = self.state.config.timeout;
        loop {
            self.waiting.started().await;
            loop {
                tokio::time::sleep(RETRY).await;
                if self.retry_waiting(patience) {
                    break;
                }
            }
        }
    }

    /// One pass over the waiting connections; true once none is left.
    fn retry_waiting(&self, patience: Duration) -> bool {
        loop {
            let Some((since, connection)) = self.waiting.pop() else {
                return true;
            };
            if since.elapsed() > patience {
                unavailable::spawn_refuse(connection);
                continue;
            }
            let mut one = vec![connection];
            let full = self.hand_over(&mut one);
            match one.pop() {
                None => continue,
                Some(connection) if full => {
                    // Still no room: it keeps its place at the head.
                    self.waiting.put_back(since, connection);
                    return false;
                }
                Some(connection) => unavailable::spawn_refuse(connection),
            }
        }
    }
}
