//! The API's connections to PostgreSQL and the deadlines around every use of them.

use std::future::Future;
use std::time::Duration;

use serverkit::backoff::Backoff;
use sqlx::postgres::PgConnection;

use super::outcome::DbError;
use crate::config::Config;
use crate::metrics;
use crate::pool::{Lease, Pool, Slot};

#[derive(Clone)]
pub(super) struct Connections {
    /// Credits and debits, and statement reads when `reads` is None or busy.
    writes: Pool,
    /// Statement reads first. A commit can wait a long time for the disk (a virtual disk's
    /// flush measured 310 ms, bench/JOURNAL.md "The tail"), and then every transaction
    /// connection waits with it; a read needs no flush, and on a connection of its own it is
    /// answered meanwhile. A read takes whichever comes free first, one of these or a
    /// transaction connection: on these alone, statements queued behind each other once the
    /// database ran short of CPU and timed out by hundreds at ten times the official rate
    /// (BENCHMARKS.md §15).
    reads: Option<Pool>,
    /// Bound for waiting for a free connection.
    acquire_timeout: Duration,
    /// Local backstop for one operation once sent; longer than the server's statement_timeout.
    operation_timeout: Duration,
}

/// Which connections an operation runs on (the index of its `metrics::POOL_WAIT`).
#[derive(Clone, Copy)]
pub(super) enum Use {
    Write = 0,
    Read = 1,
}

/// `error`, counted in the metrics: every database error is counted where it arises,
/// here, once.
fn counted(error: DbError) -> DbError {
    error.count();
    error
}

impl Connections {
    /// Connects, retrying with backoff for up to `config.db_wait`: in compose the database
    /// may still be starting when the API does.
    pub(super) async fn connect(config: &Config) -> Result<Connections, String> {
        // The server cancels (and so rolls back) a statement that outlives DB_TIMEOUT_MS, so a
        // request answered 503 for slowness is never applied behind the client's back.
        let options = config.database.clone().options([(
            "statement_timeout",
            format!("{}ms", config.db_timeout.as_millis()),
        )]);
        let deadline = tokio::time::Instant::now() + config.db_wait;
        let retry = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        for wait in retry.waits() {
            let pools = async {
                let writes = Pool::connect(options.clone(), config.pool_size).await?;
                let reads = match config.read_pool_size {
                    0 => None,
                    size => Some(Pool::connect(options.clone(), size).await?),
                };
                Ok::<_, sqlx::Error>((writes, reads))
            };
            match pools.await {
                Ok((writes, reads)) => {
                    return Ok(Connections {
                        writes,
                        reads,
                        acquire_timeout: config.db_timeout,
                        // The margin lets the server-side timeout fire first; this one is for a
                        // database that stopped answering at all.
                        operation_timeout: config.db_timeout + Duration::from_millis(250),
                    })
                }
                Err(e) if tokio::time::Instant::now() + wait > deadline => {
                    return Err(format!(
                        "database not reachable after {}s: {e} (check DATABASE_URL, or raise DB_WAIT_SECS)",
                        config.db_wait.as_secs()
                    ))
                }
                Err(_) => tokio::time::sleep(wait).await,
            }
        }
        unreachable!("the waits never end")
    }

    /// Runs one operation on a pooled connection, under two deadlines so a stalled database
    /// turns into a quick 503 rather than a hung request: one for getting a connection, one for
    /// the operation. The second starts when the operation does and outlasts the server's
    /// statement_timeout, so a statement cut short is rolled back by the server, never applied
    /// after the 503. The connection is reused only if the operation completed.
    pub(super) async fn run<T>(
        &self,
        on: Use,
        operation: impl AsyncFnOnce(&mut PgConnection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        self.run_before(deadline, on, operation).await
    }

    /// `run`, with the wait for a connection bounded by `deadline` instead.
    pub(super) async fn run_before<T>(
        &self,
        deadline: tokio::time::Instant,
        on: Use,
        operation: impl AsyncFnOnce(&mut PgConnection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let acquire = async {
            match (on, &self.reads) {
                (Use::Read, Some(reads)) => tokio::select! {
                    // Its own connections first when both are free.
                    biased;
                    lease = reads.acquire() => lease,
                    lease = self.writes.acquire() => lease,
                },
                _ => self.writes.acquire().await,
            }
        };
        let waited = std::time::Instant::now();
        let lease = tokio::time::timeout_at(deadline, acquire).await;
        metrics::POOL_WAIT[on as usize].observe(waited.elapsed());
        let mut lease = lease.map_err(|_| counted(DbError::Timeout))??;
        let result = self.bounded(operation(&mut lease)).await;
        match &result {
            Ok(_) => lease.release(),
            Err(e) => self.note_failure(e),
        }
        result
    }

    /// `run` for an operation that is safe to send twice (a read, a resumed batch): when the
    /// connection is lost on the way (PostgreSQL crashed or restarted), it is run again on a
    /// new connection once the database is back, until the acquire deadline (DB_TIMEOUT_MS).
    /// `operation` makes each attempt.
    pub(super) async fn run_retrying<T, Attempt>(
        &self,
        on: Use,
        operation: impl Fn() -> Attempt,
    ) -> Result<T, DbError>
    where
        Attempt: AsyncFnOnce(&mut PgConnection) -> Result<T, DbError>,
    {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        loop {
            match self.run_before(deadline, on, operation()).await {
                Err(e) if e.is_connection_lost() && tokio::time::Instant::now() < deadline => {
                    tracing::warn!("{e}; trying again on a new connection");
                    // A connection that broke at once: the server is still going down.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                result => return result,
            }
        }
    }

    /// `operation` under the operation deadline.
    pub(super) async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        tokio::time::timeout(self.operation_timeout, operation)
            .await
            .unwrap_or(Err(DbError::Timeout))
            .map_err(counted)
    }

    /// `wait` (for a connection, a slot, an answer) under the acquire deadline.
    pub(super) async fn bounded_wait<T>(
        &self,
        wait: impl Future<Output = T>,
    ) -> Result<T, DbError> {
        tokio::time::timeout(self.acquire_timeout, wait)
            .await
            .map_err(|_| counted(DbError::Timeout))
    }

    /// A free write slot now, if there is one (group commit starts a batch only then).
    pub(super) fn try_write_slot(&self) -> Option<Slot> {
        self.writes.try_slot()
    }

    /// The next write slot to come free, whoever frees it, within the acquire deadline.
    pub(super) async fn next_write_slot(&self) -> Result<Slot, DbError> {
        Ok(self.bounded_wait(self.writes.slot()).await??)
    }

    /// The connection for a write slot, within the acquire deadline: past it the database is
    /// down for good.
    pub(super) async fn lease(&self, slot: Slot) -> Result<Lease, DbError> {
        self.bounded_wait(self.writes.lease(slot)).await
    }

    /// After an operation failed (its connection is closed, not reused): when the server end
    /// was gone, PostgreSQL restarted, and the idle connections are most likely dead too.
    pub(super) fn note_failure(&self, error: &DbError) {
        if error.is_connection_lost() {
            self.pools().for_each(Pool::discard_idle);
        }
    }

    /// Closes every connection; in-flight operations finish first.
    pub(super) async fn close(&self) {
        for pool in self.pools() {
            pool.close().await;
        }
    }

    fn pools(&self) -> impl Iterator<Item = &Pool> {
        std::iter::once(&self.writes).chain(&self.reads)
    }
}
