//! The API's binary: configuration from the environment, then the server (`api::server`).

use std::process::ExitCode;

use api::{config::Config, config::USAGE, server};

fn main() -> ExitCode {
    if let Some(answered) = serverkit::lifecycle::answer_arguments("api", USAGE) {
        return answered;
    }
    match Config::from_env() {
        Ok(config) => serverkit::lifecycle::run("api", config.workers, server::run(config)),
        Err(message) => serverkit::lifecycle::config_error("api", &message),
    }
}
