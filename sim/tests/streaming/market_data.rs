//! `reqMktData`: the opening messages, the cadence, ticks inside the bars of their time,
//! closed sessions, snapshots, market-data types, both wire forms.

use std::collections::BTreeMap;
use std::time::Duration;

use ibconn_core::message::{Contract, MarketReply};
use ibconn_core::wire::VersionRange;

use crate::harness::*;

/// Tick types of the price ticks among `m`.
fn price_types(m: &[MarketReply]) -> Vec<i32> {
    m.iter()
        .filter_map(|r| match r {
            MarketReply::TickPrice { tick_type, .. } => Some(*tick_type),
            _ => None,
        })
        .collect()
}

#[test]
fn market_data_opens_with_its_type_params_and_the_current_values() {
    let mut sim = Sim::at(OPEN, 1);
    let mut c = sim.connect(1);
    let m = market(&sim.request(&mut c, &mkt_data(7, Contract::stock("AAPL"))));
    assert_eq!(
        m[0],
        MarketReply::MarketDataType {
            req_id: 7,
            market_data_type: 1
        }
    );
    assert_eq!(
        m[1],
        MarketReply::TickReqParams {
            req_id: 7,
            min_tick: "0.01".into(),
            bbo_exchange: "9c0001".into(),
            snapshot_permissions: 3,
        }
    );
    assert_eq!(
        price_types(&m),
        [1, 2, 4, 9],
        "bid, ask, last, close: {m:?}"
    );
    let price = |t: i32| {
        m.iter()
            .find_map(|r| match r {
                MarketReply::TickPrice {
                    tick_type,
                    price,
                    size,
                    ..
                } if *tick_type == t => Some((*price, *size)),
                _ => None,
            })
            .unwrap()
    };
    let ((bid, bid_size), (ask, _), (last, last_size)) = (price(1), price(2), price(4));
    assert!(
        (ask - bid - 0.02).abs() < 1e-9,
        "a two-tick spread: {bid} {ask}"
    );
    assert!((last - (bid + ask) / 2.0).abs() < 1e-9);
    assert!(bid_size.unwrap() >= 100.0 && last_size.is_some());
    assert_eq!(price(9).1, None, "the close carries no size");
    assert!(m.contains(&MarketReply::TickString {
        req_id: 7,
        tick_type: 45,
        value: (OPEN / 1000).to_string()
    }));
    assert!(m.iter().any(|r| matches!(
        r,
        MarketReply::TickSize { tick_type: 8, size, .. } if *size > 0.0
    )));
    assert_eq!(sim.gw.counters().lines_in_use, 1);
}

/// Quote steps every 250 ms and a trade every second, each at its instant of virtual time; each
/// trade inside the TRADES 5-second bar of its second (and the sizes of a bar's trades add up to
/// its volume), each bid and ask inside the BID and ASK bars.
#[test]
fn ticks_flow_at_their_cadence_and_lie_within_the_bars_of_their_time() {
    let mut sim = Sim::at(OPEN, 2);
    let mut c = sim.connect(1);
    let aapl = Contract::stock("AAPL");
    let opening = sim.request(&mut c, &mkt_data(1, aapl.clone()));
    let (mut trades, mut bids, mut asks) = (BTreeMap::new(), Vec::new(), Vec::new());
    let (mut last, mut quote_steps, mut size_only) = (None, 0, 0);
    for step in 0..=(4 * 40) {
        let rs = if step == 0 {
            opening.clone()
        } else {
            sim.advance(Duration::from_millis(250));
            sim.recv(&mut c)
        };
        let sec = sim.wall_ms() / 1000;
        let m = market(&rs);
        if step == 0 {
            // The close tick of the opening is not a quote.
            assert!(matches!(
                m.last(),
                Some(MarketReply::TickPrice { tick_type: 9, .. })
            ));
        }
        quote_steps += usize::from(m.iter().any(|r| {
            matches!(
                r,
                MarketReply::TickPrice {
                    tick_type: 1 | 2,
                    ..
                } | MarketReply::TickSize {
                    tick_type: 0 | 3,
                    ..
                }
            )
        }));
        let mut size = None;
        for r in &m {
            match r {
                MarketReply::TickPrice {
                    tick_type: 1,
                    price,
                    ..
                } => bids.push((sec, *price)),
                MarketReply::TickPrice {
                    tick_type: 2,
                    price,
                    ..
                } => asks.push((sec, *price)),
                MarketReply::TickSize {
                    tick_type: 0 | 3, ..
                } => size_only += 1,
                MarketReply::TickPrice {
                    tick_type: 4,
                    price,
                    size: s,
                    ..
                } => {
                    last = Some(*price);
                    size = *s;
                }
                MarketReply::TickSize {
                    tick_type: 5,
                    size: s,
                    ..
                } => size = Some(*s),
                MarketReply::TickString {
                    tick_type: 45,
                    value,
                    ..
                } => {
                    let t: i64 = value.parse().unwrap();
                    assert_eq!(t, sec, "a trade stamped with its own second");
                    trades.insert(t, (last.unwrap(), size.unwrap_or(0.0)));
                }
                _ => {}
            }
        }
    }
    assert_eq!(trades.len(), 41, "one trade a second");
    assert!(quote_steps >= 150, "{quote_steps} of 161 quote steps sent");
    assert!(size_only > 0, "size-only changes come as tickSize 0/3");
    sim.advance(Duration::from_secs(5));
    let t_bars = sim.five_second_bars(aapl.clone(), "TRADES", 120);
    let b_bars = sim.five_second_bars(aapl.clone(), "BID", 120);
    let a_bars = sim.five_second_bars(aapl, "ASK", 120);
    let start = OPEN / 1000;
    for bar_start in (start..start + 40).step_by(5) {
        let bar = bar_at(&t_bars, bar_start);
        let mut volume = 0.0;
        for t in bar_start..bar_start + 5 {
            let (price, size) = trades[&t];
            assert!(
                bar.low <= price && price <= bar.high,
                "trade {price} at {t} outside {bar:?}"
            );
            volume += size;
        }
        assert_eq!(volume, bar.volume, "the bar's trades add up to its volume");
    }
    let within = |ticks: &[(i64, f64)], bars: &[ibconn_core::message::Bar]| {
        for &(t, p) in ticks {
            let b = bar_at(bars, t - t.rem_euclid(5));
            assert!(b.low <= p && p <= b.high, "{p} at {t} outside {b:?}");
        }
        ticks.len()
    };
    assert!(within(&bids, &b_bars) >= 5);
    assert!(within(&asks, &a_bars) >= 5);
}

/// A closed market: the close tick once, then silence until the next open — and no timer firing
/// meanwhile (virtual time jumps straight to the open).
#[test]
fn a_closed_session_gets_the_close_once_then_ticks_from_the_next_open() {
    let mut sim = Sim::at(SATURDAY, 3);
    let mut c = sim.connect(1);
    let m = market(&sim.request(&mut c, &mkt_data(1, Contract::stock("AAPL"))));
    assert_eq!(price_types(&m), [9], "{m:?}");
    let close = match m.last().unwrap() {
        MarketReply::TickPrice { price, .. } => *price,
        other => panic!("{other:?}"),
    };
    // Friday 2026-01-09's regular close, as the daily bar has it.
    let friday = sim.gw.reference_bars(sim.now, &daily("AAPL")).unwrap();
    assert_eq!(friday.last().unwrap().date.to_string(), "20260109");
    assert_eq!(close, friday.last().unwrap().close);
    // Monday 2026-01-12 04:00 New York (09:00 UTC) opens the extended session.
    let monday_open = 1_768_208_400_000;
    let wake = sim.gw.poll_timeout().unwrap();
    assert_eq!(
        wake - sim.now,
        Duration::from_millis(monday_open - SATURDAY as u64),
        "the next wake-up is Monday's open"
    );
    sim.advance(Duration::from_secs(3600));
    assert!(market(&sim.recv(&mut c)).is_empty());
    sim.advance(wake - sim.now + Duration::from_secs(1));
    let m = market(&sim.recv(&mut c));
    assert!(price_types(&m).contains(&4), "trades from the open: {m:?}");
}

fn daily(symbol: &str) -> ibconn_core::message::request::HistoricalDataRequest {
    ibconn_core::message::request::HistoricalDataRequest {
        req_id: 0,
        contract: Contract::stock(symbol),
        end_date_time: String::new(),
        bar_size: "1 day".into(),
        duration: "1 W".into(),
        use_rth: true,
        what_to_show: "MIDPOINT".into(),
        format_date: 1,
        keep_up_to_date: false,
        chart_options: Vec::new(),
    }
}

#[test]
fn snapshots_end_at_once_hold_no_line_and_refuse_generic_ticks() {
    let mut sim = Sim::at(OPEN, 4);
    let mut c = sim.connect(1);
    let m = market(&sim.request(&mut c, &snapshot(3, Contract::stock("MSFT"))));
    assert_eq!(price_types(&m), [1, 2, 4, 9]);
    assert_eq!(
        m.last().unwrap(),
        &MarketReply::TickSnapshotEnd { req_id: 3 }
    );
    assert_eq!(sim.gw.counters().lines_in_use, 0);
    assert_eq!(sim.gw.counters().live_subscriptions, 0);
    sim.advance(Duration::from_secs(5));
    assert!(sim.recv(&mut c).is_empty(), "nothing after the end");
    assert_eq!(
        errors(&sim.request(&mut c, &cancel_mkt(3))),
        [(3, 300, "Can't find EId with tickerId:3".into())],
        "a cancel after the snapshot ended"
    );
    let mut generic = snapshot(4, Contract::stock("MSFT"));
    if let ibconn_core::message::Request::Market(ibconn_core::message::MarketRequest::MktData(r)) =
        &mut generic
    {
        r.generic_ticks = "233".into();
    }
    assert_eq!(
        errors(&sim.request(&mut c, &generic)),
        [(
            4,
            321,
            "Error validating request.-'bO' : cause - Snapshot market data subscription is not applicable to generic ticks"
                .into()
        )]
    );
    // On a Saturday a snapshot shows Friday's last values.
    let mut sim = Sim::at(SATURDAY, 4);
    let mut c = sim.connect(1);
    let m = market(&sim.request(&mut c, &snapshot(1, Contract::stock("MSFT"))));
    assert_eq!(price_types(&m), [1, 2, 4, 9], "{m:?}");
}

/// Frozen (2) in a closed market: the last values and type 2; live (1): the close only.
/// Delayed data comes only where live is not permitted: KO (no permissions) gets 354 live and
/// 10167 plus ticks 66–68/74/75/88 of 15 minutes ago delayed; AAPL gets live data whatever
/// was asked.
#[test]
fn market_data_types_frozen_and_delayed() {
    let mut sim = Sim::at(SATURDAY, 5);
    let mut c = sim.connect(1);
    sim.send(&mut c, &market_data_type(2));
    let m = market(&sim.request(&mut c, &mkt_data(1, Contract::stock("AAPL"))));
    assert_eq!(
        m[0],
        MarketReply::MarketDataType {
            req_id: 1,
            market_data_type: 2
        }
    );
    assert_eq!(price_types(&m), [1, 2, 4, 9]);

    let mut sim = Sim::at(OPEN, 5);
    let mut c = sim.connect(1);
    let ko = Contract::stock("KO");
    assert_eq!(
        errors(&sim.request(&mut c, &mkt_data(1, ko.clone()))),
        [(
            1,
            354,
            "Requested market data is not subscribed. Check API status by selecting the Account menu then under Management choose Market Data Subscription Manager and/or availability of delayed data."
                .into()
        )]
    );
    assert_eq!(sim.gw.counters().lines_in_use, 0);
    sim.send(&mut c, &market_data_type(3));
    let rs = sim.request(&mut c, &mkt_data(2, ko));
    assert_eq!(
        errors(&rs),
        [(
            2,
            10167,
            "Requested market data is not subscribed. Displaying delayed market data.".into()
        )]
    );
    let m = market(&rs);
    assert_eq!(
        m[0],
        MarketReply::MarketDataType {
            req_id: 2,
            market_data_type: 3
        }
    );
    assert_eq!(price_types(&m), [66, 67, 68, 75], "{m:?}");
    assert!(m.contains(&MarketReply::TickString {
        req_id: 2,
        tick_type: 88,
        value: (OPEN / 1000 - 900).to_string()
    }));
    assert!(m
        .iter()
        .any(|r| matches!(r, MarketReply::TickSize { tick_type: 74, .. })));
    sim.advance(Duration::from_secs(2));
    let later = market(&sim.recv(&mut c));
    assert!(later.iter().all(|r| match r {
        MarketReply::TickPrice { tick_type, .. } => [66, 67, 68].contains(tick_type),
        MarketReply::TickSize { tick_type, .. } => [69, 70, 71, 74].contains(tick_type),
        MarketReply::TickString { tick_type, .. } => *tick_type == 88,
        _ => false,
    }));
    // With permissions, delayed asked means live served.
    let m = market(&sim.request(&mut c, &mkt_data(3, Contract::stock("AAPL"))));
    assert_eq!(
        m[0],
        MarketReply::MarketDataType {
            req_id: 3,
            market_data_type: 1
        }
    );
}

/// A text client (ib_async's range, server version 178) and a protobuf one (226) decode the same
/// ticks from the same instants: one codec, both forms.
#[test]
fn text_and_protobuf_clients_get_the_same_ticks() {
    let mut sim = Sim::at(OPEN, 6);
    let mut text = sim.connect_with(1, VersionRange::new(100, 178));
    let mut proto = sim.connect(2);
    assert_eq!((text.sv, proto.sv), (178, 226));
    let eur = Contract {
        symbol: "EUR".into(),
        sec_type: "CASH".into(),
        exchange: "IDEALPRO".into(),
        currency: "USD".into(),
        ..Contract::default()
    };
    for (c, id) in [(&mut text, 1), (&mut proto, 1)] {
        sim.send(c, &mkt_data(id, eur.clone()));
        sim.send(c, &tbt(id + 1, Contract::stock("AAPL"), "AllLast"));
        sim.send(c, &rt_bars(id + 2, Contract::stock("AAPL"), "MIDPOINT"));
    }
    sim.advance(Duration::from_secs(11));
    // The text form always carries a tickPrice size (0 where protobuf leaves it out).
    let sized = |m: Vec<MarketReply>| -> Vec<MarketReply> {
        m.into_iter()
            .map(|r| match r {
                MarketReply::TickPrice {
                    req_id,
                    tick_type,
                    price,
                    size,
                    attr_mask,
                } => MarketReply::TickPrice {
                    req_id,
                    tick_type,
                    price,
                    size: Some(size.unwrap_or(0.0)),
                    attr_mask,
                },
                other => other,
            })
            .collect()
    };
    let a = sized(market(&sim.recv(&mut text)));
    let b = sized(market(&sim.recv(&mut proto)));
    assert!(a.len() > 40, "{}", a.len());
    assert_eq!(a, b);
    // Forex has quotes and no trades.
    assert!(!price_types(&a).contains(&4));
    assert!(price_types(&a).contains(&1));
}

/// Frozen asked on an index (regular hours only, no quotes): live trades until 16:00, then a
/// `marketDataType` 2 when the session closes, and nothing more.
#[test]
fn frozen_is_announced_when_the_session_closes() {
    // 15:59:58 New York.
    let mut sim = Sim::at(OPEN + (6 * 3600 - 2) * 1000, 8);
    let mut c = sim.connect(1);
    sim.send(&mut c, &market_data_type(2));
    let spx = Contract {
        symbol: "SPX".into(),
        sec_type: "IND".into(),
        exchange: "CBOE".into(),
        currency: "USD".into(),
        ..Contract::default()
    };
    let m = market(&sim.request(&mut c, &mkt_data(1, spx)));
    assert_eq!(
        m[0],
        MarketReply::MarketDataType {
            req_id: 1,
            market_data_type: 1
        }
    );
    assert_eq!(price_types(&m), [4, 9], "an index: last and close only");
    sim.advance(Duration::from_secs(5));
    let m = market(&sim.recv(&mut c));
    let frozen = MarketReply::MarketDataType {
        req_id: 1,
        market_data_type: 2,
    };
    assert_eq!(m.last(), Some(&frozen), "{m:?}");
    assert!(m.iter().filter(|r| **r == frozen).count() == 1);
    sim.advance(Duration::from_secs(60));
    assert!(market(&sim.recv(&mut c)).is_empty());
}
