//! A response from the server under test: none of the loadtest's checks panics on it,
//! whatever the status and body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loadtest::checks::{self, Answer};

fuzz_target!(|input: (Option<u16>, &[u8])| {
    let (status, body) = input;
    let answer = Answer {
        status,
        body: bytes::Bytes::copy_from_slice(body),
    };
    let _ = checks::transaction(&answer, true);
    let _ = checks::transaction(&answer, false);
    let _ = checks::statement(&answer);
    let _ = checks::order(&answer);
    let _ = checks::balance_is(&answer, -1);
    let _ = checks::first_statement(&answer, 100_000);
    let _ = checks::read_your_write(&answer, "0", "100000");
    let json = checks::json(&answer);
    let _ = checks::entry_is(&json, 0, "x", "c");
});
