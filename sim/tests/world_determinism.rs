//! One seed replays a whole day exactly. (How fast a day simulates is a benchmark, not a test:
//! `cargo bench -p ibconn-sim --bench world_day`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;

#[test]
fn same_seed_same_trace_and_other_seed_other_trace() {
    let (a, lines, world) = day(42);
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
    println!("24 h virtual: {lines} trace lines, {} steps", world.steps());
}
