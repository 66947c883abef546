//! The API's binary: configuration from the environment, then the server (`api::serve`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use api::{Config, USAGE};

fn main() -> ExitCode {
    if let Some(answered) = serverkit::lifecycle::begin("api", USAGE) {
        return answered;
    }
    match Config::from_env() {
        Ok(config) => serverkit::lifecycle::run("api", config.workers, api::serve(config)),
        Err(message) => serverkit::lifecycle::config_error("api", &message),
    }
}
