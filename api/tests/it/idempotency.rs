//! `Idempotency-Key` on POST /clientes/{id}/transacoes: a retry gets the first answer and
//! changes nothing; the same key with another body is refused; keys are per client, kept
//! 24 hours, and must be 1 to 255 visible ASCII characters. Real API, real PostgreSQL.

use hyper::StatusCode;
use sqlx::Row;
use testkit::{spawn_api, Target, TempDir, TestApi, TestDb};

const CREDIT: &str = r#"{"valor": 100, "tipo": "c", "descricao": "chave"}"#;

async fn post(target: &Target, client: i32, key: &[u8], body: &str) -> (StatusCode, String) {
    let reply = target
        .post_with(
            &format!("/clientes/{client}/transacoes"),
            &[("idempotency-key", key)],
            body,
        )
        .await;
    (reply.status, reply.text())
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_and_changes_nothing() {
    let api = TestApi::start(&[]).await;
    let t = &api.target;
    let first = post(t, 1, b"k-1", CREDIT).await;
    assert_eq!(
        first,
        (StatusCode::OK, r#"{"limite":100000,"saldo":100}"#.into())
    );
    // Another credit in between: the retry still gets the first answer, not today's balance.
    post(t, 1, b"k-2", CREDIT).await;
    assert_eq!(post(t, 1, b"k-1", CREDIT).await, first);
    // Spacing and field order do not make another request; the values do.
    let same = r#"{"descricao":"chave","tipo":"c","valor":100}"#;
    assert_eq!(post(t, 1, b"k-1", same).await, first);
    assert_eq!(api.db.balance_and_count(1).await, (200, 2));

    // A refused debit is answered 422 again, even once the balance would allow it.
    let debit = r#"{"valor": 500000, "tipo": "d", "descricao": "demais"}"#;
    let refused = post(t, 1, b"k-3", debit).await;
    assert_eq!(refused.0, StatusCode::UNPROCESSABLE_ENTITY);
    post(
        t,
        1,
        b"k-4",
        r#"{"valor": 900000, "tipo": "c", "descricao": "muito"}"#,
    )
    .await;
    assert_eq!(post(t, 1, b"k-3", debit).await, refused);
    assert_eq!(api.db.balance_and_count(1).await, (900_200, 3));

    // The same key with another body: refused, nothing changed.
    let other = post(
        t,
        1,
        b"k-1",
        r#"{"valor": 101, "tipo": "c", "descricao": "chave"}"#,
    )
    .await;
    assert_eq!(other.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        other.1.contains("Idempotency-Key already used"),
        "{}",
        other.1
    );
    assert_eq!(api.db.balance_and_count(1).await, (900_200, 3));

    // Keys are per client; without a key every request is applied.
    assert_eq!(post(t, 2, b"k-1", CREDIT).await.0, StatusCode::OK);
    for _ in 0..2 {
        let reply = t.post("/clientes/3/transacoes", CREDIT).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(api.db.balance_and_count(2).await, (100, 1));
    assert_eq!(api.db.balance_and_count(3).await, (200, 2));
}

#[tokio::test]
async fn keys_at_the_limits_and_invalid_keys() {
    let api = TestApi::start(&[]).await;
    let t = &api.target;
    let longest = "K".repeat(255);
    for key in [
        "a",
        "!",
        "~",
        "550e8400-e29b-41d4-a716-446655440000",
        &longest,
    ] {
        assert_eq!(
            post(t, 4, key.as_bytes(), CREDIT).await.0,
            StatusCode::OK,
            "{key}"
        );
    }
    let too_long = "K".repeat(256);
    let invalid: [&[u8]; 4] = [
        too_long.as_bytes(),
        b"with space",
        b"tab\there",
        "não".as_bytes(),
    ];
    for key in invalid {
        let (status, body) = post(t, 4, key, CREDIT).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(key)
        );
        assert!(body.contains("Idempotency-Key"), "{body}");
    }
    // Sent twice in one request.
    let twice = t
        .post_with(
            "/clientes/4/transacoes",
            &[("idempotency-key", b"a1"), ("idempotency-key", b"a2")],
            CREDIT,
        )
        .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    // A key for a client that does not exist: 404, as without one (a batch of unknown
    // clients only once answered 503).
    assert_eq!(post(t, 6, b"k", CREDIT).await.0, StatusCode::NOT_FOUND);
    // A control character, which no HTTP client library lets through: sent raw.
    let raw = format!(
        "POST /clientes/4/transacoes HTTP/1.1\r\nhost: x\r\nidempotency-key: a\x7fb\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{CREDIT}",
        CREDIT.len()
    );
    let answer = t.raw(raw.as_bytes()).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(api.db.balance_and_count(4).await, (500, 5));
}

/// Concurrent requests with one key, half of them on another instance: one is applied, and
/// every one gets its answer (the later ones wait for the first to commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_are_applied_once_and_all_get_the_answer() {
    let api = TestApi::start(&[]).await;
    let (_sibling, other) = api.start_sibling("sibling", &[]);
    let requests: Vec<_> = (0..24)
        .map(|i| {
            let target = if i % 2 == 0 {
                api.target.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move { post(&target, 5, b"same-key", CREDIT).await })
        })
        .collect();
    for request in requests {
        assert_eq!(
            request.await.unwrap(),
            (StatusCode::OK, r#"{"limite":500000,"saldo":100}"#.into())
        );
    }
    assert_eq!(api.db.balance_and_count(5).await, (100, 1));
}

/// Keys are kept 24 hours: the API deletes older ones (at start, then hourly), after which
/// the key may be used again.
#[tokio::test]
async fn keys_older_than_24_hours_are_forgotten() {
    let db = TestDb::create().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO chaves_de_idempotencia (cliente_id, chave, pedido, saldo, limite, criada_em)
         VALUES (1, 'velha', '100 c chave', 100, 100000, now() - interval '25 hours'),
                (1, 'recente', '100 c chave', 100, 100000, now() - interval '23 hours')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let dir = TempDir::new("keys");
    let socket = dir.join("api.sock");
    let _api = spawn_api(db.url(), &socket, &[]);
    let target = Target::Unix(socket);
    let left = async |conn: &mut sqlx::PgConnection| -> Vec<String> {
        sqlx::query("SELECT chave FROM chaves_de_idempotencia ORDER BY chave")
            .fetch_all(conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    for _ in 0..50 {
        if left(&mut conn).await == ["recente"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left(&mut conn).await, ["recente"]);
    // The recent key answers as it did (the stored answer, no new row); the old one is new.
    assert_eq!(
        post(&target, 1, b"recente", CREDIT).await,
        (StatusCode::OK, r#"{"limite":100000,"saldo":100}"#.into())
    );
    assert_eq!(db.balance_and_count(1).await, (0, 0));
    assert_eq!(post(&target, 1, b"velha", CREDIT).await.0, StatusCode::OK);
    assert_eq!(db.balance_and_count(1).await, (100, 1));
}

/// http mode: the API serving a keyed POST is killed mid-request; the balancer sends the
/// POST to the other API (the key makes that safe), which applies it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_retries_a_keyed_post_on_the_other_api_and_it_is_applied_once() {
    let api = TestApi::start(&[]).await;
    let (_api2, _) = api.start_sibling("api2.sock", &[]);
    let sockets = [api.dir.join("api.sock"), api.dir.join("api2.sock")];
    let lb = testkit::Balancer::start(&[&sockets[0], &sockets[1]], &[("LB_MODE", "http")]);
    // The first request goes to the first API (round robin) and waits there on the row.
    let lock = api.db.lock_client(1).await;
    let target = lb.target.clone();
    let post = tokio::spawn(async move { post(&target, 1, b"lb-retry", CREDIT).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    testkit::send_signal(api.process.pid(), "KILL");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lock.release().await;
    assert_eq!(
        post.await.unwrap(),
        (StatusCode::OK, r#"{"limite":100000,"saldo":100}"#.into())
    );
    assert_eq!(api.db.balance_and_count(1).await, (100, 1));
}
