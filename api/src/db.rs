//! Everything the API asks of PostgreSQL.
//!
//! Consistency lives in the database: a credit or debit locks the client's row
//! (`SELECT ... FOR UPDATE`) for the length of its transaction, and a statement is read in a
//! single statement, so it is one snapshot. Nothing is cached in the API process, so two
//! instances behind the balancer always agree.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use crate::config::{Config, TxShape};
use crate::validation::NewTransaction;

/// Why a database operation gave no answer. Every variant means "try again later" (503).
#[derive(Debug)]
pub enum DbError {
    /// No connection or no answer within `DB_TIMEOUT_MS`.
    Timeout,
    Sqlx(sqlx::Error),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Timeout => f.write_str("database did not answer in time"),
            DbError::Sqlx(e) => write!(f, "database error: {e}"),
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => DbError::Timeout,
            e => DbError::Sqlx(e),
        }
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
    pool: PgPool,
    timeout: Duration,
    tx_shape: TxShape,
}

const TRANSACT_FUNCTION: &str =
    "SELECT status, saldo, limite FROM efetuar_transacao($1, $2, $3::char, $4::varchar)";

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
        let options = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .min_connections(config.pool_size)
            .acquire_timeout(config.db_timeout)
            // A ping before every query would double the round trips; a dead connection
            // costs one 503 and is then replaced.
            .test_before_acquire(false);
        // The server cancels (and so rolls back) a statement that outlives DB_TIMEOUT_MS, so a
        // request answered 503 for slowness is never applied behind the client's back.
        let connect = config.database.clone().options([(
            "statement_timeout",
            format!("{}ms", config.db_timeout.as_millis()),
        )]);
        let deadline = tokio::time::Instant::now() + config.db_wait;
        let mut backoff = Duration::from_millis(50);
        loop {
            match options.clone().connect_with(connect.clone()).await {
                Ok(pool) => {
                    return Ok(Database {
                        pool,
                        // Local backstop for a database that stopped answering at all; the
                        // margin lets the server-side timeout fire first.
                        timeout: config.db_timeout + Duration::from_millis(250),
                        tx_shape: config.tx_shape,
                    })
                }
                Err(e) if tokio::time::Instant::now() + backoff > deadline => {
                    return Err(format!(
                        "database not reachable after {}s: {e} (check DATABASE_URL, or raise DB_WAIT_SECS)",
                        config.db_wait.as_secs()
                    ))
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    pub async fn transact(&self, client: i32, tx: &NewTransaction<'_>) -> Result<Applied, DbError> {
        match self.tx_shape {
            TxShape::Function => self.bounded(self.transact_function(client, tx)).await,
            TxShape::Client => self.bounded(self.transact_client_side(client, tx)).await,
        }
    }

    pub async fn statement(&self, client: i32) -> Result<Option<Statement>, DbError> {
        self.bounded(async {
            let rows = sqlx::query(STATEMENT)
                .bind(client)
                .fetch_all(&self.pool)
                .await?;
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
        })
        .await
    }

    async fn transact_function(
        &self,
        client: i32,
        tx: &NewTransaction<'_>,
    ) -> Result<Applied, DbError> {
        let row = sqlx::query(TRANSACT_FUNCTION)
            .bind(client)
            .bind(tx.amount)
            .bind(tx.kind.code())
            .bind(tx.description.as_ref())
            .fetch_one(&self.pool)
            .await?;
        Ok(match row.try_get::<i32, _>(0)? {
            0 => Applied::Done {
                balance: row.try_get(1)?,
                limit: row.try_get(2)?,
            },
            1 => Applied::UnknownClient,
            _ => Applied::Refused,
        })
    }

    /// The same rules as `efetuar_transacao` in db/init.sql, driven from here.
    async fn transact_client_side(
        &self,
        client: i32,
        tx: &NewTransaction<'_>,
    ) -> Result<Applied, DbError> {
        let mut conn = self.pool.begin().await?;
        let row = sqlx::query("SELECT saldo, limite FROM clientes WHERE id = $1 FOR UPDATE")
            .bind(client)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(Applied::UnknownClient);
        };
        let (balance, limit): (i32, i32) = (row.try_get(0)?, row.try_get(1)?);
        let Ok(balance) = i32::try_from(i64::from(balance) + tx.signed_amount()) else {
            return Ok(Applied::Refused);
        };
        if balance < -limit {
            return Ok(Applied::Refused);
        }
        sqlx::query("UPDATE clientes SET saldo = $2 WHERE id = $1")
            .bind(client)
            .bind(balance)
            .execute(&mut *conn)
            .await?;
        sqlx::query("INSERT INTO transacoes (cliente_id, valor, tipo, descricao) VALUES ($1, $2, $3::char, $4)")
            .bind(client)
            .bind(tx.amount)
            .bind(tx.kind.code())
            .bind(tx.description.as_ref())
            .execute(&mut *conn)
            .await?;
        conn.commit().await?;
        Ok(Applied::Done { balance, limit })
    }

    /// Runs a database operation under a deadline, so a stalled database turns into a quick
    /// 503 rather than a hung request.
    async fn bounded<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        tokio::time::timeout(self.timeout, operation)
            .await
            .unwrap_or(Err(DbError::Timeout))
    }

    /// Closes every connection; in-flight operations finish first.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
