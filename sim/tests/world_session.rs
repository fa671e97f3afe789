//! World scenarios without faults: the handshake, a historical fetch, a duplicate client id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use ibconn_core::connection::{Answer, Config, ConnectionError, Event, Query, VersionPolicy};
use ibconn_core::message::BarTime;
use ibconn_core::wire::VersionRange;
use ibconn_sim::{World, WorldConfig};

#[test]
fn handshake_reaches_connected_with_the_startup_burst() {
    // The default offer sends START_API with the hello; the wide one (pinned) after the reply.
    let wide = Config {
        versions: VersionPolicy::Pinned(VersionRange::supported()),
        ..Config::new(7)
    };
    for (config, offer, trips) in [(Config::new(7), "v213..226", 4), (wide, "v100..226", 6)] {
        let mut world = World::new(WorldConfig::new(1));
        let c = world.add_client(config);
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
        // SYN, accept, hello (+ START_API), reply (+ burst): four one-way trips of 1–2 ms each;
        // six with the wide offer (START_API, then the burst, after the reply).
        assert!(
            t >= trips * SEC / 1000 && t <= 2 * trips * SEC / 1000,
            "{offer}: {t:?}"
        );
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
        let trace = world.trace();
        let at = |what: &str| {
            trace
                .iter()
                .position(|l| l.contains(what))
                .unwrap_or_else(|| panic!("{what} not in {trace:#?}"))
        };
        assert!(trace[0].contains("+0.000s C1 dial"), "{trace:?}");
        let (start_api, reply) = (
            at("C1→G StartApi client_id=7"),
            at("G→C1 v226 20260106 10:00:00 America/New_York"),
        );
        at(&format!("C1→G API {offer}"));
        assert_eq!(start_api < reply, trips == 4, "{offer}: {trace:#?}");
        at("G→C1 ManagedAccounts");
    }
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
