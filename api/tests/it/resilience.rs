//! Faults: the database going away, stalling, or not being there yet; signals; bad
//! configuration; leftover socket files. Real processes and a real PostgreSQL throughout.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use testkit::{binary, spawn_api, Cluster, Process, Target, TempDir, TestApi};

const DEBIT: &str = r#"{"valor": 10, "tipo": "d", "descricao": "x"}"#;

async fn wait_for_status(target: &Target, status: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if target.get("/clientes/1/extrato").await.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "no {status} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An API instance on a PostgreSQL cluster of its own, which the test may stop and start,
/// after one applied debit, with its admin listener (`API_ADMIN`) on a Unix socket. Fields
/// drop in order: the API goes before its database.
pub(crate) struct OwnDatabase {
    pub(crate) target: Target,
    pub(crate) admin: Target,
    _api: Process,
    _dir: TempDir,
    pub(crate) cluster: Cluster,
}

impl OwnDatabase {
    pub(crate) async fn start(name: &str, env: &[(&str, &str)]) -> OwnDatabase {
        let cluster = Cluster::start();
        let dir = TempDir::new(name);
        let admin = dir.join("admin.sock");
        let mut env = env.to_vec();
        env.push(("API_ADMIN", admin.to_str().unwrap()));
        let api = spawn_api(cluster.url(), &dir.join("api.sock"), &env);
        let target = Target::Unix(dir.join("api.sock"));
        assert_eq!(
            target.post("/clientes/1/transacoes", DEBIT).await.status,
            StatusCode::OK
        );
        OwnDatabase {
            target,
            admin: Target::Unix(admin),
            _api: api,
            _dir: dir,
            cluster,
        }
    }
}

#[tokio::test]
async fn database_outage_gives_quick_503s_and_recovers() {
    let own = OwnDatabase::start("outage", &[("DB_TIMEOUT_MS", "1000")]).await;
    let (target, cluster) = (&own.target, &own.cluster);

    for kill in [false, true] {
        cluster.stop(kill);
        for _ in 0..3 {
            let started = Instant::now();
            let post = target.post("/clientes/1/transacoes", DEBIT).await;
            let get = target.get("/clientes/1/extrato").await;
            assert_eq!(
                (post.status, get.status),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::SERVICE_UNAVAILABLE
                )
            );
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "503s took {:?}",
                started.elapsed()
            );
        }
        cluster.restart();
        wait_for_status(target, StatusCode::OK, Duration::from_secs(15)).await;
        assert_eq!(
            target.post("/clientes/1/transacoes", DEBIT).await.status,
            StatusCode::OK
        );
    }
    // Exactly the three acknowledged debits are there: none lost in the crash, none doubled.
    let reply = target.get("/clientes/1/extrato").await.json();
    assert_eq!(reply["saldo"]["total"], -30);
    assert_eq!(reply["ultimas_transacoes"].as_array().unwrap().len(), 3);
}

/// After PostgreSQL restarts while the instance is idle, every pooled connection is dead; the
/// first request finds out and fails, and the pool then drops the rest instead of failing one
/// request per connection.
#[tokio::test]
async fn a_database_restart_costs_at_most_one_request() {
    let own = OwnDatabase::start("restart", &[("DB_POOL_SIZE", "5")]).await;
    let (target, cluster) = (&own.target, &own.cluster);

    for kill in [false, true] {
        cluster.stop(kill);
        cluster.restart();
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(target.get("/clientes/1/extrato").await.status);
        }
        let failed = statuses.iter().filter(|s| **s != StatusCode::OK).count();
        assert!(
            failed <= 1 && statuses.last() == Some(&StatusCode::OK),
            "kill={kill}: {statuses:?}"
        );
    }
}

/// While every transaction connection waits (here on a row locked from outside; in the
/// stalls measured, on a slow flush of the disk), statements are still answered: they have a
/// connection of their own, and a read needs no flush. With DB_READ_POOL_SIZE=0 they share
/// the transactions' connections and wait too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_answered_while_every_transaction_connection_waits() {
    for (reads, answered) in [("1", true), ("0", false)] {
        let api = TestApi::start(&[
            ("DB_POOL_SIZE", "1"),
            ("DB_READ_POOL_SIZE", reads),
            ("DB_TIMEOUT_MS", "5000"),
        ])
        .await;
        let lock = api.db.lock_client(1).await;
        let debit = tokio::spawn({
            let target = api.target.clone();
            async move { target.post("/clientes/1/transacoes", DEBIT).await.status }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        for client in [1, 2] {
            let read = tokio::time::timeout(
                Duration::from_secs(1),
                api.target.get(&format!("/clientes/{client}/extrato")),
            )
            .await;
            match read {
                Ok(reply) => {
                    assert!(answered, "reads={reads}: client {client} answered");
                    assert_eq!(reply.status, StatusCode::OK);
                    // The debit is not committed yet.
                    assert_eq!(reply.json()["saldo"]["total"], 0);
                }
                Err(_) => assert!(!answered, "reads={reads}: client {client} waited"),
            }
        }
        lock.release().await;
        assert_eq!(debit.await.unwrap(), StatusCode::OK, "reads={reads}");
    }
}

/// A database that holds a request past DB_TIMEOUT_MS: 503 quickly, and the transaction is
/// not applied later behind the client's back.
#[tokio::test]
async fn stalled_database_gives_503_and_applies_nothing() {
    for batch_max in ["16", "1"] {
        let api = TestApi::start(&[("DB_TIMEOUT_MS", "300"), ("DB_BATCH_MAX", batch_max)]).await;
        let lock = api.db.lock_client(1).await;

        let started = Instant::now();
        let reply = api.target.post("/clientes/1/transacoes", DEBIT).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "DB_BATCH_MAX={batch_max}: {}",
            reply.text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "DB_BATCH_MAX={batch_max}: took {:?}",
            started.elapsed()
        );

        lock.release().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            api.db.balance_and_count(1).await,
            (0, 0),
            "DB_BATCH_MAX={batch_max}: nothing applied"
        );
        // The instance is healthy again.
        assert_eq!(
            api.target
                .post("/clientes/1/transacoes", DEBIT)
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let api = TestApi::start(&[]).await;
    let lock = api.db.lock_client(1).await;

    let target = api.target.clone();
    let in_flight = tokio::spawn(async move { target.post("/clientes/1/transacoes", DEBIT).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.process.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!api.target.is_up(), "no new connections after SIGTERM");

    lock.release().await;
    let reply = in_flight.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the in-flight request completed"
    );
    let TestApi {
        process, dir, db, ..
    } = api;
    let (status, _) = process.wait(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(!dir.join("api.sock").exists(), "socket file removed");
    assert_eq!(db.balance_and_count(1).await, (-10, 1));
}

#[tokio::test]
async fn waits_for_a_database_that_starts_late() {
    let cluster = Cluster::start();
    cluster.stop(false);
    let dir = TempDir::new("late");
    let socket = dir.join("api.sock");
    let mut api = Process::spawn(
        &binary("api"),
        &[
            ("DATABASE_URL", cluster.url()),
            ("API_SOCKET", socket.to_str().unwrap()),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    cluster.restart();
    let target = Target::Unix(socket);
    api.wait_until(Duration::from_secs(20), || target.is_up());
    assert_eq!(
        target.get("/clientes/1/extrato").await.status,
        StatusCode::OK
    );
}

#[test]
fn gives_up_on_an_unreachable_database_with_a_clear_error() {
    let dir = TempDir::new("nodb");
    let url = format!(
        "postgres://postgres@localhost/rinha?host={}",
        dir.path().display()
    );
    let started = Instant::now();
    let api = Process::spawn(
        &binary("api"),
        &[
            ("DATABASE_URL", &url),
            ("API_SOCKET", dir.join("api.sock").to_str().unwrap()),
            ("DB_WAIT_SECS", "1"),
        ],
    );
    let (status, stderr) = api.wait(Duration::from_secs(10));
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        stderr.contains("database not reachable after 1s"),
        "{stderr}"
    );
    assert!(!dir.join("api.sock").exists(), "never listened");
}

#[test]
fn bad_configuration_exits_with_one_line() {
    for (env, expected) in [
        (
            vec![("API_SOCKET", "/tmp/x.sock")],
            "DATABASE_URL is not set",
        ),
        (
            vec![("DATABASE_URL", "postgres://u@h/db")],
            "set API_SOCKET",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://u@h/db"),
                ("API_LISTEN", "x:1"),
                ("DB_POOL_SIZE", "1"),
            ],
            "API_LISTEN=x:1",
        ),
        // The logger's variables, read before anything else.
        (
            vec![("API_SOCKET", "/tmp/x.sock"), ("LOG_FORMAT", "xml")],
            "LOG_FORMAT=xml is not text or json",
        ),
        (
            vec![("API_SOCKET", "/tmp/x.sock"), ("RUST_LOG", "api=loud")],
            "RUST_LOG=api=loud is not a log filter",
        ),
    ] {
        let (status, stderr) = Process::spawn(&binary("api"), &env).wait(Duration::from_secs(5));
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test]
async fn socket_file_handling() {
    let api = TestApi::start(&[]).await;

    // A stale socket file from a crashed run is replaced.
    let stale = api.dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let (_second, target) = api.start_sibling("stale.sock", &[]);
    assert_eq!(
        target.get("/clientes/1/extrato").await.status,
        StatusCode::OK
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&stale).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o666, "connectable by the balancer's user");

    // A live socket is not stolen, and a regular file is not deleted.
    let file = api.dir.join("file.sock");
    std::fs::write(&file, "precious").unwrap();
    for (path, expected) in [
        (&stale, "another process is listening"),
        (&file, "is not a socket"),
    ] {
        let env = [
            ("DATABASE_URL", api.db.url()),
            ("API_SOCKET", path.to_str().unwrap()),
        ];
        let (status, stderr) = Process::spawn(&binary("api"), &env).wait(Duration::from_secs(10));
        assert!(!status.success());
        assert!(stderr.contains(expected), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    assert_eq!(
        target.get("/clientes/1/extrato").await.status,
        StatusCode::OK
    );
}

/// Requests that arrive while PostgreSQL is down and restarting wait for it (within
/// DB_TIMEOUT_MS) and succeed, instead of failing at once. Only the first may fail: it takes
/// a pooled connection that died with the server (then the idle ones are dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_database_restart_wait_for_it_and_succeed() {
    let own = OwnDatabase::start("restart-wait", &[("DB_TIMEOUT_MS", "5000")]).await;
    let (target, cluster) = (&own.target, &own.cluster);
    for kill in [false, true] {
        cluster.stop(kill);
        let _first = target.post("/clientes/1/transacoes", DEBIT).await;
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let target = target.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let status = target.post("/clientes/1/transacoes", DEBIT).await.status;
                    (status, started.elapsed())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.restart();
        for request in waiting {
            let (status, waited) = request.await.unwrap();
            assert_eq!(status, StatusCode::OK, "kill={kill}: after {waited:?}");
            assert!(
                waited >= Duration::from_millis(400),
                "it did wait: {waited:?}"
            );
        }
    }
}

/// A statement whose own read connection is stuck (its backend stopped, as a backend stalled
/// by the scheduler or the disk would be) is read on a transaction connection instead of
/// queueing behind it: under CPU starvation statements on the read connection alone timed out
/// by hundreds (BENCHMARKS.md §15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_takes_a_transaction_connection_when_its_own_is_busy() {
    let api = TestApi::start(&[("DB_READ_POOL_SIZE", "1"), ("DB_POOL_SIZE", "2")]).await;
    let target = api.target.clone();
    assert_eq!(
        target.get("/clientes/1/extrato").await.status,
        StatusCode::OK
    );
    // The read connection is the only one that has run the statement's query.
    let readers: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE '%LEFT JOIN LATERAL%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut api.db.connect().await)
    .await
    .unwrap();
    let [reader] = readers[..] else {
        panic!("one read connection expected: {readers:?}");
    };
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), reader.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {reader}");
    };
    signal("STOP");
    let stuck = {
        let target = target.clone();
        tokio::spawn(async move { target.get("/clientes/1/extrato").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let answered = target.get("/clientes/2/extrato").await;
    let waited = started.elapsed();
    signal("CONT");
    assert_eq!(answered.status, StatusCode::OK);
    assert!(
        waited < Duration::from_secs(1),
        "the second statement waited {waited:?} for the stuck connection"
    );
    assert_eq!(
        stuck.await.unwrap().status,
        StatusCode::OK,
        "the first, once resumed"
    );
}
