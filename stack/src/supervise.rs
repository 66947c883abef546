//! Starting each service, watching it, starting it again after a crash, and stopping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use stack::cgroup::Cgroup;
use stack::compose::Service;

/// How long a stopped service has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a service is started, and started again after a crash.
pub(crate) enum Launch {
    /// `scripts/pg-cluster start DIR`: a daemon, watched through its postmaster.pid. The
    /// first start (`--init`) also creates database "rinha" from db/init.sql; restarts keep
    /// the data.
    Database {
        script: PathBuf,
        dir: PathBuf,
        initialized: bool,
    },
    /// One of our binaries, a child of the runner.
    Binary {
        program: PathBuf,
        env: Vec<(String, String)>,
    },
}

/// One service the runner looks after.
pub(crate) struct Running {
    pub name: String,
    launch: Launch,
    child: Option<Child>,
    pub cgroup: Option<Cgroup>,
    started: Instant,
}

impl Running {
    pub(crate) fn new(name: &str, launch: Launch, cgroup: Option<Cgroup>) -> Running {
        Running {
            name: name.to_owned(),
            launch,
            child: None,
            cgroup,
            started: Instant::now(),
        }
    }

    /// Starts the service (again); for the database, returns what pg-cluster printed (its
    /// URL).
    pub(crate) fn start(&mut self) -> Result<String, String> {
        self.started = Instant::now();
        match &mut self.launch {
            Launch::Database {
                script,
                dir,
                initialized,
            } => {
                let mut command = Command::new(&*script);
                command.arg("start").arg(&*dir);
                if !*initialized {
                    command.arg("--init");
                }
                let output = wrap(command, self.cgroup.as_ref())
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| format!("scripts/pg-cluster: {e}"))?;
                if !output.status.success() {
                    return Err("PostgreSQL did not start (see above)".into());
                }
                *initialized = true;
                Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
            }
            Launch::Binary { program, env } => {
                let mut command = Command::new(&*program);
                command.envs(env.iter().map(|(k, v)| (k, v)));
                let child = wrap(command, self.cgroup.as_ref())
                    .stdin(Stdio::null())
                    .spawn()
                    .map_err(|e| {
                        format!("{}: cannot start {}: {e}", self.name, program.display())
                    })?;
                self.child = Some(child);
                Ok(String::new())
            }
        }
    }

    /// Whether the service's process is gone.
    pub(crate) fn is_down(&mut self) -> bool {
        match &self.launch {
            Launch::Database { dir, .. } => {
                let pid =
                    std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap_or_default();
                let pid = pid.lines().next().unwrap_or_default().trim();
                pid.is_empty() || !Path::new("/proc").join(pid).exists()
            }
            Launch::Binary { .. } => self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None))),
        }
    }

    /// Whether it is down and was started over a second ago: one restart a second at most,
    /// as Docker's restart policy backs off.
    pub(crate) fn needs_restart(&mut self) -> bool {
        self.is_down() && self.started.elapsed() > Duration::from_secs(1)
    }

    /// Stops one of our binaries: SIGTERM (it drains), then SIGKILL after STOP_GRACE. The
    /// database is stopped with its cluster (`pg-cluster destroy`).
    pub(crate) fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A cgroup with the service's compose.yaml CPU and memory limits.
pub(crate) fn cgroup_for(service: &Service) -> Result<Cgroup, String> {
    let cpus = service
        .cpus()
        .ok_or_else(|| format!("{}: no cpus limit in compose.yaml", service.name))?;
    let memory = service
        .memory_mb()
        .ok_or_else(|| format!("{}: no memory limit in MB in compose.yaml", service.name))?;
    Cgroup::create(
        &format!("rinha-{}-{}", std::process::id(), service.name),
        cpus,
        memory,
    )
    .map_err(|e| format!("--limits: {e}"))
}

fn wrap(command: Command, cgroup: Option<&Cgroup>) -> Command {
    match cgroup {
        Some(cgroup) => cgroup.wrap(command),
        None => command,
    }
}
