//! The watches of one server's connections: the sweeper that closes those past their
//! deadline, and shedding at the connection cap.

use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::watch::{Clock, Entry, Phase, Watch};
use super::Deadlines;

/// A connection is shed only after it has been this long in its phase: a request that has
/// just arrived is not yet slow, it is only not read yet.
pub const SHED_AFTER: Duration = Duration::from_millis(200);

/// The watches of one server's connections, and its sweeper.
pub struct Watchlist {
    deadlines: Deadlines,
    clock: Arc<Clock>,
    entries: Mutex<Vec<Arc<Entry>>>,
}

impl Watchlist {
    /// A watchlist whose sweeper runs as a task of the current runtime until the list is
    /// dropped.
    pub fn start(deadlines: Deadlines) -> Arc<Watchlist> {
        let list = Arc::new(Watchlist {
            deadlines,
            clock: Arc::new(Clock {
                start: Instant::now(),
            }),
            entries: Mutex::new(Vec::new()),
        });
        tokio::spawn(sweep(Arc::downgrade(&list), deadlines.tick()));
        list
    }

    /// A watch for a connection that has just opened.
    pub fn watch(&self) -> Watch {
        let entry = Arc::new(Entry {
            state: AtomicU64::new(self.clock.read()),
            clock: self.clock.clone(),
            cut: AtomicU8::new(0),
            close: Notify::new(),
            request_began: AtomicU64::new(self.clock.start.elapsed().as_micros() as u64),
        });
        self.entries
            .lock()
            .expect("watchlist lock")
            .push(entry.clone());
        Watch(entry)
    }

    /// Closes the connection doing least, if one has been at it for SHED_AFTER: the longest
    /// idle, else the longest incomplete request. Returns whether it closed one.
    pub fn shed_one(&self) -> bool {
        let now = self.clock.read();
        let old_enough = SHED_AFTER.as_millis() as u64;
        let entries = self.entries.lock().expect("watchlist lock");
        let victim = entries
            .iter()
            .filter(|entry| entry.cut_in().is_none() && Arc::strong_count(entry) > 1)
            .filter_map(|entry| {
                let (phase, since) = entry.load();
                let rank = match phase {
                    Phase::Idle => 0,
                    Phase::Fresh | Phase::Head | Phase::Body => 1,
                    Phase::Busy => return None,
                };
                (now.saturating_sub(since) >= old_enough).then_some(((rank, since), phase, entry))
            })
            .min_by_key(|(order, _, _)| *order);
        match victim {
            Some((_, phase, entry)) => {
                entry.cut(phase);
                true
            }
            None => false,
        }
    }

    /// Closes every connection past its phase's deadline; forgets closed ones.
    fn sweep_once(&self) {
        let now = self.clock.read();
        self.entries
            .lock()
            .expect("watchlist lock")
            .retain(|entry| {
                if Arc::strong_count(entry) == 1 {
                    return false; // the connection is gone
                }
                let (phase, since) = entry.load();
                if let (None, Some(limit)) = (entry.cut_in(), self.deadlines.of(phase)) {
                    if now.saturating_sub(since) >= limit.as_millis() as u64 {
                        entry.cut(phase);
                    }
                }
                true
            });
    }
}

async fn sweep(list: Weak<Watchlist>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match list.upgrade() {
            Some(list) => list.sweep_once(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_phase_meets_its_deadline() {
        let list = Watchlist::start(Deadlines {
            header: Duration::from_millis(100),
            body: Duration::from_millis(200),
            idle: Duration::from_millis(400),
        });
        let fresh = list.watch();
        let head = list.watch();
        head.client_sent();
        let body = list.watch();
        body.enter(Phase::Body);
        let idle = list.watch();
        idle.enter(Phase::Idle);
        let busy = list.watch();
        busy.enter(Phase::Busy);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(fresh.closed().await, Phase::Fresh);
        assert_eq!(head.closed().await, Phase::Head);
        assert!(body.0.cut_in().is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(body.closed().await, Phase::Body);
        assert!(idle.0.cut_in().is_none());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(idle.closed().await, Phase::Idle);
        assert!(
            busy.0.cut_in().is_none(),
            "a request being handled has no deadline here"
        );
        drop((fresh, head, body, idle, busy));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            list.entries.lock().unwrap().is_empty(),
            "closed watches are forgotten"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shedding_takes_the_longest_idle_then_the_longest_incomplete() {
        let list = Watchlist::start(Deadlines::DEFAULT);
        let busy = list.watch();
        busy.enter(Phase::Busy);
        let slow = list.watch();
        slow.client_sent();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = list.watch();
        idle.enter(Phase::Idle);
        let young = list.watch();
        tokio::time::sleep(Duration::from_millis(150)).await;
        // slow: 250 ms in its head; idle: 150 ms, too young to shed yet.
        assert!(list.shed_one());
        assert_eq!(slow.closed().await, Phase::Head);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(list.shed_one());
        assert_eq!(
            idle.closed().await,
            Phase::Idle,
            "idle first, once old enough"
        );
        assert!(list.shed_one());
        assert_eq!(young.closed().await, Phase::Fresh);
        assert!(!list.shed_one(), "a busy connection is never shed");
        assert!(busy.0.cut_in().is_none());
    }
}
