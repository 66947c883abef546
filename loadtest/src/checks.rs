//! The checks of the official simulation, with Gatling's semantics (docs/challenge.md, "The official test").
//!
//! Each check either passes or gives a message; a request's first failing check decides its
//! KO message, as in Gatling's simulation.log. The official scoring counts a KO as a balance
//! inconsistency when that message names `ConsistenciaSaldoLimite` or
//! `jmesPath(saldo.total).find.is`, so the messages here carry the same markers.

use serde_json::Value;

/// What came back for one request: `status` is `None` when there was no HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status, or None when no answer came.
    pub status: Option<u16>,
    /// The body as received.
    pub body: bytes::Bytes,
}

/// One check of an answer: Ok, or the KO message the official test would give.
pub type Check = Result<(), String>;

/// Whether a KO message counts as a balance inconsistency in the official scoring.
pub fn is_inconsistency(message: &str) -> bool {
    message.contains("ConsistenciaSaldoLimite") || message.contains("jmesPath(saldo.total).find.is")
}

/// The status is one of `allowed`.
pub fn status_in(answer: &Answer, allowed: &[u16]) -> Check {
    match answer.status {
        Some(s) if allowed.contains(&s) => Ok(()),
        Some(s) => Err(format!(
            "status.find.in({}), but actually found {s}",
            join(allowed)
        )),
        None => Err("no response".into()),
    }
}

/// Gatling's implicit check when a request declares none: any 2xx, or 304.
pub fn default_status(answer: &Answer) -> Check {
    match answer.status {
        Some(s) if (200..300).contains(&s) || s == 304 => Ok(()),
        Some(s) => Err(format!(
            "status.find.in([200, 209], 304), but actually found {s}"
        )),
        None => Err("no response".into()),
    }
}

fn join(values: &[u16]) -> String {
    values
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A parsed body; `Value::Null` when the body is not JSON, so every extraction finds nothing.
pub fn json(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

fn at<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(json, |node, part| match part.split_once('[') {
            Some((field, index)) => node
                .get(field)?
                .get(index.trim_end_matches(']').parse::<usize>().ok()?),
            None => node.get(part),
        })
}

/// jmesPath's default String extraction: a number as its text, a string as its raw text.
pub fn string_at(json: &Value, path: &str) -> Option<String> {
    match at(json, path)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// jmesPath `ofType[Int]`: a JSON integer within 32 bits; anything else is not found.
pub fn int_at(json: &Value, path: &str) -> Option<i32> {
    at(json, path)?.as_i64().and_then(|n| i32::try_from(n).ok())
}

/// The JSON string at `path` is `expected`.
pub fn string_is(json: &Value, path: &str, expected: &str) -> Check {
    match string_at(json, path) {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(format!(
            "jmesPath({path}).find.is({expected}), but actually found {found}"
        )),
        None => Err(format!(
            "jmesPath({path}).find.is({expected}), but actually found nothing"
        )),
    }
}

/// The JSON integer at `path` is `expected`.
pub fn int_is(json: &Value, path: &str, expected: i32) -> Check {
    match int_at(json, path) {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(format!(
            "jmesPath({path}).find.is({expected}), but actually found {found}"
        )),
        None => Err(format!(
            "jmesPath({path}).find.is({expected}), but actually found nothing"
        )),
    }
}

/// The value at `path` exists: its text, or the KO message.
pub fn exists(json: &Value, path: &str) -> Result<String, String> {
    string_at(json, path)
        .ok_or_else(|| format!("jmesPath({path}).find.exists, but actually found nothing"))
}

/// Scala's `String.toInt`: optional sign, digits, 32-bit range.
fn scala_to_int(text: &str) -> Option<i32> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The custom `validate` of the simulation: saldo >= -limite, both parsed as Int.
pub fn consistent(kind: &str, saldo: Option<&str>, limite: Option<&str>) -> Check {
    match (saldo.and_then(scala_to_int), limite.and_then(scala_to_int)) {
        (Some(s), Some(l)) if s >= -l => Ok(()),
        (Some(s), Some(l)) => Err(format!(
            "ConsistenciaSaldoLimite - {kind}: Limite ultrapassado! (saldo {s}, limite {l})"
        )),
        _ => Err(format!(
            "ConsistenciaSaldoLimite - {kind}: WTF?! (saldo {saldo:?}, limite {limite:?})"
        )),
    }
}

/// Checks of a transaction answer: status, then `limite` saved, then saldo consistency.
/// Debits may also be refused with 422, which is then checked no further.
/// Returns the saldo and limite texts of an accepted transaction.
pub fn transaction(
    answer: &Answer,
    allow_refusal: bool,
) -> Result<Option<(String, String)>, String> {
    status_in(answer, if allow_refusal { &[200, 422] } else { &[200] })?;
    if answer.status == Some(422) {
        return Ok(None);
    }
    let body = json(answer);
    let limite = exists(&body, "limite")?;
    let saldo = string_at(&body, "saldo");
    consistent("Transação", saldo.as_deref(), Some(&limite))?;
    Ok(Some((saldo.unwrap_or_default(), limite)))
}

/// A load-phase statement: default status, `saldo.limite` saved, total consistent.
pub fn statement(answer: &Answer) -> Check {
    default_status(answer)?;
    let body = json(answer);
    let limite = exists(&body, "saldo.limite")?;
    consistent(
        "Extrato",
        string_at(&body, "saldo.total").as_deref(),
        Some(&limite),
    )
}

/// Phases B and D: the balance after the concurrent transactions.
pub fn balance_is(answer: &Answer, expected: i32) -> Check {
    default_status(answer)?;
    int_is(&json(answer), "saldo.total", expected)
}

/// E1: a client's first statement.
pub fn first_statement(answer: &Answer, limit: i64) -> Check {
    status_in(answer, &[200])?;
    let body = json(answer);
    string_is(&body, "saldo.limite", &limit.to_string())?;
    string_is(&body, "saldo.total", "0")
}

/// E4 and the E5 reads: entry `index` of `ultimas_transacoes` is a 1-cent transaction.
pub fn entry_is(body: &Value, index: usize, descricao: &str, tipo: &str) -> Check {
    let path = |field: &str| format!("ultimas_transacoes[{index}].{field}");
    string_is(body, &path("descricao"), descricao)?;
    string_is(body, &path("tipo"), tipo)?;
    int_is(body, &path("valor"), 1)
}

/// E4: newest first.
pub fn order(answer: &Answer) -> Check {
    default_status(answer)?;
    let body = json(answer);
    entry_is(&body, 0, "devolve", "d")?;
    entry_is(&body, 1, "toma", "c")
}

/// E5's concurrent reads: they see the "danada" credit and its balance.
pub fn read_your_write(answer: &Answer, saldo: &str, limite: &str) -> Check {
    default_status(answer)?;
    let body = json(answer);
    entry_is(&body, 0, "danada", "c")?;
    string_is(&body, "saldo.limite", limite)?;
    string_is(&body, "saldo.total", saldo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: Some(status),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn transaction_checks() {
        assert_eq!(
            transaction(&answer(200, r#"{"limite": 1000, "saldo": -1000}"#), false),
            Ok(Some(("-1000".into(), "1000".into())))
        );
        assert_eq!(transaction(&answer(422, ""), true), Ok(None));
        let cases = [
            (
                answer(422, ""),
                false,
                "status.find.in(200), but actually found 422",
            ),
            (
                answer(500, ""),
                true,
                "status.find.in(200,422), but actually found 500",
            ),
            (
                answer(200, r#"{"saldo": 1}"#),
                false,
                "jmesPath(limite).find.exists",
            ),
            (
                answer(200, r#"{"limite": 1000, "saldo": -1001}"#),
                false,
                "ConsistenciaSaldoLimite - Transação: Limite ultrapassado!",
            ),
            (
                answer(200, r#"{"limite": 1000, "saldo": -25.0}"#),
                false,
                "ConsistenciaSaldoLimite - Transação: WTF?!",
            ),
            (
                answer(200, r#"{"limite": 1000, "saldo": 3000000000}"#),
                false,
                "WTF?!",
            ),
            (answer(200, r#"{"limite": 1000}"#), false, "WTF?!"),
            (
                answer(200, "not json"),
                false,
                "jmesPath(limite).find.exists",
            ),
        ];
        for (answer, allow, expected) in cases {
            let err = transaction(&answer, allow).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn inconsistency_markers() {
        assert!(is_inconsistency(
            &consistent("Extrato", Some("-2"), Some("1")).unwrap_err()
        ));
        assert!(is_inconsistency(
            &balance_is(&answer(200, r#"{"saldo": {"total": -24}}"#), -25).unwrap_err()
        ));
        assert!(is_inconsistency(
            &balance_is(&answer(200, r#"{"saldo": {"total": -25.0}}"#), -25).unwrap_err()
        ));
        assert!(!is_inconsistency(
            &status_in(&answer(500, ""), &[200]).unwrap_err()
        ));
        assert!(!is_inconsistency(
            &order(&answer(200, r#"{"ultimas_transacoes": []}"#)).unwrap_err()
        ));
    }

    #[test]
    fn statement_checks() {
        let good = r#"{"saldo": {"total": -5, "limite": 100, "data_extrato": "x"}, "ultimas_transacoes": [
            {"valor": 1, "tipo": "d", "descricao": "devolve"}, {"valor": 1, "tipo": "c", "descricao": "toma"}]}"#;
        assert_eq!(statement(&answer(200, good)), Ok(()));
        assert_eq!(order(&answer(200, good)), Ok(()));
        assert_eq!(
            first_statement(
                &answer(200, r#"{"saldo": {"total": 0, "limite": 100}}"#),
                100
            ),
            Ok(())
        );
        assert!(first_statement(
            &answer(200, r#"{"saldo": {"total": 0.0, "limite": 100}}"#),
            100
        )
        .unwrap_err()
        .contains("saldo.total"));
        assert!(statement(&answer(404, ""))
            .unwrap_err()
            .contains("found 404"));
        assert!(
            statement(&answer(200, r#"{"saldo": {"total": -101, "limite": 100}}"#))
                .unwrap_err()
                .contains("Limite ultrapassado")
        );
        let swapped = good
            .replace("devolve", "TMP")
            .replace("toma", "devolve")
            .replace("TMP", "toma");
        assert!(order(&answer(200, &swapped))
            .unwrap_err()
            .contains("ultimas_transacoes[0].descricao"));
        assert_eq!(
            read_your_write(
                &answer(
                    200,
                    r#"{"saldo": {"total": 1, "limite": 100}, "ultimas_transacoes": [{"valor": 1, "tipo": "c", "descricao": "danada"}]}"#
                ),
                "1",
                "100"
            ),
            Ok(())
        );
    }

    #[test]
    fn scala_int_parsing() {
        assert_eq!(scala_to_int("-25"), Some(-25));
        assert_eq!(scala_to_int("+7"), Some(7));
        for bad in ["", "-", "1.0", "1e3", " 1", "2147483648", "abc"] {
            assert_eq!(scala_to_int(bad), None, "{bad}");
        }
    }
}
