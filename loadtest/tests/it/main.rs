//! loadtest's integration tests: the simulation against a real stack, and against faulty
//! stubs its checks must catch. One test binary for the crate.

mod faults;
mod stack;
