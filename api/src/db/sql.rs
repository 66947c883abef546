//! The SQL the API runs, each statement written and bound once, on a connection it is
//! given: no pools, deadlines or retries here (`connections` and `group_commit` own those).

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::Row;

use super::outcome::{Answer, Applied, DbError, Entry, Statement};
use crate::metrics;
use crate::validation::Transaction;

/// A credit or debit on its way to the database: the transaction, the client it is for, its
/// operation id (`operations`, stored with its row) and the client's Idempotency-Key if it
/// sent one. It owns its text, to wait in group commit's queue.
pub(super) struct Operation {
    pub client: i32,
    pub id: i64,
    pub key: Option<String>,
    pub tx: Transaction<'static>,
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
    SELECT EXISTS (SELECT FROM cliente), atualizado.saldo, atualizado.limite, false, 'novo' \
      FROM (VALUES (1)) AS um LEFT JOIN atualizado ON true";

// Several credits and debits in one call, one transaction: db/init.sql's transact_batch.
const TRANSACT_BATCH: &str =
    "SELECT existe, saldo, limite, chave_reusada, origem FROM transact_batch($1, $2, $3, $4, $5, $6, $7, $8)";

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
pub(super) async fn transact(conn: &mut PgConnection, op: &Operation) -> Answer {
    let row = sqlx::query(TRANSACT)
        .bind(op.client)
        .bind(op.tx.signed_amount())
        .bind(op.tx.amount)
        .bind(op.tx.kind.code())
        .bind(op.tx.description.as_ref())
        .bind(op.id)
        .fetch_one(conn)
        .await?;
    applied(&row, false)
}

/// Several in one transaction, one commit: the results in the transactions' order. One
/// without an Idempotency-Key takes the single statement, which is cheaper for one.
/// `resumed`: sent again after a commit was cut off (`resume`), so each one already
/// applied is answered as it was.
pub(super) async fn transact_batch(
    conn: &mut PgConnection,
    ops: &[Operation],
    resumed: bool,
) -> Result<Vec<Applied>, DbError> {
    if let ([op @ Operation { key: None, .. }], false) = (ops, resumed) {
        return Ok(vec![transact(conn, op).await?]);
    }
    let rows = sqlx::query(TRANSACT_BATCH)
        .bind(ops.iter().map(|o| o.client).collect::<Vec<i32>>())
        .bind(
            ops.iter()
                .map(|o| o.tx.signed_amount())
                .collect::<Vec<i64>>(),
        )
        .bind(ops.iter().map(|o| o.tx.amount).collect::<Vec<i32>>())
        .bind(ops.iter().map(|o| o.tx.kind.code()).collect::<Vec<&str>>())
        .bind(
            ops.iter()
                .map(|o| o.tx.description.as_ref())
                .collect::<Vec<&str>>(),
        )
        .bind(ops.iter().map(|o| o.id).collect::<Vec<i64>>())
        .bind(ops.iter().map(|o| o.key.as_deref()).collect::<Vec<_>>())
        .bind(resumed)
        .fetch_all(conn)
        .await?;
    // The function returns one row per item, in order; anything else is a bug on one side,
    // and answering from it would give some request another's outcome.
    if rows.len() != ops.len() {
        return Err(DbError::Batch(format!(
            "transact_batch answered {} rows for {} transactions",
            rows.len(),
            ops.len()
        )));
    }
    rows.iter().map(|row| applied(row, resumed)).collect()
}

/// A row of (exists, new balance or NULL, limit or NULL, key reused, origin) as the
/// outcome of one transaction, counted in the metrics by where its answer came from: the
/// origin is `novo` (applied or refused now), `chave` (its Idempotency-Key's first answer)
/// or `operacao` (a resumed operation found already committed).
fn applied(row: &PgRow, resumed: bool) -> Answer {
    let found: bool = row.try_get(0)?;
    let origin: &str = row.try_get(4)?;
    match origin {
        "chave" => metrics::KEYS_SEEN_BEFORE[0].inc(),
        "operacao" => metrics::RESUMED[0].inc(),
        _ if resumed => metrics::RESUMED[1].inc(),
        _ => {}
    }
    if row.try_get::<bool, _>(3)? {
        metrics::KEYS_SEEN_BEFORE[1].inc();
        return Ok(Applied::KeyReused);
    }
    Ok(match row.try_get::<Option<i32>, _>(1)? {
        Some(balance) => {
            let limit: i32 = row.try_get(2)?;
            // The rule the SQL applies and the table's CHECK backs, asserted where the
            // answer leaves the database: a 200 never reports a balance past the limit.
            assert!(balance >= -limit, "balance {balance} below limit {limit}");
            Applied::Done { balance, limit }
        }
        None if found => Applied::Refused,
        None => Applied::UnknownClient,
    })
}

/// Whether the server takes writes (it is a primary, not a standby).
pub(super) async fn is_primary(conn: &mut PgConnection) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar("SELECT NOT pg_is_in_recovery()")
        .fetch_one(conn)
        .await?)
}

/// Deletes the Idempotency-Keys past their 24 hours; how many.
pub(super) async fn expire_keys(conn: &mut PgConnection) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM chaves_de_idempotencia WHERE criada_em < now() - interval '24 hours'",
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A client's balance and last ten entries, or None for an unknown client.
pub(super) async fn statement(
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
