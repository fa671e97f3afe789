//! Shared scenario helpers for the `world_*` tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use ibconn_core::connection::{Config, Event};
use ibconn_core::message::{Contract, HistoricalDataRequest};
use ibconn_sim::{ClientId, World, WorldConfig};

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
