//! What the api and the balancer share as long-running servers.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod backoff;
pub mod config;
pub mod deadline;
pub mod handoff;
pub mod histogram;
pub mod http;
pub mod lifecycle;
pub mod limit;
pub mod listen;
pub mod log;
pub mod metrics;
pub mod quiet;
pub mod server;
mod source;
pub mod sys;
pub mod timer;
