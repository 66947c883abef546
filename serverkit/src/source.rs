//! What every way of receiving connections shares: the `Connection` a `Handler` gets, the
//! `Drain` it obeys, and `Source`, one task's share of a server (its limit, watchlist,
//! handler and drain), with the accept loop for listening sockets. The loop for
//! handed-over connections is beside the handoff wire format (`crate::handoff::receive`).

use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::deadline::{Watch, Watchlist, SHED_AFTER};
use crate::limit::{ConnectionLimit, ConnectionPermit};
use crate::metrics::Counter;
use crate::quiet::QuietListener;

/// How long a source waits after a failed accept (typically out of descriptors) instead of
/// spinning.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The most connections accepted in one go and given to the handler together (those that
/// were ready at once; the balancer then hands them over in one message).
const ACCEPT_BATCH: usize = 64;

/// An accepted (or handed-over) connection: a non-blocking stream socket, its place under
/// the connection limit, and its watch for the deadlines (`crate::deadline`), which whatever
/// serves it keeps informed and obeys.
pub struct Connection {
    /// The client's socket.
    pub fd: OwnedFd,
    /// Its place under the connection limit, given back when the connection ends.
    pub permit: ConnectionPermit,
    /// Its deadlines and phase.
    pub watch: Watch,
}

/// What a server does with its connections.
pub trait Handler: Send + Sync + 'static {
    /// Takes every connection out of `batch`: the ones that were ready together (often one).
    fn serve(&self, batch: &mut Vec<Connection>, drain: &Drain);
}

/// Tells connections that the server is stopping: each finishes the request it is on,
/// then closes.
#[derive(Clone)]
pub struct Drain(watch::Receiver<bool>);

impl Drain {
    /// A drain that starts when `stopping` turns true.
    pub(crate) fn new(stopping: watch::Receiver<bool>) -> Drain {
        Drain(stopping)
    }

    /// Whether the server has started draining (stop taking new work).
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the server is stopping.
    pub async fn wait(&mut self) {
        // An error means the server is gone: stopping too.
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

/// A place under `limit` for one more connection. At the limit, the connection doing least
/// is closed to make room (`Watchlist::shed_one`), and again every SHED_AFTER while none
/// could be.
async fn place(limit: &ConnectionLimit, watchlist: &Watchlist) -> ConnectionPermit {
    loop {
        if let Some(permit) = limit.try_acquire() {
            return permit;
        }
        watchlist.shed_one();
        tokio::select! {
            permit = limit.acquire() => return permit,
            _ = tokio::time::sleep(SHED_AFTER) => {}
        }
    }
}

/// What every source task carries.
pub(crate) struct Source<H> {
    pub(crate) service: String,
    /// Counts the connections it receives, unless the server is unmetered.
    pub(crate) received: Option<&'static Counter>,
    pub(crate) limit: ConnectionLimit,
    pub(crate) watchlist: Arc<Watchlist>,
    pub(crate) handler: Arc<H>,
    pub(crate) drain: Drain,
    /// Held while the task runs: the drain waits for every sender to be dropped.
    pub(crate) _running: mpsc::Sender<()>,
}

impl<H: Handler> Source<H> {
    /// Another task's share of the same server: its limit, handler and drain, and a sender
    /// that keeps the drain waiting until that task ends too.
    pub(crate) fn sibling(&self) -> Source<H> {
        Source {
            service: self.service.clone(),
            received: self.received,
            limit: self.limit.clone(),
            watchlist: self.watchlist.clone(),
            handler: self.handler.clone(),
            drain: self.drain.clone(),
            _running: self._running.clone(),
        }
    }

    pub(crate) fn connection(&self, fd: OwnedFd, mut permit: ConnectionPermit) -> Connection {
        permit.opened();
        if let Some(received) = self.received {
            received.inc();
        }
        Connection {
            fd,
            permit,
            watch: self.watchlist.watch(),
        }
    }

    /// A place under the limit for one more connection (`place`).
    pub(crate) async fn place(&self) -> ConnectionPermit {
        place(&self.limit, &self.watchlist).await
    }

    /// `place`, unless the server starts draining first.
    pub(crate) async fn unless_draining_place(&mut self) -> Option<ConnectionPermit> {
        let (limit, watchlist) = (self.limit.clone(), self.watchlist.clone());
        self.unless_draining(place(&limit, &watchlist)).await
    }

    /// Waits for `step` unless the server starts draining first (then `None`).
    pub(crate) async fn unless_draining<T>(&mut self, step: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.drain.wait() => None,
            value = step => Some(value),
        }
    }

    /// Accepts connections, taking those that are ready together as one batch. A place under
    /// the limit is taken only once a connection is waiting, so an idle source holds none.
    /// Dropping the listener and its file at the end refuses new connections.
    pub(crate) async fn accept<F>(mut self, listener: QuietListener, _file: F) {
        let mut batch = Vec::new();
        loop {
            let Some(ready) = self.unless_draining(listener.ready()).await else {
                break;
            };
            let Some(permit) = self.unless_draining_place().await else {
                break;
            };
            match (ready, listener.try_accept()) {
                (Ok(()), Ok(Some(fd))) => batch.push(self.connection(fd, permit)),
                (Ok(()), Ok(None)) => continue, // taken meanwhile, or a spurious wake-up
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!("{}: accept failed: {e}", self.service);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            }
            while batch.len() < ACCEPT_BATCH {
                let Some(permit) = self.limit.try_acquire() else {
                    break;
                };
                match listener.try_accept() {
                    Ok(Some(fd)) => batch.push(self.connection(fd, permit)),
                    _ => break,
                }
            }
            self.handler.serve(&mut batch, &self.drain);
            batch.clear(); // a handler that left some behind has dropped them: closed
        }
    }
}
