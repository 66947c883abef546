//! Start-up and serving: `serverkit`'s accept/serve/drain loop on LB_LISTEN, with what is
//! done per connection chosen by the mode, and the admin listener beside it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serverkit::listen::Listen;
use serverkit::server::{Connection, Drain, Handler, Server};

use crate::config::Mode;
use crate::handoff::Dispatcher;
use crate::http_proxy::{self, HttpProxy};
use crate::state::State;
use crate::tcp_proxy::TcpProxy;

/// Admin connections at once: it is for a person or a monitor, not for load.
const ADMIN_MAX_CONNECTIONS: usize = 16;

/// Serves on `listener`, the descriptor of LB_LISTEN's socket that the supervisor bound.
pub(crate) async fn run(state: State, listener: std::os::fd::RawFd) -> Result<(), String> {
    let state = Arc::new(state);
    let config = &state.config;
    let server = Server::bind(
        &[Listen::Inherited(listener)],
        config.max_connections,
        config.drain,
        config.deadlines,
    )?;
    // Request timeouts (LB_TIMEOUT_MS) are longer than this tick, so they never unpark.
    serverkit::timer::spawn_timer_anchor(Duration::from_millis(500));
    if let Some(addr) = config.admin {
        let admin = Server::bind(
            &[Listen::Tcp(addr)],
            ADMIN_MAX_CONNECTIONS,
            config.drain,
            config.deadlines,
        )?;
        let stats = Arc::new(Stats(state.clone()));
        tokio::spawn(admin.run(
            "balancer admin",
            stats,
            serverkit::lifecycle::shutdown_signal(),
        ));
    }
    let upstreams: Vec<String> = state.upstreams.iter().map(|u| u.addr.to_string()).collect();
    eprintln!(
        "balancer: listening on {} ({} mode, {}) -> {}",
        config.listen,
        config.mode.name(),
        config.strategy.name(),
        upstreams.join(", ")
    );
    let shutdown = serverkit::lifecycle::shutdown_signal();
    // The mode is chosen here, once: each has a handler of its own.
    match config.mode {
        Mode::Handoff => {
            let dispatcher = Dispatcher::start(state.clone());
            server.run("balancer", dispatcher, shutdown).await
        }
        Mode::Http => {
            let proxy = Arc::new(HttpProxy::new(state.clone()));
            server.run("balancer", proxy, shutdown).await
        }
        Mode::Tcp => {
            let proxy = Arc::new(TcpProxy(state.clone()));
            server.run("balancer", proxy, shutdown).await
        }
    }
}

/// The admin listener: `GET /stats`.
struct Stats(Arc<State>);

impl Handler for Stats {
    fn serve(&self, batch: &mut Vec<Connection>, drain: &Drain) {
        for connection in batch.drain(..) {
            let state = self.0.clone();
            serverkit::http::spawn_connection(connection, drain, move |request| {
                let response = if request.method() == Method::GET
                    && request.uri().path() == "/stats"
                {
                    let mut response = Response::new(Full::new(Bytes::from(state.stats_json())));
                    response
                        .headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    response
                } else {
                    http_proxy::reply(StatusCode::NOT_FOUND, "only GET /stats here")
                };
                async move { response }
            });
        }
    }
}
