//! Streaming from the simulated gateway under virtual time: market data, snapshots,
//! market-data types, real-time bars, tick-by-tick and keep-up-to-date bars, IB's limits on them,
//! and what connectivity faults do to them. Every expectation is checked against the gateway's
//! own historical bars (the same price path) or IB's exact texts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// Tests start from a real instant and use maps freely: the sim's determinism rules are for the
// library.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, unreachable_pub)]

mod bars_and_tbt;
mod faults;
mod harness;
mod limits;
mod market_data;
mod world;
