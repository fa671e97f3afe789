//! IB's caps on open streams, enforced by the pool before IB does (IB's answers would be 101
//! "Max number of tickers has been reached", 10190 for tick-by-tick, 322 for historical).

use serde::{Deserialize, Serialize};

/// Which of IB's caps a stream counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// `reqMktData` (a market-data line).
    MarketData,
    /// `reqRealTimeBars` (also a market-data line, and paced as a historical request).
    RealTimeBars,
    /// `reqTickByTickData` (its own, smaller cap).
    TickByTick,
    /// `reqHistoricalData` with `keepUpToDate` (an open historical request for its life).
    BarUpdates,
}

impl StreamKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::MarketData,
        Self::RealTimeBars,
        Self::TickByTick,
        Self::BarUpdates,
    ];

    /// Its name in logs, metrics and JSON (`market_data`, `real_time_bars`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::MarketData => "market_data",
            Self::RealTimeBars => "real_time_bars",
            Self::TickByTick => "tick_by_tick",
            Self::BarUpdates => "bar_updates",
        }
    }
}

/// How many streams may be open at once, per pool (market-data lines are IB's per account, so
/// the whole pool shares one budget whichever gateway a stream is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamLimits {
    /// Market-data lines: level-1 subscriptions plus real-time bars (IB's default: 100; more
    /// with quote booster packs).
    pub market_data_lines: usize,
    /// Tick-by-tick subscriptions (IB: 5 % of the lines, 5 at 100; users measured 5 and 6).
    pub tick_by_tick: usize,
    /// Keep-up-to-date historical streams; each also holds one of the pacer's 50 open requests.
    pub bar_updates: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            market_data_lines: 100,
            tick_by_tick: 5,
            bar_updates: 50,
        }
    }
}

impl StreamLimits {
    /// The cap `kind` counts against, and whether `other` counts against the same one.
    pub fn cap(&self, kind: StreamKind) -> usize {
        match kind {
            StreamKind::MarketData | StreamKind::RealTimeBars => self.market_data_lines,
            StreamKind::TickByTick => self.tick_by_tick,
            StreamKind::BarUpdates => self.bar_updates,
        }
    }

    /// Whether streams of kinds `a` and `b` share a cap.
    pub fn same_cap(a: StreamKind, b: StreamKind) -> bool {
        let line = |k| matches!(k, StreamKind::MarketData | StreamKind::RealTimeBars);
        a == b || (line(a) && line(b))
    }
}
