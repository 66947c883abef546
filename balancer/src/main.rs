//! The Rinha balancer: a reverse proxy on port 9999 that spreads requests over the API
//! instances' Unix sockets (or TCP addresses), in place of nginx; or, in handoff mode, hands
//! each client connection itself to an instance.

mod config;
mod handoff;
mod http_proxy;
mod selection;
mod server;
mod state;
mod tcp_proxy;
mod unavailable;
mod upstream;

use std::process::ExitCode;

fn main() -> ExitCode {
    match config::Config::from_env() {
        Ok(config) => serverkit::lifecycle::run(
            "balancer",
            config.workers,
            server::run(state::State::new(config)),
        ),
        Err(message) => serverkit::lifecycle::config_error("balancer", &message),
    }
}
