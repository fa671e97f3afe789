//! Requests through the pool: pacing delays and violations, long timeouts, answers past the
//! item cap.

use super::*;
use crate::bar_size::BarSize;
use crate::pacer::{PacedRequest, PacingRules, RequestClass};
use crate::pool::pacing::paced;
use crate::query::HeadTimestampQuery;

/// 2025-12-31 21:00 UTC.
const END: i64 = 1_767_214_800;

/// No query is paced as something it is not: every bar size and `whatToShow` keeps its class
/// and weight (small bars ≤ 30 s, `BID_ASK` double), and a string IB does not define cannot
/// become a query at all: it fails to parse, with an error, instead of being paced as an
/// ordinary message.
#[test]
fn every_historical_query_is_paced_as_what_it_is() {
    let rules = PacingRules::default();
    for bar_size in BarSize::ALL {
        for what in WhatToShow::ALL {
            let q = HistoricalQuery {
                bar_size,
                what_to_show: what,
                ..small_bars(END)
            };
            let key = paced(&Query::HistoricalData(q));
            let PacedRequest::Historical(k) = &key else {
                panic!("{bar_size} {what} paced as {key:?}");
            };
            assert_eq!((k.bar_size, k.what_to_show), (bar_size, what));
            assert_eq!(
                (k.end.as_str(), k.duration.as_str()),
                ("20251231-21:00:00", "1800 S")
            );
            let small = bar_size.seconds() <= 30;
            let class = rules.class_of(&key);
            assert_eq!(class == RequestClass::SmallBars, small, "{bar_size}");
            assert_eq!(class == RequestClass::LargeBars, !small, "{bar_size}");
            let weight = if what == WhatToShow::BidAsk { 2 } else { 1 };
            assert_eq!(rules.weight_of(&key), weight, "{what}");
        }
        let head = HeadTimestampQuery::new(Contract::stock("AAPL"), WhatToShow::BidAsk);
        let key = paced(&Query::HeadTimestamp(head));
        assert_eq!(rules.class_of(&key), RequestClass::HeadTimestamp);
        assert_eq!(rules.weight_of(&key), 2);
    }
    for bad in ["7 mins", "1 sec", "5 Secs", ""] {
        assert!(bad.parse::<BarSize>().is_err(), "{bad:?}");
    }
    for bad in ["BIDASK", "TRADE", ""] {
        assert!(bad.parse::<WhatToShow>().is_err(), "{bad:?}");
    }
}

#[test]
fn pacing_delays_identical_requests_and_retries_after_a_violation() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    let first = w.send(lease, Query::HistoricalData(small_bars(END)));
    let second = w.send(lease, Query::HistoricalData(small_bars(END)));
    let until = w.events.iter().find_map(|e| match e {
        PoolEvent::RequestDelayed { ticket, until, .. } if *ticket == second => Some(*until),
        _ => None,
    });
    assert_eq!(
        until,
        Some(w.now + SECS(15) + PACING_MARGIN),
        "identical request waits 15 s plus the default margin"
    );
    assert!(w
        .events
        .iter()
        .all(|e| !matches!(e, PoolEvent::RequestDelayed { ticket, .. } if *ticket == first)));
    // IB answers the first with a pacing violation: the pacer pauses and the request is retried.
    let req_id = match w.peers.values().next().unwrap().got.last() {
        Some(Request::ReqHistoricalData(r)) => r.req_id,
        other => panic!("{other:?}"),
    };
    w.push(
        id,
        err(
            req_id,
            162,
            "Historical Market Data Service error message:Historical data request pacing violation",
        ),
    );
    assert!(w.completed(first).is_none());
    let stats = w.pool.stats(w.now);
    assert_eq!(
        (stats.pacing_violations, stats.pacing_waits),
        (1, 2),
        "the retry waits out the pause"
    );
    assert_eq!(stats.errors_by_class.get("Pacing"), Some(&1));
    w.advance(SECS(20));
    let sent = w
        .peers
        .values()
        .next()
        .unwrap()
        .got
        .iter()
        .filter(|r| matches!(r, Request::ReqHistoricalData(_)))
        .count();
    assert!(sent >= 2, "retried / delayed requests went out: {sent}");
}

/// The request id the gateway of session `client_id` last received a historical request under.
fn last_historical_id(w: &World, client_id: i32) -> i32 {
    let peer = &w.peers[&w.socket_of(client_id)];
    match peer
        .got
        .iter()
        .rev()
        .find(|r| matches!(r, Request::ReqHistoricalData(_)))
    {
        Some(Request::ReqHistoricalData(r)) => r.req_id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn duration_max_timeouts_wait_without_panicking_and_still_complete() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (a, _) = w.lease(Purpose::Backfill);
    let (_b, _) = w.lease(Purpose::Backfill);
    // Both connections are leased: this acquire waits, far past the configured 5 s.
    let waiting = w
        .pool
        .acquire(w.now, Purpose::Backfill, Some(Duration::MAX));
    w.settle();
    w.advance(SECS(3600));
    assert!(w
        .events
        .iter()
        .all(|e| !matches!(e, PoolEvent::AcquireFailed { acquire, .. } if *acquire == waiting)));
    w.pool.release(w.now, a);
    w.settle();
    let (lease, id, _) = w
        .acquired(waiting)
        .expect("granted once a connection is free");
    let time = w
        .pool
        .send(w.now, lease, Query::CurrentTime, Some(Duration::MAX))
        .unwrap();
    // (IB's one-second spacing after the last health probe.)
    w.advance(SECS(2));
    assert_eq!(
        w.completed(time),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    // A historical request waits an hour for its answer, then gets it.
    let bars = w
        .pool
        .send(
            w.now,
            lease,
            Query::HistoricalData(small_bars(END)),
            Some(Duration::MAX),
        )
        .unwrap();
    w.settle();
    w.advance(SECS(3600));
    assert!(w.completed(bars).is_none());
    let req_id = last_historical_id(&w, id);
    w.push(
        id,
        Response::HistoricalData {
            req_id,
            start: String::new(),
            end: String::new(),
            bars: vec![crate::message::Bar::default()],
        },
    );
    w.push(
        id,
        Response::HistoricalDataEnd {
            req_id,
            start: "s".into(),
            end: "e".into(),
        },
    );
    assert!(
        matches!(w.completed(bars), Some(Ok(Answer::Bars { bars, .. })) if bars.len() == 1),
        "{:?}",
        w.completed(bars)
    );
}

#[test]
fn an_answer_past_the_item_cap_fails_the_call_without_a_retry() {
    let mut cfg = config(&["gw1:4002"]);
    cfg.connection.max_answer_items = 3;
    let mut w = World::new(cfg);
    let (lease, id) = w.lease(Purpose::Backfill);
    let t = w.send(lease, Query::HistoricalData(small_bars(END)));
    let req_id = last_historical_id(&w, id);
    w.push(
        id,
        Response::HistoricalData {
            req_id,
            start: String::new(),
            end: String::new(),
            bars: vec![crate::message::Bar::default(); 4],
        },
    );
    assert_eq!(
        w.completed(t),
        Some(&Err(CallError::Request(RequestError::AnswerTooLarge {
            max: 3
        })))
    );
    assert_eq!(w.pool.stats(w.now).requests_retried, 0);
    assert!(w.peers[&w.socket_of(id)]
        .got
        .contains(&Request::CancelHistoricalData { req_id }));
}
