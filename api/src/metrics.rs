//! What the API counts, for its operator (`/metrics` on API_ADMIN, `families`) and for the
//! benchmarks (`report`, logged at shutdown and read by bench/lib.sh).
//!
//! Every count is a relaxed atomic add into a static (`serverkit::metrics`), and every label
//! set an index into a fixed array: the request path allocates and locks nothing for them,
//! and no label can take an unbounded set of values (never a client id).
//!
//! Where a request's time goes, stage by stage: a credit or debit is `write` (from its first
//! byte read to its answer handed to hyper, which writes it in the same turn) = parsing +
//! `write_queue` (enqueued to taken into a batch) + `write_call` (one database round trip of
//! its batch: row locks, statement, commit and its WAL flush) + the answer; a statement is
//! `statement` = `statement_call` (its read, the wait for a connection included) + its JSON.

use std::fmt;
use std::time::Instant;

use hyper::StatusCode;
use serverkit::histogram::Histogram;
use serverkit::metrics::{Counter, Families, StatusLabel};

use crate::routes::Endpoint;

/// Route labels: the two endpoints, and requests that matched neither (404, 405 on an
/// unknown path).
const ROUTES: [&str; 3] = ["transacoes", "extrato", "none"];
/// The statuses the handlers answer with; anything else is counted as "other".
const STATUSES: StatusLabel =
    StatusLabel(&["200", "400", "404", "405", "413", "422", "500", "503"]);

static REQUESTS: [[Counter; STATUSES.len()]; ROUTES.len()] =
    [const { [const { Counter::new() }; STATUSES.len()] }; ROUTES.len()];

/// Per route, from the request's first byte read to its answer handed to hyper. The first
/// two are the benchmarks' `write` and `statement` stages.
static DURATION: [Histogram; ROUTES.len()] = [
    Histogram::new("write"),
    Histogram::new("statement"),
    Histogram::new("none"),
];

/// Group commit: from enqueued to taken into a batch.
pub(crate) static WRITE_QUEUE: Histogram = Histogram::new("write_queue");
/// One batch's database call, once it has its connection.
pub(crate) static WRITE_CALL: Histogram = Histogram::new("write_call");
/// A statement's database call, the wait for a read connection included.
pub(crate) static STATEMENT_CALL: Histogram = Histogram::new("statement_call");
/// The wait for a pooled connection outside group commit (whose wait is `write_queue`):
/// statement reads, and writes such as reserving operation ids and resuming.
pub(crate) static POOL_WAIT: [Histogram; 2] = [
    Histogram::new("pool_wait_write"),
    Histogram::new("pool_wait_read"),
];

/// Bounds of the batch-size buckets (DB_BATCH_MAX is 16 by default, at most 1000).
const BATCH_BOUNDS: [u64; 8] = [1, 2, 3, 4, 8, 16, 64, 256];
static BATCH_SIZES: [Counter; BATCH_BOUNDS.len() + 1] =
    [const { Counter::new() }; BATCH_BOUNDS.len() + 1];
static BATCHED: Counter = Counter::new();
static LARGEST_BATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Transactions that arrived while their client had a batch running.
pub(crate) static HELD: Counter = Counter::new();

/// Batches whose commit was cut off and that were sent again; their operations, by what
/// the database had: already there (`found`) or applied on the resume (`applied`).
pub(crate) static RESUMED_BATCHES: Counter = Counter::new();
/// See RESUMED_BATCHES.
pub(crate) static RESUMED: [Counter; 2] = [Counter::new(), Counter::new()];
/// Credits and debits with an Idempotency-Key used before: answered with the first answer
/// (`replayed`) or refused because the request differs (`conflict`).
pub(crate) static KEYS_SEEN_BEFORE: [Counter; 2] = [Counter::new(), Counter::new()];

/// Database errors by SQLSTATE class (PostgreSQL's own, a fixed list), or by what failed
/// when the server sent none.
const ERROR_CLASSES: [&str; 15] = [
    "08",
    "22",
    "23",
    "25",
    "40",
    "53",
    "54",
    "55",
    "57",
    "58",
    "XX", // SQLSTATE classes
    "other_sqlstate",
    "io",
    "driver",
    "timeout",
];
static DB_ERRORS: [Counter; ERROR_CLASSES.len()] = [const { Counter::new() }; ERROR_CLASSES.len()];

fn route_index(endpoint: Option<Endpoint>) -> usize {
    match endpoint {
        Some(Endpoint::Transact) => 0,
        Some(Endpoint::Statement) => 1,
        None => 2,
    }
}

/// One request answered: counted by route and status, its latency observed.
pub(crate) fn answered(endpoint: Option<Endpoint>, status: StatusCode, began: Instant) {
    let route = route_index(endpoint);
    REQUESTS[route][STATUSES.index(status)].inc();
    DURATION[route].observe(began.elapsed());
}

/// A batch of `size` transactions taken from the queue.
pub(crate) fn batch_taken(size: usize) {
    let size = size as u64;
    BATCH_SIZES[BATCH_BOUNDS.partition_point(|&bound| bound < size)].inc();
    BATCHED.add(size);
    LARGEST_BATCH.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
}

/// A database error, by the class of its SQLSTATE (or `io`, `driver`, `timeout`).
pub(crate) fn db_error(class: &str) {
    let i = ERROR_CLASSES
        .iter()
        .position(|&c| c == class)
        .or_else(|| ERROR_CLASSES.iter().position(|&c| c == "other_sqlstate"))
        .expect("other_sqlstate is a class");
    DB_ERRORS[i].inc();
}

/// The API's families, for `serverkit::metrics::registry`.
pub(crate) fn families(out: &mut Families<'_>) -> fmt::Result {
    let statuses = STATUSES.values();
    out.counter(
        "http_requests",
        "Requests answered by the API, by route and status.",
        ROUTES.iter().zip(&REQUESTS).flat_map(|(route, row)| {
            statuses
                .clone()
                .zip(row)
                .map(move |(status, n)| ([("route", *route), ("status", status)], n.get()))
        }),
    )?;
    out.seconds(
        "http_request_duration",
        "From a request's first byte read to its answer handed to hyper, by route.",
        ROUTES
            .iter()
            .zip(&DURATION)
            .map(|(route, h)| ([("route", *route)], h.snapshot())),
    )?;
    out.seconds(
        "db_write_queue",
        "Group commit: how long a credit or debit waited to be taken into a batch.",
        [([("queue", "write")], WRITE_QUEUE.snapshot())],
    )?;
    out.seconds(
        "db_call_duration",
        "One database round trip: a batch of credits and debits, or a statement read.",
        [
            ([("call", "write_batch")], WRITE_CALL.snapshot()),
            ([("call", "statement")], STATEMENT_CALL.snapshot()),
        ],
    )?;
    out.seconds(
        "db_pool_wait",
        "The wait for a pooled connection outside group commit's queue, by pool use.",
        [
            ([("use", "write")], POOL_WAIT[0].snapshot()),
            ([("use", "read")], POOL_WAIT[1].snapshot()),
        ],
    )?;
    let sizes: Vec<u64> = BATCH_SIZES.iter().map(Counter::get).collect();
    out.sizes(
        "db_batch_size",
        "Group commit: credits and debits per database transaction.",
        &BATCH_BOUNDS,
        &sizes,
        BATCHED.get(),
    )?;
    out.one_counter(
        "db_held_for_client",
        "Credits and debits that waited because their client's batch was running.",
        HELD.get(),
    )?;
    out.one_counter(
        "db_resumed_batches",
        "Batches whose commit was cut off (connection lost, server gone) and were resumed.",
        RESUMED_BATCHES.get(),
    )?;
    out.counter(
        "db_resumed_operations",
        "Operations of resumed batches: already committed (found) or applied on the resume.",
        [
            ([("outcome", "found")], RESUMED[0].get()),
            ([("outcome", "applied")], RESUMED[1].get()),
        ],
    )?;
    out.counter(
        "idempotency_keys_seen_before",
        "Idempotency-Keys used before: the first answer replayed, or a conflicting request refused.",
        [
            ([("outcome", "replayed")], KEYS_SEEN_BEFORE[0].get()),
            ([("outcome", "conflict")], KEYS_SEEN_BEFORE[1].get()),
        ],
    )?;
    out.counter(
        "db_errors",
        "Database errors by SQLSTATE class, or io, driver, timeout when the server sent none.",
        ERROR_CLASSES
            .iter()
            .zip(&DB_ERRORS)
            .map(|(class, n)| ([("class", *class)], n.get())),
    )
}

/// The shutdown report: the group commit line, then one line per stage
/// (serverkit::histogram's format).
pub(crate) fn report() -> (String, Vec<String>) {
    let (batches, transactions) = (
        BATCH_SIZES.iter().map(Counter::get).sum::<u64>(),
        BATCHED.get(),
    );
    let group_commit = format!(
        "{transactions} transactions in {batches} batches (mean {:.2}, largest {}), {} held for their client's batch",
        transactions as f64 / batches.max(1) as f64,
        LARGEST_BATCH.load(std::sync::atomic::Ordering::Relaxed),
        HELD.get()
    );
    let stages = [
        &DURATION[0],
        &WRITE_QUEUE,
        &WRITE_CALL,
        &DURATION[1],
        &STATEMENT_CALL,
    ];
    (
        group_commit,
        stages.iter().map(|h| h.snapshot().to_string()).collect(),
    )
}
