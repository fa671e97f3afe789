//! Deterministic synthetic bars.
//!
//! Each instrument has a continuous price path `p(t) = price · exp(W(t))`, where `W` is a sum of
//! smoothly interpolated hash noise at time scales from 5 seconds to 4 years (amplitude ∝ √scale, so
//! it looks like a random walk at every bar size). `W` is a pure function of (seed salt, con id, t):
//! the same request always returns the same bars, a daily bar's open equals the first intraday bar's
//! open, and nothing depends on which requests came before.
//!
//! Bars follow the instrument's calendar: weekends, NYSE holidays (plus configured closures) and
//! hours outside the session have no bars; intraday bars are aligned to New York midnight and
//! clipped to the session (so a 1-hour RTH day starts with a 09:30–10:00 bar).

use ibconn_core::bar_size::BarSize;
use ibconn_core::date_format::DateFormat;
use ibconn_core::ib_duration::{DurationUnit, IbDuration};
use ibconn_core::message::{Bar, BarTime};
use ibconn_core::what_to_show::WhatToShow;

use crate::calendar::{self, Date, Zone, NEW_YORK, SECS_PER_DAY};
use crate::market::{Instrument, Market};
use crate::rng::{hash64, unit_f64};

/// Whether the sim synthesises bars of `what`. TWS serves more series (yields, fee rates, …);
/// the sim answers those as an invalid `whatToShow`, as it always has.
pub fn serves(what: WhatToShow) -> bool {
    matches!(
        what,
        WhatToShow::Trades
            | WhatToShow::Midpoint
            | WhatToShow::Bid
            | WhatToShow::Ask
            | WhatToShow::BidAsk
            | WhatToShow::AdjustedLast
            | WhatToShow::HistoricalVolatility
            | WhatToShow::OptionImpliedVolatility
    )
}

/// A wire `whatToShow` the sim serves (IB's spelling, any case), or `None`.
pub fn parse_what(s: &str) -> Option<WhatToShow> {
    WhatToShow::parse(s).filter(|w| serves(*w))
}

/// Everything that shapes the bars of one request, except the window.
#[derive(Debug, Clone, Copy)]
pub struct BarSpec<'a> {
    /// Calendar and extra holidays.
    pub market: &'a Market,
    /// The instrument.
    pub inst: &'a Instrument,
    /// Seed-derived salt of the price paths.
    pub salt: u64,
    /// Bar size.
    pub bar_size: BarSize,
    /// Regular trading hours only.
    pub use_rth: bool,
    /// Data type.
    pub what: WhatToShow,
    /// Intraday bar times: text (`YYYYMMDD HH:MM:SS America/New_York`) or epoch seconds.
    pub format_date: DateFormat,
    /// The current time (Unix seconds): no bar starts at or after it; the last bar is partial.
    pub now: i64,
}

/// Upper bound on bars per answer (the duration table keeps real requests far below it): what one
/// frame may carry, so a client decodes every answer the simulator sends.
pub const MAX_BARS: usize = ibconn_core::wire::MAX_REPEATED;

/// Start of the window `duration` before `end`. `D` counts trading sessions back (as IB does: "2 D"
/// on a Monday morning reaches back to Friday), `W` is 7 calendar days, `M`/`Y` calendar months.
pub fn window_start(spec: &BarSpec<'_>, end: i64, duration: IbDuration) -> i64 {
    let n = i64::from(duration.count());
    match duration.unit() {
        DurationUnit::Seconds => end - n,
        DurationUnit::Weeks => end - 7 * n * SECS_PER_DAY,
        DurationUnit::Months => calendar::minus_months(end, duration.count()),
        DurationUnit::Years => calendar::minus_months(end, duration.count().saturating_mul(12)),
        DurationUnit::Days => {
            let mut day = Zone::Us(NEW_YORK).to_local(end).div_euclid(SECS_PER_DAY);
            let (mut found, mut start) = (0, end - n * SECS_PER_DAY);
            for _ in 0..n.saturating_mul(3).saturating_add(14) {
                let first = spec
                    .market
                    .sessions(spec.inst, day, spec.use_rth)
                    .first()
                    .copied();
                if let Some((open, _)) = first.filter(|(open, _)| *open < end) {
                    found += 1;
                    start = open;
                    if found == n {
                        break;
                    }
                }
                day -= 1;
            }
            start
        }
    }
}

/// One bar slot: `[start, end)` in Unix seconds and the New York day it is labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    start: i64,
    end: i64,
    day: i64,
}

/// Bar slots whose start lies in `[from, to)` (intraday) or that overlap it (daily and longer).
fn slots(spec: &BarSpec<'_>, from: i64, to: i64) -> Vec<Slot> {
    let ny = Zone::Us(NEW_YORK);
    let first_day = ny.to_local(from).div_euclid(SECS_PER_DAY) - 1;
    let last_day = ny.to_local(to).div_euclid(SECS_PER_DAY) + 1;
    let mut out = Vec::new();
    match spec.bar_size {
        intraday if !intraday.is_daily_or_longer() => {
            let n = i64::from(intraday.seconds().max(1));
            for day in first_day..=last_day {
                let base = day * SECS_PER_DAY;
                if !spec.market.is_trading_day(spec.inst, day) {
                    continue;
                }
                for &(a, b) in spec.inst.hours.sessions(spec.use_rth) {
                    let (la, lb) = (base + i64::from(a) * 60, base + i64::from(b) * 60);
                    let mut g = base + (la - base).div_euclid(n) * n;
                    // New York local time is UTC − 4 h or − 5 h: grid points whose local start is
                    // before `from` − 5 h − n cannot start in `[from, to)`, and none from the first
                    // whose local start is at or after `to` − 4 h on. Skip them (on the grid)
                    // rather than convert every slot of three days.
                    let early = from - 5 * 3600 - n;
                    if g < early {
                        g += ((early - g) / n) * n;
                    }
                    while g < lb && out.len() < MAX_BARS {
                        if g.max(la) >= to - 4 * 3600 {
                            break;
                        }
                        let (s, e) = (ny.to_utc(g.max(la)), ny.to_utc((g + n).min(lb)));
                        if e > s && s >= from && s < to {
                            out.push(Slot {
                                start: s,
                                end: e,
                                day,
                            });
                        }
                        g += n;
                    }
                }
            }
        }
        _ => {
            let key = |day: i64| match spec.bar_size {
                BarSize::Week1 => (day + 3).div_euclid(7),
                BarSize::Month1 => {
                    let d = Date::from_days(day);
                    i64::from(d.year) * 12 + i64::from(d.month)
                }
                _ => day,
            };
            let pad = match spec.bar_size {
                BarSize::Week1 => 7,
                BarSize::Month1 => 31,
                _ => 0,
            };
            let mut current: Option<(i64, Slot)> = None;
            for day in first_day - pad..=last_day + pad {
                let sessions = spec.market.sessions(spec.inst, day, spec.use_rth);
                let (Some(first), Some(last)) = (sessions.first(), sessions.last()) else {
                    continue;
                };
                let k = key(day);
                match &mut current {
                    Some((ck, slot)) if *ck == k => slot.end = last.1,
                    _ => {
                        if let Some((_, slot)) = current.take() {
                            out.push(slot);
                        }
                        current = Some((
                            k,
                            Slot {
                                start: first.0,
                                end: last.1,
                                day,
                            },
                        ));
                    }
                }
            }
            out.extend(current.map(|(_, s)| s));
            out.retain(|s| s.start < to && s.end > from);
        }
    }
    out
}

/// The bars of the window `[from, to)`, oldest first. Empty if the window holds no session, lies
/// before the instrument's head timestamp, after its last trade date or in the future.
pub fn bars(spec: &BarSpec<'_>, from: i64, to: i64) -> Vec<Bar> {
    let to = to.min(spec.now.saturating_add(1));
    let end = spec.inst.trading_end().unwrap_or(i64::MAX);
    slots(spec, from, to)
        .into_iter()
        .filter(|s| s.end > spec.inst.head_timestamp && s.start < spec.now && s.start < end)
        .take(MAX_BARS)
        .map(|s| make_bar(spec, s))
        .collect()
}

/// The intraday bar of the slot `[start, end)` as [`bars`] computes it, for a caller that knows
/// the slot lies in a session (streaming's 5-second bars: [`bars`] would scan days of slots).
pub(crate) fn bar_of_slot(spec: &BarSpec<'_>, start: i64, end: i64) -> Bar {
    let day = Zone::Us(NEW_YORK).to_local(start).div_euclid(SECS_PER_DAY);
    make_bar(spec, Slot { start, end, day })
}

/// The bar that contains `spec.now` (a keep-up-to-date update), if the market is open.
pub fn forming_bar(spec: &BarSpec<'_>) -> Option<Bar> {
    // An intraday slot is at most one bar long, so it began within one bar before `now`; a
    // daily or longer bar's session may have begun the evening before (futures, forex).
    let bar = calendar::bar_secs(spec.bar_size);
    let back = if spec.bar_size.is_daily_or_longer() {
        bar + 2 * SECS_PER_DAY
    } else {
        bar + 1
    };
    slots(spec, spec.now - back, spec.now + 1)
        .into_iter()
        .rev()
        .find(|s| s.start <= spec.now && spec.now < s.end)
        .map(|s| make_bar(spec, s))
}

const SCALES_SECS: [f64; 10] = [
    5.0,
    60.0,
    900.0,
    3_600.0,
    21_600.0,
    86_400.0,
    604_800.0,
    2_592_000.0,
    31_557_600.0,
    126_230_400.0,
];

fn noise(key: u64, x: f64) -> f64 {
    let i = x.floor();
    let f = x - i;
    let i = i as i64;
    let val = |k: i64| unit_f64(hash64(&[key, k as u64])) * 2.0 - 1.0;
    let (a, b) = (val(i), val(i + 1));
    a + (b - a) * (f * f * (3.0 - 2.0 * f))
}

/// Log-price offset of a path at `t`.
fn log_path(salt: u64, con_id: i32, stream: u64, volatility: f64, t: f64) -> f64 {
    let per_sqrt_sec = volatility / SCALES_SECS[8].sqrt();
    // `hash64(&[salt, con_id, stream, k])` for every scale `k`: the three common words are
    // folded once (hash64 folds word by word), then each key costs one mix.
    let prefix = hash64(&[salt, con_id as u64, stream]);
    SCALES_SECS
        .iter()
        .enumerate()
        .map(|(k, &scale)| {
            let key = crate::rng::hash64_after(prefix, k as u64);
            per_sqrt_sec * scale.sqrt() * 0.7 * noise(key, t / scale)
        })
        .sum()
}

/// `x` rounded to a multiple of `tick` (and to the tick's decimals, so prices print cleanly).
pub(crate) fn round_to_tick(x: f64, tick: f64) -> f64 {
    if tick.is_nan() || tick <= 0.0 || !x.is_finite() {
        return x;
    }
    let q = (x / tick).round() * tick;
    let decimals = (-tick.log10()).ceil().clamp(0.0, 10.0) as i32;
    let p = 10f64.powi(decimals);
    (q * p).round() / p
}

/// The instrument's price at `t` (Unix seconds), unrounded: the path every TRADES, MIDPOINT, BID
/// and ASK bar of it samples (BID and ASK a tick below and above). Streaming ticks sample it at
/// whole seconds, which every bar of 8 seconds or less samples too.
pub(crate) fn path_price(salt: u64, inst: &Instrument, t: i64) -> f64 {
    inst.price * log_path(salt, inst.con_id, 0, inst.volatility, t as f64).exp()
}

fn make_bar(spec: &BarSpec<'_>, slot: Slot) -> Bar {
    let inst = spec.inst;
    let (s, e) = (slot.start, slot.end.min(spec.now).max(slot.start));
    let vol_stream = matches!(
        spec.what,
        WhatToShow::HistoricalVolatility | WhatToShow::OptionImpliedVolatility
    );
    let (base, stream, sigma) = if vol_stream {
        (0.25, 1, 1.5)
    } else {
        (inst.price, 0, inst.volatility)
    };
    let price = |t: i64| base * log_path(spec.salt, inst.con_id, stream, sigma, t as f64).exp();
    const SAMPLES: i64 = 8;
    let samples: Vec<f64> = (0..=SAMPLES)
        .map(|k| price(s + (e - s) * k / SAMPLES))
        .collect();
    let (open, close) = (samples[0], samples[SAMPLES as usize]);
    let hi = samples.iter().copied().fold(f64::MIN, f64::max);
    let lo = samples.iter().copied().fold(f64::MAX, f64::min);
    let h = |tag: u64| unit_f64(hash64(&[spec.salt, inst.con_id as u64, s as u64, tag]));
    let wick = sigma / SCALES_SECS[8].sqrt() * ((e - s).max(1) as f64).sqrt() * 0.3;
    let (hi, lo) = (hi * (1.0 + wick * h(1)), lo * (1.0 - wick * h(2)));
    let tick = if vol_stream { 0.0001 } else { inst.min_tick };
    let half_spread = if vol_stream { 0.0 } else { tick };
    let r = |x: f64| round_to_tick(x, tick);
    let (open, high, low, close) = match spec.what {
        WhatToShow::Bid => (
            open - half_spread,
            hi - half_spread,
            lo - half_spread,
            close - half_spread,
        ),
        WhatToShow::Ask => (
            open + half_spread,
            hi + half_spread,
            lo + half_spread,
            close + half_spread,
        ),
        WhatToShow::BidAsk => (
            open - half_spread,
            hi + half_spread,
            lo - half_spread,
            close + half_spread,
        ),
        _ => (open, hi, lo, close),
    };
    let (open, high, low, close) = (r(open), r(high), r(low), r(close));
    let trades = matches!(spec.what, WhatToShow::Trades | WhatToShow::AdjustedLast)
        && inst.sec_type != "CASH";
    let (volume, wap, count) = if !trades {
        (-1.0, -1.0, -1)
    } else if inst.sec_type == "IND" {
        (0.0, close, 0)
    } else {
        let active = (e - s).max(1) as f64;
        let volume = (inst.volume_per_minute / 60.0 * active * (0.5 + h(3))).round();
        let count = (volume / 100.0).ceil().clamp(1.0, f64::from(i32::MAX)) as i32;
        (volume, r((high + low + close) / 3.0), count)
    };
    let date = match spec.format_date {
        _ if spec.bar_size.is_daily_or_longer() => {
            BarTime::parse(&Date::from_days(slot.day).yyyymmdd())
        }
        DateFormat::Text => BarTime::Text(calendar::format_new_york(s)),
        DateFormat::Epoch => BarTime::Epoch(s),
    };
    Bar {
        date,
        open,
        high: high.max(open).max(close),
        low: low.min(open).min(close),
        close,
        volume,
        wap,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::utc;

    fn spec<'a>(
        m: &'a Market,
        symbol: &str,
        bar_size: BarSize,
        rth: bool,
        now: i64,
    ) -> BarSpec<'a> {
        let inst = m.instruments().iter().find(|i| i.symbol == symbol).unwrap();
        BarSpec {
            market: m,
            inst,
            salt: 7,
            bar_size,
            use_rth: rth,
            what: WhatToShow::Trades,
            format_date: DateFormat::Epoch,
            now,
        }
    }

    #[test]
    fn hourly_rth_bars_follow_the_session_and_dst() {
        let m = Market::builtin();
        let now = utc(2026, 1, 10, 0, 0, 0);
        let s = spec(&m, "AAPL", BarSize::Hour1, true, now);
        // Monday 2026-01-05 in winter: 09:30 NY = 14:30 UTC, bars 09:30, 10:00, …, 15:00.
        let b = bars(&s, utc(2026, 1, 5, 0, 0, 0), utc(2026, 1, 6, 0, 0, 0));
        let starts: Vec<i64> = b.iter().map(|b| b.date.epoch_seconds().unwrap()).collect();
        assert_eq!(starts.len(), 7);
        assert_eq!(starts[0], utc(2026, 1, 5, 14, 30, 0));
        assert_eq!(starts[1], utc(2026, 1, 5, 15, 0, 0));
        assert_eq!(starts[6], utc(2026, 1, 5, 20, 0, 0));
        // Summer: 09:30 NY = 13:30 UTC.
        let now = utc(2026, 7, 10, 0, 0, 0);
        let s = spec(&m, "AAPL", BarSize::Hour1, true, now);
        let b = bars(&s, utc(2026, 7, 6, 0, 0, 0), utc(2026, 7, 7, 0, 0, 0));
        assert_eq!(b[0].date, BarTime::Epoch(utc(2026, 7, 6, 13, 30, 0)));
        for bar in &b {
            assert!(bar.low <= bar.open && bar.open <= bar.high);
            assert!(bar.low <= bar.close && bar.close <= bar.high);
            assert!(bar.volume > 0.0 && bar.count > 0);
        }
    }

    #[test]
    fn weekends_and_holidays_have_no_bars() {
        let m = Market::builtin();
        let now = utc(2026, 2, 1, 0, 0, 0);
        let s = spec(&m, "SPY", BarSize::Day1, true, now);
        // 2026-01-17/18 weekend, 2026-01-19 MLK day.
        let b = bars(&s, utc(2026, 1, 15, 0, 0, 0), utc(2026, 1, 21, 0, 0, 0));
        let dates: Vec<String> = b.iter().map(|b| b.date.to_string()).collect();
        assert_eq!(dates, ["20260115", "20260116", "20260120"]);
        // FX trades on MLK day.
        let fx = spec(&m, "EUR", BarSize::Day1, true, now);
        let b = bars(&fx, utc(2026, 1, 19, 5, 0, 0), utc(2026, 1, 19, 20, 0, 0));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].volume, -1.0);
    }

    #[test]
    fn futures_and_fx_trade_from_the_evening_before_with_a_break() {
        let m = Market::builtin();
        let now = utc(2026, 11, 12, 0, 0, 0);
        let es = m
            .listed(now)
            .into_iter()
            .find(|i| i.local_symbol == "ESZ6")
            .unwrap();
        let s = BarSpec {
            inst: &es,
            ..spec(&m, "AAPL", BarSize::Hour1, false, now)
        };
        // Friday 2026-11-06 to Monday 2026-11-09, New York (UTC−5).
        let b = bars(&s, utc(2026, 11, 6, 0, 0, 0), utc(2026, 11, 9, 12, 0, 0));
        let starts: Vec<i64> = b.iter().map(|b| b.date.epoch_seconds().unwrap()).collect();
        // Friday's last bar starts 16:00 and the week's trading ends 17:00 (22:00 UTC) …
        assert!(starts.contains(&utc(2026, 11, 6, 21, 0, 0)));
        assert!(!starts.contains(&utc(2026, 11, 6, 22, 0, 0)));
        // … and resumes Sunday 18:00 (23:00 UTC); nothing on Saturday.
        let weekend: Vec<&i64> = starts
            .iter()
            .filter(|&&t| t >= utc(2026, 11, 6, 22, 0, 0) && t < utc(2026, 11, 8, 23, 0, 0))
            .collect();
        assert!(weekend.is_empty(), "{weekend:?}");
        assert!(starts.contains(&utc(2026, 11, 8, 23, 0, 0)));
        // The daily 17:00–18:00 break: Monday has bars at 16:00 but none at 17:00 (Tuesday's
        // session opens at 18:00).
        let b = bars(&s, utc(2026, 11, 9, 12, 0, 0), utc(2026, 11, 10, 12, 0, 0));
        let starts: Vec<i64> = b.iter().map(|b| b.date.epoch_seconds().unwrap()).collect();
        assert!(starts.contains(&utc(2026, 11, 9, 21, 0, 0)));
        assert!(!starts.contains(&utc(2026, 11, 9, 22, 0, 0)));
        assert!(starts.contains(&utc(2026, 11, 9, 23, 0, 0)));
        // FX: Sunday 17:00 (22:00 UTC) opens the week.
        let fx = spec(&m, "EUR", BarSize::Hour1, false, now);
        let b = bars(&fx, utc(2026, 11, 8, 0, 0, 0), utc(2026, 11, 9, 0, 0, 0));
        assert_eq!(b[0].date, BarTime::Epoch(utc(2026, 11, 8, 22, 0, 0)));
        assert_eq!(b.len(), 2);
        // A future has no bars after its last trade date.
        let after = bars(&s, utc(2026, 12, 21, 0, 0, 0), utc(2026, 12, 22, 0, 0, 0));
        let late = BarSpec {
            now: utc(2027, 1, 5, 0, 0, 0),
            ..s
        };
        assert!(after.is_empty());
        assert!(bars(
            &late,
            utc(2026, 12, 21, 0, 0, 0),
            utc(2026, 12, 22, 0, 0, 0)
        )
        .is_empty());
        assert!(!bars(
            &late,
            utc(2026, 12, 17, 0, 0, 0),
            utc(2026, 12, 18, 0, 0, 0)
        )
        .is_empty());
    }

    #[test]
    fn same_request_same_bars_and_consistent_across_sizes() {
        let m = Market::builtin();
        let now = utc(2026, 1, 10, 0, 0, 0);
        let hourly = spec(&m, "MSFT", BarSize::Hour1, true, now);
        let daily = spec(&m, "MSFT", BarSize::Day1, true, now);
        let (from, to) = (utc(2026, 1, 5, 0, 0, 0), utc(2026, 1, 6, 0, 0, 0));
        assert_eq!(bars(&hourly, from, to), bars(&hourly, from, to));
        let h = bars(&hourly, from, to);
        let d = bars(&daily, from, to);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].open, h[0].open, "daily open = first hourly open");
        assert_eq!(
            d[0].close,
            h[h.len() - 1].close,
            "daily close = last hourly close"
        );
        let other_salt = BarSpec { salt: 8, ..hourly };
        assert_ne!(bars(&other_salt, from, to), h);
    }

    #[test]
    fn extended_hours_format_date_1_and_partial_last_bar() {
        let m = Market::builtin();
        // Monday 2026-01-05 10:15 NY.
        let now = utc(2026, 1, 5, 15, 15, 0);
        let mut s = spec(&m, "AAPL", BarSize::Min30, false, now);
        s.format_date = DateFormat::Text;
        let b = bars(&s, utc(2026, 1, 5, 0, 0, 0), now);
        assert_eq!(b[0].date.to_string(), "20260105 04:00:00 America/New_York");
        assert_eq!(
            b.last().unwrap().date.to_string(),
            "20260105 10:00:00 America/New_York"
        );
        assert_eq!(b.len(), 13);
        let forming = forming_bar(&s).unwrap();
        assert_eq!(forming, *b.last().unwrap());
    }

    #[test]
    fn day_durations_count_sessions() {
        let m = Market::builtin();
        // Monday 2026-01-12 12:00 NY; "2 D" reaches back to Friday's open.
        let end = utc(2026, 1, 12, 17, 0, 0);
        let s = spec(&m, "AAPL", BarSize::Hour1, true, end);
        let dur = "2 D".parse::<IbDuration>().unwrap();
        assert_eq!(window_start(&s, end, dur), utc(2026, 1, 9, 14, 30, 0));
        let dur = "1 W".parse::<IbDuration>().unwrap();
        assert_eq!(window_start(&s, end, dur), utc(2026, 1, 5, 17, 0, 0));
    }

    #[test]
    fn weekly_and_monthly_bars() {
        let m = Market::builtin();
        let now = utc(2026, 3, 1, 0, 0, 0);
        let w = spec(&m, "AAPL", BarSize::Week1, true, now);
        let b = bars(&w, utc(2026, 1, 1, 0, 0, 0), utc(2026, 2, 1, 0, 0, 0));
        let dates: Vec<String> = b.iter().map(|b| b.date.to_string()).collect();
        assert_eq!(
            dates,
            ["20251229", "20260105", "20260112", "20260120", "20260126"],
            "a week is labelled with its first trading day"
        );
        let mo = spec(&m, "AAPL", BarSize::Month1, true, now);
        let b = bars(&mo, utc(2026, 1, 1, 0, 0, 0), utc(2026, 3, 1, 0, 0, 0));
        let dates: Vec<String> = b.iter().map(|b| b.date.to_string()).collect();
        assert_eq!(dates, ["20260102", "20260202"]);
    }
}
