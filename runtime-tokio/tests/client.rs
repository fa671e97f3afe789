//! `Client::connect`'s inline handshake and version offer against `ibconn-sim` over real loopback
//! TCP. The scenarios live in `common/client.rs` and are shared with `ibconn-smol`; this file and
//! `support/` supply the Tokio pieces, and the one Tokio-only test. Every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "common/client.rs"]
mod common;
mod support;

use ibconn_sim::GatewayConfig;
use ibconn_tokio as rt;
use support::{scenarios, start_sim, stop, within};

common::every_scenario!(scenarios);

#[tokio::test(flavor = "current_thread")]
async fn connects_on_a_current_thread_runtime() {
    let sim = common::sim_with(GatewayConfig::default()).await;
    let addr = sim.local_addr().to_string();
    let client = within("connect", rt::Client::connect(&addr, 15))
        .await
        .unwrap();
    within("current time", client.current_time()).await.unwrap();
    within("shutdown", client.shutdown()).await;
    within("sim", stop(sim)).await;
}
