//! The balancer's process: configuration from the environment, then either the supervisor
//! (which binds LB_LISTEN and keeps a worker running: `balancer::supervisor`) or, in the
//! worker, `balancer::server` on the inherited socket.

use std::process::ExitCode;

use balancer::{config, server, state, supervisor};

fn main() -> ExitCode {
    if let Some(answered) = serverkit::lifecycle::answer_arguments("balancer", config::USAGE) {
        return answered;
    }
    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(message) => return serverkit::lifecycle::config_error("balancer", &message),
    };
    let Some(listener) = supervisor::inherited_listener() else {
        return supervisor::run(config.listen);
    };
    serverkit::lifecycle::run(
        "balancer",
        config.workers,
        server::run(state::State::new(config), listener),
    )
}
