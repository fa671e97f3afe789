//! The core `Pool` against IB's request faults and rules, one directed scenario each, in virtual
//! time ([`PoolWorld`]): what the swarm draws at random, pinned down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::utc;
use ibconn_core::client_id::Purpose;
use ibconn_core::connection::{Query, RequestError};
use ibconn_core::message::Contract;
use ibconn_core::pacer::PacingRules;
use ibconn_core::pool::{CallError, LeaseId, PoolEvent, Ticket};
use ibconn_core::query::{EndTime, HeadTimestampQuery, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{Fault, PoolWorld, PoolWorldConfig, Target};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A lease of `purpose` on process 0, stepping until granted.
fn lease(w: &mut PoolWorld, purpose: Purpose) -> LeaseId {
    let acquire = w.acquire(purpose);
    loop {
        match w.poll_event() {
            Some(PoolEvent::Acquired {
                acquire: a, lease, ..
            }) if a == acquire => return lease,
            Some(PoolEvent::AcquireFailed { error, .. }) => panic!("{error}"),
            Some(_) => {}
            None => assert!(w.step().unwrap(), "nothing scheduled"),
        }
    }
}

/// Step until `ticket` completes; its result and when.
fn outcome(w: &mut PoolWorld, ticket: Ticket) -> (Result<(), CallError>, Duration) {
    loop {
        match w.poll_event() {
            Some(PoolEvent::Completed { ticket: t, result }) if t == ticket => {
                return (result.map(|_| ()), w.elapsed());
            }
            Some(_) => {}
            None => assert!(w.step().unwrap(), "nothing scheduled"),
        }
    }
}

/// Five-second bars of AAPL for the minute before 2025-12-04 15:`minute` UTC (IB has them).
fn small(minute: u32) -> Query {
    Query::HistoricalData(HistoricalQuery::new(
        Contract::stock("AAPL"),
        EndTime::At(utc(2025, 12, 4, 15, minute, 0)),
        "60 S".parse().unwrap(),
        BarSize::Sec5,
        WhatToShow::Trades,
    ))
}

/// Process 0's open requests in the shared pacing book.
fn open_in_book(w: &PoolWorld) -> u32 {
    let t = w.ledger_time();
    let mut book = w.pacing_book();
    book.prune(t);
    book.owners(&PacingRules::default(), t)
        .into_iter()
        .map(|o| o.open_requests)
        .sum()
}

/// A request IB never answers ends by the client's timeout, which cancels it at the gateway:
/// the pool's pacing slot and the gateway's open request are both freed, and the connection
/// serves the next request.
#[test]
fn a_never_answered_request_ends_by_its_timeout_and_frees_its_slot() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(1));
    let l = lease(&mut w, Purpose::Backfill);
    w.inject(Fault::NeverAnswer {
        target: Target::All,
        requests: 1,
    });
    let start = w.elapsed();
    let t = w.send(l, small(1), Some(secs(90))).unwrap();
    let (result, at) = outcome(&mut w, t);
    assert!(
        matches!(
            result,
            Err(CallError::Request(RequestError::Timeout { .. }))
        ),
        "{result:?}"
    );
    assert!(at - start >= secs(90) && at - start < secs(91), "{at:?}");
    assert_eq!(open_in_book(&w), 0);
    let t = w.send(l, small(2), Some(secs(90))).unwrap();
    assert!(outcome(&mut w, t).0.is_ok());
    let c = w.gateway().counters();
    assert_eq!((c.never_answered, c.pacing_violations), (1, 0));
}

/// Were two core bugs (found by the swarm with `NeverAnswer`, seeds 89 and 112): releasing a
/// lease did not cancel its requests already sent (the lease was gone before the cancel looked
/// for its connection), and when the idle connection later closed with the request on it, the
/// request ended without giving its slot back to the pacing book. Now the release cancels it at
/// the gateway at once, and its slot is free.
#[test]
fn a_never_answered_request_on_a_released_lease_is_cancelled_and_frees_its_slot() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(2));
    let l = lease(&mut w, Purpose::Backfill);
    w.inject(Fault::NeverAnswer {
        target: Target::All,
        requests: 1,
    });
    let t = w.send(l, small(3), Some(secs(1200))).unwrap();
    let until = w.now() + secs(2);
    w.run_until(until).unwrap();
    assert_eq!(open_in_book(&w), 1);
    let released = w.elapsed();
    w.release(l);
    let (result, at) = outcome(&mut w, t);
    assert_eq!(result, Err(CallError::Request(RequestError::Cancelled)));
    assert!(
        at < released + secs(1),
        "cancelled at the release ({released:?}), not at the idle close: {at:?}"
    );
    assert_eq!(open_in_book(&w), 0, "the ended request still holds a slot");
}

/// A spurious 162 "no data" reaches the caller as IB's "no data" (class `NoData`); asked again,
/// the same request has its bars.
#[test]
fn a_spurious_no_data_is_a_no_data_answer_and_the_next_ask_has_bars() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(3));
    let l = lease(&mut w, Purpose::Backfill);
    w.inject(Fault::SpuriousNoData {
        target: Target::All,
        requests: 1,
    });
    let t = w.send(l, small(4), None).unwrap();
    let (result, _) = outcome(&mut w, t);
    assert!(
        matches!(
            &result,
            Err(CallError::Request(RequestError::Api { code: 162, class, .. }))
                if format!("{class:?}") == "NoData"
        ),
        "{result:?}"
    );
    // The identical request waits IB's 15 s in the pacer, then has its bars.
    let t = w.send(l, small(4), None).unwrap();
    assert!(outcome(&mut w, t).0.is_ok());
    assert_eq!(w.gateway().pacing_violations(), 0);
}

/// A spurious 322 ends the request with IB's error (the core does not retry it).
#[test]
fn a_spurious_duplicate_ticker_id_ends_the_request_with_322() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(4));
    let l = lease(&mut w, Purpose::Api);
    w.inject(Fault::DuplicateTickerId {
        target: Target::All,
        requests: 1,
    });
    let head = Query::HeadTimestamp(HeadTimestampQuery {
        use_rth: true,
        ..HeadTimestampQuery::new(Contract::stock("MSFT"), WhatToShow::Trades)
    });
    let t = w.send(l, head.clone(), None).unwrap();
    let (result, _) = outcome(&mut w, t);
    assert!(
        matches!(
            &result,
            Err(CallError::Request(RequestError::Api { code: 322, message, .. }))
                if message == "Error processing request.-'bO' : cause - Duplicate ticker id"
        ),
        "{result:?}"
    );
    let t = w.send(l, head, None).unwrap();
    assert!(outcome(&mut w, t).0.is_ok());
}

/// Head timestamps from the pool never break the gateway's rules, which now pace and count
/// them: 70 of them over 7 contracts, as fast as the pool lets them go, take more than one
/// 10-minute window and earn no pacing violation.
#[test]
fn the_pool_paces_head_timestamps_as_the_gateway_counts_them() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(5));
    let l = lease(&mut w, Purpose::Api);
    // Past the second of START_API: the pool's 50 messages a second do not count it (IB does).
    let until = w.now() + secs(2);
    w.run_until(until).unwrap();
    let symbols = ["AAPL", "MSFT", "SPY", "QQQ", "AMZN", "GOOGL", "META"];
    let whats = [
        WhatToShow::Trades,
        WhatToShow::Midpoint,
        WhatToShow::Bid,
        WhatToShow::Ask,
        WhatToShow::BidAsk,
    ];
    let mut tickets = Vec::new();
    for symbol in symbols {
        for what in whats {
            for use_rth in [false, true] {
                let q = Query::HeadTimestamp(HeadTimestampQuery {
                    use_rth,
                    ..HeadTimestampQuery::new(Contract::stock(symbol), what)
                });
                tickets.push(w.send(l, q, Some(secs(3600))).unwrap());
            }
        }
    }
    for t in tickets {
        let (result, at) = outcome(&mut w, t);
        assert!(result.is_ok(), "{t:?} at {at:?}: {result:?}");
    }
    // 70 requests, 14 of them BID_ASK (weight 2): 84 in IB's window of 60 per 10 minutes.
    assert!(w.elapsed() > secs(600), "{:?}", w.elapsed());
    assert_eq!(w.gateway().pacing_violations(), 0);
}
