//! The balancer's parent process, as nginx's master is to its worker: it binds LB_LISTEN,
//! starts the balancer proper as a child that inherits the listening socket, and starts a
//! new one when it dies. The socket stays open all along, so connections that arrive while
//! a worker restarts wait in the kernel's accept queue instead of being refused: only those
//! inside the dead worker fail. The parent does nothing else, so it has nothing to crash on.
//!
//! Signals: SIGTERM or SIGINT goes on to the worker, which drains; the parent then exits
//! with its status. A worker never outlives its parent (PR_SET_PDEATHSIG).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

/// Set in a worker's environment to the descriptor of the listening socket it inherits; its
/// presence makes the process a worker.
pub(crate) const WORKER_VAR: &str = "LB_WORKER_FD";

/// The inherited listening socket's descriptor, in a worker; None in the supervisor.
pub(crate) fn inherited_listener() -> Option<RawFd> {
    std::env::var(WORKER_VAR).ok()?.parse().ok()
}
/// A worker that dies sooner than this after its start is restarted only after this long,
/// so a worker that cannot start does not spin.
const RESTART_BACKOFF: Duration = Duration::from_millis(500);

/// Binds `listen` and keeps a worker running on it until a signal; the exit status is the
/// last worker's.
pub(crate) fn run(listen: std::net::SocketAddr) -> ExitCode {
    let listener = match serverkit::listen::bind_tcp(listen) {
        Ok(listener) => listener,
        Err(message) => return serverkit::lifecycle::config_error("balancer", &message),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(supervise(listener))
}

async fn supervise(listener: OwnedFd) -> ExitCode {
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    loop {
        let started = Instant::now();
        let mut worker = match spawn_worker(&listener) {
            Ok(worker) => worker,
            Err(e) => {
                tracing::error!("cannot start a worker: {e}");
                return ExitCode::FAILURE;
            }
        };
        let stop = tokio::select! {
            status = worker.wait() => {
                let status = status.map_or("unknown".into(), |s| s.to_string());
                tracing::warn!("worker exited ({status}); starting a new one");
                None
            }
            _ = term.recv() => Some(Signal::SIGTERM),
            _ = interrupt.recv() => Some(Signal::SIGINT),
        };
        if let Some(sig) = stop {
            // Stop accepting now: the worker drops its copy as it starts draining.
            drop(listener);
            if let Some(pid) = worker.id() {
                let _ = kill(Pid::from_raw(pid as i32), sig);
            }
            let status = worker.wait().await;
            return match status.ok().and_then(|s| s.code()) {
                Some(0) => ExitCode::SUCCESS,
                Some(code) => ExitCode::from(code as u8),
                None => ExitCode::FAILURE,
            };
        }
        if started.elapsed() < RESTART_BACKOFF {
            tokio::time::sleep(RESTART_BACKOFF).await;
        }
    }
}

/// The same program as a worker, with the same environment and the listening socket.
fn spawn_worker(listener: &OwnedFd) -> std::io::Result<tokio::process::Child> {
    let program = std::env::current_exe()?;
    let fd = listener.as_raw_fd();
    let mut command = Command::new(program);
    command.env(WORKER_VAR, fd.to_string());
    serverkit::sys::process::inherit_and_die_with_parent(&mut command, fd);
    command.spawn()
}
