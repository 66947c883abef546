//! The Rinha balancer: a reverse proxy on port 9999 that spreads requests over the API
//! instances' Unix sockets (or TCP addresses), in place of nginx.

mod config;
mod http_proxy;
mod selection;
mod server;
mod state;
mod tcp_proxy;
mod upstream;

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("balancer: {message}");
            return ExitCode::from(2);
        }
    };
    // A share of one CPU: one thread, no cross-thread wake-ups.
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
            eprintln!("balancer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(state::State::new(config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("balancer: {message}");
            ExitCode::FAILURE
        }
    }
}
