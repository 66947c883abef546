//! Everything the API asks of PostgreSQL.
//!
//! Consistency lives in the database: a credit or debit locks the client's row
//! (`SELECT ... FOR UPDATE`) for the length of its transaction, and a statement is read in a
//! single statement, so it is one snapshot. Nothing is cached in the API process, so two
//! instances behind the balancer always agree.
//!
//! `sql` runs statements on a connection; `connections` holds the pools and the deadlines;
//! `group_commit` batches credits and debits; `operations` gives each one its id before it
//! is sent, and `resume` uses the ids to resolve those whose commit was cut off; `outcome`
//! has the types they all answer with. Imports run only downwards: this module →
//! group_commit → resume → connections, sql → outcome; operations → connections.

mod connections;
mod group_commit;
mod operations;
mod outcome;
mod resume;
mod sql;

pub use outcome::{Applied, DbError, Statement};

use std::sync::Arc;

use crate::config::{Config, TxShape};
use crate::timings;
use crate::validation::NewTransaction;
use connections::{Connections, Use};
use group_commit::GroupCommit;
use operations::Operations;
use resume::resume;
use sql::Transaction;

#[derive(Clone)]
pub struct Database {
    connections: Connections,
    operations: Arc<Operations>,
    writes: Writes,
}

/// How credits and debits reach the database.
#[derive(Clone)]
enum Writes {
    /// Group commit (the default).
    Batched(GroupCommit),
    /// Each alone (DB_BATCH_MAX=1, or the client-driven shape, kept unbatched to measure
    /// against).
    Alone(TxShape),
}

impl Database {
    /// Connects, retrying with backoff for up to `config.db_wait`: in compose the database
    /// may still be starting when the API does.
    pub async fn connect(config: &Config) -> Result<Database, String> {
        let connections = Connections::connect(config).await?;
        let operations = Operations::reserve(&connections)
            .await
            .map_err(|e| format!("cannot reserve operation ids: {e}"))?;
        tokio::spawn(expire_keys(connections.clone()));
        let writes = if config.batch_max > 1 && config.tx_shape == TxShape::Statement {
            Writes::Batched(GroupCommit::new(connections.clone(), config.batch_max))
        } else {
            Writes::Alone(config.tx_shape)
        };
        Ok(Database {
            connections,
            operations: Arc::new(operations),
            writes,
        })
    }

    /// A credit or debit, with the client's Idempotency-Key if it sent one.
    pub async fn transact(
        &self,
        client: i32,
        tx: &NewTransaction<'_>,
        key: Option<&str>,
    ) -> Result<Applied, DbError> {
        let operation = self.operations.next(&self.connections).await?;
        let tx = Transaction::new(client, tx, operation, key);
        let answer = match &self.writes {
            Writes::Batched(group) => return group.transact(tx).await,
            // Only the database function keeps Idempotency-Keys: a keyed one goes there.
            Writes::Alone(TxShape::Client) if tx.key.is_none() => {
                let run = async |conn: &mut _| sql::transact_client_side(conn, &tx).await;
                self.connections.run(Use::Write, run).await
            }
            Writes::Alone(_) => {
                let txs = std::slice::from_ref(&tx);
                let run = async |conn: &mut _| sql::transact_batch(conn, txs, false).await;
                self.connections.run(Use::Write, run).await.map(only)
            }
        };
        match answer {
            // Its commit cut off: found out once the database is back (`resume`).
            Err(e) if e.is_connection_lost() => {
                resume(&self.connections, std::slice::from_ref(&tx), e)
                    .await
                    .map(only)
            }
            answer => answer,
        }
    }

    /// A read is safe to send twice: one whose connection was lost is read again.
    pub async fn statement(&self, client: i32) -> Result<Option<Statement>, DbError> {
        let started = std::time::Instant::now();
        let read = || async |conn: &mut _| sql::statement(conn, client).await;
        let statement = self.connections.run_retrying(Use::Read, read).await;
        timings::STATEMENT_CALL.observe(started.elapsed());
        statement
    }

    /// Closes every connection; in-flight operations finish first.
    pub async fn close(&self) {
        if let Writes::Batched(group) = &self.writes {
            eprintln!("api: group commit: {}", group.report());
        }
        for line in timings::report() {
            eprintln!("api: timings: {line}");
        }
        self.connections.close().await;
    }
}

/// The answer of a batch of one.
fn only(mut applied: Vec<Applied>) -> Applied {
    applied.pop().expect("one answer for one transaction")
}

/// How often Idempotency-Keys past their 24 hours are deleted (at start, then hourly; both
/// instances do it, which is harmless). Ends when the pool is closed.
const KEY_EXPIRY_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

async fn expire_keys(connections: Connections) {
    let mut every = tokio::time::interval(KEY_EXPIRY_EVERY);
    loop {
        every.tick().await;
        match connections.run(Use::Write, sql::expire_keys).await {
            Ok(0) => {}
            Ok(deleted) => eprintln!("api: {deleted} Idempotency-Keys past 24 hours deleted"),
            Err(DbError::Sqlx(sqlx::Error::PoolClosed)) => return,
            Err(e) => eprintln!("api: deleting old Idempotency-Keys: {e}"),
        }
    }
}
