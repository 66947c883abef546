//! The group-commit queue: who waits, and what the next batch takes (the oldest waiting
//! transactions of clients with no batch running). Running it is the parent module's job.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::db::outcome::{Answer, DbError};
use crate::db::sql::Operation;
use crate::metrics;

struct Waiting {
    id: u64,
    enqueued: Instant,
    item: Operation,
    answer: oneshot::Sender<Answer>,
}

/// Items taken into one batch, and where each one's answer goes. Its clients are busy until
/// it is dropped (answered, failed, or abandoned).
pub(super) struct Batch<'q> {
    pub items: Vec<Operation>,
    answers: Vec<oneshot::Sender<Answer>>,
    clients: Vec<i32>,
    queue: &'q Queue,
}

impl Batch<'_> {
    /// Its operation ids, for the log.
    pub(super) fn ids(&self) -> Vec<i64> {
        self.items.iter().map(|item| item.id).collect()
    }

    /// Answers each item with its own result, in order.
    pub(super) fn answer(mut self, results: Vec<Answer>) {
        // One answer per item, or some request would get another's outcome or none.
        assert_eq!(results.len(), self.answers.len(), "answers for a batch");
        for (answer, result) in std::mem::take(&mut self.answers).into_iter().zip(results) {
            let _ = answer.send(result);
        }
    }

    /// The batch failed as a whole: nothing of it was applied, and every request gets 503.
    pub(super) fn fail(mut self, error: &DbError) {
        for answer in std::mem::take(&mut self.answers) {
            let _ = answer.send(Err(error.shared()));
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.clients.is_empty() {
            let mut state = self.queue.state.lock().expect("queue lock");
            state.busy.retain(|c| !self.clients.contains(c));
        }
    }
}

#[derive(Default)]
struct State {
    /// In order of arrival.
    waiting: VecDeque<Waiting>,
    /// Clients with a batch running; a handful (one per connection at most).
    busy: Vec<i32>,
}

impl State {
    fn is_ready(&self, client: i32) -> bool {
        !self.busy.contains(&client)
    }
}

pub(super) struct Queue {
    state: Mutex<State>,
    max: usize,
    next_id: AtomicU64,
    /// Whether a task is waiting for a connection slot in order to lead.
    leader_waiting: AtomicBool,
}

impl Queue {
    pub(super) fn new(max: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            max,
            next_id: AtomicU64::new(0),
            leader_waiting: AtomicBool::new(false),
        }
    }

    /// Enqueues `item`: its id (to withdraw it), where its answer will come, and whether it
    /// can be taken now. When not, its client's running batch has a leader, which takes it
    /// next; nobody else needs to lead for it.
    pub(super) fn push(&self, item: Operation) -> (u64, oneshot::Receiver<Answer>, bool) {
        let (answer, receiver) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Relaxed);
        let enqueued = Instant::now();
        let mut state = self.state.lock().expect("queue lock");
        let ready = state.is_ready(item.client);
        state.waiting.push_back(Waiting {
            id,
            enqueued,
            item,
            answer,
        });
        drop(state);
        if !ready {
            metrics::HELD.inc();
        }
        (id, receiver, ready)
    }

    /// Removes a request that is still waiting; false once it is in a batch.
    pub(super) fn withdraw(&self, id: u64) -> bool {
        let waiting = &mut self.state.lock().expect("queue lock").waiting;
        let before = waiting.len();
        waiting.retain(|w| w.id != id);
        waiting.len() < before
    }

    /// True for the one caller that is to wait for a slot and lead; false while one already is.
    pub(super) fn claim_waiting_leader(&self) -> bool {
        !self.leader_waiting.swap(true, Relaxed)
    }

    /// The waiting leader has its slot (or gave up): the next request that finds none waits.
    pub(super) fn end_waiting_leader(&self) {
        self.leader_waiting.store(false, Relaxed);
    }

    /// Whether a waiting request could be taken now (its client has no batch running).
    pub(super) fn has_ready(&self) -> bool {
        let state = self.state.lock().expect("queue lock");
        state.waiting.iter().any(|w| state.is_ready(w.item.client))
    }

    /// The next batch: up to `max` of the oldest waiting requests whose clients have no batch
    /// running (none if none can be taken). A client's requests stay in arrival order: all of
    /// them wait while its batch runs, and a batch takes the oldest first.
    pub(super) fn take(&self) -> Batch<'_> {
        let mut state = self.state.lock().expect("queue lock");
        let mut batch = Batch {
            items: Vec::new(),
            answers: Vec::new(),
            clients: Vec::new(),
            queue: self,
        };
        let mut i = 0;
        while i < state.waiting.len() && batch.items.len() < self.max {
            let client = state.waiting[i].item.client;
            if !state.is_ready(client) {
                i += 1;
                continue;
            }
            let w = state.waiting.remove(i).expect("index checked");
            metrics::WRITE_QUEUE.observe(w.enqueued.elapsed());
            if !batch.clients.contains(&client) {
                batch.clients.push(client);
            }
            batch.items.push(w.item);
            batch.answers.push(w.answer);
        }
        state.busy.extend_from_slice(&batch.clients);
        drop(state);
        if !batch.items.is_empty() {
            metrics::batch_taken(batch.items.len());
        }
        batch
    }

    /// Fails every waiting request (the database cannot be reached: they would all fail).
    pub(super) fn fail_all(&self, error: &DbError) {
        let waiting = std::mem::take(&mut self.state.lock().expect("queue lock").waiting);
        for w in waiting {
            let _ = w.answer.send(Err(error.shared()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(client: i32, amount: i32) -> Operation {
        Operation {
            client,
            id: 0,
            key: None,
            tx: crate::validation::Transaction {
                amount,
                kind: crate::validation::Kind::Credit,
                description: "x".into(),
            },
        }
    }

    fn amounts(batch: &Batch) -> Vec<i32> {
        batch.items.iter().map(|i| i.tx.amount).collect()
    }

    #[test]
    fn a_client_with_a_running_batch_waits_and_keeps_its_order() {
        let queue = Queue::new(16);
        for (client, amount) in [(1, 1), (1, 2), (2, 3)] {
            assert!(queue.push(item(client, amount)).2, "nothing runs yet");
        }
        let first = queue.take();
        assert_eq!(amounts(&first), [1, 2, 3], "one client twice in one batch");
        // Clients 1 and 2 now have a batch running.
        let held = crate::metrics::HELD.get();
        let (_, _, ready) = queue.push(item(1, 4));
        assert!(!ready);
        assert!(crate::metrics::HELD.get() > held, "counted as held");
        assert!(queue.push(item(3, 5)).2);
        assert!(!queue.push(item(1, 6)).2);
        assert_eq!(amounts(&queue.take()), [5], "client 3 goes on");
        assert!(!queue.has_ready());
        assert_eq!(amounts(&queue.take()), [] as [i32; 0]);
        first.fail(&DbError::Timeout);
        assert!(queue.has_ready());
        assert_eq!(amounts(&queue.take()), [4, 6], "in order of arrival");
    }

    #[test]
    fn a_batch_takes_at_most_max_and_the_rest_follows() {
        let queue = Queue::new(2);
        for amount in 1..=3 {
            queue.push(item(1, amount));
        }
        let first = queue.take();
        assert_eq!(amounts(&first), [1, 2]);
        assert!(!queue.has_ready(), "client 1's third waits for its batch");
        drop(first); // failed or abandoned: the client is free all the same
        assert_eq!(amounts(&queue.take()), [3]);
    }
}
