//! A simulated day of streams through the pool: the scenario of `sim/tests/stream_swarm.rs` — 100
//! subscriptions (70 level-1 on three forex pairs at a one-minute quote step, 20 real-time bars, 5
//! tick-by-tick, 5 keep-up-to-date) on 8 sessions for 24 simulated hours, through the nightly
//! reset, 1101, 1102, a restart and a breaker-tripping outage — timed over three seeds. Baseline in
//! the same run: the same day with the same 100 leases and sessions and faults but no stream
//! (what the pool, the sessions and the faults cost by themselves).
//!
//! Run: `cargo bench -p ibconn-sim --bench stream_day`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods, dead_code)]

#[path = "../tests/stream_swarm.rs"]
mod scenario;

use std::time::Duration;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let day = Duration::from_secs(24 * 3600);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for seed in 1..=3 {
        let (wall, summary) = scenario::run(seed, day, 100).unwrap();
        println!("seed {seed}, 100 streams: {wall:.2?} ({summary})");
        with.push(wall.as_secs_f64());
        let (wall, _) = scenario::run(seed, day, 0).unwrap();
        println!("seed {seed}, no stream:   {wall:.2?}");
        without.push(wall.as_secs_f64());
    }
    let (w, b) = (median(with), median(without));
    println!(
        "24 simulated hours, 100 streams on 8 sessions: {w:.2} s wall (median of 3), {:.0} × real time; \
         baseline without streams {b:.2} s; streams cost {:.2} s",
        day.as_secs_f64() / w,
        w - b
    );
}
