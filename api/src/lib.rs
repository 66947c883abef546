//! The Rinha de Backend 2024/Q1 API: credits, debits and statements for five clients, with
//! every balance rule enforced inside PostgreSQL. `main.rs` only reads the configuration and
//! runs `server::run`; the fuzz targets (`fuzz/`) take the parsers from here.

pub mod config;
pub mod db;
pub mod handlers;
pub mod pool;
pub mod routes;
pub mod server;
pub mod timestamp;
pub mod timings;
pub mod validation;
