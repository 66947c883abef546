-- Schema and seed data for the Rinha de Backend 2024/Q1 API.
--
-- Apply to an empty database:  psql -v ON_ERROR_STOP=1 -d DB -f db/init.sql
-- Re-applying it RESETS ALL DATA: it drops and recreates every object it owns, so it
-- doubles as "start over with the five clients at saldo 0".
-- compose.yaml mounts this file into /docker-entrypoint-initdb.d.
-- The file has no psql meta-commands, so any client that runs multi-statement SQL can apply it.

SET client_min_messages = warning;

DROP FUNCTION IF EXISTS transact_batch;
DROP TABLE IF EXISTS chaves_de_idempotencia;
DROP TABLE IF EXISTS operacoes_reservadas;
DROP TABLE IF EXISTS transacoes;
DROP TABLE IF EXISTS clientes;
DROP DOMAIN IF EXISTS limite_de_credito, valor_positivo, tipo_de_transacao, descricao_curta;

-- The rules of single fields, as domains rather than table CHECKs: PostgreSQL parses and
-- compiles a table's CHECK constraints anew for every statement that writes to the table, which
-- cost 7.7% of its CPU under the official load (a profile, bench/JOURNAL.md, 2026-12-05), while
-- a domain's rule is parsed once per connection and kept. The rules themselves are unchanged.
CREATE DOMAIN limite_de_credito AS int CHECK (VALUE >= 0);
CREATE DOMAIN valor_positivo AS int CHECK (VALUE > 0);
CREATE DOMAIN tipo_de_transacao AS char(1) CHECK (VALUE IN ('c', 'd'));
CREATE DOMAIN descricao_curta AS varchar(10) CHECK (VALUE <> '');

-- Balances and limits are 32-bit integers on purpose: the official checker parses them as Int,
-- so a balance outside that range would fail its checks. The API refuses such a credit.
CREATE TABLE clientes (
    id     int  PRIMARY KEY,
    nome   text NOT NULL,
    limite limite_de_credito NOT NULL,
    saldo  int  NOT NULL DEFAULT 0,
    -- The one rule over two columns stays a table CHECK: the backstop of the limit rule that
    -- TRANSACT and transact_batch apply themselves.
    CONSTRAINT saldo_dentro_do_limite CHECK (saldo >= -limite)
);

-- id is the insertion order: statements sort by it, never by realizada_em, because
-- several transactions can share one timestamp.
-- cliente_id has no foreign key on purpose: a row is inserted only by the statement (or the
-- batch function below) that has just locked and updated that client's row (api/src/db/sql.rs),
-- and clients are never deleted.
-- The foreign key's trigger would lock the client row a second time per insert; without it
-- and with one statement instead of a PL/pgSQL function, PostgreSQL spends about 12% less CPU
-- per transaction (bench/pg-shapes, bench/JOURNAL.md, "Transaction shape").
CREATE TABLE transacoes (
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    cliente_id   int         NOT NULL,
    valor        valor_positivo    NOT NULL,
    tipo         tipo_de_transacao NOT NULL,
    descricao    descricao_curta   NOT NULL,
    realizada_em timestamptz NOT NULL DEFAULT now(),
    -- Exactly once: the id the API gave this credit or debit before sending it, and the
    -- balance it left, so that an API whose commit was cut off (PostgreSQL crashed, the
    -- connection broke) can find out afterwards whether it happened and answer with what it
    -- did, instead of guessing. As the primary key it makes a second application impossible;
    -- id needs no index of its own (statements read it through transacoes_recentes), so the
    -- table keeps two indexes, as it had before operation ids.
    operacao     bigint      PRIMARY KEY,
    saldo_apos   int         NOT NULL
);
CREATE INDEX transacoes_recentes ON transacoes (cliente_id, id DESC);

-- Where the APIs take their operation ids from: each instance reserves a block at a time
-- (api/src/db/operations.rs) with one durable UPDATE, so ids are unique across instances
-- and restarts without a round trip per transaction.
CREATE TABLE operacoes_reservadas (
    proxima bigint NOT NULL
);
INSERT INTO operacoes_reservadas VALUES (1);

-- Idempotency-Key: a POST that carries one is applied at most once per client and key; a
-- retry gets the first answer again. Kept 24 hours (the API deletes older keys hourly).
CREATE TABLE chaves_de_idempotencia (
    cliente_id int         NOT NULL,
    chave      text        NOT NULL,
    -- valor, tipo and descricao of the first request, to tell a retry from a reuse.
    pedido     text        NOT NULL,
    -- The first answer: the balance and limit after it, or NULLs for a refused debit.
    saldo      int,
    limite     int,
    criada_em  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cliente_id, chave)
);

-- Each client's row on a heap page of its own. Every credit and debit locks and updates its
-- client's row, and with all five rows on one page every backend took that page's buffer lock
-- for every transaction of every client: profiled under the official load, one transaction in
-- ten slept on it (bench/JOURNAL.md, 2026-12-05). So the rows go in wide (a filler column)
-- into a table that takes one such row per page for inserts (fillfactor 10); then the filler is
-- dropped and the fillfactor reset (1,000 bytes stay under the size PostgreSQL would compress).
-- Updates are HOT and stay on their row's page, narrow.
ALTER TABLE clientes SET (fillfactor = 10), ADD COLUMN enchimento text;
INSERT INTO clientes (id, nome, limite, enchimento)
SELECT id, nome, limite, repeat(' ', 1000) FROM (VALUES
    (1, 'o barato sai caro', 1000 * 100),
    (2, 'zan corp ltda', 800 * 100),
    (3, 'les cruders', 10000 * 100),
    (4, 'padaria joia de cocaia', 100000 * 100),
    (5, 'kid mais', 5000 * 100)
) AS seed (id, nome, limite);
ALTER TABLE clientes DROP COLUMN enchimento, RESET (fillfactor);

-- Group commit (api/src/db/group_commit/): the credits and debits an API instance received while its
-- previous database call ran, applied in one transaction, so they share one commit (one WAL
-- flush) and one wake-up of this backend. The rows involved are locked first, in id order,
-- so two instances' batches never deadlock; then each transaction, in the order given (the
-- order of arrival), is applied against the running balance under the same rules as the
-- single statement: within the limit and the 32-bit range, or refused, which does not stop
-- the others. One row per input, in order: existe (false: no such client), and the new
-- balance and the limit, or NULLs when refused.
-- retomada (resumed): the batch is sent again after its first attempt's commit was cut off,
-- so some operations may be there already; each one found is answered with the balance it
-- left and not applied again. The rows are locked first, so a first attempt still
-- committing is waited for and then seen.
-- chaves: each one's Idempotency-Key, or NULL. A key this client used before is not applied
-- again: it is answered with the first answer kept in chaves_de_idempotencia (saldo and
-- limite, or NULLs for a refused debit), or with chave_reusada when valor, tipo or
-- descricao differ. A retry running while the first is still in flight waits on the row
-- lock, then sees the first's key.
-- origem: where the answer came from, for the API's metrics: 'novo' (applied or refused now),
-- 'chave' (an Idempotency-Key's first answer) or 'operacao' (found by a resume).
-- (existe, not found: FOUND is PL/pgSQL's own variable.) Any error rolls the whole batch back.
CREATE FUNCTION transact_batch(
    ids int[], deltas int8[], valores int[], tipos text[], descricoes text[],
    operacoes int8[], chaves text[], retomada bool)
RETURNS TABLE (existe bool, saldo int, limite int, chave_reusada bool, origem text)
LANGUAGE plpgsql AS $$
DECLARE
    existing int[];
    este_pedido text;
BEGIN
    SELECT array_agg(l.id) INTO existing
      FROM (SELECT c.id FROM clientes c WHERE c.id = ANY (ids) ORDER BY c.id FOR UPDATE) l;
    FOR i IN 1 .. cardinality(ids) LOOP
        saldo := NULL;
        limite := NULL;
        chave_reusada := false;
        origem := 'novo';
        -- Not NULL when none of the ids exists (existing is then NULL).
        existe := coalesce(ids[i] = ANY (existing), false);
        IF retomada THEN
            SELECT t.saldo_apos, c.limite INTO saldo, limite
              FROM transacoes t JOIN clientes c ON c.id = t.cliente_id
             WHERE t.operacao = operacoes[i];
            IF saldo IS NOT NULL THEN
                origem := 'operacao';
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        IF chaves[i] IS NOT NULL AND existe THEN
            este_pedido := valores[i] || ' ' || tipos[i] || ' ' || descricoes[i];
            INSERT INTO chaves_de_idempotencia AS k (cliente_id, chave, pedido)
            VALUES (ids[i], chaves[i], este_pedido) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                origem := 'chave';
                SELECT k.pedido <> este_pedido, k.saldo, k.limite INTO chave_reusada, saldo, limite
                  FROM chaves_de_idempotencia k
                 WHERE k.cliente_id = ids[i] AND k.chave = chaves[i];
                IF chave_reusada THEN
                    saldo := NULL;
                    limite := NULL;
                END IF;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        UPDATE clientes c SET saldo = c.saldo + deltas[i]
         WHERE c.id = ids[i] AND c.saldo::int8 + deltas[i] BETWEEN -c.limite AND 2147483647
        RETURNING c.saldo, c.limite INTO saldo, limite;
        IF saldo IS NOT NULL THEN
            INSERT INTO transacoes (cliente_id, valor, tipo, descricao, operacao, saldo_apos)
            VALUES (ids[i], valores[i], tipos[i]::char, descricoes[i], operacoes[i], saldo);
        END IF;
        IF chaves[i] IS NOT NULL AND existe THEN
            UPDATE chaves_de_idempotencia k SET saldo = transact_batch.saldo, limite = transact_batch.limite
             WHERE k.cliente_id = ids[i] AND k.chave = chaves[i];
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

