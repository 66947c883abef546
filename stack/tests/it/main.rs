//! The native runner and the repository's promises: compose.yaml read statically, every
//! command of the README, the runner itself. One test binary for the crate.

mod compose;
mod readme;
mod runner;
