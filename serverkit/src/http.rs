//! Serving one accepted connection with hyper, the same way in both servers.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::io::ConnectionPermit;

/// Serves HTTP/1.1 on `io` in a task of its own, answering each request with `handle`. The
/// connection is watched by `graceful` (so shutdown drains it) and holds `permit` until it
/// closes. A client that goes away mid-request is its own business: nothing is reported.
pub fn spawn_connection<IO, H, F>(
    io: IO,
    graceful: &GracefulShutdown,
    permit: ConnectionPermit,
    handle: H,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = service_fn(move |request| {
        let response = handle(request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let connection =
        graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(io), service));
    tokio::spawn(async move {
        let _ = connection.await;
        drop(permit);
    });
}
