//! Exactly once: a credit or debit whose commit was cut off by a crash of PostgreSQL is
//! answered as if nothing had happened (200 or 422, never an unknown outcome), and applied
//! once. Two real API instances on one real cluster, killed (immediate stop) under load.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use sqlx::{Connection, Row};
use testkit::{spawn_api, Cluster, Target, TempDir};

/// What one load task sent and got back: (client, signed amount, status).
type Sent = Vec<(i32, i64, StatusCode)>;

/// Credits and debits to every client, one request at a time, until `stop`.
async fn load(target: Target, task: u64, stop: Arc<AtomicBool>) -> Sent {
    let mut sent = Vec::new();
    for i in 0u64.. {
        if stop.load(Relaxed) {
            break;
        }
        let client = ((task + i) % 5) as i32 + 1;
        let (tipo, valor) = if (task * 7 + i) % 3 == 0 {
            ("c", 700)
        } else {
            ("d", 300)
        };
        let body = format!(r#"{{"valor": {valor}, "tipo": "{tipo}", "descricao": "t{task}"}}"#);
        let reply = target
            .try_request(
                hyper::Method::POST,
                &format!("/clientes/{client}/transacoes"),
                body.as_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("task {task}, request {i}: {e}"));
        let signed = if tipo == "c" { valor } else { -valor };
        sent.push((client, signed, reply.status));
    }
    sent
}

/// Two instances under `tasks` concurrent requests; PostgreSQL killed and started again
/// twice in the middle. Every request must get 200 or 422, and the database must hold
/// exactly the acknowledged transactions: as many rows as 200s, and each client's balance
/// the sum of its acknowledged amounts.
async fn crash_under_load(env: &[(&str, &str)], tasks: u64) {
    let cluster = Cluster::start();
    let dir = TempDir::new("exactly-once");
    let apis: Vec<_> = ["api1", "api2"]
        .iter()
        .map(|name| {
            let socket = dir.join(&format!("{name}.sock"));
            (spawn_api(cluster.url(), &socket, env), Target::Unix(socket))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..tasks)
        .map(|task| {
            let target = apis[(task % 2) as usize].1.clone();
            tokio::spawn(load(target, task, stop.clone()))
        })
        .collect();
    let cluster = Arc::new(cluster);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            cluster.stop(true);
            std::thread::sleep(Duration::from_millis(200));
            cluster.restart();
        })
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Relaxed);
    let mut sent = Vec::new();
    for task in load {
        sent.extend(task.await.unwrap());
    }

    let refused_credits = sent
        .iter()
        .filter(|(_, amount, status)| *amount > 0 && *status != StatusCode::OK)
        .count();
    let other: Vec<_> = sent
        .iter()
        .filter(|(_, _, s)| *s != StatusCode::OK && *s != StatusCode::UNPROCESSABLE_ENTITY)
        .collect();
    assert!(
        other.is_empty() && refused_credits == 0,
        "{} of {} requests answered neither 200 nor 422 ({:?}…), {refused_credits} credits refused",
        other.len(),
        sent.len(),
        other.iter().take(5).collect::<Vec<_>>()
    );
    let acknowledged = sent.iter().filter(|(_, _, s)| *s == StatusCode::OK);
    let mut conn = sqlx::PgConnection::connect(cluster.url()).await.unwrap();
    let rows: i64 = sqlx::query("SELECT count(*) FROM transacoes")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows as usize,
        acknowledged.clone().count(),
        "rows against 200s"
    );
    for client in 1..=5 {
        let expected: i64 = acknowledged
            .clone()
            .filter(|(c, _, _)| *c == client)
            .map(|(_, amount, _)| amount)
            .sum();
        let row = sqlx::query(
            "SELECT c.saldo::int8, coalesce(sum(CASE t.tipo WHEN 'c' THEN t.valor ELSE -t.valor END), 0)::int8
               FROM clientes c LEFT JOIN transacoes t ON t.cliente_id = c.id
              WHERE c.id = $1 GROUP BY c.saldo",
        )
        .bind(client)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let (saldo, ledger): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!((saldo, ledger), (expected, expected), "client {client}");
    }
    drop(apis);
}

/// Group commit: batches form under 48 concurrent requests, and a batch cut off is resumed
/// as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_under_batched_load_loses_no_answer_and_applies_each_once() {
    crash_under_load(&[], 48).await;
}

/// Without group commit each transaction is resumed alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_under_unbatched_load_loses_no_answer_and_applies_each_once() {
    crash_under_load(&[("DB_BATCH_MAX", "1")], 16).await;
}
