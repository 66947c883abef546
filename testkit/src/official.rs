//! The validation phases of the official Gatling simulation (docs/challenge.md, "The official test", phases A–F), request for
//! request, with its checks as assertions. Requests rotate over `targets`, so with two API
//! instances (or through the balancer) every read-your-writes check crosses instances.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::join_all;
use hyper::StatusCode;
use serde_json::Value;

use loadtest::official::{invalid_bodies, payload, LIMITS};

use crate::Target;

struct RoundRobin<'a> {
    targets: &'a [Target],
    next: AtomicUsize,
}

impl RoundRobin<'_> {
    fn pick(&self) -> &Target {
        &self.targets[self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len()]
    }
}

/// Runs phases A–F; panics at the first failed check, naming it.
pub async fn run_validations(targets: &[Target]) {
    let rr = RoundRobin {
        targets,
        next: AtomicUsize::new(0),
    };
    let rr = &rr;

    // A: 25 concurrent debits of 1 on client 1, all 200; B: the balance is exactly -25.
    concurrent_unit_transactions(rr, "d").await;
    assert_eq!(
        saldo_total(rr, 1).await,
        -25,
        "B: saldo after 25 concurrent debits"
    );
    // C, D: 25 concurrent credits bring it back to exactly 0.
    concurrent_unit_transactions(rr, "c").await;
    assert_eq!(
        saldo_total(rr, 1).await,
        0,
        "D: saldo after 25 concurrent credits"
    );

    // E for the five clients in parallel, alongside F.
    let clients = join_all((1..=5).map(|id| client_validations(rr, id, LIMITS[id as usize - 1])));
    let not_found = async {
        assert_eq!(
            rr.pick().get("/clientes/6/extrato").await.status,
            StatusCode::NOT_FOUND,
            "F: client 6"
        );
    };
    tokio::join!(clients, not_found);
}

async fn concurrent_unit_transactions(rr: &RoundRobin<'_>, kind: &str) {
    let body = format!(r#"{{"valor": 1, "tipo": "{kind}", "descricao": "validacao"}}"#);
    let replies = join_all((0..25).map(|_| rr.pick().post("/clientes/1/transacoes", &body))).await;
    for reply in replies {
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "concurrent {kind}: {}",
            reply.text()
        );
    }
}

async fn saldo_total(rr: &RoundRobin<'_>, client: i64) -> i64 {
    let reply = rr.pick().get(&format!("/clientes/{client}/extrato")).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.json()["saldo"]["total"]
        .as_i64()
        .expect("saldo.total is an integer")
}

fn assert_entry(entry: &Value, descricao: &str, tipo: &str, context: &str) {
    assert_eq!(entry["descricao"], descricao, "{context}: {entry}");
    assert_eq!(entry["tipo"], tipo, "{context}: {entry}");
    assert_eq!(entry["valor"], 1, "{context}: {entry}");
}

/// A POST that must succeed with a consistent balance; returns (saldo, limite).
async fn transact_ok(rr: &RoundRobin<'_>, client: i64, body: &str) -> (i64, i64) {
    let reply = rr
        .pick()
        .post(&format!("/clientes/{client}/transacoes"), body)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "client {client} {body}: {}",
        reply.text()
    );
    let json = reply.json();
    let saldo = json["saldo"].as_i64().expect("saldo is an integer");
    let limite = json["limite"].as_i64().expect("limite is an integer");
    assert!(
        saldo >= -limite,
        "client {client}: saldo {saldo} below -{limite}"
    );
    (saldo, limite)
}

async fn client_validations(rr: &RoundRobin<'_>, client: i64, limit: i64) {
    let statement_path = format!("/clientes/{client}/extrato");
    let reply = rr.pick().get(&statement_path).await;
    assert_eq!(reply.status, StatusCode::OK);
    let json = reply.json();
    assert_eq!(json["saldo"]["limite"], limit, "E1 client {client}");
    assert_eq!(json["saldo"]["total"], 0, "E1 client {client}");

    transact_ok(rr, client, &payload(1, "c", "toma")).await;
    transact_ok(rr, client, &payload(1, "d", "devolve")).await;

    let json = rr.pick().get(&statement_path).await.json();
    assert_entry(&json["ultimas_transacoes"][0], "devolve", "d", "E4 newest");
    assert_entry(&json["ultimas_transacoes"][1], "toma", "c", "E4 second");

    let (saldo, limite) = transact_ok(rr, client, &payload(1, "c", "danada")).await;
    assert_eq!(saldo, 1, "E5 client {client}");
    // Four concurrent reads, spread over the instances, must all see that write.
    for reply in join_all((0..4).map(|_| rr.pick().get(&statement_path))).await {
        assert_eq!(reply.status, StatusCode::OK);
        let json = reply.json();
        assert_entry(
            &json["ultimas_transacoes"][0],
            "danada",
            "c",
            "E5 read-your-writes",
        );
        assert_eq!(json["saldo"]["limite"], limite, "E5 limite");
        assert_eq!(json["saldo"]["total"], saldo, "E5 saldo.total");
    }

    for body in invalid_bodies() {
        let status = rr
            .pick()
            .post(&format!("/clientes/{client}/transacoes"), &body)
            .await
            .status;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "E6-10 client {client} {body}: {status}"
        );
    }
}
