//! # ibconn-core
//!
//! The sans-IO heart of ibconn: everything needed to speak Interactive Brokers' TWS / IB Gateway API
//! except the sockets. This crate has no networking code, spawns no threads and never reads a clock:
//! callers pass `now` in and pull bytes, events and deadlines out. That makes every time-dependent rule
//! (pacing windows, timeouts, leases) testable by passing a different `now`.
//!
//! Layers:
//! - [`wire`]: length-prefixed framing, the `API\0` handshake, text fields and version negotiation.
//! - [`message`]: typed requests and responses, encoded and decoded in both the text form and the
//!   protobuf form, chosen per message from the negotiated server version.
//! - [`connection`]: one TWS session as a state machine; [`pool`]: several sessions with client-id
//!   leases, caps, waiters, pacing, reconnects and gateway failover (the runtimes drive this).
//!
//! The only I/O in the crate is the optional client-id lease file store behind the `file-store`
//! feature, which both runtimes share.
#![forbid(unsafe_code)]

pub mod backfill;
pub mod backoff;
pub mod bar_size;
pub mod breaker;
pub mod civil;
pub mod classify;
pub mod client_id;
pub mod connection;
pub mod deadline;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "file-store")]
pub mod locked_file;
pub mod message;
pub mod pacer;
pub mod pool;
mod typed_calls;
pub mod validator;
pub mod wire;
