//! Where a request's time goes inside the API: one histogram per stage, taken on every
//! request (one relaxed atomic add each), printed at shutdown as `api: timings: …` lines
//! that the benchmarks record (bench/lib.sh). The stages of a credit or debit:
//! `write` = `write_queue` + `write_call` (+ what the handler does around them), where
//! `write_call` is one database round trip of its batch: the row locks, the statement, the
//! commit and its WAL flush. A statement: `statement` = `statement_call` + its JSON.

use serverkit::histogram::Histogram;

/// A credit or debit in the handler: from its head parsed to its answer built.
pub(crate) static WRITE: Histogram = Histogram::new("write");
/// Group commit: from enqueued to taken into a batch (a connection came free for it).
pub(crate) static WRITE_QUEUE: Histogram = Histogram::new("write_queue");
/// One batch's database call, once it has its connection.
pub(crate) static WRITE_CALL: Histogram = Histogram::new("write_call");
/// A statement in the handler: from its head parsed to its answer built.
pub(crate) static STATEMENT: Histogram = Histogram::new("statement");
/// A statement's database call, the wait for a read connection included.
pub(crate) static STATEMENT_CALL: Histogram = Histogram::new("statement_call");

const ALL: [&Histogram; 5] = [
    &WRITE,
    &WRITE_QUEUE,
    &WRITE_CALL,
    &STATEMENT,
    &STATEMENT_CALL,
];

/// One line per stage (serverkit::histogram's format).
pub(crate) fn report() -> Vec<String> {
    ALL.iter().map(|h| h.snapshot().to_string()).collect()
}
