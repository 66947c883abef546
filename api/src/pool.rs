//! A fixed-size pool of PostgreSQL connections.
//!
//! sqlx's `PgPool` pings every connection on its way back to the pool (sqlx 0.8,
//! `PoolConnection::return_to_pool`): a second round trip after every query, which wakes
//! PostgreSQL a second time per request and sits outside any deadline of ours. This pool
//! does without it. A connection goes back to the pool only through [`Lease::release`],
//! called after its operation completed; a lease dropped any other way (an error, or a
//! deadline that cancelled the operation mid-query) closes its connection, because its
//! protocol state is unknown, and the next acquire opens a fresh one. A connection found
//! dead usually means the server restarted, so the idle ones can be closed with it
//! ([`Pool::discard_idle`]).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serverkit::backoff::Backoff;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Waits between connects while the database is down (bounded by the callers' deadlines).
const CONNECT_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(250));

#[derive(Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    options: PgConnectOptions,
    size: u32,
    /// One permit per connection that may exist; a lease holds one.
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<PgConnection>>,
}

impl Pool {
    /// Opens all `size` connections now, so the first requests do not pay for them.
    pub(crate) async fn connect(options: PgConnectOptions, size: u32) -> Result<Pool, sqlx::Error> {
        let mut idle = Vec::with_capacity(size as usize);
        for _ in 0..size {
            idle.push(open(&options).await?);
        }
        Ok(Pool {
            shared: Arc::new(Shared {
                options,
                size,
                slots: Arc::new(Semaphore::new(size as usize)),
                idle: Mutex::new(idle),
            }),
        })
    }

    /// Waits for a free slot, then hands out an idle connection or opens a new one.
    pub(crate) async fn acquire(&self) -> Result<Lease, sqlx::Error> {
        let permit = Arc::clone(&self.shared.slots)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        Ok(self.lease(Slot(permit)).await)
    }

    /// The next free slot, whoever frees it.
    pub(crate) async fn slot(&self) -> Result<Slot, sqlx::Error> {
        Arc::clone(&self.shared.slots)
            .acquire_owned()
            .await
            .map(Slot)
            .map_err(|_| sqlx::Error::PoolClosed)
    }

    /// A free slot now, if there is one (group commit starts a batch only then).
    pub(crate) fn try_slot(&self) -> Option<Slot> {
        Arc::clone(&self.shared.slots)
            .try_acquire_owned()
            .ok()
            .map(Slot)
    }

    /// The connection for a slot: an idle one, or a new one. A connect that fails is tried
    /// again (50 ms, doubling to 250 ms) until the caller's deadline cancels this: while
    /// PostgreSQL restarts, requests wait for it and then succeed instead of failing at once.
    pub(crate) async fn lease(&self, slot: Slot) -> Lease {
        let Slot(permit) = slot;
        let idle = self.shared.idle.lock().expect("pool lock").pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.connect_until_up().await,
        };
        Lease {
            connection: Some(connection),
            shared: Arc::clone(&self.shared),
            _permit: permit,
        }
    }

    async fn connect_until_up(&self) -> PgConnection {
        for wait in CONNECT_RETRY.waits() {
            match open(&self.shared.options).await {
                Ok(connection) => return connection,
                Err(_) => tokio::time::sleep(wait).await,
            }
        }
        unreachable!("the waits never end")
    }

    /// Closes the idle connections: after one connection was lost (the server restarted, say),
    /// the others are most likely dead too, and each would cost a request its answer.
    pub(crate) fn discard_idle(&self) {
        self.shared.idle.lock().expect("pool lock").clear();
    }

    /// Waits for every lease to end, then closes the connections politely.
    pub(crate) async fn close(&self) {
        if let Ok(all) = self.shared.slots.acquire_many(self.shared.size).await {
            all.forget();
            self.shared.slots.close();
        }
        let idle = std::mem::take(&mut *self.shared.idle.lock().expect("pool lock"));
        for connection in idle {
            let _ = connection.close().await;
        }
    }
}

/// A new connection to a writable server. Behind a proxy that follows the primary (the HA
/// deployment, `ha/`), a connection opened while the proxy still points at a demoted or
/// frozen primary would be pinned there: such a server answers `SELECT 1` but refuses
/// every write. So each new connection asks once, and one to a standby is refused (the
/// caller tries again, and meanwhile the proxy moves on). One round trip per connection
/// opened, not per query.
async fn open(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut connection = PgConnection::connect_with(options).await?;
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut connection)
        .await?;
    if standby {
        let _ = connection.close().await;
        return Err(sqlx::Error::Protocol(
            "connected to a standby (pg_is_in_recovery()): the primary moved".into(),
        ));
    }
    Ok(connection)
}

/// The right to hold one connection, before it is taken.
pub(crate) struct Slot(OwnedSemaphorePermit);

/// A connection held for one operation.
pub(crate) struct Lease {
    connection: Option<PgConnection>,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Returns the connection for reuse. Only for a connection whose last operation completed,
    /// so it is idle and ready for the next query.
    pub(crate) fn release(mut self) {
        if let Some(connection) = self.connection.take() {
            self.shared.idle.lock().expect("pool lock").push(connection);
        }
    }
}

impl Deref for Lease {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.connection.as_ref().expect("leased connection")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("leased connection")
    }
}
