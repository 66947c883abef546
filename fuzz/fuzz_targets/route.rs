//! A request path from the network: route never panics, and a client id it finds is the
//! path's digits.
#![no_main]

use api::route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let Some(found) = route(path) else {
        return;
    };
    let rest = path
        .strip_prefix("/clientes/")
        .expect("only /clientes/ paths route");
    let (id, tail) = rest.split_once('/').expect("a tail");
    assert!(tail == "transacoes" || tail == "extrato");
    if let Some(client) = found.client {
        assert!(client > 0);
        assert_eq!(id.parse::<i32>().ok(), Some(client));
    }
});
