//! The Rinha balancer: on port 9999 in front of the API instances, it either hands each
//! client connection itself to an instance (handoff mode, the default in compose.yaml) or
//! proxies requests (http mode) or bytes (tcp mode) to their Unix sockets or TCP addresses.
//! `main.rs` only reads the configuration and calls `run`; the tests take the names of modes
//! and strategies and the health backoff from here. Everything else is private to the crate.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
mod client;
mod config;
mod handoff;
mod health;
mod http_proxy;
mod metrics;
mod pool;
mod selection;
mod server;
mod state;
mod supervisor;
mod tcp_proxy;
mod unavailable;
mod upstream;

use std::process::ExitCode;

pub use config::{Config, Mode, USAGE};
pub use health::BACKOFF;
pub use selection::Strategy;

/// Runs the balancer: in the first process, the supervisor, which binds LB_LISTEN and keeps
/// a worker (this same program) running on it; in the worker, the server.
pub fn run(config: Config) -> ExitCode {
    let Some(listener) = supervisor::inherited_listener() else {
        return supervisor::run(config.listen);
    };
    serverkit::lifecycle::run(
        "balancer",
        config.workers,
        server::run(state::State::new(config), listener),
    )
}
