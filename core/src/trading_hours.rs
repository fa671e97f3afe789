//! A contract's `tradingHours` / `liquidHours` (from contract details), parsed into dated sessions
//! and closed days.
//!
//! IB has written two formats. The older lists each trading day's sessions as times,
//! `20261204:0930-1600;20261205:CLOSED` (several sessions separated by commas); a session whose
//! opening is not before its close began the evening before (`20180320:1715-1700` opens on the
//! 19th). The newer one, sent by current gateways, dates both ends,
//! `20261204:0930-20261204:1600;20261205:CLOSED`, so a session may cross midnight. Both parse
//! into [`TradingHours`]; [`fmt::Display`] writes the newer one. Times are wall-clock times in the
//! contract's `timeZoneId` ([`crate::zone`] places them on the UTC time line);
//! `docs/ib-facts.md#trading-hours`.

use std::fmt;
use std::str::FromStr;

use crate::civil::Date;

/// Minutes in a day; a wall time of exactly 24:00 is allowed as a session end.
const MINUTES_PER_DAY: u16 = 24 * 60;

/// A wall-clock time in the contract's zone, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime {
    /// The date.
    pub date: Date,
    /// Minutes after midnight, `0..=1440` (1440 = 24:00, the end of the day).
    pub minute: u16,
}

impl WallTime {
    /// Days since 1970-01-01 and minutes, as one comparable count of minutes.
    pub fn minutes_since_epoch(self) -> i64 {
        self.date.days() * i64::from(MINUTES_PER_DAY) + i64::from(self.minute)
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{:02}{:02}",
            self.date.yyyymmdd(),
            self.minute / 60,
            self.minute % 60
        )
    }
}

/// One entry of a trading-hours list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoursEntry {
    /// Open from `start` to `end`.
    Session {
        /// Opening time.
        start: WallTime,
        /// Closing time.
        end: WallTime,
    },
    /// Closed the whole day.
    Closed(Date),
}

/// A parsed `tradingHours` or `liquidHours` string: sessions and closed days, in IB's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TradingHours {
    /// The entries, as listed.
    pub entries: Vec<HoursEntry>,
}

impl TradingHours {
    /// The open sessions, `(start, end)`, as listed.
    pub fn sessions(&self) -> impl Iterator<Item = (WallTime, WallTime)> + '_ {
        self.entries.iter().filter_map(|e| match *e {
            HoursEntry::Session { start, end } => Some((start, end)),
            HoursEntry::Closed(_) => None,
        })
    }

    /// The days listed as closed.
    pub fn closed_days(&self) -> impl Iterator<Item = Date> + '_ {
        self.entries.iter().filter_map(|e| match *e {
            HoursEntry::Closed(day) => Some(day),
            HoursEntry::Session { .. } => None,
        })
    }
}

impl fmt::Display for TradingHours {
    /// The newer format, both ends dated: `20261204:0930-20261204:1600;20261205:CLOSED`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            match entry {
                HoursEntry::Session { start, end } => write!(f, "{start}-{end}")?,
                HoursEntry::Closed(day) => write!(f, "{}:CLOSED", day.yyyymmdd())?,
            }
        }
        Ok(())
    }
}

/// A trading-hours string that is in neither of IB's formats; holds the offending entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad trading hours entry {0:?} (expected e.g. 20261204:0930-20261204:1600 or 20261205:CLOSED)"
)]
pub struct ParseTradingHoursError(pub String);

impl FromStr for TradingHours {
    type Err = ParseTradingHoursError;

    /// Either format (and a mix of both); empty entries (a trailing `;`) are skipped, so an empty
    /// string is no entries. In the older format a session ending at or before its start began
    /// the day before the date it is listed under (`docs/ib-facts.md#trading-hours`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut entries = Vec::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || ParseTradingHoursError(part.chars().take(64).collect());
            let (day, rest) = part.split_once(':').ok_or_else(bad)?;
            let date = parse_date(day).ok_or_else(bad)?;
            if rest == "CLOSED" {
                entries.push(HoursEntry::Closed(date));
                continue;
            }
            for session in rest.split(',') {
                let (open, close) = session.split_once('-').ok_or_else(bad)?;
                let mut start = WallTime {
                    date,
                    minute: parse_hhmm(open).ok_or_else(bad)?,
                };
                let end = match close.split_once(':') {
                    // Newer format: the end carries its own date.
                    Some((end_day, time)) => WallTime {
                        date: parse_date(end_day).ok_or_else(bad)?,
                        minute: parse_hhmm(time).ok_or_else(bad)?,
                    },
                    // Older format: a time of the listed day; a session that wraps opened the
                    // evening before.
                    None => {
                        let minute = parse_hhmm(close).ok_or_else(bad)?;
                        if minute <= start.minute {
                            start.date = Date::from_days(date.days() - 1);
                            if !start.date.is_valid() {
                                return Err(bad());
                            }
                        }
                        WallTime { date, minute }
                    }
                };
                entries.push(HoursEntry::Session { start, end });
            }
        }
        Ok(Self { entries })
    }
}

/// `YYYYMMDD`, a real date.
fn parse_date(s: &str) -> Option<Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = Date::new(
        s.get(..4)?.parse().ok()?,
        s.get(4..6)?.parse().ok()?,
        s.get(6..)?.parse().ok()?,
    );
    date.is_valid().then_some(date)
}

/// `HHMM`, `0000` to `2400`.
fn parse_hhmm(s: &str) -> Option<u16> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (s.get(..2)?.parse().ok()?, s.get(2..)?.parse().ok()?);
    let minute = h * 60 + m;
    (m < 60 && minute <= MINUTES_PER_DAY).then_some(minute)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u16, mi: u16) -> WallTime {
        WallTime {
            date: Date::new(y, mo, d),
            minute: h * 60 + mi,
        }
    }

    #[test]
    fn parses_the_newer_format() {
        let h: TradingHours =
            "20261204:0930-20261204:1600;20261205:CLOSED;20261206:1700-20261207:1600"
                .parse()
                .unwrap();
        assert_eq!(
            h.sessions().collect::<Vec<_>>(),
            [
                (at(2026, 12, 4, 9, 30), at(2026, 12, 4, 16, 0)),
                (at(2026, 12, 6, 17, 0), at(2026, 12, 7, 16, 0)),
            ]
        );
        assert_eq!(
            h.closed_days().collect::<Vec<_>>(),
            [Date::new(2026, 12, 5)]
        );
        assert_eq!(
            h.to_string(),
            "20261204:0930-20261204:1600;20261205:CLOSED;20261206:1700-20261207:1600"
        );
    }

    #[test]
    fn parses_the_older_format_into_dated_sessions() {
        let h: TradingHours = "20261204:0400-0930,0930-1600;20261205:CLOSED;20261207:1700-1600;"
            .parse()
            .unwrap();
        // The session listed under Monday the 7th opened on Sunday evening.
        assert_eq!(
            h.to_string(),
            "20261204:0400-20261204:0930;20261204:0930-20261204:1600;20261205:CLOSED;\
             20261206:1700-20261207:1600"
        );
        // IB's own examples: EUR.USD (one session from the evening before) and ES (a wrapping
        // session and a short one after the break).
        assert_eq!(
            "20180320:1715-1700"
                .parse::<TradingHours>()
                .map(|h| h.to_string()),
            Ok("20180319:1715-20180320:1700".to_owned())
        );
        assert_eq!(
            "20130114:1700-1515,1530-1615"
                .parse::<TradingHours>()
                .map(|h| h.to_string()),
            Ok("20130113:1700-20130114:1515;20130114:1530-20130114:1615".to_owned())
        );
        assert_eq!("".parse::<TradingHours>(), Ok(TradingHours::default()));
        assert_eq!(
            "20261204:0000-2400"
                .parse::<TradingHours>()
                .map(|h| h.to_string()),
            Ok("20261204:0000-20261204:2400".to_owned())
        );
    }

    #[test]
    fn refuses_what_is_in_neither_format() {
        for bad in [
            "20261204",
            "20261204:",
            "20261204:closed",
            "2026120:0930-1600",
            "20261304:0930-1600",
            "20261204:0960-1600",
            "20261204:2401-2402",
            "20261204:930-1600",
            "20261204:0930",
            "20261204:0930-20261204",
            "20261204:0930-20261204:16:00",
            "20261204:0930-1600,",
        ] {
            assert!(bad.parse::<TradingHours>().is_err(), "{bad:?}");
        }
    }

    fn wall_time() -> impl Strategy<Value = WallTime> {
        (0i64..30_000, 0u16..=MINUTES_PER_DAY).prop_map(|(day, minute)| WallTime {
            date: Date::from_days(day),
            minute,
        })
    }

    fn entry() -> impl Strategy<Value = HoursEntry> {
        prop_oneof![
            (wall_time(), wall_time()).prop_map(|(start, end)| HoursEntry::Session { start, end }),
            (0i64..30_000).prop_map(|d| HoursEntry::Closed(Date::from_days(d))),
        ]
    }

    proptest! {
        #[test]
        fn the_newer_format_round_trips(entries in prop::collection::vec(entry(), 0..12)) {
            let hours = TradingHours { entries };
            prop_assert_eq!(hours.to_string().parse::<TradingHours>(), Ok(hours));
        }

        #[test]
        fn parse_never_panics(s in "[0-9:;,\\-CLOSED]{0,40}") {
            if let Ok(h) = s.parse::<TradingHours>() {
                prop_assert_eq!(h.to_string().parse::<TradingHours>(), Ok(h));
            }
        }
    }
}
