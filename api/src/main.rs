//! The Rinha de Backend 2024/Q1 API: credits, debits and statements for five clients, with
//! every balance rule enforced inside PostgreSQL.

mod config;
mod db;
mod handlers;
mod pool;
mod routes;
mod server;
mod timestamp;
mod validation;

use std::process::ExitCode;

fn main() -> ExitCode {
    match config::Config::from_env() {
        Ok(config) => serverkit::lifecycle::run("api", config.workers, server::run(config)),
        Err(message) => serverkit::lifecycle::config_error("api", &message),
    }
}
