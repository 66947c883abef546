//! Every raw system call of the workspace, each behind a safe function: the one module where
//! `unsafe` is allowed (serverkit denies it everywhere else, every other crate forbids it),
//! so an audit of the unsafe code reads one directory. Every `unsafe` block says why it
//! holds (a SAFETY comment, which clippy requires).
//!
//! `socket`: accepting, reading and writing without waiting, socket options; `fd_passing`:
//! descriptors in SCM_RIGHTS messages (the handoff's wire); `mapping`: a `u64` in a shared
//! file mapping (the handoff's connection count); `process`: what a child inherits.

#![allow(unsafe_code)]

pub(crate) mod fd_passing;
pub(crate) mod mapping;
pub mod process;
pub(crate) mod socket;
