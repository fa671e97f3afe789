//! IB's limits on streaming, per gateway, with IB's texts: market-data lines (101), tick-by-tick
//! (10190), duplicate ids (322), unknown cancels (300), real-time bars in the pacing window (420),
//! 50 open historical requests with keep-up-to-date streams (322); cancels stop at once; the
//! duplicate-subscription counters.

use std::time::Duration;

use ibconn_core::message::{Contract, MarketReply, Request};
use ibconn_sim::GatewayConfig;

use crate::harness::*;

fn with(config: GatewayConfig, seed: u64) -> Sim {
    Sim::new(
        GatewayConfig {
            start_unix_ms: OPEN,
            ..config
        },
        seed,
    )
}

const MAX_TICKERS: &str = "Max number of tickers has been reached.";

/// Lines are counted over every session of the gateway: market data and real-time bars hold
/// one, snapshots and tick-by-tick do not; a cancel frees one at once.
#[test]
fn market_data_lines_are_a_gateway_budget() {
    let config = GatewayConfig {
        max_market_data_lines: 3,
        ..GatewayConfig::default()
    };
    let mut sim = with(config, 21);
    let mut a = sim.connect(1);
    let mut b = sim.connect(2);
    sim.request(&mut a, &mkt_data(1, Contract::stock("AAPL")));
    sim.request(&mut a, &mkt_data(2, Contract::stock("MSFT")));
    assert!(errors(&sim.request(&mut b, &rt_bars(1, Contract::stock("SPY"), "TRADES"))).is_empty());
    assert_eq!(
        errors(&sim.request(&mut b, &mkt_data(2, Contract::stock("AAPL")))),
        [(2, 101, MAX_TICKERS.into())]
    );
    assert_eq!(
        errors(&sim.request(&mut b, &rt_bars(3, Contract::stock("AAPL"), "MIDPOINT"))),
        [(3, 101, MAX_TICKERS.into())]
    );
    // Nothing is served for a refused id.
    sim.advance(Duration::from_secs(6));
    let served: Vec<i32> = market(&sim.recv(&mut b))
        .iter()
        .map(MarketReply::req_id)
        .collect();
    assert!(served.iter().all(|&id| id == 1), "{served:?}");
    // Snapshots and tick-by-tick do not need a line.
    let snap = market(&sim.request(&mut b, &snapshot(4, Contract::stock("AAPL"))));
    assert_eq!(
        snap.last(),
        Some(&MarketReply::TickSnapshotEnd { req_id: 4 })
    );
    assert!(errors(&sim.request(&mut b, &tbt(5, Contract::stock("AAPL"), "Last"))).is_empty());
    let k = sim.gw.counters();
    assert_eq!(
        (k.lines_in_use, k.lines_in_use_max, k.max_tickers_refused),
        (3, 3, 2)
    );
    sim.request(&mut a, &cancel_mkt(1));
    assert_eq!(sim.gw.counters().lines_in_use, 2);
    assert!(errors(&sim.request(&mut b, &mkt_data(2, Contract::stock("AAPL")))).is_empty());
    assert_eq!(sim.gw.counters().lines_in_use_max, 3);
}

#[test]
fn tick_by_tick_is_five_per_gateway() {
    let mut sim = with(GatewayConfig::default(), 22);
    let mut a = sim.connect(1);
    let mut b = sim.connect(2);
    for id in 1..=3 {
        assert!(sim
            .request(&mut a, &tbt(id, Contract::stock("AAPL"), "BidAsk"))
            .is_empty());
    }
    for id in 1..=2 {
        assert!(sim
            .request(&mut b, &tbt(id, Contract::stock("MSFT"), "Last"))
            .is_empty());
    }
    assert_eq!(
        errors(&sim.request(&mut b, &tbt(3, Contract::stock("SPY"), "MidPoint"))),
        [(
            3,
            10190,
            "Max number of tick-by-tick requests has been reached.".into()
        )]
    );
    let k = sim.gw.counters();
    assert_eq!((k.tick_by_tick_in_use, k.tick_by_tick_refused), (5, 1));
    sim.request(&mut a, &cancel_tbt(2));
    assert!(sim
        .request(&mut b, &tbt(3, Contract::stock("SPY"), "MidPoint"))
        .is_empty());
    assert_eq!(sim.gw.counters().tick_by_tick_in_use_max, 5);
}

const DUPLICATE: &str = "Error processing request.-'bO' : cause - Duplicate ticker id";

/// One id space per session: any open request (a subscription of any kind, a historical
/// request, a keep-up-to-date stream) makes its id a 322; the open one carries on. A cancel of
/// an id that is not live (of that kind) is a 300.
#[test]
fn open_ids_get_322_and_unknown_cancels_get_300() {
    let mut sim = with(GatewayConfig::default(), 23);
    let mut c = sim.connect(1);
    let aapl = Contract::stock("AAPL");
    sim.request(&mut c, &mkt_data(1, aapl.clone()));
    sim.request(&mut c, &keep_up(2, aapl.clone(), "1 min"));
    for (id, req) in [
        (1, mkt_data(1, Contract::stock("MSFT"))),
        (1, rt_bars(1, aapl.clone(), "TRADES")),
        (1, tbt(1, aapl.clone(), "Last")),
        (1, keep_up(1, aapl.clone(), "5 mins")),
        (2, mkt_data(2, aapl.clone())),
    ] {
        assert_eq!(
            errors(&sim.request(&mut c, &req)),
            [(id, 322, DUPLICATE.into())]
        );
    }
    for cancel in [cancel_mkt(99), cancel_rt(99), cancel_tbt(99), cancel_rt(1)] {
        let id = cancel.req_id().unwrap();
        let expected = (id, 300, format!("Can't find EId with tickerId:{id}"));
        assert_eq!(errors(&sim.request(&mut c, &cancel)), [expected]);
    }
    // The open subscription carries on (a real-time-bars cancel of it did nothing).
    sim.advance(Duration::from_secs(1));
    assert!(market(&sim.recv(&mut c)).iter().all(|m| m.req_id() == 1));
    assert_eq!(sim.gw.counters().live_subscriptions, 2);
}

/// A cancel stops its stream at once: nothing for that id after it, and no timer left.
#[test]
fn cancels_stop_the_stream_at_once() {
    let mut sim = with(GatewayConfig::default(), 24);
    let mut c = sim.connect(1);
    let aapl = Contract::stock("AAPL");
    sim.request(&mut c, &mkt_data(1, aapl.clone()));
    sim.request(&mut c, &rt_bars(2, aapl.clone(), "TRADES"));
    sim.request(&mut c, &tbt(3, aapl, "BidAsk"));
    sim.advance(Duration::from_millis(5_100));
    let before = market(&sim.recv(&mut c));
    for id in 1..=3 {
        assert!(before.iter().any(|m| m.req_id() == id), "{id} streamed");
    }
    sim.advance(Duration::from_millis(100));
    for cancel in [cancel_mkt(1), cancel_rt(2), cancel_tbt(3)] {
        sim.send(&mut c, &cancel);
    }
    // Anything received now was committed before the cancels.
    let _ = sim.recv(&mut c);
    assert_eq!(sim.gw.counters().live_subscriptions, 0);
    assert_eq!(sim.gw.poll_timeout(), None, "no timer left");
    sim.advance(Duration::from_secs(30));
    assert!(sim.recv(&mut c).is_empty());
}

/// The duplicate counters: the same kind, contract and parameters twice on one connection, or
/// on two connections; other parameters are another subscription.
#[test]
fn duplicate_subscriptions_are_counted_per_connection_and_across() {
    let mut sim = with(GatewayConfig::default(), 25);
    let mut a = sim.connect(1);
    let mut b = sim.connect(2);
    let aapl = Contract::stock("AAPL");
    sim.request(&mut a, &mkt_data(1, aapl.clone()));
    sim.request(&mut a, &rt_bars(2, aapl.clone(), "TRADES"));
    sim.request(&mut a, &rt_bars(3, aapl.clone(), "MIDPOINT"));
    assert_eq!(sim.gw.counters().duplicate_subscriptions, 0);
    sim.request(&mut b, &mkt_data(1, aapl.clone()));
    let k = sim.gw.counters();
    assert_eq!(
        (
            k.duplicate_subscriptions,
            k.duplicate_subscriptions_across_connections
        ),
        (0, 1)
    );
    sim.request(&mut a, &mkt_data(4, aapl.clone()));
    sim.request(&mut a, &keep_up(5, aapl.clone(), "1 min"));
    sim.request(&mut a, &keep_up(6, aapl, "1 min"));
    let k = sim.gw.counters();
    assert_eq!(
        (
            k.duplicate_subscriptions,
            k.duplicate_subscriptions_across_connections
        ),
        (1, 2)
    );
}

/// Real-time-bars requests count in the 10-minute pacing window (60 new requests), refused with
/// IB's 420; keep-up-to-date streams count among the 50 open historical requests (322).
#[test]
fn real_time_bars_are_paced_and_keep_up_to_date_streams_are_open_requests() {
    let mut sim = with(GatewayConfig::default(), 26);
    let mut c = sim.connect(1);
    let aapl = Contract::stock("AAPL");
    for id in 1..=60 {
        sim.advance(Duration::from_millis(500));
        assert!(errors(&sim.request(&mut c, &rt_bars(id, aapl.clone(), "TRADES"))).is_empty());
        sim.send(&mut c, &cancel_rt(id));
    }
    assert_eq!(
        errors(&sim.request(&mut c, &rt_bars(61, aapl.clone(), "TRADES"))),
        [(
            61,
            420,
            "Invalid Real-time Query:Historical data request pacing violation".into()
        )]
    );
    assert_eq!(sim.gw.pacing_violations(), 1);
    sim.advance(Duration::from_secs(600));
    assert!(errors(&sim.request(&mut c, &rt_bars(62, aapl.clone(), "TRADES"))).is_empty());

    let mut sim = with(GatewayConfig::default(), 27);
    let mut c = sim.connect(1);
    let symbols = ["AAPL", "MSFT", "SPY", "QQQ", "NVDA"];
    let bars = [
        "1 min", "2 mins", "3 mins", "5 mins", "10 mins", "15 mins", "20 mins", "30 mins",
        "1 hour", "2 hours",
    ];
    let mut id = 0;
    for symbol in symbols {
        for bar in bars {
            // Under IB's 50 messages a second.
            sim.advance(Duration::from_millis(30));
            id += 1;
            let r = sim.request(&mut c, &keep_up(id, Contract::stock(symbol), bar));
            assert!(errors(&r).is_empty(), "stream {id}: {r:?}");
        }
    }
    assert_eq!(sim.gw.counters().live_subscriptions, 50);
    let r = sim.request(&mut c, &keep_up(51, Contract::stock("AAPL"), "4 hours"));
    assert_eq!(
        errors(&r),
        [(
            51,
            322,
            "Error processing request:-'wd' : cause - Only 50 simultaneous API historical data requests allowed."
                .into()
        )]
    );
    sim.send(&mut c, &Request::CancelHistoricalData { req_id: 1 });
    let r = sim.request(&mut c, &keep_up(52, Contract::stock("AAPL"), "4 hours"));
    assert!(errors(&r).is_empty(), "{r:?}");
}
