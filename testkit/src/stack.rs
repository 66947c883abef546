//! The real API against a fresh database: what most integration tests start from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{binary, spawn_api, Process, Target, TempDir, TestDb};

/// An API process on a fresh database, on a Unix socket in a temporary directory.
pub struct TestApi {
    /// Its database.
    pub db: TestDb,
    /// Where it serves HTTP.
    pub target: Target,
    /// The process.
    pub process: Process,
    /// Its directory (sockets), removed on drop.
    pub dir: TempDir,
}

impl TestApi {
    /// A fresh database and one `api` process on a Unix socket in a temporary directory.
    pub async fn start(extra_env: &[(&str, &str)]) -> TestApi {
        let db = TestDb::create().await;
        let dir = TempDir::new("api");
        let socket = dir.join("api.sock");
        let process = spawn_api(db.url(), &socket, extra_env);
        TestApi {
            db,
            target: Target::Unix(socket),
            process,
            dir,
        }
    }

    /// Another `api` process on the same database, as the second instance behind the balancer.
    pub fn start_sibling(&self, name: &str, extra_env: &[(&str, &str)]) -> (Process, Target) {
        let socket = self.dir.join(name);
        let process = spawn_api(self.db.url(), &socket, extra_env);
        (process, Target::Unix(socket))
    }
}

/// A free TCP port on loopback (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The balancer binary on a free loopback port in front of `upstreams`.
pub struct Balancer {
    /// The process (the supervisor).
    pub process: Process,
    /// Where it listens.
    pub target: Target,
    /// The same, as an address.
    pub addr: SocketAddr,
}

impl Balancer {
    /// Starts the balancer binary on a free port in front of `upstreams`, with `env`, and waits until it listens.
    pub fn start(upstreams: &[&PathBuf], env: &[(&str, &str)]) -> Balancer {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let list: Vec<String> = upstreams.iter().map(|p| p.display().to_string()).collect();
        let (listen, list) = (addr.to_string(), list.join(","));
        let mut all = vec![
            ("LB_LISTEN", listen.as_str()),
            ("LB_UPSTREAMS", list.as_str()),
        ];
        all.extend_from_slice(env);
        let mut process = Process::spawn(&binary("balancer"), &all);
        let target = Target::Tcp(addr);
        process.wait_until(Duration::from_secs(10), || target.answers());
        Balancer {
            process,
            target,
            addr,
        }
    }
}
