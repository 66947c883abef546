//! Handoff mode against real API processes on a real database: stopping and crashing an
//! API under load, back-pressure at API_MAX_CONNECTIONS, descriptors, keep-alive.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use testkit::{handoff_socket, spawn_api, Balancer, Process, Target, TestApi};

const CREDIT: &str = r#"{"valor": 1, "tipo": "c", "descricao": "handoff"}"#;

/// Two APIs on one fresh database and a balancer in handoff mode in front of them.
struct Stack {
    api: TestApi,
    second: Process,
    lb: Balancer,
}

impl Stack {
    async fn start(api_env: &[(&str, &str)], lb_env: &[(&str, &str)]) -> Stack {
        let api = TestApi::start(api_env).await;
        let (second, _) = api.start_sibling("api2.sock", api_env);
        let mut env = vec![("LB_MODE", "handoff")];
        env.extend_from_slice(lb_env);
        let lb = Balancer::start(
            &[
                &handoff_of(&api, "api.sock"),
                &handoff_of(&api, "api2.sock"),
            ],
            &env,
        );
        Stack { api, second, lb }
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.api.dir.join(name)
    }
}

fn handoff_of(api: &TestApi, name: &str) -> PathBuf {
    handoff_socket(&api.dir.join(name))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Waits until `pid` has `expected` descriptors open (closing is asynchronous), or fails
/// with what it has.
async fn settles_at(pid: u32, expected: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(pid) != expected {
        assert!(
            Instant::now() < deadline,
            "{what}: {} descriptors open, {expected} at idle",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `clients` concurrent clients sending `each` credits of 1 to client 1, each on a new
/// connection; the statuses (or errors) in order of completion.
async fn credits(target: &Target, clients: usize, each: usize) -> Vec<Result<StatusCode, String>> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..each {
                    let reply = target
                        .try_request(
                            hyper::Method::POST,
                            "/clientes/1/transacoes",
                            CREDIT.as_bytes(),
                        )
                        .await;
                    out.push(reply.map(|r| r.status));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// `clients` clients sending credits through the balancer, and `signal` sent to the first
/// API once they are under way; every outcome.
async fn signal_under_load(
    stack: &Stack,
    clients: usize,
    signal: &str,
) -> Vec<Result<StatusCode, String>> {
    let target = stack.lb.target.clone();
    let load = tokio::spawn(async move { credits(&target, clients, 60).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    stack.api.process.signal(signal);
    load.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_stopped_under_load_loses_no_connection() {
    let stack = Stack::start(&[], &[]).await;
    let results = signal_under_load(&stack, 6, "TERM").await;
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok(StatusCode::OK)))
        .count();
    assert_eq!(
        ok,
        results.len(),
        "every request answered 200: {:?}",
        results.iter().find(|r| !matches!(r, Ok(StatusCode::OK)))
    );
    // Each acknowledged credit applied exactly once.
    let (saldo, count) = stack.api.db.balance_and_count(1).await;
    assert_eq!((saldo as usize, count as usize), (ok, ok));
    let Stack { api, .. } = stack;
    let handoff = handoff_of(&api, "api.sock");
    let (status, stderr) = api.process.wait(Duration::from_secs(10));
    assert!(status.success(), "the stopped API exits cleanly: {stderr}");
    assert!(!handoff.exists(), "its handoff socket is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_api_costs_only_its_connections_and_is_used_again_after_restart() {
    let stack = Stack::start(&[], &[]).await;
    let results = signal_under_load(&stack, 4, "KILL").await;
    let failed = results
        .iter()
        .filter(|r| !matches!(r, Ok(StatusCode::OK)))
        .count();
    // At most the connections it held: one per client, plus one queued per client.
    assert!(failed <= 8, "{failed} of {} failed", results.len());
    let ok = results.len() - failed;
    let (saldo, _) = stack.api.db.balance_and_count(1).await;
    assert!(
        saldo as usize >= ok,
        "every acknowledged credit is there: {saldo} < {ok}"
    );

    // Restarted on the same paths: after its backoff the balancer links to it again, and
    // with the other API gone it serves everything.
    let socket = stack.socket("api.sock");
    let _restarted = spawn_api(stack.api.db.url(), &socket, &[]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stack.second.signal("KILL");
    // Dead, not dying: a connection handed over in between would die with it (that loss is
    // the first half's subject); from now on the balancer's sends to it fail and move on.
    let _ = stack.second.wait(Duration::from_secs(5));
    for _ in 0..20 {
        assert_eq!(
            stack
                .lb
                .target
                .post("/clientes/1/transacoes", CREDIT)
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_far_above_capacity_waits_and_leaves_nothing_open() {
    // Two connections at a time per API; the burst is 150 at once.
    let stack = Stack::start(&[("API_MAX_CONNECTIONS", "2")], &[]).await;
    let lb = stack.lb.process.pid();
    let apis = [stack.api.process.pid(), stack.second.pid()];
    // Idle, but with both links open (round robin: two requests).
    for _ in 0..2 {
        assert_eq!(
            stack.lb.target.get("/clientes/1/extrato").await.status,
            StatusCode::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = (open_fds(lb), apis.map(open_fds));

    let replies = futures_util::future::join_all((0..150).map(|i| {
        let target = stack.lb.target.clone();
        async move {
            target
                .get(&format!("/clientes/{}/extrato", i % 5 + 1))
                .await
                .status
        }
    }))
    .await;
    assert!(replies.iter().all(|s| *s == StatusCode::OK), "{replies:?}");

    // Thousands more, a few at a time.
    for _ in 0..250 {
        let round = futures_util::future::join_all((0..8).map(|_| {
            let target = stack.lb.target.clone();
            async move { target.get("/clientes/2/extrato").await.status }
        }))
        .await;
        assert!(round.iter().all(|s| *s == StatusCode::OK));
    }
    settles_at(lb, idle.0, "balancer").await;
    for (pid, fds) in apis.iter().zip(idle.1) {
        settles_at(*pid, fds, "api").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_pipelining_work_on_a_handed_over_connection() {
    let stack = Stack::start(&[], &[]).await;
    let request = format!(
        "POST /clientes/3/transacoes HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CREDIT}\
         GET /clientes/3/extrato HTTP/1.1\r\nhost: x\r\n\r\n\
         GET /clientes/3/extrato HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        CREDIT.len()
    );
    let reply = String::from_utf8(stack.lb.target.raw(request.as_bytes()).await).unwrap();
    assert_eq!(reply.matches("HTTP/1.1 200").count(), 3, "{reply}");
    assert!(
        reply.contains(r#""saldo":1"#),
        "the POST was answered first: {reply}"
    );
    assert!(
        reply.contains(r#""descricao":"handoff""#),
        "the GETs see it: {reply}"
    );
}

async fn stats(admin: &str) -> serde_json::Value {
    Target::Tcp(admin.parse().unwrap())
        .get("/stats")
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_reads_each_apis_own_count() {
    let admin = format!("127.0.0.1:{}", testkit::free_port());
    let stack = Stack::start(
        &[],
        &[("LB_STRATEGY", "least-connections"), ("LB_ADMIN", &admin)],
    )
    .await;
    // Nothing open (the start-up probe's connection may still be closing).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = stats(&admin).await;
        if (0..2).all(|i| stats["upstreams"][i]["in_flight"] == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // An idle keep-alive connection makes the API it was handed to the busier one by that
    // API's own count: every next connection goes to the other.
    let mut idle = tokio::net::TcpStream::connect(stack.lb.addr).await.unwrap();
    let head = b"GET /clientes/1/extrato HTTP/1.1\r\nhost: x\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut idle, head)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let busy = loop {
        let stats = stats(&admin).await;
        if let Some(busy) = (0..2).find(|&i| stats["upstreams"][i]["in_flight"] == 1) {
            break busy;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let handed = |stats: &serde_json::Value| -> Vec<u64> {
        (0..2)
            .map(|i| stats["upstreams"][i]["requests"].as_u64().unwrap())
            .collect()
    };
    let before = handed(&stats(&admin).await);
    for _ in 0..10 {
        // A connection answered before may still be closing in the idle API; once it has,
        // that API is the less busy one (else the two tie and the choice rotates).
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats(&admin).await["upstreams"][1 - busy]["in_flight"] != 0 {
            assert!(Instant::now() < deadline, "{}", stats(&admin).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let reply = stack.lb.target.get("/clientes/1/extrato").await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let stats = stats(&admin).await;
    let after = handed(&stats);
    assert_eq!(after[busy], before[busy], "none to the busy API: {stats}");
    assert_eq!(after[1 - busy], before[1 - busy] + 10, "{stats}");
    assert_eq!(stats["mode"], "handoff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_whose_count_cannot_be_read_is_skipped_not_treated_as_idle() {
    let admin = format!("127.0.0.1:{}", testkit::free_port());
    let api = TestApi::start(&[]).await;
    let (_second, _) = api.start_sibling("api2.sock", &[]);
    let first = handoff_socket(&api.dir.join("api.sock"));
    std::fs::remove_file(serverkit::handoff::count::count_path(&first)).unwrap();
    let lb = Balancer::start(
        &[&first, &handoff_socket(&api.dir.join("api2.sock"))],
        &[
            ("LB_MODE", "handoff"),
            ("LB_STRATEGY", "power-of-two"),
            ("LB_ADMIN", &admin),
        ],
    );
    for _ in 0..10 {
        assert_eq!(
            lb.target.get("/clientes/1/extrato").await.status,
            StatusCode::OK
        );
    }
    let stats = stats(&admin).await;
    assert_eq!(stats["upstreams"][0]["requests"], 0, "{stats}");
    assert_eq!(stats["upstreams"][0]["up"], false, "{stats}");
    // The ten, and the balancer's start-up probe.
    assert!(
        stats["upstreams"][1]["requests"].as_u64().unwrap() >= 10,
        "{stats}"
    );
    lb.process.signal("TERM");
    let (_, stderr) = lb.process.wait(Duration::from_secs(15));
    assert!(
        stderr.contains("cannot read its connection count")
            && stderr.contains("placing by load needs it"),
        "{stderr}"
    );
}
