//! # ibconn-core
//!
//! The sans-IO heart of ibconn: everything needed to speak Interactive Brokers' TWS / IB Gateway API
//! except the sockets. This crate has no networking code, spawns no threads and never reads a clock:
//! callers pass `now` in and pull bytes, events and deadlines out. That makes every time-dependent rule
//! (pacing windows, timeouts, leases) testable by passing a different `now`.
//!
//! # Module map
//!
//! | layer | modules |
//! |---|---|
//! | bytes | [`wire`]: length-prefixed framing, the `API\0` handshake, text fields, version negotiation |
//! | messages | [`message`]: typed requests and responses in the text and the protobuf form, chosen per message from the negotiated server version; the user's typed query values (bar size, whatToShow, duration, date format, trading hours) and the contract syntax ([`contract_spec`]) beside it |
//! | one session | [`connection`]: handshake, requests and answers, health probes, sleep detection |
//! | policy | [`pacer`] (IB's pacing rules, shared ledgers), [`classify`] (what an IB error means), [`client_id`] (leases on client ids), [`backoff`], [`breaker`], [`deadline`] |
//! | many sessions | [`pool`]: client-id leases, caps, waiters, pacing, redials, failover; [`pool::Driver`] is the pool plus everything a runtime would otherwise decide |
//! | jobs | [`backfill`] (chunk planning, resumable jobs), [`validator`] (symbol cache) |
//! | time | [`civil`] (dates without a zone database) |
//!
//! # The run-loop contract
//!
//! A runtime (`ibconn-runtime` is the one every executor shares) drives a [`pool::Driver`]:
//!
//! 1. Feed every input with the current `now` — a command (`handle_command`), a socket event
//!    (`handle_dialed`, `handle_dial_failed`, `handle_input`, `handle_written`, `handle_eof`) or
//!    the timer (`handle_timeout`). `now` never goes backwards.
//! 2. After each input, carry out `poll_action()` until `None` (dial, close) and write
//!    `outgoing(socket)` to each socket that takes bytes.
//! 3. Sleep until `poll_timeout()` (one deadline: the pool's timers, the clock tick and the
//!    socket write deadlines) or the next input, whichever comes first.
//!
//! The driver reads no clock: `handle_timeout` asks the caller for the suspend-including clock and
//! the wall clock only when the clock tick is due.
//!
//! The only I/O in the crate is behind the `file-store` feature: the client-id lease file and
//! the pacing book file (JSON + `flock`), which every runtime shares.
#![forbid(unsafe_code)]

pub mod backfill;
pub mod backoff;
pub mod bar_size;
pub mod breaker;
pub mod civil;
pub mod classify;
pub mod client_id;
pub mod connection;
pub mod contract_spec;
pub mod date_format;
pub mod deadline;
#[doc(hidden)]
pub mod fuzzing;
pub mod ib_duration;
#[cfg(feature = "file-store")]
pub mod locked_file;
pub mod message;
pub mod pacer;
pub mod pool;
pub mod query;
pub mod stream;
pub mod trading_hours;
pub mod validator;
pub mod what_to_show;
pub mod wire;
pub mod zone;
