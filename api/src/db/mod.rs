//! Everything the API asks of PostgreSQL.
//!
//! Consistency lives in the database: a credit or debit locks the client's row
//! (`SELECT ... FOR UPDATE`) for the length of its transaction, and a statement is read in a
//! single statement, so it is one snapshot. Nothing is cached in the API process, so two
//! instances behind the balancer always agree.
//!
//! `sql` runs statements on a connection; `connections` holds the pools and the deadlines;
//! `group_commit` batches credits and debits; `outcome` has the types they all answer with.
//! Imports run only downwards: this module → group_commit → connections, sql → outcome.

mod connections;
mod group_commit;
mod outcome;
mod sql;

pub use outcome::{Applied, DbError, Statement};

use crate::config::{Config, TxShape};
use crate::validation::NewTransaction;
use connections::{Connections, Use};
use group_commit::GroupCommit;
use sql::Transaction;

#[derive(Clone)]
pub struct Database {
    connections: Connections,
    writes: Writes,
}

/// How credits and debits reach the database.
#[derive(Clone)]
enum Writes {
    /// Group commit (the default).
    Batched(GroupCommit),
    /// Each alone (DB_BATCH_MAX=1, or the client-driven shape, kept unbatched to measure
    /// against).
    Alone(TxShape),
}

impl Database {
    /// Connects, retrying with backoff for up to `config.db_wait`: in compose the database
    /// may still be starting when the API does.
    pub async fn connect(config: &Config) -> Result<Database, String> {
        let connections = Connections::connect(config).await?;
        let writes = if config.batch_max > 1 && config.tx_shape == TxShape::Statement {
            Writes::Batched(GroupCommit::new(connections.clone(), config.batch_max))
        } else {
            Writes::Alone(config.tx_shape)
        };
        Ok(Database {
            connections,
            writes,
        })
    }

    pub async fn transact(&self, client: i32, tx: &NewTransaction<'_>) -> Result<Applied, DbError> {
        let tx = Transaction::new(client, tx);
        match &self.writes {
            Writes::Batched(group) => group.transact(tx).await,
            Writes::Alone(TxShape::Statement) => {
                let run = async |conn: &mut _| sql::transact(conn, &tx).await;
                self.connections.run(Use::Write, run).await
            }
            Writes::Alone(TxShape::Client) => {
                let run = async |conn: &mut _| sql::transact_client_side(conn, &tx).await;
                self.connections.run(Use::Write, run).await
            }
        }
    }

    pub async fn statement(&self, client: i32) -> Result<Option<Statement>, DbError> {
        let read = async |conn: &mut _| sql::statement(conn, client).await;
        self.connections.run(Use::Read, read).await
    }

    /// Closes every connection; in-flight operations finish first.
    pub async fn close(&self) {
        if let Writes::Batched(group) = &self.writes {
            eprintln!("api: group commit: {}", group.report());
        }
        self.connections.close().await;
    }
}
