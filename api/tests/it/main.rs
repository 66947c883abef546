//! The API's integration tests: real API processes on fresh PostgreSQL databases. One test
//! binary for the crate (one link, one process start-up per run); a module per concern.

mod consistency;
mod contract;
mod endpoints;
mod exactly_once;
mod group_commit;
mod idempotency;
mod observability;
mod resilience;
