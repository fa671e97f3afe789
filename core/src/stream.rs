//! Streams: what a caller subscribes to ([`StreamQuery`]), what a stream carries
//! ([`StreamData`] from the gateway, [`StreamItem`] to the caller), IB's caps on open streams
//! ([`StreamLimits`]) and the bounded per-subscriber queue with its overflow policy
//! ([`StreamBuffer`]).
//!
//! A stream outlives its session: the pool re-requests it after 1101 ("data lost"), a redial or
//! a failover, under a fresh request id, and tells the caller with [`StreamItem::Interrupted`]
//! when it stops and [`StreamItem::Gap`] when it flows again, so a gap is never mistaken for a
//! quiet market.

mod buffer;
mod limits;
mod tick;

pub use self::buffer::{Push, StreamBuffer, STREAM_BUFFER};
pub use self::limits::{StreamKind, StreamLimits};
pub use self::tick::{Tick, TickType};

use crate::client_id::UnixMillis;
use crate::message::market::{MarketDataRequest, RealTimeBarsRequest, TickByTickRequest};
use crate::message::{Bar, Contract, MarketReply, MarketRequest, RealTimeBar, Request, TickByTick};
use crate::query::{EndTime, HistoricalQuery};
use crate::what_to_show::WhatToShow;

/// Which tick-by-tick series (IB's `tickType` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TickByTickKind {
    /// Trades on the primary tape.
    Last,
    /// Every trade, odd lots and every exchange included.
    AllLast,
    /// Quote changes; `ignore_size`: skip size-only changes.
    BidAsk {
        /// Skip size-only changes.
        ignore_size: bool,
    },
    /// Midpoint changes.
    MidPoint,
}

impl TickByTickKind {
    /// IB's spelling (case-sensitive on the wire).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Last => "Last",
            Self::AllLast => "AllLast",
            Self::BidAsk { .. } => "BidAsk",
            Self::MidPoint => "MidPoint",
        }
    }
}

/// Which data a level-1 subscription asks for (`reqMarketDataType`, sent just before it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MarketDataType {
    /// Live data (needs the exchange's market-data subscription; else IB answers 354).
    #[default]
    Live,
    /// The last quote of a closed session, live while open.
    Frozen,
    /// Delayed data (free, 15–20 minutes late) where there is no subscription, live where there is.
    Delayed,
    /// Delayed, frozen outside the session.
    DelayedFrozen,
}

impl MarketDataType {
    /// IB's number: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen.
    pub fn code(self) -> i32 {
        match self {
            Self::Live => 1,
            Self::Frozen => 2,
            Self::Delayed => 3,
            Self::DelayedFrozen => 4,
        }
    }
}

/// What a caller subscribes to. The connection assigns the request id; the pool re-sends the
/// same query under a new one whenever the stream must be requested again.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamQuery {
    /// Level-1 ticks (`reqMktData`); `snapshot`: the default ticks once, then the stream ends.
    MarketData {
        /// The instrument.
        contract: Contract,
        /// Comma-separated generic tick ids (e.g. `233,236`); empty = IB's default ticks.
        generic_ticks: String,
        /// One snapshot instead of a subscription.
        snapshot: bool,
        /// Live, frozen, delayed or delayed-frozen (anything but live is asked for with
        /// `reqMarketDataType` first, on every (re)request).
        data_type: MarketDataType,
    },
    /// 5-second bars (`reqRealTimeBars`; IB has no other size).
    RealTimeBars {
        /// The instrument.
        contract: Contract,
        /// `TRADES`, `MIDPOINT`, `BID` or `ASK`.
        what_to_show: WhatToShow,
        /// Regular trading hours only.
        use_rth: bool,
    },
    /// Tick-by-tick data (`reqTickByTickData`).
    TickByTick {
        /// The instrument.
        contract: Contract,
        /// Which series.
        kind: TickByTickKind,
    },
    /// Historical bars kept up to date (`reqHistoricalData` with `keepUpToDate`): the initial
    /// bars, then the forming bar as it changes. On a re-request the bars after the last one
    /// delivered fill the gap.
    BarUpdates(HistoricalQuery),
}

impl StreamQuery {
    /// Level-1 ticks of `contract` with IB's default tick list.
    pub fn market_data(contract: Contract) -> Self {
        Self::MarketData {
            contract,
            generic_ticks: String::new(),
            snapshot: false,
            data_type: MarketDataType::Live,
        }
    }

    /// The `reqMarketDataType` to send right before this stream's request, if any.
    pub fn data_type_request(&self) -> Option<Request> {
        match self {
            Self::MarketData { data_type, .. } if *data_type != MarketDataType::Live => {
                Some(Request::Market(MarketRequest::MarketDataType {
                    market_data_type: data_type.code(),
                }))
            }
            _ => None,
        }
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Which of IB's limits it counts against.
    pub fn kind(&self) -> StreamKind {
        match self {
            Self::MarketData { .. } => StreamKind::MarketData,
            Self::RealTimeBars { .. } => StreamKind::RealTimeBars,
            Self::TickByTick { .. } => StreamKind::TickByTick,
            Self::BarUpdates(_) => StreamKind::BarUpdates,
        }
    }

    /// Whether it ends by itself (a snapshot) rather than when cancelled.
    pub fn is_snapshot(&self) -> bool {
        matches!(self, Self::MarketData { snapshot: true, .. })
    }

    /// The instrument.
    pub fn contract(&self) -> &Contract {
        match self {
            Self::MarketData { contract, .. }
            | Self::RealTimeBars { contract, .. }
            | Self::TickByTick { contract, .. } => contract,
            Self::BarUpdates(q) => &q.contract,
        }
    }

    /// The historical query a [`StreamQuery::BarUpdates`] sends: always up to date, ending now.
    pub fn bar_updates_query(q: &HistoricalQuery) -> HistoricalQuery {
        HistoricalQuery {
            end: EndTime::Now,
            keep_up_to_date: true,
            ..q.clone()
        }
    }

    /// The wire request under `req_id`.
    pub fn to_wire(&self, req_id: i32) -> Request {
        match self {
            Self::MarketData {
                contract,
                generic_ticks,
                snapshot,
                ..
            } => Request::Market(MarketRequest::MktData(MarketDataRequest {
                req_id,
                contract: contract.clone(),
                generic_ticks: generic_ticks.clone(),
                snapshot: *snapshot,
                regulatory_snapshot: false,
            })),
            Self::RealTimeBars {
                contract,
                what_to_show,
                use_rth,
            } => Request::Market(MarketRequest::RealTimeBars(RealTimeBarsRequest {
                req_id,
                contract: contract.clone(),
                // IB ignores it (only 5-second bars exist); its own client sends 5.
                bar_size: 5,
                what_to_show: what_to_show.as_str().to_owned(),
                use_rth: *use_rth,
            })),
            Self::TickByTick { contract, kind } => {
                Request::Market(MarketRequest::TickByTick(TickByTickRequest {
                    req_id,
                    contract: contract.clone(),
                    tick_type: kind.as_str().to_owned(),
                    number_of_ticks: 0,
                    ignore_size: matches!(kind, TickByTickKind::BidAsk { ignore_size: true }),
                }))
            }
            Self::BarUpdates(q) => {
                Request::ReqHistoricalData(Self::bar_updates_query(q).to_wire(req_id))
            }
        }
    }
}

impl StreamKind {
    /// IB's cancel of a stream of this kind under `req_id`.
    pub fn cancel(self, req_id: i32) -> Request {
        match self {
            Self::MarketData => Request::Market(MarketRequest::CancelMktData { req_id }),
            Self::RealTimeBars => Request::Market(MarketRequest::CancelRealTimeBars { req_id }),
            Self::TickByTick => Request::Market(MarketRequest::CancelTickByTick { req_id }),
            Self::BarUpdates => Request::CancelHistoricalData { req_id },
        }
    }
}

/// What a gateway sends on an open stream, typed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamData {
    /// A level-1 tick.
    Tick(Tick),
    /// A 5-second bar.
    RealTimeBar(RealTimeBar),
    /// A tick-by-tick tick.
    TickByTick(TickByTick),
    /// A bar of a [`StreamQuery::BarUpdates`] stream: the initial bars, then the forming bar
    /// (repeated with the same time while it forms).
    Bar(Bar),
    /// The type of data served: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen.
    MarketDataType(i32),
    /// The subscription's tick parameters.
    TickParams {
        /// Minimum tick, as text.
        min_tick: String,
        /// BBO exchange.
        bbo_exchange: String,
        /// Snapshot permissions.
        snapshot_permissions: i32,
    },
    /// An advisory from IB about this stream that does not end it (e.g. 10167 "Displaying
    /// delayed market data", 10090 "Part of requested market data is not subscribed").
    Notice {
        /// IB's code.
        code: i32,
        /// IB's text.
        message: String,
    },
}

impl StreamData {
    /// The data a streaming reply carries (`None` for the end of a snapshot).
    pub fn from_reply(reply: MarketReply) -> Option<Self> {
        if let Some(tick) = Tick::from_reply(&reply) {
            return Some(Self::Tick(tick));
        }
        Some(match reply {
            MarketReply::RealTimeBar { bar, .. } => Self::RealTimeBar(bar),
            MarketReply::TickByTick { tick, .. } => Self::TickByTick(tick),
            MarketReply::MarketDataType {
                market_data_type, ..
            } => Self::MarketDataType(market_data_type),
            MarketReply::TickReqParams {
                min_tick,
                bbo_exchange,
                snapshot_permissions,
                ..
            } => Self::TickParams {
                min_tick,
                bbo_exchange,
                snapshot_permissions,
            },
            _ => return None,
        })
    }
}

/// What a caller's stream yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamItem {
    /// Data from the gateway.
    Data(StreamData),
    /// The stream stopped (connection lost, 1101 "data lost", a bust): it is being requested
    /// again; nothing arrives until [`StreamItem::Gap`].
    Interrupted {
        /// When it stopped (wall clock).
        at: UnixMillis,
        /// Why, in words.
        reason: String,
    },
    /// The stream flows again after a re-request: nothing was received between `from` (the
    /// last data, or the interruption) and `to` (the re-request).
    Gap {
        /// Last data before the gap (wall clock).
        from: UnixMillis,
        /// The re-request (wall clock).
        to: UnixMillis,
    },
    /// The consumer fell behind: `dropped` ticks were conflated or dropped since the last item
    /// ([`StreamBuffer`]'s policy).
    Lagged {
        /// How many.
        dropped: u64,
    },
}

#[cfg(test)]
mod tests;
