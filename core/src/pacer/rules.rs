//! IB's pacing rules as data: what a request is ([`PacedRequest`]), which rules its class is
//! subject to ([`ClassRules`]) and the limits themselves ([`PacingRules`], defaults = IB's).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bar_size::BarSize;
use crate::what_to_show::WhatToShow;

/// The canonical identity of a historical-bars request, as IB judges "identical" requests.
///
/// Two requests with equal keys sent within [`PacingRules::identical_gap`] break IB's rule. The key is
/// also the unit of the per-contract burst rule (contract + exchange + `what_to_show`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HistoricalRequestKey {
    /// conId (preferred) or symbol — whatever identifies the contract canonically for the caller.
    pub contract: String,
    /// Exchange the data is requested from (e.g. `"SMART"`).
    pub exchange: String,
    /// `endDateTime` exactly as sent (empty = now).
    pub end: String,
    /// `durationStr` exactly as sent (e.g. `"1800 S"`).
    pub duration: String,
    /// Bar size; decides whether the small-bar rules apply.
    pub bar_size: BarSize,
    /// `whatToShow`; [`WhatToShow::BidAsk`] weighs double.
    pub what_to_show: WhatToShow,
    /// `useRTH`.
    pub use_rth: bool,
}

/// The identity of a head-timestamp request (`reqHeadTimeStamp`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeadTimestampKey {
    /// conId or symbol.
    pub contract: String,
    /// Exchange.
    pub exchange: String,
    /// `whatToShow`.
    pub what_to_show: WhatToShow,
    /// `useRTH`.
    pub use_rth: bool,
}

/// The identity of a tick-by-tick request: IB allows one per instrument and series every 15 s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TickByTickKey {
    /// conId or symbol.
    pub contract: String,
    /// `Last`, `AllLast`, `BidAsk` or `MidPoint`.
    pub tick_type: String,
}

/// A request to pace, described only by what the rules need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PacedRequest {
    /// `reqHistoricalData` (bars).
    Historical(HistoricalRequestKey),
    /// `reqHeadTimeStamp`.
    HeadTimestamp(HeadTimestampKey),
    /// `reqContractDetails`.
    ContractDetails,
    /// `reqTickByTickData`: only the identical-request gap (IB's "same instrument at most once
    /// per 15 s" for tick-by-tick) and the message rate.
    TickByTick(TickByTickKey),
    /// Any other outbound message (cancels, market data, orders, `reqCurrentTime`, …).
    Message,
}

/// Which rule set applies to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RequestClass {
    /// Historical bars no longer than [`PacingRules::small_bar_max`] (IB's hard pacing rules).
    SmallBars,
    /// Historical bars longer than that (IB: limits "lifted", soft throttling possible).
    LargeBars,
    /// Head-timestamp requests.
    HeadTimestamp,
    /// Contract-details requests.
    ContractDetails,
    /// Tick-by-tick requests.
    TickByTick,
    /// Everything else; only the global message rate applies.
    Message,
}

/// "At most `max_weight` in any window of length `window`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowLimit {
    /// Window length.
    pub window: Duration,
    /// Maximum total weight inside any half-open window `[s, s + window)`.
    pub max_weight: u32,
}

/// Which historical rules a request class is subject to.
///
/// `burst` and `identical` need a request key, so they only take effect for historical and
/// head-timestamp requests; for contract details they are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRules {
    /// Counts against [`PacingRules::historical`] (60 per 10 min).
    pub historical_window: bool,
    /// Counts against [`PacingRules::burst`] per contract + exchange + `whatToShow`.
    pub burst: bool,
    /// Subject to [`PacingRules::identical_gap`].
    pub identical: bool,
    /// Holds one of [`PacingRules::open_max`] slots until [`Pacer::complete`].
    pub open_slot: bool,
    /// Delayed by the adaptive pause after a pacing violation.
    pub pausable: bool,
    /// Minimum spacing between two requests of this class (soft throttling; zero = none).
    pub min_interval: Duration,
}

impl ClassRules {
    /// All historical rules apply (IB's small-bar rules).
    pub const HARD: Self = Self {
        historical_window: true,
        burst: true,
        identical: true,
        open_slot: true,
        pausable: true,
        min_interval: Duration::ZERO,
    };

    /// Whether IB counts this class per gateway session (every rule here but the per-connection
    /// message rate): such requests are paced through the shared [`super::PaceLedger`].
    pub fn is_gateway_scoped(&self) -> bool {
        self.historical_window
            || self.burst
            || self.identical
            || self.open_slot
            || self.pausable
            || self.min_interval > Duration::ZERO
    }

    /// Only the global message rate applies.
    pub const NONE: Self = Self {
        historical_window: false,
        burst: false,
        identical: false,
        open_slot: false,
        pausable: false,
        min_interval: Duration::ZERO,
    };
}

/// Adaptive pause after a pacing violation: `initial · factorⁿ` for the n-th violation in a streak,
/// capped; the streak resets after `reset_after` without violations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRules {
    /// Pause after the first violation of a streak.
    pub initial: Duration,
    /// Growth per further violation in the streak (≥ 1).
    pub factor: u32,
    /// Longest pause.
    pub max: Duration,
    /// A violation this long after the previous one starts a new streak.
    pub reset_after: Duration,
}

/// All pacing rules as data. [`Default`] = IB's documented limits (IB's "Historical Data Limitations" page: 60 requests / 10 min, identical ≥ 15 s apart,
/// < 6 per 2 s per contract + exchange + `whatToShow`, `BID_ASK` twice, ≤ 50 open; 50 messages/s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacingRules {
    /// Global outbound message rate, every class counted once: 50 per 1 s.
    pub message_rate: WindowLimit,
    /// Historical budget: 60 (weighted) per 10 min.
    pub historical: WindowLimit,
    /// Per contract + exchange + `whatToShow`: 5 (weighted) per 2 s ("6 or more within 2 s" violates).
    pub burst: WindowLimit,
    /// Identical requests (same canonical key) at least this far apart: 15 s.
    pub identical_gap: Duration,
    /// Simultaneously open requests (reserved and not completed): 50.
    pub open_max: u32,
    /// Weight of a `BID_ASK` request in the weighted windows: 2.
    pub bid_ask_weight: u32,
    /// Largest bar size covered by the hard small-bar rules: 30 secs.
    pub small_bar_max: BarSize,
    /// Rules for historical requests with bar size ≤ `small_bar_max`: all hard rules.
    pub small_bars: ClassRules,
    /// Rules for larger bars: only the open-request cap (IB: limits lifted).
    pub large_bars: ClassRules,
    /// Rules for head-timestamp requests: treated like small-bar requests (IB applies historical pacing).
    pub head_timestamp: ClassRules,
    /// Rules for contract-details requests: only the global message rate.
    pub contract_details: ClassRules,
    /// Adaptive pause after a 162 pacing violation: 60 s, doubling, ≤ 10 min, streak resets after 10 min.
    pub pause: PauseRules,
}

impl Default for PacingRules {
    fn default() -> Self {
        Self {
            message_rate: WindowLimit {
                window: Duration::from_secs(1),
                max_weight: 50,
            },
            historical: WindowLimit {
                window: Duration::from_secs(600),
                max_weight: 60,
            },
            burst: WindowLimit {
                window: Duration::from_secs(2),
                max_weight: 5,
            },
            identical_gap: Duration::from_secs(15),
            open_max: 50,
            bid_ask_weight: 2,
            small_bar_max: BarSize::Sec30,
            small_bars: ClassRules::HARD,
            large_bars: ClassRules {
                open_slot: true,
                pausable: true,
                ..ClassRules::NONE
            },
            head_timestamp: ClassRules::HARD,
            contract_details: ClassRules::NONE,
            pause: PauseRules {
                initial: Duration::from_secs(60),
                factor: 2,
                max: Duration::from_secs(600),
                reset_after: Duration::from_secs(600),
            },
        }
    }
}

impl PacingRules {
    /// The same rules with every window and gap lengthened by `margin`, to absorb send lateness and
    /// clock differences between this process and IB.
    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Self {
        for limit in [
            &mut self.message_rate,
            &mut self.historical,
            &mut self.burst,
        ] {
            limit.window += margin;
        }
        self.identical_gap += margin;
        for class in [
            &mut self.small_bars,
            &mut self.large_bars,
            &mut self.head_timestamp,
            &mut self.contract_details,
        ] {
            if class.min_interval > Duration::ZERO {
                class.min_interval += margin;
            }
        }
        self
    }

    /// The class a request falls into under these rules.
    pub fn class_of(&self, request: &PacedRequest) -> RequestClass {
        match request {
            PacedRequest::Historical(key) if key.bar_size <= self.small_bar_max => {
                RequestClass::SmallBars
            }
            PacedRequest::Historical(_) => RequestClass::LargeBars,
            PacedRequest::HeadTimestamp(_) => RequestClass::HeadTimestamp,
            PacedRequest::ContractDetails => RequestClass::ContractDetails,
            PacedRequest::TickByTick(_) => RequestClass::TickByTick,
            PacedRequest::Message => RequestClass::Message,
        }
    }

    /// The rules for a class (`Message` has none beyond the global rate).
    pub fn class_rules(&self, class: RequestClass) -> ClassRules {
        match class {
            RequestClass::SmallBars => self.small_bars,
            RequestClass::LargeBars => self.large_bars,
            RequestClass::HeadTimestamp => self.head_timestamp,
            RequestClass::ContractDetails => self.contract_details,
            // IB's tick-by-tick rule is the identical gap alone (15 s, as for historical data).
            RequestClass::TickByTick => ClassRules {
                identical: true,
                ..ClassRules::NONE
            },
            RequestClass::Message => ClassRules::NONE,
        }
    }

    /// The weight a request carries in the weighted windows (`BID_ASK` counts [`Self::bid_ask_weight`]).
    pub fn weight_of(&self, request: &PacedRequest) -> u32 {
        let what = match request {
            PacedRequest::Historical(key) => key.what_to_show,
            PacedRequest::HeadTimestamp(key) => key.what_to_show,
            PacedRequest::ContractDetails | PacedRequest::TickByTick(_) | PacedRequest::Message => {
                return 1
            }
        };
        if what == WhatToShow::BidAsk {
            self.bid_ask_weight.max(1)
        } else {
            1
        }
    }
}

/// A 5-second-bar request (IB's small-bar rules apply) for the pacer's unit tests.
#[cfg(test)]
pub(crate) fn small_bars(contract: &str, end: &str, what: WhatToShow) -> PacedRequest {
    PacedRequest::Historical(HistoricalRequestKey {
        contract: contract.to_owned(),
        exchange: "SMART".to_owned(),
        end: end.to_owned(),
        duration: "1800 S".to_owned(),
        bar_size: BarSize::Sec5,
        what_to_show: what,
        use_rth: true,
    })
}
