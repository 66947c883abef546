//! A POST body from the network: parse_transaction never panics, and whatever it accepts
//! obeys every rule and is exactly what a JSON parser reads in those bytes.
#![no_main]

use api::{parse_transaction, MAX_DESCRIPTION_CHARS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(tx) = parse_transaction(body) else {
        return;
    };
    assert!(tx.amount > 0);
    let chars = tx.description.chars().count();
    assert!((1..=MAX_DESCRIPTION_CHARS).contains(&chars));
    assert!(!tx.description.contains('\0'));
    let json: serde_json::Value = serde_json::from_slice(body).expect("accepted means JSON");
    assert_eq!(json["valor"].as_i64(), Some(i64::from(tx.amount)));
    assert_eq!(json["tipo"].as_str(), Some(tx.kind.code()));
    assert_eq!(json["descricao"].as_str(), Some(&*tx.description));
});
