//! End-to-end historical fetch over loopback: one ~2,000-bar request (1-minute bars, five RTH
//! sessions), ours against the third-party `ibapi` 5.5.0 client, both against the same in-process
//! simulated gateway (historical pacing off so requests can repeat), interleaved.
//!
//! Run: `cargo bench -p ibconn-tokio --bench fetch`
// A bench measures wall time and aborts on broken set-up: both fine outside the core.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::disallowed_methods
)]

use std::time::{Duration, Instant};

use ibapi::market_data::historical::{BarSize, ToDuration};
use ibapi::market_data::TradingHours;
use ibconn_core::bar_size::BarSize as IbBarSize;
use ibconn_core::civil::utc;
use ibconn_core::message::Contract;
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{GatewayConfig, HistoricalRules, ServerConfig, SimServer};

const STEP: Duration = Duration::from_secs(30);

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn ours_request() -> HistoricalQuery {
    HistoricalQuery {
        use_rth: true,
        ..HistoricalQuery::new(
            Contract::stock("AAPL"),
            EndTime::At(utc(2025, 12, 31, 21, 0, 0)),
            "5 D".parse().unwrap(),
            IbBarSize::Min1,
            WhatToShow::Trades,
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let rounds = if quick { 3 } else { 40 };
    let gateway = GatewayConfig {
        historical: HistoricalRules {
            enabled: false,
            ..HistoricalRules::default()
        },
        ..GatewayConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = SimServer::start(listener, ServerConfig { gateway, seed: 3 }).unwrap();
    let addr = sim.local_addr().to_string();

    let ours = ibconn_tokio::Client::connect(&addr, 1).await.unwrap();
    let theirs = ibapi::Client::connect(&addr, 2).await.unwrap();
    let aapl = ibapi::contracts::Contract::stock("AAPL").build();
    let end = time::macros::datetime!(2025-12-31 21:00:00 UTC);

    let (mut a, mut b, mut ratios, mut bars) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let t = Instant::now();
        let got = tokio::time::timeout(STEP, ours.historical_data(ours_request()))
            .await
            .unwrap()
            .unwrap();
        let ta = t.elapsed().as_secs_f64();
        bars = got.bars.len();
        let t = Instant::now();
        let fetched = tokio::time::timeout(
            STEP,
            theirs
                .historical_data(&aapl, BarSize::Min)
                .duration(5.days())
                .ending(end)
                .trading_hours(TradingHours::Regular)
                .fetch(),
        )
        .await
        .unwrap()
        .unwrap();
        let tb = t.elapsed().as_secs_f64();
        assert_eq!(fetched.bars.len(), bars, "both clients get the same bars");
        a.push(ta);
        b.push(tb);
        ratios.push(ta / tb);
    }
    println!("historical fetch of {bars} bars over loopback, {rounds} interleaved rounds (median)");
    println!("  ibconn-tokio   {:>9.1} µs", median(a) * 1e6);
    println!("  ibapi 5.5.0    {:>9.1} µs", median(b) * 1e6);
    println!("  ours / ibapi   {:>9.3}", median(ratios));
    ours.shutdown().await;
    theirs.disconnect().await;
    sim.shutdown().await;
}
