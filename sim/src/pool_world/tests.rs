//! Tests of the pool world: paced backfills in virtual time, restarts, refused dials, several
//! processes sharing one gateway, kills and store faults.

use super::*;
use crate::calendar;
use ibconn_core::backfill::{plan_chunks, BackfillJob, BackfillSpec, JobConfig};
use ibconn_core::bar_size::BarSize;
use ibconn_core::client_id::Purpose;
use ibconn_core::connection::Query;
use ibconn_core::message::Contract;
use ibconn_core::pool::LeaseId;
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;

fn spec(bar_size: BarSize) -> BackfillSpec {
    BackfillSpec {
        contract: Contract::stock("AAPL"),
        bar_size,
        what_to_show: WhatToShow::Trades,
        use_rth: false,
    }
}

fn world(seed: u64) -> PoolWorld {
    PoolWorld::new(PoolWorldConfig::new(seed))
}

/// One request per chunk on a fresh world, no pacer in the way of counting: the bars the
/// gateway has for `[from, to)`, fetched chunk by chunk, merged.
fn direct_count(bar: BarSize, from: i64, to: i64) -> usize {
    let mut job = BackfillJob::new(spec(bar), from, to, Vec::new(), JobConfig::default()).unwrap();
    let mut w = world(7);
    let acquire = w.acquire(Purpose::Backfill);
    let lease = loop {
        match w.poll_event() {
            Some(PoolEvent::Acquired {
                acquire: a, lease, ..
            }) if a == acquire => break lease,
            Some(_) => {}
            None => assert!(w.step().unwrap()),
        }
    };
    while let Some((chunk, query)) = job.poll_query() {
        let ticket = w.send(lease, query, None).unwrap();
        let result = loop {
            match w.poll_event() {
                Some(PoolEvent::Completed { ticket: t, result }) if t == ticket => break result,
                Some(_) => {}
                None => assert!(w.step().unwrap()),
            }
        };
        job.on_result(chunk, result);
        // Keep this reference run clear of IB's 10-minute window.
        let until = w.now() + Duration::from_secs(11);
        while w.now() < until && w.step().unwrap() {}
    }
    assert!(job.is_complete(), "{:?}", job.failures());
    job.progress().bars
}

#[test]
fn a_pacing_bound_backfill_completes_in_virtual_time_without_violations() {
    // Five trading days of 5-second bars, all hours: 24 × 5 + 24 × 2 = 168 one-hour requests,
    // at IB's 60 per 10 minutes more than 20 virtual minutes.
    let from = calendar::utc(2025, 12, 1, 0, 0, 0);
    let to = calendar::utc(2025, 12, 8, 0, 0, 0);
    let chunks = plan_chunks(BarSize::Sec5, from, to).unwrap();
    assert_eq!(chunks.len(), 168);
    let mut job = BackfillJob::new(
        spec(BarSize::Sec5),
        from,
        to,
        Vec::new(),
        JobConfig::default(),
    )
    .unwrap();
    let mut w = world(7);
    let mut calls = 0;
    let report = w
        .run_backfill(&mut job, BackfillRun::default(), |_, _| calls += 1)
        .unwrap();
    assert!(job.is_complete(), "{:?}", job.failures());
    assert!(
        report.virtual_elapsed > Duration::from_secs(20 * 60),
        "{:?}",
        report.virtual_elapsed
    );
    assert_eq!(report.gateway_pacing_violations, 0);
    assert_eq!(report.pool.pacing_violations, 0);
    assert!(report.pool.pacing_waits > 0);
    assert!(calls > 1);
    let p = job.progress();
    assert_eq!(p.requests, 168);
    assert!(p.chunks_empty > 0, "the weekend has no data");
    assert_eq!(p.bars, direct_count(BarSize::Sec5, from, to));
    let bars: Vec<i64> = job.bars().iter().map(|(t, _)| t).collect();
    assert!(bars.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn the_backfill_matches_a_direct_fetch_and_a_resume_adds_no_duplicates() {
    let from = calendar::utc(2025, 12, 4, 12, 0, 0);
    let to = calendar::utc(2025, 12, 6, 0, 0, 0);
    let expected = direct_count(BarSize::Sec30, from, to);
    assert!(expected > 0);

    let mut job = BackfillJob::new(
        spec(BarSize::Sec30),
        from,
        to,
        Vec::new(),
        JobConfig::default(),
    )
    .unwrap();
    let report = world(7)
        .run_backfill(&mut job, BackfillRun::default(), |_, _| {})
        .unwrap();
    assert_eq!(report.gateway_pacing_violations, 0);
    assert_eq!(job.progress().bars, expected);

    // Interrupted after two thirds: resume from those bars (the chunks holding the oldest
    // and the newest held bar are asked again, the ones between are skipped).
    let kept = expected * 2 / 3;
    let held: Vec<_> = job
        .bars()
        .iter()
        .take(kept)
        .map(|(_, b)| b.clone())
        .collect();
    let mut resumed =
        BackfillJob::new(spec(BarSize::Sec30), from, to, held, JobConfig::default()).unwrap();
    let skipped = resumed.progress().chunks_resumed;
    assert!(skipped > 0);
    world(7)
        .run_backfill(&mut resumed, BackfillRun::default(), |_, _| {})
        .unwrap();
    let p = resumed.progress();
    assert_eq!(p.bars, expected);
    assert_eq!(p.bars_added, expected - kept);
    assert!(p.requests < job.progress().requests);
    let times: Vec<i64> = resumed.bars().iter().map(|(t, _)| t).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_backfill_survives_a_gateway_restart_without_losing_or_duplicating_bars() {
    let from = calendar::utc(2025, 12, 4, 12, 0, 0);
    let to = calendar::utc(2025, 12, 5, 12, 0, 0);
    let expected = direct_count(BarSize::Sec5, from, to);
    let mut job = BackfillJob::new(
        spec(BarSize::Sec5),
        from,
        to,
        Vec::new(),
        JobConfig::default(),
    )
    .unwrap();
    let mut w = world(11);
    let at = w.now() + Duration::from_secs(4);
    w.gateway_mut().schedule_fault(
        at,
        crate::fault::Fault::Restart {
            down_for: Duration::from_secs(5),
        },
    );
    let report = w
        .run_backfill(&mut job, BackfillRun::default(), |_, _| {})
        .unwrap();
    assert!(job.is_complete(), "{:?}", job.failures());
    assert_eq!(job.progress().bars, expected);
    assert_eq!(job.progress().duplicates, 0);
    assert!(
        report.virtual_elapsed > Duration::from_secs(9),
        "{:?}",
        report.virtual_elapsed
    );
    assert!(report.pool.disconnects > 0, "{:?}", report.pool);
    assert_eq!(report.gateway_pacing_violations, 0);
}

#[test]
fn refused_dials_are_retried_until_the_port_opens() {
    let mut w = world(3);
    let now = w.now();
    w.gateway_mut().inject(
        now,
        crate::fault::Fault::Restart {
            down_for: Duration::from_secs(3),
        },
    );
    let lease = lease_in(&mut w, 0, Purpose::Backfill);
    assert!(w.elapsed() >= Duration::from_secs(3));
    let ticket = w.send(lease, Query::CurrentTime, None).unwrap();
    loop {
        match w.poll_event() {
            Some(PoolEvent::Completed { ticket: t, result }) if t == ticket => {
                assert!(result.is_ok());
                break;
            }
            Some(_) => {}
            None => assert!(w.step().unwrap()),
        }
    }
    assert!(w.pool_stats().failed > 0);
}

/// Process `p`'s lease of `purpose`, stepping until granted.
fn lease_in(w: &mut PoolWorld, p: usize, purpose: Purpose) -> LeaseId {
    let acquire = w.acquire_in(p, purpose).unwrap();
    loop {
        match w.poll_event_in(p) {
            Some(PoolEvent::Acquired {
                acquire: a, lease, ..
            }) if a == acquire => break lease,
            Some(PoolEvent::AcquireFailed { error, .. }) => panic!("{error}"),
            Some(_) => {}
            None => assert!(w.step().unwrap()),
        }
    }
}

fn small(minute: u32) -> Query {
    Query::HistoricalData(HistoricalQuery::new(
        Contract::stock("AAPL"),
        EndTime::At(calendar::utc(2025, 12, 4, 15, minute, 0)),
        "60 S".parse().unwrap(),
        BarSize::Sec5,
        WhatToShow::Trades,
    ))
}

#[test]
fn processes_share_the_gateway_with_distinct_ids_and_one_pacing_book() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(3).with_processes(3, 2));
    w.enable_trace();
    assert_eq!((w.processes(), w.host_of(2)), (3, Some(0)));
    let leases: Vec<LeaseId> = (0..3)
        .map(|p| lease_in(&mut w, p, Purpose::Backfill))
        .collect();
    // Processes 0 and 2 share host 0's registry; process 1 (host 1) met them at the gateway.
    let (a, b, c) = (
        w.held_client_ids_in(0),
        w.held_client_ids_in(1),
        w.held_client_ids_in(2),
    );
    assert_eq!(a.len() + c.len(), 2);
    assert!(a.iter().all(|id| !c.contains(id)), "{a:?} {c:?}");
    assert_eq!(b.len(), 1);
    assert_eq!(w.gateway().client_ids().len(), 3);
    // The identical request from two processes: the second waits IB's 15 s in the shared book.
    let t0 = w.send_in(0, leases[0], small(1), None).unwrap();
    let t1 = w.send_in(2, leases[2], small(1), None).unwrap();
    let start = w.now();
    let mut ended = Vec::new();
    while ended.len() < 2 {
        for p in [0, 2] {
            while let Some(e) = w.poll_event_in(p) {
                if let PoolEvent::Completed { ticket, result } = e {
                    assert!(ticket == t0 || ticket == t1);
                    ended.push((p, result.is_ok(), w.now() - start));
                }
            }
        }
        assert!(w.step().unwrap());
    }
    assert_eq!(w.gateway().pacing_violations(), 0);
    assert!(ended[1].2 >= Duration::from_secs(15), "{ended:?}");
    let owners: Vec<String> = w
        .pacing_book()
        .owners(&PacingRules::default(), w.ledger_time())
        .into_iter()
        .map(|o| o.owner)
        .collect();
    // Owners are the processes that paced something (process 1 sent nothing).
    assert_eq!(owners, ["host0/pid1", "host0/pid102"]);
    assert!(
        w.trace().iter().any(|l| l.contains("P2.S")),
        "lines name the process"
    );
}

#[test]
fn a_killed_process_closes_its_sockets_and_its_claims_lapse() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(4).with_processes(2, 1));
    let l0 = lease_in(&mut w, 0, Purpose::Backfill);
    let l1 = lease_in(&mut w, 1, Purpose::Backfill);
    // Process 1 reserves a slot 15 s ahead (an identical request), then dies.
    let _ = w.send_in(1, l1, small(2), None).unwrap();
    let _ = w.send_in(1, l1, small(2), None).unwrap();
    let until = w.now() + Duration::from_secs(2);
    w.run_until(until).unwrap();
    let owner = w.owner_of(1).unwrap().to_owned();
    let view = |w: &PoolWorld| {
        let mut book = w.pacing_book();
        book.prune(w.ledger_time());
        book.owners(&PacingRules::default(), w.ledger_time())
            .into_iter()
            .find(|o| o.owner == owner)
            .map_or((0, 0), |o| (o.open_requests, o.scheduled_ahead))
    };
    // The first was answered; the second waits for its slot, open.
    assert_eq!(view(&w), (1, 1));
    let dead_ids = w.held_client_ids_in(1);
    w.kill(1);
    assert!(!w.is_alive(1) && w.pool_in(1).is_none());
    assert!(w.send_in(1, l1, small(3), None).is_err());
    let until = w.now() + Duration::from_secs(1);
    w.run_until(until).unwrap();
    assert_eq!(
        w.gateway().client_ids().len(),
        1,
        "the kernel closed its socket"
    );
    // Its lease and claims stay until their TTLs run out.
    assert_eq!(w.others_client_ids_in(0), dead_ids);
    assert_eq!(view(&w), (1, 1));
    let until = w.now() + Duration::from_secs(61);
    w.run_until(until).unwrap();
    w.observe_clocks();
    assert!(w.others_client_ids_in(0).is_empty());
    assert_eq!(view(&w), (0, 0));
    // The survivor carries on; a new process starts with a name of its own.
    let t = w.send_in(0, l0, small(4), None).unwrap();
    let p = w.spawn(0);
    assert_eq!((p, w.owner_of(p)), (2, Some("host0/pid102")));
    loop {
        match w.poll_event_in(0) {
            Some(PoolEvent::Completed { ticket, result }) if ticket == t => {
                assert!(result.is_ok());
                break;
            }
            Some(_) => {}
            None => assert!(w.step().unwrap()),
        }
    }
    assert_eq!(w.gateway().pacing_violations(), 0);
}

#[test]
fn the_store_fails_and_restarts_in_the_trace() {
    let mut w = world(1);
    w.enable_trace();
    w.set_store_unavailable(Some("down".to_owned()));
    w.set_store_unavailable(None);
    w.restart_store();
    let lines = w.trace().join("\n");
    assert!(lines.contains("pacing store unavailable: down"), "{lines}");
    assert!(lines.contains("pacing store restarts"), "{lines}");
    assert!(!lines.contains("P0"), "one process: lines name none");
}
