//! Several processes pacing through one shared ledger, in small directed scenarios: the core's
//! [`SharedPacer`] on handles of one [`MemoryLedger`], and whole pools on one simulated gateway
//! ([`PoolWorld`] with several processes).
//!
//! The store-restart tests reproduce core bugs the shared swarm found (see the regressions in
//! `swarm.rs`), fixed since.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// One origin instant per scenario; everything after is virtual.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::utc;
use ibconn_core::client_id::Purpose;
use ibconn_core::connection::Query;
use ibconn_core::message::Contract;
use ibconn_core::pacer::{
    HistoricalRequestKey, LedgerError, MemoryLedger, PacedRequest, PacingRules, SharedError,
    SharedHold, SharedPacer,
};
use ibconn_core::pool::{LeaseId, PoolEvent, Ticket};
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{PoolWorld, PoolWorldConfig};

const KEY: &str = "sim:4002";
const TTL: Duration = Duration::from_secs(60);

/// A small-bar request on `contract`, distinct per `end`.
fn small(contract: &str, end: u32) -> PacedRequest {
    PacedRequest::Historical(HistoricalRequestKey {
        contract: contract.to_owned(),
        exchange: "SMART".to_owned(),
        end: format!("20251201-{:02}:{:02}:00", 10 + end / 60, end % 60),
        duration: "60 S".to_owned(),
        bar_size: BarSize::Sec5,
        what_to_show: WhatToShow::Trades,
        use_rth: false,
    })
}

/// One simulated process: its ledger handle and its pacer.
struct Proc {
    ledger: MemoryLedger,
    pacer: SharedPacer,
}

impl Proc {
    fn new(store: &MemoryLedger, owner: &str, epoch: Instant) -> Self {
        Self {
            ledger: store.handle(owner),
            pacer: SharedPacer::new(PacingRules::default(), KEY, TTL, epoch),
        }
    }

    fn reserve(&mut self, now: Instant, request: &PacedRequest) -> SharedHold {
        let grant = self
            .pacer
            .reserve(&mut self.ledger, now, request)
            .expect("a slot");
        assert_eq!(grant.at, now, "the window has room: no wait");
        grant.hold
    }

    /// A ledger step that changes nothing (a renewal with nothing held).
    fn touch(&mut self, now: Instant) {
        self.pacer
            .renew(&mut self.ledger, now, &[])
            .expect("the store is up");
    }
}

/// Historical weight in the book's window now, and each owner's open requests.
fn book_view(
    store: &MemoryLedger,
    pacer: &mut SharedPacer,
    now: Instant,
) -> (u32, Vec<(String, u32)>) {
    let mut reader = store.handle("reader");
    let (snapshot, status) = pacer.snapshot(&mut reader, now);
    let owners = status
        .owners
        .iter()
        .map(|o| (o.owner.clone(), o.open_requests))
        .collect();
    (snapshot.historical_weight_in_window, owners)
}

/// Two processes reserve; the store restarts losing the book; each merges back what it saw.
/// Every request sent before the restart must still count in the window, and each process's
/// reservation must stay its own. (The bug this guards: the fresh book continued from the first
/// merger's stale `next_id`, handed out an id the other process still held, and that process's
/// slot was then skipped by the merge as a duplicate.) The recreated book settles for a third of
/// the TTL, so that every process can put back what it sent before anyone reserves.
#[test]
fn after_a_store_restart_every_sent_request_still_counts() {
    let t0 = Instant::now();
    let store = MemoryLedger::new("world");
    let mut a = Proc::new(&store, "a", t0);
    let mut b = Proc::new(&store, "b", t0);
    let _a1 = a.reserve(t0, &small("AAPL", 1));
    let b1 = b.reserve(t0, &small("MSFT", 1));
    store.forget_all();
    let t1 = t0 + Duration::from_secs(1);
    let refused = a.pacer.reserve(&mut a.ledger, t1, &small("SPY", 1));
    assert!(
        matches!(
            refused,
            Err(SharedError::Ledger(LedgerError::Settling { .. }))
        ),
        "a recreated book grants nothing while it settles: {refused:?}"
    );
    b.touch(t1); // b merges its copy back
    let t2 = t1 + TTL / 3;
    let a2 = a.reserve(t2, &small("SPY", 1));
    assert_ne!(
        a2.shared(),
        b1.shared(),
        "a fresh book handed out an id another process still holds"
    );
    let lost = b
        .pacer
        .renew(&mut b.ledger, t2, &[b1.shared().expect("shared")])
        .expect("the store is up");
    assert!(lost.is_empty());
    let (weight, _) = book_view(&store, &mut a.pacer, t2);
    assert_eq!(
        weight, 3,
        "three requests sent, all in the 10-minute window"
    );
}

/// A process completes a request after another process last read the book; the store restarts;
/// the other process steps first and merges its stale copy back. The completed request must not
/// come back as open: its owner renews its claim on every step, so a resurrected open request
/// would hold one of the 50 open slots for as long as the owner runs.
#[test]
fn after_a_store_restart_completed_requests_stay_completed() {
    let t0 = Instant::now();
    let store = MemoryLedger::new("world");
    let mut a = Proc::new(&store, "a", t0);
    let mut b = Proc::new(&store, "b", t0);
    let a1 = a.reserve(t0, &small("AAPL", 1));
    b.touch(t0); // b's copy: a1 open
    let t1 = t0 + Duration::from_secs(1);
    a.pacer.complete(&mut a.ledger, t1, a1);
    store.forget_all();
    b.touch(t1); // merges b's stale copy first
    a.touch(t1); // then a's
    let (_, owners) = book_view(&store, &mut a.pacer, t1);
    let open_a = owners.iter().find(|(o, _)| o == "a").map_or(0, |(_, n)| *n);
    assert_eq!(open_a, 0, "a holds no open request: {owners:?}");
}

/// Acquire an API lease on process `p`.
fn lease(w: &mut PoolWorld, p: usize) -> LeaseId {
    let acquire = w.acquire_in(p, Purpose::Api).expect("alive");
    loop {
        while let Some(event) = w.poll_event_in(p) {
            match event {
                PoolEvent::Acquired {
                    acquire: a, lease, ..
                } if a == acquire => return lease,
                PoolEvent::AcquireFailed { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        assert!(w.step().expect("runs"), "nothing scheduled");
    }
}

/// A small-bar historical query, distinct per `n`, over nine contracts (no burst waits).
fn query(n: u32) -> Query {
    const SYMBOLS: [&str; 9] = [
        "AAPL", "MSFT", "SPY", "QQQ", "AMZN", "GOOGL", "META", "NVDA", "TSLA",
    ];
    Query::HistoricalData(HistoricalQuery::new(
        Contract::stock(SYMBOLS[n as usize % SYMBOLS.len()]),
        EndTime::At(utc(2025, 12, 1 + n / 60, 14 + n % 60 / 30, n % 30, 0)),
        "60 S".parse().unwrap(),
        BarSize::Sec5,
        WhatToShow::Trades,
    ))
}

/// Process `p` sends `n` requests (numbered from `first`) and waits for them all to end.
fn burst(w: &mut PoolWorld, p: usize, l: LeaseId, first: u32, n: u32) {
    let mut open: BTreeSet<Ticket> = (first..first + n)
        .map(|i| {
            w.send_in(p, l, query(i), Some(Duration::from_secs(20 * 60)))
                .expect("sent")
        })
        .collect();
    while !open.is_empty() {
        while let Some(event) = w.poll_event_in(p) {
            if let PoolEvent::Completed { ticket, .. } = event {
                open.remove(&ticket);
            }
        }
        if !open.is_empty() {
            assert!(w.step().expect("runs"), "nothing scheduled");
        }
    }
}

/// Two processes on one gateway. Process 0 sends 40 requests and then has nothing in flight;
/// the store restarts; process 1 sends 40. IB counts 80 within 10 minutes unless process 1
/// waits: process 0's 40 must be back in the book before process 1 reserves. The bug this
/// guards: a pool with nothing in flight took no ledger step (its heartbeat renewed only held
/// reservations), so it never merged back what it sent.
#[test]
fn an_idle_process_sends_count_after_a_store_restart() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(5).with_processes(2, 1));
    let l0 = lease(&mut w, 0);
    let l1 = lease(&mut w, 1);
    burst(&mut w, 0, l0, 0, 40);
    let until = w.now() + Duration::from_secs(30);
    w.run_until(until).expect("runs");
    w.restart_store();
    burst(&mut w, 1, l1, 100, 40);
    assert_eq!(w.gateway().pacing_violations(), 0);
}

/// The control of the test above, without the restart: the shared book makes process 1 wait.
#[test]
fn two_processes_share_the_ten_minute_window() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(5).with_processes(2, 1));
    let l0 = lease(&mut w, 0);
    let l1 = lease(&mut w, 1);
    burst(&mut w, 0, l0, 0, 40);
    let start = w.elapsed();
    burst(&mut w, 1, l1, 100, 40);
    assert_eq!(w.gateway().pacing_violations(), 0);
    assert!(
        w.elapsed() - start > Duration::from_secs(5 * 60),
        "process 1 waited for process 0's requests to leave the window: {:?}",
        w.elapsed() - start
    );
}

/// A wall-clock step (NTP, a clock set by hand) is no time for IB: the pools pace on the ledger's
/// monotonic clock, so the step must not reopen the 10-minute window.
#[test]
fn a_wall_clock_step_does_not_reopen_the_window() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(9).with_processes(2, 1));
    let l0 = lease(&mut w, 0);
    let l1 = lease(&mut w, 1);
    burst(&mut w, 0, l0, 0, 50);
    w.step_wall_clock(Duration::from_secs(3600));
    w.observe_clocks();
    let start = w.elapsed();
    burst(&mut w, 1, l1, 100, 20);
    assert_eq!(w.gateway().pacing_violations(), 0);
    assert!(w.elapsed() - start > Duration::from_secs(5 * 60));
}

/// A host sleep is time IB counts (the gateway's windows age by it: [`PoolWorld::sleep`]); the
/// memory ledger's monotonic clock does not, so the pools wait as if no time had passed — late,
/// never early.
#[test]
fn after_a_host_sleep_the_pools_pace_without_violations() {
    let mut w = PoolWorld::new(PoolWorldConfig::new(10).with_processes(2, 1));
    let l0 = lease(&mut w, 0);
    burst(&mut w, 0, l0, 0, 50);
    w.sleep(Duration::from_secs(2 * 3600));
    let l1 = lease(&mut w, 1);
    burst(&mut w, 1, l1, 100, 20);
    assert_eq!(w.gateway().pacing_violations(), 0);
}
