//! Serving one connection with hyper, the same way in both servers.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::quiet::QuietStream;
use crate::server::{Connection, Drain};

/// Serves HTTP/1.1 on `connection` in a task of its own, answering each request with
/// `handle`, until the client closes or the server drains (then after the request in
/// progress). A connection that arrives while draining is served one request. The permit is
/// held until the connection closes. A client that goes away mid-request is its own
/// business: nothing is reported.
pub fn spawn_connection<H, F>(connection: Connection, drain: &Drain, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let Connection { fd, permit } = connection;
    let stream = match QuietStream::new(fd) {
        Ok(stream) => stream,
        Err(e) => return eprintln!("cannot register a connection: {e}"),
    };
    let service = service_fn(move |request| {
        let response = handle(request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut drain = drain.clone();
    // Not graceful_shutdown for a late one: it would close it before its first request.
    let http = http1::Builder::new()
        .keep_alive(!drain.is_draining())
        .serve_connection(TokioIo::new(stream), service);
    tokio::spawn(async move {
        let mut http = std::pin::pin!(http);
        tokio::select! {
            biased;
            _ = http.as_mut() => {}
            _ = drain.wait() => {
                http.as_mut().graceful_shutdown();
                let _ = http.await;
            }
        }
        drop(permit);
    });
}
