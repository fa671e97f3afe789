//! Civil dates without a time-zone database: proleptic Gregorian days since 1970-01-01, weekdays,
//! and UTC timestamps. Shared by the backfill planner and the simulated gateway's calendar.

use std::fmt;

/// Seconds in a civil day.
pub const SECS_PER_DAY: i64 = 86_400;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year.
    pub year: i32,
    /// Month 1..=12.
    pub month: u32,
    /// Day 1..=31.
    pub day: u32,
}

impl Date {
    /// A date (not validated; see [`Date::is_valid`]).
    pub const fn new(year: i32, month: u32, day: u32) -> Self {
        Self { year, month, day }
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01.
    pub fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Self { year, month, day }
    }

    /// Whether the fields name a real day.
    pub fn is_valid(self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && Self::from_days(self.days()) == self
            && (1..=9999).contains(&self.year)
    }

    /// Day of the week, 0 = Monday … 6 = Sunday.
    pub fn weekday(self) -> u32 {
        weekday(self.days())
    }

    /// `YYYYMMDD`.
    pub fn yyyymmdd(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Day of the week of a day number, 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday).
pub fn weekday(days: i64) -> u32 {
    (days + 3).rem_euclid(7) as u32
}

/// Whether a day number is a Saturday or Sunday.
pub fn is_weekend(days: i64) -> bool {
    weekday(days) >= 5
}

/// Unix seconds of `y-m-d h:mi:s` UTC.
pub fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    Date::new(y, m, d).days() * SECS_PER_DAY + i64::from(h * 3600 + mi * 60 + s)
}

/// Unix seconds as IB's zone-less UTC form `YYYYMMDD-HH:MM:SS`.
pub fn format_utc(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(SECS_PER_DAY), unix.rem_euclid(SECS_PER_DAY));
    let d = Date::from_days(days);
    format!(
        "{:04}{:02}{:02}-{:02}:{:02}:{:02}",
        d.year,
        d.month,
        d.day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for d in [-1_000_000i64, -1, 0, 1, 10_957, 20_454, 2_932_896] {
            assert_eq!(Date::from_days(d).days(), d);
        }
        assert_eq!(Date::new(2026, 1, 1).days(), 20_454);
        assert_eq!(Date::new(1970, 1, 1).weekday(), 3);
        assert_eq!(Date::new(2026, 1, 5).weekday(), 0);
        assert!(!Date::new(2026, 2, 29).is_valid());
        assert!(Date::new(2024, 2, 29).is_valid());
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(1_767_225_600), "20260101-00:00:00");
        assert_eq!(format_utc(951_782_400), "20000229-00:00:00");
        assert_eq!(format_utc(-1), "19691231-23:59:59");
        assert_eq!(utc(2026, 1, 1, 0, 0, 0), 1_767_225_600);
    }
}
