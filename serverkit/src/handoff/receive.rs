//! The receiving side of a handoff link, in an API: accepting balancers' links, and
//! serving the connections each one sends as if they had been accepted here.

use std::os::fd::{AsRawFd, OwnedFd};

use super::wire::{self, stop_receiving, Received};
use crate::limit::ConnectionPermit;
use crate::quiet::QuietListener;
use crate::source::{Handler, Source, ACCEPT_BACKOFF};
use crate::sys::socket::register_readable;

/// Accepts balancers on a handoff socket; each gets a task that receives its connections.
///
/// On drain, new links are refused before the listener goes, and the links that connected
/// before that are still taken: a balancer whose link stopped receiving connects again at
/// once, and a link it connected may already carry connections. Left in the backlog, they
/// would be closed with the listener, unanswered (one in ~20 runs of
/// an_api_stopped_under_load_loses_no_connection lost two that way).
pub(crate) async fn accept_senders<H: Handler, F>(
    mut source: Source<H>,
    listener: QuietListener,
    _file: F,
) {
    loop {
        let Some(accepted) = source.unless_draining(listener.accept()).await else {
            break;
        };
        match accepted {
            Ok(link) => {
                tokio::spawn(receive(source.sibling(), link));
            }
            Err(e) => {
                tracing::error!("{}: accept failed: {e}", source.service);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // A Unix listener shut for reading refuses connect (ECONNREFUSED, so the balancer
    // moves on to another upstream) and still hands out the connections it queued.
    stop_receiving(listener.raw_fd());
    while let Ok(Some(link)) = listener.accept_queued() {
        tokio::spawn(receive(source.sibling(), link));
    }
}

/// Serves the connections one balancer hands over. A message is read only once there
/// is a place under the limit for its first connection, so a server at its limit stops
/// reading and the balancer's sends fail with `WouldBlock` (back-pressure). On drain it
/// stops taking new ones (`stop_receiving`) and serves those already queued.
async fn receive<H: Handler>(mut source: Source<H>, link: OwnedFd) {
    let link = match register_readable(link) {
        Ok(link) => link,
        Err(e) => {
            return tracing::error!("{}: cannot register a handoff link: {e}", source.service)
        }
    };
    let raw = link.get_ref().as_raw_fd();
    let mut fds = Vec::new();
    loop {
        let Some(ready) = source.unless_draining(link.readable()).await else {
            break;
        };
        let mut guard = match ready {
            Ok(guard) => guard,
            Err(e) => return tracing::warn!("{}: handoff link failed: {e}", source.service),
        };
        let Some(permit) = source.unless_draining_place().await else {
            break;
        };
        match guard.try_io(|_| wire::receive(raw, &mut fds)) {
            Ok(Ok(Received::Closed)) => return,
            Ok(Ok(received)) => {
                if received == Received::Drained {
                    guard.clear_ready();
                }
                drop(guard);
                serve_received(&source, &mut fds, permit).await;
            }
            Ok(Err(e)) => return tracing::warn!("{}: handoff link failed: {e}", source.service),
            Err(_would_block) => continue,
        }
    }
    // Draining: refuse new connections, then serve those already queued.
    stop_receiving(raw);
    loop {
        let permit = source.place().await;
        match wire::receive(raw, &mut fds) {
            Ok(Received::Some | Received::Drained) => {
                serve_received(&source, &mut fds, permit).await
            }
            Ok(Received::Closed) => return,
            Err(e) => return tracing::warn!("{}: handoff link failed: {e}", source.service),
        }
    }
}

/// Serves the connections of one message, each as soon as it has a place: the first
/// has `permit`, the ones that find a place free go together, and when none is free the
/// ones so far are served before waiting (they may be what frees a place).
async fn serve_received<H: Handler>(
    source: &Source<H>,
    fds: &mut Vec<OwnedFd>,
    permit: ConnectionPermit,
) {
    let mut batch = Vec::with_capacity(fds.len());
    let mut permit = Some(permit);
    for fd in fds.drain(..) {
        let permit = match permit.take().or_else(|| source.limit.try_acquire()) {
            Some(permit) => permit,
            None => {
                source.handler.serve(&mut batch, &source.drain);
                batch.clear();
                source.place().await
            }
        };
        batch.push(source.connection(fd, permit));
    }
    source.handler.serve(&mut batch, &source.drain);
}
