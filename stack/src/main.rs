//! The native runner: the compose.yaml stack without Docker. A throwaway PostgreSQL with the
//! settings from db/, both APIs on Unix sockets and the balancer, with the environment
//! compose.yaml gives them; optionally each under its compose CPU and memory limits.
//! Ctrl-C or SIGTERM stops everything it started and removes its temporary files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use stack::cgroup::Cgroup;
use stack::compose::{interpolate, Compose, Service};

/// Variables the runner sets itself, because they are addresses on this machine.
const OWNED: [&str; 5] = [
    "DATABASE_URL",
    "API_SOCKET",
    "API_HANDOFF_SOCKET",
    "LB_UPSTREAMS",
    "LB_LISTEN",
];

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
}

/// How a service is started, and started again after a crash.
enum Launch {
    /// `scripts/pg-cluster start DIR`: a daemon, watched through its postmaster.pid.
    Database { script: PathBuf, dir: PathBuf },
    /// One of our binaries, a child of the runner.
    Binary {
        program: PathBuf,
        env: Vec<(String, String)>,
    },
}

/// One running service.
struct Running {
    name: String,
    launch: Launch,
    child: Option<Child>,
    cgroup: Option<Cgroup>,
    started: Instant,
}

impl Running {
    /// Starts the service (again); for the database, returns what pg-cluster printed.
    fn start(&mut self) -> Result<String, String> {
        self.started = Instant::now();
        match &self.launch {
            Launch::Database { script, dir } => {
                let mut command = Command::new(script);
                command.arg("start").arg(dir);
                let output = in_cgroup(command, self.cgroup.as_ref())
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| format!("scripts/pg-cluster: {e}"))?;
                if !output.status.success() {
                    return Err("PostgreSQL did not start (see above)".into());
                }
                Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
            }
            Launch::Binary { program, env } => {
                let mut command = Command::new(program);
                command.envs(env.iter().map(|(k, v)| (k, v)));
                let child = in_cgroup(command, self.cgroup.as_ref())
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
    fn is_down(&mut self) -> bool {
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
                if service.is_down() && service.started.elapsed() > Duration::from_secs(1) {
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
    let cgroup = options.limits.then(|| limit(db)).transpose()?;
    let pg_dir = stack.dir.join("pg");
    // The first start also creates database "rinha" from db/init.sql; restarts keep the data.
    let mut command = Command::new(stack.repo.join("scripts/pg-cluster"));
    command.arg("start").arg(&pg_dir).arg("--init");
    stack.database_started = true;
    let output = in_cgroup(command, cgroup.as_ref())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("scripts/pg-cluster: {e}"))?;
    if !output.status.success() {
        return Err("PostgreSQL did not start (see above)".into());
    }
    let database_url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    println!(
        "stack: {:<4} PostgreSQL at {} (data and log in {})",
        db.name,
        database_url,
        pg_dir.display()
    );
    stack.services.push(Running {
        name: db.name.clone(),
        launch: Launch::Database {
            script: stack.repo.join("scripts/pg-cluster"),
            dir: pg_dir,
        },
        child: None,
        cgroup,
        started: Instant::now(),
    });

    for service in compose.services.iter().filter(|s| s.dockerfile.is_some()) {
        let binary = match service.dockerfile.as_deref() {
            Some("Dockerfile.api") => "api",
            Some("Dockerfile.lb") => "balancer",
            Some(other) => return Err(format!("{}: no native binary for {other}", service.name)),
            None => unreachable!(),
        };
        let env = environment(service, &stack.dir, &database_url, options.port);
        let cgroup = options.limits.then(|| limit(service)).transpose()?;
        let shown: Vec<String> = env
            .iter()
            .filter(|(k, _)| service.env(k).is_some())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("stack: {:<4} {binary} {}", service.name, shown.join(" "));
        let mut running = Running {
            name: service.name.clone(),
            launch: Launch::Binary {
                program: bin_dir.join(binary),
                env,
            },
            child: None,
            cgroup,
            started: Instant::now(),
        };
        running.start()?;
        stack.services.push(running);
    }

    wait_ready(stack, options.port).await?;
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

/// The service's compose environment, resolved: the caller's variables override literal
/// values, and the runner's own addresses replace the container paths.
fn environment(
    service: &Service,
    dir: &Path,
    database_url: &str,
    port: u16,
) -> Vec<(String, String)> {
    let lookup = |name: &str| std::env::var(name).ok();
    // Named volumes become directories under the stack's temporary directory.
    let mounts: Vec<(String, PathBuf)> = service
        .volumes
        .iter()
        .filter(|m| !m.source.starts_with('.') && !m.source.starts_with('/'))
        .map(|m| (m.target.clone(), dir.join("volumes").join(&m.source)))
        .collect();
    for (_, host) in &mounts {
        let _ = std::fs::create_dir_all(host);
    }
    service
        .environment
        .iter()
        .map(|(name, raw)| {
            let value = match name.as_str() {
                "DATABASE_URL" => database_url.to_owned(),
                "LB_LISTEN" => format!("0.0.0.0:{port}"),
                _ if OWNED.contains(&name.as_str()) => {
                    let mut value = interpolate(raw, &lookup);
                    for (target, host) in &mounts {
                        value = value.replace(target.as_str(), &host.display().to_string());
                    }
                    value
                }
                _ => lookup(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| interpolate(raw, &lookup)),
            };
            (name.clone(), value)
        })
        .collect()
}

fn limit(service: &Service) -> Result<Cgroup, String> {
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

/// Starts the command inside the cgroup: a shell joins the group, then becomes the program,
/// so everything it starts (PostgreSQL's backends too) stays inside.
fn in_cgroup(command: Command, cgroup: Option<&Cgroup>) -> Command {
    let Some(cgroup) = cgroup else {
        return command;
    };
    let files: Vec<String> = cgroup
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

async fn wait_ready(stack: &mut Stack, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(name) = stack.exited() {
            return Err(format!("{name} exited during start-up"));
        }
        if extrato_status(port).await == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("GET /clientes/1/extrato did not answer 200 within 40 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of `GET /clientes/1/extrato` on the balancer, like the official script's curl
/// (a new connection each time, two seconds at most).
async fn extrato_status(port: u16) -> Option<u16> {
    let probe = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(connection);
        let request = hyper::Request::get("/clientes/1/extrato")
            .header(hyper::header::HOST, "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        Some(sender.send_request(request).await.ok()?.status().as_u16())
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
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
            if let Some(child) = service.child.as_mut() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
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
