//! Level-1 quotes, trades and 5-second bars for streaming, from the same deterministic price path
//! as the historical bars ([`crate::bars`]): a pure function of (seed salt, instrument, time), so
//! a stream's bytes depend only on the seed, the instrument and the instants it is served at.
//!
//! # Consistency with the bars
//!
//! Every price is the path sampled at a whole second `s`: the last trade is `r(p(s))`, the bid
//! `r(p(s) − tick)`, the ask `r(p(s) + tick)` and the midpoint `r(p(s))`, where `r` rounds to the
//! instrument's minimum tick — exactly the values a TRADES, BID, ASK or MIDPOINT bar samples at
//! `s`. A bar of 8 seconds or less samples every whole second it spans, and rounding is
//! monotone, so **a tick lies within the 1-second and 5-second bar of its time** (the bars
//! real-time bars and tick-by-tick data are compared with). Longer bars sample their span at 8
//! points only (plus a seeded wick), so a tick between two of their samples may poke out of them
//! by a tick or two (for AAPL over a day: about 0.3 % of trades outside their 1-minute bar, 0.1 %
//! outside their 30-second bar); the sim promises the 1- and 5-second bars only. Widening every
//! bar enough to hold them would change the bars every other test and fixture knows.
//!
//! Trade sizes split the volume of the 5-second TRADES bar over its seconds, so the last sizes of
//! one real-time bar add up to its volume. The day's volume (tick 8) is the volume of the forming
//! daily TRADES bar (extended hours) at that second, as `reqHistoricalData` of `1 day` has it.
//! Quote sizes are seeded round lots that change on every quote step (the source of IB's
//! size-only `tickSize` 0/3 updates).

use ibconn_core::bar_size::BarSize;
use ibconn_core::date_format::DateFormat;
use ibconn_core::message::Bar;
use ibconn_core::what_to_show::WhatToShow;

use crate::bars::{self, BarSpec};
use crate::calendar::{Zone, NEW_YORK, SECS_PER_DAY};
use crate::market::{Instrument, Market};
use crate::rng::hash64;

/// How far back the delayed (15-minute) market-data types 3 and 4 look: IB's delay for US
/// stocks and futures.
pub const DELAYED_SECS: i64 = 15 * 60;

/// One quote: the top of the book at a whole second, with seeded sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quote {
    /// The second it belongs to (Unix seconds).
    pub time: i64,
    /// Bid price.
    pub bid: f64,
    /// Ask price.
    pub ask: f64,
    /// Midpoint (the path rounded to the tick; the bid and ask sit one tick either side).
    pub mid: f64,
    /// Bid size.
    pub bid_size: f64,
    /// Ask size.
    pub ask_size: f64,
}

/// One trade: the last price and size at a whole second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    /// Unix seconds.
    pub time: i64,
    /// Price.
    pub price: f64,
    /// Size (0 for an index, whose bars have no volume).
    pub size: f64,
}

/// The streaming view of one instrument: quotes, trades, sessions and bars, all from the path of
/// `salt`.
#[derive(Debug, Clone, Copy)]
pub struct TickSource<'a> {
    /// Calendar.
    pub market: &'a Market,
    /// The instrument.
    pub inst: &'a Instrument,
    /// The gateway's market salt (the same one its bars use).
    pub salt: u64,
}

impl<'a> TickSource<'a> {
    fn spec(&self, bar_size: BarSize, use_rth: bool, what: WhatToShow, now: i64) -> BarSpec<'a> {
        BarSpec {
            market: self.market,
            inst: self.inst,
            salt: self.salt,
            bar_size,
            use_rth,
            what,
            format_date: DateFormat::Epoch,
            now,
        }
    }

    fn tick(&self) -> f64 {
        self.inst.min_tick
    }

    /// Whether the instrument has quotes (an index has only a last price).
    pub fn has_quotes(&self) -> bool {
        self.inst.sec_type != "IND"
    }

    /// Whether the instrument trades (forex has quotes only: IB serves no TRADES for it).
    pub fn has_trades(&self) -> bool {
        WhatToShow::Trades.is_served_for(&self.inst.sec_type)
    }

    /// Whether `t` (Unix seconds) lies in a session: every session (`regular_only == false`,
    /// as market data flows) or regular hours only; never before the head timestamp or after the
    /// last trade date.
    pub fn is_open(&self, t: i64, regular_only: bool) -> bool {
        let day = day_of(t, t);
        (day - 1..=day + 1).any(|d| {
            self.market
                .sessions(self.inst, d, regular_only)
                .iter()
                .any(|&(a, b)| a <= t && t < b && self.tradable(t))
        })
    }

    fn tradable(&self, t: i64) -> bool {
        t >= self.inst.head_timestamp && self.inst.trading_end().is_none_or(|end| t < end)
    }

    /// The first second at or after `t` at which [`TickSource::is_open`] holds, looking two
    /// weeks ahead; `None` if the instrument never trades again (an expired future).
    pub fn next_open(&self, t: i64, regular_only: bool) -> Option<i64> {
        if self.is_open(t, regular_only) {
            return Some(t);
        }
        let day = day_of(t, t);
        let end = self.inst.trading_end().unwrap_or(i64::MAX);
        (day - 1..=day + 15)
            .flat_map(|d| self.market.sessions(self.inst, d, regular_only))
            .map(|(a, _)| a.max(self.inst.head_timestamp))
            .filter(|&a| a > t && a < end)
            .min()
    }

    /// The latest second at or before `t` at which the session (every session) was open, within
    /// two weeks back: the instant a frozen quote or a snapshot in a closed market shows.
    pub fn last_open_at_or_before(&self, t: i64) -> Option<i64> {
        if self.is_open(t, false) {
            return Some(t);
        }
        let day = day_of(t, t);
        (day - 15..=day + 1)
            .flat_map(|d| self.market.sessions(self.inst, d, false))
            .filter(|&(a, _)| a <= t && a >= self.inst.head_timestamp)
            .map(|(_, b)| (b - 1).min(t))
            .filter(|&s| self.tradable(s))
            .max()
    }

    /// The quote at `ms` (Unix milliseconds, a quote step): the prices of its whole second, and
    /// sizes seeded by the step, so they change between the steps of one second. `None` when the
    /// instrument has no quotes.
    pub fn quote_at_ms(&self, ms: i64) -> Option<Quote> {
        if !self.has_quotes() {
            return None;
        }
        let sec = ms.div_euclid(1000);
        let p = bars::path_price(self.salt, self.inst, sec);
        let r = |x: f64| bars::round_to_tick(x, self.tick());
        let lot = |tag: u64| {
            let h = hash64(&[self.salt, self.inst.con_id as u64, ms as u64, tag]);
            100.0 * (1 + h % 20) as f64
        };
        Some(Quote {
            time: sec,
            bid: r(p - self.tick()),
            ask: r(p + self.tick()),
            mid: r(p),
            bid_size: lot(0x51),
            ask_size: lot(0x52),
        })
    }

    /// The trade of second `sec`, if the instrument trades and a session is open then.
    pub fn trade(&self, sec: i64) -> Option<Trade> {
        if !self.has_trades() {
            return None;
        }
        let start = sec - sec.rem_euclid(5);
        let bar = self.bar5(WhatToShow::Trades, false, start)?;
        let price = bars::round_to_tick(bars::path_price(self.salt, self.inst, sec), self.tick());
        let volume = bar.volume.max(0.0);
        // Split the bar's volume over its five seconds, seeded weights 1–4; the last second
        // takes the remainder so the sizes add up to the bar's volume.
        let weight = |i: i64| {
            1 + hash64(&[
                self.salt,
                self.inst.con_id as u64,
                start as u64,
                0x70,
                i as u64,
            ]) % 4
        };
        let total: u64 = (0..5).map(weight).sum();
        let share = |i: i64| (volume * weight(i) as f64 / total as f64).floor();
        let i = sec - start;
        let size = if i == 4 {
            volume - (0..4).map(share).sum::<f64>()
        } else {
            share(i)
        };
        Some(Trade {
            time: sec,
            price,
            size,
        })
    }

    /// The complete 5-second bar of `what` starting at `start` (a multiple of 5 s), as
    /// `reqHistoricalData` of `5 secs` answers it once the bar has ended; `None` outside the
    /// session (`use_rth`: regular hours only).
    pub fn bar5(&self, what: WhatToShow, use_rth: bool, start: i64) -> Option<Bar> {
        // Sessions start and end on whole minutes, so a 5-second slot is never clipped: the
        // slot exists where a session holds its start, under `bars`' filters.
        let day = day_of(start, start);
        let in_session = (day - 1..=day + 1).any(|d| {
            self.market
                .sessions(self.inst, d, use_rth)
                .iter()
                .any(|&(a, b)| a <= start && start < b)
        });
        let end = start + 5;
        let traded =
            end > self.inst.head_timestamp && self.inst.trading_end().is_none_or(|t| start < t);
        let spec = self.spec(BarSize::Sec5, use_rth, what, end);
        (in_session && traded && start.rem_euclid(5) == 0)
            .then(|| bars::bar_of_slot(&spec, start, end))
    }

    /// The day's volume at `sec`: the forming daily TRADES bar's (every session); `None` for an
    /// instrument without volume.
    pub fn day_volume(&self, sec: i64) -> Option<f64> {
        if !self.has_trades() || self.inst.sec_type == "IND" {
            return None;
        }
        let spec = self.spec(BarSize::Day1, false, WhatToShow::Trades, sec);
        bars::forming_bar(&spec)
            .map(|b| b.volume)
            .filter(|v| *v >= 0.0)
    }

    /// IB's close (tick 9) at `t`: the close of the last regular session that ended at or before
    /// `t`, as the daily MIDPOINT/TRADES bar has it.
    pub fn prior_close(&self, t: i64) -> Option<f64> {
        let today = day_of(t, t);
        (today - 15..=today + 1).rev().find_map(|d| {
            let sessions = self.market.sessions(self.inst, d, true);
            let (&(open, _), &(_, close)) = (sessions.first()?, sessions.last()?);
            if close > t || close <= self.inst.head_timestamp {
                return None;
            }
            let spec = self.spec(BarSize::Day1, true, WhatToShow::Midpoint, close);
            bars::bars(&spec, open, open + 1).first().map(|b| b.close)
        })
    }
}

/// The New York day number of `t` (the midpoint of `[a, b]` when given a session).
fn day_of(a: i64, b: i64) -> i64 {
    Zone::Us(NEW_YORK)
        .to_local(a + (b - a) / 2)
        .div_euclid(SECS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::utc;

    /// The 5-second bar streaming builds directly is the one `bars` finds by scanning, at
    /// session edges too (stocks' extended and regular hours, futures' daily break, forex's
    /// weekly open, a holiday).
    #[test]
    fn five_second_bars_match_the_scanning_path() {
        let m = Market::builtin();
        let es = m
            .listed(utc(2026, 1, 6, 0, 0, 0))
            .into_iter()
            .find(|i| i.symbol == "ES")
            .unwrap();
        let by = |s: &str| {
            m.instruments()
                .iter()
                .find(|i| i.symbol == s)
                .unwrap()
                .clone()
        };
        let edges = [
            utc(2026, 1, 6, 8, 58, 0), // AAPL: 04:00 New York opens the extended session
            utc(2026, 1, 6, 14, 29, 0), // 09:30 the regular one
            utc(2026, 1, 6, 20, 59, 0), // 16:00
            utc(2026, 1, 7, 0, 59, 0), // 20:00 the extended one closes
            utc(2026, 1, 6, 21, 59, 0), // futures' 17:00–18:00 break, forex's 17:00 roll
            utc(2026, 1, 11, 21, 59, 0), // Sunday 17:00: forex opens, 18:00 futures
            utc(2026, 1, 19, 14, 29, 0), // Martin Luther King day
        ];
        for inst in [by("AAPL"), by("EUR"), by("SPX"), es] {
            let src = TickSource {
                market: &m,
                inst: &inst,
                salt: 9,
            };
            for &edge in &edges {
                for start in (edge - 600..edge + 600).step_by(5) {
                    for (what, rth) in [(WhatToShow::Trades, false), (WhatToShow::Bid, true)] {
                        let spec = src.spec(BarSize::Sec5, rth, what, start + 5);
                        let scanned = bars::bars(&spec, start, start + 1).into_iter().next();
                        assert_eq!(
                            src.bar5(what, rth, start),
                            scanned,
                            "{} at {start}",
                            inst.symbol
                        );
                    }
                }
            }
        }
    }
}
