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
//! `LB_TIMEOUT_MS`. With no upstream up the balancer answers 503 itself.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use serverkit::deadline::Phase;
use serverkit::handoff::{self, MAX_BATCH};
use serverkit::server::{Connection, Drain, Handler};

use crate::address::UpstreamAddr;
use crate::state::State;
use crate::unavailable;

/// How often connections that found every upstream full try again. A timer rather than
/// write readiness: registering the links for writability would wake the balancer each
/// time an upstream takes a message (see serverkit::quiet).
const RETRY: Duration = Duration::from_millis(2);

pub struct Dispatcher {
    state: Arc<State>,
    /// Per upstream, the connected handoff socket, opened on first use and again after it
    /// breaks.
    links: Vec<Mutex<Option<OwnedFd>>>,
    /// Connections that found every upstream full, oldest first, with when they came.
    waiting: Mutex<VecDeque<(Instant, Connection)>>,
    /// Wakes the retry task when `waiting` stops being empty.
    wake: Notify,
}

/// How one send to one upstream went.
enum Sent {
    Yes,
    /// The upstream has too many connections queued: try another.
    Full,
    /// The upstream is not there (now marked down): try another.
    Down,
}

impl Handler for Dispatcher {
    fn serve(&self, batch: &mut Vec<Connection>, _drain: &Drain) {
        // The balancer never reads these clients: the API that takes one applies the client
        // deadlines, and a wait here is bounded by LB_TIMEOUT_MS (then 503), not shed.
        for connection in batch.iter() {
            connection.watch.enter(Phase::Busy);
        }
        let mut waiting = self.waiting.lock().unwrap();
        if !waiting.is_empty() {
            // Older connections are waiting for room: queue behind them.
            let now = Instant::now();
            waiting.extend(batch.drain(..).map(|c| (now, c)));
            return;
        }
        drop(waiting);
        let full = self.hand_over(batch);
        self.left_over(batch, full);
    }
}

impl Dispatcher {
    /// The dispatcher, and its task that retries waiting connections (call on the runtime).
    pub fn start(state: Arc<State>) -> Arc<Dispatcher> {
        let links = state.upstreams.iter().map(|_| Mutex::new(None)).collect();
        let dispatcher = Arc::new(Dispatcher {
            state,
            links,
            waiting: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
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
                let choice = self
                    .state
                    .selection
                    .candidates(upstreams, None)
                    .find(|&i| !passed[i] && !upstreams[i].is_down());
                match choice {
                    Some(i) => {
                        placed.push(upstreams[i].reserve());
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

    /// One message with `connections` (at most MAX_BATCH) to upstream `index`, over its link
    /// or a new one when the link broke (the upstream restarted).
    fn send(&self, index: usize, connections: &[Connection]) -> Sent {
        let upstream = &self.state.upstreams[index];
        let mut fds: [RawFd; MAX_BATCH] = [-1; MAX_BATCH];
        let count = connections.len().min(MAX_BATCH);
        for (slot, connection) in fds.iter_mut().zip(connections) {
            *slot = connection.fd.as_raw_fd();
        }
        let mut link = self.links[index].lock().unwrap();
        for _attempt in 0..2 {
            if link.is_none() {
                match self.connect(index) {
                    Ok(fd) => *link = Some(fd),
                    Err(_) => break,
                }
            }
            let fd = link.as_ref().expect("connected above").as_raw_fd();
            match handoff::send(fd, &fds[..count]) {
                Ok(()) => {
                    upstream.mark_ok();
                    upstream.handed_over(count);
                    return Sent::Yes;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::Full,
                // Stopped (EPIPE) or gone: this link is done; a restarted upstream takes a new one.
                Err(_) => *link = None,
            }
        }
        upstream.mark_failed();
        Sent::Down
    }

    fn connect(&self, index: usize) -> io::Result<OwnedFd> {
        let upstream = &self.state.upstreams[index];
        let UpstreamAddr::Unix(path) = &upstream.addr else {
            unreachable!("config refuses TCP upstreams in handoff mode")
        };
        let link = handoff::connect(path)?;
        self.read_count(index, path)?;
        Ok(link)
    }

    /// Load-aware strategies need the upstream's own count of open connections; without it
    /// they would silently degrade to round robin, so such an upstream counts as down.
    fn read_count(&self, index: usize, socket: &Path) -> io::Result<()> {
        let upstream = &self.state.upstreams[index];
        match upstream.read_reported_count(socket) {
            Err(e) if self.state.config.strategy.needs_load() => {
                eprintln!(
                    "balancer: {}: cannot read its connection count ({e}); {} needs it, so \
                     the upstream is skipped",
                    upstream.addr,
                    self.state.config.strategy.name()
                );
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Connections no upstream took: they wait for room when an upstream was full, and get
    /// 503 when none is up.
    fn left_over(&self, connections: &mut Vec<Connection>, full: bool) {
        if connections.is_empty() {
            return;
        }
        if !full {
            connections.drain(..).for_each(unavailable::spawn_refuse);
            return;
        }
        let now = Instant::now();
        let mut waiting = self.waiting.lock().unwrap();
        waiting.extend(connections.drain(..).map(|c| (now, c)));
        self.wake.notify_one();
    }

    /// Offers the waiting connections again every RETRY, oldest first; those that waited
    /// longer than LB_TIMEOUT_MS get 503. Sleeps while nothing waits.
    async fn retry(self: Arc<Dispatcher>) {
        let patience = self.state.config.timeout;
        loop {
            self.wake.notified().await;
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
            let Some((since, connection)) = self.waiting.lock().unwrap().pop_front() else {
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
                    self.waiting.lock().unwrap().push_front((since, connection));
                    return false;
                }
                Some(connection) => unavailable::spawn_refuse(connection),
            }
        }
    }
}
