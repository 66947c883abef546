//! Starting a server's runtime, and the signals that stop it.

use std::future::Future;
use std::process::ExitCode;

/// What a server configured by its environment alone does with its command line: `--help`
/// (or `-h`) prints `usage` and exits 0, any other argument is refused with exit 2, and with
/// none it goes on (None). Either way nothing has started yet.
pub fn answer_arguments(service: &str, usage: &str) -> Option<ExitCode> {
    let first = std::env::args().nth(1)?;
    if first == "--help" || first == "-h" {
        println!("{}", usage.trim_end());
        return Some(ExitCode::SUCCESS);
    }
    eprintln!(
        "{service}: unexpected argument {first:?}: it takes none, it reads environment \
         variables (`{service} --help` lists them)"
    );
    Some(ExitCode::from(2))
}

/// Exit status 2 with one line naming the problem: for configuration errors.
pub fn config_error(service: &str, message: &str) -> ExitCode {
    eprintln!("{service}: {message}");
    ExitCode::from(2)
}

/// Runs `main` on a tokio runtime and turns its result into the exit status.
///
/// Each instance gets a fraction of one CPU, so `workers == 1` (the default everywhere)
/// builds a single-threaded runtime: no cross-thread wake-ups or work stealing to pay for.
pub fn run(
    service: &str,
    workers: usize,
    main: impl Future<Output = Result<(), String>>,
) -> ExitCode {
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{service}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{service}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
