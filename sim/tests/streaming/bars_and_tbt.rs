//! Real-time bars, tick-by-tick and keep-up-to-date bars, against the historical bars of the
//! same path.

use std::collections::BTreeMap;
use std::time::Duration;

use ibconn_core::message::{BarTime, Contract, MarketReply, Response, TickByTick};

use crate::harness::*;

/// Each real-time bar arrives at the 5-second boundary that ends it and equals the 5-second
/// bar `reqHistoricalData` returns for that interval: TRADES (with volume, WAP and count) and
/// MIDPOINT.
#[test]
fn real_time_bars_equal_the_historical_5_second_bars() {
    let mut sim = Sim::at(OPEN, 11);
    let mut c = sim.connect(1);
    let aapl = Contract::stock("AAPL");
    sim.advance(Duration::from_secs(2));
    assert!(market(&sim.request(&mut c, &rt_bars(1, aapl.clone(), "TRADES"))).is_empty());
    assert!(market(&sim.request(&mut c, &rt_bars(2, aapl.clone(), "MIDPOINT"))).is_empty());
    let mut got: BTreeMap<i32, Vec<(i64, ibconn_core::message::RealTimeBar)>> = BTreeMap::new();
    for _ in 0..60 {
        sim.advance(Duration::from_secs(1));
        let wall = sim.wall_ms() / 1000;
        for m in market(&sim.recv(&mut c)) {
            match m {
                MarketReply::RealTimeBar { req_id, bar } => {
                    assert_eq!(bar.time + 5, wall, "sent at the boundary ending it");
                    got.entry(req_id).or_default().push((wall, bar));
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let start = OPEN / 1000;
    for (req_id, what) in [(1, "TRADES"), (2, "MIDPOINT")] {
        let bars = &got[&req_id];
        let times: Vec<i64> = bars.iter().map(|(_, b)| b.time).collect();
        let expected: Vec<i64> = (0..12).map(|i| start + 5 * i).collect();
        assert_eq!(times, expected, "{what}");
        let hist = sim.five_second_bars(aapl.clone(), what, 120);
        for (_, rt) in bars {
            let h = bar_at(&hist, rt.time);
            assert_eq!(
                (rt.open, rt.high, rt.low, rt.close, rt.volume, rt.wap, rt.count),
                (h.open, h.high, h.low, h.close, h.volume, h.wap, h.count),
                "{what} bar at {}",
                rt.time
            );
        }
    }
    assert!(got[&1][0].1.volume > 0.0);
    assert_eq!(
        sim.gw.counters().lines_in_use,
        2,
        "real-time bars hold lines"
    );
}

#[test]
fn real_time_bars_validate_what_to_show_and_the_series() {
    let mut sim = Sim::at(OPEN, 12);
    let mut c = sim.connect(1);
    assert_eq!(
        errors(&sim.request(&mut c, &rt_bars(1, Contract::stock("AAPL"), "BID_ASK"))),
        [(
            1,
            321,
            "Error validating request.-'bY' : cause - What to show field is missing or incorrect."
                .into()
        )]
    );
    let eur = Contract {
        symbol: "EUR".into(),
        sec_type: "CASH".into(),
        currency: "USD".into(),
        ..Contract::default()
    };
    let e = errors(&sim.request(&mut c, &rt_bars(2, eur, "TRADES")));
    assert_eq!((e[0].0, e[0].1), (2, 420), "{e:?}");
    assert_eq!(
        errors(&sim.request(&mut c, &rt_bars(3, Contract::stock("KO"), "TRADES"))),
        [(
            3,
            420,
            "Invalid Real-time Query:No market data permissions for NYSE STK.".into()
        )]
    );
    assert_eq!(
        errors(&sim.request(&mut c, &rt_bars(4, Contract::stock("NOPE"), "TRADES"))),
        [(
            4,
            200,
            "No security definition has been found for the request.".into()
        )]
    );
    assert_eq!(sim.gw.counters().lines_in_use, 0);
}

/// The four tick-by-tick types, from the same path: trades once a second inside the TRADES
/// 5-second bars (sizes adding up to the bar's volume), quotes inside the BID and ASK bars,
/// midpoints inside the MIDPOINT bars and only when the midpoint moved.
#[test]
fn tick_by_tick_ticks_lie_within_the_bars_of_their_time() {
    let mut sim = Sim::at(OPEN, 13);
    let mut c = sim.connect(1);
    let aapl = Contract::stock("AAPL");
    for (id, t) in [(1, "Last"), (2, "AllLast"), (3, "BidAsk"), (4, "MidPoint")] {
        assert!(sim.request(&mut c, &tbt(id, aapl.clone(), t)).is_empty());
    }
    assert_eq!(sim.gw.counters().tick_by_tick_in_use, 4);
    assert_eq!(
        sim.gw.counters().lines_in_use,
        0,
        "tick-by-tick holds no line"
    );
    sim.advance(Duration::from_secs(30));
    let mut by_id: BTreeMap<i32, Vec<TickByTick>> = BTreeMap::new();
    for m in market(&sim.recv(&mut c)) {
        match m {
            MarketReply::TickByTick { req_id, tick } => by_id.entry(req_id).or_default().push(tick),
            other => panic!("{other:?}"),
        }
    }
    sim.advance(Duration::from_secs(5));
    let trades = sim.five_second_bars(aapl.clone(), "TRADES", 120);
    let bids = sim.five_second_bars(aapl.clone(), "BID", 120);
    let asks = sim.five_second_bars(aapl.clone(), "ASK", 120);
    let mids = sim.five_second_bars(aapl, "MIDPOINT", 120);
    let bar = |bars, t: i64| bar_at(bars, t - t.rem_euclid(5)).clone();
    let start = OPEN / 1000;

    let mut volume: BTreeMap<i64, f64> = BTreeMap::new();
    let times: Vec<i64> = by_id[&1].iter().map(TickByTick::time).collect();
    assert_eq!(times, (start + 1..=start + 30).collect::<Vec<_>>());
    for (last, all) in by_id[&1].iter().zip(&by_id[&2]) {
        let TickByTick::Last {
            all: false,
            time,
            price,
            size,
            exchange,
            ..
        } = last
        else {
            panic!("{last:?}")
        };
        assert!(matches!(all, TickByTick::Last { all: true, price: p, .. } if p == price));
        assert_eq!(exchange, "NASDAQ");
        let b = bar(&trades, *time);
        assert!(
            b.low <= *price && *price <= b.high,
            "{price} at {time}: {b:?}"
        );
        *volume.entry(*time - time.rem_euclid(5)).or_default() += size;
    }
    for t in (start + 5..start + 30).step_by(5) {
        assert_eq!(volume[&t], bar_at(&trades, t).volume, "bar at {t}");
    }
    assert!(by_id[&3].len() > 60, "quote changes: {}", by_id[&3].len());
    for q in &by_id[&3] {
        let TickByTick::BidAsk { time, bid, ask, .. } = q else {
            panic!("{q:?}")
        };
        let (b, a) = (bar(&bids, *time), bar(&asks, *time));
        assert!(b.low <= *bid && *bid <= b.high && a.low <= *ask && *ask <= a.high);
    }
    let mut prev = None;
    for q in &by_id[&4] {
        let TickByTick::MidPoint { time, mid } = q else {
            panic!("{q:?}")
        };
        let b = bar(&mids, *time);
        assert!(b.low <= *mid && *mid <= b.high);
        assert_ne!(prev, Some(*mid), "a midpoint tick only when it moved");
        prev = Some(*mid);
    }
}

#[test]
fn tick_by_tick_refuses_unknown_types_and_unpermitted_instruments() {
    let mut sim = Sim::at(OPEN, 14);
    let mut c = sim.connect(1);
    assert_eq!(
        errors(&sim.request(&mut c, &tbt(1, Contract::stock("AAPL"), "last"))),
        [(
            1,
            10189,
            "Failed to request tick-by-tick data.Invalid tick type: last".into()
        )],
        "IB's spelling is case-sensitive"
    );
    assert_eq!(
        errors(&sim.request(&mut c, &tbt(2, Contract::stock("KO"), "Last"))),
        [(
            2,
            10189,
            "Failed to request tick-by-tick data.No market data permissions for NYSE STK".into()
        )]
    );
    assert_eq!(sim.gw.counters().tick_by_tick_in_use, 0);
}

/// keepUpToDate: the initial bars, then every 5 s the forming bar — the same date while it
/// forms, the next one once it starts — until the cancel.
#[test]
fn keep_up_to_date_updates_the_forming_bar_until_cancelled() {
    let mut sim = Sim::at(OPEN + 2_000, 15);
    let mut c = sim.connect(1);
    let first = sim.request(&mut c, &keep_up(5, Contract::stock("AAPL"), "1 min"));
    assert!(matches!(
        first[..],
        [
            Response::HistoricalData { .. },
            Response::HistoricalDataEnd { .. }
        ]
    ));
    assert_eq!(sim.gw.counters().live_subscriptions, 1);
    let mut dates = Vec::new();
    for _ in 0..14 {
        sim.advance(Duration::from_secs(5));
        for r in sim.recv(&mut c) {
            match r {
                Response::HistoricalDataUpdate { req_id: 5, bar } => dates.push(bar.date),
                other => panic!("{other:?}"),
            }
        }
    }
    let minute = |m: i64| BarTime::Epoch(OPEN / 1000 + 60 * m);
    assert_eq!(dates.len(), 14);
    assert_eq!(dates.iter().filter(|d| **d == minute(0)).count(), 11);
    assert_eq!(dates[11..], [minute(1), minute(1), minute(1)]);
    assert!(sim
        .request(
            &mut c,
            &ibconn_core::message::Request::CancelHistoricalData { req_id: 5 }
        )
        .is_empty());
    sim.advance(Duration::from_secs(30));
    assert!(sim.recv(&mut c).is_empty());
    assert_eq!(sim.gw.counters().live_subscriptions, 0);
    assert_eq!(sim.gw.poll_timeout(), None);
}
