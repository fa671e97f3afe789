//! When a contract trades, from its contract details: which chunks of a backfill can hold bars.
//!
//! IB's `tradingHours` / `liquidHours` list dated sessions for about a week around today only
//! (`docs/ib-facts.md#trading-hours`), while a backfill reaches into the past. So the listing is
//! turned into a **weekly pattern**: for each weekday, the sessions (local wall-clock times in the
//! contract's `timeZoneId`) that start on it, applied to every date; a date the listing names
//! `CLOSED` is closed. The pattern errs towards open, never towards closed:
//!
//! - a weekday's sessions are the union of those listed for it; when every session lies within
//!   one calendar day (stocks, indices), Monday to Friday share the union of all of theirs, so a
//!   holiday or an early close inside IB's window shortens no other week;
//! - a weekday listed only as `CLOSED` is closed if it is a Saturday or Sunday, or closed on two
//!   listed dates; a lone closed weekday is a holiday: that date is closed, other weeks unknown;
//! - a Friday (or Saturday) inside the listing that a listed session runs into but on which none
//!   starts, followed by a closed weekend day, starts none (futures and FX: the week's last
//!   session opens Thursday evening);
//! - an unknown weekday (not listed) counts as open all day (and on into the next day as far as
//!   the longest listed session runs), and so does any date the zone table cannot convert.
//!
//! Past holidays are unknown: their chunks are still asked (and come back empty). Session starts
//! move back to the start of the bar holding them (bars longer than a minute may be labelled
//! before the opening).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::bar_size::BarSize;
use crate::civil::{weekday, SECS_PER_DAY};
use crate::message::ContractDetails;
use crate::trading_hours::{ParseTradingHoursError, TradingHours};
use crate::zone::Zone;

/// Minutes in a day.
const DAY_MINUTES: i64 = 24 * 60;

/// The largest UTC offset of any zone, seconds (bounds the local days a UTC span can touch).
const MAX_OFFSET: i64 = 15 * 3600;

/// Which of the contract's hour lists a backfill follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoursList {
    /// `tradingHours`: every session, extended hours included (`useRTH=0`).
    TradingHours,
    /// `liquidHours`: regular trading hours (`useRTH=1`).
    LiquidHours,
}

impl HoursList {
    /// The list `use_rth` requests follow.
    pub fn for_rth(use_rth: bool) -> Self {
        if use_rth {
            Self::LiquidHours
        } else {
            Self::TradingHours
        }
    }

    /// IB's field name.
    pub fn ib_name(self) -> &'static str {
        match self {
            Self::TradingHours => "tradingHours",
            Self::LiquidHours => "liquidHours",
        }
    }
}

/// Why a backfill asks every chunk rather than only those of open sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoSessions {
    /// The caller turned the filter off.
    #[error("session filtering is turned off")]
    Disabled,
    /// Daily and longer bars: a chunk spans many sessions anyway.
    #[error("daily and longer bars are not filtered")]
    DailyBars,
    /// No contract details were looked up.
    #[error("no contract details")]
    NoDetails,
    /// The contract's `timeZoneId` is not in the zone table ([`crate::zone`]).
    #[error("unknown time zone {zone:?}")]
    UnknownZone {
        /// The name IB sent.
        zone: String,
    },
    /// The hour list is empty.
    #[error("the contract details have no {hours}")]
    NoHours {
        /// The list (`tradingHours` or `liquidHours`).
        hours: &'static str,
    },
    /// The hour list is in neither of IB's formats.
    #[error("unreadable {hours}: {detail}")]
    BadHours {
        /// The list.
        hours: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// Several contracts matched and their hours differ.
    #[error("{matches} matching contracts with different hours")]
    Ambiguous {
        /// How many matched.
        matches: usize,
    },
}

/// Whether a backfill skips the chunks of closed sessions, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SessionUse {
    /// Not known yet: the contract details have not arrived.
    Pending,
    /// Chunks that meet no open session are not asked.
    Applied {
        /// The zone the hours are in (IANA name).
        zone: &'static str,
        /// The list followed.
        hours: HoursList,
    },
    /// Every chunk is asked.
    Off(NoSessions),
}

/// What a weekday's pattern says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Day {
    /// Not known: open all day, and as long after as the longest listed session runs.
    Unknown,
    /// No session starts on it.
    Closed,
    /// Sessions starting on it, `[start, end)` minutes after its local midnight (an end past
    /// 1440 lies on a later day).
    Open(Vec<(i64, i64)>),
}

/// A contract's open sessions: the weekly pattern and the listed closed days (see the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCalendar {
    /// The contract's `timeZoneId`, resolved.
    zone: Zone,
    /// Monday (0) to Sunday (6).
    week: [Day; 7],
    /// Days (since 1970-01-01, local) listed `CLOSED` (and no session listed as starting on
    /// them).
    closed: BTreeSet<i64>,
    /// The latest end of a session, minutes after the local midnight of its start day (≥ 1440).
    longest_end: i64,
    /// What an unknown day may hold: `[(0, longest_end)]`.
    unknown_day: [(i64, i64); 1],
}

impl SessionCalendar {
    /// The calendar of `details` for requests with `use_rth`, or why there is none.
    pub fn from_details(details: &ContractDetails, use_rth: bool) -> Result<Self, NoSessions> {
        let list = HoursList::for_rth(use_rth);
        let text = match list {
            HoursList::TradingHours => &details.trading_hours,
            HoursList::LiquidHours => &details.liquid_hours,
        };
        let zone = Zone::from_ib_name(&details.time_zone_id)
            .map_err(|e| NoSessions::UnknownZone { zone: e.0 })?;
        if text.trim().is_empty() {
            return Err(NoSessions::NoHours {
                hours: list.ib_name(),
            });
        }
        let hours: TradingHours =
            text.parse()
                .map_err(|e: ParseTradingHoursError| NoSessions::BadHours {
                    hours: list.ib_name(),
                    detail: e.to_string(),
                })?;
        Ok(Self::new(&hours, zone))
    }

    /// The calendar of a parsed hour list in `zone`.
    pub fn new(hours: &TradingHours, zone: Zone) -> Self {
        // Sessions by the local day they start on.
        let mut listed: Vec<(i64, (i64, i64))> = Vec::new();
        for (start, end) in hours.sessions() {
            let day = start.date.days();
            let (s, e) = (
                i64::from(start.minute),
                end.minutes_since_epoch() - day * DAY_MINUTES,
            );
            if e > s {
                listed.push((day, (s, e)));
            }
        }
        let closed: BTreeSet<i64> = hours.closed_days().map(|d| d.days()).collect();
        // The dates the listing speaks of, first to last.
        let mentioned = hours
            .sessions()
            .flat_map(|(a, b)| [a.date.days(), b.date.days()])
            .chain(closed.iter().copied());
        let (first_day, last_day) =
            mentioned.fold((i64::MAX, i64::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
        let intraday = listed.iter().all(|&(_, (_, e))| e <= DAY_MINUTES);
        let longest_end = listed
            .iter()
            .map(|&(_, (_, e))| e)
            .max()
            .unwrap_or(DAY_MINUTES)
            .max(DAY_MINUTES);
        let mut week: [Day; 7] = std::array::from_fn(|w| {
            let w = w as u32;
            let shares = |d: i64| {
                let wd = weekday(d);
                wd == w || (intraday && w < 5 && wd < 5)
            };
            let open: Vec<(i64, i64)> = listed
                .iter()
                .filter(|(d, _)| shares(*d))
                .map(|&(_, s)| s)
                .collect();
            if !open.is_empty() {
                return Day::Open(super::spans::merge(open));
            }
            let closed_dates = closed.iter().filter(|&&d| weekday(d) == w).count();
            if closed_dates >= 2 || (closed_dates == 1 && w >= 5) {
                Day::Closed
            } else {
                Day::Unknown
            }
        });
        // Days a listed session runs into from the day before.
        let reached: BTreeSet<i64> = hours
            .sessions()
            .filter(|(a, b)| b.date > a.date && b.minute > 0)
            .map(|(_, b)| b.date.days())
            .collect();
        // Saturday, then Friday: a day strictly inside the listing that a session runs into,
        // on which none starts, before a closed weekend day, starts none.
        for w in [5u32, 4] {
            let next_closed = week.get(((w + 1) % 7) as usize) == Some(&Day::Closed);
            let seen_without_start = reached
                .iter()
                .any(|&d| weekday(d) == w && first_day < d && d < last_day && !closed.contains(&d));
            if let Some(day @ Day::Unknown) = week.get_mut(w as usize) {
                if next_closed && seen_without_start {
                    *day = Day::Closed;
                }
            }
        }
        // A date both listed CLOSED and with a session starting on it keeps the session.
        let mut closed = closed;
        closed.retain(|d| !listed.iter().any(|(start, _)| start == d));
        Self {
            zone,
            week,
            closed,
            longest_end,
            unknown_day: [(0, longest_end)],
        }
    }

    /// The zone the hours are in.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// Sessions starting on local `day`, minutes after its midnight.
    fn sessions_of(&self, day: i64) -> &[(i64, i64)] {
        if self.closed.contains(&day) {
            return &[];
        }
        match self.week.get(weekday(day) as usize) {
            Some(Day::Open(sessions)) => sessions,
            Some(Day::Closed) => &[],
            Some(Day::Unknown) | None => &self.unknown_day,
        }
    }

    /// The open spans overlapping `[from, to)` (Unix seconds), merged, oldest first: where bars
    /// may lie. A day the zone table cannot convert is open from the earliest to the latest
    /// instant its local day can mean.
    pub fn open_spans(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        let first = (from - MAX_OFFSET).div_euclid(SECS_PER_DAY)
            - self.longest_end.div_euclid(DAY_MINUTES)
            - 1;
        let last = (to + MAX_OFFSET).div_euclid(SECS_PER_DAY) + 1;
        let mut out = Vec::new();
        for day in first..=last {
            let midnight = day * SECS_PER_DAY;
            for &(s, e) in self.sessions_of(day) {
                let (ls, le) = (midnight + s * 60, midnight + e * 60);
                let span = match (self.zone.from_local(ls), self.zone.from_local(le)) {
                    (Some((start, _)), Some((_, end))) => (start, end),
                    _ => (ls - MAX_OFFSET, le + MAX_OFFSET),
                };
                if span.0 < to && from < span.1 {
                    out.push(span);
                }
            }
        }
        super::spans::merge(out)
    }

    /// Whether `[start, end)` (Unix seconds) may hold a bar of `bar`: whether it intersects an
    /// open session, each widened back to the start of the bar holding its opening.
    pub fn may_hold_bars(&self, start: i64, end: i64, bar: BarSize) -> bool {
        let secs = i64::from(bar.seconds()).max(1);
        // Sessions open on whole minutes of zones offset by whole minutes: a bar dividing a
        // minute starts at the opening; a longer one may be labelled up to a bar before it.
        let early = if 60 % secs == 0 { 0 } else { secs };
        self.open_spans(start, end.saturating_add(early))
            .iter()
            .any(|&(s, e)| s - early < end && start < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::civil::{utc, Date};

    fn calendar(hours: &str, zone: &str) -> SessionCalendar {
        SessionCalendar::new(&hours.parse().unwrap(), Zone::from_ib_name(zone).unwrap())
    }

    /// A week of US stock hours as IB lists them on Tuesday 2026-01-06 (Saturday and Sunday
    /// closed).
    const AAPL_TRADING: &str = "20260106:0400-20260106:2000;20260107:0400-20260107:2000;\
        20260108:0400-20260108:2000;20260109:0400-20260109:2000;20260110:CLOSED;20260111:CLOSED;\
        20260112:0400-20260112:2000";
    const AAPL_LIQUID: &str = "20260106:0930-20260106:1600;20260107:0930-20260107:1600;\
        20260108:0930-20260108:1600;20260109:0930-20260109:1600;20260110:CLOSED;20260111:CLOSED;\
        20260112:0930-20260112:1600";

    /// One-hour cells of `day` (UTC) that may hold 5-second bars.
    fn open_hours(cal: &SessionCalendar, y: i32, m: u32, d: u32) -> Vec<u32> {
        (0..24)
            .filter(|&h| {
                let t = utc(y, m, d, h, 0, 0);
                cal.may_hold_bars(t, t + 3600, BarSize::Sec5)
            })
            .collect()
    }

    #[test]
    fn the_weekly_pattern_reaches_into_the_past() {
        let cal = calendar(AAPL_TRADING, "US/Eastern");
        // Monday 2025-12-01, winter: 04:00–20:00 New York is 09:00–01:00 UTC.
        assert_eq!(open_hours(&cal, 2025, 12, 1), (9..24).collect::<Vec<_>>());
        assert_eq!(
            open_hours(&cal, 2025, 12, 2),
            (0..1).chain(9..24).collect::<Vec<_>>()
        );
        // Saturday: only Friday evening's last hour.
        assert_eq!(open_hours(&cal, 2025, 12, 6), vec![0]);
        assert_eq!(open_hours(&cal, 2025, 12, 7), Vec::<u32>::new());
        // Summer: an hour earlier in UTC (Monday's session ends at 00:00 UTC sharp).
        assert_eq!(open_hours(&cal, 2025, 7, 1), (8..24).collect::<Vec<_>>());
        let rth = calendar(AAPL_LIQUID, "America/New_York");
        assert_eq!(open_hours(&rth, 2025, 12, 3), (14..21).collect::<Vec<_>>());
        assert_eq!(
            rth.open_spans(utc(2025, 12, 1, 0, 0, 0), utc(2025, 12, 2, 0, 0, 0)),
            vec![(utc(2025, 12, 1, 14, 30, 0), utc(2025, 12, 1, 21, 0, 0))]
        );
    }

    #[test]
    fn dst_boundaries_move_the_sessions_in_utc() {
        let rth = calendar(AAPL_LIQUID, "US/Eastern");
        // Friday 2026-03-06 (EST) and Monday 2026-03-09 (EDT, the clocks went forward Sunday).
        let open = |y, m, d| rth.open_spans(utc(y, m, d, 0, 0, 0), utc(y, m, d, 23, 59, 59));
        assert_eq!(
            open(2026, 3, 6),
            vec![(utc(2026, 3, 6, 14, 30, 0), utc(2026, 3, 6, 21, 0, 0))]
        );
        assert_eq!(
            open(2026, 3, 9),
            vec![(utc(2026, 3, 9, 13, 30, 0), utc(2026, 3, 9, 20, 0, 0))]
        );
        // Europe changes three weeks later: Frankfurt 09:00–17:30 CET, then CEST.
        let xetra = calendar(
            "20260302:0900-20260302:1730;20260303:0900-20260303:1730;20260307:CLOSED;\
             20260308:CLOSED",
            "Europe/Berlin",
        );
        let open = |y, m, d| xetra.open_spans(utc(y, m, d, 0, 0, 0), utc(y, m, d, 23, 0, 0));
        assert_eq!(
            open(2026, 3, 27),
            vec![(utc(2026, 3, 27, 8, 0, 0), utc(2026, 3, 27, 16, 30, 0))]
        );
        assert_eq!(
            open(2026, 3, 30),
            vec![(utc(2026, 3, 30, 7, 0, 0), utc(2026, 3, 30, 15, 30, 0))]
        );
        // A session across the autumn change: 00:00–04:00 New York on Sunday 2026-11-01 lasts
        // five hours (01:00–02:00 happens twice).
        let night = calendar(
            "20261031:CLOSED;20261101:0000-20261101:0400;20261102:CLOSED",
            "US/Eastern",
        );
        assert_eq!(
            night.open_spans(utc(2026, 11, 1, 0, 0, 0), utc(2026, 11, 2, 0, 0, 0)),
            vec![(utc(2026, 11, 1, 4, 0, 0), utc(2026, 11, 1, 9, 0, 0))]
        );
    }

    #[test]
    fn listed_closed_days_and_holidays() {
        // Thanksgiving week 2025: Thursday closed, Friday an early close at 13:00.
        let cal = calendar(
            "20251124:0930-20251124:1600;20251125:0930-20251125:1600;20251126:0930-20251126:1600;\
             20251127:CLOSED;20251128:0930-20251128:1300;20251129:CLOSED;20251130:CLOSED",
            "US/Eastern",
        );
        // The listed holiday is closed.
        assert_eq!(open_hours(&cal, 2025, 11, 27), Vec::<u32>::new());
        // Thursdays and Fridays of other weeks keep the full session: the pattern is shared.
        assert_eq!(open_hours(&cal, 2025, 11, 20), (14..21).collect::<Vec<_>>());
        assert_eq!(open_hours(&cal, 2025, 11, 21), (14..21).collect::<Vec<_>>());
        assert_eq!(open_hours(&cal, 2025, 11, 22), Vec::<u32>::new());

        // Futures: sessions cross midnight, so each weekday keeps its own pattern. A lone
        // closed Thursday is a holiday, not every Thursday.
        let es = calendar(
            "20251123:1800-20251124:1700;20251124:1800-20251125:1700;20251125:1800-20251126:1700;\
             20251127:CLOSED;20251129:CLOSED",
            "US/Central",
        );
        // Monday 2025-11-17: Sunday's session to 17:00 CST (23:00 UTC), the break, Monday's
        // from 18:00 CST (Tuesday 00:00 UTC).
        assert_eq!(open_hours(&es, 2025, 11, 17), (0..23).collect::<Vec<_>>());
        assert_eq!(open_hours(&es, 2025, 11, 16), Vec::<u32>::new());
        // Wednesday is not listed and Thursday a lone CLOSED: unknown, so open all day and as
        // long after as the longest session (to 17:00 CST the next day).
        assert_eq!(open_hours(&es, 2025, 11, 20), (0..24).collect::<Vec<_>>());
        // The listed holiday: only what Wednesday (unknown) may run into it.
        assert_eq!(open_hours(&es, 2025, 11, 27), (0..23).collect::<Vec<_>>());
        // Saturday is closed, but Friday (unknown) may run into it, as far as 23:00 UTC.
        assert_eq!(open_hours(&es, 2025, 11, 22), (0..23).collect::<Vec<_>>());
    }

    #[test]
    fn the_week_of_sessions_across_midnight_ends_on_friday() {
        // Futures as the simulator lists them on Tuesday 2025-11-18: each trading day from 18:00
        // the evening before to 17:00; no session starts on Friday; Saturday closed.
        let es = calendar(
            "20251117:1800-20251118:1700;20251118:1800-20251119:1700;20251119:1800-20251120:1700;\
             20251120:1800-20251121:1700;20251122:CLOSED;20251123:1800-20251124:1700",
            "US/Eastern",
        );
        // Friday 2025-11-07 (EST): open to 17:00 New York (22:00 UTC), then nothing until Sunday
        // 18:00 (23:00 UTC).
        assert_eq!(open_hours(&es, 2025, 11, 7), (0..22).collect::<Vec<_>>());
        assert_eq!(open_hours(&es, 2025, 11, 8), Vec::<u32>::new());
        assert_eq!(open_hours(&es, 2025, 11, 9), vec![23]);
        // The daily break, 17:00–18:00 New York.
        assert_eq!(
            open_hours(&es, 2025, 11, 5),
            (0..22).chain(23..24).collect::<Vec<_>>()
        );
        // Without the Saturday after it, the Friday is not known to start nothing.
        let short = calendar(
            "20251117:1800-20251118:1700;20251120:1800-20251121:1700",
            "US/Eastern",
        );
        assert_eq!(open_hours(&short, 2025, 11, 7), (0..24).collect::<Vec<_>>());
    }

    #[test]
    fn the_older_format_and_longer_bars() {
        // EUR.USD in the older format: each session opened the evening before its listed day.
        let fx = calendar(
            "20180319:1715-1700;20180320:1715-1700;20180321:1715-1700;20180322:1715-1700;\
             20180323:1715-1700;20180324:CLOSED",
            "US/Eastern",
        );
        // Sunday 18 March 2018 17:15 EDT = 21:15 UTC (the listing starts Sunday evening).
        assert_eq!(
            fx.open_spans(utc(2018, 3, 18, 0, 0, 0), utc(2018, 3, 18, 23, 0, 0)),
            vec![(utc(2018, 3, 18, 21, 15, 0), utc(2018, 3, 19, 21, 0, 0))]
        );
        // 30-minute bars: the cell ending at the opening may hold the bar labelled before it.
        let t = utc(2018, 3, 18, 21, 0, 0);
        assert!(fx.may_hold_bars(t, t + 900, BarSize::Min30));
        assert!(!fx.may_hold_bars(t, t + 900, BarSize::Sec5));
    }

    #[test]
    fn what_cannot_be_known_counts_as_open() {
        let cal = calendar(AAPL_LIQUID, "US/Eastern");
        // Before 1987 the zone table has no rule: every hour may hold bars.
        assert_eq!(open_hours(&cal, 1985, 6, 4), (0..24).collect::<Vec<_>>());
        // A listing without weekends says nothing about them: Saturday is open all day (from
        // 05:00 UTC; before that it is Friday evening in New York, after Friday's session).
        let cal = calendar("20260106:0930-20260106:1600", "US/Eastern");
        assert_eq!(open_hours(&cal, 2026, 1, 10), (5..24).collect::<Vec<_>>());
        // No sessions at all: weekdays unknown, from Monday 00:00 New York (05:00 UTC).
        let cal = calendar("20260110:CLOSED;20260111:CLOSED", "US/Eastern");
        assert_eq!(open_hours(&cal, 2026, 1, 12), (5..24).collect::<Vec<_>>());
        assert_eq!(
            open_hours(&cal, 2026, 1, 10).len(),
            5,
            "Friday's unknown day ends 05:00 UTC"
        );
    }

    #[test]
    fn details_without_usable_hours_say_why() {
        let details = |tz: &str, hours: &str| ContractDetails {
            time_zone_id: tz.into(),
            trading_hours: hours.into(),
            liquid_hours: String::new(),
            ..ContractDetails::default()
        };
        assert_eq!(
            SessionCalendar::from_details(&details("Mars/Olympus", AAPL_TRADING), false),
            Err(NoSessions::UnknownZone {
                zone: "Mars/Olympus".into()
            })
        );
        assert_eq!(
            SessionCalendar::from_details(&details("US/Eastern", AAPL_TRADING), true),
            Err(NoSessions::NoHours {
                hours: "liquidHours"
            })
        );
        assert!(matches!(
            SessionCalendar::from_details(&details("US/Eastern", "20260106:09"), false),
            Err(NoSessions::BadHours { .. })
        ));
        let ok = SessionCalendar::from_details(&details("US/Eastern", AAPL_TRADING), false);
        assert_eq!(ok.map(|c| c.zone().name()), Ok("America/New_York"));
        assert_eq!(Date::new(2026, 1, 10).weekday(), 5);
    }
}
