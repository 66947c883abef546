//! The balancer's process: configuration from the environment, then `balancer::server`.

use std::process::ExitCode;

use balancer::{config, server, state};

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
