//! Handing accepted connections from one process to another: the descriptors travel over a
//! Unix `SOCK_SEQPACKET` socket as `SCM_RIGHTS`, several in one message when several are
//! ready. The balancer in `LB_MODE=handoff` sends; an API with `API_HANDOFF_SOCKET` receives
//! and serves HTTP on them as if it had accepted them itself.
//!
//! Why seqpacket: messages keep their boundaries, so each descriptor arrives with the message
//! it was sent in; the socket is connection-oriented, so either side learns at once that the
//! other went away; and a send is all or nothing (never half a batch).
//!
//! Stopping without losing a connection: the receiver shuts down its reading side, which the
//! kernel turns into EPIPE for every later send (under the same lock that queues messages, so
//! there is no window), then reads what was already queued. The sender takes EPIPE as "not
//! handed over" and gives the connection to another receiver.
//!
//! `wire`: the socket and the messages; `receive`: the API's side (the balancer's sending
//! loop, which chooses the upstream, is `balancer::handoff`).

pub(crate) mod receive;
pub mod wire;

pub use wire::{connect, listen, send, MAX_BATCH};
