//! At most a fixed number of connections at once. Past it, new connections wait in the
//! kernel (the accept queue, or the handoff socket's queue) instead of growing memory without
//! bound under overload: the balancer was OOM-killed at ten times the official load before
//! this.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::handoff::count::SharedCount;

/// At most `max` connections open at once, shared by every source of a server.
#[derive(Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: u32,
    counts: Arc<Counts>,
}

/// Open connections: places taken by a connection, not those a source holds while it
/// waits for the next one.
#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    /// The same number, where other processes read it (`handoff::count`).
    published: Option<SharedCount>,
}

/// A place under the limit, given back when dropped. It counts as an open connection once
/// `opened` says a connection holds it.
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
    counts: Arc<Counts>,
    opened: bool,
}

impl ConnectionPermit {
    /// A connection now holds this place.
    pub fn opened(&mut self) {
        if !self.opened {
            self.opened = true;
            self.counts.open.fetch_add(1, Relaxed);
            if let Some(count) = &self.counts.published {
                count.add(1);
            }
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if self.opened {
            self.counts.open.fetch_sub(1, Relaxed);
            if let Some(count) = &self.counts.published {
                count.sub(1);
            }
        }
    }
}

impl ConnectionLimit {
    /// A limit of `max` connections.
    pub fn new(max: usize) -> ConnectionLimit {
        let max = u32::try_from(max).expect("connection limits fit in u32");
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            counts: Arc::default(),
        }
    }

    /// Keeps the number of open connections in `count` too, for a balancer to read. Call
    /// before any permit is taken.
    pub fn publish(mut self, count: SharedCount) -> ConnectionLimit {
        self.counts = Arc::new(Counts {
            open: AtomicUsize::new(0),
            published: Some(count),
        });
        self
    }

    /// Waits until fewer than the maximum connections are open.
    pub async fn acquire(&self) -> ConnectionPermit {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.permit(permit)
    }

    /// A place if one is free now.
    pub fn try_acquire(&self) -> Option<ConnectionPermit> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.permit(permit))
    }

    fn permit(&self, permit: OwnedSemaphorePermit) -> ConnectionPermit {
        ConnectionPermit {
            _permit: permit,
            counts: self.counts.clone(),
            opened: false,
        }
    }

    /// How many connections are open now.
    pub fn open(&self) -> usize {
        self.counts.open.load(Relaxed)
    }

    /// Waits until every permit has been given back: all connections are closed.
    pub async fn all_closed(&self) {
        drop(
            self.permits
                .acquire_many(self.max)
                .await
                .expect("the semaphore is never closed"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn permits_bound_connections_and_publish_the_count() {
        let dir = std::env::temp_dir().join(format!("serverkit-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("count");
        let limit = ConnectionLimit::new(2).publish(SharedCount::create(&path).unwrap());
        let view = crate::handoff::count::CountView::open(&path).unwrap();
        let mut a = limit.acquire().await;
        let mut b = limit.try_acquire().expect("a second place");
        assert!(limit.try_acquire().is_none(), "full at two");
        assert_eq!((limit.open(), view.get()), (0, 0), "reserved, not open yet");
        a.opened();
        b.opened();
        b.opened();
        assert_eq!((limit.open(), view.get()), (2, 2));
        let closed = tokio::spawn({
            let limit = limit.clone();
            async move { limit.all_closed().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!closed.is_finished(), "one still open");
        assert_eq!(view.get(), 1);
        drop(b);
        closed.await.unwrap();
        assert_eq!(view.get(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
