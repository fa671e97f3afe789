//! IB's `whatToShow`: which price series a historical or head-timestamp request asks for.
//!
//! A closed set rather than a string so a typo fails where the query is built, not as an IB
//! error after a pacing slot was spent, and so the pacer can tell `BID_ASK` (which IB counts
//! twice) from everything else without comparing text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of IB's `whatToShow` values for historical bars and head timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum WhatToShow {
    /// Last trade prices, with volume (`TRADES`).
    Trades,
    /// Bid/ask midpoint (`MIDPOINT`).
    Midpoint,
    /// Bid (`BID`).
    Bid,
    /// Ask (`ASK`).
    Ask,
    /// Bid in open/low, ask in high/close (`BID_ASK`); IB's pacing counts it twice.
    BidAsk,
    /// Dividend-adjusted trades (`ADJUSTED_LAST`).
    AdjustedLast,
    /// 30-day historical volatility (`HISTORICAL_VOLATILITY`).
    HistoricalVolatility,
    /// Implied volatility (`OPTION_IMPLIED_VOLATILITY`).
    OptionImpliedVolatility,
    /// Aggregated trades, what IB serves for crypto instead of `TRADES` (`AGGTRADES`).
    AggTrades,
    /// Exchange fee rates (`FEE_RATE`).
    FeeRate,
    /// Trading schedule (`SCHEDULE`).
    Schedule,
    /// Bid yield (`YIELD_BID`).
    YieldBid,
    /// Ask yield (`YIELD_ASK`).
    YieldAsk,
    /// Bid and ask yield (`YIELD_BID_ASK`).
    YieldBidAsk,
    /// Last yield (`YIELD_LAST`).
    YieldLast,
}

/// Every value with IB's wire spelling and the title IB uses in "no data" texts, in enum order.
const TABLE: [(WhatToShow, &str, &str); 15] = [
    (WhatToShow::Trades, "TRADES", "Trades"),
    (WhatToShow::Midpoint, "MIDPOINT", "Midpoint"),
    (WhatToShow::Bid, "BID", "Bid"),
    (WhatToShow::Ask, "ASK", "Ask"),
    (WhatToShow::BidAsk, "BID_ASK", "Bid_Ask"),
    (WhatToShow::AdjustedLast, "ADJUSTED_LAST", "Adjusted_Last"),
    (
        WhatToShow::HistoricalVolatility,
        "HISTORICAL_VOLATILITY",
        "Historical_Volatility",
    ),
    (
        WhatToShow::OptionImpliedVolatility,
        "OPTION_IMPLIED_VOLATILITY",
        "Option_Implied_Volatility",
    ),
    (WhatToShow::AggTrades, "AGGTRADES", "Aggtrades"),
    (WhatToShow::FeeRate, "FEE_RATE", "Fee_Rate"),
    (WhatToShow::Schedule, "SCHEDULE", "Schedule"),
    (WhatToShow::YieldBid, "YIELD_BID", "Yield_Bid"),
    (WhatToShow::YieldAsk, "YIELD_ASK", "Yield_Ask"),
    (WhatToShow::YieldBidAsk, "YIELD_BID_ASK", "Yield_Bid_Ask"),
    (WhatToShow::YieldLast, "YIELD_LAST", "Yield_Last"),
];

impl WhatToShow {
    /// Every value, in declaration order (handy for tests and property generators).
    pub const ALL: [Self; 15] = [
        Self::Trades,
        Self::Midpoint,
        Self::Bid,
        Self::Ask,
        Self::BidAsk,
        Self::AdjustedLast,
        Self::HistoricalVolatility,
        Self::OptionImpliedVolatility,
        Self::AggTrades,
        Self::FeeRate,
        Self::Schedule,
        Self::YieldBid,
        Self::YieldAsk,
        Self::YieldBidAsk,
        Self::YieldLast,
    ];

    /// Parse IB's spelling, case-insensitively and ignoring surrounding blanks (TWS accepts
    /// `trades` as well as `TRADES`); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        TABLE
            .iter()
            .find(|(_, text, _)| text.eq_ignore_ascii_case(s))
            .map(|(what, _, _)| *what)
    }

    /// The exact string IB expects in `whatToShow` (e.g. `"BID_ASK"`).
    pub const fn as_str(self) -> &'static str {
        TABLE[self as usize].1
    }

    /// The word IB uses in "HMDS query returned no data: AAPL@SMART Trades".
    pub const fn title(self) -> &'static str {
        TABLE[self as usize].2
    }

    /// Whether IB's bars of this series carry no volume (volume, WAP and count are -1): quotes.
    pub const fn is_quotes(self) -> bool {
        matches!(self, Self::Midpoint | Self::Bid | Self::Ask | Self::BidAsk)
    }

    /// Whether IB serves bars of this series for security type `sec_type`
    /// (docs/ib-facts.md#contracts): no `TRADES` (nor adjusted trades or volatility) for forex,
    /// no quotes (`MIDPOINT`, `BID`, `ASK`, `BID_ASK`) for indices, volatility series only for
    /// stocks and indices. `true` for a type or series the table does not cover: IB decides.
    pub fn is_served_for(self, sec_type: &str) -> bool {
        let volatility = matches!(
            self,
            Self::HistoricalVolatility | Self::OptionImpliedVolatility
        );
        match sec_type {
            "CASH" => !(matches!(self, Self::Trades | Self::AdjustedLast) || volatility),
            "IND" => !(self.is_quotes() || self == Self::AdjustedLast),
            "FUT" | "OPT" | "FOP" => !(volatility || self == Self::AdjustedLast),
            _ => true,
        }
    }

    /// The series to ask for when the user names none: `MIDPOINT` for forex (IB has no trades
    /// there), `TRADES` for everything else.
    pub fn default_for(sec_type: &str) -> Self {
        if sec_type == "CASH" {
            Self::Midpoint
        } else {
            Self::Trades
        }
    }
}

impl fmt::Display for WhatToShow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of IB's `whatToShow` values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IB whatToShow {0:?} (expected e.g. TRADES, MIDPOINT, BID_ASK)")]
pub struct ParseWhatToShowError(pub String);

impl FromStr for WhatToShow {
    type Err = ParseWhatToShowError;

    /// [`WhatToShow::parse`], with the refused text in the error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| ParseWhatToShowError(s.chars().take(64).collect()))
    }
}

impl From<WhatToShow> for &'static str {
    fn from(what: WhatToShow) -> Self {
        what.as_str()
    }
}

impl TryFrom<String> for WhatToShow {
    type Error = ParseWhatToShowError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn series_per_security_type_follow_ibs_table() {
        use WhatToShow as W;
        assert!(!W::Trades.is_served_for("CASH"));
        assert!(W::Midpoint.is_served_for("CASH"));
        assert!(W::BidAsk.is_served_for("CASH"));
        assert!(!W::Midpoint.is_served_for("IND"));
        assert!(!W::BidAsk.is_served_for("IND"));
        assert!(W::Trades.is_served_for("IND"));
        assert!(W::HistoricalVolatility.is_served_for("IND"));
        assert!(!W::HistoricalVolatility.is_served_for("FUT"));
        assert!(W::Trades.is_served_for("OPT"));
        assert!(W::AdjustedLast.is_served_for("STK"));
        assert!(W::Trades.is_served_for("BOND"), "not covered: IB decides");
        assert_eq!(W::default_for("CASH"), W::Midpoint);
        assert_eq!(W::default_for("FUT"), W::Trades);
    }

    #[test]
    fn table_is_in_enum_order_and_round_trips() {
        for (i, what) in WhatToShow::ALL.iter().enumerate() {
            assert_eq!(TABLE[i].0, *what);
            assert_eq!(what.as_str().parse::<WhatToShow>(), Ok(*what));
            assert_eq!(what.to_string(), what.as_str());
        }
    }

    #[test]
    fn parsing_ignores_case_and_blanks_but_not_spelling() {
        assert_eq!(WhatToShow::parse(" bid_ask "), Some(WhatToShow::BidAsk));
        assert_eq!(WhatToShow::parse("Trades"), Some(WhatToShow::Trades));
        for bad in ["", "TRADE", "BIDASK", "BID ASK", "MID_POINT", "trades!"] {
            assert!(bad.parse::<WhatToShow>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn titles_are_the_ones_ib_prints() {
        assert_eq!(WhatToShow::Trades.title(), "Trades");
        assert_eq!(WhatToShow::BidAsk.title(), "Bid_Ask");
        assert!(WhatToShow::Midpoint.is_quotes() && !WhatToShow::Trades.is_quotes());
    }

    #[test]
    fn serde_uses_ib_spelling() {
        let json = serde_json::to_string(&WhatToShow::BidAsk).unwrap_or_default();
        assert_eq!(json, "\"BID_ASK\"");
        let back: Result<WhatToShow, _> = serde_json::from_str("\"midpoint\"");
        assert_eq!(back.ok(), Some(WhatToShow::Midpoint));
        assert!(serde_json::from_str::<WhatToShow>("\"BIDASK\"").is_err());
    }

    proptest! {
        #[test]
        fn any_casing_round_trips(i in 0..WhatToShow::ALL.len(), flips in any::<u64>()) {
            let what = WhatToShow::ALL[i];
            let mixed: String = what
                .as_str()
                .chars()
                .enumerate()
                .map(|(k, c)| if flips >> (k % 64) & 1 == 1 { c.to_ascii_lowercase() } else { c })
                .collect();
            prop_assert_eq!(mixed.parse::<WhatToShow>(), Ok(what));
        }

        #[test]
        fn parse_never_panics_and_only_accepts_ib_words(s in "\\PC{0,30}") {
            if let Ok(what) = s.parse::<WhatToShow>() {
                prop_assert!(what.as_str().eq_ignore_ascii_case(s.trim()));
            }
        }
    }
}
