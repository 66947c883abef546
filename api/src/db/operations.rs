//! Operation ids: every credit and debit gets one before it is sent, unique across instances
//! and restarts, and stored with its row (`transacoes.operacao`). When a commit is cut off the
//! API looks the ids up instead of guessing (`resume`).
//!
//! Ids come in blocks reserved with one durable UPDATE of `operacoes_reservadas`: one round
//! trip per `BLOCK` transactions, not one per transaction, and a block reserved is never
//! handed out again, whatever crashes (its commit was flushed before it is used).

use std::ops::Range;
use std::sync::Mutex;

use sqlx::postgres::PgConnection;
use sqlx::Row;

use super::connections::{Connections, Use};
use super::outcome::DbError;

/// Ids per reservation: at the official peak (165 transactions a second per instance) a
/// block lasts an instance close to two hours.
const BLOCK: i64 = 1 << 20;

pub(super) struct Operations {
    /// The ids of the current block not yet given out.
    block: Mutex<Range<i64>>,
    /// Held while a new block is reserved, so one request reserves it and the rest wait.
    reserving: tokio::sync::Mutex<()>,
}

impl Operations {
    /// Reserves the first block now, so the first requests do not wait for it.
    pub(super) async fn reserve(connections: &Connections) -> Result<Operations, DbError> {
        let block = connections.run(Use::Write, reserve_block).await?;
        Ok(Operations {
            block: Mutex::new(block),
            reserving: tokio::sync::Mutex::new(()),
        })
    }

    /// The next id, reserving a new block when this one is used up.
    pub(super) async fn next(&self, connections: &Connections) -> Result<i64, DbError> {
        loop {
            if let Some(id) = self.block.lock().expect("operations lock").next() {
                return Ok(id);
            }
            let _reserving = self.reserving.lock().await;
            if self.block.lock().expect("operations lock").is_empty() {
                let block = connections.run(Use::Write, reserve_block).await?;
                *self.block.lock().expect("operations lock") = block;
            }
        }
    }
}

async fn reserve_block(conn: &mut PgConnection) -> Result<Range<i64>, DbError> {
    let row = sqlx::query(
        "UPDATE operacoes_reservadas SET proxima = proxima + $1 RETURNING proxima - $1",
    )
    .bind(BLOCK)
    .fetch_one(conn)
    .await?;
    let start: i64 = row.try_get(0)?;
    Ok(start..start + BLOCK)
}
