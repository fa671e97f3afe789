//! `ibconn-smol`'s streams against `ibconn-sim` over real loopback TCP. The scenarios are
//! `ibconn-tokio`'s (`runtime-tokio/tests/common/streams.rs`, included by path). Every await is
//! bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../runtime-tokio/tests/common/streams.rs"]
mod common;
mod support;

use std::time::Duration;

use ibconn_smol as rt;
use support::{scenarios, start_sim_at, stop, within};

async fn sleep(d: Duration) {
    smol::Timer::after(d).await;
}

common::every_scenario!(scenarios);
