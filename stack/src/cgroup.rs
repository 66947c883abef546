//! CPU and memory limits for one process tree, as `deploy.resources.limits` gives a
//! container: cgroup v2 (`cpu.max`, `memory.max`) where its cpu controller is available,
//! else cgroup v1 (`cpu.cfs_quota_us`, `memory.limit_in_bytes`, with `cpuacct` for usage).

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = "/sys/fs/cgroup";
const PERIOD_US: u64 = 100_000;

#[derive(Debug)]
enum Layout {
    V2(PathBuf),
    V1 {
        cpu: PathBuf,
        cpuacct: PathBuf,
        memory: PathBuf,
    },
}

/// The cgroups this runner creates, in whichever hierarchy the machine has (v1 or v2).
#[derive(Debug)]
pub struct Cgroup {
    layout: Layout,
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value)
        .map_err(|e| format!("cannot write {value:?} to {}: {e}", path.display()))
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Cgroup {
    /// A new group `name` limited to `cpus` CPUs and `memory_mb` megabytes.
    pub fn create(name: &str, cpus: f64, memory_mb: u64) -> Result<Cgroup, String> {
        let quota = ((cpus * PERIOD_US as f64).round() as u64).max(1000);
        let bytes = memory_mb * 1_000_000; // Compose's MB is 10^6 bytes
        let root = Path::new(ROOT);
        let v2_controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if v2_controllers.split_whitespace().any(|c| c == "cpu") {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
            write(&dir.join("memory.max"), &bytes.to_string())?;
            return Ok(Cgroup {
                layout: Layout::V2(dir),
            });
        }
        if root.join("cpu/cpu.cfs_quota_us").exists() && root.join("memory").is_dir() {
            let (cpu, memory) = (root.join("cpu").join(name), root.join("memory").join(name));
            let cpuacct = if root.join("cpuacct").is_dir() {
                root.join("cpuacct").join(name)
            } else {
                cpu.clone()
            };
            for dir in [&cpu, &cpuacct, &memory] {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            write(&cpu.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
            write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
            return Ok(Cgroup {
                layout: Layout::V1 {
                    cpu,
                    cpuacct,
                    memory,
                },
            });
        }
        Err(format!(
            "no writable cgroup cpu controller under {ROOT} (neither v2 cpu.max nor v1 cpu.cfs_quota_us); \
             run as root on a host with cgroups, or run without --limits"
        ))
    }

    /// The command, started inside this cgroup: a shell joins the group, then becomes the program,
    /// so everything it starts (PostgreSQL's backends too) stays inside.
    pub fn wrap(&self, command: Command) -> Command {
        let files: Vec<String> = self
            .procs_files()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut wrapped = Command::new("sh");
        wrapped
            .arg("-c")
            .arg("for f in $CGROUP_PROCS; do echo $$ > \"$f\" || exit 1; done; exec \"$@\"")
            .arg("sh")
            .arg(command.get_program())
            .args(command.get_args())
            .env("CGROUP_PROCS", files.join(" "));
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
    }

    /// The files a process writes its pid to, to join this group.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V2(dir) => vec![dir.join("cgroup.procs")],
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
            } => {
                let mut files = vec![cpu.join("cgroup.procs"), memory.join("cgroup.procs")];
                if cpuacct != cpu {
                    files.push(cpuacct.join("cgroup.procs"));
                }
                files
            }
        }
    }

    /// CPU time used by the group so far, in milliseconds.
    pub fn cpu_ms(&self) -> Option<f64> {
        match &self.layout {
            Layout::V2(dir) => {
                let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
                let usec = stat
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse::<f64>()
                    .ok()?;
                Some(usec / 1000.0)
            }
            Layout::V1 { cpuacct, .. } => {
                Some(read_number(&cpuacct.join("cpuacct.usage"))? as f64 / 1e6)
            }
        }
    }

    /// The most memory the group has used, in megabytes.
    pub fn memory_peak_mb(&self) -> Option<f64> {
        let bytes = match &self.layout {
            Layout::V2(dir) => read_number(&dir.join("memory.peak"))?,
            Layout::V1 { memory, .. } => read_number(&memory.join("memory.max_usage_in_bytes"))?,
        };
        Some(bytes as f64 / 1e6)
    }

    /// Where to read the group's files, for people and benchmark scripts.
    pub fn describe(&self) -> String {
        match &self.layout {
            Layout::V2(dir) => dir.display().to_string(),
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
            } => format!(
                "{} {} {}",
                cpu.display(),
                cpuacct.display(),
                memory.display()
            ),
        }
    }

    /// Removes the group; its processes must have exited.
    pub fn remove(&self) {
        let dirs: Vec<&PathBuf> = match &self.layout {
            Layout::V2(dir) => vec![dir],
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
            } => vec![cpu, cpuacct, memory],
        };
        for dir in dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
