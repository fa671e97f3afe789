//! Typed historical queries, as a caller asks them: [`HistoricalQuery`] and
//! [`HeadTimestampQuery`].
//!
//! The wire structs ([`HistoricalDataRequest`], [`HeadTimestampRequest`]) stay stringly, since a
//! server (the simulator) must read whatever other clients send. A caller's query instead holds
//! only values IB defines ([`BarSize`], [`WhatToShow`], [`IbDuration`], [`DateFormat`],
//! [`EndTime`]), so nothing downstream (the pacer above all) has to guess what a string meant.
//! [`HistoricalQuery::to_wire`] and [`HeadTimestampQuery::to_wire`] are the one place the typed
//! values become IB's text.

use std::fmt;

use crate::bar_size::BarSize;
use crate::civil::format_utc;
use crate::date_format::DateFormat;
use crate::ib_duration::IbDuration;
use crate::message::{Contract, HeadTimestampRequest, HistoricalDataRequest};
use crate::what_to_show::WhatToShow;

/// Where a historical window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndTime {
    /// The present (an empty `endDateTime`); the only end a `keep_up_to_date` query may have.
    Now,
    /// This instant, Unix seconds; sent in IB's zone-less UTC form `YYYYMMDD-HH:MM:SS`.
    At(i64),
}

impl fmt::Display for EndTime {
    /// IB's `endDateTime` text: empty for [`EndTime::Now`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Now => Ok(()),
            Self::At(unix) => f.write_str(&format_utc(*unix)),
        }
    }
}

/// `reqHistoricalData` as a caller asks it (the connection assigns the request id).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoricalQuery {
    /// The instrument.
    pub contract: Contract,
    /// End of the window.
    pub end: EndTime,
    /// How far back from `end`.
    pub duration: IbDuration,
    /// Bar size.
    pub bar_size: BarSize,
    /// The price series.
    pub what_to_show: WhatToShow,
    /// Regular trading hours only.
    pub use_rth: bool,
    /// How the answer spells bar times.
    pub format_date: DateFormat,
    /// Keep streaming updates after the initial bars (`end` must be [`EndTime::Now`]).
    pub keep_up_to_date: bool,
}

impl HistoricalQuery {
    /// Bars of `contract` over `duration` before `end`: all hours, epoch-second times, no
    /// streaming; change the public fields for anything else.
    pub fn new(
        contract: Contract,
        end: EndTime,
        duration: IbDuration,
        bar_size: BarSize,
        what_to_show: WhatToShow,
    ) -> Self {
        Self {
            contract,
            end,
            duration,
            bar_size,
            what_to_show,
            use_rth: false,
            format_date: DateFormat::Epoch,
            keep_up_to_date: false,
        }
    }

    /// The wire request with id `req_id`: the one place the typed values become IB's text.
    pub fn to_wire(&self, req_id: i32) -> HistoricalDataRequest {
        HistoricalDataRequest {
            req_id,
            contract: self.contract.clone(),
            end_date_time: self.end.to_string(),
            bar_size: self.bar_size.as_str().to_owned(),
            duration: self.duration.to_string(),
            use_rth: self.use_rth,
            what_to_show: self.what_to_show.as_str().to_owned(),
            format_date: self.format_date.code(),
            keep_up_to_date: self.keep_up_to_date,
            chart_options: Vec::new(),
        }
    }
}

/// `reqHeadTimestamp` as a caller asks it (the connection assigns the request id).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadTimestampQuery {
    /// The instrument.
    pub contract: Contract,
    /// The price series.
    pub what_to_show: WhatToShow,
    /// Regular trading hours only.
    pub use_rth: bool,
    /// How the answer spells the timestamp.
    pub format_date: DateFormat,
}

impl HeadTimestampQuery {
    /// The earliest `what_to_show` data point of `contract`, all hours, in epoch seconds.
    pub fn new(contract: Contract, what_to_show: WhatToShow) -> Self {
        Self {
            contract,
            what_to_show,
            use_rth: false,
            format_date: DateFormat::Epoch,
        }
    }

    /// The wire request with id `req_id`.
    pub fn to_wire(&self, req_id: i32) -> HeadTimestampRequest {
        HeadTimestampRequest {
            req_id,
            contract: self.contract.clone(),
            use_rth: self.use_rth,
            what_to_show: self.what_to_show.as_str().to_owned(),
            format_date: self.format_date.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::civil::utc;
    use crate::ib_duration::DurationUnit;

    fn hourly() -> HistoricalQuery {
        HistoricalQuery {
            use_rth: true,
            ..HistoricalQuery::new(
                Contract::stock("AAPL"),
                EndTime::At(utc(2025, 12, 31, 21, 0, 0)),
                IbDuration::try_new(2, DurationUnit::Days).unwrap(),
                BarSize::Hour1,
                WhatToShow::Trades,
            )
        }
    }

    #[test]
    fn the_wire_request_spells_every_value_as_ib_does() {
        let wire = hourly().to_wire(7);
        assert_eq!(
            wire,
            HistoricalDataRequest {
                req_id: 7,
                contract: Contract::stock("AAPL"),
                end_date_time: "20251231-21:00:00".into(),
                bar_size: "1 hour".into(),
                duration: "2 D".into(),
                use_rth: true,
                what_to_show: "TRADES".into(),
                format_date: 2,
                keep_up_to_date: false,
                chart_options: Vec::new(),
            }
        );
        let stream = HistoricalQuery {
            end: EndTime::Now,
            format_date: DateFormat::Text,
            keep_up_to_date: true,
            ..hourly()
        };
        let wire = stream.to_wire(8);
        assert_eq!((wire.end_date_time.as_str(), wire.format_date), ("", 1));
        assert!(wire.keep_up_to_date);
    }

    #[test]
    fn head_timestamps_spell_their_values_too() {
        let q = HeadTimestampQuery {
            use_rth: true,
            ..HeadTimestampQuery::new(Contract::stock("MSFT"), WhatToShow::BidAsk)
        };
        let wire = q.to_wire(3);
        assert_eq!(
            (
                wire.req_id,
                wire.what_to_show.as_str(),
                wire.format_date,
                wire.use_rth
            ),
            (3, "BID_ASK", 2, true)
        );
    }

    proptest! {
        /// Every typed query becomes a wire request whose strings parse back to the same values.
        #[test]
        fn wire_text_parses_back(
            bar in 0..BarSize::ALL.len(),
            what in 0..WhatToShow::ALL.len(),
            count in 1u32..100_000,
            unit in 0..DurationUnit::ALL.len(),
            end in prop::option::of(0i64..4_102_444_800),
            text in any::<bool>(),
        ) {
            let q = HistoricalQuery {
                format_date: if text { DateFormat::Text } else { DateFormat::Epoch },
                ..HistoricalQuery::new(
                    Contract::stock("SPY"),
                    end.map_or(EndTime::Now, EndTime::At),
                    IbDuration::try_new(count, DurationUnit::ALL[unit]).unwrap(),
                    BarSize::ALL[bar],
                    WhatToShow::ALL[what],
                )
            };
            let w = q.to_wire(1);
            prop_assert_eq!(w.bar_size.parse::<BarSize>(), Ok(q.bar_size));
            prop_assert_eq!(w.what_to_show.parse::<WhatToShow>(), Ok(q.what_to_show));
            prop_assert_eq!(w.duration.parse::<IbDuration>(), Ok(q.duration));
            prop_assert_eq!(DateFormat::try_from(w.format_date), Ok(q.format_date));
            prop_assert_eq!(w.end_date_time.is_empty(), end.is_none());
            if let Some(t) = end {
                prop_assert_eq!(w.end_date_time, format_utc(t));
            }
        }
    }
}
