//! IB's `formatDate`: how a historical answer spells bar times and head timestamps.
//!
//! On the wire it is a bare integer (1 or 2); [`DateFormat`] names the two values IB defines so a
//! query cannot carry any other, and converts to the integer only when the request is encoded.

use std::fmt;

/// How IB writes the times in a historical or head-timestamp answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DateFormat {
    /// `formatDate=1`: text, `yyyymmdd` for daily and longer bars, `yyyymmdd hh:mm:ss <zone>`
    /// otherwise.
    Text,
    /// `formatDate=2`: epoch seconds for intraday bars (daily and longer bars stay `yyyymmdd`).
    Epoch,
}

impl DateFormat {
    /// Both values.
    pub const ALL: [Self; 2] = [Self::Text, Self::Epoch];

    /// The integer IB expects in `formatDate`.
    pub const fn code(self) -> i32 {
        match self {
            Self::Text => 1,
            Self::Epoch => 2,
        }
    }

    /// The value of an IB `formatDate` integer, `None` for one IB does not define.
    pub const fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::Text),
            2 => Some(Self::Epoch),
            _ => None,
        }
    }
}

impl fmt::Display for DateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// The integer is not one of IB's `formatDate` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown IB formatDate {0} (expected 1 = text or 2 = epoch seconds)")]
pub struct UnknownDateFormat(pub i32);

impl TryFrom<i32> for DateFormat {
    type Error = UnknownDateFormat;

    fn try_from(code: i32) -> Result<Self, Self::Error> {
        Self::from_code(code).ok_or(UnknownDateFormat(code))
    }
}

impl From<DateFormat> for i32 {
    fn from(format: DateFormat) -> Self {
        format.code()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn codes_are_ibs() {
        assert_eq!(DateFormat::Text.code(), 1);
        assert_eq!(DateFormat::Epoch.code(), 2);
        for f in DateFormat::ALL {
            assert_eq!(DateFormat::try_from(f.code()), Ok(f));
            assert_eq!(f.to_string(), f.code().to_string());
        }
    }

    proptest! {
        #[test]
        fn only_one_and_two_are_formats(code in any::<i32>()) {
            match DateFormat::try_from(code) {
                Ok(f) => prop_assert_eq!(i32::from(f), code),
                Err(e) => {
                    prop_assert!(code != 1 && code != 2);
                    prop_assert_eq!(e, UnknownDateFormat(code));
                }
            }
        }
    }
}
