//! The balancer's process: configuration from the environment, then `balancer::run` (the
//! supervisor, or in the worker it starts, the server).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use balancer::{Config, USAGE};

fn main() -> ExitCode {
    if let Some(answered) = serverkit::lifecycle::begin("balancer", USAGE) {
        return answered;
    }
    match Config::from_env() {
        Ok(config) => balancer::run(config),
        Err(message) => serverkit::lifecycle::config_error("balancer", &message),
    }
}
