//! IB's historical `durationStr`: how far back from the end time a request reaches.
//!
//! IB spells it `"<n> <unit>"` with the unit one of `S` (seconds), `D` (trading days), `W`, `M`,
//! `Y`. [`IbDuration`] holds the count (never zero: IB refuses it) and the unit, so a query cannot
//! carry a malformed duration, and prints back exactly the text IB expects.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::civil::SECS_PER_DAY;

/// The unit of an IB duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DurationUnit {
    /// Seconds (`S`).
    Seconds,
    /// Trading days, i.e. sessions (`D`).
    Days,
    /// Calendar weeks (`W`).
    Weeks,
    /// Calendar months (`M`).
    Months,
    /// Calendar years (`Y`).
    Years,
}

impl DurationUnit {
    /// Every unit, shortest first.
    pub const ALL: [Self; 5] = [
        Self::Seconds,
        Self::Days,
        Self::Weeks,
        Self::Months,
        Self::Years,
    ];

    /// IB's one-letter spelling.
    pub const fn letter(self) -> &'static str {
        match self {
            Self::Seconds => "S",
            Self::Days => "D",
            Self::Weeks => "W",
            Self::Months => "M",
            Self::Years => "Y",
        }
    }

    fn from_letter(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.letter() == s)
    }
}

/// An IB duration, `"<n> S|D|W|M|Y"` with `n ≥ 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct IbDuration {
    count: NonZeroU32,
    unit: DurationUnit,
}

impl IbDuration {
    /// `count` units.
    pub const fn new(count: NonZeroU32, unit: DurationUnit) -> Self {
        Self { count, unit }
    }

    /// `count` units, or `None` for zero (IB refuses an empty duration).
    pub const fn try_new(count: u32, unit: DurationUnit) -> Option<Self> {
        match NonZeroU32::new(count) {
            Some(count) => Some(Self { count, unit }),
            None => None,
        }
    }

    /// How many units (≥ 1).
    pub const fn count(self) -> u32 {
        self.count.get()
    }

    /// The unit.
    pub const fn unit(self) -> DurationUnit {
        self.unit
    }

    /// Nominal length in seconds, an upper bound for limit tables: `D` = 1 day, `W` = 7, `M` = 31,
    /// `Y` = 366.
    pub fn nominal_secs(self) -> i64 {
        let per = match self.unit {
            DurationUnit::Seconds => 1,
            DurationUnit::Days => SECS_PER_DAY,
            DurationUnit::Weeks => 7 * SECS_PER_DAY,
            DurationUnit::Months => 31 * SECS_PER_DAY,
            DurationUnit::Years => 366 * SECS_PER_DAY,
        };
        i64::from(self.count.get()) * per
    }
}

impl fmt::Display for IbDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.count, self.unit.letter())
    }
}

/// The string is not an IB duration (`"<n> S|D|W|M|Y"`, `n ≥ 1`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad IB duration {0:?} (expected e.g. \"3600 S\", \"2 D\", \"1 W\")")]
pub struct ParseDurationError(pub String);

impl FromStr for IbDuration {
    type Err = ParseDurationError;

    /// Parse `"<n> <unit>"`, e.g. `"2 D"`, `"3600 S"`, as TWS reads it: blanks around the whole
    /// and before the unit are ignored, the unit letter is case-sensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseDurationError(s.chars().take(64).collect());
        let (n, unit) = s.trim().split_once(' ').ok_or_else(bad)?;
        let count: u32 = n.parse().map_err(|_| bad())?;
        let unit = DurationUnit::from_letter(unit.trim()).ok_or_else(bad)?;
        Self::try_new(count, unit).ok_or_else(bad)
    }
}

impl From<IbDuration> for String {
    fn from(d: IbDuration) -> Self {
        d.to_string()
    }
}

impl TryFrom<String> for IbDuration {
    type Error = ParseDurationError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_ib_spelling() {
        assert_eq!(
            "2 D".parse(),
            Ok(IbDuration::try_new(2, DurationUnit::Days).unwrap())
        );
        assert_eq!(
            "3600 S".parse::<IbDuration>().map(|d| d.nominal_secs()),
            Ok(3600)
        );
        assert_eq!(
            " 1  W ".parse::<IbDuration>().map(|d| d.to_string()),
            Ok("1 W".into())
        );
        for bad in [
            "",
            "2D",
            "0 D",
            "x D",
            "2 Q",
            "-1 S",
            "2 d",
            "1 S 1",
            "4294967296 S",
        ] {
            assert!(bad.parse::<IbDuration>().is_err(), "{bad:?}");
        }
        assert_eq!(IbDuration::try_new(0, DurationUnit::Seconds), None);
    }

    #[test]
    fn nominal_lengths_bound_the_calendar() {
        let secs = |s: &str| s.parse::<IbDuration>().map(IbDuration::nominal_secs);
        assert_eq!(secs("1 D"), Ok(86_400));
        assert_eq!(secs("1 W"), Ok(7 * 86_400));
        assert_eq!(secs("1 M"), Ok(31 * 86_400));
        assert_eq!(secs("1 Y"), Ok(366 * 86_400));
    }

    #[test]
    fn serde_uses_ib_spelling() {
        let d = IbDuration::try_new(30, DurationUnit::Days).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"30 D\"");
        assert_eq!(serde_json::from_str::<IbDuration>("\"30 D\"").unwrap(), d);
        assert!(serde_json::from_str::<IbDuration>("\"0 D\"").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(count in 1u32.., unit in 0..DurationUnit::ALL.len()) {
            let d = IbDuration::try_new(count, DurationUnit::ALL[unit]).unwrap();
            prop_assert_eq!(d.to_string().parse::<IbDuration>(), Ok(d));
            prop_assert_eq!(d.count(), count);
        }

        #[test]
        fn parse_never_panics_and_prints_back_canonically(s in "\\PC{0,20}") {
            if let Ok(d) = s.parse::<IbDuration>() {
                prop_assert_eq!(d.to_string().parse::<IbDuration>(), Ok(d));
            }
        }
    }
}
