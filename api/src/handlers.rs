//! The two endpoints, from a parsed request to a response.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serverkit::deadline::RequestBody;
use serverkit::http::{self, BodyError};

use crate::db::{Applied, Database, DbError, Statement};
use crate::metrics;
use crate::routes::{route, Endpoint};
use crate::timestamp::{now_micros, rfc3339_micros};
use crate::validation::{parse_idempotency_key, parse_transaction};

/// A valid body is under 100 bytes; this leaves room for spacing and ignored extra fields
/// while never buffering more than this from a client.
pub(crate) const MAX_BODY_BYTES: usize = 1024;

pub(crate) type Body = Full<Bytes>;

/// Answers one request, and counts it (every answer the API gives passes here).
pub(crate) async fn handle(request: Request<RequestBody>, db: Database) -> Response<Body> {
    let began = request.body().began();
    let (endpoint, response) = answer(request, &db).await;
    metrics::answered(endpoint, response.status(), began);
    response
}

async fn answer(
    request: Request<RequestBody>,
    db: &Database,
) -> (Option<Endpoint>, Response<Body>) {
    let Some(route) = route(request.uri().path()) else {
        return (None, error(StatusCode::NOT_FOUND, "no such resource"));
    };
    let endpoint = Some(route.endpoint);
    if !route.endpoint.accepts(request.method()) {
        let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(route.endpoint.allow()));
        return (endpoint, response);
    }
    let Some(client) = route.client else {
        return (endpoint, error(StatusCode::NOT_FOUND, "no such client"));
    };
    let response = match route.endpoint {
        Endpoint::Transact => transact(request, client, db).await,
        Endpoint::Statement => statement(client, db).await,
    };
    (endpoint, response)
}

async fn transact(request: Request<RequestBody>, client: i32, db: &Database) -> Response<Body> {
    let (parts, body) = match read_body(request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let key = match parse_idempotency_key(&parts.headers) {
        Ok(key) => key,
        Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
    };
    let tx = match parse_transaction(&body) {
        Ok(tx) => tx,
        Err(reason) => return error(StatusCode::UNPROCESSABLE_ENTITY, &reason),
    };
    match db.transact(client, tx, key).await {
        Ok(Applied::Done { balance, limit }) => json(
            StatusCode::OK,
            format!(r#"{{"limite":{limit},"saldo":{balance}}}"#),
        ),
        Ok(Applied::Refused) => error(StatusCode::UNPROCESSABLE_ENTITY, "limit exceeded"),
        Ok(Applied::UnknownClient) => error(StatusCode::NOT_FOUND, "no such client"),
        Ok(Applied::KeyReused) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency-Key already used for another request",
        ),
        // Input validation missed that PostgreSQL cannot take: the client's, not a 503.
        Err(e) if e.is_refused_data() => {
            tracing::warn!(
                route = "transacoes",
                client,
                sqlstate = e.sql_state().as_deref(),
                "422, the database refused the data: {e}"
            );
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the database refused this transaction's data",
            )
        }
        Err(e) => unavailable("transacoes", client, e),
    }
}

async fn statement(client: i32, db: &Database) -> Response<Body> {
    match db.statement(client).await {
        Ok(Some(statement)) => json(StatusCode::OK, statement_json(&statement)),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such client"),
        Err(e) => unavailable("extrato", client, e),
    }
}

#[derive(Serialize)]
struct StatementJson<'a> {
    saldo: BalanceJson,
    ultimas_transacoes: Vec<EntryJson<'a>>,
}

#[derive(Serialize)]
struct BalanceJson {
    total: i32,
    data_extrato: String,
    limite: i32,
}

#[derive(Serialize)]
struct EntryJson<'a> {
    valor: i32,
    tipo: &'a str,
    descricao: &'a str,
    realizada_em: String,
}

fn statement_json(statement: &Statement) -> String {
    let body = StatementJson {
        saldo: BalanceJson {
            total: statement.balance,
            data_extrato: rfc3339_micros(now_micros()),
            limite: statement.limit,
        },
        ultimas_transacoes: statement
            .entries
            .iter()
            .map(|e| EntryJson {
                valor: e.amount,
                tipo: &e.kind,
                descricao: &e.description,
                realizada_em: rfc3339_micros(e.at),
            })
            .collect(),
    };
    serde_json::to_string(&body).expect("plain structs always serialize")
}

/// Reads the whole body, refusing (413) anything over `MAX_BODY_BYTES` without buffering it.
async fn read_body(
    request: Request<RequestBody>,
) -> Result<(hyper::http::request::Parts, Bytes), Response<Body>> {
    match http::read_body(request, MAX_BODY_BYTES).await {
        Ok(read) => Ok(read),
        Err(BodyError::TooLarge) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
        Err(BodyError::Unreadable) => {
            Err(error(StatusCode::BAD_REQUEST, "could not read the body"))
        }
    }
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, reason: &str) -> Response<Body> {
    json(status, serde_json::json!({ "erro": reason }).to_string())
}

fn unavailable(route: &str, client: i32, e: DbError) -> Response<Body> {
    tracing::warn!(
        route,
        client,
        sqlstate = e.sql_state().as_deref(),
        "503: {e}"
    );
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database unavailable, try again",
    )
}
