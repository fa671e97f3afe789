//! `ibconn-tokio` against `ibconn-sim` over real loopback TCP. The scenarios live in `common/` and
//! are shared with `ibconn-smol`; this file and `support/` supply the Tokio pieces. Every await is
//! bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod support;

use std::future::Future;
use std::time::Duration;

use ibconn_tokio as rt;
use support::{scenarios, start_sim, stop, within};

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

fn spawn<T: Send + 'static>(
    f: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = T> {
    let task = tokio::spawn(f);
    async move { task.await.unwrap() }
}

common::every_scenario!(scenarios);
