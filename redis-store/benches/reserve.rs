//! µs per pacing reservation through each store, in one run: what a pool pays per historical
//! request for sharing IB's budget. Each round reserves and completes `n` one-hour-bar requests
//! (gateway-wide: an open slot, no window wait) through `SharedPacer` on a `MemoryLedger` (the
//! baseline: one process), a `FileLedger` (one host: flock, read, write, fsync) and a
//! `RedisLedger` (a `redis-server` this bench starts on a free loopback port). Rounds alternate
//! the stores; the figure is each store's median round, and its ratio to the memory baseline.
//!
//! `cargo bench -p ibconn-redis --bench reserve`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use ibconn_core::bar_size::BarSize;
use ibconn_core::pacer::{
    FileLedger, HistoricalRequestKey, MemoryLedger, PaceLedger, PacedRequest, PacingRules,
    SharedPacer, WindowLimit,
};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_redis::RedisLedger;

const ROUNDS: usize = 5;

fn request(i: usize) -> PacedRequest {
    PacedRequest::Historical(HistoricalRequestKey {
        contract: format!("C{}", i % 97),
        exchange: "SMART".to_owned(),
        end: format!("e{i}"),
        duration: "1 D".to_owned(),
        bar_size: BarSize::Hour1,
        what_to_show: WhatToShow::Trades,
        use_rth: true,
    })
}

/// µs per reserve + complete over `n` requests.
fn round(ledger: &mut dyn PaceLedger, pacer: &mut SharedPacer, n: usize, base: usize) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        let now = Instant::now();
        let hold = pacer.reserve(ledger, now, &request(base + i)).unwrap().hold;
        pacer.complete(ledger, now, hold);
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(redis) = common::RedisServer::start().unwrap() else {
        eprintln!("reserve: redis-server not installed; nothing measured");
        return;
    };
    let dir = std::env::temp_dir().join(format!("ibconn-bench-reserve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let epoch = Instant::now();
    let ttl = Duration::from_secs(60);
    // The 50 messages/s rule would put this loop's sends seconds apart (and grow the schedule
    // it scans): the bench measures the stores, so that per-connection rule is off.
    let rules = PacingRules {
        message_rate: WindowLimit {
            window: Duration::ZERO,
            max_weight: u32::MAX,
        },
        ..PacingRules::default()
    };
    let pacer = || SharedPacer::new(rules.clone(), "bench:4002", ttl, epoch);
    let mut stores: Vec<(&str, Box<dyn PaceLedger>, SharedPacer, usize)> = vec![
        (
            "memory",
            Box::new(MemoryLedger::new("bench")),
            pacer(),
            20_000,
        ),
        (
            "file",
            Box::new(FileLedger::new(&dir, "bench")),
            pacer(),
            100,
        ),
        (
            "redis",
            Box::new(RedisLedger::open(&redis.url(), "bench").unwrap()),
            pacer(),
            200,
        ),
    ];
    // Redis makes a fresh book that settles for a third of the TTL: step once, then wait it out.
    for (_, ledger, pacer, _) in &mut stores {
        let _ = pacer.renew(&mut **ledger, Instant::now(), &[]);
    }
    std::thread::sleep(ttl / 3 + Duration::from_millis(100));
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
    let mut base = 0;
    for _ in 0..ROUNDS {
        for (i, (_, ledger, pacer, n)) in stores.iter_mut().enumerate() {
            results[i].push(round(&mut **ledger, pacer, *n, base));
            base += *n;
        }
    }
    let memory = median(results[0].clone());
    println!("store    µs/reserve+complete (median of {ROUNDS})   ÷ memory");
    for ((name, _, _, n), r) in stores.iter().zip(results) {
        let m = median(r);
        println!(
            "{name:<8} {m:>10.1} µs  ({n} per round)   {:>8.1}×",
            m / memory
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
