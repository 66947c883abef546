//! The native runner: the compose.yaml stack without Docker. A throwaway PostgreSQL with the
//! settings from db/, both APIs on Unix sockets and the balancer, with the environment
//! compose.yaml gives them; optionally each under its compose CPU and memory limits.
//! Ctrl-C or SIGTERM stops everything it started and removes its temporary files.

#![forbid(unsafe_code)]

//!
//! `supervise`: starting, watching and stopping each service; `environment`: compose.yaml's
//! environment mapped onto this machine; `probe`: readiness.

mod environment;
mod probe;
mod supervise;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use environment::{environment, ADMIN};
use probe::wait_ready;
use stack::compose::Compose;
use supervise::{cgroup_for, Launch, Running};

/// The compose.yaml stack without Docker: a throwaway PostgreSQL with db/'s settings, both
/// APIs and the balancer, with the environment compose.yaml gives them. Ctrl-C or SIGTERM
/// stops everything and removes every file it created.
#[derive(clap::Parser)]
#[command(
    after_help = "Variables set in the environment override compose.yaml's values (e.g. \
DB_POOL_SIZE=8, LB_STRATEGY=least-connections, LB_MODE=http); the addresses the runner \
assigns itself cannot be overridden."
)]
struct Options {
    /// Run each service under the CPU and memory limits of compose.yaml (cgroups).
    #[arg(long)]
    limits: bool,
    /// The balancer's port.
    #[arg(long, default_value_t = 9999)]
    port: u16,
    /// Print each service's limits as compose.yaml gives them in this environment (LB_MODE
    /// picks the set in limits.yaml), one `SERVICE CPUS MEGABYTES` line each, and exit.
    #[arg(long, conflicts_with = "limits")]
    print_limits: bool,
    /// Put the admin listeners (metrics, health) on free loopback ports instead of
    /// compose.yaml's 9990-9992, e.g. to run beside another stack.
    #[arg(long)]
    free_admin_ports: bool,
    /// Write the admin listeners' addresses to FILE in Prometheus's file_sd format (one
    /// target per service, labelled with its name), for a scrape configuration to read.
    #[arg(long, value_name = "FILE")]
    prometheus_targets: Option<PathBuf>,
}

struct Stack {
    repo: PathBuf,
    dir: PathBuf,
    services: Vec<Running>,
    database_started: bool,
}

fn main() -> ExitCode {
    let options = <Options as clap::Parser>::parse();
    let repo = repo_root();
    if options.print_limits {
        return print_limits(&repo);
    }
    let dir = std::env::temp_dir().join(format!("rinha-stack-{}", std::process::id()));
    let mut stack = Stack {
        repo,
        dir,
        services: Vec::new(),
        database_started: false,
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(run(&mut stack, &options)));
    stack.stop(options.limits);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stack: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_compose(repo: &Path) -> Result<Compose, String> {
    Compose::load(&repo.join("compose.yaml"), &|name| std::env::var(name).ok())
}

fn print_limits(repo: &Path) -> ExitCode {
    let limits = load_compose(repo).and_then(|compose| {
        compose
            .services
            .iter()
            .map(|s| match (s.cpus(), s.memory_mb()) {
                (Some(cpus), Some(mb)) => Ok(format!("{} {cpus} {mb}", s.name)),
                _ => Err(format!("{}: no cpus or MB memory limit", s.name)),
            })
            .collect::<Result<Vec<_>, _>>()
    });
    match limits {
        Ok(lines) => {
            println!("{}", lines.join("\n"));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("stack: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The repository: RINHA_REPO, or where this crate was built from.
fn repo_root() -> PathBuf {
    std::env::var_os("RINHA_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .to_owned()
        })
}

/// Starts the stack and keeps it running until a signal. A service that stops is started
/// again (at most once a second), as compose.yaml's `restart: unless-stopped` asks of Docker.
async fn run(stack: &mut Stack, options: &Options) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Before anything starts, so that a signal during start-up still cleans up.
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let work = async {
        start(stack, options).await?;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for service in &mut stack.services {
                if service.needs_restart() {
                    println!(
                        "stack: {:<4} stopped unexpectedly; starting it again",
                        service.name
                    );
                    if let Err(e) = service.start() {
                        eprintln!("stack: {}: {e}", service.name);
                    }
                }
            }
        }
    };
    tokio::select! {
        result = work => result,
        _ = term.recv() => Ok(()),
        _ = interrupt.recv() => Ok(()),
    }
}

async fn start(stack: &mut Stack, options: &Options) -> Result<(), String> {
    let compose = load_compose(&stack.repo)?;
    std::fs::create_dir_all(&stack.dir)
        .map_err(|e| format!("cannot create {}: {e}", stack.dir.display()))?;
    let started = Instant::now();
    let bin_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .unwrap()
        .to_owned();

    // The database first (compose's healthcheck does the same ordering).
    let db = compose.services.iter().find(|s| {
        s.image
            .as_deref()
            .is_some_and(|i| i.starts_with("postgres"))
    });
    let db = db.ok_or("compose.yaml has no postgres service")?;
    let cgroup = options.limits.then(|| cgroup_for(db)).transpose()?;
    let pg_dir = stack.dir.join("pg");
    let launch = Launch::Database {
        script: stack.repo.join("scripts/pg-cluster"),
        dir: pg_dir.clone(),
        initialized: false,
    };
    let mut database = Running::new(&db.name, launch, cgroup);
    stack.database_started = true;
    let database_url = database.start()?;
    println!(
        "stack: {:<4} PostgreSQL at {} (data and log in {})",
        db.name,
        database_url,
        pg_dir.display()
    );
    stack.services.push(database);

    let mut admins = Vec::new();
    for service in compose.services.iter().filter(|s| s.dockerfile.is_some()) {
        let binary = match service.dockerfile.as_deref() {
            Some("Dockerfile.api") => "api",
            Some("Dockerfile.lb") => "balancer",
            Some(other) => return Err(format!("{}: no native binary for {other}", service.name)),
            None => unreachable!(),
        };
        let free_admin = match options.free_admin_ports {
            true => Some(free_loopback_address()?),
            false => None,
        };
        let env = environment(
            service,
            &stack.dir,
            &database_url,
            options.port,
            free_admin.as_deref(),
        );
        if let Some((_, addr)) = env.iter().find(|(k, _)| ADMIN.contains(&k.as_str())) {
            let addr = addr
                .parse()
                .map_err(|_| format!("{}: admin address {addr} is not ip:port", service.name))?;
            admins.push((service.name.clone(), addr));
        }
        let cgroup = options.limits.then(|| cgroup_for(service)).transpose()?;
        let shown: Vec<String> = env
            .iter()
            .filter(|(k, _)| service.env(k).is_some())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("stack: {:<4} {binary} {}", service.name, shown.join(" "));
        let launch = Launch::Binary {
            program: bin_dir.join(binary),
            env,
        };
        let mut running = Running::new(&service.name, launch, cgroup);
        running.start()?;
        stack.services.push(running);
    }

    if let Some(file) = &options.prometheus_targets {
        write_targets(file, &admins)?;
    }
    wait_ready(&admins, || stack.exited()).await?;
    println!(
        "stack: ready in {:.1}s at http://127.0.0.1:{}/ (Ctrl-C stops it){}",
        started.elapsed().as_secs_f64(),
        options.port,
        if options.limits {
            ", limits from compose.yaml applied"
        } else {
            ""
        }
    );
    for service in stack.services.iter().filter(|s| s.cgroup.is_some()) {
        println!(
            "stack: {:<4} cgroup {}",
            service.name,
            service.cgroup.as_ref().unwrap().describe()
        );
    }
    Ok(())
}

/// An address on the loopback interface that no one listens on now.
fn free_loopback_address() -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string())
}

/// The admin listeners as Prometheus file_sd targets: `[{"targets": [...], "labels": {...}}]`.
fn write_targets(file: &Path, admins: &[(String, std::net::SocketAddr)]) -> Result<(), String> {
    let groups: Vec<serde_json::Value> = admins
        .iter()
        .map(|(service, addr)| {
            serde_json::json!({"targets": [addr.to_string()], "labels": {"service": service}})
        })
        .collect();
    std::fs::write(file, serde_json::Value::Array(groups).to_string())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

impl Stack {
    /// The name of a service whose process has exited, if any.
    fn exited(&mut self) -> Option<String> {
        self.services
            .iter_mut()
            .find_map(|s| s.is_down().then(|| s.name.clone()))
    }

    /// Stops everything in reverse order of start, reports what the limited services used,
    /// and removes every temporary file.
    fn stop(&mut self, report: bool) {
        if report {
            for service in &self.services {
                if let Some(cgroup) = &service.cgroup {
                    let cpu = cgroup
                        .cpu_ms()
                        .map_or("?".into(), |ms| format!("{ms:.0} ms"));
                    let peak = cgroup
                        .memory_peak_mb()
                        .map_or("?".into(), |mb| format!("{mb:.1} MB"));
                    println!(
                        "stack: {:<4} used {cpu} of CPU, peak memory {peak}",
                        service.name
                    );
                }
            }
        }
        for service in self.services.iter_mut().rev() {
            service.stop();
        }
        if self.database_started {
            let _ = Command::new(self.repo.join("scripts/pg-cluster"))
                .arg("destroy")
                .arg(self.dir.join("pg"))
                .status();
        }
        for service in &self.services {
            if let Some(cgroup) = &service.cgroup {
                cgroup.remove();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        println!("stack: stopped");
    }
}
