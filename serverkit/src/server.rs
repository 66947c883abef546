//! The accept, serve and drain loop that the API and the balancer share. What varies is
//! where connections come from (`Listen`: TCP, a Unix socket, or handed over by a balancer)
//! and what is done with them (`Handler`).
//!
//! Every connection holds a permit of the `ConnectionLimit` until it is closed, whatever
//! serves it, so one rule bounds both servers and draining is one wait: for the sources to
//! stop, then for every permit to come back.

use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::deadline::{Deadlines, Watch, Watchlist, SHED_AFTER};
use crate::handoff::{self, Received};
use crate::limit::{ConnectionLimit, ConnectionPermit};
use crate::listen::{bind, Bound, Listen};
use crate::load::{count_path, SharedCount};
use crate::quiet::{register, QuietListener};

/// How long a source waits after a failed accept (typically out of descriptors) instead of
/// spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// An accepted (or handed-over) connection: a non-blocking stream socket, its place under
/// the connection limit, and its watch for the deadlines (`crate::deadline`), which whatever
/// serves it keeps informed and obeys.
pub struct Connection {
    pub fd: OwnedFd,
    pub permit: ConnectionPermit,
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
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the server is stopping.
    pub async fn wait(&mut self) {
        // An error means the server is gone: stopping too.
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

pub struct Server {
    sources: Vec<(Listen, Bound)>,
    limit: ConnectionLimit,
    drain_deadline: Duration,
    deadlines: Deadlines,
}

impl Server {
    /// Binds every address in `listens`. With a handoff socket among them, the number of
    /// open connections is published beside it (`crate::load`) for the balancer.
    pub fn bind(
        listens: &[Listen],
        max_connections: usize,
        drain_deadline: Duration,
        deadlines: Deadlines,
    ) -> Result<Server, String> {
        let mut limit = ConnectionLimit::new(max_connections);
        let mut sources = Vec::new();
        for listen in listens {
            let bound = bind(listen)?;
            if let Listen::Handoff(path) = listen {
                let count = count_path(path);
                let shared = SharedCount::create(&count)
                    .map_err(|e| format!("cannot create {}: {e}", count.display()))?;
                limit = limit.publish(shared);
            }
            sources.push((listen.clone(), bound));
        }
        Ok(Server {
            sources,
            limit,
            drain_deadline,
            deadlines,
        })
    }

    /// "unix:/run/api1.sock, handoff:/run/api1.handoff"
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.sources.iter().map(|(l, _)| l.to_string()).collect();
        names.join(", ")
    }

    /// Serves until `shutdown` resolves, then stops taking connections (socket files are
    /// removed, handoff senders are refused) and lets open ones finish within the drain
    /// deadline.
    pub async fn run<H: Handler>(
        self,
        service: &str,
        handler: Arc<H>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let (stop, drain) = watch::channel(false);
        let drain = Drain(drain);
        // Every source task holds a sender; all dropped means all sources have stopped.
        let (running, mut stopped) = mpsc::channel::<()>(1);
        let watchlist = Watchlist::start(self.deadlines);
        for (listen, bound) in self.sources {
            let listener = QuietListener::new(bound.listener)
                .map_err(|e| format!("cannot register {listen}: {e}"))?;
            let source = Source {
                service: service.to_owned(),
                limit: self.limit.clone(),
                watchlist: watchlist.clone(),
                handler: handler.clone(),
                drain: drain.clone(),
                _running: running.clone(),
            };
            match listen {
                Listen::Handoff(_) => tokio::spawn(source.accept_senders(listener, bound.file)),
                _ => tokio::spawn(source.accept(listener, bound.file)),
            };
        }
        drop(running);
        shutdown.await;

        eprintln!(
            "{service}: shutting down, draining {} connection(s) for up to {}s",
            self.limit.open(),
            self.drain_deadline.as_secs_f32()
        );
        let _ = stop.send(true);
        let drained = async {
            let _ = stopped.recv().await;
            self.limit.all_closed().await;
        };
        if tokio::time::timeout(self.drain_deadline, drained)
            .await
            .is_err()
        {
            eprintln!("{service}: drain deadline passed, closing remaining connections");
        }
        Ok(())
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
struct Source<H> {
    service: String,
    limit: ConnectionLimit,
    watchlist: Arc<Watchlist>,
    handler: Arc<H>,
    drain: Drain,
    _running: mpsc::Sender<()>,
}

impl<H: Handler> Source<H> {
    /// Another task's share of the same server: its limit, handler and drain, and a sender
    /// that keeps the drain waiting until that task ends too.
    fn sibling(&self) -> Source<H> {
        Source {
            service: self.service.clone(),
            limit: self.limit.clone(),
            watchlist: self.watchlist.clone(),
            handler: self.handler.clone(),
            drain: self.drain.clone(),
            _running: self._running.clone(),
        }
    }

    fn connection(&self, fd: OwnedFd, mut permit: ConnectionPermit) -> Connection {
        permit.opened();
        Connection {
            fd,
            permit,
            watch: self.watchlist.watch(),
        }
    }

    /// A place under the limit for one more connection (`place`).
    async fn place(&self) -> ConnectionPermit {
        place(&self.limit, &self.watchlist).await
    }

    /// `place`, unless the server starts draining first.
    async fn unless_draining_place(&mut self) -> Option<ConnectionPermit> {
        let (limit, watchlist) = (self.limit.clone(), self.watchlist.clone());
        self.unless_draining(place(&limit, &watchlist)).await
    }

    /// Waits for `step` unless the server starts draining first (then `None`).
    async fn unless_draining<T>(&mut self, step: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.drain.wait() => None,
            value = step => Some(value),
        }
    }

    /// Accepts connections, taking those that are ready together as one batch. A place under
    /// the limit is taken only once a connection is waiting, so an idle source holds none.
    /// Dropping the listener and its file at the end refuses new connections.
    async fn accept<F>(mut self, listener: QuietListener, _file: F) {
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
                    eprintln!("{}: accept failed: {e}", self.service);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            }
            while batch.len() < handoff::MAX_BATCH {
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

    /// Accepts balancers on a handoff socket; each gets a task that receives its connections.
    ///
    /// On drain, new links are refused before the listener goes, and the links that connected
    /// before that are still taken: a balancer whose link stopped receiving connects again at
    /// once, and a link it connected may already carry connections. Left in the backlog, they
    /// would be closed with the listener, unanswered (one in ~20 runs of
    /// an_api_stopped_under_load_loses_no_connection lost two that way).
    async fn accept_senders<F>(mut self, listener: QuietListener, _file: F) {
        loop {
            let Some(accepted) = self.unless_draining(listener.accept()).await else {
                break;
            };
            match accepted {
                Ok(link) => {
                    tokio::spawn(self.sibling().receive(link));
                }
                Err(e) => {
                    eprintln!("{}: accept failed: {e}", self.service);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
        // A Unix listener shut for reading refuses connect (ECONNREFUSED, so the balancer
        // moves on to another upstream) and still hands out the connections it queued.
        handoff::stop_receiving(listener.raw_fd());
        while let Ok(Some(link)) = listener.try_accept() {
            tokio::spawn(self.sibling().receive(link));
        }
    }

    /// Serves the connections one balancer hands over. A message is read only once there
    /// is a place under the limit for its first connection, so a server at its limit stops
    /// reading and the balancer's sends fail with `WouldBlock` (back-pressure). On drain it
    /// stops taking new ones (`handoff::stop_receiving`) and serves those already queued.
    async fn receive(mut self, link: OwnedFd) {
        let link = match register(link) {
            Ok(link) => link,
            Err(e) => return eprintln!("{}: cannot register a handoff link: {e}", self.service),
        };
        let raw = link.get_ref().as_raw_fd();
        let mut fds = Vec::new();
        loop {
            let Some(ready) = self.unless_draining(link.readable()).await else {
                break;
            };
            let mut guard = match ready {
                Ok(guard) => guard,
                Err(e) => return eprintln!("{}: handoff link failed: {e}", self.service),
            };
            let Some(permit) = self.unless_draining_place().await else {
                break;
            };
            match guard.try_io(|_| handoff::receive(raw, &mut fds)) {
                Ok(Ok(Received::Closed)) => return,
                Ok(Ok(received)) => {
                    if received == Received::Drained {
                        guard.clear_ready();
                    }
                    drop(guard);
                    self.serve_received(&mut fds, permit).await;
                }
                Ok(Err(e)) => return eprintln!("{}: handoff link failed: {e}", self.service),
                Err(_would_block) => continue,
            }
        }
        // Draining: refuse new connections, then serve those already queued.
        handoff::stop_receiving(raw);
        loop {
            let permit = self.place().await;
            match handoff::receive(raw, &mut fds) {
                Ok(Received::Some | Received::Drained) => {
                    self.serve_received(&mut fds, permit).await
                }
                Ok(Received::Closed) => return,
                Err(e) => return eprintln!("{}: handoff link failed: {e}", self.service),
            }
        }
    }

    /// Serves the connections of one message, each as soon as it has a place: the first
    /// has `permit`, the ones that find a place free go together, and when none is free the
    /// ones so far are served before waiting (they may be what frees a place).
    async fn serve_received(&self, fds: &mut Vec<OwnedFd>, permit: ConnectionPermit) {
        let mut batch = Vec::with_capacity(fds.len());
        let mut permit = Some(permit);
        for fd in fds.drain(..) {
            let permit = match permit.take().or_else(|| self.limit.try_acquire()) {
                Some(permit) => permit,
                None => {
                    self.handler.serve(&mut batch, &self.drain);
                    batch.clear();
                    self.place().await
                }
            };
            batch.push(self.connection(fd, permit));
        }
        self.handler.serve(&mut batch, &self.drain);
    }
}
