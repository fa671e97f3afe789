//! Civil time without a time-zone database: proleptic Gregorian dates, the US daylight-saving rule
//! (so `America/New_York` and the other US zones convert exactly), NYSE holidays, and the date
//! formats IB uses in historical requests. Bar sizes and durations are core's [`BarSize`] and
//! [`IbDuration`](ibconn_core::ib_duration::IbDuration); this module adds how TWS reads a wire
//! bar size and the limits it holds a request to.
//!
//! Times are `i64` Unix seconds (UTC); "local" times are naive seconds since 1970-01-01 00:00 in the
//! zone's wall clock. Days are `i64` days since 1970-01-01.

use ibconn_core::bar_size::BarSize;
pub use ibconn_core::civil::{is_weekend, utc, weekday, Date, SECS_PER_DAY};

/// The `n`-th (1-based) `wd` (0 = Monday) of a month.
fn nth_weekday(year: i32, month: u32, wd: u32, n: u32) -> i64 {
    let first = Date::new(year, month, 1).days();
    let offset = (i64::from(wd) - i64::from(weekday(first))).rem_euclid(7);
    first + offset + 7 * i64::from(n - 1)
}

/// The last `wd` (0 = Monday) of a month.
fn last_weekday(year: i32, month: u32, wd: u32) -> i64 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let last = Date::new(ny, nm, 1).days() - 1;
    last - (i64::from(weekday(last)) - i64::from(wd)).rem_euclid(7)
}

/// A US time zone: a fixed standard offset plus the US daylight-saving rule (1967 onwards:
/// last Sunday of April – last Sunday of October; 1987: first Sunday of April; 2007: second Sunday
/// of March – first Sunday of November; switches at 02:00 local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsZone {
    std_offset_secs: i64,
    observes_dst: bool,
}

/// Which zone a wall-clock time is in: a US zone or UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// UTC (also `GMT`).
    Utc,
    /// A US zone with DST.
    Us(UsZone),
}

/// `America/New_York`, the zone of US equity hours and of the simulated TWS login.
pub const NEW_YORK: UsZone = UsZone {
    std_offset_secs: -5 * 3600,
    observes_dst: true,
};

impl Zone {
    /// Resolve a zone name as IB clients send them (IANA names, `US/…` aliases, abbreviations).
    pub fn parse(name: &str) -> Option<Self> {
        let us = |h: i64| {
            Some(Self::Us(UsZone {
                std_offset_secs: -h * 3600,
                observes_dst: true,
            }))
        };
        match name {
            "UTC" | "GMT" | "Etc/UTC" | "Etc/GMT" | "Z" => Some(Self::Utc),
            "America/New_York" | "US/Eastern" | "EST" | "EDT" | "EST5EDT" => us(5),
            "America/Chicago" | "US/Central" | "CST" | "CDT" | "CST6CDT" => us(6),
            "America/Denver" | "US/Mountain" | "MST7MDT" | "MDT" => us(7),
            "America/Los_Angeles" | "US/Pacific" | "PST" | "PDT" | "PST8PDT" => us(8),
            _ => None,
        }
    }

    /// Unix seconds of a local wall-clock time in this zone.
    pub fn to_utc(self, local: i64) -> i64 {
        match self {
            Self::Utc => local,
            Self::Us(z) => z.to_utc(local),
        }
    }

    /// Local wall-clock seconds of a Unix time in this zone.
    pub fn to_local(self, t: i64) -> i64 {
        match self {
            Self::Utc => t,
            Self::Us(z) => t + z.offset_at(t),
        }
    }
}

impl UsZone {
    /// UTC instants `[start, end)` of daylight time in `year`, if observed that year.
    fn dst_window(self, year: i32) -> Option<(i64, i64)> {
        if !self.observes_dst || year < 1967 {
            return None;
        }
        let (start_day, end_day) = YEARS.get(year).map_or_else(|| dst_days(year), |y| y.dst);
        // 02:00 local standard time starts DST; 02:00 local daylight time ends it.
        let start = start_day * SECS_PER_DAY + 7200 - self.std_offset_secs;
        let end = end_day * SECS_PER_DAY + 7200 - (self.std_offset_secs + 3600);
        Some((start, end))
    }

    /// UTC offset in seconds in force at Unix time `t`.
    pub fn offset_at(self, t: i64) -> i64 {
        let year = Date::from_days((t + self.std_offset_secs).div_euclid(SECS_PER_DAY)).year;
        match self.dst_window(year) {
            Some((start, end)) if (start..end).contains(&t) => self.std_offset_secs + 3600,
            _ => self.std_offset_secs,
        }
    }

    /// Unix seconds of local wall-clock `local`. An ambiguous time (autumn) resolves to the
    /// daylight (earlier) instant; a skipped time (spring) is read as standard time.
    pub fn to_utc(self, local: i64) -> i64 {
        let dst = local - (self.std_offset_secs + 3600);
        if self.offset_at(dst) == self.std_offset_secs + 3600 {
            dst
        } else {
            local - self.std_offset_secs
        }
    }
}

/// Whether `day` is a NYSE full-day holiday (rules: New Year's Day, Martin Luther King Jr. Day from
/// 1998, Washington's Birthday, Good Friday, Memorial Day, Juneteenth from 2022, Independence Day,
/// Labor Day, Thanksgiving, Christmas; Sunday holidays move to Monday, Saturday ones to Friday
/// except New Year's Day). One-off closures can be added with `extra_holidays` in the config.
pub fn is_nyse_holiday(day: i64) -> bool {
    let year = Date::from_days(day).year;
    match YEARS.get(year) {
        Some(y) => y.holidays.contains(&day),
        None => nyse_holidays(year).contains(&day),
    }
}

/// The US daylight-time start and end days of `year` (from 1967), by the rules then in force.
fn dst_days(year: i32) -> (i64, i64) {
    if year >= 2007 {
        (nth_weekday(year, 3, 6, 2), nth_weekday(year, 11, 6, 1))
    } else if year >= 1987 {
        (nth_weekday(year, 4, 6, 1), last_weekday(year, 10, 6))
    } else {
        (last_weekday(year, 4, 6), last_weekday(year, 10, 6))
    }
}

/// What a year's calendar needs, computed once per year: every session check of every stream
/// asks for it, and computing the weekday rules each time dominated a simulated day's cost.
/// Pure functions of the year, so a shared table changes no result.
struct Year {
    dst: (i64, i64),
    holidays: Vec<i64>,
}

/// Years the table covers; others are computed on each call.
const TABLE_YEARS: std::ops::RangeInclusive<i32> = 1967..=2100;

struct Years(std::sync::OnceLock<Vec<Year>>);

impl Years {
    fn get(&self, year: i32) -> Option<&Year> {
        if !TABLE_YEARS.contains(&year) {
            return None;
        }
        let table = self.0.get_or_init(|| {
            TABLE_YEARS
                .map(|y| Year {
                    dst: dst_days(y),
                    holidays: nyse_holidays(y),
                })
                .collect()
        });
        table.get(usize::try_from(year - TABLE_YEARS.start()).ok()?)
    }
}

static YEARS: Years = Years(std::sync::OnceLock::new());

fn observed(day: i64) -> i64 {
    match weekday(day) {
        5 => day - 1,
        6 => day + 1,
        _ => day,
    }
}

/// The NYSE holidays of `year` as day numbers.
pub fn nyse_holidays(year: i32) -> Vec<i64> {
    let d = |m, dd| Date::new(year, m, dd).days();
    let mut out = Vec::with_capacity(10);
    let new_year = d(1, 1);
    match weekday(new_year) {
        5 => {}
        6 => out.push(new_year + 1),
        _ => out.push(new_year),
    }
    if year >= 1998 {
        out.push(nth_weekday(year, 1, 0, 3));
    }
    out.push(nth_weekday(year, 2, 0, 3));
    out.push(easter(year) - 2);
    out.push(last_weekday(year, 5, 0));
    if year >= 2022 {
        out.push(observed(d(6, 19)));
    }
    out.push(observed(d(7, 4)));
    out.push(nth_weekday(year, 9, 0, 1));
    out.push(nth_weekday(year, 11, 3, 4));
    out.push(observed(d(12, 25)));
    out
}

/// Easter Sunday (Gregorian, anonymous algorithm) as a day number.
fn easter(year: i32) -> i64 {
    let y = i64::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::new(year, month as u32, day as u32).days()
}

/// `YYYYMMDD HH:MM:SS` of naive local seconds.
pub fn format_local(local: i64) -> String {
    let date = Date::from_days(local.div_euclid(SECS_PER_DAY));
    let s = local.rem_euclid(SECS_PER_DAY);
    format!(
        "{} {:02}:{:02}:{:02}",
        date.yyyymmdd(),
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// `YYYYMMDD-HH:MM:SS` in UTC (how a UTC-mode gateway and ibapi write window bounds).
pub fn format_utc_dash(t: i64) -> String {
    format_local(t).replacen(' ', "-", 1)
}

/// `YYYYMMDD HH:MM:SS America/New_York`.
pub fn format_new_york(t: i64) -> String {
    format!(
        "{} America/New_York",
        format_local(Zone::Us(NEW_YORK).to_local(t))
    )
}

/// Why an IB date or bar size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not `YYYYMMDD HH:MM:SS [zone]` / `YYYYMMDD-HH:MM:SS`.
    #[error("bad date/time {0:?}")]
    DateTime(String),
    /// An unknown time-zone name.
    #[error("unknown time zone {0:?}")]
    Zone(String),
    /// Not one of IB's bar sizes.
    #[error("bad bar size {0:?}")]
    BarSize(String),
}

fn parse_date(s: &str) -> Option<Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = Date::new(
        s[..4].parse().ok()?,
        s[4..6].parse().ok()?,
        s[6..8].parse().ok()?,
    );
    date.is_valid().then_some(date)
}

fn parse_hms(s: &str) -> Option<i64> {
    let mut it = s.split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || [h, m, sec].iter().any(|p| p.len() != 2) {
        return None;
    }
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    (h < 24 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

/// Parse an IB end date: `YYYYMMDD HH:MM:SS <zone>`, `YYYYMMDD HH:MM:SS` (in `default_zone`, the
/// TWS login zone), `YYYYMMDD-HH:MM:SS` (UTC) or `YYYYMMDD` (end of that day in `default_zone`).
/// Returns Unix seconds. The empty string ("now") is the caller's business.
pub fn parse_end_date(s: &str, default_zone: Zone) -> Result<i64, FormatError> {
    let bad = || FormatError::DateTime(s.chars().take(64).collect());
    let s = s.trim();
    if let Some((date, time)) = s.split_once('-') {
        let date = parse_date(date).ok_or_else(bad)?;
        let secs = parse_hms(time).ok_or_else(bad)?;
        return Ok(date.days() * SECS_PER_DAY + secs);
    }
    let mut parts = s.splitn(3, ' ');
    let date = parse_date(parts.next().unwrap_or_default()).ok_or_else(bad)?;
    let Some(time) = parts.next() else {
        return Ok(default_zone.to_utc((date.days() + 1) * SECS_PER_DAY));
    };
    let secs = parse_hms(time).ok_or_else(bad)?;
    let zone = match parts.next().map(str::trim) {
        None | Some("") => default_zone,
        Some(name) => Zone::parse(name).ok_or_else(|| FormatError::Zone(name.to_owned()))?,
    };
    Ok(zone.to_utc(date.days() * SECS_PER_DAY + secs))
}

/// Subtract calendar months from a Unix time (in New York wall time, clamping the day).
pub fn minus_months(t: i64, months: u32) -> i64 {
    let zone = Zone::Us(NEW_YORK);
    let local = zone.to_local(t);
    let day = local.div_euclid(SECS_PER_DAY);
    let tod = local.rem_euclid(SECS_PER_DAY);
    let d = Date::from_days(day);
    let total = i64::from(d.year) * 12 + i64::from(d.month - 1) - i64::from(months);
    let (year, month) = (total.div_euclid(12) as i32, total.rem_euclid(12) as u32 + 1);
    let mut target = Date::new(year, month, d.day);
    while !target.is_valid() && target.day > 28 {
        target.day -= 1;
    }
    zone.to_utc(target.days() * SECS_PER_DAY + tod)
}

/// Parse a `barSizeSetting` as TWS reads it: IB's spellings ([`BarSize`]) with blanks around
/// them ignored, plus the older aliases TWS still takes (`1 sec`, `1 W`, `1 M`).
pub fn parse_bar_size(s: &str) -> Result<BarSize, FormatError> {
    let s = s.trim();
    match s {
        "1 sec" => Ok(BarSize::Sec1),
        "1 W" => Ok(BarSize::Week1),
        "1 M" => Ok(BarSize::Month1),
        _ => s
            .parse()
            .map_err(|_| FormatError::BarSize(s.chars().take(64).collect())),
    }
}

/// Nominal bar length in seconds as the sim's tables count it: day = 86 400, week = 7 days,
/// month = 31 days (so a month of bars never reaches past its window).
pub fn bar_secs(size: BarSize) -> i64 {
    match size {
        BarSize::Month1 => 31 * SECS_PER_DAY,
        other => i64::from(other.seconds()),
    }
}

/// The longest duration (nominal seconds) the sim accepts for this bar size before answering
/// 162 "Time length exceed max". Modelled on IB's "valid duration / bar size" step table:
///
/// | bar size | longest duration |
/// |---|---|
/// | 1 secs | 1800 S (30 min) |
/// | 5 secs | 7200 S (2 h) |
/// | 10, 15 secs | 14400 S (4 h) |
/// | 30 secs | 28800 S (8 h) |
/// | 1 min | 7 D |
/// | 2, 3 mins | 14 D |
/// | 5 – 30 mins | 1 M (31 D) |
/// | 1 – 8 hours | 1 Y (366 D) |
/// | 1 day, 1 week, 1 month | 50 Y |
pub fn max_duration_secs(size: BarSize) -> i64 {
    const D: i64 = SECS_PER_DAY;
    if size.is_daily_or_longer() {
        return 50 * 366 * D;
    }
    match size.seconds() {
        1 => 1800,
        n if n <= 5 => 7200,
        n if n <= 15 => 14_400,
        n if n <= 30 => 28_800,
        n if n <= 60 => 7 * D,
        n if n <= 180 => 14 * D,
        n if n <= 1800 => 31 * D,
        _ => 366 * D,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_york_dst_boundaries() {
        let ny = Zone::Us(NEW_YORK);
        // 2026: DST from Sun 8 March 07:00 UTC to Sun 1 November 06:00 UTC.
        assert_eq!(NEW_YORK.offset_at(utc(2026, 3, 8, 6, 59, 59)), -5 * 3600);
        assert_eq!(NEW_YORK.offset_at(utc(2026, 3, 8, 7, 0, 0)), -4 * 3600);
        assert_eq!(NEW_YORK.offset_at(utc(2026, 11, 1, 5, 59, 59)), -4 * 3600);
        assert_eq!(NEW_YORK.offset_at(utc(2026, 11, 1, 6, 0, 0)), -5 * 3600);
        // 09:30 New York is 14:30 UTC in winter and 13:30 UTC in summer.
        let open = |y, m, d| ny.to_utc(Date::new(y, m, d).days() * SECS_PER_DAY + 34_200);
        assert_eq!(open(2026, 1, 5), utc(2026, 1, 5, 14, 30, 0));
        assert_eq!(open(2026, 7, 6), utc(2026, 7, 6, 13, 30, 0));
        // The 1987–2006 rule: first Sunday of April (1990-04-01).
        assert_eq!(NEW_YORK.offset_at(utc(1990, 4, 1, 7, 0, 0)), -4 * 3600);
        assert_eq!(NEW_YORK.offset_at(utc(1990, 3, 31, 12, 0, 0)), -5 * 3600);
        // Before 1987: last Sunday of April (1980-04-27).
        assert_eq!(NEW_YORK.offset_at(utc(1980, 4, 20, 12, 0, 0)), -5 * 3600);
        assert_eq!(NEW_YORK.offset_at(utc(1980, 4, 27, 12, 0, 0)), -4 * 3600);
    }

    #[test]
    fn nyse_holidays_2026() {
        let days: Vec<String> = nyse_holidays(2026)
            .into_iter()
            .map(|d| Date::from_days(d).yyyymmdd())
            .collect();
        assert_eq!(
            days,
            [
                "20260101", "20260119", "20260216", "20260403", "20260525", "20260619", "20260703",
                "20260907", "20261126", "20261225"
            ]
        );
        // 2022: New Year's Day on a Saturday is not observed; Christmas (Sunday) moves to Monday.
        assert!(!is_nyse_holiday(Date::new(2021, 12, 31).days()));
        assert!(is_nyse_holiday(Date::new(2022, 12, 26).days()));
    }

    #[test]
    fn end_dates() {
        let ny = Zone::Us(NEW_YORK);
        assert_eq!(
            parse_end_date("20251231 21:00:00 UTC", ny),
            Ok(utc(2025, 12, 31, 21, 0, 0))
        );
        assert_eq!(
            parse_end_date("20251231-21:00:00", ny),
            Ok(utc(2025, 12, 31, 21, 0, 0))
        );
        assert_eq!(
            parse_end_date("20250630 16:00:00 America/New_York", ny),
            Ok(utc(2025, 6, 30, 20, 0, 0))
        );
        assert_eq!(
            parse_end_date("20250102 16:00:00", ny),
            Ok(utc(2025, 1, 2, 21, 0, 0))
        );
        assert!(parse_end_date("2025-01-02", ny).is_err());
        assert!(parse_end_date("20250102 25:00:00", ny).is_err());
        assert_eq!(
            parse_end_date("20250102 10:00:00 Mars/Olympus", ny),
            Err(FormatError::Zone("Mars/Olympus".into()))
        );
        assert_eq!(
            format_utc_dash(utc(2025, 12, 31, 21, 0, 0)),
            "20251231-21:00:00"
        );
        assert_eq!(
            format_new_york(utc(2025, 12, 31, 21, 0, 0)),
            "20251231 16:00:00 America/New_York"
        );
    }

    #[test]
    fn bar_sizes_and_their_limits() {
        assert_eq!(parse_bar_size(" 1 hour "), Ok(BarSize::Hour1));
        assert_eq!(parse_bar_size("1 day"), Ok(BarSize::Day1));
        assert_eq!(parse_bar_size("1 sec"), Ok(BarSize::Sec1));
        assert_eq!(parse_bar_size("1 W"), Ok(BarSize::Week1));
        assert_eq!(parse_bar_size("1 M"), Ok(BarSize::Month1));
        assert!(parse_bar_size("7 mins").is_err());
        assert!(max_duration_secs(BarSize::Sec30) < max_duration_secs(BarSize::Min1));
        assert_eq!(bar_secs(BarSize::Month1), 31 * SECS_PER_DAY);
        assert_eq!(bar_secs(BarSize::Hour1), 3600);
        assert_eq!(
            minus_months(utc(2026, 3, 31, 15, 0, 0), 1),
            utc(2026, 2, 28, 16, 0, 0),
            "11:00 EDT on 31 March is 11:00 EST on 28 February"
        );
    }
}
