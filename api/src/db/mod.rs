//! Everything the API asks of PostgreSQL.
//!
//! Consistency lives in the database: a credit or debit locks the client's row
//! (`SELECT ... FOR UPDATE`) for the length of its transaction, and a statement is read in a
//! single statement, so it is one snapshot. Nothing is cached in the API process, so two
//! instances behind the balancer always agree.
//!
//! `sql` runs statements on a connection; `connections` holds the pools and the deadlines;
//! `group_commit` carries every credit and debit (a batch of one is the unbatched path) and
//! resumes those whose commit was cut off; `operations` gives each one its id before it is
//! sent, which is how a resume finds out what happened; `outcome` has the types they all
//! answer with. Imports run only downwards: this module → group_commit → connections,
//! sql → outcome; operations → connections.

mod connections;
mod group_commit;
mod operations;
mod outcome;
mod sql;

pub(crate) use outcome::{Applied, DbError, Statement};

use std::sync::Arc;

use crate::config::Config;
use crate::metrics;
use crate::validation::Transaction;
use connections::{Connections, Use};
use group_commit::GroupCommit;
use operations::Operations;
use sql::Operation;

#[derive(Clone)]
pub(crate) struct Database {
    connections: Connections,
    operations: Arc<Operations>,
    /// Every credit and debit goes through group commit; with DB_BATCH_MAX=1 each batch
    /// holds one, which is the unbatched path.
    writes: GroupCommit,
}

impl Database {
    /// Connects, retrying with backoff for up to `config.db_wait`: in compose the database
    /// may still be starting when the API does.
    pub(crate) async fn connect(config: &Config) -> Result<Database, String> {
        let connections = Connections::connect(config).await?;
        let operations = Operations::reserve(&connections)
            .await
            .map_err(|e| format!("cannot reserve operation ids: {e}"))?;
        tokio::spawn(expire_keys(connections.clone()));
        Ok(Database {
            writes: GroupCommit::new(connections.clone(), config.batch_max),
            connections,
            operations: Arc::new(operations),
        })
    }

    /// A credit or debit, with the client's Idempotency-Key if it sent one.
    pub(crate) async fn transact(
        &self,
        client: i32,
        tx: Transaction<'_>,
        key: Option<&str>,
    ) -> Result<Applied, DbError> {
        let operation = Operation {
            client,
            id: self.operations.next(&self.connections).await?,
            key: key.map(str::to_owned),
            tx: tx.into_owned(),
        };
        self.writes.transact(operation).await
    }

    /// A read is safe to send twice: one whose connection was lost is read again.
    pub(crate) async fn statement(&self, client: i32) -> Result<Option<Statement>, DbError> {
        let started = std::time::Instant::now();
        let read = || async |conn: &mut _| sql::statement(conn, client).await;
        let statement = self.connections.run_retrying(Use::Read, read).await;
        metrics::STATEMENT_CALL.observe(started.elapsed());
        statement
    }

    /// Whether a write could be taken now: a pooled connection answers (a read connection
    /// first, so writes are not held up) and its server is a primary. For `/readyz`.
    pub(crate) async fn writable(&self) -> Result<(), String> {
        match self.connections.run(Use::Read, sql::is_primary).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the database is a standby".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Closes every connection; in-flight operations finish first.
    pub(crate) async fn close(&self) {
        let (group_commit, stages) = metrics::report();
        tracing::info!("group commit: {group_commit}");
        for line in stages {
            tracing::info!("timings: {line}");
        }
        self.connections.close().await;
    }
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
            Ok(deleted) => tracing::info!("{deleted} Idempotency-Keys past 24 hours deleted"),
            Err(DbError::Sqlx(sqlx::Error::PoolClosed)) => return,
            Err(e) => tracing::warn!("deleting old Idempotency-Keys: {e}"),
        }
    }
}
