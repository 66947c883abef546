//! Start-up, the accept loop, the admin listener and graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serverkit::io::{ConnectionLimit, ConnectionPermit, QuietListener, QuietStream};
use tokio::net::TcpListener;

use crate::config::Mode;
use crate::state::State;
use crate::{http_proxy, tcp_proxy};

pub async fn run(state: State) -> Result<(), String> {
    let state = Arc::new(state);
    let listener = bind(state.config.listen)?;
    serverkit::io::defer_accept(&listener, 1).map_err(|e| format!("TCP_DEFER_ACCEPT: {e}"))?;
    let listener = QuietListener::new(listener).map_err(|e| e.to_string())?;
    // Request timeouts (LB_TIMEOUT_MS) are longer than this tick, so they never unpark.
    serverkit::io::spawn_timer_anchor(Duration::from_millis(500));
    if let Some(addr) = state.config.admin {
        let admin = TcpListener::from_std(bind(addr)?).map_err(|e| e.to_string())?;
        tokio::spawn(serve_admin(admin, state.clone()));
    }
    let upstreams: Vec<String> = state.upstreams.iter().map(|u| u.addr.to_string()).collect();
    eprintln!(
        "balancer: listening on {} ({} mode, {}) -> {}",
        state.config.listen,
        state.config.mode.name(),
        state.config.strategy.name(),
        upstreams.join(", ")
    );

    let graceful = GracefulShutdown::new();
    let limit = ConnectionLimit::new(state.config.max_connections);
    let mut shutdown = std::pin::pin!(serverkit::lifecycle::shutdown_signal());
    loop {
        tokio::select! {
            // Accepted sockets inherit TCP_NODELAY from the listener.
            (accepted, permit) = async {
                let permit = limit.acquire().await;
                (listener.accept::<std::net::TcpStream>().await, permit)
            } => match accepted {
                Ok(stream) => match state.config.mode {
                    Mode::Http => serve_http(stream, &state, &graceful, permit),
                    Mode::Tcp => match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => {
                            let state = state.clone();
                            tokio::spawn(async move {
                                tcp_proxy::handle(stream, state).await;
                                drop(permit);
                            });
                        }
                        Err(e) => eprintln!("balancer: cannot register a connection: {e}"),
                    },
                },
                Err(e) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    eprintln!("balancer: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }

    drop(listener);
    let deadline = state.config.drain;
    eprintln!(
        "balancer: shutting down, draining for up to {}s",
        deadline.as_secs()
    );
    // Hyper's connections close at their next idle point; tcp-mode copies run to their end.
    // Either way a connection holds its permit until it is gone.
    let drained = async {
        graceful.shutdown().await;
        limit.all_closed(state.config.max_connections).await;
    };
    if tokio::time::timeout(deadline, drained).await.is_err() {
        eprintln!("balancer: drain deadline passed, closing remaining connections");
    }
    Ok(())
}

fn serve_http(
    stream: std::net::TcpStream,
    state: &Arc<State>,
    graceful: &GracefulShutdown,
    permit: ConnectionPermit,
) {
    let stream = match QuietStream::new(stream) {
        Ok(stream) => stream,
        Err(e) => return eprintln!("balancer: cannot register a connection: {e}"),
    };
    let state = state.clone();
    serverkit::http::spawn_connection(stream, graceful, permit, move |request| {
        http_proxy::handle(request, state.clone())
    });
}

async fn serve_admin(listener: TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let response = if request.method() == Method::GET && request.uri().path() == "/stats" {
                let mut response = Response::new(Full::new(Bytes::from(state.stats_json())));
                response
                    .headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                response
            } else {
                http_proxy::reply(StatusCode::NOT_FOUND, "only GET /stats here")
            };
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

/// A non-blocking listener with a deep accept queue (the official test opens a new
/// connection per request) and TCP_NODELAY, which accepted sockets inherit.
fn bind(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, String> {
    use socket2::{Domain, Socket, Type};
    let fail = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_nodelay(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(4096).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}
