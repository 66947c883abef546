//! The balance rules under concurrency, across two API instances on one database, for both
//! transaction shapes (`DB_TX_SHAPE`).

use futures_util::future::join_all;
use hyper::StatusCode;
use testkit::{run_validations, TestApi};

const SHAPES: [&str; 2] = ["statement", "client"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_validations_pass_across_two_instances() {
    for shape in SHAPES {
        let api = TestApi::start(&[("DB_TX_SHAPE", shape)]).await;
        let (_second, other) = api.start_sibling("api2.sock", &[("DB_TX_SHAPE", shape)]);
        run_validations(&[api.target.clone(), other]).await;
    }
}

/// Many concurrent debits against a small limit: the balance never passes -limite, and it
/// equals exactly what the 200 answers acknowledged, one stored row per acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_debits_never_pass_the_limit_and_nothing_is_lost() {
    for shape in SHAPES {
        let api = TestApi::start(&[("DB_TX_SHAPE", shape), ("DB_POOL_SIZE", "8")]).await;
        let (_second, other) = api.start_sibling(
            "api2.sock",
            &[("DB_TX_SHAPE", shape), ("DB_POOL_SIZE", "8")],
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
                    assert!(saldo >= -80000, "{shape}: saldo {saldo}");
                    acknowledged += *valor as i64;
                    count += 1;
                }
                StatusCode::UNPROCESSABLE_ENTITY => {}
                other => panic!("{shape}: unexpected {other}: {}", reply.text()),
            }
        }
        assert!(
            count > 100 && count < 300,
            "{shape}: both outcomes happen ({count} applied)"
        );
        let (saldo, rows) = api.db.balance_and_count(2).await;
        assert_eq!(
            i64::from(saldo),
            -acknowledged,
            "{shape}: balance equals the acknowledged debits"
        );
        assert_eq!(rows, count, "{shape}: one row per acknowledged debit");
        assert!(
            (-80000..-80000 + 697).contains(&saldo),
            "{shape}: the limit was used up, saldo {saldo}"
        );
    }
}
