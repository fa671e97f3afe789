//! The simulator's contract details agree with the bars it serves: a backfill that skips the
//! chunks the details call closed (core's [`SessionCalendar`], weekly pattern applied to the
//! past) loses no bar, for every kind of hours the sim models, with the details asked on
//! different days (a plain week, Christmas week, the week of the spring DST change).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;

use ibconn_core::backfill::SessionCalendar;
use ibconn_core::bar_size::BarSize;
use ibconn_core::date_format::DateFormat;
use ibconn_core::message::{BarTime, Contract};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::bars::{bars, BarSpec};
use ibconn_sim::calendar::utc;
use ibconn_sim::{Instrument, Market};

/// Monday 2025-10-27 to Monday 2025-12-01: the autumn DST change and Thanksgiving (a holiday
/// outside every window the details list).
const FROM: i64 = 1_761_523_200;
const TO: i64 = 1_764_547_200;
const CELL: i64 = 3_600;

/// The instruments to check: one of each kind of hours the built-in market has, and a future.
fn instruments(market: &Market, now: i64) -> Vec<Instrument> {
    let mut out: Vec<Instrument> = Vec::new();
    for inst in market.instruments() {
        if inst.head_timestamp < FROM && !out.iter().any(|o| o.hours == inst.hours) {
            out.push(inst.clone());
        }
    }
    let es = Contract {
        symbol: "ES".into(),
        sec_type: "FUT".into(),
        ..Contract::default()
    };
    if let Some(fut) = market
        .find_all(&es, now)
        .into_iter()
        .find(|i| i.head_timestamp < FROM)
    {
        out.push(fut);
    }
    out
}

/// One-hour cells holding bars of `inst` in `[FROM, TO)` (30-second bars: sessions open on whole
/// minutes, so they fill the same cells as 5-second ones, at a sixth of the work).
fn cells_with_bars(market: &Market, inst: &Instrument, use_rth: bool) -> BTreeSet<i64> {
    let spec = BarSpec {
        market,
        inst,
        salt: 7,
        bar_size: BarSize::Sec30,
        use_rth,
        what: WhatToShow::Midpoint,
        format_date: DateFormat::Epoch,
        now: utc(2026, 1, 1, 0, 0, 0),
    };
    let mut cells = BTreeSet::new();
    for week in (FROM..TO).step_by(7 * 86_400) {
        for bar in bars(&spec, week, (week + 7 * 86_400).min(TO)) {
            let BarTime::Epoch(t) = bar.date else {
                panic!("epoch bar times asked: {:?}", bar.date);
            };
            cells.insert(t - t.rem_euclid(CELL));
        }
    }
    cells
}

#[test]
fn no_bar_lies_in_a_chunk_the_contract_details_call_closed() {
    let market = Market::builtin();
    let asked_on = [
        utc(2026, 1, 6, 15, 0, 0),
        utc(2025, 12, 22, 15, 0, 0),
        utc(2026, 3, 5, 15, 0, 0),
    ];
    let all: Vec<i64> = (FROM..TO).step_by(CELL as usize).collect();
    let mut checked = 0;
    let mut kinds = Vec::new();
    for inst in instruments(&market, asked_on[0]) {
        for use_rth in [false, true] {
            let with_bars = cells_with_bars(&market, &inst, use_rth);
            assert!(!with_bars.is_empty(), "{} rth {use_rth}", inst.symbol);
            kinds.push(format!("{}/{:?}", inst.symbol, inst.hours));
            for now in asked_on {
                let (_, details) = market.contract_details(&inst, now);
                let cal = SessionCalendar::from_details(&details, use_rth).unwrap();
                let open: BTreeSet<i64> = all
                    .iter()
                    .copied()
                    .filter(|&c| cal.may_hold_bars(c, c + CELL, BarSize::Sec5))
                    .collect();
                let lost: Vec<_> = with_bars.difference(&open).collect();
                assert!(
                    lost.is_empty(),
                    "{} ({:?}) rth {use_rth}, details of {now}: cells with bars called closed: \
                     {lost:?}\n{}",
                    inst.symbol,
                    inst.hours,
                    if use_rth {
                        &details.liquid_hours
                    } else {
                        &details.trading_hours
                    }
                );
                // The filter saves requests: every instrument the sim has closes some time.
                assert!(open.len() < all.len(), "{} rth {use_rth}", inst.symbol);
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * 2 * 3, "{checked}: {kinds:?}");
}
