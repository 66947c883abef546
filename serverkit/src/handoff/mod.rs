//! Handing accepted connections from one process to another, both sides of it: the balancer
//! in `LB_MODE=handoff` sends (`send`), an API with `API_HANDOFF_SOCKET` receives (`receive`)
//! and serves HTTP on them as if it had accepted them itself.
//!
//! # The protocol
//!
//! - **The link** (`wire`): a Unix `SOCK_SEQPACKET` socket. Each message carries 1 to
//!   `MAX_BATCH` descriptors as `SCM_RIGHTS` and one byte per descriptor (a message cannot be
//!   empty). Messages keep their boundaries, so each descriptor arrives with the message it
//!   was sent in; the socket is connection-oriented, so either side learns at once that the
//!   other went away; and a send is all or nothing (never half a batch).
//! - **Back-pressure**: the sender's buffer holds some 60 connections. A receiver at its
//!   connection limit stops reading, the sender's next send fails with `WouldBlock` (`Sent::Full`),
//!   and the balancer offers the connection to another receiver or keeps it waiting.
//! - **Stopping without losing a connection**: the receiver shuts down its reading side,
//!   which the kernel turns into EPIPE for every later send (under the same lock that queues
//!   messages, so there is no window), then reads what was already queued. The sender takes
//!   EPIPE as "not handed over" (`Sent::Down`) and gives the connection to another receiver;
//!   a restarted receiver gets a new link.
//! - **The count** (`count`): the receiver publishes its open connections in a file beside
//!   its socket (`SOCKET.count`, one `u64`, mapped shared), because a sender never sees a
//!   handed-over connection close. A sender placing by load reads it with one memory load.
//!
//! Who places a connection on which receiver is the balancer's business
//! (`balancer::handoff`); everything about moving it is here.

pub mod count;
pub(crate) mod receive;
mod send;
pub mod wire;

pub use send::{Link, Sent};
pub use wire::{connect, listen, send, MAX_BATCH};
