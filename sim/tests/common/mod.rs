//! Shared scenario helpers for the `world_*` tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use ibconn_core::connection::{Config, Event, Query};
use ibconn_core::message::{Contract, HistoricalDataRequest};
use ibconn_sim::{Chaos, ClientId, World, WorldConfig};

pub const SEC: Duration = Duration::from_secs(1);

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// AAPL hourly TRADES bars, two RTH days ending 2025-12-31 16:00 New York.
pub fn hourly() -> HistoricalDataRequest {
    HistoricalDataRequest {
        contract: Contract::stock("AAPL"),
        end_date_time: "20251231-21:00:00".into(),
        bar_size: "1 hour".into(),
        duration: "2 D".into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        ..HistoricalDataRequest::default()
    }
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
            req.duration = format!("{} D", 1 + fresh % 5);
            world.send(c, Query::HistoricalData(req)).unwrap();
        }
    }
    (world.trace_hash(), world.trace().len(), world)
}
