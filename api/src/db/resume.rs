//! Transactions whose commit was cut off: the connection broke or PostgreSQL went down after
//! they were sent, so they may or may not have been applied. Instead of answering 503 (an
//! outcome the client cannot know), they are sent again once the database is back, as a
//! resumed batch: each one already there (found by its operation id) is answered with the
//! balance it left, each one not there is applied now, for the first and only time.

use std::time::Duration;

use tokio::time::Instant;

use super::connections::{Connections, Use};
use super::outcome::{Applied, DbError};
use super::sql::{self, Transaction};

/// Resolves `txs` after `cut_off` ended their first attempt, trying until the acquire
/// deadline (DB_TIMEOUT_MS) from now; past it, the last error (503, and the transactions are
/// never applied later: nothing of ours sends them again).
pub async fn resume(
    connections: &Connections,
    txs: &[Transaction<'_>],
    cut_off: DbError,
) -> Result<Vec<Applied>, DbError> {
    let deadline = Instant::now() + connections.acquire_timeout();
    let mut error = cut_off;
    while error.is_connection_lost() && Instant::now() < deadline {
        eprintln!("api: {error}; resuming {} transactions", txs.len());
        let resumed = async |conn: &mut _| sql::transact_batch(conn, txs, true).await;
        match connections.run_before(deadline, Use::Write, resumed).await {
            Ok(applied) => return Ok(applied),
            Err(e) => error = e,
        }
        // A connection that broke at once: the server is still going down.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(error)
}
