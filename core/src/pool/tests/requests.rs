//! Requests through the pool: pacing delays and violations, long timeouts, answers past the
//! item cap.

use super::*;

#[test]
fn pacing_delays_identical_requests_and_retries_after_a_violation() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    let first = w.send(
        lease,
        Query::HistoricalData(small_bars("20251231-21:00:00")),
    );
    let second = w.send(
        lease,
        Query::HistoricalData(small_bars("20251231-21:00:00")),
    );
    let until = w.events.iter().find_map(|e| match e {
        PoolEvent::RequestDelayed { ticket, until } if *ticket == second => Some(*until),
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
            Query::HistoricalData(small_bars("20251231-21:00:00")),
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
    let t = w.send(
        lease,
        Query::HistoricalData(small_bars("20251231-21:00:00")),
    );
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
