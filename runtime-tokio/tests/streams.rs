//! `ibconn-tokio`'s streams against `ibconn-sim` over real loopback TCP. The scenarios live in
//! `common/streams.rs` and are shared with `ibconn-smol`. Every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "common/streams.rs"]
mod common;
mod support;

use std::time::Duration;

use ibconn_tokio as rt;
use support::{scenarios, start_sim_at, stop, within};

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

common::every_scenario!(scenarios);
