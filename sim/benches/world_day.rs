//! Simulation speed: the 24-hour scenario of `tests/world_determinism.rs` (a client fetching bars
//! every five minutes, redialing when down, random faults about every 20 minutes) in virtual time.
//! Prints simulated seconds per wall second (target ≥ 43,200×, i.e. 24 h in ≤ 2 s).
//!
//! Run: `cargo bench -p ibconn-sim --bench world_day`
// A bench measures wall time and aborts on broken set-up: both fine outside the core.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let runs = if quick { 1 } else { 5 };
    let mut walls = Vec::new();
    let mut steps = 0;
    for seed in 0..runs {
        let started = Instant::now();
        let (_, _, world) = common::day(seed);
        walls.push(started.elapsed().as_secs_f64());
        steps = world.steps();
    }
    walls.sort_by(f64::total_cmp);
    let wall = walls[walls.len() / 2];
    println!("24 h scenario in virtual time, {runs} seeds (median)");
    println!(
        "  wall time        {:>10.1} ms   ({steps} steps in the last run)",
        wall * 1e3
    );
    println!(
        "  speed-up         {:>10.0} ×    (target >= 43200 ×)",
        86_400.0 / wall
    );

    // RSS drift: simulate day after day in one process; a leak would grow RSS every day.
    let days = if quick { 3 } else { 30 };
    let mut rss = Vec::new();
    for seed in 0..days {
        let (_, _, world) = common::day(100 + seed);
        drop(world);
        rss.push(rss_kib());
    }
    let first = rss[0];
    let last = rss[rss.len() - 1];
    let peak = rss.iter().copied().max().unwrap_or(0);
    println!("RSS over {days} consecutive simulated days (after each day)");
    println!("  after day 1      {first:>10} KiB");
    println!("  after day {days:<3}    {last:>10} KiB   (peak {peak} KiB)");
    println!(
        "  drift per day    {:>10.1} KiB",
        (last as f64 - first as f64) / (days - 1) as f64
    );
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}
