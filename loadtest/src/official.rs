//! The official test's fixed data, in one place for the simulation here and for the
//! assertion-style validations in testkit (docs/challenge.md, "The official test").

/// The five clients' limits, ids 1 to 5. db/init.sql creates them; a test checks that the
/// two agree.
pub const LIMITS: [i64; 5] = [100000, 80000, 1000000, 10000000, 500000];

/// A POST body as Gatling writes it: this key order, a space after each colon.
pub fn payload(valor: impl std::fmt::Display, tipo: &str, descricao: &str) -> String {
    format!(r#"{{"valor": {valor}, "tipo": "{tipo}", "descricao": "{descricao}"}}"#)
}

/// Phase E's five invalid bodies, in order: each must get 422 (or 400) and change nothing.
pub fn invalid_bodies() -> [String; 5] {
    [
        payload(1.2, "d", "devolve"),
        payload(1, "x", "devolve"),
        payload(1, "c", "123456789 e mais um pouco"),
        payload(1, "c", ""),
        r#"{"valor": 1, "tipo": "c", "descricao": null}"#.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_those_db_init_sql_creates() {
        let sql = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../db/init.sql"),
        )
        .unwrap();
        // Rows read "(1, 'o barato sai caro', 1000 * 100),".
        let created: Vec<(usize, i64)> = sql
            .lines()
            .filter_map(|line| {
                let row = line.trim().strip_prefix('(')?;
                let (id, rest) = row.split_once(',')?;
                let (_, limit) = rest.rsplit_once("',")?;
                let limit = limit.trim().trim_end_matches([')', ',', ';']);
                let product = limit
                    .split('*')
                    .map(|f| f.trim().parse::<i64>())
                    .product::<Result<i64, _>>()
                    .ok()?;
                Some((id.trim().parse().ok()?, product))
            })
            .collect();
        let expected: Vec<(usize, i64)> = LIMITS
            .iter()
            .enumerate()
            .map(|(i, l)| (i + 1, *l))
            .collect();
        assert_eq!(created, expected);
    }

    #[test]
    fn bodies_are_written_as_gatling_writes_them() {
        assert_eq!(
            payload(4321, "d", "aZ3k9QpL0x"),
            r#"{"valor": 4321, "tipo": "d", "descricao": "aZ3k9QpL0x"}"#
        );
        assert_eq!(
            invalid_bodies()[0],
            r#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#
        );
    }
}
