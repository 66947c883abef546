//! The balancer's integration tests: the real balancer binary in front of stub upstreams
//! and real APIs. One test binary for the crate; a module per concern.

mod common;
mod handoff;
mod proxy;
mod slow_clients;
mod stack;
