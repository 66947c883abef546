//! The SQL the API runs, each statement written and bound once, on a connection it is
//! given: no pools, deadlines or retries here (`connections` and `group_commit` own those).

use std::borrow::Cow;

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};

use super::outcome::{Answer, Applied, DbError, Entry, Statement};
use crate::validation::NewTransaction;

/// One credit or debit for a client, as the database applies it.
pub struct Transaction<'a> {
    pub client: i32,
    /// Signed: positive for a credit, negative for a debit.
    pub delta: i64,
    pub amount: i32,
    pub kind: &'static str,
    pub description: Cow<'a, str>,
    /// Its operation id (`operations`), stored with its row.
    pub operation: i64,
    /// The client's Idempotency-Key, if it sent one.
    pub key: Option<Cow<'a, str>>,
}

impl<'a> Transaction<'a> {
    pub fn new(
        client: i32,
        tx: &'a NewTransaction<'_>,
        operation: i64,
        key: Option<&'a str>,
    ) -> Transaction<'a> {
        Transaction {
            client,
            delta: tx.signed_amount(),
            amount: tx.amount,
            kind: tx.kind.code(),
            description: Cow::Borrowed(&tx.description),
            operation,
            key: key.map(Cow::Borrowed),
        }
    }

    /// The same transaction owning its description, to wait in group commit's queue.
    pub fn into_owned(self) -> Transaction<'static> {
        Transaction {
            description: Cow::Owned(self.description.into_owned()),
            key: self.key.map(|k| Cow::Owned(k.into_owned())),
            ..self
        }
    }
}

// A credit or debit in one statement: one round trip, and atomic without an explicit
// transaction. `cliente` locks the client's row (a concurrent transaction of the same client
// is waited for, and its result read); the update applies only within the limit and the
// 32-bit range; the insert runs only if the update did, with the operation id and the balance
// it left (for `resume`). The first column tells an unknown
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
         INSERT INTO transacoes (cliente_id, valor, tipo, descricao, operacao, saldo_apos) \
         SELECT $1, $3, $4::char, $5, $6, atualizado.saldo FROM atualizado) \
    SELECT EXISTS (SELECT FROM cliente), atualizado.saldo, atualizado.limite, false \
      FROM (VALUES (1)) AS um LEFT JOIN atualizado ON true";

// Several credits and debits in one call, one transaction: db/init.sql's transact_batch.
const TRANSACT_BATCH: &str =
    "SELECT existe, saldo, limite, chave_reusada FROM transact_batch($1, $2, $3, $4, $5, $6, $7, $8)";

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

/// One credit or debit, in one statement.
pub async fn transact(conn: &mut PgConnection, tx: &Transaction<'_>) -> Answer {
    let row = sqlx::query(TRANSACT)
        .bind(tx.client)
        .bind(tx.delta)
        .bind(tx.amount)
        .bind(tx.kind)
        .bind(tx.description.as_ref())
        .bind(tx.operation)
        .fetch_one(conn)
        .await?;
    applied(&row)
}

/// Several in one transaction, one commit: the results in the transactions' order. One
/// without an Idempotency-Key takes the single statement, which is cheaper for one.
/// `resumed`: sent again after a commit was cut off (`resume`), so each one already
/// applied is answered as it was.
pub async fn transact_batch(
    conn: &mut PgConnection,
    txs: &[Transaction<'_>],
    resumed: bool,
) -> Result<Vec<Applied>, DbError> {
    if let ([tx @ Transaction { key: None, .. }], false) = (txs, resumed) {
        return Ok(vec![transact(conn, tx).await?]);
    }
    let rows = sqlx::query(TRANSACT_BATCH)
        .bind(txs.iter().map(|t| t.client).collect::<Vec<i32>>())
        .bind(txs.iter().map(|t| t.delta).collect::<Vec<i64>>())
        .bind(txs.iter().map(|t| t.amount).collect::<Vec<i32>>())
        .bind(txs.iter().map(|t| t.kind).collect::<Vec<&str>>())
        .bind(
            txs.iter()
                .map(|t| t.description.as_ref())
                .collect::<Vec<&str>>(),
        )
        .bind(txs.iter().map(|t| t.operation).collect::<Vec<i64>>())
        .bind(
            txs.iter()
                .map(|t| t.key.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(resumed)
        .fetch_all(conn)
        .await?;
    if rows.len() != txs.len() {
        return Err(DbError::Batch(format!(
            "transact_batch answered {} rows for {} transactions",
            rows.len(),
            txs.len()
        )));
    }
    rows.iter().map(applied).collect()
}

/// A row of (exists, new balance or NULL, limit or NULL, key reused) as the outcome of one
/// transaction.
fn applied(row: &PgRow) -> Answer {
    let found: bool = row.try_get(0)?;
    if row.try_get::<bool, _>(3)? {
        return Ok(Applied::KeyReused);
    }
    Ok(match row.try_get::<Option<i32>, _>(1)? {
        Some(balance) => Applied::Done {
            balance,
            limit: row.try_get(2)?,
        },
        None if found => Applied::Refused,
        None => Applied::UnknownClient,
    })
}

/// The same rules as `TRANSACT`, in five round trips (`DB_TX_SHAPE=client`, kept to measure
/// against). A refused or unknown-client transaction is rolled back explicitly, so the
/// connection is left idle and can be reused.
pub async fn transact_client_side(conn: &mut PgConnection, new: &Transaction<'_>) -> Answer {
    let mut tx = conn.begin().await?;
    let row = sqlx::query("SELECT saldo, limite FROM clientes WHERE id = $1 FOR UPDATE")
        .bind(new.client)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(Applied::UnknownClient);
    };
    let (balance, limit): (i32, i32) = (row.try_get(0)?, row.try_get(1)?);
    let balance = match i32::try_from(i64::from(balance) + new.delta) {
        Ok(balance) if balance >= -limit => balance,
        _ => {
            tx.rollback().await?;
            return Ok(Applied::Refused);
        }
    };
    sqlx::query("UPDATE clientes SET saldo = $2 WHERE id = $1")
        .bind(new.client)
        .bind(balance)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO transacoes (cliente_id, valor, tipo, descricao, operacao, saldo_apos) \
         VALUES ($1, $2, $3::char, $4, $5, $6)",
    )
    .bind(new.client)
    .bind(new.amount)
    .bind(new.kind)
    .bind(new.description.as_ref())
    .bind(new.operation)
    .bind(balance)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied::Done { balance, limit })
}

/// Deletes the Idempotency-Keys past their 24 hours; how many.
pub async fn expire_keys(conn: &mut PgConnection) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM chaves_de_idempotencia WHERE criada_em < now() - interval '24 hours'",
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A client's balance and last ten entries, or None for an unknown client.
pub async fn statement(conn: &mut PgConnection, client: i32) -> Result<Option<Statement>, DbError> {
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
