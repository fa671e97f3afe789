//! The pacing ledger against a real `redis-server`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{RedisServer, TestResult};
use ibconn_core::bar_size::BarSize;
use ibconn_core::pacer::{
    BookReservation, HistoricalRequestKey, LedgerError, LedgerNow, PaceBook, PaceLedger, PaceTime,
    PacedRequest, PacingRules,
};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_redis::{RedisLedger, RedisStore};

const SEC: u64 = 1_000_000_000;

fn small(contract: &str, end: &str) -> HistoricalRequestKey {
    HistoricalRequestKey {
        contract: contract.to_owned(),
        exchange: "SMART".to_owned(),
        end: end.to_owned(),
        duration: "1800 S".to_owned(),
        bar_size: BarSize::Sec5,
        what_to_show: WhatToShow::Trades,
        use_rth: true,
    }
}

/// Reserves `key` in one step (renewing `ledger`'s claim first), completing it at once so the
/// open-request cap does not bind; returns the step's time and the grant.
fn reserve(
    ledger: &mut RedisLedger,
    gateway: &str,
    now: Instant,
    key: &HistoricalRequestKey,
) -> TestResult<(PaceTime, BookReservation)> {
    let rules = PacingRules::default();
    let owner = ledger.owner().to_owned();
    let request = PacedRequest::Historical(key.clone());
    let mut got = None;
    ledger.transact(
        gateway,
        now,
        &mut |book: &mut PaceBook, clock: LedgerNow| {
            let t = clock.time;
            book.touch(&owner, t.plus(Duration::from_secs(3600)));
            got = Some(
                book.reserve(&rules, t, t, &request, Some(&owner))
                    .and_then(|r| book.complete(r.id).map(|()| (t, r))),
            );
        },
    )?;
    Ok(got.ok_or("the ledger never ran the step")??)
}

fn wall_now() -> TestResult<PaceTime> {
    let d = SystemTime::now().duration_since(UNIX_EPOCH)?;
    Ok(PaceTime(u64::try_from(d.as_nanos())?))
}

#[test]
fn four_hosts_reserving_together_never_break_ibs_historical_limits() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let gateway = "gw-shared";
    let per_thread = 32;
    let threads: Vec<_> = (0..4)
        .map(|h| {
            let url = server.url();
            std::thread::spawn(
                move || -> TestResult<Vec<(HistoricalRequestKey, BookReservation)>> {
                    let mut ledger = RedisLedger::open(&url, format!("host-{h}:{}", 1000 + h))?;
                    let mut grants = Vec::new();
                    for i in 0..per_thread {
                        // Every thread asks for the same 24 keys (8 contracts × 3 ends), so both
                        // identical requests and contract bursts come from different hosts.
                        let key = small(&format!("C{}", (i + h) % 8), &format!("E{}", i % 3));
                        let (_, r) = reserve(&mut ledger, gateway, Instant::now(), &key)?;
                        grants.push((key, r));
                    }
                    Ok(grants)
                },
            )
        })
        .collect();
    let mut grants = Vec::new();
    for t in threads {
        grants.extend(t.join().map_err(|_| "a thread panicked")??);
    }
    assert!(grants.len() >= 120, "only {} grants", grants.len());

    let ids: HashSet<_> = grants.iter().map(|(_, r)| r.id).collect();
    assert_eq!(ids.len(), grants.len(), "reservation ids are not unique");

    // Brute force, independent of the book's algorithm. Windows are half-open [s, s + W); the
    // fullest window of any placement starts at some grant, so checking those suffices.
    let mut all: Vec<PaceTime> = grants.iter().map(|(_, r)| r.at).collect();
    all.sort_unstable();
    for (i, start) in all.iter().enumerate() {
        let end = start.plus(Duration::from_secs(600));
        let in_window = all[i..].iter().take_while(|at| **at < end).count();
        assert!(
            in_window <= 60,
            "{in_window} historical requests in the 600 s from {start:?}"
        );
    }
    let mut by_key: BTreeMap<String, Vec<PaceTime>> = BTreeMap::new();
    let mut by_contract: BTreeMap<String, Vec<PaceTime>> = BTreeMap::new();
    for (key, r) in &grants {
        by_key.entry(format!("{key:?}")).or_default().push(r.at);
        by_contract
            .entry(key.contract.clone())
            .or_default()
            .push(r.at);
    }
    for (key, ats) in &mut by_key {
        ats.sort_unstable();
        for pair in ats.windows(2) {
            let gap = pair[1].since(pair[0]);
            assert!(
                gap >= Duration::from_secs(15),
                "identical {key} only {gap:?} apart"
            );
        }
    }
    for (contract, ats) in &mut by_contract {
        ats.sort_unstable();
        for (i, start) in ats.iter().enumerate() {
            let end = start.plus(Duration::from_secs(2));
            let burst = ats[i..].iter().take_while(|at| **at < end).count();
            assert!(burst <= 5, "{burst} requests for {contract} within 2 s");
        }
    }
    // The schedule is tight, not merely safe: 128 requests at 60 per 600 s need just over
    // two windows, and the first 60 are granted within the first window.
    let first = all.first().copied().ok_or("no grants")?;
    let last = all.last().copied().ok_or("no grants")?;
    assert!(
        last.since(first) < Duration::from_secs(1300),
        "{:?}",
        last.since(first)
    );
    assert!(all[59].since(first) < Duration::from_secs(600));
    Ok(())
}

#[test]
fn redis_time_is_the_clock_whatever_the_callers_pass() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let gateway = "gw-clock";
    let mut a = RedisLedger::open(&server.url(), "a")?;
    let mut b = RedisLedger::open(&server.url(), "b")?;
    let key = small("SPY", "20250101 16:00:00");
    let before = wall_now()?;
    // `a` says "now", `b` a month ahead: were either used, `b`'s grant would be a month out.
    let now = Instant::now();
    let far = now
        .checked_add(Duration::from_secs(30 * 24 * 3600))
        .ok_or("Instant overflow")?;
    let (ta, ra) = reserve(&mut a, gateway, now, &key)?;
    let (tb, rb) = reserve(&mut b, gateway, far, &key)?;
    let after = wall_now()?;
    // The server runs on this host, so its TIME matches this host's wall clock.
    for t in [ta, tb] {
        assert!(
            t.0 + 2 * SEC >= before.0 && t.0 <= after.0 + 2 * SEC,
            "step time {t:?} is not Redis' time (wall {before:?}..{after:?})"
        );
    }
    assert!(tb >= ta);
    assert_eq!(ra.at, ta, "an empty book grants now");
    assert_eq!(
        rb.at,
        ra.at.plus(Duration::from_secs(15)),
        "the identical request waits 15 s of server time"
    );

    // The book expires an hour after its last write.
    let mut conn = redis::Client::open(server.url())?.get_connection()?;
    let ttl: i64 = redis::cmd("PTTL").arg(a.key(gateway)).query(&mut conn)?;
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "PTTL {ttl}");
    Ok(())
}

#[test]
fn a_step_that_changes_nothing_writes_nothing() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let mut ledger = RedisLedger::open(&server.url(), "reader")?;
    let key = ledger.key("gw-read");
    ledger.transact("gw-read", Instant::now(), &mut |_, _| ())?;
    let mut conn = redis::Client::open(server.url())?.get_connection()?;
    let first: Option<String> = redis::cmd("GET").arg(&key).query(&mut conn)?;
    let generation =
        serde_json::from_str::<PaceBook>(first.as_deref().ok_or("no book")?)?.generation;
    assert_ne!(generation, 0, "a new book is stored with its generation");
    // Someone else writes the book; a read-only step must not overwrite it.
    redis::cmd("SET")
        .arg(&key)
        .arg(serde_json::to_string(&PaceBook::new(42))?)
        .query::<()>(&mut conn)?;
    let mut seen = 0;
    ledger.transact("gw-read", Instant::now(), &mut |book, _| {
        seen = book.generation
    })?;
    assert_eq!(seen, 42);
    Ok(())
}

#[test]
fn a_corrupt_book_is_reported_moved_aside_and_replaced() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let mut ledger = RedisLedger::open(&server.url(), "o")?;
    let key = ledger.key("gw-bad");
    let mut conn = redis::Client::open(server.url())?.get_connection()?;
    redis::cmd("SET")
        .arg(&key)
        .arg("{not a book")
        .query::<()>(&mut conn)?;

    let mut ran = false;
    let err = ledger.transact("gw-bad", Instant::now(), &mut |_, _| ran = true);
    let Err(LedgerError::Corrupt { store, reason }) = err else {
        return Err(format!("expected Corrupt, got {err:?}").into());
    };
    assert!(!ran, "the step must not run on a corrupt book");
    assert_eq!(store, server.url());
    let aside: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{key}:corrupt-*"))
        .query(&mut conn)?;
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(reason.contains(&aside[0]), "{reason}");
    let kept: String = redis::cmd("GET").arg(&aside[0]).query(&mut conn)?;
    assert_eq!(kept, "{not a book");
    let ttl: i64 = redis::cmd("PTTL").arg(&aside[0]).query(&mut conn)?;
    assert!(ttl > 0, "the preserved copy expires eventually ({ttl})");

    // The next step starts a fresh book.
    let (_, r) = reserve(&mut ledger, "gw-bad", Instant::now(), &small("X", ""))?;
    assert_eq!(
        r.id.0 & 0xFFFF_FFFF,
        0,
        "the first id of a fresh book (each generation has its own id range)"
    );

    // A key of the wrong type is corrupt too.
    let list_key = ledger.key("gw-list");
    redis::cmd("RPUSH")
        .arg(&list_key)
        .arg("x")
        .query::<i64>(&mut conn)?;
    let err = ledger.transact("gw-list", Instant::now(), &mut |_, _| ());
    assert!(
        matches!(&err, Err(LedgerError::Corrupt { reason, .. }) if reason.contains("WRONGTYPE")),
        "{err:?}"
    );
    ledger.transact("gw-list", Instant::now(), &mut |_, _| ())?;
    Ok(())
}

#[test]
fn a_killed_redis_fails_fast_and_a_restarted_one_is_used_again() -> TestResult {
    let Some(mut server) = RedisServer::start()? else {
        return Ok(());
    };
    let mut ledger = RedisLedger::open(&server.url(), "o")?;
    let key = small("X", "");
    reserve(&mut ledger, "gw", Instant::now(), &key)?;
    let mut generation = 0;
    ledger.transact("gw", Instant::now(), &mut |book, _| {
        generation = book.generation
    })?;

    server.kill();
    for _ in 0..2 {
        // Once on the dead connection, once reconnecting.
        let started = Instant::now();
        let err = ledger.transact("gw", Instant::now(), &mut |_, _| ());
        let took = started.elapsed();
        assert!(
            matches!(&err, Err(LedgerError::Unavailable { store, .. }) if *store == server.url()),
            "{err:?}"
        );
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    server.restart()?;
    let mut after = 0;
    ledger.transact("gw", Instant::now(), &mut |book, _| after = book.generation)?;
    assert_ne!(
        after, generation,
        "the restarted Redis (no persistence) starts a new book"
    );
    reserve(&mut ledger, "gw", Instant::now(), &key)?;
    Ok(())
}

#[test]
fn a_hung_redis_times_out_instead_of_blocking() -> TestResult {
    let Some(server) = RedisServer::start()? else {
        return Ok(());
    };
    let mut ledger = RedisLedger::open(&server.url(), "o")?;
    ledger.transact("gw", Instant::now(), &mut |_, _| ())?;
    server.signal("STOP")?;
    let mut outcome = Ok(());
    for _ in 0..2 {
        // Once on the open connection (read timeout), once connecting anew (connect timeout).
        let started = Instant::now();
        let err = ledger.transact("gw", Instant::now(), &mut |_, _| ());
        let took = started.elapsed();
        if !matches!(err, Err(LedgerError::Unavailable { .. }))
            || took > Duration::from_millis(1500)
        {
            outcome = Err(format!("{err:?} after {took:?}"));
            break;
        }
    }
    server.signal("CONT")?;
    outcome?;
    ledger.transact("gw", Instant::now(), &mut |_, _| ())?;
    Ok(())
}

#[test]
fn describe_and_errors_never_show_the_password() -> TestResult {
    let store = RedisStore::open("redis://:hunter2@127.0.0.1:1/0")?;
    assert_eq!(store.describe(), "redis://:***@127.0.0.1:1/0");
    let mut ledger = RedisLedger::new(store, "o");
    assert_eq!(ledger.describe(), "redis://:***@127.0.0.1:1/0");
    let err = ledger.transact("gw", Instant::now(), &mut |_, _| ());
    let text = format!("{err:?}");
    assert!(
        matches!(err, Err(LedgerError::Unavailable { .. })),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    Ok(())
}
