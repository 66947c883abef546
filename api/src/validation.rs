//! Turning a POST body into a transaction, or a precise reason why not.
//!
//! The rules are the challenge's (docs/challenge.md, "API rules"): `valor` a positive JSON integer,
//! `tipo` exactly "c" or "d", `descricao` a string of 1 to 10 characters. Anything else is
//! refused before the database is touched, so a bad request can never change state.
//!
//! "Characters" are Unicode code points, as PostgreSQL's `varchar(10)` counts them in a UTF8
//! database (ten `ç` are ten characters, twenty bytes). Every code point JSON can carry is
//! storable there but one: U+0000, which PostgreSQL refuses in text; it is refused here, so
//! that it can never reach a group-commit batch and fail the others in it.

use std::borrow::Cow;

use hyper::HeaderMap;
use serde::Deserialize;

/// Credit or debit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `tipo` "c": adds to the balance.
    Credit,
    /// `tipo` "d": takes from it, never past the limit.
    Debit,
}

impl Kind {
    /// The `tipo` stored for it.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Credit => "c",
            Kind::Debit => "d",
        }
    }
}

/// A credit or debit that passed every check: the one shape a transaction has from the
/// request's body to the database (which adds only who asked and its operation id:
/// `db::Operation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction<'a> {
    /// Cents, 1 ..= i32::MAX (balances are 32-bit; see db/init.sql).
    pub amount: i32,
    /// Credit or debit.
    pub kind: Kind,
    /// 1 to `MAX_DESCRIPTION_CHARS` characters, borrowed from the body when it can be.
    pub description: Cow<'a, str>,
}

impl Transaction<'_> {
    /// The change this transaction makes to a balance.
    pub fn signed_amount(&self) -> i64 {
        match self.kind {
            Kind::Credit => i64::from(self.amount),
            Kind::Debit => -i64::from(self.amount),
        }
    }

    /// The same transaction owning its description, to wait in group commit's queue.
    pub fn into_owned(self) -> Transaction<'static> {
        Transaction {
            amount: self.amount,
            kind: self.kind,
            description: Cow::Owned(self.description.into_owned()),
        }
    }
}

/// The longest `descricao`, in characters (Unicode code points).
pub const MAX_DESCRIPTION_CHARS: usize = 10;

/// The wire shape. serde rejects wrong JSON types for us: a float, string, bool or null
/// `valor` does not fit an `i64`, and a null or missing field does not fit a `Cow<str>`.
#[derive(Deserialize)]
struct Wire<'a> {
    valor: i64,
    #[serde(borrow)]
    tipo: Cow<'a, str>,
    #[serde(borrow)]
    descricao: Cow<'a, str>,
}

/// A POST body as a transaction, or why it is refused (the 422's reason).
pub fn parse_transaction(body: &[u8]) -> Result<Transaction<'_>, String> {
    // serde would also accept a JSON array for a struct; the API takes objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("body must be a JSON object".into());
    }
    let wire: Wire = serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))?;

    if wire.valor <= 0 {
        return Err("valor must be a positive integer".into());
    }
    let amount =
        i32::try_from(wire.valor).map_err(|_| format!("valor must be at most {}", i32::MAX))?;
    let kind = match wire.tipo.as_ref() {
        "c" => Kind::Credit,
        "d" => Kind::Debit,
        _ => return Err("tipo must be \"c\" or \"d\"".into()),
    };
    let chars = wire.descricao.chars().count();
    if chars == 0 || chars > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "descricao must have 1 to {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if wire.descricao.contains('\0') {
        return Err(
            "descricao must not contain U+0000 (NUL), which the database cannot store".into(),
        );
    }
    Ok(Transaction {
        amount,
        kind,
        description: wire.descricao,
    })
}

/// The longest `Idempotency-Key` taken, in bytes (Stripe's limit).
pub(crate) const MAX_KEY_BYTES: usize = 255;

/// The optional `Idempotency-Key` header of a POST: sent at most once, 1 to `MAX_KEY_BYTES`
/// visible ASCII characters (0x21 to 0x7E: no spaces, no control or non-ASCII bytes), so a
/// key compares the same in every client, proxy and log.
pub(crate) fn parse_idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, String> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if values.next().is_some()
        || bytes.is_empty()
        || bytes.len() > MAX_KEY_BYTES
        || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(format!(
            "Idempotency-Key must be sent once, 1 to {MAX_KEY_BYTES} visible ASCII characters"
        ));
    }
    Ok(value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_one_to_255_visible_ascii_characters_once() {
        let parse = |values: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    "idempotency-key",
                    hyper::header::HeaderValue::from_bytes(value).unwrap(),
                );
            }
            parse_idempotency_key(&headers).map(|k| k.map(str::to_owned))
        };
        let longest = "k".repeat(MAX_KEY_BYTES);
        assert_eq!(parse(&[]), Ok(None));
        for good in [
            b"a".as_slice(),
            b"!~",
            b"4f9c-uuid_like.KEY",
            longest.as_bytes(),
        ] {
            let key = String::from_utf8(good.to_vec()).unwrap();
            assert_eq!(parse(&[good]), Ok(Some(key)));
        }
        let too_long = "k".repeat(MAX_KEY_BYTES + 1);
        for bad in [
            b"".as_slice(),
            b"a b",
            b"tab\tkey",
            "chave-ç".as_bytes(),
            too_long.as_bytes(),
        ] {
            assert!(parse(&[bad]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b"a", b"a"]).is_err(), "sent twice");
    }

    #[test]
    fn accepts_valid_bodies() {
        let cases: &[(&str, i32, Kind, &str)] = &[
            (
                r#"{"valor": 1000, "tipo": "c", "descricao": "descricao"}"#,
                1000,
                Kind::Credit,
                "descricao",
            ),
            (
                r#"{"valor": 1, "tipo": "d", "descricao": "a"}"#,
                1,
                Kind::Debit,
                "a",
            ),
            (
                r#"{"descricao":"0123456789","tipo":"d","valor":2147483647}"#,
                i32::MAX,
                Kind::Debit,
                "0123456789",
            ),
            // Ten characters, thirty bytes: the limit counts characters.
            (
                r#"{"valor": 5, "tipo": "c", "descricao": "çãéíõüñàèì"}"#,
                5,
                Kind::Credit,
                "çãéíõüñàèì",
            ),
            // Astral plane and other control characters: one character each, all storable.
            (
                r#"{"valor": 5, "tipo": "c", "descricao": "\ud83d\ude00\u0001\u007f\uffff"}"#,
                5,
                Kind::Credit,
                "\u{1f600}\u{1}\u{7f}\u{ffff}",
            ),
            (
                r#"{"valor": 5, "tipo": "c", "descricao": "\u00e7\"x"}"#,
                5,
                Kind::Credit,
                "ç\"x",
            ),
            (
                r#"  {"valor": 7, "tipo": "c", "descricao": "x", "extra": [1, {"a": null}]}  "#,
                7,
                Kind::Credit,
                "x",
            ),
        ];
        for (body, amount, kind, description) in cases {
            let tx = parse_transaction(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(
                (tx.amount, tx.kind, tx.description.as_ref()),
                (*amount, *kind, *description)
            );
        }
    }

    #[test]
    fn rejects_every_invalid_body() {
        let cases: &[&[u8]] = &[
            br#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#,
            br#"{"valor": 1.0, "tipo": "d", "descricao": "devolve"}"#,
            br#"{"valor": 1e0, "tipo": "d", "descricao": "devolve"}"#,
            br#"{"valor": "1", "tipo": "d", "descricao": "devolve"}"#,
            br#"{"valor": true, "tipo": "d", "descricao": "devolve"}"#,
            br#"{"valor": null, "tipo": "d", "descricao": "devolve"}"#,
            br#"{"tipo": "d", "descricao": "devolve"}"#,
            br#"{"valor": 0, "tipo": "d", "descricao": "devolve"}"#,
            br#"{"valor": -5, "tipo": "d", "descricao": "devolve"}"#,
            br#"{"valor": 2147483648, "tipo": "c", "descricao": "devolve"}"#,
            br#"{"valor": 99999999999999999999999, "tipo": "c", "descricao": "x"}"#,
            br#"{"valor": 1, "tipo": "x", "descricao": "devolve"}"#,
            br#"{"valor": 1, "tipo": "C", "descricao": "devolve"}"#,
            br#"{"valor": 1, "tipo": "cd", "descricao": "devolve"}"#,
            br#"{"valor": 1, "tipo": "", "descricao": "devolve"}"#,
            br#"{"valor": 1, "tipo": null, "descricao": "devolve"}"#,
            br#"{"valor": 1, "tipo": 99, "descricao": "devolve"}"#,
            br#"{"valor": 1, "descricao": "devolve"}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": "01234567890"}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": null}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": 12}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": ["a"]}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": "a\u0000b"}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": "\u0000"}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": "\ud800"}"#,
            br#"{"valor": 1, "tipo": "c", "descricao": "\udc00x"}"#,
            br#"{"valor": 1, "tipo": "c"}"#,
            br#"{"valor": 1, "valor": 2, "tipo": "c", "descricao": "dup"}"#,
            br#"[1, "c", "array"]"#,
            br#""text""#,
            b"null",
            b"",
            b"   ",
            b"{",
            br#"{"valor": 1, "tipo": "c", "descricao": "x"} trailing"#,
            b"valor=1&tipo=c&descricao=x",
            b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"\xff\xfe\"}",
        ];
        for body in cases {
            let text = String::from_utf8_lossy(body);
            let result = parse_transaction(body);
            assert!(result.is_err(), "{text} was accepted: {result:?}");
        }
    }
}
