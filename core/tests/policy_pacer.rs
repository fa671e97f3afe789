//! Property tests for the pacer against an independent, brute-force reference checker.
//!
//! The checker below re-derives every IB rule from [`PacingRules`] *data* only (it shares no code with
//! the pacer): times are whole milliseconds, every window start and every pair is enumerated.
//!
//! - `schedule_never_breaks_a_rule`: for arbitrary rules and request streams (bursts, identical repeats,
//!   BID_ASK, all classes, completions, cancels, violations), the final schedule passes the checker.
//! - `pacer_never_delays_a_sendable_request`: no instant in `[now, at)` would have been rule-abiding.
//!   Feasibility only changes at `e ± d` (slot `e`, rule duration `d`), so checking `now` and every such
//!   breakpoint `b` and `b + 1 ms` inside `[now, at)` covers every instant exactly.

use std::time::{Duration, Instant};

use ibconn_core::bar_size::BarSize;
use ibconn_core::pacer::{
    ClassRules, HeadTimestampKey, HistoricalRequestKey, PacedRequest, Pacer, PacerError,
    PacingRules, PauseRules, ReservationId, WindowLimit,
};
use ibconn_core::what_to_show::WhatToShow;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Reference checker (brute force, independent of the pacer)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sent {
    at: i64,
    req: PacedRequest,
    completed: Option<i64>,
}

fn ref_class(rules: &PacingRules, req: &PacedRequest) -> (&'static str, ClassRules) {
    match req {
        PacedRequest::Historical(k) if k.bar_size.seconds() <= rules.small_bar_max.seconds() => {
            ("small", rules.small_bars)
        }
        PacedRequest::Historical(_) => ("large", rules.large_bars),
        PacedRequest::HeadTimestamp(_) => ("head", rules.head_timestamp),
        PacedRequest::ContractDetails => ("details", rules.contract_details),
        _ => (
            "message",
            ClassRules {
                historical_window: false,
                burst: false,
                identical: false,
                open_slot: false,
                pausable: false,
                min_interval: Duration::ZERO,
            },
        ),
    }
}

fn ref_weight(rules: &PacingRules, req: &PacedRequest) -> i64 {
    let what = match req {
        PacedRequest::Historical(k) => k.what_to_show.as_str(),
        PacedRequest::HeadTimestamp(k) => k.what_to_show.as_str(),
        _ => "",
    };
    if what.eq_ignore_ascii_case("BID_ASK") {
        i64::from(rules.bid_ask_weight.max(1))
    } else {
        1
    }
}

fn ref_burst_key(req: &PacedRequest) -> Option<(String, String, String)> {
    match req {
        PacedRequest::Historical(k) => Some((
            k.contract.clone(),
            k.exchange.clone(),
            k.what_to_show.as_str().to_owned(),
        )),
        PacedRequest::HeadTimestamp(k) => Some((
            k.contract.clone(),
            k.exchange.clone(),
            k.what_to_show.as_str().to_owned(),
        )),
        _ => None,
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Checks one weighted window rule over the events `scope` selects (weight 0 = not in scope).
/// With `focus`, only windows containing that event are checked.
fn check_window(
    name: &str,
    events: &[Sent],
    limit: WindowLimit,
    weight: &dyn Fn(&Sent) -> i64,
    same_scope: &dyn Fn(&Sent, &Sent) -> bool,
    focus: Option<usize>,
    out: &mut Vec<String>,
) {
    let w = ms(limit.window);
    for (i, start) in events.iter().enumerate() {
        if weight(start) == 0 {
            continue;
        }
        let (s, e) = (start.at, start.at + w);
        if let Some(f) = focus {
            let fa = events[f].at;
            if !(s <= fa && fa < e) || weight(&events[f]) == 0 || !same_scope(start, &events[f]) {
                continue;
            }
        }
        let load: i64 = events
            .iter()
            .filter(|x| weight(x) > 0 && same_scope(start, x) && x.at >= s && x.at < e)
            .map(weight)
            .sum();
        if load > i64::from(limit.max_weight) {
            out.push(format!(
                "{name}: weight {load} in [{s}, {e}) (window started by #{i})"
            ));
        }
    }
}

fn check_pairs(
    name: &str,
    events: &[Sent],
    gap: Duration,
    related: &dyn Fn(&Sent, &Sent) -> bool,
    focus: Option<usize>,
    out: &mut Vec<String>,
) {
    let g = ms(gap);
    if g == 0 {
        return;
    }
    for i in 0..events.len() {
        for j in (i + 1)..events.len() {
            if focus.is_some_and(|f| f != i && f != j) {
                continue;
            }
            if related(&events[i], &events[j]) && (events[i].at - events[j].at).abs() < g {
                out.push(format!(
                    "{name}: #{i} at {} and #{j} at {}",
                    events[i].at, events[j].at
                ));
            }
        }
    }
}

/// Every rule broken by `events` (only those involving `focus`, if given). The open-request rule is
/// checked in full mode only (it is an admission rule, not a timing rule).
fn violations(rules: &PacingRules, events: &[Sent], focus: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    check_window(
        "message rate",
        events,
        rules.message_rate,
        &|_| 1,
        &|_, _| true,
        focus,
        &mut out,
    );
    check_window(
        "historical window",
        events,
        rules.historical,
        &|x| {
            if ref_class(rules, &x.req).1.historical_window {
                ref_weight(rules, &x.req)
            } else {
                0
            }
        },
        &|_, _| true,
        focus,
        &mut out,
    );
    check_window(
        "burst",
        events,
        rules.burst,
        &|x| {
            // Only requests with a contract + exchange + whatToShow key can be in a burst scope.
            if ref_class(rules, &x.req).1.burst && ref_burst_key(&x.req).is_some() {
                ref_weight(rules, &x.req)
            } else {
                0
            }
        },
        &|a, b| ref_burst_key(&a.req) == ref_burst_key(&b.req),
        focus,
        &mut out,
    );
    check_pairs(
        "identical",
        events,
        rules.identical_gap,
        &|a, b| {
            ref_class(rules, &a.req).1.identical
                && ref_class(rules, &b.req).1.identical
                && ref_burst_key(&a.req).is_some()
                && a.req == b.req
        },
        focus,
        &mut out,
    );
    let per_class = [
        ("small", rules.small_bars.min_interval),
        ("large", rules.large_bars.min_interval),
        ("head", rules.head_timestamp.min_interval),
        ("details", rules.contract_details.min_interval),
    ];
    for (class, gap) in per_class {
        check_pairs(
            &format!("min interval ({class})"),
            events,
            gap,
            &|a, b| ref_class(rules, &a.req).0 == class && ref_class(rules, &b.req).0 == class,
            focus,
            &mut out,
        );
    }
    if focus.is_none() {
        for t in events.iter().map(|x| x.at) {
            let open = events
                .iter()
                .filter(|x| {
                    ref_class(rules, &x.req).1.open_slot
                        && x.at <= t
                        && x.completed.is_none_or(|c| c > t)
                })
                .count();
            if open > rules.open_max as usize {
                out.push(format!("open requests: {open} at {t}"));
            }
        }
    }
    out
}

/// Could `req` be sent at `p` given `events`, without breaking any timing rule?
fn feasible_at(rules: &PacingRules, events: &[Sent], req: &PacedRequest, p: i64) -> bool {
    let mut with = events.to_vec();
    with.push(Sent {
        at: p,
        req: req.clone(),
        completed: None,
    });
    violations(rules, &with, Some(with.len() - 1)).is_empty()
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

fn arb_request() -> impl Strategy<Value = PacedRequest> {
    let hist = (
        prop::sample::select(vec!["A", "B", "C"]),
        prop::sample::select(vec!["SMART", "ISLAND"]),
        prop::sample::select(vec![
            "",
            "20240102 16:00:00 US/Eastern",
            "20240103 16:00:00 US/Eastern",
        ]),
        prop::sample::select(vec!["1800 S", "1 D"]),
        prop::sample::select(vec![
            BarSize::Sec1,
            BarSize::Sec5,
            BarSize::Sec30,
            BarSize::Min1,
            BarSize::Hour1,
        ]),
        prop::sample::select(vec![
            WhatToShow::Trades,
            WhatToShow::Midpoint,
            WhatToShow::BidAsk,
        ]),
        any::<bool>(),
    )
        .prop_map(|(c, x, e, d, b, w, r)| {
            PacedRequest::Historical(HistoricalRequestKey {
                contract: c.to_owned(),
                exchange: x.to_owned(),
                end: e.to_owned(),
                duration: d.to_owned(),
                bar_size: b,
                what_to_show: w,
                use_rth: r,
            })
        });
    let head = (
        prop::sample::select(vec!["A", "B"]),
        prop::sample::select(vec![WhatToShow::Trades, WhatToShow::BidAsk]),
    )
        .prop_map(|(c, w)| {
            PacedRequest::HeadTimestamp(HeadTimestampKey {
                contract: c.to_owned(),
                exchange: "SMART".to_owned(),
                what_to_show: w,
                use_rth: true,
            })
        });
    prop_oneof![
        6 => hist,
        2 => head,
        1 => Just(PacedRequest::ContractDetails),
        2 => Just(PacedRequest::Message),
    ]
}

fn arb_class_rules() -> impl Strategy<Value = ClassRules> {
    (
        any::<[bool; 5]>(),
        prop::sample::select(vec![0_u64, 0, 500, 1_500]),
    )
        .prop_map(|(f, min)| ClassRules {
            historical_window: f[0],
            burst: f[1],
            identical: f[2],
            open_slot: f[3],
            pausable: f[4],
            min_interval: Duration::from_millis(min),
        })
}

fn secs_ms(lo: u64, hi: u64) -> impl Strategy<Value = Duration> {
    (lo..=hi).prop_map(Duration::from_millis)
}

/// Small random rules (so every rule binds within a short stream), or IB's defaults.
fn arb_rules() -> impl Strategy<Value = PacingRules> {
    let random = (
        (secs_ms(500, 3_000), 2_u32..8),
        (secs_ms(5_000, 60_000), 3_u32..10),
        (secs_ms(1_000, 5_000), 1_u32..5),
        secs_ms(0, 20_000),
        (2_u32..8, 1_u32..4),
        prop::sample::select(vec![BarSize::Sec1, BarSize::Sec30, BarSize::Min1]),
        (
            arb_class_rules(),
            arb_class_rules(),
            arb_class_rules(),
            arb_class_rules(),
        ),
    )
        .prop_map(
            |(
                m,
                h,
                b,
                identical_gap,
                (open_max, bid_ask_weight),
                small_bar_max,
                (s, l, hd, cd),
            )| PacingRules {
                message_rate: WindowLimit {
                    window: m.0,
                    max_weight: m.1,
                },
                historical: WindowLimit {
                    window: h.0,
                    max_weight: h.1,
                },
                burst: WindowLimit {
                    window: b.0,
                    max_weight: b.1,
                },
                identical_gap,
                open_max,
                bid_ask_weight,
                small_bar_max,
                small_bars: s,
                large_bars: l,
                head_timestamp: hd,
                contract_details: cd,
                pause: PauseRules {
                    initial: Duration::from_secs(5),
                    factor: 2,
                    max: Duration::from_secs(40),
                    reset_after: Duration::from_secs(60),
                },
            },
        );
    prop_oneof![1 => Just(PacingRules::default()), 4 => random]
}

#[derive(Debug, Clone)]
enum Op {
    Reserve(PacedRequest),
    Advance(u64),
    /// Complete the n-th outstanding sent reservation (modulo).
    Complete(usize),
    /// Cancel the n-th not-yet-sent reservation (modulo).
    Cancel(usize),
    Violation,
    RateExceeded,
}

fn arb_ops(with_violations: bool) -> impl Strategy<Value = Vec<Op>> {
    let violation_weight = if with_violations { 1 } else { 0 };
    let op = prop_oneof![
        10 => arb_request().prop_map(Op::Reserve),
        3 => (0_u64..3_000).prop_map(Op::Advance),
        1 => (0_u64..90_000).prop_map(Op::Advance),
        3 => any::<usize>().prop_map(Op::Complete),
        1 => any::<usize>().prop_map(Op::Cancel),
        violation_weight => Just(Op::Violation),
        violation_weight => Just(Op::RateExceeded),
    ];
    prop::collection::vec(op, 1..60)
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

struct Booked {
    id: ReservationId,
    sent: Sent,
    cancelled: bool,
}

/// Runs `ops` through a pacer; calls `on_reserve(now, events_before, req, at)` for every reservation.
fn run(
    rules: &PacingRules,
    ops: &[Op],
    mut on_reserve: impl FnMut(i64, &[Sent], &PacedRequest, i64) -> Result<(), TestCaseError>,
) -> Result<Vec<Sent>, TestCaseError> {
    #[allow(clippy::disallowed_methods)] // one arbitrary base; all test times are offsets from it
    let base = Instant::now();
    let instant = |t: i64| base + Duration::from_millis(u64::try_from(t).unwrap_or(0));
    let mut pacer = Pacer::new(rules.clone());
    let mut now: i64 = 0;
    let mut booked: Vec<Booked> = Vec::new();
    let live = |booked: &[Booked]| -> Vec<Sent> {
        booked
            .iter()
            .filter(|b| !b.cancelled)
            .map(|b| b.sent.clone())
            .collect()
    };
    for op in ops {
        match op {
            Op::Advance(d) => now += i64::try_from(*d).unwrap_or(0),
            Op::Reserve(req) => {
                let before = live(&booked);
                let (_, class) = ref_class(rules, req);
                let open_now = booked
                    .iter()
                    .filter(|b| {
                        !b.cancelled
                            && b.sent.completed.is_none()
                            && ref_class(rules, &b.sent.req).1.open_slot
                    })
                    .count();
                match pacer.reserve(instant(now), req) {
                    Ok(r) => {
                        let at = ms(r.at.duration_since(base));
                        prop_assert!(at >= now, "slot in the past");
                        prop_assert!(
                            !class.open_slot || open_now < rules.open_max as usize,
                            "open cap ignored"
                        );
                        on_reserve(now, &before, req, at)?;
                        booked.push(Booked {
                            id: r.id,
                            sent: Sent {
                                at,
                                req: req.clone(),
                                completed: None,
                            },
                            cancelled: false,
                        });
                    }
                    Err(PacerError::OpenRequestsFull { open, max }) => {
                        prop_assert!(
                            class.open_slot && open_now == rules.open_max as usize && open == max
                        );
                    }
                    Err(PacerError::Unsatisfiable { weight, max }) => {
                        prop_assert!(weight > max, "claimed unsatisfiable: {weight} ≤ {max}");
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
                }
            }
            Op::Complete(n) => {
                let sent: Vec<usize> = (0..booked.len())
                    .filter(|&i| {
                        !booked[i].cancelled
                            && booked[i].sent.completed.is_none()
                            && booked[i].sent.at <= now
                    })
                    .collect();
                if let Some(&i) = sent.get(n % sent.len().max(1)) {
                    let holds_slot = ref_class(rules, &booked[i].sent.req).1.open_slot;
                    if holds_slot {
                        prop_assert!(pacer.complete(booked[i].id).is_ok());
                    }
                    booked[i].sent.completed = Some(now);
                }
            }
            Op::Cancel(n) => {
                let unsent: Vec<usize> = (0..booked.len())
                    .filter(|&i| !booked[i].cancelled && booked[i].sent.at > now)
                    .collect();
                if let Some(&i) = unsent.get(n % unsent.len().max(1)) {
                    prop_assert!(pacer.cancel(booked[i].id).is_ok());
                    booked[i].cancelled = true;
                }
            }
            Op::Violation => {
                let _ = pacer.on_violation(instant(now));
            }
            Op::RateExceeded => {
                let _ = pacer.on_rate_exceeded(instant(now));
            }
        }
    }
    Ok(live(&booked))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn schedule_never_breaks_a_rule(rules in arb_rules(), ops in arb_ops(true)) {
        let schedule = run(&rules, &ops, |_, _, _, _| Ok(()))?;
        let broken = violations(&rules, &schedule, None);
        prop_assert!(broken.is_empty(), "{broken:#?}\nschedule: {schedule:#?}");
    }

    #[test]
    fn pacer_never_delays_a_sendable_request(rules in arb_rules(), ops in arb_ops(false)) {
        let mut durations = vec![rules.message_rate.window, rules.historical.window, rules.burst.window, rules.identical_gap];
        for c in [rules.small_bars, rules.large_bars, rules.head_timestamp, rules.contract_details] {
            durations.push(c.min_interval);
        }
        run(&rules, &ops, |now, before, req, at| {
            prop_assert!(feasible_at(&rules, before, req, at), "reserved slot {at} is not feasible");
            let mut points = vec![now];
            for e in before {
                for d in &durations {
                    let d = ms(*d);
                    points.extend([e.at - d, e.at - d + 1, e.at + d, e.at + d + 1]);
                }
            }
            points.retain(|p| *p >= now && *p < at);
            points.sort_unstable();
            points.dedup();
            for p in points {
                prop_assert!(!feasible_at(&rules, before, req, p), "{req:?} reserved for {at} but {p} was free (now {now})");
            }
            Ok(())
        })?;
    }
}

/// The checker itself must catch violations (guards against a vacuous reference).
#[test]
fn reference_checker_catches_each_rule() {
    let rules = PacingRules::default();
    let hist = |c: &str, end: &str, what: &str| {
        PacedRequest::Historical(HistoricalRequestKey {
            contract: c.to_owned(),
            exchange: "SMART".to_owned(),
            end: end.to_owned(),
            duration: "1800 S".to_owned(),
            bar_size: BarSize::Sec5,
            what_to_show: what.parse().unwrap(),
            use_rth: true,
        })
    };
    let at = |t: i64, req: PacedRequest| Sent {
        at: t,
        req,
        completed: None,
    };
    // Identical within 15 s.
    let v = violations(
        &rules,
        &[
            at(0, hist("A", "e", "TRADES")),
            at(14_999, hist("A", "e", "TRADES")),
        ],
        None,
    );
    assert!(v.iter().any(|m| m.starts_with("identical")), "{v:?}");
    // Six per contract within 2 s.
    let six: Vec<Sent> = (0..6)
        .map(|i| at(i * 300, hist("A", &format!("e{i}"), "TRADES")))
        .collect();
    assert!(violations(&rules, &six, None)
        .iter()
        .any(|m| m.starts_with("burst")));
    // 31 BID_ASK (weight 62) in 10 minutes.
    let many: Vec<Sent> = (0..31)
        .map(|i| at(i * 10_000, hist(&format!("C{i}"), "e", "BID_ASK")))
        .collect();
    assert!(violations(&rules, &many, None)
        .iter()
        .any(|m| m.starts_with("historical window")));
    // 51 messages in one second.
    let msgs: Vec<Sent> = (0..51).map(|i| at(i * 19, PacedRequest::Message)).collect();
    assert!(violations(&rules, &msgs, None)
        .iter()
        .any(|m| m.starts_with("message rate")));
    // Exactly one window apart is fine (half-open windows).
    let edge = [
        at(0, hist("A", "e", "TRADES")),
        at(15_000, hist("A", "e", "TRADES")),
    ];
    assert!(violations(&rules, &edge, None).is_empty());
}
