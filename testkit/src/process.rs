//! Our binaries as real child processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Path of a workspace binary, next to the test executable's `deps/` folder. Building the
/// workspace's tests builds every binary, so it is there under `cargo test --workspace`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// A running child process, killed when dropped. Its stderr is kept for assertions.
pub struct Process {
    child: Option<Child>,
    name: String,
}

impl Process {
    /// Starts `program` with `env` on top of ours, its stderr captured.
    pub fn spawn(program: &Path, env: &[(&str, &str)]) -> Process {
        Process::spawn_with_args(program, &[], env)
    }

    /// Starts `program` with `args` and only `env` (plus PATH) in its environment.
    pub fn spawn_with_args(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(program);
        command.args(args);
        command
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        command.envs(env.iter().copied());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Process {
            child: Some(child),
            name: program.display().to_string(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits until `ready` holds, failing with the process's stderr if it exits first.
    pub fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let (_, stderr) = self.finish_with(status);
                panic!(
                    "{} exited with {status} before it was ready: {stderr}",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (e.g. "TERM", "KILL", "STOP", "CONT") without waiting.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Waits for the exit (at most `timeout`), returning the status and everything on stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return self.finish_with(status);
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish_with(&mut self, status: ExitStatus) -> (ExitStatus, String) {
        use std::io::Read;
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.as_mut().unwrap().stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        self.child = None;
        (status, stderr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
            // A failing test shows what the process said: often the reason. Only what is
            // there already: the process's own children may hold the pipe open.
            if std::thread::panicking() {
                if let Some(pipe) = child.stderr.take() {
                    eprintln!("--- stderr of {} ---\n{}", self.name, read_available(pipe));
                }
            }
        }
    }
}

/// Where `spawn_api` puts the handoff socket of an API listening on `socket`.
pub fn handoff_socket(socket: &Path) -> PathBuf {
    socket.with_extension("handoff")
}

/// What a pipe holds now, without waiting for more.
fn read_available(mut pipe: std::process::ChildStderr) -> String {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::io::Read;
    let _ = fcntl(&pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes); // stops at WouldBlock with what was there
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Starts the `api` binary on a Unix socket against `database_url`, with `extra` environment
/// on top, and waits until it accepts connections. It also takes connections handed over by
/// a balancer, on `handoff_socket(socket)`.
pub fn spawn_api(database_url: &str, socket: &Path, extra: &[(&str, &str)]) -> Process {
    let handoff = handoff_socket(socket);
    let mut env = vec![
        ("DATABASE_URL", database_url),
        ("API_SOCKET", socket.to_str().unwrap()),
        ("API_HANDOFF_SOCKET", handoff.to_str().unwrap()),
        // Functional tests share one machine's disk with every other test's database: their
        // answers must not depend on fsync staying under the 2 s default. Tests of
        // timeouts set their own (later entries win).
        ("DB_TIMEOUT_MS", "10000"),
    ];
    env.extend_from_slice(extra);
    let mut process = Process::spawn(&binary("api"), &env);
    let target = crate::Target::Unix(socket.to_owned());
    process.wait_until(Duration::from_secs(30), || target.is_up());
    process
}

/// Sends a signal by name ("TERM", "KILL", "STOP", "CONT") to any process, without waiting.
pub fn send_signal(pid: u32, signal: &str) {
    let sig: Signal = format!("SIG{signal}").parse().expect("a signal name");
    if let Err(e) = kill(Pid::from_raw(pid as i32), sig) {
        panic!("kill -{signal} {pid}: {e}");
    }
}
