//! Time zones by the names IB sends as a contract's `timeZoneId`, without a tz database: a small
//! table of the zones of common contracts and their daylight-saving rules, so the wall-clock
//! trading hours of contract details can be placed on the UTC time line.
//!
//! A zone is exact only over the years its rule holds (the US rule since 1987, the EU rule since
//! 1996, fixed offsets since their last change); outside them a conversion answers `None`, and a
//! name not in the table is refused ([`UnknownZone`]): callers then do without, never guess.
//! Names follow the IANA tz database (`America/New_York`, its `US/Eastern` link, …); the
//! abbreviations `EST`, `CST`, `JST`, … are refused, since what IB means by them is not attested
//! (`docs/ib-facts.md#trading-hours`).

use crate::civil::{weekday, Date, SECS_PER_DAY};

/// How a zone's UTC offset changes over the year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// No daylight saving time.
    Fixed,
    /// The US rule: from 2007 the second Sunday of March 02:00 local standard time to the first
    /// Sunday of November 02:00 local daylight time; 1987–2006 the first Sunday of April to the
    /// last Sunday of October.
    Us,
    /// The EU rule (also the UK's): the last Sunday of March 01:00 UTC to the last Sunday of
    /// October 01:00 UTC, since 1996.
    Eu,
}

/// A time zone of the table: a standard offset and a daylight-saving rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    /// The IANA name the table files it under.
    name: &'static str,
    /// Standard offset, seconds east of UTC.
    std_offset: i64,
    /// Daylight saving.
    rule: Rule,
    /// The first year `rule` and `std_offset` describe the zone.
    since: i32,
}

/// A `timeZoneId` that is not in the table: no session may be derived from hours in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time zone {0:?} (ibconn knows the US, EU and a few fixed-offset zones by IANA name)"
)]
pub struct UnknownZone(pub String);

/// `(names, standard offset, rule, first year)`: every name a zone is known by (the first is the
/// canonical one) and what it means.
const TABLE: &[(&[&str], i64, Rule, i32)] = &[
    (
        &["UTC", "Etc/UTC", "GMT", "Etc/GMT", "Universal", "Zulu"],
        0,
        Rule::Fixed,
        i32::MIN,
    ),
    (
        &["America/New_York", "US/Eastern", "EST5EDT"],
        -5 * 3600,
        Rule::Us,
        1987,
    ),
    (
        &["America/Chicago", "US/Central", "CST6CDT"],
        -6 * 3600,
        Rule::Us,
        1987,
    ),
    (
        &["America/Denver", "US/Mountain", "MST7MDT"],
        -7 * 3600,
        Rule::Us,
        1987,
    ),
    (
        &["America/Los_Angeles", "US/Pacific", "PST8PDT"],
        -8 * 3600,
        Rule::Us,
        1987,
    ),
    (
        &[
            "Europe/London",
            "GB",
            "Europe/Dublin",
            "Europe/Lisbon",
            "WET",
        ],
        0,
        Rule::Eu,
        1996,
    ),
    (
        &[
            "Europe/Berlin",
            "CET",
            "MET",
            "Europe/Paris",
            "Europe/Amsterdam",
            "Europe/Brussels",
            "Europe/Zurich",
            "Europe/Vienna",
            "Europe/Madrid",
            "Europe/Rome",
            "Europe/Milan",
            "Europe/Stockholm",
            "Europe/Oslo",
            "Europe/Copenhagen",
            "Europe/Luxembourg",
            "Europe/Prague",
            "Europe/Warsaw",
            "Europe/Budapest",
        ],
        3600,
        Rule::Eu,
        1996,
    ),
    (
        &["Europe/Helsinki", "EET", "Europe/Athens"],
        2 * 3600,
        Rule::Eu,
        1996,
    ),
    (&["Asia/Tokyo", "Japan"], 9 * 3600, Rule::Fixed, 1952),
    (&["Asia/Hong_Kong", "Hongkong"], 8 * 3600, Rule::Fixed, 1980),
    (
        &["Asia/Singapore", "Singapore"],
        8 * 3600,
        Rule::Fixed,
        1982,
    ),
    (&["Asia/Shanghai", "PRC"], 8 * 3600, Rule::Fixed, 1992),
    (
        &["Asia/Kolkata", "Asia/Calcutta"],
        5 * 3600 + 1800,
        Rule::Fixed,
        1946,
    ),
];

impl Zone {
    /// The zone IB calls `name` (e.g. `US/Eastern`), matched without regard to ASCII case.
    pub fn from_ib_name(name: &str) -> Result<Self, UnknownZone> {
        let wanted = name.trim();
        TABLE
            .iter()
            .find(|(names, ..)| names.iter().any(|n| n.eq_ignore_ascii_case(wanted)))
            .and_then(|&(names, std_offset, rule, since)| {
                Some(Self {
                    name: names.first()?,
                    std_offset,
                    rule,
                    since,
                })
            })
            .ok_or_else(|| UnknownZone(wanted.chars().take(64).collect()))
    }

    /// The zone's IANA name (`America/New_York` for `US/Eastern`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The UTC offset in force at Unix time `unix`, seconds east of UTC; `None` before the year
    /// the table's rule holds from.
    pub fn offset_at(&self, unix: i64) -> Option<i64> {
        let year = Date::from_days((unix + self.std_offset).div_euclid(SECS_PER_DAY)).year;
        if year < self.since {
            return None;
        }
        let dst = self
            .dst_window(year)
            .is_some_and(|(start, end)| (start..end).contains(&unix));
        Some(self.std_offset + if dst { 3600 } else { 0 })
    }

    /// Local wall-clock seconds (since 1970-01-01 00:00 on the zone's clock) of Unix time `unix`.
    pub fn to_local(&self, unix: i64) -> Option<i64> {
        Some(unix + self.offset_at(unix)?)
    }

    /// The Unix times a local wall-clock time may mean, `(earliest, latest)`: one instant mostly,
    /// two an hour apart when the clock is set back (the hour repeats), and, for a time the clock
    /// skips when set forward, the instants that time would be under either offset (the jump lies
    /// between them). `None` before the year the table's rule holds from.
    pub fn from_local(&self, local: i64) -> Option<(i64, i64)> {
        let offsets = [self.std_offset, self.std_offset + 3600];
        let mut fits = Vec::with_capacity(2);
        for off in offsets {
            let unix = local - off;
            if self.offset_at(unix)? == off {
                fits.push(unix);
            }
        }
        let (earliest, latest) = match (fits.iter().min(), fits.iter().max()) {
            (Some(&a), Some(&b)) => (a, b),
            // Skipped by the spring jump: between the two readings.
            _ => (local - self.std_offset - 3600, local - self.std_offset),
        };
        Some((earliest, latest))
    }

    /// `[start, end)` Unix seconds of daylight time in `year`, if the zone observes it.
    fn dst_window(&self, year: i32) -> Option<(i64, i64)> {
        match self.rule {
            Rule::Fixed => None,
            Rule::Us => {
                let (start_day, end_day) = if year >= 2007 {
                    (nth_sunday(year, 3, 2), nth_sunday(year, 11, 1))
                } else {
                    (nth_sunday(year, 4, 1), last_sunday(year, 10))
                };
                // 02:00 local standard time starts it; 02:00 local daylight time ends it.
                Some((
                    start_day * SECS_PER_DAY + 7200 - self.std_offset,
                    end_day * SECS_PER_DAY + 7200 - self.std_offset - 3600,
                ))
            }
            Rule::Eu => Some((
                last_sunday(year, 3) * SECS_PER_DAY + 3600,
                last_sunday(year, 10) * SECS_PER_DAY + 3600,
            )),
        }
    }
}

/// The `n`-th (1-based) Sunday of a month, as days since 1970-01-01.
fn nth_sunday(year: i32, month: u32, n: i64) -> i64 {
    let first = Date::new(year, month, 1).days();
    first + (6 - i64::from(weekday(first))).rem_euclid(7) + 7 * (n - 1)
}

/// The last Sunday of a month, as days since 1970-01-01.
fn last_sunday(year: i32, month: u32) -> i64 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let last = Date::new(y, m, 1).days() - 1;
    last - (i64::from(weekday(last)) - 6).rem_euclid(7)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::civil::utc;

    fn zone(name: &str) -> Zone {
        Zone::from_ib_name(name).unwrap()
    }

    #[test]
    fn ib_names_and_their_iana_links_are_one_zone() {
        assert_eq!(zone("US/Eastern"), zone("America/New_York"));
        assert_eq!(zone("us/eastern").name(), "America/New_York");
        assert_eq!(zone("US/Central"), zone("America/Chicago"));
        assert_eq!(zone("CET"), zone("Europe/Berlin"));
        assert_eq!(zone(" GMT ").name(), "UTC");
        assert_eq!(zone("Japan"), zone("Asia/Tokyo"));
        for unknown in ["", "EST", "CST", "JST", "Mars/Olympus", "America/Sao_Paulo"] {
            assert_eq!(
                Zone::from_ib_name(unknown),
                Err(UnknownZone(unknown.to_owned())),
                "{unknown:?} is refused, not approximated"
            );
        }
    }

    #[test]
    fn the_us_rule_since_2007_and_before() {
        let ny = zone("US/Eastern");
        // 2026: daylight time from Sun 8 March 07:00 UTC to Sun 1 November 06:00 UTC.
        assert_eq!(ny.offset_at(utc(2026, 3, 8, 6, 59, 59)), Some(-5 * 3600));
        assert_eq!(ny.offset_at(utc(2026, 3, 8, 7, 0, 0)), Some(-4 * 3600));
        assert_eq!(ny.offset_at(utc(2026, 11, 1, 5, 59, 59)), Some(-4 * 3600));
        assert_eq!(ny.offset_at(utc(2026, 11, 1, 6, 0, 0)), Some(-5 * 3600));
        // Chicago switches at its own 02:00, an hour later in UTC.
        let chi = zone("US/Central");
        assert_eq!(chi.offset_at(utc(2025, 3, 9, 7, 59, 59)), Some(-6 * 3600));
        assert_eq!(chi.offset_at(utc(2025, 3, 9, 8, 0, 0)), Some(-5 * 3600));
        // 1987–2006: the first Sunday of April to the last Sunday of October (2006: 2 Apr, 29 Oct).
        assert_eq!(ny.offset_at(utc(2006, 4, 2, 6, 59, 59)), Some(-5 * 3600));
        assert_eq!(ny.offset_at(utc(2006, 4, 2, 7, 0, 0)), Some(-4 * 3600));
        assert_eq!(ny.offset_at(utc(2006, 10, 29, 5, 59, 59)), Some(-4 * 3600));
        assert_eq!(ny.offset_at(utc(2006, 10, 29, 6, 0, 0)), Some(-5 * 3600));
        assert_eq!(ny.offset_at(utc(2006, 3, 15, 12, 0, 0)), Some(-5 * 3600));
        // Before 1987 the table does not know: no guess.
        assert_eq!(ny.offset_at(utc(1986, 7, 1, 12, 0, 0)), None);
    }

    #[test]
    fn the_eu_rule_switches_everywhere_at_one_utc_instant() {
        // 2026: the last Sundays are 29 March and 25 October, at 01:00 UTC.
        for (name, std) in [("Europe/London", 0), ("Europe/Berlin", 3600), ("EET", 7200)] {
            let z = zone(name);
            assert_eq!(
                z.offset_at(utc(2026, 3, 29, 0, 59, 59)),
                Some(std),
                "{name}"
            );
            assert_eq!(z.offset_at(utc(2026, 3, 29, 1, 0, 0)), Some(std + 3600));
            assert_eq!(z.offset_at(utc(2026, 10, 25, 0, 59, 59)), Some(std + 3600));
            assert_eq!(z.offset_at(utc(2026, 10, 25, 1, 0, 0)), Some(std));
        }
        assert_eq!(
            zone("Europe/London").offset_at(utc(1995, 7, 1, 0, 0, 0)),
            None
        );
    }

    #[test]
    fn fixed_offsets_hold_since_their_last_change() {
        let tokyo = zone("Asia/Tokyo");
        for t in [utc(1990, 1, 1, 0, 0, 0), utc(2026, 7, 1, 0, 0, 0)] {
            assert_eq!(tokyo.offset_at(t), Some(9 * 3600));
        }
        assert_eq!(tokyo.offset_at(utc(1950, 7, 1, 0, 0, 0)), None);
        assert_eq!(zone("Asia/Kolkata").offset_at(0), Some(19_800));
        assert_eq!(zone("UTC").offset_at(-1_000_000_000_000), Some(0));
    }

    #[test]
    fn local_times_map_to_one_two_or_a_span_of_instants() {
        let ny = zone("America/New_York");
        let local = |y, m, d, h: i64, mi: i64| {
            Date::new(y, m, d).days() * SECS_PER_DAY + h * 3600 + mi * 60
        };
        // 09:30 New York is 14:30 UTC in winter, 13:30 UTC in summer.
        let t = utc(2026, 1, 5, 14, 30, 0);
        assert_eq!(ny.from_local(local(2026, 1, 5, 9, 30)), Some((t, t)));
        let t = utc(2026, 7, 6, 13, 30, 0);
        assert_eq!(ny.from_local(local(2026, 7, 6, 9, 30)), Some((t, t)));
        // 01:30 on 1 November 2026 happens twice.
        assert_eq!(
            ny.from_local(local(2026, 11, 1, 1, 30)),
            Some((utc(2026, 11, 1, 5, 30, 0), utc(2026, 11, 1, 6, 30, 0)))
        );
        // 02:30 on 8 March 2026 never happens: the jump at 07:00 UTC lies inside the answer.
        let (a, b) = ny.from_local(local(2026, 3, 8, 2, 30)).unwrap();
        assert!(a < utc(2026, 3, 8, 7, 0, 0) && utc(2026, 3, 8, 7, 0, 0) < b);
        assert_eq!(ny.from_local(local(1980, 1, 1, 0, 0)), None);
    }

    proptest! {
        #[test]
        fn a_local_time_maps_back_to_its_instant(
            t in utc(1996, 1, 1, 0, 0, 0)..utc(2100, 1, 1, 0, 0, 0),
            i in 0..TABLE.len(),
        ) {
            let z = zone(TABLE[i].0[0]);
            let local = z.to_local(t).unwrap();
            let (a, b) = z.from_local(local).unwrap();
            prop_assert!(a == t || b == t, "{} {t}: {a} {b}", z.name());
            prop_assert!(b - a == 0 || b - a == 3600);
        }
    }
}
