//! The load tester against a small in-memory Rinha server with one deliberate fault at a
//! time: each fault must be caught, by the check the official simulation would fail.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use loadtest::model::{Options, Outcome};
use loadtest::report::Report;
use loadtest::schedule::Profile;
use loadtest::simulation::run;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    None,
    /// Read-modify-write without a lock: concurrent transactions overwrite each other.
    LostUpdate,
    /// Balances as JSON floats.
    FloatSaldo,
    /// Statements oldest first.
    OldestFirst,
    /// A 200 with an empty statement for client 6.
    FindsClientSix,
    /// Invalid payloads applied with 200.
    AcceptsInvalid,
    /// Credits acknowledged but not applied.
    DropsCredits,
}

#[derive(Default)]
struct Account {
    saldo: i64,
    limite: i64,
    entries: Vec<(i64, String, String)>,
}

type Bank = Arc<Mutex<HashMap<u64, Account>>>;

async fn serve(fault: Fault) -> SocketAddr {
    let bank: Bank = Arc::new(Mutex::new(HashMap::new()));
    for (id, limite) in [
        (1, 100000),
        (2, 80000),
        (3, 1000000),
        (4, 10000000),
        (5, 500000),
    ] {
        bank.lock().unwrap().insert(
            id,
            Account {
                limite,
                ..Account::default()
            },
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let bank = bank.clone();
            let service =
                hyper::service::service_fn(move |request| handle(request, bank.clone(), fault));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

fn reply(status: u16, body: Value) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

async fn handle(
    request: Request<hyper::body::Incoming>,
    bank: Bank,
    fault: Fault,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let parts: Vec<&str> = path.split('/').collect();
    let id: u64 = parts.get(2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let known = bank.lock().unwrap().contains_key(&id);
    if parts.get(3) == Some(&"extrato") {
        if !known {
            return if fault == Fault::FindsClientSix {
                reply(
                    200,
                    json!({"saldo": {"total": 0, "limite": 0}, "ultimas_transacoes": []}),
                )
            } else {
                reply(404, json!({}))
            };
        }
        let bank = bank.lock().unwrap();
        let account = &bank[&id];
        let mut entries: Vec<Value> = account
            .entries
            .iter()
            .rev()
            .take(10)
            .map(|(v, t, d)| json!({"valor": v, "tipo": t, "descricao": d}))
            .collect();
        if fault == Fault::OldestFirst {
            entries.reverse();
        }
        let total = if fault == Fault::FloatSaldo {
            json!(account.saldo as f64)
        } else {
            json!(account.saldo)
        };
        return reply(
            200,
            json!({"saldo": {"total": total, "limite": account.limite}, "ultimas_transacoes": entries}),
        );
    }
    if !known {
        return reply(404, json!({}));
    }
    let body: Value =
        serde_json::from_slice(&request.into_body().collect().await.unwrap().to_bytes())
            .unwrap_or(Value::Null);
    let valid = body["valor"].as_i64().filter(|v| *v > 0);
    let tipo = body["tipo"].as_str().filter(|t| *t == "c" || *t == "d");
    let descricao = body["descricao"]
        .as_str()
        .filter(|d| (1..=10).contains(&d.chars().count()));
    let (valor, tipo, descricao) = match (valid, tipo, descricao) {
        (Some(v), Some(t), Some(d)) => (v, t.to_owned(), d.to_owned()),
        _ if fault == Fault::AcceptsInvalid => (1, "c".to_owned(), "invalid".to_owned()),
        _ => return reply(422, json!({})),
    };
    let delta = if tipo == "c" { valor } else { -valor };
    let (saldo, limite) = {
        let bank = bank.lock().unwrap();
        (bank[&id].saldo, bank[&id].limite)
    };
    if saldo + delta < -limite {
        return reply(422, json!({}));
    }
    if fault == Fault::LostUpdate {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await; // others read the same saldo meanwhile
    }
    let mut bank = bank.lock().unwrap();
    let account = bank.get_mut(&id).unwrap();
    let new_saldo = if fault == Fault::LostUpdate {
        saldo + delta
    } else {
        account.saldo + delta
    };
    if !(fault == Fault::DropsCredits
        && tipo == "c"
        && descricao != "toma"
        && descricao != "danada")
    {
        account.saldo = new_saldo;
        account.entries.push((valor, tipo, descricao));
    }
    let saldo = if fault == Fault::FloatSaldo {
        json!(account.saldo as f64)
    } else {
        json!(account.saldo)
    };
    reply(200, json!({"limite": account.limite, "saldo": saldo}))
}

async fn simulate(fault: Fault) -> (Outcome, Report) {
    let addr = serve(fault).await;
    let options = Options {
        target: format!("http://{addr}"),
        rate: 1.0,
        profile: Profile::Official { scale: 0.02 },
        seed: 7,
        progress: false,
        validations: true,
    };
    let outcome = run(&options).await.unwrap();
    let report = Report::new(&outcome);
    (outcome, report)
}

fn has_failure(report: &Report, needle: &str) -> bool {
    report
        .failures
        .iter()
        .any(|(message, _)| message.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_server_passes_everything() {
    let (outcome, report) = simulate(Fault::None).await;
    assert!(report.passed(&outcome), "{:?}", report.failures);
    assert_eq!(report.score.payout, 100_000.0);
    assert_eq!(
        report
            .groups
            .iter()
            .find(|g| g.name == "validações")
            .unwrap()
            .count,
        123
    );
    let load: usize = report.groups.iter().skip(2).map(|g| g.count).sum();
    assert_eq!(
        load,
        (39_660.0f64 * 0.02).round() as usize
            + (19_860.0f64 * 0.02).round() as usize
            + (1_860.0f64 * 0.02).round() as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_is_an_inconsistency_and_fails_the_audit() {
    let (outcome, report) = simulate(Fault::LostUpdate).await;
    assert!(
        has_failure(&report, "validações: jmesPath(saldo.total).find.is(-25)"),
        "{:?}",
        report.failures
    );
    assert!(report.score.inconsistencies >= 1);
    assert!(
        outcome.audit.iter().any(|a| !a.clean()),
        "{:?}",
        outcome.audit
    );
    assert!(!report.passed(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_float_saldo_fails_the_consistency_check() {
    let (outcome, report) = simulate(Fault::FloatSaldo).await;
    assert!(
        has_failure(
            &report,
            "débitos: ConsistenciaSaldoLimite - Transação: WTF?!"
        ),
        "{:?}",
        report.failures
    );
    assert!(
        has_failure(
            &report,
            "extratos: ConsistenciaSaldoLimite - Extrato: WTF?!"
        ),
        "{:?}",
        report.failures
    );
    assert!(report.score.inconsistencies > 100);
    assert!(!report.passed(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oldest_first_statements_fail_the_ordering_check() {
    let (outcome, report) = simulate(Fault::OldestFirst).await;
    assert!(
        has_failure(
            &report,
            "validações: jmesPath(ultimas_transacoes[0].descricao).find.is(devolve)"
        ),
        "{:?}",
        report.failures
    );
    assert_eq!(
        report.score.inconsistencies, 0,
        "an ordering failure is not an inconsistency"
    );
    assert!(!report.passed(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_client_six_fails_the_404_check() {
    let (outcome, report) = simulate(Fault::FindsClientSix).await;
    assert_eq!(
        report.failures,
        vec![(
            "validações: status.find.in(404), but actually found 200".to_owned(),
            1
        )]
    );
    assert!(!report.passed(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_invalid_payloads_fails_their_checks() {
    let (outcome, report) = simulate(Fault::AcceptsInvalid).await;
    let invalid = report
        .failures
        .iter()
        .find(|(m, _)| m == "validações: status.find.in(422,400), but actually found 200");
    assert_eq!(invalid.map(|(_, n)| *n), Some(25), "{:?}", report.failures);
    assert!(!report.passed(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_credits_that_vanish_fail_the_audit() {
    let (outcome, report) = simulate(Fault::DropsCredits).await;
    let lost: Vec<_> = outcome.audit.iter().filter(|a| !a.clean()).collect();
    assert!(!lost.is_empty());
    for client in lost {
        assert!(
            client.reported.unwrap() < client.acknowledged,
            "money lost: {client:?}"
        );
        assert_eq!(client.unknown, 0);
    }
    assert!(!report.passed(&outcome));
}
