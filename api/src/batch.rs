//! Group commit: the credits and debits that arrive while every connection is busy wait
//! here, and the next connection to come free takes all of them (up to `DB_BATCH_MAX`) into
//! one database transaction (`transact_batch` in db/init.sql): one commit, one WAL flush and
//! one wake-up of PostgreSQL for the lot. Measured: BENCHMARKS.md, "Group commit".
//!
//! A batch is whatever is waiting when a connection becomes free; nothing ever waits for a
//! batch to fill, so at light load every batch holds one transaction and runs as soon as it
//! arrives, with the single statement of the unbatched path.
//!
//! Who runs batches: a request that finds a free connection slot starts a leader task; the
//! leader takes batches until the queue is empty, then gives the connection back and looks
//! at the queue once more. A request that finds no free slot makes sure one task is waiting
//! for the next slot to come free, whoever frees it (a statement read holds slots too), to
//! lead from there. So an enqueued request is never left without a leader.
//!
//! Deadlines keep the unbatched promises: a request still waiting (not yet in a batch) after
//! `DB_TIMEOUT_MS` withdraws and gets 503, never sent; one inside a batch has that batch's
//! outcome, bounded by the operation deadline, and PostgreSQL's statement_timeout rolls the
//! whole batch back before the API gives up, so a 503 never hides an applied transaction.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::db::{Applied, DbError};

/// One credit or debit as the database applies it.
pub struct Item {
    pub client: i32,
    /// Signed: positive for a credit, negative for a debit.
    pub delta: i64,
    pub amount: i32,
    pub kind: &'static str,
    pub description: String,
}

/// A request's answer, when its batch is done.
pub type Answer = Result<Applied, DbError>;

struct Waiting {
    id: u64,
    item: Item,
    answer: oneshot::Sender<Answer>,
}

/// Items taken into one batch, and where each one's answer goes.
pub struct Batch {
    pub items: Vec<Item>,
    answers: Vec<oneshot::Sender<Answer>>,
}

impl Batch {
    /// Answers each item with its own result, in order.
    pub fn answer(self, results: Vec<Applied>) {
        for (answer, result) in self.answers.into_iter().zip(results) {
            let _ = answer.send(Ok(result));
        }
    }

    /// The batch failed as a whole: nothing of it was applied, and every request gets 503.
    pub fn fail(self, error: &DbError) {
        for answer in self.answers {
            let _ = answer.send(Err(error.shared()));
        }
    }
}

pub struct Queue {
    waiting: Mutex<VecDeque<Waiting>>,
    max: usize,
    next_id: AtomicU64,
    /// Whether a task is waiting for a connection slot in order to lead.
    leader_waiting: AtomicBool,
    /// For the report at shutdown: batches run and transactions in them, the largest.
    batches: AtomicU64,
    transactions: AtomicU64,
    largest: AtomicU64,
}

impl Queue {
    pub fn new(max: usize) -> Queue {
        Queue {
            waiting: Mutex::new(VecDeque::new()),
            max,
            next_id: AtomicU64::new(0),
            leader_waiting: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        }
    }

    /// Enqueues `item`; its id (to withdraw it) and where its answer will come.
    pub fn push(&self, item: Item) -> (u64, oneshot::Receiver<Answer>) {
        let (answer, receiver) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Relaxed);
        let waiting = Waiting { id, item, answer };
        self.waiting.lock().expect("queue lock").push_back(waiting);
        (id, receiver)
    }

    /// Removes a request that is still waiting; false once it is in a batch.
    pub fn withdraw(&self, id: u64) -> bool {
        let mut waiting = self.waiting.lock().expect("queue lock");
        let before = waiting.len();
        waiting.retain(|w| w.id != id);
        waiting.len() < before
    }

    /// True for the one caller that is to wait for a slot and lead; false while one already is.
    pub fn claim_waiting_leader(&self) -> bool {
        !self.leader_waiting.swap(true, Relaxed)
    }

    /// The waiting leader has its slot (or gave up): the next request that finds none waits.
    pub fn end_waiting_leader(&self) {
        self.leader_waiting.store(false, Relaxed);
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.lock().expect("queue lock").is_empty()
    }

    /// The next batch: up to `max` of the oldest waiting requests (none if none wait).
    pub fn take(&self) -> Batch {
        let mut waiting = self.waiting.lock().expect("queue lock");
        let n = waiting.len().min(self.max);
        let mut batch = Batch {
            items: Vec::with_capacity(n),
            answers: Vec::with_capacity(n),
        };
        for w in waiting.drain(..n) {
            batch.items.push(w.item);
            batch.answers.push(w.answer);
        }
        drop(waiting);
        if n > 0 {
            self.batches.fetch_add(1, Relaxed);
            self.transactions.fetch_add(n as u64, Relaxed);
            self.largest.fetch_max(n as u64, Relaxed);
        }
        batch
    }

    /// Fails every waiting request (the database cannot be reached: they would all fail).
    pub fn fail_all(&self, error: &DbError) {
        let waiting = std::mem::take(&mut *self.waiting.lock().expect("queue lock"));
        for w in waiting {
            let _ = w.answer.send(Err(error.shared()));
        }
    }

    /// "N transactions in M batches (mean X, largest Y)".
    pub fn report(&self) -> String {
        let (batches, transactions) = (self.batches.load(Relaxed), self.transactions.load(Relaxed));
        format!(
            "{transactions} transactions in {batches} batches (mean {:.2}, largest {})",
            transactions as f64 / batches.max(1) as f64,
            self.largest.load(Relaxed)
        )
    }
}
