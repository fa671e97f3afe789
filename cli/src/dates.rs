//! What `fetch` and `plan` accept for dates, spans and bar sizes, and how `--from`, `--to` and
//! `--last` become a range.
//!
//! - A date: `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM[:SS]Z`, the same with a UTC offset
//!   (`2025-12-01T09:30:00-05:00`, `+01:00`, `+0100`), or with an IANA zone name after a space
//!   (`"2025-12-01T09:30 America/New_York"`, `"2025-12-01 Europe/London"`: midnight there),
//!   through the core's zone table ([`Zone`]). A time without any zone is refused: UTC or local
//!   would be a guess.
//! - A span (`--last`): a count and a unit, `90m`, `6h`, `30d`, `2w`, `3mo`, `1y` (months and
//!   years on the calendar: `1mo` before 2026-03-31 is 2026-02-28).
//! - A bar size: `5s`, `1m`/`1min`, `60m`, `1h`/`1H`, `1d`, `1w`, `1mo`, or IB's own spelling
//!   (`"5 mins"`). `1M` is refused: a month or a minute, it cannot tell.
//!
//! Every refusal is a [`DateError`] naming the value and the accepted forms (clap prints it and
//! exits 2).

use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::{Date, SECS_PER_DAY};
use ibconn_core::zone::Zone;

/// The date forms, for messages.
const DATE_FORMS: &str = "YYYY-MM-DD (UTC midnight), YYYY-MM-DDTHH:MM[:SS]Z, \
     YYYY-MM-DDTHH:MM[:SS]+HH:MM (a UTC offset, e.g. 2025-12-01T09:30:00-05:00), or a date \
     and time with an IANA zone name, e.g. \"2025-12-01T09:30 America/New_York\"";

/// The span forms, for messages.
const SPAN_FORMS: &str = "a count and a unit: 90m (minutes), 6h, 30d, 2w, 3mo (calendar \
     months), 1y (calendar years); also s for seconds";

/// The bar-size forms, for messages.
const BAR_FORMS: &str = "1s 5s 10s 15s 30s, 1m 2m 3m 5m 10m 15m 20m 30m (or 1min …), 1h 2h \
     3h 4h 8h (or 60m, 1H, …), 1d, 1w, 1mo, or IB's spelling (\"5 mins\")";

/// Why a date, span, bar size or range is refused (a usage error: exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DateError {
    /// Not one of the date forms.
    #[error("invalid date {value:?}: {why}; accepted: {DATE_FORMS}")]
    Date {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// A time of day without a zone.
    #[error(
        "date {value:?} has a time but no time zone: add Z (UTC), an offset such as -05:00, or \
         a zone name such as America/New_York (e.g. \"{value} America/New_York\")"
    )]
    NoZone {
        /// The value as given.
        value: String,
    },
    /// A zone name the core's table does not know.
    #[error(
        "date {value:?}: unknown time zone {zone:?} (known: IANA names of the US and EU zones, \
         e.g. America/New_York, America/Chicago, Europe/London, Europe/Berlin, and Asia/Tokyo, \
         Asia/Hong_Kong, Asia/Singapore, Asia/Shanghai, Asia/Kolkata, UTC); or give a UTC \
         offset such as -05:00"
    )]
    UnknownZone {
        /// The value as given.
        value: String,
        /// The zone part.
        zone: String,
    },
    /// A local time that happens twice (clocks set back) or never (clocks set forward).
    #[error("date {value:?}: {why} in {zone}; give a UTC offset instead (e.g. {hint})")]
    LocalTime {
        /// The value as given.
        value: String,
        /// The zone.
        zone: String,
        /// "happens twice" or "does not exist".
        why: &'static str,
        /// An offset form that would be accepted.
        hint: String,
    },
    /// Not a span.
    #[error("invalid --last {value:?}: {why}; accepted: {SPAN_FORMS}")]
    Span {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// Not a bar size.
    #[error("unknown bar size {value:?}; accepted: {BAR_FORMS}")]
    Bar {
        /// The value as given.
        value: String,
    },
    /// `M` alone: a month or a minute.
    #[error("bar size {value:?} is ambiguous: use 1mo (a month) or 1min (a minute)")]
    AmbiguousM {
        /// The value as given.
        value: String,
    },
    /// A span unit `M`.
    #[error("--last {value:?} is ambiguous: use {count}mo (months) or {count}min (minutes)")]
    AmbiguousSpan {
        /// The value as given.
        value: String,
        /// Its count, for the hint.
        count: u32,
    },
    /// Neither `--from` nor `--last`.
    #[error("give --from DATE or --last SPAN (e.g. --last 30d); --to defaults to now")]
    NoStart,
    /// `--from` not before `--to`.
    #[error("--from {from} is not before --to {to}: an empty range")]
    Empty {
        /// The start, UTC.
        from: String,
        /// The end, UTC.
        to: String,
    },
}

/// Parse a date (see the module docs) to unix seconds.
pub(crate) fn parse_date(s: &str) -> Result<i64, DateError> {
    let value = s.trim();
    let bad = |why: &str| DateError::Date {
        value: s.to_owned(),
        why: why.to_owned(),
    };
    // "2025-12-01 09:30 …": a space instead of the T.
    let joined;
    let value = match value.split_once(' ') {
        Some((day, rest))
            if day.len() == 10
                && !day.contains(['T', 't'])
                && rest.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            joined = format!("{day}T{}", rest.trim_start());
            joined.as_str()
        }
        _ => value,
    };
    // A zone name follows the date (and time) after a space.
    let (stamp, zone_name) = match value.split_once(' ') {
        Some((stamp, rest)) if rest.trim().contains('/') || is_zone_word(rest.trim()) => {
            (stamp.trim(), Some(rest.trim()))
        }
        Some((_, rest)) => {
            return Err(DateError::UnknownZone {
                value: s.to_owned(),
                zone: rest.trim().to_owned(),
            })
        }
        None => (value, None),
    };
    let (day, time) = match stamp.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (stamp, None),
    };
    let date = parse_day(day).ok_or_else(|| bad("the date part is not YYYY-MM-DD"))?;
    let midnight = date.days() * SECS_PER_DAY;
    let Some(time) = time else {
        return match zone_name {
            None => Ok(midnight),
            Some(z) => in_zone(s, z, midnight),
        };
    };
    let (clock, offset) = split_offset(time).map_err(&bad)?;
    let secs = parse_clock(clock).ok_or_else(|| bad("the time part is not HH:MM or HH:MM:SS"))?;
    let local = midnight + secs;
    match (offset, zone_name) {
        (Some(_), Some(_)) => Err(bad("both a UTC offset and a zone name")),
        (Some(off), None) => Ok(local - off),
        (None, Some(z)) => in_zone(s, z, local),
        (None, None) => Err(DateError::NoZone {
            value: s.to_owned(),
        }),
    }
}

/// Zone names without a slash that the table knows (`UTC`, `GMT`, `CET`, …), for telling a zone
/// from a time after a space.
fn is_zone_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) && Zone::from_ib_name(s).is_ok()
}

/// `YYYY-MM-DD`, a real day.
fn parse_day(s: &str) -> Option<Date> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let date = Date::new(
        i32::try_from(digits(y, 4)?).ok()?,
        digits(m, 2)?,
        digits(d, 2)?,
    );
    date.is_valid().then_some(date)
}

/// Exactly `len` ASCII digits.
fn digits(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `HH:MM` or `HH:MM:SS` as seconds of the day.
fn parse_clock(s: &str) -> Option<i64> {
    let mut parts = s.split(':');
    let h = digits(parts.next()?, 2)?;
    let m = digits(parts.next()?, 2)?;
    let sec = match parts.next() {
        Some(p) => digits(p, 2)?,
        None => 0,
    };
    if parts.next().is_some() || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(i64::from(h * 3_600 + m * 60 + sec))
}

/// Split a time into the clock and its offset (`Z`: 0; `±HH:MM`, `±HHMM`, `±HH`: seconds east
/// of UTC; none: `None`).
fn split_offset(time: &str) -> Result<(&str, Option<i64>), &'static str> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Ok((clock, Some(0)));
    }
    let Some(at) = time.rfind(['+', '-']) else {
        return Ok((time, None));
    };
    let (clock, off) = time.split_at(at);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let off = &off[1..];
    if !off.is_ascii() {
        return Err("the UTC offset is not ±HH:MM (at most ±14:00)");
    }
    let (h, m) = match off.len() {
        2 => (digits(off, 2), Some(0)),
        4 => (digits(&off[..2], 2), digits(&off[2..], 2)),
        5 if off.as_bytes().get(2) == Some(&b':') => (digits(&off[..2], 2), digits(&off[3..], 2)),
        _ => (None, None),
    };
    match (h, m) {
        (Some(h), Some(m)) if h <= 14 && m <= 59 => {
            Ok((clock, Some(sign * i64::from(h * 3_600 + m * 60))))
        }
        _ => Err("the UTC offset is not ±HH:MM (at most ±14:00)"),
    }
}

/// `local` wall-clock seconds in the zone `name`, as unix seconds; refused when the zone is
/// unknown or the local time is ambiguous or skipped.
fn in_zone(value: &str, name: &str, local: i64) -> Result<i64, DateError> {
    let zone = Zone::from_ib_name(name).map_err(|_| DateError::UnknownZone {
        value: value.to_owned(),
        zone: name.to_owned(),
    })?;
    let Some((earliest, latest)) = zone.from_local(local) else {
        return Err(DateError::Date {
            value: value.to_owned(),
            why: format!("{} is only known from a later year on", zone.name()),
        });
    };
    let offset_of = |unix: i64| zone.offset_at(unix).map(format_offset).unwrap_or_default();
    if earliest == latest {
        return Ok(earliest);
    }
    // Two readings: set back (both readings are that local time) or skipped (neither is).
    let twice = zone.to_local(earliest) == Some(local) && zone.to_local(latest) == Some(local);
    Err(DateError::LocalTime {
        value: value.to_owned(),
        zone: zone.name().to_owned(),
        why: if twice {
            "this local time happens twice (the clocks go back)"
        } else {
            "this local time does not exist (the clocks go forward)"
        },
        hint: format!("{} or {}", offset_of(earliest), offset_of(latest)),
    })
}

/// `+HH:MM` / `-HH:MM`.
fn format_offset(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("{sign}{:02}:{:02}", a / 3_600, a / 60 % 60)
}

/// A `--last` span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// A fixed number of seconds (s, m, h, d, w).
    Secs(i64),
    /// Calendar months (mo; a year is twelve).
    Months(u32),
}

impl Span {
    /// The start of the span ending at `to` (a calendar month back keeps the day, or takes the
    /// month's last day when it is shorter).
    pub(crate) fn before(self, to: i64) -> i64 {
        match self {
            Self::Secs(s) => to.saturating_sub(s),
            Self::Months(n) => {
                let (days, secs) = (to.div_euclid(SECS_PER_DAY), to.rem_euclid(SECS_PER_DAY));
                let d = Date::from_days(days);
                let months = i64::from(d.year) * 12 + i64::from(d.month) - 1 - i64::from(n);
                let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
                let year = i32::try_from(year).unwrap_or(i32::MIN);
                let month = u32::try_from(month).unwrap_or(1);
                let mut day = d.day;
                while day > 28 && !Date::new(year, month, day).is_valid() {
                    day -= 1;
                }
                Date::new(year, month, day).days() * SECS_PER_DAY + secs
            }
        }
    }
}

/// Parse a `--last` span (see the module docs).
pub(crate) fn parse_span(s: &str) -> Result<Span, DateError> {
    let value = s.trim();
    let bad = |why: &str| DateError::Span {
        value: s.to_owned(),
        why: why.to_owned(),
    };
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("no unit"))?;
    let (count, unit) = value.split_at(split);
    let count: u32 = count.parse().map_err(|_| bad("no count before the unit"))?;
    if count == 0 {
        return Err(bad("the count must be at least 1"));
    }
    let unit = unit.trim();
    if unit == "M" {
        return Err(DateError::AmbiguousSpan {
            value: s.to_owned(),
            count,
        });
    }
    let n = i64::from(count);
    let secs = |per: i64| Ok(Span::Secs(n * per));
    match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => secs(1),
        "m" | "min" | "mins" | "minute" | "minutes" => secs(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => secs(3_600),
        "d" | "day" | "days" => secs(SECS_PER_DAY),
        "w" | "wk" | "week" | "weeks" => secs(7 * SECS_PER_DAY),
        "mo" | "mon" | "month" | "months" => Ok(Span::Months(count)),
        "y" | "yr" | "year" | "years" => count
            .checked_mul(12)
            .map(Span::Months)
            .ok_or_else(|| bad("too long")),
        _ => Err(bad("unknown unit")),
    }
}

/// Parse a bar size (see the module docs).
pub(crate) fn parse_bar(s: &str) -> Result<BarSize, DateError> {
    if let Ok(ib) = s.parse::<BarSize>() {
        return Ok(ib);
    }
    let value = s.trim();
    let unknown = || DateError::Bar {
        value: s.to_owned(),
    };
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(unknown)?;
    let (count, unit) = value.split_at(split);
    let count: u32 = count.parse().map_err(|_| unknown())?;
    let unit = unit.trim();
    if unit == "M" {
        return Err(DateError::AmbiguousM {
            value: s.to_owned(),
        });
    }
    let secs = match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => count,
        "m" | "min" | "mins" | "minute" | "minutes" => count.saturating_mul(60),
        "h" | "hr" | "hour" | "hours" => count.saturating_mul(3_600),
        "d" | "day" | "days" if count == 1 => return Ok(BarSize::Day1),
        "w" | "wk" | "week" | "weeks" if count == 1 => return Ok(BarSize::Week1),
        "mo" | "mon" | "month" | "months" if count == 1 => return Ok(BarSize::Month1),
        _ => return Err(unknown()),
    };
    BarSize::ALL
        .into_iter()
        .find(|b| !b.is_daily_or_longer() && b.seconds() == secs)
        .ok_or_else(unknown)
}

/// The range `--from`, `--to` and `--last` name, `now` being the end when `--to` is not given.
pub(crate) fn resolve(
    from: Option<i64>,
    to: Option<i64>,
    last: Option<Span>,
    now: i64,
) -> Result<(i64, i64), DateError> {
    let to = to.unwrap_or(now);
    let from = match (from, last) {
        (Some(f), _) => f,
        (None, Some(span)) => span.before(to),
        (None, None) => return Err(DateError::NoStart),
    };
    if from >= to {
        return Err(DateError::Empty {
            from: ibconn_core::civil::format_utc(from),
            to: ibconn_core::civil::format_utc(to),
        });
    }
    Ok((from, to))
}

/// The embedded simulator's clock when a run does not move it: its calendar's "today"
/// (2026-01-06T15:00:00Z), unix seconds. What `--to` defaults to without a gateway.
pub(crate) fn embedded_now() -> i64 {
    ibconn_sim::PoolWorldConfig::new(0)
        .wall_unix_ms
        .div_euclid(1000)
}

/// The embedded simulator's clock for a range ending at `to`: its own "today" when the range
/// ends by then (so `--to` left out, i.e. now, is the simulator's now), else a day past `to`,
/// so the whole range lies in its past.
pub(crate) fn embedded_clock(to: i64) -> i64 {
    let today = embedded_now();
    if to <= today {
        today
    } else {
        to.saturating_add(SECS_PER_DAY)
    }
}

/// "Now" for a range on `gateway` (`None`: the embedded simulator, whose clock is
/// [`embedded_now`]; else the wall clock), unix seconds.
pub(crate) fn now_for(gateway: Option<&str>) -> i64 {
    match gateway {
        None => embedded_now(),
        Some(_) => wall_now(),
    }
}

/// The wall clock, unix seconds.
pub(crate) fn wall_now() -> i64 {
    ibconn_core::client_id::UnixMillis::from_system_time(std::time::SystemTime::now())
        .as_unix_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibconn_core::civil::utc;

    #[test]
    fn utc_dates_and_times() {
        assert_eq!(parse_date("2026-01-01"), Ok(1_767_225_600));
        assert_eq!(
            parse_date("2026-01-01T01:00:05Z"),
            Ok(1_767_225_600 + 3_605)
        );
        assert_eq!(parse_date("2026-01-01T01:00Z"), Ok(1_767_225_600 + 3_600));
        assert_eq!(parse_date("2024-02-29"), Ok(1_709_164_800));
        for bad in [
            "2026-1-01",
            "2026-02-30",
            "2023-02-29",
            "2026-01-01T25:00:00Z",
            "yesterday",
            "2026-01-01-01",
            "2026-01-01T09:30+15:00",
            "2026-01-01T09:30-0x:00",
            "2026-01-01T09:30+aéb",
            "2026-01-01T09:30+é",
            "",
        ] {
            assert!(
                matches!(parse_date(bad), Err(DateError::Date { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn offsets_and_zone_names() {
        let nine_thirty_ny = utc(2025, 12, 1, 14, 30, 0);
        for ok in [
            "2025-12-01T09:30:00-05:00",
            "2025-12-01T09:30-0500",
            "2025-12-01T09:30-05",
            "2025-12-01T15:30:00+01:00",
            "2025-12-01T09:30 America/New_York",
            "2025-12-01T09:30:00 US/Eastern",
            "2025-12-01 09:30 America/New_York",
            "2025-12-01T14:30 UTC",
        ] {
            assert_eq!(parse_date(ok), Ok(nine_thirty_ny), "{ok}");
        }
        // Summer time in New York: -04:00.
        assert_eq!(
            parse_date("2025-07-01T09:30 America/New_York"),
            Ok(utc(2025, 7, 1, 13, 30, 0))
        );
        assert_eq!(
            parse_date("2025-12-01 Europe/London"),
            Ok(utc(2025, 12, 1, 0, 0, 0))
        );
        assert!(matches!(
            parse_date("2025-12-01T09:30:00"),
            Err(DateError::NoZone { .. })
        ));
        assert!(matches!(
            parse_date("2025-12-01T09:30 Mars/Olympus"),
            Err(DateError::UnknownZone { .. })
        ));
        // 2025-11-02 01:30 happens twice in New York; 2025-03-09 02:30 never.
        let twice = parse_date("2025-11-02T01:30 America/New_York");
        assert!(
            matches!(&twice, Err(DateError::LocalTime { hint, .. }) if hint == "-04:00 or -05:00"),
            "{twice:?}"
        );
        assert!(matches!(
            parse_date("2025-03-09T02:30 America/New_York"),
            Err(DateError::LocalTime { .. })
        ));
    }

    #[test]
    fn spans_count_back_from_the_end() {
        let to = utc(2026, 3, 31, 12, 0, 0);
        let before = |s: &str| parse_span(s).map(|span| span.before(to));
        assert_eq!(before("90m"), Ok(to - 5_400));
        assert_eq!(before("6h"), Ok(to - 21_600));
        assert_eq!(before("30d"), Ok(to - 30 * SECS_PER_DAY));
        assert_eq!(before("2w"), Ok(to - 14 * SECS_PER_DAY));
        assert_eq!(before("1mo"), Ok(utc(2026, 2, 28, 12, 0, 0)));
        assert_eq!(before("1y"), Ok(utc(2025, 3, 31, 12, 0, 0)));
        assert_eq!(before("13mo"), Ok(utc(2025, 2, 28, 12, 0, 0)));
        assert!(matches!(
            parse_span("1M"),
            Err(DateError::AmbiguousSpan { count: 1, .. })
        ));
        for bad in ["30", "d", "0d", "3x", "-1d"] {
            assert!(
                matches!(parse_span(bad), Err(DateError::Span { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bar_sizes_in_every_spelling() {
        for (s, b) in [
            ("5s", BarSize::Sec5),
            ("1m", BarSize::Min1),
            ("1min", BarSize::Min1),
            ("60m", BarSize::Hour1),
            ("1H", BarSize::Hour1),
            ("1h", BarSize::Hour1),
            ("240m", BarSize::Hour4),
            ("1d", BarSize::Day1),
            ("1D", BarSize::Day1),
            ("1w", BarSize::Week1),
            ("1mo", BarSize::Month1),
            ("5 mins", BarSize::Min5),
            ("1 month", BarSize::Month1),
        ] {
            assert_eq!(parse_bar(s), Ok(b), "{s}");
        }
        let m = parse_bar("1M");
        assert!(matches!(m, Err(DateError::AmbiguousM { .. })));
        assert!(m
            .unwrap_err()
            .to_string()
            .contains("use 1mo (a month) or 1min (a minute)"));
        for bad in ["7h", "2d", "45s", "1x", "m", ""] {
            assert!(
                matches!(parse_bar(bad), Err(DateError::Bar { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn ranges_default_to_now() {
        let now = utc(2026, 1, 6, 15, 0, 0);
        assert_eq!(
            resolve(Some(now - 100), None, None, now),
            Ok((now - 100, now))
        );
        assert_eq!(
            resolve(None, Some(now - 60), Some(Span::Secs(60)), now),
            Ok((now - 120, now - 60))
        );
        assert_eq!(resolve(None, None, None, now), Err(DateError::NoStart));
        assert!(matches!(
            resolve(Some(now), None, None, now),
            Err(DateError::Empty { .. })
        ));
    }
}
