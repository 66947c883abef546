//! Start-up and serving: `serverkit`'s accept/serve/drain loop on LB_LISTEN, with what is
//! done per connection chosen by the mode, and the admin listener beside it.

use std::sync::Arc;
use std::time::Duration;

use serverkit::admin::Admin;
use serverkit::listen::Listen;
use serverkit::server::Server;

use crate::config::Mode;
use crate::handoff::Dispatcher;
use crate::http_proxy::HttpProxy;
use crate::metrics;
use crate::state::State;
use crate::tcp_proxy::TcpProxy;

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
    if let Some(listen) = &config.admin {
        serverkit::admin::spawn("balancer", listen, admin(&state))?;
    }
    let upstreams: Vec<String> = state.upstreams.iter().map(|u| u.addr.to_string()).collect();
    tracing::info!(
        "listening on {} ({} mode, {}) -> {}",
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

/// The admin listener's pages: the metrics, `/stats` (JSON), and readiness: some upstream
/// accepts a connection now (the passive health alone says "up" for an upstream never
/// tried, such as one not started yet).
fn admin(state: &Arc<State>) -> Admin {
    let (metrics, stats, ready) = (state.clone(), state.clone(), state.clone());
    Admin {
        registry: serverkit::metrics::registry(move |out| metrics::families(&metrics, out)),
        ready: Box::new(move || {
            let state = ready.clone();
            Box::pin(async move { any_upstream_accepts(&state).await })
        }),
        pages: Some(Box::new(move |path| {
            (path == "/stats").then(|| ("application/json", stats.stats_json()))
        })),
    }
}

async fn any_upstream_accepts(state: &State) -> Result<(), String> {
    let mut failures = Vec::new();
    for upstream in &state.upstreams {
        let reached = match &upstream.handoff {
            Some(link) => link.reachable(),
            None => upstream
                .addr
                .connect_stream(state.config.connect_timeout)
                .await
                .map(drop),
        };
        match reached {
            Ok(()) => return Ok(()),
            Err(e) => failures.push(format!("{}: {e}", upstream.addr)),
        }
    }
    Err(format!(
        "no upstream accepts a connection ({})",
        failures.join("; ")
    ))
}
