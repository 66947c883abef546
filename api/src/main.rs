//! The API's binary: configuration from the environment, then the server (`api::server`).

use std::process::ExitCode;

use api::{config::Config, server};

fn main() -> ExitCode {
    match Config::from_env() {
        Ok(config) => serverkit::lifecycle::run("api", config.workers, server::run(config)),
        Err(message) => serverkit::lifecycle::config_error("api", &message),
    }
}
