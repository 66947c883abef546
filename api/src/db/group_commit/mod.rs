//! Group commit: the credits and debits that arrive while every connection is busy wait in
//! a queue, and the next connection to come free takes all of them (up to `DB_BATCH_MAX`)
//! into one database transaction (`transact_batch` in db/init.sql): one commit, one WAL
//! flush and one wake-up of PostgreSQL for the lot. Measured: BENCHMARKS.md §7.
//! The queue (who waits, what a batch takes) is `queue`; this module runs it.
//!
//! A batch is whatever is waiting when a connection becomes free; nothing ever waits for a
//! batch to fill, so at light load every batch holds one transaction and runs as soon as it
//! arrives, with the single statement of the unbatched path.
//!
//! Who runs batches: a request that finds a free connection slot starts a leader task; the
//! leader takes batches until none can be taken, then gives the connection back and looks
//! at the queue once more. A request that finds no free slot makes sure one task is waiting
//! for the next slot to come free, whoever frees it (statement reads hold slots too when
//! their own connections are busy, or with DB_READ_POOL_SIZE=0), to lead from there. So an
//! enqueued request is never left without a leader.
//!
//! One batch per client at a time: while a batch holding a client's transactions runs, that
//! client's newer transactions wait in the queue instead of taking another connection, where
//! they would only sleep on the row lock. The batch's leader takes them next (or, if the
//! batch failed, starts a leader for them). So a row held long ties up one of this
//! instance's connections, not all of them, and the other clients' transactions go on.
//! Measured: bench/JOURNAL.md, "The tail: levers kept".
//!
//! One item whose data PostgreSQL refuses (an error of class 22 or 23) rolls its whole batch
//! back; the leader then runs each item of it alone, so that item gets its own answer and
//! the others commit. Validation refuses such input first; this is the second line.
//!
//! A batch whose commit was cut off (the connection broke, PostgreSQL went down) is not
//! answered 503: once the database is back it is sent again as a resumed batch (`resume`),
//! in which each transaction already applied is answered as it was and the others are
//! applied now, so each request gets 200 or 422 as if nothing had happened.
//!
//! Deadlines keep the unbatched promises: a request still waiting (not yet in a batch) after
//! `DB_TIMEOUT_MS` withdraws and gets 503, never sent; one inside a batch has that batch's
//! outcome, bounded by the operation deadline (and, when the batch is resumed, by
//! `DB_TIMEOUT_MS` more), and PostgreSQL's statement_timeout rolls a slow batch back before
//! the API gives up, so a 503 for slowness never hides an applied transaction.

mod queue;
mod resume;

use std::sync::Arc;
use std::time::Instant;

use sqlx::postgres::PgConnection;

use super::connections::Connections;
use super::outcome::{Answer, DbError};
use super::sql::{self, Operation};
use crate::metrics;
use crate::pool::Slot;
use queue::{Batch, Queue};
use resume::resume;

/// How a leader's run of batches ended.
enum End<'q> {
    /// Nothing left to take; the connection is fit for reuse.
    Drained,
    /// A failure answered; the connection is not reused.
    Broken,
    /// A batch's commit was cut off (the connection or the server went away): to resume.
    CutOff(Batch<'q>, DbError),
}

#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: Arc<Queue>,
    connections: Connections,
}

impl GroupCommit {
    pub(super) fn new(connections: Connections, batch_max: usize) -> GroupCommit {
        GroupCommit {
            queue: Arc::new(Queue::new(batch_max)),
            connections,
        }
    }

    /// Waits in the queue for a batch, starting a leader if a connection is free.
    pub(super) async fn transact(&self, op: Operation) -> Answer {
        let (id, mut answer, ready) = self.queue.push(op);
        if ready {
            self.start_leader();
        }
        match self.connections.bounded_wait(&mut answer).await {
            Ok(answer) => answer.unwrap_or(Err(DbError::Timeout)),
            // Still waiting: withdrawn, never sent.
            Err(_) if self.queue.withdraw(id) => Err(DbError::Timeout),
            // In a batch: its outcome, which the batch's own deadline bounds.
            Err(_) => answer.await.unwrap_or(Err(DbError::Timeout)),
        }
    }

    /// Makes sure a task will take what is queued: a leader on a free connection slot, or
    /// one task waiting for the next slot to come free, whoever frees it, to lead from there.
    fn start_leader(&self) {
        match self.connections.try_write_slot() {
            Some(slot) => {
                tokio::spawn(self.clone().lead(slot));
            }
            None if self.queue.claim_waiting_leader() => {
                let this = self.clone();
                tokio::spawn(async move {
                    let slot = this.connections.next_write_slot().await;
                    this.queue.end_waiting_leader();
                    if let Ok(slot) = slot {
                        this.lead(slot).await;
                    }
                });
            }
            None => {} // a leader is waiting for a slot already; it will take this one too
        }
    }

    /// Runs batches on one connection until nothing can be taken, then gives the connection
    /// back and looks once more (see the module's comment for why that order).
    async fn lead(self, slot: Slot) {
        let Ok(mut lease) = self.connections.lease(slot).await else {
            // Everything queued would fail the same way.
            return self.queue.fail_all(&DbError::Timeout);
        };
        let end = loop {
            let batch = self.queue.take();
            if batch.items.is_empty() {
                break End::Drained;
            }
            let run =
                self.connections
                    .bounded(sql::transact_batch(&mut lease, &batch.items, false));
            let started = Instant::now();
            let result = run.await;
            metrics::WRITE_CALL.observe(started.elapsed());
            match result {
                Ok(results) => batch.answer(results.into_iter().map(Ok).collect()),
                // One item's data refused, the batch rolled back: each item alone instead.
                Err(e) if e.is_refused_data() && batch.items.len() > 1 => {
                    let (answers, healthy) = self.run_alone(&mut lease, &batch.items).await;
                    batch.answer(answers);
                    if !healthy {
                        break End::Broken;
                    }
                }
                // The commit may or may not have happened: found out once the database is back.
                Err(e) if e.is_connection_lost() => {
                    self.connections.note_failure(&e);
                    break End::CutOff(batch, e);
                }
                Err(e) => {
                    tracing::error!(
                        operations = ?batch.ids(),
                        sqlstate = e.sql_state().as_deref(),
                        "batch failed: {e}"
                    );
                    self.connections.note_failure(&e);
                    batch.fail(&e);
                    break End::Broken;
                }
            }
        };
        // After a failure the connection's protocol state is unknown: dropped, closed.
        match end {
            End::Drained => lease.release(),
            End::Broken => drop(lease),
            End::CutOff(batch, e) => {
                // The dead connection's slot first: resuming takes a slot of its own.
                drop(lease);
                match resume(&self.connections, &batch.items, e).await {
                    Ok(results) => batch.answer(results.into_iter().map(Ok).collect()),
                    Err(e) => batch.fail(&e),
                }
            }
        }
        // Requests that arrived while this leader gave its connection back, or held back
        // for a client of the batch that failed.
        if self.queue.has_ready() {
            self.start_leader();
        }
    }

    /// Runs each item as a transaction of its own, each under the operation deadline, and
    /// whether the connection is still fit for use. Once one fails for another reason than
    /// its data, the rest are not sent and get that failure.
    async fn run_alone(&self, conn: &mut PgConnection, items: &[Operation]) -> (Vec<Answer>, bool) {
        let mut answers = Vec::with_capacity(items.len());
        let mut broken: Option<DbError> = None;
        for item in items {
            if let Some(e) = &broken {
                answers.push(Err(e.shared()));
                continue;
            }
            let answer = match self.connections.bounded(sql::transact(conn, item)).await {
                Err(e) if !e.is_refused_data() => {
                    tracing::error!(
                        client = item.client,
                        operation = item.id,
                        sqlstate = e.sql_state().as_deref(),
                        "transaction failed: {e}"
                    );
                    self.connections.note_failure(&e);
                    broken = Some(e.shared());
                    Err(e)
                }
                answer => answer,
            };
            answers.push(answer);
        }
        (answers, broken.is_none())
    }
}
