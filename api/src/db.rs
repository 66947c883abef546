//! Everything the API asks of PostgreSQL.
//!
//! Consistency lives in the database: a credit or debit locks the client's row
//! (`SELECT ... FOR UPDATE`) for the length of its transaction, and a statement is read in a
//! single statement, so it is one snapshot. Nothing is cached in the API process, so two
//! instances behind the balancer always agree.

use std::sync::Arc;
use std::time::Duration;

use serverkit::backoff::Backoff;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use crate::batch::{Answer, Item, Queue};
use crate::config::{Config, TxShape};
use crate::pool::{Pool, Slot};
use crate::validation::NewTransaction;

/// Why a database operation gave no answer. Every variant means "try again later" (503).
#[derive(Debug)]
pub enum DbError {
    /// No connection or no answer within `DB_TIMEOUT_MS`.
    Timeout,
    Sqlx(sqlx::Error),
    /// The batch this request was in failed (as a whole: nothing of it was applied).
    Batch(String),
}

impl DbError {
    /// Whether PostgreSQL refused the data of a statement (class 22, data exception, or 23,
    /// integrity constraint violation): that input would be refused again, unlike an error
    /// of the connection or the server, and nothing of the statement was applied.
    pub fn is_refused_data(&self) -> bool {
        match self {
            DbError::Sqlx(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            _ => false,
        }
    }

    /// The same error for each request of a failed batch.
    pub fn shared(&self) -> DbError {
        match self {
            DbError::Timeout => DbError::Timeout,
            other => DbError::Batch(other.to_string()),
        }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Timeout => f.write_str("database did not answer in time"),
            DbError::Sqlx(e) => write!(f, "database error: {e}"),
            DbError::Batch(e) => write!(f, "batch failed: {e}"),
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError::Sqlx(e)
    }
}

/// What became of a credit or debit.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Done {
        balance: i32,
        limit: i32,
    },
    /// A debit past the limit, or a credit past the 32-bit balance range. Nothing changed.
    Refused,
    UnknownClient,
}

/// One line of a statement; `at` is microseconds since the Unix epoch.
pub struct Entry {
    pub amount: i32,
    pub kind: String,
    pub description: String,
    pub at: i64,
}

pub struct Statement {
    pub balance: i32,
    pub limit: i32,
    /// At most ten, newest first.
    pub entries: Vec<Entry>,
}

#[derive(Clone)]
pub struct Database {
    /// Credits and debits (and statement reads when `reads` is None).
    pool: Pool,
    /// Statement reads only. A commit can wait a long time for the disk (a virtual disk's
    /// flush measured 310 ms, BENCHMARKS.md "The tail"), and then every transaction
    /// connection waits with it; a read needs no flush, and on a connection of its own it is
    /// answered meanwhile.
    reads: Option<Pool>,
    /// Bound for waiting for a free connection.
    acquire_timeout: Duration,
    /// Local backstop for one operation once sent; longer than the server's statement_timeout.
    timeout: Duration,
    tx_shape: TxShape,
    /// Group commit's queue; None runs every transaction alone (DB_BATCH_MAX=1, or the
    /// client-driven shape, kept unbatched for comparison).
    batch: Option<Arc<Queue>>,
}

// A credit or debit in one statement: one round trip, and atomic without an explicit
// transaction. `cliente` locks the client's row (a concurrent transaction of the same client
// is waited for, and its result read); the update applies only within the limit and the
// 32-bit range; the insert runs only if the update did. The first column tells an unknown
// client from a refused one. bench/pg-shapes measures it against the PL/pgSQL function this
// project used first, and against a conditional UPDATE without SELECT ... FOR UPDATE.
const TRANSACT: &str = "\
    WITH cliente AS ( \
         SELECT saldo::int8 + $2::int8 AS novo_saldo, limite \
           FROM clientes WHERE id = $1 FOR UPDATE), \
     atualizado AS ( \
         UPDATE clientes c SET saldo = cliente.novo_saldo FROM cliente \
          WHERE c.id = $1 AND cliente.novo_saldo BETWEEN -cliente.limite AND 2147483647 \
         RETURNING c.saldo, c.limite), \
     lancamento AS ( \
         INSERT INTO transacoes (cliente_id, valor, tipo, descricao) \
         SELECT $1, $3, $4::char, $5 FROM atualizado) \
    SELECT EXISTS (SELECT FROM cliente), atualizado.saldo, atualizado.limite \
      FROM (VALUES (1)) AS um LEFT JOIN atualizado ON true";

// One statement, so balance and entries come from one snapshot. Entries sort by id, the
// insertion order, because timestamps can tie.
const STATEMENT: &str = "\
    SELECT c.saldo, c.limite, t.valor, t.tipo, t.descricao, \
           (extract(epoch FROM t.realizada_em) * 1000000)::int8 AS realizada_em \
      FROM clientes c \
      LEFT JOIN LATERAL ( \
           SELECT id, valor, tipo, descricao, realizada_em FROM transacoes \
            WHERE cliente_id = c.id ORDER BY id DESC LIMIT 10) t ON true \
     WHERE c.id = $1 \
     ORDER BY t.id DESC";

impl Database {
    /// Connects, retrying with backoff for up to `config.db_wait`: in compose the database
    /// may still be starting when the API does.
    pub async fn connect(config: &Config) -> Result<Database, String> {
        // The server cancels (and so rolls back) a statement that outlives DB_TIMEOUT_MS, so a
        // request answered 503 for slowness is never applied behind the client's back.
        let connect = config.database.clone().options([(
            "statement_timeout",
            format!("{}ms", config.db_timeout.as_millis()),
        )]);
        let deadline = tokio::time::Instant::now() + config.db_wait;
        let retry = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        for wait in retry.waits() {
            let pools = async {
                let pool = Pool::connect(connect.clone(), config.pool_size).await?;
                let reads = match config.read_pool_size {
                    0 => None,
                    size => Some(Pool::connect(connect.clone(), size).await?),
                };
                Ok::<_, sqlx::Error>((pool, reads))
            };
            match pools.await {
                Ok((pool, reads)) => {
                    return Ok(Database {
                        pool,
                        reads,
                        acquire_timeout: config.db_timeout,
                        // The margin lets the server-side timeout fire first; this one is for a
                        // database that stopped answering at all.
                        timeout: config.db_timeout + Duration::from_millis(250),
                        tx_shape: config.tx_shape,
                        batch: (config.batch_max > 1 && config.tx_shape == TxShape::Statement)
                            .then(|| Arc::new(Queue::new(config.batch_max))),
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

    pub async fn transact(&self, client: i32, tx: &NewTransaction<'_>) -> Result<Applied, DbError> {
        if let Some(queue) = &self.batch {
            return self.transact_in_batch(queue, client, tx).await;
        }
        let shape = self.tx_shape;
        self.on_connection(&self.pool, async |conn| match shape {
            TxShape::Statement => transact_statement(conn, client, tx).await,
            TxShape::Client => transact_client_side(conn, client, tx).await,
        })
        .await
    }

    pub async fn statement(&self, client: i32) -> Result<Option<Statement>, DbError> {
        let pool = self.reads.as_ref().unwrap_or(&self.pool);
        self.on_connection(pool, async |conn| read_statement(conn, client).await)
            .await
    }

    /// Runs one operation on a pooled connection, under two deadlines so a stalled database
    /// turns into a quick 503 rather than a hung request: one for getting a connection, one for
    /// the operation. The second starts when the operation does and outlasts the server's
    /// statement_timeout, so a statement cut short is rolled back by the server, never applied
    /// after the 503. The connection is reused only if the operation completed.
    async fn on_connection<T>(
        &self,
        pool: &Pool,
        operation: impl AsyncFnOnce(&mut PgConnection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut lease = tokio::time::timeout(self.acquire_timeout, pool.acquire())
            .await
            .map_err(|_| DbError::Timeout)??;
        let result = tokio::time::timeout(self.timeout, operation(&mut lease))
            .await
            .unwrap_or(Err(DbError::Timeout));
        match &result {
            Ok(_) => lease.release(),
            Err(e) => self.note_failure(e),
        }
        result
    }

    /// After an operation failed (its connection is closed, not reused): when the server end
    /// was gone, PostgreSQL restarted, and the idle connections are most likely dead too.
    fn note_failure(&self, error: &DbError) {
        if let DbError::Sqlx(e) = error {
            if connection_lost(e) {
                self.pools().for_each(Pool::discard_idle);
            }
        }
    }

    /// Group commit (`crate::batch`): waits in the queue for a batch, starting a leader if a
    /// connection is free.
    async fn transact_in_batch(
        &self,
        queue: &Arc<Queue>,
        client: i32,
        tx: &NewTransaction<'_>,
    ) -> Result<Applied, DbError> {
        let (id, mut answer, ready) = queue.push(Item {
            client,
            delta: tx.signed_amount(),
            amount: tx.amount,
            kind: tx.kind.code(),
            description: tx.description.to_string(),
        });
        if ready {
            self.start_leader(queue);
        }
        match tokio::time::timeout(self.acquire_timeout, &mut answer).await {
            Ok(answer) => answer.unwrap_or(Err(DbError::Timeout)),
            // Still waiting: withdrawn, never sent.
            Err(_) if queue.withdraw(id) => Err(DbError::Timeout),
            // In a batch: its outcome, which the batch's own deadline bounds.
            Err(_) => answer.await.unwrap_or(Err(DbError::Timeout)),
        }
    }

    /// Makes sure a task will take what is queued: a leader on a free connection slot, or
    /// one task waiting for the next slot to come free, whoever frees it (statement reads
    /// hold slots too when DB_READ_POOL_SIZE=0), to lead from there.
    fn start_leader(&self, queue: &Arc<Queue>) {
        match self.pool.try_slot() {
            Some(slot) => {
                tokio::spawn(self.clone().lead(queue.clone(), slot));
            }
            None if queue.claim_waiting_leader() => {
                let (db, queue) = (self.clone(), queue.clone());
                tokio::spawn(async move {
                    let slot = tokio::time::timeout(db.acquire_timeout, db.pool.slot()).await;
                    queue.end_waiting_leader();
                    if let Ok(Ok(slot)) = slot {
                        db.lead(queue, slot).await;
                    }
                });
            }
            None => {} // a leader is waiting for a slot already; it will take this one too
        }
    }

    /// Runs batches on one connection until nothing can be taken, then gives the connection
    /// back and looks once more (see `crate::batch` for why that order).
    async fn lead(self, queue: Arc<Queue>, slot: Slot) {
        // The same bound as a request's wait for a connection: past it the database is
        // down for good, and everything queued would fail anyway.
        let lease = tokio::time::timeout(self.acquire_timeout, self.pool.lease(slot)).await;
        let Ok(mut lease) = lease else {
            return queue.fail_all(&DbError::Timeout);
        };
        let completed = loop {
            let batch = queue.take();
            if batch.items.is_empty() {
                break true;
            }
            let run = tokio::time::timeout(self.timeout, run_batch(&mut lease, &batch.items));
            match run.await.unwrap_or(Err(DbError::Timeout)) {
                Ok(results) => batch.answer(results.into_iter().map(Ok).collect()),
                // One item's data refused, the batch rolled back: each item alone instead.
                Err(e) if e.is_refused_data() && batch.items.len() > 1 => {
                    let (answers, healthy) = self.run_alone(&mut lease, &batch.items).await;
                    batch.answer(answers);
                    if !healthy {
                        break false;
                    }
                }
                Err(e) => {
                    eprintln!("api: {e}");
                    self.note_failure(&e);
                    batch.fail(&e);
                    break false;
                }
            }
        };
        // After a failure the connection's protocol state is unknown: dropped, closed.
        if completed {
            lease.release();
        } else {
            drop(lease);
        }
        // Requests that arrived while this leader gave its connection back, or held back
        // for a client of the batch that failed.
        if queue.has_ready() {
            self.start_leader(&queue);
        }
    }

    /// Runs each item as a batch of its own, each under the operation deadline, and whether
    /// the connection is still fit for use. Once one fails for another reason than its data,
    /// the rest are not sent and get that failure.
    async fn run_alone(&self, lease: &mut PgConnection, items: &[Item]) -> (Vec<Answer>, bool) {
        let mut answers = Vec::with_capacity(items.len());
        let mut broken: Option<DbError> = None;
        for item in items {
            if let Some(e) = &broken {
                answers.push(Err(e.shared()));
                continue;
            }
            let run =
                tokio::time::timeout(self.timeout, run_batch(lease, std::slice::from_ref(item)));
            let answer = match run.await.unwrap_or(Err(DbError::Timeout)) {
                Ok(mut results) => Ok(results.remove(0)),
                Err(e) if e.is_refused_data() => Err(e),
                Err(e) => {
                    eprintln!("api: {e}");
                    self.note_failure(&e);
                    broken = Some(e.shared());
                    Err(e)
                }
            };
            answers.push(answer);
        }
        (answers, broken.is_none())
    }

    /// Closes every connection; in-flight operations finish first.
    pub async fn close(&self) {
        if let Some(queue) = &self.batch {
            eprintln!("api: group commit: {}", queue.report());
        }
        for pool in self.pools() {
            pool.close().await;
        }
    }

    /// Every pool: the transactions' and, when there is one, the reads'.
    fn pools(&self) -> impl Iterator<Item = &Pool> {
        std::iter::once(&self.pool).chain(&self.reads)
    }
}

// Several credits and debits in one call, one transaction: db/init.sql's transact_batch.
const TRANSACT_BATCH: &str = "SELECT existe, saldo, limite FROM transact_batch($1, $2, $3, $4, $5)";

/// One batch: a single item takes the single statement (cheaper for one); more take the
/// batch function. The results are in the items' order.
async fn run_batch(conn: &mut PgConnection, items: &[Item]) -> Result<Vec<Applied>, DbError> {
    if let [item] = items {
        let row = sqlx::query(TRANSACT)
            .bind(item.client)
            .bind(item.delta)
            .bind(item.amount)
            .bind(item.kind)
            .bind(&item.description)
            .fetch_one(conn)
            .await?;
        return Ok(vec![applied(&row)?]);
    }
    let rows = sqlx::query(TRANSACT_BATCH)
        .bind(items.iter().map(|i| i.client).collect::<Vec<i32>>())
        .bind(items.iter().map(|i| i.delta).collect::<Vec<i64>>())
        .bind(items.iter().map(|i| i.amount).collect::<Vec<i32>>())
        .bind(items.iter().map(|i| i.kind).collect::<Vec<&str>>())
        .bind(
            items
                .iter()
                .map(|i| i.description.as_str())
                .collect::<Vec<&str>>(),
        )
        .fetch_all(conn)
        .await?;
    if rows.len() != items.len() {
        return Err(DbError::Batch(format!(
            "transact_batch answered {} rows for {} transactions",
            rows.len(),
            items.len()
        )));
    }
    rows.iter().map(applied).collect()
}

/// A row of (exists, new balance or NULL, limit or NULL) as the outcome of one transaction.
fn applied(row: &sqlx::postgres::PgRow) -> Result<Applied, DbError> {
    let found: bool = row.try_get(0)?;
    Ok(match row.try_get::<Option<i32>, _>(1)? {
        Some(balance) => Applied::Done {
            balance,
            limit: row.try_get(2)?,
        },
        None if found => Applied::Refused,
        None => Applied::UnknownClient,
    })
}

/// Whether an error means the server end of the connection is gone (a restart or crash of
/// PostgreSQL, a terminated backend) rather than a problem with one statement.
fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        // 08: connection exception; 57P: operator intervention (shutdown, crash, terminated).
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

async fn transact_statement(
    conn: &mut PgConnection,
    client: i32,
    tx: &NewTransaction<'_>,
) -> Result<Applied, DbError> {
    let row = sqlx::query(TRANSACT)
        .bind(client)
        .bind(tx.signed_amount())
        .bind(tx.amount)
        .bind(tx.kind.code())
        .bind(tx.description.as_ref())
        .fetch_one(conn)
        .await?;
    applied(&row)
}

/// The same rules as `TRANSACT`, in five round trips. A refused or unknown-client transaction
/// is rolled back explicitly, so the connection is left idle and can be reused.
async fn transact_client_side(
    conn: &mut PgConnection,
    client: i32,
    new: &NewTransaction<'_>,
) -> Result<Applied, DbError> {
    let mut tx = conn.begin().await?;
    let row = sqlx::query("SELECT saldo, limite FROM clientes WHERE id = $1 FOR UPDATE")
        .bind(client)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(Applied::UnknownClient);
    };
    let (balance, limit): (i32, i32) = (row.try_get(0)?, row.try_get(1)?);
    let balance = match i32::try_from(i64::from(balance) + new.signed_amount()) {
        Ok(balance) if balance >= -limit => balance,
        _ => {
            tx.rollback().await?;
            return Ok(Applied::Refused);
        }
    };
    sqlx::query("UPDATE clientes SET saldo = $2 WHERE id = $1")
        .bind(client)
        .bind(balance)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO transacoes (cliente_id, valor, tipo, descricao) VALUES ($1, $2, $3::char, $4)",
    )
    .bind(client)
    .bind(new.amount)
    .bind(new.kind.code())
    .bind(new.description.as_ref())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied::Done { balance, limit })
}

async fn read_statement(
    conn: &mut PgConnection,
    client: i32,
) -> Result<Option<Statement>, DbError> {
    let rows = sqlx::query(STATEMENT).bind(client).fetch_all(conn).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut statement = Statement {
        balance: first.try_get(0)?,
        limit: first.try_get(1)?,
        entries: Vec::with_capacity(rows.len()),
    };
    for row in &rows {
        // A client without transactions yields one row of NULLs from the LEFT JOIN.
        if let Some(amount) = row.try_get::<Option<i32>, _>(2)? {
            statement.entries.push(Entry {
                amount,
                kind: row.try_get(3)?,
                description: row.try_get(4)?,
                at: row.try_get(5)?,
            });
        }
    }
    Ok(Some(statement))
}
