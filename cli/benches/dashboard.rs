//! The dashboard's cost (issue 17): what a first load of the page weighs, and the latency of
//! its data routes with the history rings full, next to `/api/ib/pool/status` (the cheapest
//! snapshot route) measured in the same run on the same server.
//!
//! Run: `cargo bench -p ibconn-cli --bench dashboard`. The real `ibconn` binary serves, on an
//! in-process simulated gateway, sampling its history every 5 ms (the hidden
//! `--history-interval`) so both rings (360 and 1440 samples) are full after 43 s instead of a
//! day; the sampler keeps running while the routes are measured. The client is one keep-alive
//! HTTP/1.1 connection per route.
// A bench measures wall time and aborts on broken set-up: all fine outside the core.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::{get, ibconn_std, Serve, Sim};
use support::{measure, micros, Conn, Percentiles};

const REQUESTS: usize = 2_000;
const ROUNDS: usize = 10;
const WARMUP: usize = 100;
/// The sampling interval that fills the rings in seconds instead of a day.
const FAST_INTERVAL: &str = "0.005";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("dashboard: bench");
        return;
    }
    let mut sim = Sim::start();
    let mut cmd = ibconn_std();
    cmd.args(["serve", "--gateway", &sim.addr, "--listen", "127.0.0.1:0"])
        .args(["--history-interval", FAST_INTERVAL]);
    let serve = Serve::spawn(cmd);

    // The page as a browser loads it the first time: the HTML and the two files it names.
    let mut page = 0;
    for path in ["/", "/assets/dashboard.js", "/assets/dashboard.css"] {
        let r = get(&serve.addr, path, None);
        assert_eq!(r.status, 200, "{path}");
        println!("{path:<24} {:>7} bytes", r.body.len());
        page += r.body.len();
    }
    println!("page weight (first load, uncompressed): {page} bytes");

    // Both rings full (1440 coarse samples of 6 intervals each).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let h = get(&serve.addr, "/api/ib/pool/history", None).json();
        let lens: Vec<u64> = h["data"]["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["len"].as_u64().unwrap())
            .collect();
        if lens == [360, 1440] {
            break;
        }
        assert!(Instant::now() < deadline, "history never filled: {lens:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let paths = [
        "/api/ib/pool/status",
        "/api/ib/pool/history",
        "/api/ib/pool/history?tier=hour",
        "/api/ib/dashboard",
    ];
    let mut targets: Vec<(&str, Conn, Vec<Duration>)> = paths
        .iter()
        .map(|p| (*p, Conn::open(&serve.addr, p), Vec::new()))
        .collect();
    for (_, conn, _) in &mut targets {
        let mut discard = Vec::new();
        measure(conn, WARMUP, &mut discard);
    }
    for _ in 0..ROUNDS {
        for (_, conn, times) in &mut targets {
            measure(conn, REQUESTS / ROUNDS, times);
        }
    }
    let sizes: Vec<usize> = targets.iter().map(|(_, c, _)| c.body.len()).collect();
    let results: Vec<(&str, Percentiles)> = targets
        .into_iter()
        .map(|(name, _, times)| (name, Percentiles::of(times)))
        .collect();
    let base = results[0].1.p99;
    println!(
        "{REQUESTS} sequential GETs per route on one keep-alive connection each, {ROUNDS} \
         interleaved rounds, after {WARMUP} warm-up; history rings full (360 + 1440 samples)"
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "route", "bytes", "p50 µs", "p99 µs", "max µs", "p99÷status"
    );
    for ((name, p), bytes) in results.iter().zip(sizes) {
        println!(
            "{:<32} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>13.2}",
            name,
            bytes,
            micros(p.p50),
            micros(p.p99),
            micros(p.max),
            micros(p.p99) / micros(base),
        );
    }
    drop(serve);
    sim.shutdown();
}
