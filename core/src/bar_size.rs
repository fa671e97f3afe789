//! IB historical bar sizes (`barSizeSetting`), shared by the pacer and the request codec.
//!
//! IB spells bar sizes as fixed strings ("1 secs", "5 mins", "1 hour", …). [`BarSize`] is the closed set
//! of those strings, with exact round-tripping through [`BarSize::as_str`] and [`str::parse`], and a
//! nominal length in seconds so policy code (which pacing rules apply) can compare sizes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of IB's historical bar sizes, ordered from shortest to longest.
///
/// The pacing rules for "small bars" apply to sizes of 30 seconds or less, so the order matters:
/// `BarSize::Sec30 < BarSize::Min1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum BarSize {
    /// "1 secs"
    Sec1,
    /// "5 secs"
    Sec5,
    /// "10 secs"
    Sec10,
    /// "15 secs"
    Sec15,
    /// "30 secs"
    Sec30,
    /// "1 min"
    Min1,
    /// "2 mins"
    Min2,
    /// "3 mins"
    Min3,
    /// "5 mins"
    Min5,
    /// "10 mins"
    Min10,
    /// "15 mins"
    Min15,
    /// "20 mins"
    Min20,
    /// "30 mins"
    Min30,
    /// "1 hour"
    Hour1,
    /// "2 hours"
    Hour2,
    /// "3 hours"
    Hour3,
    /// "4 hours"
    Hour4,
    /// "8 hours"
    Hour8,
    /// "1 day"
    Day1,
    /// "1 week"
    Week1,
    /// "1 month"
    Month1,
}

/// Every bar size with its IB string and nominal seconds, in ascending order.
const TABLE: [(BarSize, &str, u32); 21] = [
    (BarSize::Sec1, "1 secs", 1),
    (BarSize::Sec5, "5 secs", 5),
    (BarSize::Sec10, "10 secs", 10),
    (BarSize::Sec15, "15 secs", 15),
    (BarSize::Sec30, "30 secs", 30),
    (BarSize::Min1, "1 min", 60),
    (BarSize::Min2, "2 mins", 120),
    (BarSize::Min3, "3 mins", 180),
    (BarSize::Min5, "5 mins", 300),
    (BarSize::Min10, "10 mins", 600),
    (BarSize::Min15, "15 mins", 900),
    (BarSize::Min20, "20 mins", 1_200),
    (BarSize::Min30, "30 mins", 1_800),
    (BarSize::Hour1, "1 hour", 3_600),
    (BarSize::Hour2, "2 hours", 7_200),
    (BarSize::Hour3, "3 hours", 10_800),
    (BarSize::Hour4, "4 hours", 14_400),
    (BarSize::Hour8, "8 hours", 28_800),
    (BarSize::Day1, "1 day", 86_400),
    (BarSize::Week1, "1 week", 604_800),
    (BarSize::Month1, "1 month", 2_592_000),
];

impl BarSize {
    /// All bar sizes, shortest first (handy for tests and property generators).
    pub const ALL: [Self; 21] = [
        Self::Sec1,
        Self::Sec5,
        Self::Sec10,
        Self::Sec15,
        Self::Sec30,
        Self::Min1,
        Self::Min2,
        Self::Min3,
        Self::Min5,
        Self::Min10,
        Self::Min15,
        Self::Min20,
        Self::Min30,
        Self::Hour1,
        Self::Hour2,
        Self::Hour3,
        Self::Hour4,
        Self::Hour8,
        Self::Day1,
        Self::Week1,
        Self::Month1,
    ];

    /// The exact string IB expects in `barSizeSetting` (e.g. `"5 secs"`, `"1 hour"`).
    pub const fn as_str(self) -> &'static str {
        TABLE[self as usize].1
    }

    /// The longest span one `reqHistoricalData` may cover at this bar size, in seconds, from IB's
    /// step-size table (duration → bar sizes: 1800 S: 1 secs–30 mins; 3600 S: 5 secs–1 hour;
    /// 14400 S: 10 secs–3 hours; 28800 S: 30 secs–8 hours; 1 D: 1 min–1 day; 2 D: 2 mins–1 day;
    /// 1 W: 3 mins–1 week; 1 M: 30 mins–1 month; 1 Y: 1 day–1 month). A month is 30 days here and a
    /// year 365, so a planner using these never asks for more than IB allows.
    pub const fn max_request_secs(self) -> u32 {
        const DAY: u32 = 86_400;
        match self {
            Self::Sec1 => 1_800,
            Self::Sec5 => 3_600,
            Self::Sec10 | Self::Sec15 => 14_400,
            Self::Sec30 => 28_800,
            Self::Min1 => DAY,
            Self::Min2 => 2 * DAY,
            Self::Min3 | Self::Min5 | Self::Min10 | Self::Min15 | Self::Min20 => 7 * DAY,
            Self::Min30 | Self::Hour1 | Self::Hour2 | Self::Hour3 | Self::Hour4 | Self::Hour8 => {
                30 * DAY
            }
            Self::Day1 | Self::Week1 | Self::Month1 => 365 * DAY,
        }
    }

    /// Whether IB sends this size's bar times as a date (`YYYYMMDD`) rather than a timestamp.
    pub const fn is_daily_or_longer(self) -> bool {
        matches!(self, Self::Day1 | Self::Week1 | Self::Month1)
    }

    /// Nominal bar length in seconds; a month counts as 30 days (only used for ordering and rule scope).
    pub const fn seconds(self) -> u32 {
        TABLE[self as usize].2
    }
}

impl fmt::Display for BarSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of IB's bar-size spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IB bar size {0:?} (expected e.g. \"5 secs\", \"1 min\", \"1 hour\")")]
pub struct ParseBarSizeError(pub String);

impl FromStr for BarSize {
    type Err = ParseBarSizeError;

    /// Parses IB's spelling exactly (case-sensitive, single space), as sent on the wire.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TABLE
            .iter()
            .find(|(_, text, _)| *text == s)
            .map(|(size, _, _)| *size)
            .ok_or_else(|| ParseBarSizeError(s.to_owned()))
    }
}

impl From<BarSize> for &'static str {
    fn from(size: BarSize) -> Self {
        size.as_str()
    }
}

impl TryFrom<String> for BarSize {
    type Error = ParseBarSizeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_round_trips() {
        for (i, size) in BarSize::ALL.iter().enumerate() {
            assert_eq!(TABLE[i].0, *size);
            assert_eq!(size.as_str().parse::<BarSize>(), Ok(*size));
        }
        assert!(BarSize::ALL
            .windows(2)
            .all(|w| w[0] < w[1] && w[0].seconds() < w[1].seconds()));
    }

    #[test]
    fn rejects_near_misses() {
        for bad in [
            "1 sec", "5 sec", "1 mins", "1 hours", "1min", "1 Min", "", "1 day ",
        ] {
            assert!(bad.parse::<BarSize>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_uses_ib_spelling() {
        let json = serde_json::to_string(&BarSize::Sec30).unwrap_or_default();
        assert_eq!(json, "\"30 secs\"");
        let back: Result<BarSize, _> = serde_json::from_str("\"2 hours\"");
        assert_eq!(back.ok(), Some(BarSize::Hour2));
    }
}
