//! Transactions whose commit was cut off: the connection broke or PostgreSQL went down after
//! they were sent, so they may or may not have been applied. Instead of answering 503 (an
//! outcome the client cannot know), they are sent again once the database is back, as a
//! resumed batch: each one already there (found by its operation id) is answered with the
//! balance it left, each one not there is applied now, for the first and only time.

use crate::db::connections::{Connections, Use};
use crate::db::outcome::{Applied, DbError};
use crate::db::sql::{self, Operation};
use crate::metrics;

/// Resolves `ops` after `cut_off` ended their first attempt, until the acquire deadline
/// (DB_TIMEOUT_MS) from now; past it, 503, and they are never applied later: nothing of
/// ours sends them again.
pub(super) async fn resume(
    connections: &Connections,
    ops: &[Operation],
    cut_off: DbError,
) -> Result<Vec<Applied>, DbError> {
    metrics::RESUMED_BATCHES.inc();
    tracing::warn!(
        operations = ?ops.iter().map(|o| o.id).collect::<Vec<_>>(),
        "{cut_off}; resuming {} transactions by operation id",
        ops.len()
    );
    let resumed = || async |conn: &mut _| sql::transact_batch(conn, ops, true).await;
    connections.run_retrying(Use::Write, resumed).await
}
