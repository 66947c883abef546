//! What the api and the balancer share as long-running servers.

pub mod config;
pub mod io;
pub mod lifecycle;
