//! Pacer benchmark (not a test): makespan of a canonical small-bar backfill versus the theoretical
//! minimum allowed by IB's rules.
//!
//! Workload: 12 contracts × 30 chunks = 360 historical requests, 5-second TRADES bars, distinct end
//! dates, all submitted at t = 0 under [`PacingRules::default`]; each request answers 3 s after it is
//! sent. The driver reserves in submission order and, when the 50 open slots are full, advances
//! virtual time to the next completion.
//!
//! Theoretical minimum (computed here independently of the pacer):
//! - Lower bound: sort any valid schedule's send times `t₀ ≤ … ≤ t₃₅₉`. At most 60 requests fit in any
//!   half-open 600 s window, so `t_{k+60} ≥ t_k + 600 s`. At most 50 requests may be open, and each is
//!   open for the 3 s latency, so the 51st send waits for the first answer: `t₅₀ ≥ t₀ + 3 s`; (the
//!   50 msg/s rule alone would give `t₅₀ ≥ 1 s`). Hence `t₃₅₉ ≥ t₅₉ + 5·600 s ≥ 3003 s`.
//! - Achievability: a brute-force earliest-feasible list schedule (round-robin over contracts), each
//!   slot checked against every rule by the reference checker below, reaches the bound. So the bound
//!   *is* the minimum over all submission orders.
//!
//! Run with `cargo bench -p ibconn-core --bench pacer`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use ibconn_core::bar_size::BarSize;
use ibconn_core::pacer::{
    HistoricalRequestKey, PacedRequest, Pacer, PacerError, PacingRules, ReservationId,
};
use ibconn_core::what_to_show::WhatToShow;

const CONTRACTS: usize = 12;
const CHUNKS: usize = 30;
const LATENCY_MS: i64 = 3_000;

fn request(contract: usize, chunk: usize) -> PacedRequest {
    PacedRequest::Historical(HistoricalRequestKey {
        contract: format!("{}", 265_598 + contract), // conIds
        exchange: "SMART".to_owned(),
        end: format!("202401{:02} 16:00:00 US/Eastern", 1 + chunk), // 30 consecutive days
        duration: "3600 S".to_owned(),
        bar_size: BarSize::Sec5,
        what_to_show: WhatToShow::Trades,
        use_rth: true,
    })
}

fn contract_major() -> Vec<PacedRequest> {
    (0..CONTRACTS)
        .flat_map(|c| (0..CHUNKS).map(move |k| request(c, k)))
        .collect()
}

fn round_robin() -> Vec<PacedRequest> {
    (0..CHUNKS)
        .flat_map(|k| (0..CONTRACTS).map(move |c| request(c, k)))
        .collect()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct Run {
    sends_ms: Vec<i64>,
    reserve_calls: usize,
    elapsed: Duration,
}

/// Drives the pacer in virtual time; returns the send instant of every request.
fn simulate(order: &[PacedRequest]) -> Result<Run, PacerError> {
    #[allow(clippy::disallowed_methods)]
    // benchmark harness, not core: one base instant + CPU timing
    let (base, started) = (Instant::now(), Instant::now());
    let at = |t: i64| base + Duration::from_millis(u64::try_from(t).unwrap_or(0));
    let mut pacer = Pacer::new(PacingRules::default());
    let mut now = 0_i64;
    let mut in_flight: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
    let mut sends_ms = Vec::with_capacity(order.len());
    let mut reserve_calls = 0;
    for req in order {
        loop {
            reserve_calls += 1;
            match pacer.reserve(at(now), req) {
                Ok(r) => {
                    let sent = ms(r.at.duration_since(base));
                    sends_ms.push(sent);
                    in_flight.push(Reverse((sent + LATENCY_MS, r.id.0)));
                    break;
                }
                Err(full @ PacerError::OpenRequestsFull { .. }) => {
                    let Some(Reverse((done, id))) = in_flight.pop() else {
                        return Err(full);
                    };
                    now = now.max(done);
                    pacer.complete(ReservationId(id))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    #[allow(clippy::disallowed_methods)]
    let elapsed = started.elapsed();
    Ok(Run {
        sends_ms,
        reserve_calls,
        elapsed,
    })
}

// ---- independent reference: rules for this workload (small bars, TRADES, default limits) ----------

/// Sorted send times per scope, for window counts by binary search.
#[derive(Default)]
struct Reference {
    all: Vec<i64>,
    per_contract: Vec<Vec<i64>>,
    identical: Vec<Vec<i64>>,
}

fn count_in(sorted: &[i64], from: i64, to: i64) -> usize {
    sorted.partition_point(|t| *t < to) - sorted.partition_point(|t| *t < from)
}

/// Does every window `[s, s + w)` that contains `p` hold at most `max` events once `p` is added?
fn window_ok(sorted: &[i64], p: i64, w: i64, max: usize) -> bool {
    let starts = sorted
        .iter()
        .copied()
        .filter(|s| *s > p - w && *s <= p)
        .chain([p]);
    starts.into_iter().all(|s| count_in(sorted, s, s + w) < max)
}

/// At most `max` requests open at any instant, each open during `[e, e + latency)`, once `p` is added?
fn open_ok(sorted: &[i64], p: i64, latency: i64, max: usize) -> bool {
    // The open count only rises at send instants, so check `p` and every send in `(p, p + latency)`.
    let checks = sorted
        .iter()
        .copied()
        .filter(|t| *t > p && *t < p + latency)
        .chain([p]);
    checks
        .into_iter()
        .all(|t| count_in(sorted, t - latency + 1, t + 1) < max)
}

impl Reference {
    fn feasible(&self, contract: usize, chunk: usize, p: i64) -> bool {
        open_ok(&self.all, p, LATENCY_MS, 50)          // 50 open requests
            && window_ok(&self.all, p, 1_000, 50)      // 50 messages per second
            && window_ok(&self.all, p, 600_000, 60)    // 60 historical requests per 10 min
            && window_ok(&self.per_contract[contract], p, 2_000, 5) // 5 per 2 s per contract+exchange+type
            && self.identical[contract * CHUNKS + chunk].iter().all(|e| (p - e).abs() >= 15_000)
    }

    fn add(&mut self, contract: usize, chunk: usize, p: i64) {
        for v in [
            &mut self.all,
            &mut self.per_contract[contract],
            &mut self.identical[contract * CHUNKS + chunk],
        ] {
            let i = v.partition_point(|t| *t < p);
            v.insert(i, p);
        }
    }

    fn new() -> Self {
        Self {
            all: Vec::new(),
            per_contract: vec![Vec::new(); CONTRACTS],
            identical: vec![Vec::new(); CONTRACTS * CHUNKS],
        }
    }
}

/// Earliest-feasible list schedule for `order` (pairs of contract, chunk), by brute force over every
/// instant where feasibility can change (`0` and `e + d` for each scheduled `e` and rule length `d`).
fn brute_force_schedule(order: &[(usize, usize)]) -> Vec<i64> {
    let mut reference = Reference::new();
    let mut out = Vec::new();
    for &(c, k) in order {
        let mut candidates: Vec<i64> = vec![0];
        for e in &reference.all {
            candidates.extend([
                e + LATENCY_MS,
                e + 1_000,
                e + 2_000,
                e + 15_000,
                e + 600_000,
            ]);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let p = candidates
            .into_iter()
            .find(|p| reference.feasible(c, k, *p))
            .unwrap_or(i64::MAX);
        reference.add(c, k, p);
        out.push(p);
    }
    out
}

/// Checks a full schedule against the reference rules.
fn verify(order: &[(usize, usize)], sends: &[i64]) -> bool {
    let mut reference = Reference::new();
    let mut ok = true;
    for (&(c, k), &p) in order.iter().zip(sends) {
        ok &= reference.feasible(c, k, p);
        reference.add(c, k, p);
    }
    ok
}

fn main() -> Result<(), PacerError> {
    let n = CONTRACTS * CHUNKS;
    let lower_bound_ms = {
        // t_{k+60} ≥ t_k + 600 s and t_59 ≥ t_50 ≥ max(1 s, latency) (see module docs).
        let windows = (n - 1) / 60;
        i64::try_from(windows).unwrap_or(0) * 600_000
            + if n > 50 { LATENCY_MS.max(1_000) } else { 0 }
    };
    let rr_pairs: Vec<(usize, usize)> = (0..CHUNKS)
        .flat_map(|k| (0..CONTRACTS).map(move |c| (c, k)))
        .collect();
    let cm_pairs: Vec<(usize, usize)> = (0..CONTRACTS)
        .flat_map(|c| (0..CHUNKS).map(move |k| (c, k)))
        .collect();
    let brute_rr = brute_force_schedule(&rr_pairs);
    let brute_cm = brute_force_schedule(&cm_pairs);
    let minimum_ms = brute_rr.iter().copied().max().unwrap_or(0);
    assert!(
        verify(&rr_pairs, &brute_rr),
        "brute-force schedule breaks a rule"
    );
    let minimum_note = if minimum_ms == lower_bound_ms {
        "= lower bound, so optimal"
    } else {
        "ABOVE the lower bound"
    };

    println!("pacer benchmark: canonical backfill, {n} requests ({CONTRACTS} contracts x {CHUNKS} chunks, 5 secs TRADES),");
    println!("IB default rules (50 msg/s, 60 per 10 min, 5 per 2 s per contract, 15 s identical, 50 open), latency {} s", LATENCY_MS / 1000);
    println!("theoretical minimum makespan: {:.3} s  (lower bound {:.3} s; brute-force schedule {minimum_note})", minimum_ms as f64 / 1e3, lower_bound_ms as f64 / 1e3);
    println!(
        "brute-force earliest-feasible, contract-major order: {:.3} s",
        brute_cm.iter().copied().max().unwrap_or(0) as f64 / 1e3
    );
    for (name, order, pairs) in [
        ("contract-major", contract_major(), &cm_pairs),
        ("round-robin", round_robin(), &rr_pairs),
    ] {
        let run = simulate(&order)?;
        let makespan = run.sends_ms.iter().copied().max().unwrap_or(0);
        let valid = verify(pairs, &run.sends_ms);
        println!(
            "pacer, {name:<14} order: makespan {:.3} s, ratio to minimum {:.4}, schedule valid: {valid}, {} reserve calls, {:.1} µs per call",
            makespan as f64 / 1e3,
            makespan as f64 / minimum_ms.max(1) as f64,
            run.reserve_calls,
            run.elapsed.as_secs_f64() * 1e6 / run.reserve_calls.max(1) as f64,
        );
    }
    Ok(())
}
