//! What an operator sees: every answer counted by route and status on `/metrics`, the
//! counters of what happened on the way (handed-over connections, malformed requests,
//! Idempotency-Key replays, resumed commits, database errors), and `/readyz` following the
//! database. Real API processes on real PostgreSQL; the admin listener on a Unix socket.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use sqlx::Executor;
use testkit::{handoff_socket, Balancer, Scrape, Target, TempDir, TestApi};

use crate::resilience::OwnDatabase;

const CREDIT: &str = r#"{"valor": 10, "tipo": "c", "descricao": "x"}"#;

/// A request to send (method, path, headers, body) and the status it must get.
type Exchange<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a [u8])],
    &'a str,
    StatusCode,
);

/// `http_requests_total` for one route and status.
fn requests(scrape: &Scrape, route: &str, status: &str) -> f64 {
    scrape.value(
        "rinha_http_requests_total",
        &[("route", route), ("status", status)],
    )
}

/// An API on a fresh database with `env`, its admin listener on a Unix socket (`API_ADMIN`),
/// and that listener. The directory holding the socket comes first, so that bound in this
/// order it outlives the API.
async fn api_with_admin(env: &[(&str, &str)]) -> (TempDir, TestApi, Target) {
    let dir = TempDir::new("admin");
    let admin = dir.join("admin.sock");
    let mut env = env.to_vec();
    env.push(("API_ADMIN", admin.to_str().unwrap()));
    let api = TestApi::start(&env).await;
    (dir, api, Target::Unix(admin))
}

#[tokio::test]
async fn every_answer_is_counted_by_route_and_status() {
    let (_dir, api, admin) = api_with_admin(&[]).await;
    let target = &api.target;
    let before = Scrape::of(&admin).await;
    assert_eq!(
        before.sum("rinha_http_requests_total", &[]),
        0.0,
        "nothing yet"
    );

    let too_large = format!(
        r#"{{"valor": 1, "tipo": "c", "descricao": "{}"}}"#,
        "x".repeat(2000)
    );
    let sent: [Exchange; 11] = [
        (
            "POST",
            "/clientes/1/transacoes",
            &[],
            CREDIT,
            StatusCode::OK,
        ),
        (
            "POST",
            "/clientes/2/transacoes",
            &[],
            CREDIT,
            StatusCode::OK,
        ),
        (
            "POST",
            "/clientes/1/transacoes",
            &[],
            r#"{"valor": 1.5, "tipo": "c", "descricao": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/clientes/1/transacoes",
            &[],
            r#"{"valor": 99999999, "tipo": "d", "descricao": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/clientes/1/transacoes",
            &[],
            &too_large,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "POST",
            "/clientes/1/transacoes",
            &[("idempotency-key", b"")],
            CREDIT,
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/clientes/1/transacoes",
            &[("idempotency-key", b"k1")],
            CREDIT,
            StatusCode::OK,
        ),
        (
            "POST",
            "/clientes/1/transacoes",
            &[("idempotency-key", b"k1")],
            CREDIT,
            StatusCode::OK,
        ),
        (
            "POST",
            "/clientes/1/transacoes",
            &[("idempotency-key", b"k1")],
            r#"{"valor": 11, "tipo": "c", "descricao": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("GET", "/clientes/1/extrato", &[], "", StatusCode::OK),
        (
            "DELETE",
            "/clientes/1/extrato",
            &[],
            "",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, path, headers, body, status) in sent {
        let method = method.parse().unwrap();
        let reply = target
            .try_request_with(method, path, headers, body.as_bytes())
            .await
            .expect("an answer");
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.text());
    }
    assert_eq!(
        target.get("/clientes/6/extrato").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(target.get("/elsewhere").await.status, StatusCode::NOT_FOUND);

    let after = Scrape::of(&admin).await;
    let expected = [
        ("transacoes", "200", 4.0),
        ("transacoes", "400", 1.0),
        ("transacoes", "413", 1.0),
        ("transacoes", "422", 3.0),
        ("extrato", "200", 1.0),
        ("extrato", "404", 1.0),
        ("extrato", "405", 1.0),
        ("none", "404", 1.0),
    ];
    for (route, status, n) in expected {
        assert_eq!(requests(&after, route, status), n, "{route} {status}");
    }
    let total: f64 = expected.iter().map(|(_, _, n)| n).sum();
    assert_eq!(
        after.sum("rinha_http_requests_total", &[]),
        total,
        "nothing else"
    );
    for (route, n) in [("transacoes", 9.0), ("extrato", 3.0), ("none", 1.0)] {
        let count = after.value(
            "rinha_http_request_duration_seconds_count",
            &[("route", route)],
        );
        assert_eq!(count, n, "one latency per {route} answer");
        let within = after.value(
            "rinha_http_request_duration_seconds_bucket",
            &[("route", route), ("le", "+Inf")],
        );
        assert_eq!(within, n);
    }
    let keys = |outcome| {
        after.value(
            "rinha_idempotency_keys_seen_before_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        (keys("replayed"), keys("conflict")),
        (2.0, 1.0),
        "the replay and the conflict"
    );
    // Four credits and debits reached the database on their own, two with a key (the
    // first k1 and its replay) and the conflict: every one in a batch.
    assert_eq!(after.value("rinha_db_batch_size_count", &[]), 6.0);
    assert_eq!(after.value("rinha_db_batch_size_sum", &[]), 6.0);
    assert!(
        after.value(
            "rinha_db_call_duration_seconds_count",
            &[("call", "statement")]
        ) >= 1.0
    );

    // A request hyper cannot parse never reaches a handler: counted on its own.
    let reply = target.raw(b"NOT HTTP\r\n\r\n").await;
    assert!(
        reply.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let malformed = Scrape::of(&admin)
        .await
        .value("rinha_http_malformed_requests_total", &[]);
    assert_eq!(
        malformed,
        before.value("rinha_http_malformed_requests_total", &[]) + 1.0
    );

    // Connections handed over by the balancer are counted as such, and so are their answers.
    let balancer = Balancer::start(&[&handoff_socket(&api.dir.join("api.sock"))], &[]);
    let handed = Scrape::of(&admin).await;
    assert_eq!(
        balancer.target.get("/clientes/3/extrato").await.status,
        StatusCode::OK
    );
    let later = Scrape::of(&admin).await;
    let received = |s: &Scrape| s.value("rinha_connections_received_total", &[("how", "handoff")]);
    assert_eq!(received(&later), received(&handed) + 1.0);
    assert_eq!(
        requests(&later, "extrato", "200"),
        requests(&handed, "extrato", "200") + 1.0
    );
}

/// How long until `/readyz` answers `status`, polled every 50 ms, at most `within`.
async fn readyz_turns(admin: &Target, status: StatusCode, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let reply = admin.get("/readyz").await;
        if reply.status == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "/readyz still {} ({}) after {within:?}",
            reply.status,
            reply.text().trim()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_follows_the_database_within_two_seconds() {
    let own = OwnDatabase::start("readyz", &[("DB_TIMEOUT_MS", "1000")]).await;
    let (admin, cluster) = (&own.admin, &own.cluster);
    assert_eq!(admin.get("/readyz").await.status, StatusCode::OK);
    for kill in [false, true] {
        cluster.stop(kill);
        let down = readyz_turns(
            admin,
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(
            admin.get("/healthz").await.status,
            StatusCode::OK,
            "the process still serves"
        );
        // A write meanwhile is a quick 503, counted, and so is the database error behind it.
        assert_eq!(
            own.target
                .post("/clientes/1/transacoes", CREDIT)
                .await
                .status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        cluster.restart();
        let up = readyz_turns(admin, StatusCode::OK, Duration::from_secs(2)).await;
        println!("kill={kill}: not ready after {down:?}, ready again {up:?} after the restart");
    }
    let scrape = Scrape::of(admin).await;
    assert_eq!(requests(&scrape, "transacoes", "503"), 2.0);
    assert_eq!(requests(&scrape, "transacoes", "200"), 1.0);
    assert!(
        scrape.sum("rinha_db_errors_total", &[]) >= 2.0,
        "{scrape:?}"
    );
}

#[tokio::test]
async fn a_commit_cut_off_and_resumed_is_counted() {
    let (_dir, api, admin) = api_with_admin(&[]).await;

    // The credit waits on the row lock inside its database call; its backend is then
    // terminated, as when PostgreSQL goes away mid-commit.
    let lock = api.db.lock_client(1).await;
    let target = api.target.clone();
    let credit = tokio::spawn(async move { target.post("/clientes/1/transacoes", CREDIT).await });
    let mut conn = api.db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        if terminated == [true] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the credit never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock.release().await;
    let reply = credit.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "resumed, not a 503: {}",
        reply.text()
    );

    let scrape = Scrape::of(&admin).await;
    assert_eq!(scrape.value("rinha_db_resumed_batches_total", &[]), 1.0);
    let resumed =
        |outcome| scrape.value("rinha_db_resumed_operations_total", &[("outcome", outcome)]);
    assert_eq!((resumed("found"), resumed("applied")), (0.0, 1.0));
    assert!(
        scrape.sum("rinha_db_errors_total", &[]) >= 1.0,
        "the lost connection: {scrape:?}"
    );
    assert_eq!(requests(&scrape, "transacoes", "200"), 1.0);
    conn.execute("SELECT 1").await.unwrap();
}

/// With LOG_FORMAT=json every line the process writes is one JSON object with a level and a
/// message, from start to shutdown; an error carries its facts as fields.
#[tokio::test]
async fn logs_are_json_lines_with_log_format_json() {
    let api = TestApi::start(&[("LOG_FORMAT", "json"), ("DB_TIMEOUT_MS", "300")]).await;
    // A 503: the client's row held past the deadline, logged with its route and client.
    let lock = api.db.lock_client(2).await;
    let reply = api.target.post("/clientes/2/transacoes", CREDIT).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    lock.release().await;
    let TestApi { process, .. } = api;
    process.signal("TERM");
    let (status, stderr) = process.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["message"].is_string()));
    let said = |text: &str| {
        lines
            .iter()
            .find(|l| l["message"].as_str().unwrap().contains(text))
    };
    assert!(said("listening on").is_some(), "{stderr}");
    assert!(
        said("timings: write n=").is_some(),
        "the shutdown report: {stderr}"
    );
    let unavailable = said("503").unwrap_or_else(|| panic!("no 503 logged: {stderr}"));
    assert_eq!(unavailable["route"], "transacoes", "{unavailable}");
    assert_eq!(unavailable["client"], 2, "{unavailable}");
}

/// A client too slow with its request's head is answered 408 by the deadline, not by a
/// handler: counted as cut in the head phase, not as a request.
#[tokio::test]
async fn a_client_cut_off_by_its_deadline_is_counted() {
    let (_dir, api, admin) = api_with_admin(&[("API_HEADER_TIMEOUT_MS", "200")]).await;
    let reply = api
        .target
        .raw(b"GET /clientes/1/extrato HTTP/1.1\r\n")
        .await;
    assert!(
        reply.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let scrape = Scrape::of(&admin).await;
    assert_eq!(
        scrape.value("rinha_connections_cut_total", &[("phase", "head")]),
        1.0
    );
    assert_eq!(scrape.sum("rinha_http_requests_total", &[]), 0.0);
}
