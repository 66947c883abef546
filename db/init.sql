-- Schema and seed data for the Rinha de Backend 2024/Q1 API.
--
-- Apply to an empty database:  psql -v ON_ERROR_STOP=1 -d DB -f db/init.sql
-- Re-applying it RESETS ALL DATA: it drops and recreates every object it owns, so it
-- doubles as "start over with the five clients at saldo 0".
-- compose.yaml mounts this file into /docker-entrypoint-initdb.d.
-- The file has no psql meta-commands, so any client that runs multi-statement SQL can apply it.

SET client_min_messages = warning;

DROP FUNCTION IF EXISTS efetuar_transacao(int, int, char, varchar);
DROP TABLE IF EXISTS transacoes;
DROP TABLE IF EXISTS clientes;

-- Balances and limits are 32-bit integers on purpose: the official checker parses them as Int,
-- so a balance outside that range would fail its checks. efetuar_transacao refuses such a credit.
CREATE TABLE clientes (
    id     int  PRIMARY KEY,
    nome   text NOT NULL,
    limite int  NOT NULL CHECK (limite >= 0),
    saldo  int  NOT NULL DEFAULT 0,
    CONSTRAINT saldo_dentro_do_limite CHECK (saldo >= -limite)
);

-- id is the insertion order: statements sort by it, never by realizada_em, because
-- several transactions can share one timestamp.
CREATE TABLE transacoes (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cliente_id   int         NOT NULL REFERENCES clientes (id),
    valor        int         NOT NULL CHECK (valor > 0),
    tipo         char(1)     NOT NULL CHECK (tipo IN ('c', 'd')),
    descricao    varchar(10) NOT NULL CHECK (descricao <> ''),
    realizada_em timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transacoes_recentes ON transacoes (cliente_id, id DESC);

INSERT INTO clientes (id, nome, limite) VALUES
    (1, 'o barato sai caro', 1000 * 100),
    (2, 'zan corp ltda', 800 * 100),
    (3, 'les cruders', 10000 * 100),
    (4, 'padaria joia de cocaia', 100000 * 100),
    (5, 'kid mais', 5000 * 100);

-- Applies one credit or debit atomically in a single round trip: the client's row is locked
-- (SELECT ... FOR UPDATE), so concurrent transactions of one client run one after another.
-- status: 0 applied, 1 unknown client, 2 refused (limit exceeded, or balance out of int range).
CREATE FUNCTION efetuar_transacao(
    p_cliente_id int, p_valor int, p_tipo char, p_descricao varchar,
    OUT status int, OUT saldo int, OUT limite int)
LANGUAGE plpgsql AS $$
DECLARE
    novo_saldo bigint;
BEGIN
    SELECT c.saldo, c.limite INTO novo_saldo, limite
      FROM clientes c WHERE c.id = p_cliente_id FOR UPDATE;
    IF NOT FOUND THEN
        status := 1;
        RETURN;
    END IF;
    novo_saldo := novo_saldo + CASE WHEN p_tipo = 'c' THEN p_valor ELSE -p_valor END;
    IF novo_saldo < -limite OR novo_saldo > 2147483647 THEN
        status := 2;
        RETURN;
    END IF;
    UPDATE clientes c SET saldo = novo_saldo WHERE c.id = p_cliente_id;
    INSERT INTO transacoes (cliente_id, valor, tipo, descricao)
        VALUES (p_cliente_id, p_valor, p_tipo, p_descricao);
    status := 0;
    saldo := novo_saldo;
END
$$;
