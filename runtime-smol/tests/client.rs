//! `Client::connect`'s inline handshake and version offer against `ibconn-sim` over real loopback
//! TCP. The scenarios are `ibconn-tokio`'s (`runtime-tokio/tests/common/client.rs`, included by
//! path); this file and `support/` supply the smol pieces. Every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../runtime-tokio/tests/common/client.rs"]
mod common;
mod support;

use ibconn_smol as rt;
use support::{scenarios, start_sim, stop, within};

common::every_scenario!(scenarios);
