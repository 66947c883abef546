//! What the database answered: the types the SQL, group commit and the handlers share.

use crate::metrics;

/// Why a database operation gave no answer. Every variant but refused data means "try again
/// later" (503).
#[derive(Debug)]
pub(crate) enum DbError {
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
    pub(crate) fn is_refused_data(&self) -> bool {
        self.sql_state()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
    }

    /// Whether the server end of the connection is gone (a restart or crash of PostgreSQL, a
    /// terminated backend) or is no longer the primary, rather than a problem with one
    /// statement: either way the connection is dropped and what it carried is resumed on a
    /// new one, which finds out by operation id what happened.
    pub(crate) fn is_connection_lost(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Io(_) | sqlx::Error::Protocol(_)))
            // 08: connection exception; 57P: operator intervention (shutdown, crash,
            // terminated); 25006: a read-only transaction, i.e. a primary demoted under us.
            || self.sql_state().is_some_and(|code| {
                code.starts_with("08") || code.starts_with("57P") || code == "25006"
            })
    }

    /// The SQLSTATE of an error PostgreSQL reported, if it was one.
    pub(crate) fn sql_state(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            DbError::Sqlx(sqlx::Error::Database(e)) => e.code(),
            _ => None,
        }
    }

    /// Counts the error in the metrics, by SQLSTATE class or by what failed; a batch's
    /// shared error is not counted again.
    pub(crate) fn count(&self) {
        match (self, self.sql_state()) {
            (_, Some(code)) => metrics::db_error(code.get(..2).unwrap_or("")),
            (DbError::Timeout, _) => metrics::db_error("timeout"),
            (DbError::Sqlx(sqlx::Error::Io(_)), _) => metrics::db_error("io"),
            (DbError::Sqlx(_), _) => metrics::db_error("driver"),
            (DbError::Batch(_), _) => {}
        }
    }

    /// The same error for each request of a failed batch.
    pub(crate) fn shared(&self) -> DbError {
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
pub(crate) enum Applied {
    Done {
        balance: i32,
        limit: i32,
    },
    /// A debit past the limit, or a credit past the 32-bit balance range. Nothing changed.
    Refused,
    UnknownClient,
    /// Its Idempotency-Key was used before for another request of this client. Nothing changed.
    KeyReused,
}

/// A credit's or debit's answer from the database.
pub(super) type Answer = Result<Applied, DbError>;

/// One line of a statement; `at` is microseconds since the Unix epoch.
pub(crate) struct Entry {
    pub amount: i32,
    pub kind: String,
    pub description: String,
    pub at: i64,
}

pub(crate) struct Statement {
    pub balance: i32,
    pub limit: i32,
    /// At most ten, newest first.
    pub entries: Vec<Entry>,
}
