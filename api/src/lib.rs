//! The Rinha de Backend 2024/Q1 API: credits, debits and statements for five clients, with
//! every balance rule enforced inside PostgreSQL. `main.rs` only reads the configuration and
//! runs `serve`; the fuzz targets (`fuzz/`) take the parsers from here. Everything else is
//! private to the crate, so the compiler reports what nothing uses.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod db;
mod handlers;
mod metrics;
mod pool;
mod routes;
mod server;
mod timestamp;
mod validation;

pub use config::{Config, USAGE};
pub use routes::{route, Endpoint, Route};
pub use server::run as serve;
pub use validation::{parse_transaction, Kind, Transaction, MAX_DESCRIPTION_CHARS};
