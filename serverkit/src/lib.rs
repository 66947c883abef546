//! What the api and the balancer share as long-running servers.

pub mod config;
pub mod http;
pub mod io;
pub mod lifecycle;
