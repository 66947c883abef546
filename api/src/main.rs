//! The Rinha de Backend 2024/Q1 API: credits, debits and statements for five clients, with
//! every balance rule enforced inside PostgreSQL.

mod config;
mod db;
mod handlers;
mod routes;
mod server;
mod timestamp;
mod validation;

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("api: {message}");
            return ExitCode::from(2);
        }
    };
    // One instance gets a fraction of one CPU, so one thread by default: no cross-thread
    // wake-ups or work stealing to pay for.
    let runtime = if config.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.workers)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("api: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("api: {message}");
            ExitCode::FAILURE
        }
    }
}
