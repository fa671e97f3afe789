//! Streams through the pool: first-class subscriptions that outlive their session (re-requested
//! under a fresh id after a drop or 1101, not after 1102), cancelled on drop, ended by IB's
//! refusals, held to IB's caps, and keep-up-to-date bars that fill their gap.

use super::*;
use crate::message::{Bar, BarTime, MarketReply, MarketRequest};
use crate::stream::{StreamData, StreamItem, StreamKind, StreamQuery, Tick, TickType};

fn aapl_ticks() -> Query {
    Query::Stream(StreamQuery::market_data(Contract::stock("AAPL")))
}

fn bid(req_id: i32, price: f64) -> Response {
    Response::Market(MarketReply::TickPrice {
        req_id,
        tick_type: 1,
        price,
        size: Some(100.0),
        attr_mask: 0,
    })
}

impl World {
    /// Streaming requests the connected gateways received, in order (ids and cancels).
    fn market_requests(&self) -> Vec<MarketRequest> {
        self.peers
            .values()
            .flat_map(|p| p.got.iter())
            .filter_map(|r| match r {
                Request::Market(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// The request id of the last `reqMktData` received.
    fn last_mkt_data_id(&self) -> i32 {
        self.market_requests()
            .iter()
            .rev()
            .find_map(|m| match m {
                MarketRequest::MktData(r) => Some(r.req_id),
                _ => None,
            })
            .expect("a reqMktData was sent")
    }

    /// The stream items of `ticket` so far.
    fn items(&self, ticket: Ticket) -> Vec<StreamItem> {
        self.events
            .iter()
            .filter_map(|e| match e {
                PoolEvent::Stream { ticket: t, item } if *t == ticket => Some(item.clone()),
                _ => None,
            })
            .collect()
    }

    fn ended(&self, ticket: Ticket) -> Option<&Option<CallError>> {
        self.events.iter().find_map(|e| match e {
            PoolEvent::StreamEnded { ticket: t, error } if *t == ticket => Some(error),
            _ => None,
        })
    }
}

fn is_bid(item: &StreamItem, price: f64) -> bool {
    matches!(item, StreamItem::Data(StreamData::Tick(Tick::Price { field, price: p, .. }))
        if *field == TickType::BID && *p == price)
}

#[test]
fn a_stream_outlives_its_session_under_a_fresh_id_with_an_interruption_and_a_gap() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, client_id) = w.lease(Purpose::Streaming);
    let ticket = w.send(lease, aapl_ticks());
    assert_eq!(w.completed(ticket), Some(&Ok(Answer::Subscribed)));
    let first = w.last_mkt_data_id();
    w.push(client_id, bid(first, 250.0));
    assert!(is_bid(&w.items(ticket)[0], 250.0));

    w.drop_all();
    let items = w.items(ticket);
    assert!(
        matches!(items.last(), Some(StreamItem::Interrupted { .. })),
        "{items:?}"
    );
    assert!(
        w.ended(ticket).is_none(),
        "a lost session does not end the stream"
    );

    w.advance(SECS(5));
    let again = w.last_mkt_data_id();
    assert_ne!(again, first, "requested again under a fresh id");
    let items = w.items(ticket);
    let Some(StreamItem::Gap { from, to }) = items.last() else {
        panic!("the re-request reports the gap: {items:?}")
    };
    let StreamItem::Interrupted { at, .. } = &items[1] else {
        panic!("{items:?}")
    };
    assert_eq!(from, at);
    assert!(to > from, "{from:?} .. {to:?}");
    // The new session's ticks flow; a late tick under the old id is nobody's.
    w.push(client_id, bid(first, 1.0));
    w.push(client_id, bid(again, 251.0));
    let items = w.items(ticket);
    assert!(is_bid(items.last().unwrap(), 251.0), "{items:?}");
    assert!(!items.iter().any(|i| is_bid(i, 1.0)));
    assert_eq!(w.pool.stats(w.now).streams.resubscribed, 1);
}

#[test]
fn after_1101_streams_are_requested_again_without_a_cancel_and_after_1102_nothing_is() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, client_id) = w.lease(Purpose::Streaming);
    let ticket = w.send(lease, aapl_ticks());
    let first = w.last_mkt_data_id();

    w.push(
        client_id,
        err(-1, 1100, "Connectivity between IB and TWS has been lost."),
    );
    w.push(
        client_id,
        err(
            -1,
            1102,
            "Connectivity between IB and Trader Workstation has been restored - data maintained.",
        ),
    );
    assert_eq!(
        w.market_requests().len(),
        1,
        "1102: data kept, nothing requested"
    );
    assert!(w.items(ticket).is_empty());

    w.push(
        client_id,
        err(
            -1,
            1101,
            "Connectivity between IB and Trader Workstation has been restored - data lost.",
        ),
    );
    let sent = w.market_requests();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        !sent
            .iter()
            .any(|m| matches!(m, MarketRequest::CancelMktData { .. })),
        "the gateway dropped it: no cancel"
    );
    let again = w.last_mkt_data_id();
    assert_ne!(again, first);
    let items = w.items(ticket);
    assert!(
        matches!(items[0], StreamItem::Interrupted { .. }),
        "{items:?}"
    );
    assert!(matches!(items[1], StreamItem::Gap { .. }), "{items:?}");
    w.push(client_id, bid(again, 252.0));
    assert!(is_bid(w.items(ticket).last().unwrap(), 252.0));
}

#[test]
fn a_cancelled_stream_is_cancelled_at_the_gateway_and_ib_refusals_end_streams() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, client_id) = w.lease(Purpose::Streaming);
    let ticket = w.send(lease, aapl_ticks());
    let id = w.last_mkt_data_id();
    w.pool.cancel(w.now, ticket);
    w.settle();
    assert_eq!(
        w.market_requests().last(),
        Some(&MarketRequest::CancelMktData { req_id: id })
    );

    // An advisory keeps the stream going and reaches its consumer; a refusal ends it.
    let other = w.send(lease, aapl_ticks());
    let id = w.last_mkt_data_id();
    w.push(
        client_id,
        err(
            id,
            10167,
            "Requested market data is not subscribed. Displaying delayed market data.",
        ),
    );
    assert!(matches!(
        w.items(other).as_slice(),
        [StreamItem::Data(StreamData::Notice { code: 10167, .. })]
    ));
    w.push(
        client_id,
        err(id, 354, "Requested market data is not subscribed."),
    );
    let ended = w.ended(other).cloned();
    assert!(
        matches!(
            ended,
            Some(Some(CallError::Request(RequestError::Api {
                code: 354,
                ..
            })))
        ),
        "{ended:?}"
    );
    assert_eq!(
        w.pool
            .stats(w.now)
            .streams
            .open
            .get(&StreamKind::MarketData),
        None
    );
}

#[test]
fn streams_past_ibs_caps_are_refused_before_ib_would() {
    let mut cfg = config(&["gw1:4002"]);
    cfg.streams.market_data_lines = 3;
    cfg.streams.tick_by_tick = 1;
    let mut w = World::new(cfg);
    let (lease, _) = w.lease(Purpose::Streaming);
    let bars = Query::Stream(StreamQuery::RealTimeBars {
        contract: Contract::stock("MSFT"),
        what_to_show: WhatToShow::Trades,
        use_rth: false,
    });
    let a = w.send(lease, aapl_ticks());
    w.send(lease, aapl_ticks());
    w.send(lease, bars.clone());
    let refused = w.pool.send(w.now, lease, bars, None);
    assert_eq!(
        refused,
        Err(SubmitError::StreamLimit {
            kind: StreamKind::RealTimeBars,
            limit: 3
        }),
        "real-time bars take a market-data line too"
    );
    // A snapshot holds no line; tick-by-tick has a cap of its own.
    let snapshot = Query::Stream(StreamQuery::MarketData {
        contract: Contract::stock("IBM"),
        generic_ticks: String::new(),
        snapshot: true,
        data_type: crate::stream::MarketDataType::Live,
    });
    assert!(w.pool.send(w.now, lease, snapshot, None).is_ok());
    let tbt = || {
        Query::Stream(StreamQuery::TickByTick {
            contract: Contract::stock("AAPL"),
            kind: crate::stream::TickByTickKind::Last,
        })
    };
    assert!(w.pool.send(w.now, lease, tbt(), None).is_ok());
    assert!(matches!(
        w.pool.send(w.now, lease, tbt(), None),
        Err(SubmitError::StreamLimit {
            kind: StreamKind::TickByTick,
            limit: 1
        })
    ));
    // A cancelled stream gives its line back.
    w.pool.cancel(w.now, a);
    assert!(w.pool.send(w.now, lease, aapl_ticks(), None).is_ok());
}

#[test]
fn keep_up_to_date_bars_fill_the_gap_from_the_re_request_and_hold_an_open_request() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, client_id) = w.lease(Purpose::Streaming);
    let query = HistoricalQuery::new(
        Contract::stock("AAPL"),
        EndTime::Now,
        "3600 S".parse().unwrap(),
        crate::bar_size::BarSize::Min1,
        WhatToShow::Trades,
    );
    let ticket = w.send(lease, Query::Stream(StreamQuery::BarUpdates(query)));
    let hist_id = |w: &World| {
        w.peers
            .values()
            .flat_map(|p| p.got.iter())
            .rev()
            .find_map(|r| match r {
                Request::ReqHistoricalData(h) => {
                    Some((h.req_id, h.keep_up_to_date, h.end_date_time.clone()))
                }
                _ => None,
            })
            .unwrap()
    };
    let (id, keep, end) = hist_id(&w);
    assert!(keep && end.is_empty(), "sent as keepUpToDate ending now");
    let bar = |t: i64| Bar {
        date: BarTime::Epoch(t),
        close: t as f64,
        ..Bar::default()
    };
    let history = |req_id, ts: &[i64]| {
        [
            Response::HistoricalData {
                req_id,
                start: String::new(),
                end: String::new(),
                bars: ts.iter().map(|t| bar(*t)).collect(),
            },
            Response::HistoricalDataEnd {
                req_id,
                start: "s".into(),
                end: "e".into(),
            },
        ]
    };
    for r in history(id, &[60, 120]) {
        w.push(client_id, r);
    }
    assert_eq!(w.completed(ticket), Some(&Ok(Answer::Subscribed)));
    w.push(
        client_id,
        Response::HistoricalDataUpdate {
            req_id: id,
            bar: bar(180),
        },
    );
    let open = |w: &mut World| w.pool.stats(w.now).gateways[0].pacer.open_requests;
    assert_eq!(
        open(&mut w),
        1,
        "the stream holds an open historical request"
    );

    w.drop_all();
    assert_eq!(open(&mut w), 0, "a lost stream gives its slot back");
    w.advance(SECS(5));
    let (again, ..) = hist_id(&w);
    assert_ne!(again, id);
    for r in history(again, &[60, 120, 180, 240, 300]) {
        w.push(client_id, r);
    }
    let closes: Vec<f64> = w
        .items(ticket)
        .iter()
        .filter_map(|i| match i {
            StreamItem::Data(StreamData::Bar(b)) => Some(b.close),
            _ => None,
        })
        .collect();
    // 180 again (the forming bar, now complete), then the gap's bars.
    assert_eq!(closes, vec![60.0, 120.0, 180.0, 180.0, 240.0, 300.0]);
    assert_eq!(
        w.completed(ticket),
        Some(&Ok(Answer::Subscribed)),
        "answered once"
    );
    assert_eq!(open(&mut w), 1);
    w.pool.cancel(w.now, ticket);
    assert_eq!(open(&mut w), 0);
}

#[test]
fn a_delayed_stream_asks_for_delayed_data_before_each_request_and_re_request() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, client_id) = w.lease(Purpose::Streaming);
    let delayed = Query::Stream(StreamQuery::MarketData {
        contract: Contract::stock("KO"),
        generic_ticks: String::new(),
        snapshot: false,
        data_type: crate::stream::MarketDataType::Delayed,
    });
    w.send(lease, delayed);
    let types = |w: &World| {
        w.market_requests()
            .iter()
            .map(|m| match m {
                MarketRequest::MarketDataType { market_data_type } => *market_data_type,
                MarketRequest::MktData(_) => 0,
                _ => -1,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        types(&w),
        vec![3, 0],
        "reqMarketDataType(3) right before reqMktData"
    );
    w.push(
        client_id,
        err(-1, 1101, "Connectivity restored - data lost."),
    );
    assert_eq!(types(&w), vec![3, 0, 3, 0], "and again with the re-request");
    // A live stream sends none.
    w.send(lease, aapl_ticks());
    assert_eq!(types(&w), vec![3, 0, 3, 0, 0]);
}

#[test]
fn releasing_a_lease_ends_its_streams_for_their_subscribers_and_at_the_gateway() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, _) = w.lease(Purpose::Streaming);
    let live = w.send(lease, aapl_ticks());
    // A second stream, interrupted and waiting to be requested again when the lease goes.
    let (other_lease, _) = w.lease(Purpose::Streaming);
    let waiting = w.send(other_lease, aapl_ticks());
    w.down.insert("gw1:4002".into());
    w.drop_all();
    assert!(matches!(
        w.items(waiting).last(),
        Some(StreamItem::Interrupted { .. })
    ));
    w.pool.release(w.now, other_lease);
    w.settle();
    assert_eq!(w.ended(waiting), Some(&Some(CallError::Released)));
    let completions = w
        .events
        .iter()
        .filter(|e| matches!(e, PoolEvent::Completed { ticket, .. } if *ticket == waiting))
        .count();
    assert_eq!(completions, 1, "answered once, never again");

    w.down.clear();
    w.advance(SECS(5));
    w.pool.release(w.now, lease);
    w.settle();
    assert_eq!(w.ended(live), Some(&Some(CallError::Released)));
    assert!(
        matches!(
            w.market_requests().last(),
            Some(MarketRequest::CancelMktData { .. })
        ),
        "cancelled at the gateway: {:?}",
        w.market_requests()
    );
}

/// IB allows one tick-by-tick request per instrument and series every 15 s: a stream requested
/// again sooner (1101 five seconds after it opened) waits for the gap instead of being refused.
#[test]
fn a_tick_by_tick_stream_requested_again_waits_for_ibs_15_second_gap() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, client_id) = w.lease(Purpose::Streaming);
    let trades = Query::Stream(StreamQuery::TickByTick {
        contract: Contract::stock("AAPL"),
        kind: crate::stream::TickByTickKind::Last,
    });
    let ticket = w.send(lease, trades);
    let count = |w: &World| {
        w.market_requests()
            .iter()
            .filter(|m| matches!(m, MarketRequest::TickByTick(_)))
            .count()
    };
    assert_eq!(count(&w), 1);
    w.advance(SECS(5));
    w.push(
        client_id,
        err(-1, 1101, "Connectivity restored - data lost."),
    );
    assert_eq!(count(&w), 1, "not again within 15 s of the first");
    assert!(w
        .events
        .iter()
        .any(|e| matches!(e, PoolEvent::RequestDelayed { ticket: t, .. } if *t == ticket)));
    w.advance(SECS(11));
    assert_eq!(count(&w), 2, "again once the gap has passed");
    assert!(matches!(
        w.items(ticket).last(),
        Some(StreamItem::Gap { .. })
    ));
    // Another series of the same instrument is another request: no wait.
    let quotes = Query::Stream(StreamQuery::TickByTick {
        contract: Contract::stock("AAPL"),
        kind: crate::stream::TickByTickKind::MidPoint,
    });
    w.send(lease, quotes);
    assert_eq!(count(&w), 3);
}
