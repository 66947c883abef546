//! Both endpoints through the real server on a Unix socket, against a real database:
//! every answer the rules define, and that refused requests change nothing.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{Target, TestApi};

const TRANSACT: &str = "/clientes/1/transacoes";
const STATEMENT: &str = "/clientes/1/extrato";

async fn statement(target: &Target, client: i32) -> Value {
    let reply = target.get(&format!("/clientes/{client}/extrato")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

fn is_rfc3339_micros_utc(text: &str) -> bool {
    // 2024-01-17T02:34:41.217753Z
    let b = text.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn invalid_bodies_get_422_and_change_nothing() {
    let api = TestApi::start(&[]).await;
    // Some history first, so "unchanged" covers the statement too.
    let reply = api
        .target
        .post(
            TRANSACT,
            r#"{"valor": 500, "tipo": "d", "descricao": "antes"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let before = statement(&api.target, 1).await;
    let db_before = api.db.balance_and_count(1).await;

    let bodies: &[&[u8]] = &[
        br#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#,
        br#"{"valor": 1.0, "tipo": "c", "descricao": "devolve"}"#,
        br#"{"valor": "1", "tipo": "c", "descricao": "devolve"}"#,
        br#"{"valor": true, "tipo": "c", "descricao": "devolve"}"#,
        br#"{"valor": null, "tipo": "c", "descricao": "devolve"}"#,
        br#"{"tipo": "c", "descricao": "devolve"}"#,
        br#"{"valor": 0, "tipo": "c", "descricao": "zero"}"#,
        br#"{"valor": -1, "tipo": "c", "descricao": "negativo"}"#,
        br#"{"valor": 2147483648, "tipo": "c", "descricao": "grande"}"#,
        br#"{"valor": 1, "tipo": "x", "descricao": "devolve"}"#,
        br#"{"valor": 1, "tipo": "D", "descricao": "devolve"}"#,
        br#"{"valor": 1, "tipo": null, "descricao": "devolve"}"#,
        br#"{"valor": 1, "descricao": "devolve"}"#,
        br#"{"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}"#,
        "{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"ççççççççççç\"}".as_bytes(),
        br#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
        br#"{"valor": 1, "tipo": "c", "descricao": null}"#,
        br#"{"valor": 1, "tipo": "c", "descricao": 5}"#,
        br#"{"valor": 1, "tipo": "c"}"#,
        br#"[1, "c", "lista"]"#,
        br#""texto""#,
        b"",
        b"{\"valor\": 1, \"tipo\": \"c\"",
        b"not json at all",
        b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"\xc3\x28\"}",
    ];
    for body in bodies {
        let reply = api.target.request(Method::POST, TRANSACT, body).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{shown} -> {}",
            reply.text()
        );
        assert_eq!(reply.headers["content-type"], "application/json");
        assert!(
            reply.json()["erro"].is_string(),
            "{shown}: a reason is given"
        );
    }

    assert_eq!(api.db.balance_and_count(1).await, db_before);
    let after = statement(&api.target, 1).await;
    assert_eq!(after["saldo"]["total"], before["saldo"]["total"]);
    assert_eq!(after["ultimas_transacoes"], before["ultimas_transacoes"]);
}

#[tokio::test]
async fn valid_edge_cases_are_applied() {
    let api = TestApi::start(&[]).await;
    let t = &api.target;

    // Ten multibyte characters: the limit counts characters, not bytes. Extra fields are ignored.
    let reply = t
        .post(
            TRANSACT,
            r#"{"valor": 1, "tipo": "c", "descricao": "ãéîõüçàèìò", "extra": {"x": [1]}}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), json!({"limite": 100000, "saldo": 1}));
    assert_eq!(reply.headers["content-type"], "application/json");

    // A debit landing exactly on -limite is allowed; one cent more is not.
    let reply = t
        .post(
            TRANSACT,
            r#"{"valor": 100001, "tipo": "d", "descricao": "tudo"}"#,
        )
        .await;
    assert_eq!(reply.json(), json!({"limite": 100000, "saldo": -100000}));
    let reply = t
        .post(
            TRANSACT,
            r#"{"valor": 1, "tipo": "d", "descricao": "demais"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.db.balance_and_count(1).await, (-100000, 2));

    // Credits still work at the limit; a credit that would leave the 32-bit range is refused.
    let reply = t
        .post(
            "/clientes/4/transacoes",
            r#"{"valor": 2147483647, "tipo": "c", "descricao": "max"}"#,
        )
        .await;
    assert_eq!(
        reply.json(),
        json!({"limite": 10000000, "saldo": 2147483647})
    );
    let reply = t
        .post(
            "/clientes/4/transacoes",
            r#"{"valor": 1, "tipo": "c", "descricao": "overflow"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.db.balance_and_count(4).await, (i32::MAX, 1));

    let body = statement(t, 1).await;
    assert_eq!(body["ultimas_transacoes"][1]["descricao"], "ãéîõüçàèìò");
    assert_eq!(body["ultimas_transacoes"][0]["valor"], 100001);
}

#[tokio::test]
async fn statement_shape_and_order() {
    let api = TestApi::start(&[]).await;
    let t = &api.target;
    let body = statement(t, 2).await;
    assert_eq!(body["saldo"]["total"], 0);
    assert_eq!(body["saldo"]["limite"], 80000);
    assert!(
        is_rfc3339_micros_utc(body["saldo"]["data_extrato"].as_str().unwrap()),
        "{body}"
    );
    assert_eq!(body["ultimas_transacoes"], json!([]));

    for i in 1..=12 {
        let kind = if i % 3 == 0 { "d" } else { "c" };
        let reply = t
            .post(
                "/clientes/2/transacoes",
                &format!(r#"{{"valor": {i}, "tipo": "{kind}", "descricao": "n{i}"}}"#),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let body = statement(t, 2).await;
    // 1..=12 credited except multiples of 3 debited: 78 - 2 * (3 + 6 + 9 + 12) = 18.
    assert_eq!(
        body["saldo"]["total"], 18,
        "the whole balance, not just the listed part"
    );
    let entries = body["ultimas_transacoes"].as_array().unwrap();
    assert_eq!(entries.len(), 10);
    for (entry, n) in entries.iter().zip((3..=12).rev()) {
        assert_eq!(entry["valor"], n);
        assert_eq!(entry["descricao"], format!("n{n}"));
        assert_eq!(entry["tipo"], if n % 3 == 0 { "d" } else { "c" });
        assert!(
            is_rfc3339_micros_utc(entry["realizada_em"].as_str().unwrap()),
            "{entry}"
        );
        assert_eq!(entry.as_object().unwrap().len(), 4);
    }
}

#[tokio::test]
async fn equal_timestamps_keep_insertion_order() {
    let api = TestApi::start(&[]).await;
    let mut conn = api.db.connect().await;
    // One transaction: now() is the same instant for all three rows.
    sqlx::raw_sql(
        "BEGIN;
         INSERT INTO transacoes (cliente_id, valor, tipo, descricao, operacao, saldo_apos) VALUES (3, 1, 'c', 'primeiro', -1, 1);
         INSERT INTO transacoes (cliente_id, valor, tipo, descricao, operacao, saldo_apos) VALUES (3, 2, 'c', 'segundo', -2, 3);
         INSERT INTO transacoes (cliente_id, valor, tipo, descricao, operacao, saldo_apos) VALUES (3, 3, 'd', 'terceiro', -3, 0);
         COMMIT;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let body = statement(&api.target, 3).await;
    let entries = body["ultimas_transacoes"].as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["descricao"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["terceiro", "segundo", "primeiro"]);
    assert_eq!(
        entries[0]["realizada_em"], entries[2]["realizada_em"],
        "the timestamps do tie"
    );
}

#[tokio::test]
async fn unknown_clients_and_paths_get_404() {
    let api = TestApi::start(&[]).await;
    let t = &api.target;
    let valid = r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#;
    for id in [
        "6",
        "0",
        "-1",
        "abc",
        "1.5",
        "99999999999",
        "2147483647",
        "%31",
    ] {
        let reply = t.get(&format!("/clientes/{id}/extrato")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "extrato of {id}");
        let reply = t.post(&format!("/clientes/{id}/transacoes"), valid).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "transacoes of {id}");
        assert_eq!(reply.headers["content-type"], "application/json");
    }
    for path in [
        "/",
        "/clientes",
        "/clientes/1",
        "/clientes/1/extrato/",
        "/clientes/1/saldo",
        "/x/1/extrato",
    ] {
        assert_eq!(t.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let mut conn = api.db.connect().await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM transacoes")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow() {
    let api = TestApi::start(&[]).await;
    let t = &api.target;
    for (method, path, allow) in [
        (Method::GET, TRANSACT, "POST"),
        (Method::PUT, TRANSACT, "POST"),
        (Method::DELETE, TRANSACT, "POST"),
        (Method::POST, STATEMENT, "GET, HEAD"),
        (Method::PATCH, STATEMENT, "GET, HEAD"),
    ] {
        let reply = t.request(method.clone(), path, b"").await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.headers["allow"], allow);
    }
    let reply = t.request(Method::HEAD, STATEMENT, b"").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn oversized_bodies_get_413_and_change_nothing() {
    let api = TestApi::start(&[]).await;
    let padding = "x".repeat(4000);
    let big = format!(r#"{{"valor": 1, "tipo": "c", "descricao": "x", "pad": "{padding}"}}"#);
    let reply = api.target.post(TRANSACT, &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked, so no Content-Length warns the server: it must stop reading at the cap.
    let mut raw = b"POST /clientes/1/transacoes HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for _ in 0..8 {
        raw.extend_from_slice(format!("{:x}\r\n{}\r\n", 500, "y".repeat(500)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let reply = String::from_utf8_lossy(&api.target.raw(&raw).await).into_owned();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert_eq!(api.db.balance_and_count(1).await, (0, 0));
}

#[tokio::test]
async fn malformed_http_gets_400() {
    let api = TestApi::start(&[]).await;
    let reply = api.target.raw(b"GARBAGE\r\n\r\n").await;
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}
