//! `ibconn-smol` against `ibconn-sim` over real loopback TCP. The scenarios are `ibconn-tokio`'s
//! (`runtime-tokio/tests/common/`, included by path); this file and `support/` supply the smol
//! pieces. Every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../runtime-tokio/tests/common/mod.rs"]
mod common;
mod support;

use std::future::Future;
use std::time::Duration;

use ibconn_smol as rt;
use support::{scenarios, start_sim, stop, within};

async fn sleep(d: Duration) {
    smol::Timer::after(d).await;
}

fn spawn<T: Send + 'static>(
    f: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = T> {
    smol::spawn(f)
}

common::every_scenario!(scenarios);
