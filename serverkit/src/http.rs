//! Serving one connection with hyper, the same way in both servers.

use std::convert::Infallible;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

use crate::deadline::{spawn_until_cut, Phase, RequestBody, Watched};
use crate::quiet::QuietStream;
use crate::server::{Connection, Drain};

/// When the server starts draining, how long a connection whose first request has not been
/// read yet waits for it. A connection handed over or accepted with TCP_DEFER_ACCEPT has its
/// request in the socket already; hyper only has not seen it yet.
const FIRST_REQUEST_PATIENCE: Duration = Duration::from_millis(500);

/// Whether a connection has started its first request.
#[derive(Default)]
struct FirstRequest {
    started: AtomicBool,
    notify: Notify,
}

/// Serves HTTP/1.1 on `connection` in a task of its own, answering each request with
/// `handle`, until the client closes or the server drains; the permit is held until the
/// connection closes. A client that goes away mid-request is its own business: nothing is
/// reported.
///
/// Draining never drops a request the client has sent: a request in progress finishes and
/// the connection closes after it; a connection that arrives while draining is served one
/// request; one whose first request has not been read when draining starts gets
/// FIRST_REQUEST_PATIENCE for it. (hyper's graceful_shutdown closes a connection that has
/// read nothing yet at once, and a new connection has read nothing until the runtime's next
/// turn reports it readable.)
pub fn spawn_connection<H, F>(connection: Connection, drain: &Drain, handle: H)
where
    H: Fn(Request<RequestBody>) -> F + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let Connection { fd, permit, watch } = connection;
    let raw = fd.as_raw_fd();
    let stream = match QuietStream::new(fd) {
        Ok(stream) => Watched::new(stream, watch.clone(), |w, _| w.client_sent()),
        Err(e) => return tracing::error!("cannot register a connection: {e}"),
    };
    let first = Arc::new(FirstRequest::default());
    let seen = first.clone();
    let watched = watch.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        if !seen.started.load(Relaxed) {
            seen.started.store(true, Relaxed);
            seen.notify.notify_one();
        }
        let (parts, body) = request.into_parts();
        let body = RequestBody::new(body, watched.clone());
        let response = handle(Request::from_parts(parts, body));
        let watch = watched.clone();
        async move {
            let response = response.await;
            watch.enter(Phase::Idle);
            Ok::<_, Infallible>(response)
        }
    });
    let mut drain = drain.clone();
    let late = drain.is_draining();
    let http = http1::Builder::new()
        .keep_alive(!late)
        .serve_connection(TokioIo::new(stream), service);
    spawn_until_cut(raw, watch, permit, async move {
        let mut http = std::pin::pin!(http);
        if !late {
            tokio::select! {
                biased;
                served = http.as_mut() => return count_malformed(served),
                _ = drain.wait() => {}
            }
            if !first.started.load(Relaxed) {
                tokio::select! {
                    biased;
                    served = http.as_mut() => return count_malformed(served),
                    _ = first.notify.notified() => {}
                    _ = tokio::time::sleep(FIRST_REQUEST_PATIENCE) => {}
                }
            }
            http.as_mut().graceful_shutdown();
        }
        count_malformed(http.as_mut().await);
    });
}

/// A connection that ended on a request hyper could not parse: hyper answered it (400, or
/// 431 for a head too large) without calling the handler, so it is counted here.
fn count_malformed(served: Result<(), hyper::Error>) {
    if served.is_err_and(|e| e.is_parse() || e.is_parse_too_large()) {
        crate::metrics::SERVER.malformed.inc();
    }
}

/// Why a request's body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit (413).
    TooLarge,
    /// The client broke off or sent a malformed body (400).
    Unreadable,
}

/// Reads a request's body whole, never buffering more than `limit` bytes: a declared
/// Content-Length over the limit is refused before anything is read, a longer body as soon
/// as it passes the limit.
pub async fn read_body(
    request: Request<RequestBody>,
    limit: usize,
) -> Result<(Parts, Bytes), BodyError> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}
