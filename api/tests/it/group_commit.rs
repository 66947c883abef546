//! Group commit (api/src/db/group_commit/) against a real PostgreSQL, with both instances running:
//! exact balances and answers when many transactions share one commit, refusals and unknown
//! clients inside a batch, the order of arrival, and crashes of the database.
//!
//! Batches are made to form deterministically: each instance gets one connection
//! (DB_POOL_SIZE=1), and a held row lock keeps the first transaction, and so the
//! connection, busy while the others queue behind it.

use std::time::Duration;

use futures_util::future::join_all;
use hyper::StatusCode;
use testkit::{Process, Target, TestApi};

const ONE_CONNECTION: [(&str, &str); 2] = [("DB_POOL_SIZE", "1"), ("DB_BATCH_MAX", "16")];

/// Keeps the instance's one connection busy: a credit of `valor` to client 3 waits on its
/// row, locked here until the lock is dropped. What is sent meanwhile queues for one batch.
async fn hold_the_connection(
    api: &TestApi,
    valor: i64,
) -> (testkit::RowLock, tokio::task::JoinHandle<testkit::Reply>) {
    let lock = api.db.lock_client(3).await;
    let target = api.target.clone();
    let first = tokio::spawn(async move {
        target
            .post("/clientes/3/transacoes", &body(valor, "c", "first"))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    (lock, first)
}

/// Each client's (balance, number of transactions) as the database holds them.
async fn assert_balances(db: &testkit::TestDb, expected: &[(i32, (i32, i64))]) {
    for &(client, balance_and_count) in expected {
        assert_eq!(
            db.balance_and_count(client).await,
            balance_and_count,
            "client {client}"
        );
    }
}

fn body(valor: i64, tipo: &str, descricao: &str) -> String {
    format!(r#"{{"valor": {valor}, "tipo": "{tipo}", "descricao": "{descricao}"}}"#)
}

/// What an instance said of its batches when it stopped.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    transactions: u64,
    batches: u64,
    largest: u64,
    /// Transactions that waited for their client's running batch.
    held: u64,
}

/// Stops an instance and returns its group-commit report.
fn batches_of(process: Process) -> Report {
    process.signal("TERM");
    let (status, stderr) = process.wait(Duration::from_secs(15));
    assert!(status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find_map(|l| l.split_once(" group commit: ").map(|(_, report)| report))
        .unwrap_or_else(|| panic!("no group commit report: {stderr}"));
    // "N transactions in M batches (mean X, largest Y), H held for their client's batch"
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter(|w| !w.is_empty() && !w.contains('.'))
        .map(|w| w.parse().unwrap())
        .collect();
    let [transactions, batches, largest, held] = numbers[..] else {
        panic!("unexpected report: {line}");
    };
    Report {
        transactions,
        batches,
        largest,
        held,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_over_both_instances_are_exact_and_share_commits() {
    let api = TestApi::start(&ONE_CONNECTION).await;
    let (second, other) = api.start_sibling("api2.sock", &ONE_CONNECTION);
    let targets = [api.target.clone(), other];
    for (tipo, expected) in [("d", -25), ("c", 0)] {
        let replies = join_all((0..25).map(|i| {
            let target = targets[i % 2].clone();
            async move {
                target
                    .post("/clientes/1/transacoes", &body(1, tipo, "validacao"))
                    .await
            }
        }))
        .await;
        assert!(replies.iter().all(|r| r.status == StatusCode::OK));
        let reply = targets[0].get("/clientes/1/extrato").await;
        assert_eq!(reply.json()["saldo"]["total"], expected, "after 25 {tipo}");
    }
    assert_eq!(api.db.balance_and_count(1).await, (0, 50));
    let TestApi { process, .. } = api;
    let (a, b) = (batches_of(process), batches_of(second));
    assert_eq!(
        a.transactions + b.transactions,
        50,
        "every transaction went through a batch: {a:?} {b:?}"
    );
    assert!(
        a.batches + b.batches < 50,
        "fewer commits than transactions: {a:?} {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_mixes_accepted_refused_and_unknown_with_exact_answers() {
    let api = TestApi::start(&ONE_CONNECTION).await;
    let target = api.target.clone();
    // The instance's one connection waits on client 3's row: the next ones queue.
    let (lock, first) = hold_the_connection(&api, 100).await;
    let mixed = [
        (2, 30000, "d"),
        (2, 30000, "d"),
        (2, 30000, "d"), // one of the three passes -80000: refused, the others not
        (6, 10, "c"),    // no such client
        (1, 10, "c"),
        (4, 10, "c"),
        (5, 10, "c"),
        (3, 5, "d"), // behind "first", on the locked row
    ];
    let queued: Vec<_> = mixed
        .iter()
        .map(|&(client, valor, tipo)| {
            let target = target.clone();
            tokio::spawn(async move {
                let reply = target
                    .post(
                        &format!("/clientes/{client}/transacoes"),
                        &body(valor, tipo, "mix"),
                    )
                    .await;
                (client, reply)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(lock);

    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json()["saldo"], 100);
    let mut client_2 = Vec::new();
    for reply in queued {
        let (client, reply) = reply.await.unwrap();
        match client {
            2 => client_2.push((reply.status, reply.text())),
            6 => assert_eq!(reply.status, StatusCode::NOT_FOUND),
            3 => assert_eq!(
                (reply.status, reply.json()["saldo"].clone()),
                (StatusCode::OK, 95.into())
            ),
            _ => assert_eq!(
                (reply.status, reply.json()["saldo"].clone()),
                (StatusCode::OK, 10.into())
            ),
        }
    }
    client_2.sort();
    assert_eq!(client_2[0].0, StatusCode::OK);
    assert_eq!(client_2[1].0, StatusCode::OK);
    assert_eq!(client_2[2].0, StatusCode::UNPROCESSABLE_ENTITY);
    let mut saldos: Vec<String> = client_2[..2].iter().map(|(_, t)| t.clone()).collect();
    saldos.sort();
    assert_eq!(
        saldos,
        [
            r#"{"limite":80000,"saldo":-30000}"#,
            r#"{"limite":80000,"saldo":-60000}"#
        ]
    );
    assert_balances(
        &api.db,
        &[
            (1, (10, 1)),
            (2, (-60000, 2)),
            (3, (95, 2)),
            (4, (10, 1)),
            (5, (10, 1)),
        ],
    )
    .await;
    let TestApi { process, .. } = api;
    let report = batches_of(process);
    assert_eq!(
        (report.transactions, report.batches, report.largest),
        (9, 2, 8),
        "the first, then the eight together: {report:?}"
    );
    assert_eq!(report.held, 1, "the debit of client 3, behind the first");
}

/// Validation refuses everything PostgreSQL is known to refuse, so the test makes the
/// database refuse valid input itself: a CHECK constraint against one description.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_the_database_refuses_is_answered_alone_and_its_batch_commits() {
    use sqlx::Executor;
    let api = TestApi::start(&ONE_CONNECTION).await;
    api.db
        .connect()
        .await
        .execute("ALTER TABLE transacoes ADD CONSTRAINT poison CHECK (descricao <> 'poison')")
        .await
        .unwrap();
    let target = api.target.clone();
    let (lock, first) = hold_the_connection(&api, 1).await;
    // Queued behind the held connection: one batch, with one poisoned item in the middle.
    let queued: Vec<_> = [(1, "ok"), (2, "ok"), (4, "poison"), (5, "ok"), (1, "ok")]
        .into_iter()
        .map(|(client, descricao)| {
            let target = target.clone();
            tokio::spawn(async move {
                let reply = target
                    .post(
                        &format!("/clientes/{client}/transacoes"),
                        &body(7, "c", descricao),
                    )
                    .await;
                (client, descricao, reply)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(lock);
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    for reply in queued {
        let (client, descricao, reply) = reply.await.unwrap();
        let expected = match descricao {
            "poison" => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::OK,
        };
        assert_eq!(
            reply.status,
            expected,
            "client {client} {descricao}: {}",
            reply.text()
        );
    }
    assert_balances(
        &api.db,
        &[
            (1, (14, 2)),
            (2, (7, 1)),
            (3, (1, 1)),
            (4, (0, 0)),
            (5, (7, 1)),
        ],
    )
    .await;
    let TestApi { process, .. } = api;
    let report = batches_of(process);
    assert_eq!(
        (report.batches, report.largest),
        (2, 5),
        "the first, then the five together: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_with_nul_is_refused_alone_and_changes_nothing() {
    let api = TestApi::start(&ONE_CONNECTION).await;
    let replies = join_all((0..16).map(|i| {
        let target = api.target.clone();
        let descricao = if i % 4 == 0 { r"a\u0000b" } else { "ok" };
        async move {
            let reply = target
                .post("/clientes/1/transacoes", &body(1, "c", descricao))
                .await;
            (descricao, reply)
        }
    }))
    .await;
    for (descricao, reply) in &replies {
        let expected = match *descricao {
            "ok" => StatusCode::OK,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        assert_eq!(reply.status, expected, "{descricao}: {}", reply.text());
    }
    let refused = replies.iter().find(|(d, _)| *d != "ok").unwrap();
    assert!(refused.1.text().contains("U+0000"), "{}", refused.1.text());
    assert_eq!(api.db.balance_and_count(1).await, (12, 12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_one_client_the_order_of_arrival_is_the_order_of_application() {
    let api = TestApi::start(&ONE_CONNECTION).await;
    let target = api.target.clone();
    let lock = api.db.lock_client(1).await;
    let mut pending = vec![tokio::spawn(send(target.clone(), "first".into()))];
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..10 {
        pending.push(tokio::spawn(send(target.clone(), format!("o{i}"))));
        tokio::time::sleep(Duration::from_millis(30)).await; // each arrives after the last
    }
    drop(lock);
    for reply in join_all(pending).await {
        assert_eq!(reply.unwrap(), StatusCode::OK);
    }
    let statement = target.get("/clientes/1/extrato").await.json();
    let newest_first: Vec<&str> = statement["ultimas_transacoes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["descricao"].as_str().unwrap())
        .collect();
    assert_eq!(
        newest_first,
        ["o9", "o8", "o7", "o6", "o5", "o4", "o3", "o2", "o1", "o0"]
    );
}

async fn send(target: Target, descricao: String) -> StatusCode {
    target
        .post("/clientes/1/transacoes", &body(1, "c", &descricao))
        .await
        .status
}

/// PostgreSQL crashes while batches run on a small pool: the batches cut off are resumed
/// once it is back (api/src/db/resume.rs), so every request is answered 200 and each
/// client's balance is exactly its acknowledged credits, with one row each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_during_batches_answers_every_request_and_loses_nothing() {
    use sqlx::{Connection, Row};
    let cluster = testkit::Cluster::start();
    let dir = testkit::TempDir::new("gc-crash");
    let socket = dir.join("api.sock");
    let env = [
        ("DB_POOL_SIZE", "2"),
        ("DB_BATCH_MAX", "16"),
        ("DB_TIMEOUT_MS", "5000"),
    ];
    let _api = testkit::spawn_api(cluster.url(), &socket, &env);
    let target = Target::Unix(socket);
    // Sixteen clients of the API, each sending credits of 1 back to back: batches form.
    let load = join_all((0..16).map(|i| {
        let target = target.clone();
        tokio::spawn(async move {
            let client = i % 5 + 1;
            let mut statuses = Vec::new();
            for _ in 0..60 {
                let reply = target
                    .try_request(
                        hyper::Method::POST,
                        &format!("/clientes/{client}/transacoes"),
                        body(1, "c", "crash").as_bytes(),
                    )
                    .await;
                statuses.push(reply.map(|r| r.status));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (client, statuses)
        })
    }));
    let crash = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        cluster.stop(true); // immediate: a crash, no checkpoint
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.restart();
    };
    let (results, ()) = tokio::join!(load, crash);
    let mut acknowledged = [0i64; 6];
    for result in results {
        let (client, statuses) = result.unwrap();
        for status in statuses {
            assert_eq!(status, Ok(StatusCode::OK), "client {client}");
            acknowledged[client] += 1;
        }
    }
    let mut conn = sqlx::PgConnection::connect(cluster.url()).await.unwrap();
    for (client, acknowledged) in acknowledged.into_iter().enumerate().skip(1) {
        let row = sqlx::query(
            "SELECT c.saldo::int8, (SELECT count(*) FROM transacoes WHERE cliente_id = c.id) \
             FROM clientes c WHERE c.id = $1",
        )
        .bind(client as i32)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let (saldo, rows): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(
            (saldo, rows),
            (acknowledged, acknowledged),
            "client {client}"
        );
    }
}

/// A credit that arrives while every connection serves a statement read (which knows
/// nothing of batches) is taken as soon as a connection comes free, not left until its
/// deadline: the stranding a clean-clone CI run found in the official validations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_queued_behind_reads_runs_when_a_connection_frees() {
    use sqlx::Executor;
    let api = TestApi::start(&[
        ("DB_POOL_SIZE", "1"),
        ("DB_READ_POOL_SIZE", "0"), // reads share the connection
        ("DB_BATCH_MAX", "16"),
        ("DB_TIMEOUT_MS", "5000"),
    ])
    .await;
    let target = api.target.clone();
    // The read takes the only connection and waits behind a lock on transacoes.
    let mut lock = api.db.connect().await;
    lock.execute("BEGIN").await.unwrap();
    lock.execute("LOCK TABLE transacoes IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let read = tokio::spawn({
        let target = target.clone();
        async move { target.get("/clientes/1/extrato").await.status }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let credit = tokio::spawn({
        let target = target.clone();
        async move {
            let started = std::time::Instant::now();
            let reply = target
                .post("/clientes/1/transacoes", &body(5, "c", "behind"))
                .await;
            (reply.status, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.execute("COMMIT").await.unwrap();
    assert_eq!(read.await.unwrap(), StatusCode::OK);
    let (status, took) = credit.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        took < Duration::from_secs(2),
        "served when the read ended, not at the deadline: {took:?}"
    );
    assert_eq!(api.db.balance_and_count(1).await, (5, 1));
}

/// A client's row held long (here by a lock from outside) ties up one of the instance's
/// connections, not all of them: that client's next transaction waits in the queue instead
/// of taking the other connection to sleep on the row too, so other clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_row_does_not_hold_the_other_clients() {
    let api = TestApi::start(&[("DB_POOL_SIZE", "2"), ("DB_BATCH_MAX", "16")]).await;
    let target = api.target.clone();
    let lock = api.db.lock_client(3).await;
    let post = |client: i32, valor: i64, descricao: &'static str| {
        let target = target.clone();
        tokio::spawn(async move {
            target
                .post(
                    &format!("/clientes/{client}/transacoes"),
                    &body(valor, "c", descricao),
                )
                .await
        })
    };
    let first = post(3, 100, "first");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = post(3, 5, "second");
    tokio::time::sleep(Duration::from_millis(100)).await;
    for client in [1, 2] {
        let reply = tokio::time::timeout(Duration::from_secs(2), post(client, 7, "other"))
            .await
            .unwrap_or_else(|_| panic!("client {client} waited behind client 3's row"))
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "client {client}");
    }
    drop(lock);
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(
        (first.status, first.json()["saldo"].clone()),
        (StatusCode::OK, 100.into())
    );
    assert_eq!(
        (second.status, second.json()["saldo"].clone()),
        (StatusCode::OK, 105.into())
    );
    assert_eq!(api.db.balance_and_count(3).await, (105, 2));
    let TestApi { process, .. } = api;
    let report = batches_of(process);
    assert_eq!(
        (report.transactions, report.held),
        (4, 1),
        "only client 3's second transaction waited: {report:?}"
    );
}

/// The per-stage timings an instance prints when it stops (api/src/metrics.rs): each stage
/// counted once per request that went through it, 4xx included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_timed_in_each_stage_it_went_through() {
    let api = TestApi::start(&[]).await;
    let target = api.target.clone();
    for valor in 1..=6 {
        let reply = target
            .post("/clientes/2/transacoes", &body(valor, "c", "timed"))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let refused = target
        .post("/clientes/2/transacoes", &body(1_000_000, "d", "too much"))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let invalid = target
        .post("/clientes/2/transacoes", &body(0, "c", "zero"))
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    for _ in 0..3 {
        assert_eq!(
            target.get("/clientes/2/extrato").await.status,
            StatusCode::OK
        );
    }
    let TestApi { process, .. } = api;
    process.signal("TERM");
    let (status, stderr) = process.wait(Duration::from_secs(15));
    assert!(status.success(), "{stderr}");
    let count = |stage: &str| -> u64 {
        let line = stderr
            .lines()
            .find_map(|l| {
                l.split_once(&format!(" timings: {stage} n="))
                    .map(|(_, rest)| rest)
            })
            .unwrap_or_else(|| panic!("no timings for {stage}: {stderr}"));
        line.split(' ').next().unwrap().parse().unwrap()
    };
    // Eight POSTs reached the handler; the invalid one never reached the database.
    assert_eq!(count("write"), 8);
    assert_eq!(count("write_queue"), 7);
    assert_eq!(count("write_call"), 7, "one at a time: a batch each");
    assert_eq!(count("statement"), 3);
    assert_eq!(count("statement_call"), 3);
}
