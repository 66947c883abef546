//! Reading compose.yaml and applying its limits with cgroups: shared by the native runner
//! (`src/main.rs`) and by the tests that check compose.yaml and the Dockerfiles statically.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cgroup;
pub mod compose;
