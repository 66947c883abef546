//! Starting a server's runtime, and the signals that stop it.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

/// A server's first step, before anything starts: `--help` (or `-h`) prints `usage` and
/// exits 0; otherwise the logger is installed (`crate::log`), and any argument is refused
/// with exit 2 (the servers are configured by environment variables alone). None: go on.
pub fn begin(service: &str, usage: &str) -> Option<ExitCode> {
    let first = std::env::args().nth(1);
    if matches!(first.as_deref(), Some("--help" | "-h")) {
        println!("{}", usage.trim_end());
        return Some(ExitCode::SUCCESS);
    }
    if let Err(message) = crate::log::init() {
        // No logger to say it with.
        let _ = writeln!(std::io::stderr(), "{service}: {message}");
        return Some(ExitCode::from(2));
    }
    let first = first?;
    tracing::error!(
        "{service}: unexpected argument {first:?}: it takes none, it reads environment \
         variables (`{service} --help` lists them)"
    );
    Some(ExitCode::from(2))
}

/// Exit status 2 with one line naming the problem: for configuration errors.
pub fn config_error(service: &str, message: &str) -> ExitCode {
    tracing::error!("{service}: {message}");
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
            tracing::error!("{service}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{service}: {message}");
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
