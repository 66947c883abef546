//! The Rinha balancer: on port 9999 in front of the API instances, it either hands each
//! client connection itself to an instance (handoff mode, the default in compose.yaml) or
//! proxies requests (http mode) or bytes (tcp mode) to their Unix sockets or TCP addresses.
//! `main.rs` only reads the configuration and runs `server::run`; tests use the rest.

pub mod address;
pub mod client;
pub mod config;
pub mod handoff;
pub mod health;
pub mod http_proxy;
pub mod pool;
pub mod selection;
pub mod server;
pub mod state;
pub mod supervisor;
pub mod tcp_proxy;
pub mod unavailable;
pub mod upstream;
