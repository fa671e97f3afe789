//! Shared scenario helpers for the `world_*` tests, and the seed-sweep variables of the swarms.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::time::Duration;

use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::utc;
use ibconn_core::connection::{Config, Event, Query};
use ibconn_core::ib_duration::{DurationUnit, IbDuration};
use ibconn_core::message::Contract;
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{Chaos, ClientId, World, WorldConfig};

pub const SEC: Duration = Duration::from_secs(1);

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// AAPL hourly TRADES bars, two RTH days ending 2025-12-31 16:00 New York.
pub fn hourly() -> HistoricalQuery {
    HistoricalQuery {
        use_rth: true,
        ..HistoricalQuery::new(
            Contract::stock("AAPL"),
            EndTime::At(utc(2025, 12, 31, 21, 0, 0)),
            days(2),
            BarSize::Hour1,
            WhatToShow::Trades,
        )
    }
}

/// `n` trading days (`n ≥ 1`).
pub fn days(n: u32) -> IbDuration {
    IbDuration::try_new(n, DurationUnit::Days).unwrap()
}

/// A world with `seed` and one connected client with `client_id`.
pub fn connected(seed: u64, client_id: i32) -> (World, ClientId) {
    let mut world = World::new(WorldConfig::new(seed));
    let c = world.add_client(Config::new(client_id));
    world
        .run_until_event(c, secs(5), |e| matches!(e, Event::Connected { .. }))
        .unwrap();
    (world, c)
}

/// Print the trace when a scenario fails (cargo shows it only then).
pub fn dump(world: &World) {
    for line in world.trace() {
        println!("{line}");
    }
}

/// 24 h: one client fetching bars every five minutes, redialing whenever it is down, and random faults
/// of every kind about every 20 minutes. Returns the trace hash, the trace length and the number of
/// completed requests.
pub fn day(seed: u64) -> (u64, usize, World) {
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
            req.duration = days(1 + u32::try_from(fresh % 5).unwrap());
            world.send(c, Query::HistoricalData(req)).unwrap();
        }
    }
    (world.trace_hash(), world.trace().len(), world)
}

/// A seed-sweep variable (`IBCONN_SIM_SEED`, `IBCONN_SIM_SEEDS`) as a number; absent → `None`,
/// anything but a `u64` stops the test (a typo must not silently run the default seeds).
pub fn env_u64(name: &str) -> Option<u64> {
    let s = std::env::var(name).ok()?;
    Some(
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?}: not a u64")),
    )
}
