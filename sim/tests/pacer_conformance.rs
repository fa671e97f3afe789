//! The core's pacer, judged by the simulated gateway's rule enforcement: whatever stream of
//! historical and head-timestamp requests arrives, the schedule the pacer hands out never earns a pacing violation
//! from the sim. The two implementations share no code, so each checks the other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// One arbitrary origin per case; every later instant is derived from it (virtual time).
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use ibconn_core::bar_size::BarSize;
use ibconn_core::pacer::{
    ClassRules, HeadTimestampKey, HistoricalRequestKey, PacedRequest, Pacer, PacerError,
    PacingRules,
};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::rules::{HistoricalPacer, PacedKind, PacedRequest as SimRequest};
use ibconn_sim::HistoricalRules;
use proptest::prelude::*;

/// One arriving request: when it arrives (ms after the previous one) and what it asks for.
#[derive(Debug, Clone)]
struct Arrival {
    gap_ms: u64,
    key: PacedRequest,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (
        0u64..3_000,
        0..4usize,
        prop::sample::select(vec![
            WhatToShow::Trades,
            WhatToShow::Midpoint,
            WhatToShow::BidAsk,
        ]),
        prop::sample::select(vec![BarSize::Sec5, BarSize::Sec30, BarSize::Min1]),
        prop::sample::select(vec!["", "20260105-16:00:00", "20260106-16:00:00"]),
        any::<bool>(),
        // One in four is a head-timestamp request, paced like small bars on both sides.
        0..4u8,
    )
        .prop_map(
            |(gap_ms, contract, what, bar_size, end, use_rth, kind)| Arrival {
                gap_ms,
                key: if kind == 0 {
                    PacedRequest::HeadTimestamp(HeadTimestampKey {
                        contract: format!("C{contract}"),
                        exchange: "SMART".into(),
                        what_to_show: what,
                        use_rth,
                    })
                } else {
                    small(&format!("C{contract}"), end, bar_size, what, use_rth)
                },
            },
        )
}

/// A historical request key.
fn small(
    contract: &str,
    end: &str,
    bar_size: BarSize,
    what: WhatToShow,
    use_rth: bool,
) -> PacedRequest {
    PacedRequest::Historical(HistoricalRequestKey {
        contract: contract.into(),
        exchange: "SMART".into(),
        end: end.into(),
        duration: "1800 S".into(),
        bar_size,
        what_to_show: what,
        use_rth,
    })
}

/// The sim's view of the same request.
fn sim_request(key: &PacedRequest) -> SimRequest {
    match key {
        PacedRequest::Historical(k) => SimRequest {
            identity: format!("{k:?}"),
            contract_tick: format!("{}|{}|{}", k.contract, k.exchange, k.what_to_show),
            bid_ask: k.what_to_show == WhatToShow::BidAsk,
            kind: PacedKind::Bars {
                secs: i64::from(k.bar_size.seconds()),
            },
        },
        PacedRequest::HeadTimestamp(k) => SimRequest {
            identity: format!("{k:?}"),
            contract_tick: format!("{}|{}|{}", k.contract, k.exchange, k.what_to_show),
            bid_ask: k.what_to_show == WhatToShow::BidAsk,
            kind: PacedKind::HeadTimestamp,
        },
        other => panic!("not an HMDS request: {other:?}"),
    }
}

/// Schedule every arrival with the pacer (answers come `latency` after each send), then replay
/// the sends in time order through the sim's rules. Returns the number of requests delayed.
fn schedule_and_judge(
    rules: PacingRules,
    sim_rules: HistoricalRules,
    arrivals: &[Arrival],
    latency: Duration,
) -> Result<usize, String> {
    let t0 = Instant::now();
    let mut pacer = Pacer::new(rules);
    // (send instant, completion instant, reservation id, request)
    let mut sent: Vec<(Instant, Instant, _, &PacedRequest)> = Vec::new();
    let mut completed = vec![false; arrivals.len()];
    let mut now = t0;
    let mut delayed = 0;
    for a in arrivals {
        now += Duration::from_millis(a.gap_ms);
        loop {
            // Answers that arrived by `now` free their open slots.
            for (i, s) in sent.iter().enumerate() {
                if !completed[i] && s.1 <= now {
                    pacer.complete(s.2).unwrap();
                    completed[i] = true;
                }
            }
            match pacer.reserve(now, &a.key) {
                Ok(r) => {
                    if r.at > now {
                        delayed += 1;
                    }
                    sent.push((r.at, r.at + latency, r.id, &a.key));
                    break;
                }
                Err(PacerError::OpenRequestsFull { .. }) => {
                    // Wait for the next answer, as a caller would.
                    now = sent
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !completed[*i])
                        .map(|(_, s)| s.1)
                        .min()
                        .ok_or("open slots full with nothing outstanding")?;
                }
                Err(e) => return Err(format!("unexpected pacer error {e}")),
            }
        }
    }
    let mut order: Vec<usize> = (0..sent.len()).collect();
    order.sort_by_key(|&i| (sent[i].0, i));
    let mut judge = HistoricalPacer::new(sim_rules);
    for (n, &i) in order.iter().enumerate() {
        let (at, _, _, key) = sent[i];
        let open = order[..n]
            .iter()
            .filter(|&&j| sent[j].0 <= at && at < sent[j].1)
            .count();
        judge
            .check(at, &sim_request(key), open)
            .map_err(|v| format!("request {i} sent at +{:?} violates {v:?}", at - t0))?;
    }
    Ok(delayed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Default rules: IB's hard rules on bars of 30 s or less, as the sim's documented scope.
    #[test]
    fn pacer_schedules_pass_the_sims_rules(
        arrivals in prop::collection::vec(arrival(), 1..150),
        latency_ms in 200u64..5_000,
    ) {
        let result = schedule_and_judge(
            PacingRules::default(),
            HistoricalRules::default(),
            &arrivals,
            Duration::from_millis(latency_ms),
        );
        prop_assert!(result.is_ok(), "{:?}", result);
    }

    /// Strict rules on every bar size, on both sides.
    #[test]
    fn strict_pacer_schedules_pass_the_sims_strict_rules(
        arrivals in prop::collection::vec(arrival(), 1..150),
        latency_ms in 200u64..5_000,
    ) {
        let rules = PacingRules {
            large_bars: ClassRules::HARD,
            ..PacingRules::default()
        };
        let result = schedule_and_judge(
            rules,
            HistoricalRules::strict(),
            &arrivals,
            Duration::from_millis(latency_ms),
        );
        prop_assert!(result.is_ok(), "{:?}", result);
    }
}

/// The check is not vacuous: a burst sent without the pacer is refused by the sim.
#[test]
fn the_judge_refuses_an_unpaced_burst() {
    let t0 = Instant::now();
    let mut judge = HistoricalPacer::new(HistoricalRules::default());
    let key = |i: usize| {
        let end = format!("2026010{}-16:00:00", i % 9 + 1);
        small("C0", &end, BarSize::Sec5, WhatToShow::Trades, true)
    };
    let refused = (0..6)
        .filter(|&i| judge.check(t0, &sim_request(&key(i)), 0).is_err())
        .count();
    assert_eq!(
        refused, 1,
        "the 6th same-contract request within 2 s is refused"
    );
}

/// And the pacer does delay such bursts (so the property above exercises real waiting).
#[test]
fn the_pacer_delays_bursts_that_would_violate() {
    let arrivals: Vec<Arrival> = (0..70)
        .map(|i| Arrival {
            gap_ms: 0,
            key: small(
                &format!("C{}", i % 4),
                &format!("E{i}"),
                BarSize::Sec5,
                WhatToShow::Trades,
                true,
            ),
        })
        .collect();
    let delayed = schedule_and_judge(
        PacingRules::default(),
        HistoricalRules::default(),
        &arrivals,
        Duration::from_millis(500),
    )
    .unwrap();
    // At most 4 contracts × 5 requests may go at the first instant; the other 50 must wait.
    assert_eq!(delayed, 50, "70 simultaneous requests over 4 contracts");
}

/// Head timestamps count: with bars of the same contract and tick type they make a burst the
/// sim refuses (it did not judge them before), and the pacer delays it.
#[test]
fn head_timestamps_share_the_same_contract_burst_with_bars() {
    let t0 = Instant::now();
    let key = |i: usize| match i {
        0 | 2 => PacedRequest::HeadTimestamp(HeadTimestampKey {
            contract: "C0".into(),
            exchange: "SMART".into(),
            what_to_show: WhatToShow::Trades,
            use_rth: i == 0,
        }),
        _ => small(
            "C0",
            &format!("E{i}"),
            BarSize::Sec5,
            WhatToShow::Trades,
            true,
        ),
    };
    let mut judge = HistoricalPacer::new(HistoricalRules::default());
    let verdicts: Vec<bool> = (0..6)
        .map(|i| judge.check(t0, &sim_request(&key(i)), 0).is_ok())
        .collect();
    assert_eq!(
        verdicts,
        [true, true, true, true, true, false],
        "2 head timestamps + 3 bars, then the 6th within 2 s"
    );
    let arrivals: Vec<Arrival> = (0..6)
        .map(|i| Arrival {
            gap_ms: 0,
            key: key(i),
        })
        .collect();
    let delayed = schedule_and_judge(
        PacingRules::default(),
        HistoricalRules::default(),
        &arrivals,
        Duration::from_millis(500),
    )
    .unwrap();
    assert_eq!(delayed, 1);
}
