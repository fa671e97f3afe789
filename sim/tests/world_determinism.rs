//! One seed replays a whole day exactly, and a day takes well under a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use ibconn_core::connection::{Config, Query};
use ibconn_sim::{Chaos, World, WorldConfig};

/// 24 h: one client fetching bars every five minutes, redialing whenever it is down, and random faults
/// of every kind about every 20 minutes. Returns the trace hash, the trace length and the number of
/// completed requests.
fn day(seed: u64) -> (u64, usize, World) {
    let mut config = WorldConfig::new(seed);
    config.gateway.chaos = Some(Chaos::every(Duration::from_secs(20 * 60)));
    let mut world = World::new(config);
    let c = world.add_client(Config::new(1));
    let mut fresh = 0u64;
    while world.elapsed() < secs(24 * 3600) {
        world.run_for(secs(300)).unwrap();
        let conn = world.connection(c).unwrap();
        if conn.is_closed() {
            world.dial(c).unwrap();
        } else if conn.is_ready() && conn.in_flight() == 0 {
            // Vary the request so the 15 s identical-request rule never trips.
            fresh += 1;
            let mut req = hourly();
            req.duration = format!("{} D", 1 + fresh % 5);
            world.send(c, Query::HistoricalData(req)).unwrap();
        }
    }
    (world.trace_hash(), world.trace().len(), world)
}

#[test]
fn same_seed_same_trace_other_seed_other_trace_and_a_day_is_fast() {
    let started = std::time::Instant::now();
    let (a, lines, world) = day(42);
    let one_day = started.elapsed();
    let (b, lines_b, _) = day(42);
    let (c, _, _) = day(43);
    assert_eq!(a, b, "same seed, different trace");
    assert_eq!(lines, lines_b);
    assert_ne!(a, c, "different seeds, identical trace");
    let trace = world.trace().join("\n");
    let completed = trace.matches(" bars\n").count();
    assert!(completed > 200, "only {completed} fetches completed");
    assert!(
        trace.contains("Disconnected"),
        "chaos never cut the session"
    );
    println!(
        "24 h virtual: {lines} trace lines, {} steps, {one_day:?} wall",
        world.steps()
    );
    assert!(one_day < Duration::from_secs(2), "a day took {one_day:?}");
}
