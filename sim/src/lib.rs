//! # ibconn-sim
//!
//! A simulated IB Gateway that real TWS API clients cannot tell from the real one: it speaks the
//! same bytes (through `ibconn-core`'s codec, server side — there is no second codec), enforces
//! IB's limits exactly, and is deterministic: one `u64` seed and the `now` values passed in decide
//! every byte it sends.
//!
//! - [`gateway`]: the sans-IO state machine ([`Gateway`]), one per simulated gateway process.
//! - [`market`] and [`bars`]: instruments, calendars, synthetic bars, and the quotes, trades and
//!   real-time bars streams are served from ([`market::ticks`], the same price path).
//! - [`rules`]: the 50 msg/s rule and historical pacing (one rule set for every driver).
//! - [`fault`]: faults, injected, scheduled or drawn from the seed ([`Chaos`]).
//! - [`calendar`]: US time zones with DST, NYSE holidays, IB date/duration/bar-size formats.
//! - [`world`]: the in-memory [`World`]: core client connections wired to the gateway under
//!   virtual time, with an event trace.
//! - [`pool_world`]: the core `Pool` wired to the gateway under virtual time ([`PoolWorld`]), and
//!   a driver that runs a backfill job on it.
//! - `server` (feature `tcp`, default): the wall-clock TCP server behind the `ibconn-sim` binary;
//!   `cli` (same feature): its arguments and run function, shared with `ibconn sim`.
#![forbid(unsafe_code)]

pub mod bars;
pub mod calendar;
#[cfg(feature = "tcp")]
pub mod cli;
pub mod conn_id;
pub mod errors;
pub mod fault;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod market;
pub mod pool_world;
pub mod rng;
pub mod rules;
mod schedule;
#[cfg(feature = "tcp")]
pub mod server;
mod tap;
mod trace_log;
mod virtual_net;
pub mod world;

pub use fault::{Chaos, ChaosKind, Farm, Fault, Locale, Target};
pub use gateway::{ConnId, Gateway, GatewayConfig, GatewayCounters, PortState};
pub use market::{Instrument, Market};
pub use pool_world::{BackfillRun, PoolWorld, PoolWorldConfig, PoolWorldError, RunReport};
pub use rules::{HistoricalRules, RateRules};
#[cfg(feature = "tcp")]
pub use server::{serve, ServerConfig, SimServer};
pub use world::{ClientId, World, WorldConfig, WorldError};
