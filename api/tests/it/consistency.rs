//! The balance rules under concurrency, across two API instances on one database, with group
//! commit's batches (the default) and with every transaction alone (`DB_BATCH_MAX=1`).

use futures_util::future::join_all;
use hyper::StatusCode;
use testkit::{run_validations, TestApi};

/// DB_BATCH_MAX: batches of up to 16 (the default), and each transaction alone.
const BATCH_MAX: [&str; 2] = ["16", "1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_validations_pass_across_two_instances() {
    for batch_max in BATCH_MAX {
        let api = TestApi::start(&[("DB_BATCH_MAX", batch_max)]).await;
        let (_second, other) = api.start_sibling("api2.sock", &[("DB_BATCH_MAX", batch_max)]);
        run_validations(&[api.target.clone(), other]).await;
    }
}

/// Many concurrent debits against a small limit: the balance never passes -limite, and it
/// equals exactly what the 200 answers acknowledged, one stored row per acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_debits_never_pass_the_limit_and_nothing_is_lost() {
    for batch_max in BATCH_MAX {
        let api = TestApi::start(&[("DB_BATCH_MAX", batch_max), ("DB_POOL_SIZE", "8")]).await;
        let (_second, other) = api.start_sibling(
            "api2.sock",
            &[("DB_BATCH_MAX", batch_max), ("DB_POOL_SIZE", "8")],
        );
        let targets = [api.target.clone(), other];
        // Client 2 has limit 80000; 300 debits of 397..=696 total far more than that.
        let replies = join_all((0..300).map(|i| {
            let valor = 397 + i;
            let target = targets[i as usize % 2].clone();
            async move {
                let body = format!(r#"{{"valor": {valor}, "tipo": "d", "descricao": "d{i}"}}"#);
                (valor, target.post("/clientes/2/transacoes", &body).await)
            }
        }))
        .await;

        let mut acknowledged = 0i64;
        let mut count = 0i64;
        for (valor, reply) in &replies {
            match reply.status {
                StatusCode::OK => {
                    let saldo = reply.json()["saldo"].as_i64().unwrap();
                    assert!(saldo >= -80000, "DB_BATCH_MAX={batch_max}: saldo {saldo}");
                    acknowledged += *valor as i64;
                    count += 1;
                }
                StatusCode::UNPROCESSABLE_ENTITY => {}
                other => panic!(
                    "DB_BATCH_MAX={batch_max}: unexpected {other}: {}",
                    reply.text()
                ),
            }
        }
        assert!(
            count > 100 && count < 300,
            "DB_BATCH_MAX={batch_max}: both outcomes happen ({count} applied)"
        );
        let (saldo, rows) = api.db.balance_and_count(2).await;
        assert_eq!(
            i64::from(saldo),
            -acknowledged,
            "DB_BATCH_MAX={batch_max}: balance equals the acknowledged debits"
        );
        assert_eq!(
            rows, count,
            "DB_BATCH_MAX={batch_max}: one row per acknowledged debit"
        );
        assert!(
            (-80000..-80000 + 697).contains(&saldo),
            "DB_BATCH_MAX={batch_max}: the limit was used up, saldo {saldo}"
        );
    }
}

/// The database's own guard, whatever the API lets through: each field rule (domains since
/// c4a56d0) and the limit rule refuse a bad row written directly, with check_violation, and
/// nothing is stored.
#[tokio::test]
async fn the_database_refuses_bad_rows_written_directly() {
    let db = testkit::TestDb::create().await;
    let mut conn = db.connect().await;
    let insert =
        "INSERT INTO transacoes (cliente_id, valor, tipo, descricao, operacao, saldo_apos) \
                  VALUES (1, $1, $2, $3, $4, 0)";
    for (operation, (valor, tipo, descricao)) in [
        (0, "c", "zero"),
        (-5, "d", "negativo"),
        (5, "x", "tipo"),
        (5, "c", ""),
    ]
    .into_iter()
    .enumerate()
    {
        let refused = sqlx::query(insert)
            .bind(valor)
            .bind(tipo)
            .bind(descricao)
            .bind(operation as i64 + 1)
            .execute(&mut conn)
            .await
            .expect_err("a bad row must be refused");
        let code = refused.as_database_error().and_then(|e| e.code());
        assert_eq!(
            code.as_deref(),
            Some("23514"),
            "{valor} {tipo:?} {descricao:?}: {refused}"
        );
    }
    for update in [
        "UPDATE clientes SET saldo = -limite - 1 WHERE id = 1",
        "UPDATE clientes SET limite = -1 WHERE id = 1",
    ] {
        let refused = sqlx::query(update)
            .execute(&mut conn)
            .await
            .expect_err(update);
        let code = refused.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("23514"), "{update}: {refused}");
    }
    assert_eq!(db.balance_and_count(1).await, (0, 0), "nothing stored");
}
