//! Server → client streaming replies: ticks, real-time bars and tick-by-tick, in both forms
//! (docs/ib-facts.md#message-layouts). Sizes are IB decimals (text from server 163, strings in
//! protobuf), carried as `f64`.

use bytes::BytesMut;

use crate::message::convert::{decimal, opt_str, opt_true, str_or_empty};
use crate::message::ids::incoming as id;
use crate::message::{decode_proto, proto, Direction};
use crate::wire::fields::format_f64;
use crate::wire::{
    version, DecodeError, EncodeError, FieldReader, FieldWriter, Frame, FrameEncoder,
};

/// One 5-second bar of `reqRealTimeBars`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RealTimeBar {
    /// Bar start, epoch seconds.
    pub time: i64,
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Volume.
    pub volume: f64,
    /// Volume-weighted average price.
    pub wap: f64,
    /// Trade count.
    pub count: i32,
}

/// One tick of `reqTickByTickData`.
#[derive(Debug, Clone, PartialEq)]
pub enum TickByTick {
    /// A trade (`Last`, or `AllLast` when `all`).
    Last {
        /// `AllLast` (every exchange's trades, odd lots included) rather than `Last`.
        all: bool,
        /// Epoch seconds.
        time: i64,
        /// Price.
        price: f64,
        /// Size.
        size: f64,
        /// Trade outside the limit (attribute bit 0).
        past_limit: bool,
        /// Unreported trade (attribute bit 1).
        unreported: bool,
        /// Exchange.
        exchange: String,
        /// Special conditions.
        special_conditions: String,
    },
    /// A quote change.
    BidAsk {
        /// Epoch seconds.
        time: i64,
        /// Bid.
        bid: f64,
        /// Ask.
        ask: f64,
        /// Bid size.
        bid_size: f64,
        /// Ask size.
        ask_size: f64,
        /// Bid below the day's low (attribute bit 0).
        bid_past_low: bool,
        /// Ask above the day's high (attribute bit 1).
        ask_past_high: bool,
    },
    /// A midpoint change.
    MidPoint {
        /// Epoch seconds.
        time: i64,
        /// Midpoint.
        mid: f64,
    },
}

impl TickByTick {
    /// IB's tick type number on the wire: 1 Last, 2 AllLast, 3 BidAsk, 4 MidPoint.
    pub fn type_code(&self) -> i32 {
        match self {
            Self::Last { all: false, .. } => 1,
            Self::Last { all: true, .. } => 2,
            Self::BidAsk { .. } => 3,
            Self::MidPoint { .. } => 4,
        }
    }

    /// Its time, epoch seconds.
    pub fn time(&self) -> i64 {
        match self {
            Self::Last { time, .. } | Self::BidAsk { time, .. } | Self::MidPoint { time, .. } => {
                *time
            }
        }
    }
}

/// The streaming replies ([`Response::Market`](crate::message::Response::Market)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MarketReply {
    /// A price tick (bid, ask, last, …), with the size for bid/ask/last.
    TickPrice {
        /// Request id.
        req_id: i32,
        /// IB's tick type (1 bid, 2 ask, 4 last, 6 high, 7 low, 9 close, 14 open, 66–76 delayed).
        tick_type: i32,
        /// Price.
        price: f64,
        /// The size carried with it (`None`: absent in protobuf).
        size: Option<f64>,
        /// Bits: 1 can auto-execute, 2 past limit, 4 pre-open.
        attr_mask: i32,
    },
    /// A size tick (bid size, ask size, last size, volume, …).
    TickSize {
        /// Request id.
        req_id: i32,
        /// IB's tick type (0 bid size, 3 ask size, 5 last size, 8 volume, …).
        tick_type: i32,
        /// Size.
        size: f64,
    },
    /// A text tick (e.g. 45 last timestamp).
    TickString {
        /// Request id.
        req_id: i32,
        /// IB's tick type.
        tick_type: i32,
        /// Value.
        value: String,
    },
    /// A numeric generic tick (e.g. 49 halted).
    TickGeneric {
        /// Request id.
        req_id: i32,
        /// IB's tick type.
        tick_type: i32,
        /// Value.
        value: f64,
    },
    /// A snapshot is complete.
    TickSnapshotEnd {
        /// Request id.
        req_id: i32,
    },
    /// The type of data a subscription is served: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen.
    MarketDataType {
        /// Request id.
        req_id: i32,
        /// The type.
        market_data_type: i32,
    },
    /// A subscription's tick parameters.
    TickReqParams {
        /// Request id.
        req_id: i32,
        /// Minimum tick, as text.
        min_tick: String,
        /// BBO exchange.
        bbo_exchange: String,
        /// Snapshot permissions.
        snapshot_permissions: i32,
    },
    /// A 5-second bar.
    RealTimeBar {
        /// Request id.
        req_id: i32,
        /// The bar.
        bar: RealTimeBar,
    },
    /// A tick-by-tick tick.
    TickByTick {
        /// Request id.
        req_id: i32,
        /// The tick.
        tick: TickByTick,
    },
}

impl MarketReply {
    /// The name of a streaming reply id.
    pub(crate) fn text_name(msg_id: i32) -> Option<&'static str> {
        Some(match msg_id {
            id::TICK_PRICE => "TickPrice",
            id::TICK_SIZE => "TickSize",
            id::TICK_STRING => "TickString",
            id::TICK_GENERIC => "TickGeneric",
            id::TICK_SNAPSHOT_END => "TickSnapshotEnd",
            id::MARKET_DATA_TYPE => "MarketDataType",
            id::TICK_REQ_PARAMS => "TickReqParams",
            id::REAL_TIME_BARS => "RealTimeBar",
            id::TICK_BY_TICK => "TickByTick",
            _ => return None,
        })
    }

    /// Whether `msg_id` is one of these replies.
    pub(crate) fn is_id(msg_id: i32) -> bool {
        Self::text_name(msg_id).is_some()
    }

    /// Message name for errors and logs.
    pub fn name(&self) -> &'static str {
        Self::text_name(self.id()).unwrap_or("Unknown")
    }

    /// The wire message id.
    pub fn id(&self) -> i32 {
        match self {
            Self::TickPrice { .. } => id::TICK_PRICE,
            Self::TickSize { .. } => id::TICK_SIZE,
            Self::TickString { .. } => id::TICK_STRING,
            Self::TickGeneric { .. } => id::TICK_GENERIC,
            Self::TickSnapshotEnd { .. } => id::TICK_SNAPSHOT_END,
            Self::MarketDataType { .. } => id::MARKET_DATA_TYPE,
            Self::TickReqParams { .. } => id::TICK_REQ_PARAMS,
            Self::RealTimeBar { .. } => id::REAL_TIME_BARS,
            Self::TickByTick { .. } => id::TICK_BY_TICK,
        }
    }

    /// The request id.
    pub fn req_id(&self) -> i32 {
        match self {
            Self::TickPrice { req_id, .. }
            | Self::TickSize { req_id, .. }
            | Self::TickString { req_id, .. }
            | Self::TickGeneric { req_id, .. }
            | Self::TickSnapshotEnd { req_id }
            | Self::MarketDataType { req_id, .. }
            | Self::TickReqParams { req_id, .. }
            | Self::RealTimeBar { req_id, .. }
            | Self::TickByTick { req_id, .. } => *req_id,
        }
    }

    /// (first protobuf version, first version the message exists at): replies follow the
    /// threshold of the request family they answer.
    pub(crate) fn versions(&self) -> (i32, i32) {
        match self {
            Self::RealTimeBar { .. } => (version::PROTOBUF_HISTORICAL_DATA, 0),
            Self::TickByTick { .. } => (version::PROTOBUF_HISTORICAL_DATA, version::TICK_BY_TICK),
            _ => (version::PROTOBUF_MARKET_DATA, 0),
        }
    }

    pub(crate) fn encode_proto(
        &self,
        enc: &FrameEncoder,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let (name, id) = (self.name(), self.id());
        let dec = |v: f64| Some(format_f64(v));
        match self {
            Self::TickPrice {
                req_id,
                tick_type,
                price,
                size,
                attr_mask,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::TickPrice {
                    req_id: Some(*req_id),
                    tick_type: Some(*tick_type),
                    price: Some(*price),
                    size: size.map(format_f64),
                    attr_mask: Some(*attr_mask),
                },
            ),
            Self::TickSize {
                req_id,
                tick_type,
                size,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::TickSize {
                    req_id: Some(*req_id),
                    tick_type: Some(*tick_type),
                    size: dec(*size),
                },
            ),
            Self::TickString {
                req_id,
                tick_type,
                value,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::TickString {
                    req_id: Some(*req_id),
                    tick_type: Some(*tick_type),
                    value: opt_str(value),
                },
            ),
            Self::TickGeneric {
                req_id,
                tick_type,
                value,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::TickGeneric {
                    req_id: Some(*req_id),
                    tick_type: Some(*tick_type),
                    value: Some(*value),
                },
            ),
            Self::TickSnapshotEnd { req_id } => enc.protobuf(
                out,
                name,
                id,
                &proto::ReqIdOnly {
                    req_id: Some(*req_id),
                },
            ),
            Self::MarketDataType {
                req_id,
                market_data_type,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::MarketDataType {
                    req_id: Some(*req_id),
                    market_data_type: Some(*market_data_type),
                },
            ),
            Self::TickReqParams {
                req_id,
                min_tick,
                bbo_exchange,
                snapshot_permissions,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::TickReqParams {
                    req_id: Some(*req_id),
                    min_tick: opt_str(min_tick),
                    bbo_exchange: opt_str(bbo_exchange),
                    snapshot_permissions: Some(*snapshot_permissions),
                    last_price_precision: None,
                    last_size_precision: None,
                },
            ),
            Self::RealTimeBar { req_id, bar } => enc.protobuf(
                out,
                name,
                id,
                &proto::RealTimeBarTick {
                    req_id: Some(*req_id),
                    time: Some(bar.time),
                    open: Some(bar.open),
                    high: Some(bar.high),
                    low: Some(bar.low),
                    close: Some(bar.close),
                    volume: dec(bar.volume),
                    wap: dec(bar.wap),
                    count: Some(bar.count),
                },
            ),
            Self::TickByTick { req_id, tick } => enc.protobuf(
                out,
                name,
                id,
                &proto::TickByTickData {
                    req_id: Some(*req_id),
                    tick_type: Some(tick.type_code()),
                    tick: Some(tick_to_proto(tick)),
                },
            ),
        }
    }

    pub(crate) fn decode_proto(frame: &Frame) -> Result<Self, DecodeError> {
        let (d, body) = (Direction::ToClient, &frame.body);
        let name = Self::text_name(frame.id).unwrap_or("Unknown");
        let num = |s: Option<String>, field| decimal(s.as_deref(), 0.0, name, field);
        Ok(match frame.id {
            id::TICK_PRICE => {
                let p: proto::TickPrice = decode_proto(d, frame.id, body)?;
                let size = match p.size.as_deref() {
                    None | Some("") => None,
                    Some(s) => Some(decimal(Some(s), 0.0, name, "size")?),
                };
                Self::TickPrice {
                    req_id: p.req_id.unwrap_or(0),
                    tick_type: p.tick_type.unwrap_or(0),
                    price: p.price.unwrap_or(0.0),
                    size,
                    attr_mask: p.attr_mask.unwrap_or(0),
                }
            }
            id::TICK_SIZE => {
                let p: proto::TickSize = decode_proto(d, frame.id, body)?;
                Self::TickSize {
                    req_id: p.req_id.unwrap_or(0),
                    tick_type: p.tick_type.unwrap_or(0),
                    size: num(p.size, "size")?,
                }
            }
            id::TICK_STRING => {
                let p: proto::TickString = decode_proto(d, frame.id, body)?;
                Self::TickString {
                    req_id: p.req_id.unwrap_or(0),
                    tick_type: p.tick_type.unwrap_or(0),
                    value: str_or_empty(p.value),
                }
            }
            id::TICK_GENERIC => {
                let p: proto::TickGeneric = decode_proto(d, frame.id, body)?;
                Self::TickGeneric {
                    req_id: p.req_id.unwrap_or(0),
                    tick_type: p.tick_type.unwrap_or(0),
                    value: p.value.unwrap_or(0.0),
                }
            }
            id::TICK_SNAPSHOT_END => {
                let p: proto::ReqIdOnly = decode_proto(d, frame.id, body)?;
                Self::TickSnapshotEnd {
                    req_id: p.req_id.unwrap_or(0),
                }
            }
            id::MARKET_DATA_TYPE => {
                let p: proto::MarketDataType = decode_proto(d, frame.id, body)?;
                Self::MarketDataType {
                    req_id: p.req_id.unwrap_or(0),
                    market_data_type: p.market_data_type.unwrap_or(0),
                }
            }
            id::TICK_REQ_PARAMS => {
                let p: proto::TickReqParams = decode_proto(d, frame.id, body)?;
                Self::TickReqParams {
                    req_id: p.req_id.unwrap_or(0),
                    min_tick: str_or_empty(p.min_tick),
                    bbo_exchange: str_or_empty(p.bbo_exchange),
                    snapshot_permissions: p.snapshot_permissions.unwrap_or(0),
                }
            }
            id::REAL_TIME_BARS => {
                let p: proto::RealTimeBarTick = decode_proto(d, frame.id, body)?;
                Self::RealTimeBar {
                    req_id: p.req_id.unwrap_or(0),
                    bar: RealTimeBar {
                        time: p.time.unwrap_or(0),
                        open: p.open.unwrap_or(0.0),
                        high: p.high.unwrap_or(0.0),
                        low: p.low.unwrap_or(0.0),
                        close: p.close.unwrap_or(0.0),
                        volume: num(p.volume, "volume")?,
                        wap: num(p.wap, "wap")?,
                        count: p.count.unwrap_or(0),
                    },
                }
            }
            _ => {
                let p: proto::TickByTickData = decode_proto(d, frame.id, body)?;
                let tick_type = p.tick_type.unwrap_or(0);
                let tick = match p.tick {
                    Some(proto::TickByTickTick::Last(t)) => {
                        let attr = t.tick_attrib_last.unwrap_or_default();
                        TickByTick::Last {
                            all: tick_type == 2,
                            time: t.time.unwrap_or(0),
                            price: t.price.unwrap_or(0.0),
                            size: num(t.size, "size")?,
                            past_limit: attr.past_limit.unwrap_or(false),
                            unreported: attr.unreported.unwrap_or(false),
                            exchange: str_or_empty(t.exchange),
                            special_conditions: str_or_empty(t.special_conditions),
                        }
                    }
                    Some(proto::TickByTickTick::BidAsk(t)) => {
                        let attr = t.tick_attrib_bid_ask.unwrap_or_default();
                        TickByTick::BidAsk {
                            time: t.time.unwrap_or(0),
                            bid: t.price_bid.unwrap_or(0.0),
                            ask: t.price_ask.unwrap_or(0.0),
                            bid_size: num(t.size_bid, "size_bid")?,
                            ask_size: num(t.size_ask, "size_ask")?,
                            bid_past_low: attr.bid_past_low.unwrap_or(false),
                            ask_past_high: attr.ask_past_high.unwrap_or(false),
                        }
                    }
                    Some(proto::TickByTickTick::MidPoint(t)) => TickByTick::MidPoint {
                        time: t.time.unwrap_or(0),
                        mid: t.price.unwrap_or(0.0),
                    },
                    None => {
                        return Err(DecodeError::Absent {
                            msg: name,
                            field: "tick",
                        })
                    }
                };
                Self::TickByTick {
                    req_id: p.req_id.unwrap_or(0),
                    tick,
                }
            }
        })
    }

    /// The text form's fields after the id (IB's server layouts; ticks at version 6).
    pub(crate) fn write_text(&self, w: &mut FieldWriter<'_>, sv: i32) {
        let size = |w: &mut FieldWriter<'_>, field, v: f64| {
            if sv >= version::FRACTIONAL_SIZE_SUPPORT {
                w.f64(field, v);
            } else {
                w.i64(field, v as i64);
            }
        };
        match self {
            Self::TickPrice {
                req_id,
                tick_type,
                price,
                size: sz,
                attr_mask,
            } => {
                w.i32("version", 6)
                    .i32("req_id", *req_id)
                    .i32("tick_type", *tick_type)
                    .f64("price", *price);
                size(w, "size", sz.unwrap_or(0.0));
                w.i32("attr_mask", *attr_mask);
            }
            Self::TickSize {
                req_id,
                tick_type,
                size: sz,
            } => {
                w.i32("version", 6)
                    .i32("req_id", *req_id)
                    .i32("tick_type", *tick_type);
                size(w, "size", *sz);
            }
            Self::TickString {
                req_id,
                tick_type,
                value,
            } => {
                w.i32("version", 6)
                    .i32("req_id", *req_id)
                    .i32("tick_type", *tick_type)
                    .str("value", value);
            }
            Self::TickGeneric {
                req_id,
                tick_type,
                value,
            } => {
                w.i32("version", 6)
                    .i32("req_id", *req_id)
                    .i32("tick_type", *tick_type)
                    .f64("value", *value);
            }
            Self::TickSnapshotEnd { req_id } => {
                w.i32("version", 1).i32("req_id", *req_id);
            }
            Self::MarketDataType {
                req_id,
                market_data_type,
            } => {
                w.i32("version", 1)
                    .i32("req_id", *req_id)
                    .i32("market_data_type", *market_data_type);
            }
            Self::TickReqParams {
                req_id,
                min_tick,
                bbo_exchange,
                snapshot_permissions,
            } => {
                w.i32("req_id", *req_id)
                    .str("min_tick", min_tick)
                    .str("bbo_exchange", bbo_exchange)
                    .i32("snapshot_permissions", *snapshot_permissions);
            }
            Self::RealTimeBar { req_id, bar } => {
                w.i32("version", 3)
                    .i32("req_id", *req_id)
                    .i64("time", bar.time)
                    .f64("open", bar.open)
                    .f64("high", bar.high)
                    .f64("low", bar.low)
                    .f64("close", bar.close);
                size(w, "volume", bar.volume);
                w.f64("wap", bar.wap).i32("count", bar.count);
            }
            Self::TickByTick { req_id, tick } => {
                w.i32("req_id", *req_id)
                    .i32("tick_type", tick.type_code())
                    .i64("time", tick.time());
                match tick {
                    TickByTick::Last {
                        price,
                        size: sz,
                        past_limit,
                        unreported,
                        exchange,
                        special_conditions,
                        ..
                    } => {
                        w.f64("price", *price);
                        size(w, "size", *sz);
                        w.i32(
                            "mask",
                            i32::from(*past_limit) | (i32::from(*unreported) << 1),
                        )
                        .str("exchange", exchange)
                        .str("special_conditions", special_conditions);
                    }
                    TickByTick::BidAsk {
                        bid,
                        ask,
                        bid_size,
                        ask_size,
                        bid_past_low,
                        ask_past_high,
                        ..
                    } => {
                        w.f64("bid", *bid).f64("ask", *ask);
                        size(w, "bid_size", *bid_size);
                        size(w, "ask_size", *ask_size);
                        w.i32(
                            "mask",
                            i32::from(*bid_past_low) | (i32::from(*ask_past_high) << 1),
                        );
                    }
                    TickByTick::MidPoint { mid, .. } => {
                        w.f64("mid", *mid);
                    }
                }
            }
        }
    }

    /// Read a text streaming reply's fields after the id.
    pub(crate) fn read_text(msg_id: i32, r: &mut FieldReader<'_>) -> Result<Self, DecodeError> {
        Ok(match msg_id {
            id::TICK_PRICE => {
                let version = r.i32("version")?;
                let req_id = r.i32("req_id")?;
                let tick_type = r.i32("tick_type")?;
                let price = r.f64("price")?;
                let size = if version >= 2 {
                    r.opt_f64("size")?
                } else {
                    None
                };
                let attr_mask = if version >= 3 { r.i32("attr_mask")? } else { 0 };
                Self::TickPrice {
                    req_id,
                    tick_type,
                    price,
                    size,
                    attr_mask,
                }
            }
            id::TICK_SIZE => {
                r.i32("version")?;
                Self::TickSize {
                    req_id: r.i32("req_id")?,
                    tick_type: r.i32("tick_type")?,
                    size: r.f64("size")?,
                }
            }
            id::TICK_STRING => {
                r.i32("version")?;
                Self::TickString {
                    req_id: r.i32("req_id")?,
                    tick_type: r.i32("tick_type")?,
                    value: r.string("value")?,
                }
            }
            id::TICK_GENERIC => {
                r.i32("version")?;
                Self::TickGeneric {
                    req_id: r.i32("req_id")?,
                    tick_type: r.i32("tick_type")?,
                    value: r.f64("value")?,
                }
            }
            id::TICK_SNAPSHOT_END => {
                r.i32("version")?;
                Self::TickSnapshotEnd {
                    req_id: r.i32("req_id")?,
                }
            }
            id::MARKET_DATA_TYPE => {
                r.i32("version")?;
                Self::MarketDataType {
                    req_id: r.i32("req_id")?,
                    market_data_type: r.i32("market_data_type")?,
                }
            }
            id::TICK_REQ_PARAMS => Self::TickReqParams {
                req_id: r.i32("req_id")?,
                min_tick: r.string("min_tick")?,
                bbo_exchange: r.string("bbo_exchange")?,
                snapshot_permissions: r.i32("snapshot_permissions")?,
            },
            id::REAL_TIME_BARS => {
                r.i32("version")?;
                let req_id = r.i32("req_id")?;
                Self::RealTimeBar {
                    req_id,
                    bar: RealTimeBar {
                        time: r.i64("time")?,
                        open: r.f64("open")?,
                        high: r.f64("high")?,
                        low: r.f64("low")?,
                        close: r.f64("close")?,
                        volume: r.f64("volume")?,
                        wap: r.f64("wap")?,
                        count: r.i32("count")?,
                    },
                }
            }
            _ => {
                let req_id = r.i32("req_id")?;
                let tick_type = r.i32("tick_type")?;
                let time = r.i64("time")?;
                let tick = match tick_type {
                    1 | 2 => {
                        let price = r.f64("price")?;
                        let size = r.f64("size")?;
                        let mask = r.i32("mask")?;
                        TickByTick::Last {
                            all: tick_type == 2,
                            time,
                            price,
                            size,
                            past_limit: mask & 1 != 0,
                            unreported: mask & 2 != 0,
                            exchange: r.string("exchange")?,
                            special_conditions: r.string("special_conditions")?,
                        }
                    }
                    3 => {
                        let (bid, ask) = (r.f64("bid")?, r.f64("ask")?);
                        let (bid_size, ask_size) = (r.f64("bid_size")?, r.f64("ask_size")?);
                        let mask = r.i32("mask")?;
                        TickByTick::BidAsk {
                            time,
                            bid,
                            ask,
                            bid_size,
                            ask_size,
                            bid_past_low: mask & 1 != 0,
                            ask_past_high: mask & 2 != 0,
                        }
                    }
                    4 => TickByTick::MidPoint {
                        time,
                        mid: r.f64("mid")?,
                    },
                    other => {
                        return Err(DecodeError::BadNumber {
                            msg: "TickByTick",
                            field: "tick_type",
                            value: other.to_string(),
                            kind: "tick-by-tick type (1-4)",
                        })
                    }
                };
                Self::TickByTick { req_id, tick }
            }
        })
    }
}

fn tick_to_proto(tick: &TickByTick) -> proto::TickByTickTick {
    let dec = |v: f64| Some(format_f64(v));
    let attr = |a: bool, b: bool| (a || b).then_some((opt_true(a), opt_true(b)));
    match tick {
        TickByTick::Last {
            time,
            price,
            size,
            past_limit,
            unreported,
            exchange,
            special_conditions,
            ..
        } => proto::TickByTickTick::Last(proto::HistoricalTickLast {
            time: Some(*time),
            tick_attrib_last: attr(*past_limit, *unreported).map(|(p, u)| proto::TickAttribLast {
                past_limit: p,
                unreported: u,
            }),
            price: Some(*price),
            size: dec(*size),
            exchange: opt_str(exchange),
            special_conditions: opt_str(special_conditions),
        }),
        TickByTick::BidAsk {
            time,
            bid,
            ask,
            bid_size,
            ask_size,
            bid_past_low,
            ask_past_high,
        } => proto::TickByTickTick::BidAsk(proto::HistoricalTickBidAsk {
            time: Some(*time),
            tick_attrib_bid_ask: attr(*bid_past_low, *ask_past_high).map(|(l, h)| {
                proto::TickAttribBidAsk {
                    bid_past_low: l,
                    ask_past_high: h,
                }
            }),
            price_bid: Some(*bid),
            price_ask: Some(*ask),
            size_bid: dec(*bid_size),
            size_ask: dec(*ask_size),
        }),
        TickByTick::MidPoint { time, mid } => {
            proto::TickByTickTick::MidPoint(proto::HistoricalTick {
                time: Some(*time),
                price: Some(*mid),
                size: None,
            })
        }
    }
}
