//! World scenarios without faults: the handshake, a historical fetch, a duplicate client id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use ibconn_core::connection::{Answer, Config, ConnectionError, Event, Query};
use ibconn_core::message::BarTime;
use ibconn_sim::{World, WorldConfig};

#[test]
fn handshake_reaches_connected_with_the_startup_burst() {
    let mut world = World::new(WorldConfig::new(1));
    let c = world.add_client(Config::new(7));
    let (t, ev) = world
        .run_until_event(c, secs(5), |e| matches!(e, Event::Connected { .. }))
        .unwrap();
    dump(&world);
    match ev {
        Event::Connected {
            server_version,
            next_valid_id,
            accounts,
            connection_time,
        } => {
            assert_eq!(server_version, 226);
            assert_eq!(next_valid_id, 1);
            assert_eq!(accounts, ["DU1234567"]);
            assert_eq!(connection_time, "20260106 10:00:00 America/New_York");
        }
        other => panic!("{other:?}"),
    }
    // SYN, accept, hello, reply, START_API, burst: six one-way trips of 1–2 ms each.
    assert!(t >= 6 * SEC / 1000 && t <= 12 * SEC / 1000, "{t:?}");
    world.run_for(secs(1)).unwrap();
    let codes: Vec<i32> = world
        .events(c)
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Notice { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [2104, 2106, 2158]);
    let trace = world.trace().join("\n");
    assert!(trace.contains("+0.000s C1 dial"), "{trace}");
    assert!(trace.contains("C1→G API v100..226"), "{trace}");
    assert!(trace.contains("C1→G StartApi client_id=7"), "{trace}");
    assert!(trace.contains("G→C1 ManagedAccounts"), "{trace}");
}

#[test]
fn historical_fetch_returns_bars_deterministically() {
    let (mut world, c) = connected(3, 1);
    let id = world.send(c, Query::HistoricalData(hourly())).unwrap();
    let (_, result) = world.run_until_completed(c, id, secs(5)).unwrap();
    match result.unwrap() {
        Answer::Bars { bars, start, end } => {
            assert_eq!(bars.len(), 14, "two RTH days of 7 bars");
            assert_eq!(end, "20251231-21:00:00");
            assert_eq!(start, "20251230-14:30:00");
            assert_eq!(bars[0].date, BarTime::Epoch(1_767_105_000));
        }
        other => panic!("{other:?}"),
    }
    let line = world
        .trace()
        .iter()
        .find(|l| l.contains("C1→G ReqHistoricalData"))
        .unwrap();
    assert!(
        line.ends_with("ReqHistoricalData #1 AAPL 1 hour 2 D TRADES"),
        "{line}"
    );
}

#[test]
fn duplicate_client_id_gets_326_and_is_closed() {
    let (mut world, _first) = connected(5, 42);
    let second = world.add_client(Config::new(42));
    let (_, ev) = world
        .run_until_event(second, secs(5), |e| matches!(e, Event::Disconnected { .. }))
        .unwrap();
    assert_eq!(
        ev,
        Event::Disconnected {
            reason: ConnectionError::ClientIdInUse { client_id: 42 }
        }
    );
    world.run_for(secs(1)).unwrap();
    let trace = world.trace().join("\n");
    assert!(
        trace.contains("G→C2 Error #-1 326 Unable to connect as the client id is already in use"),
        "{trace}"
    );
    assert!(trace.contains("G→C2 close"), "{trace}");
}
