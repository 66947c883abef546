//! Slow and idle clients against the real stack (two `api` processes on a fresh database
//! behind the real balancer), in every mode: deadlines for heads, bodies and idle
//! keep-alive connections, and shedding at the connection cap.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use testkit::{handoff_socket, Balancer, Process, TestApi};

/// Short deadlines, so the tests take seconds; the same for the APIs and the balancer.
const DEADLINE_MS: u64 = 400;
const IDLE_MS: u64 = 800;

/// Two APIs on one fresh database and the balancer in `mode` in front of them, every
/// process with `env` besides its deadlines.
struct Stack {
    api: TestApi,
    second: Process,
    lb: Balancer,
}

impl Stack {
    async fn start(mode: &str, deadlines: bool, env: &[(&str, &str)]) -> Stack {
        let mut owned: Vec<(String, String)> = vec![("LB_MODE".into(), mode.into())];
        owned.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if deadlines {
            for prefix in ["API", "LB"] {
                for (name, ms) in [
                    ("HEADER_TIMEOUT_MS", DEADLINE_MS),
                    ("BODY_TIMEOUT_MS", DEADLINE_MS),
                    ("IDLE_TIMEOUT_MS", IDLE_MS),
                ] {
                    owned.push((format!("{prefix}_{name}"), ms.to_string()));
                }
            }
        }
        // Each process reads its own prefix and ignores the other's.
        let env: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (api_env, lb_env) = (&env[1..], &env[..]);
        let api = TestApi::start(api_env).await;
        let (second, _) = api.start_sibling("api2.sock", api_env);
        let upstream = |name: &str| -> PathBuf {
            let socket = api.dir.join(name);
            if mode == "handoff" {
                handoff_socket(&socket)
            } else {
                socket
            }
        };
        let (first, other) = (upstream("api.sock"), upstream("api2.sock"));
        let lb = Balancer::start(&[&first, &other], lb_env);
        Stack { api, second, lb }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.lb.addr).await.unwrap()
    }

    /// The descriptors each process keeps once warm: `clients` concurrent requests first,
    /// so that the links and pools that open on demand (handoff links, the http mode's
    /// upstream connections) are open before counting.
    async fn warm_descriptors(&self, clients: usize) -> Vec<usize> {
        let requests: Vec<_> = (0..clients)
            .map(|_| {
                let target = self.lb.target.clone();
                tokio::spawn(async move { target.get("/clientes/1/extrato").await.status })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap(), 200);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.pids().iter().map(|(_, pid)| open_fds(*pid)).collect()
    }

    /// The balancer's worker and both APIs.
    fn pids(&self) -> Vec<(&'static str, u32)> {
        let worker = common::workers_of(self.lb.process.pid());
        assert_eq!(worker.len(), 1, "one worker");
        vec![
            ("balancer worker", worker[0]),
            ("api1", self.api.process.pid()),
            ("api2", self.second.pid()),
        ]
    }
}

/// Everything the server sends until it closes, and how long that took; fails past `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (reply, started.elapsed()),
            Ok(Ok(n)) => reply.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "still open after {within:?}, having sent {:?}",
                String::from_utf8_lossy(&reply)
            ),
        }
    }
}

fn status_of(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Waits until `pid` has at most `fds` descriptors open, or fails after `within`.
async fn back_to(pid: u32, fds: usize, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while open_fds(pid) > fds {
        assert!(
            Instant::now() < deadline,
            "{what}: {} descriptors open, {fds} at idle",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_get_408_idle_connections_are_closed() {
    let late = Duration::from_millis(DEADLINE_MS);
    for mode in common::modes() {
        let stack = Stack::start(mode, true, &[]).await;

        // A head that never ends.
        let mut client = stack.connect().await;
        client
            .write_all(b"GET /clientes/1/extrato HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let (reply, took) = until_closed(&mut client, Duration::from_secs(5)).await;
        assert_eq!(status_of(&reply), "HTTP/1.1 408 Request Timeout", "{mode}");
        assert!(took >= late - Duration::from_millis(50), "{mode}: {took:?}");

        // A head sent a byte at a time, each in time, but the whole too late.
        let mut client = stack.connect().await;
        let started = Instant::now();
        let head = b"GET /clientes/1/extrato HTTP/1.1\r\nHost: a-slow-client\r\n\r\n";
        let mut cut_off = false;
        for byte in head {
            if client.write_all(&[*byte]).await.is_err() {
                cut_off = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let (reply, _) = until_closed(&mut client, Duration::from_secs(5)).await;
        assert!(
            cut_off || status_of(&reply) == "HTTP/1.1 408 Request Timeout",
            "{mode}: {:?}",
            String::from_utf8_lossy(&reply)
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{mode}");

        // A body that never ends: 408, and nothing applied.
        let mut client = stack.connect().await;
        client
            .write_all(
                b"POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
                  content-length: 49\r\n\r\n{\"valor\": 1, \"tipo\": \"c\"",
            )
            .await
            .unwrap();
        let (reply, took) = until_closed(&mut client, Duration::from_secs(5)).await;
        assert_eq!(status_of(&reply), "HTTP/1.1 408 Request Timeout", "{mode}");
        assert!(took >= late - Duration::from_millis(50), "{mode}: {took:?}");
        assert_eq!(stack.api.db.balance_and_count(1).await, (0, 0), "{mode}");

        // A connection that sends nothing is closed without an answer (in http and handoff
        // modes the kernel holds it for TCP_DEFER_ACCEPT's second first).
        let mut client = stack.connect().await;
        let (reply, _) = until_closed(&mut client, Duration::from_secs(6)).await;
        assert!(
            reply.is_empty(),
            "{mode}: {:?}",
            String::from_utf8_lossy(&reply)
        );

        // A keep-alive connection: answered, then closed once idle for IDLE_MS, not before.
        let mut client = stack.connect().await;
        client
            .write_all(b"GET /clientes/1/extrato HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 4096];
        let n = client.read(&mut buffer).await.unwrap();
        assert!(
            status_of(&buffer[..n]).starts_with("HTTP/1.1 200"),
            "{mode}"
        );
        let idle = Instant::now();
        let (reply, _) = until_closed(&mut client, Duration::from_secs(5)).await;
        assert!(reply.is_empty(), "{mode}: closed without a word");
        assert!(
            idle.elapsed() >= Duration::from_millis(IDLE_MS - 100),
            "{mode}: closed after {:?}, before the idle deadline",
            idle.elapsed()
        );

        // And a normal request still works.
        assert_eq!(stack.lb.target.get("/clientes/1/extrato").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twice_the_cap_of_slow_clients_cannot_lock_out_a_normal_one() {
    const CAP: usize = 20;
    let cap = CAP.to_string();
    for mode in common::modes() {
        // Default deadlines (seconds): only shedding can make room in time.
        let stack = Stack::start(
            mode,
            false,
            &[("LB_MAX_CONNECTIONS", &cap), ("API_MAX_CONNECTIONS", &cap)],
        )
        .await;
        let pids = stack.pids();
        let fds = stack.warm_descriptors(2 * CAP).await;
        let idle: Vec<(usize, u64)> = pids
            .iter()
            .zip(fds)
            .map(|((_, pid), fds)| (fds, rss_kb(*pid)))
            .collect();

        // Twice the cap: half with an unfinished head, half idle after a request on a
        // keep-alive connection.
        let mut slow = Vec::new();
        for i in 0..2 * CAP {
            let mut client = stack.connect().await;
            let bytes: &[u8] = if i % 2 == 0 {
                b"GET /clientes/1/extrato HTTP/1.1\r\nHost: x\r\n"
            } else {
                b"GET /clientes/1/extrato HTTP/1.1\r\nHost: x\r\n\r\n"
            };
            client.write_all(bytes).await.unwrap();
            slow.push(client);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;

        let started = Instant::now();
        let reply = stack.lb.target.get("/clientes/1/extrato").await;
        assert_eq!(reply.status, 200, "{mode}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{mode}: answered after {:?}",
            started.elapsed()
        );

        // Whatever was shed was closed, the rest goes once its client does; then every
        // process is back to its idle descriptors and about its idle memory.
        drop(slow);
        for ((name, pid), (fds, rss)) in pids.iter().zip(&idle) {
            back_to(
                *pid,
                *fds,
                Duration::from_secs(5),
                &format!("{mode}: {name}"),
            )
            .await;
            assert!(
                rss_kb(*pid) < rss + 8 * 1024,
                "{mode}: {name} uses {} kB, {rss} kB at idle",
                rss_kb(*pid)
            );
        }
    }
}

/// The balancer's descriptors and memory come back once the deadlines have closed slow
/// clients that never go away on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_free_what_slow_clients_held() {
    for mode in common::modes() {
        let stack = Stack::start(mode, true, &[]).await;
        let pids = stack.pids();
        let idle = stack.warm_descriptors(4).await;
        let mut slow = Vec::new();
        for _ in 0..100 {
            let mut client = stack.connect().await;
            client
                .write_all(b"POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            slow.push(client);
        }
        // The clients keep their ends open; the servers must close theirs.
        let within = Duration::from_millis(DEADLINE_MS * 5);
        for ((name, pid), fds) in pids.iter().zip(&idle) {
            back_to(*pid, *fds, within, &format!("{mode}: {name}")).await;
        }
        for client in &mut slow {
            let (reply, _) = until_closed(client, Duration::from_secs(1)).await;
            assert_eq!(status_of(&reply), "HTTP/1.1 408 Request Timeout", "{mode}");
        }
    }
}
