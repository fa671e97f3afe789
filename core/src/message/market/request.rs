//! Client → server streaming requests: `reqMktData`, `reqMarketDataType`, `reqRealTimeBars`,
//! `reqTickByTickData` and their cancels, in both forms (docs/ib-facts.md#message-layouts).

use bytes::BytesMut;

use crate::message::contract::Contract;
use crate::message::convert::{opt_str, opt_true, str_or_empty};
use crate::message::ids::outgoing as id;
use crate::message::{decode_proto, proto, Direction};
use crate::wire::{
    version, DecodeError, EncodeError, FieldReader, FieldWriter, Frame, FrameEncoder,
};

/// `reqMktData` as it travels: level-1 ticks (or one snapshot) of a contract.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarketDataRequest {
    /// Request id, echoed in every tick.
    pub req_id: i32,
    /// The instrument.
    pub contract: Contract,
    /// Comma-separated generic tick ids (e.g. `233,236`); empty = the default ticks.
    pub generic_ticks: String,
    /// One snapshot of the default ticks, then `tickSnapshotEnd`.
    pub snapshot: bool,
    /// A regulatory snapshot (charged by IB; text servers from 114).
    pub regulatory_snapshot: bool,
}

/// `reqRealTimeBars` as it travels: 5-second bars.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealTimeBarsRequest {
    /// Request id.
    pub req_id: i32,
    /// The instrument.
    pub contract: Contract,
    /// Bar size in seconds; IB ignores it (always 5), ibapi sends 0, IB's own client 5.
    pub bar_size: i32,
    /// `TRADES`, `MIDPOINT`, `BID` or `ASK`.
    pub what_to_show: String,
    /// Regular trading hours only.
    pub use_rth: bool,
}

/// `reqTickByTickData` as it travels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickByTickRequest {
    /// Request id.
    pub req_id: i32,
    /// The instrument.
    pub contract: Contract,
    /// `Last`, `AllLast`, `BidAsk` or `MidPoint` (IB's spelling, case-sensitive).
    pub tick_type: String,
    /// Historical ticks sent first (0–1000).
    pub number_of_ticks: i32,
    /// BidAsk only: ignore size-only changes.
    pub ignore_size: bool,
}

/// The streaming requests ([`Request::Market`](crate::message::Request::Market)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MarketRequest {
    /// Level-1 market data.
    MktData(MarketDataRequest),
    /// Stop a market-data subscription.
    CancelMktData {
        /// Its request id.
        req_id: i32,
    },
    /// Which data the following market-data requests get: 1 live, 2 frozen, 3 delayed,
    /// 4 delayed-frozen.
    MarketDataType {
        /// The type.
        market_data_type: i32,
    },
    /// 5-second real-time bars.
    RealTimeBars(RealTimeBarsRequest),
    /// Stop real-time bars.
    CancelRealTimeBars {
        /// Its request id.
        req_id: i32,
    },
    /// Tick-by-tick data.
    TickByTick(TickByTickRequest),
    /// Stop tick-by-tick data.
    CancelTickByTick {
        /// Its request id.
        req_id: i32,
    },
}

impl MarketRequest {
    /// Whether `msg_id` is one of these requests.
    pub(crate) fn is_id(msg_id: i32) -> bool {
        Self::text_name(msg_id).is_some()
    }

    /// The name of a streaming request id.
    pub(crate) fn text_name(msg_id: i32) -> Option<&'static str> {
        Some(match msg_id {
            id::REQ_MKT_DATA => "ReqMktData",
            id::CANCEL_MKT_DATA => "CancelMktData",
            id::REQ_MARKET_DATA_TYPE => "ReqMarketDataType",
            id::REQ_REAL_TIME_BARS => "ReqRealTimeBars",
            id::CANCEL_REAL_TIME_BARS => "CancelRealTimeBars",
            id::REQ_TICK_BY_TICK_DATA => "ReqTickByTickData",
            id::CANCEL_TICK_BY_TICK_DATA => "CancelTickByTickData",
            _ => return None,
        })
    }

    /// Message name for errors and logs.
    pub fn name(&self) -> &'static str {
        Self::text_name(self.id()).unwrap_or("Unknown")
    }

    /// The wire message id.
    pub fn id(&self) -> i32 {
        match self {
            Self::MktData(_) => id::REQ_MKT_DATA,
            Self::CancelMktData { .. } => id::CANCEL_MKT_DATA,
            Self::MarketDataType { .. } => id::REQ_MARKET_DATA_TYPE,
            Self::RealTimeBars(_) => id::REQ_REAL_TIME_BARS,
            Self::CancelRealTimeBars { .. } => id::CANCEL_REAL_TIME_BARS,
            Self::TickByTick(_) => id::REQ_TICK_BY_TICK_DATA,
            Self::CancelTickByTick { .. } => id::CANCEL_TICK_BY_TICK_DATA,
        }
    }

    /// The request id, if the message carries one.
    pub fn req_id(&self) -> Option<i32> {
        match self {
            Self::MktData(r) => Some(r.req_id),
            Self::RealTimeBars(r) => Some(r.req_id),
            Self::TickByTick(r) => Some(r.req_id),
            Self::CancelMktData { req_id }
            | Self::CancelRealTimeBars { req_id }
            | Self::CancelTickByTick { req_id } => Some(*req_id),
            Self::MarketDataType { .. } => None,
        }
    }

    /// (first protobuf version, first version the message exists at).
    pub(crate) fn versions(&self) -> (i32, i32) {
        match self {
            Self::MktData(_) | Self::CancelMktData { .. } | Self::MarketDataType { .. } => {
                (version::PROTOBUF_MARKET_DATA, 0)
            }
            Self::RealTimeBars(_) | Self::CancelRealTimeBars { .. } => {
                (version::PROTOBUF_HISTORICAL_DATA, 0)
            }
            Self::TickByTick(_) | Self::CancelTickByTick { .. } => {
                (version::PROTOBUF_HISTORICAL_DATA, version::TICK_BY_TICK)
            }
        }
    }

    /// The protobuf form, field for field as ibapi 5.5 builds it (unset = absent).
    pub(crate) fn encode_proto(
        &self,
        enc: &FrameEncoder,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let (name, id) = (self.name(), self.id());
        match self {
            Self::MktData(r) => enc.protobuf(
                out,
                name,
                id,
                &proto::MarketDataRequest {
                    req_id: Some(r.req_id),
                    contract: Some(r.contract.to_proto()),
                    generic_tick_list: opt_str(&r.generic_ticks),
                    snapshot: opt_true(r.snapshot),
                    regulatory_snapshot: opt_true(r.regulatory_snapshot),
                    market_data_options: Default::default(),
                },
            ),
            Self::MarketDataType { market_data_type } => enc.protobuf(
                out,
                name,
                id,
                &proto::MarketDataTypeRequest {
                    market_data_type: Some(*market_data_type),
                },
            ),
            Self::RealTimeBars(r) => enc.protobuf(
                out,
                name,
                id,
                &proto::RealTimeBarsRequest {
                    req_id: Some(r.req_id),
                    contract: Some(r.contract.to_proto()),
                    bar_size: Some(r.bar_size),
                    what_to_show: Some(r.what_to_show.clone()),
                    use_rth: opt_true(r.use_rth),
                    real_time_bars_options: Default::default(),
                },
            ),
            Self::TickByTick(r) => enc.protobuf(
                out,
                name,
                id,
                &proto::TickByTickRequest {
                    req_id: Some(r.req_id),
                    contract: Some(r.contract.to_proto()),
                    tick_type: opt_str(&r.tick_type),
                    number_of_ticks: Some(r.number_of_ticks),
                    ignore_size: opt_true(r.ignore_size),
                },
            ),
            Self::CancelMktData { req_id }
            | Self::CancelRealTimeBars { req_id }
            | Self::CancelTickByTick { req_id } => enc.protobuf(
                out,
                name,
                id,
                &proto::ReqIdOnly {
                    req_id: Some(*req_id),
                },
            ),
        }
    }

    /// The text form's fields after the id (IB's client layouts).
    pub(crate) fn write_text(&self, w: &mut FieldWriter<'_>, sv: i32) {
        match self {
            Self::MktData(r) => {
                w.i32("version", 11).i32("req_id", r.req_id);
                r.contract.write_request_fields(w);
                // No combo legs (BAG) and no delta-neutral contract.
                w.bool("delta_neutral", false)
                    .str("generic_ticks", &r.generic_ticks)
                    .bool("snapshot", r.snapshot);
                if sv >= version::REGULATORY_SNAPSHOT {
                    w.bool("regulatory_snapshot", r.regulatory_snapshot);
                }
                if sv >= version::LINKING {
                    w.str("options", "");
                }
            }
            Self::CancelMktData { req_id } => {
                w.i32("version", 2).i32("req_id", *req_id);
            }
            Self::MarketDataType { market_data_type } => {
                w.i32("version", 1)
                    .i32("market_data_type", *market_data_type);
            }
            Self::RealTimeBars(r) => {
                w.i32("version", 3).i32("req_id", r.req_id);
                r.contract.write_request_fields(w);
                w.i32("bar_size", r.bar_size)
                    .str("what_to_show", &r.what_to_show)
                    .bool("use_rth", r.use_rth);
                if sv >= version::LINKING {
                    w.str("options", "");
                }
            }
            Self::CancelRealTimeBars { req_id } => {
                w.i32("version", 1).i32("req_id", *req_id);
            }
            Self::TickByTick(r) => {
                w.i32("req_id", r.req_id);
                r.contract.write_request_fields(w);
                w.str("tick_type", &r.tick_type);
                if sv >= version::TICK_BY_TICK_IGNORE_SIZE {
                    w.i32("number_of_ticks", r.number_of_ticks)
                        .bool("ignore_size", r.ignore_size);
                }
            }
            Self::CancelTickByTick { req_id } => {
                w.i32("req_id", *req_id);
            }
        }
    }

    /// Decode a protobuf streaming request (the gateway side).
    pub(crate) fn decode_proto(frame: &Frame) -> Result<Self, DecodeError> {
        let (d, body) = (Direction::ToServer, &frame.body);
        let contract = |c: Option<proto::Contract>| c.map(Contract::from_proto).unwrap_or_default();
        Ok(match frame.id {
            id::REQ_MKT_DATA => {
                let p: proto::MarketDataRequest = decode_proto(d, frame.id, body)?;
                Self::MktData(MarketDataRequest {
                    req_id: p.req_id.unwrap_or(0),
                    contract: contract(p.contract),
                    generic_ticks: str_or_empty(p.generic_tick_list),
                    snapshot: p.snapshot.unwrap_or(false),
                    regulatory_snapshot: p.regulatory_snapshot.unwrap_or(false),
                })
            }
            id::REQ_MARKET_DATA_TYPE => {
                let p: proto::MarketDataTypeRequest = decode_proto(d, frame.id, body)?;
                Self::MarketDataType {
                    market_data_type: p.market_data_type.unwrap_or(0),
                }
            }
            id::REQ_REAL_TIME_BARS => {
                let p: proto::RealTimeBarsRequest = decode_proto(d, frame.id, body)?;
                Self::RealTimeBars(RealTimeBarsRequest {
                    req_id: p.req_id.unwrap_or(0),
                    contract: contract(p.contract),
                    bar_size: p.bar_size.unwrap_or(0),
                    what_to_show: str_or_empty(p.what_to_show),
                    use_rth: p.use_rth.unwrap_or(false),
                })
            }
            id::REQ_TICK_BY_TICK_DATA => {
                let p: proto::TickByTickRequest = decode_proto(d, frame.id, body)?;
                Self::TickByTick(TickByTickRequest {
                    req_id: p.req_id.unwrap_or(0),
                    contract: contract(p.contract),
                    tick_type: str_or_empty(p.tick_type),
                    number_of_ticks: p.number_of_ticks.unwrap_or(0),
                    ignore_size: p.ignore_size.unwrap_or(false),
                })
            }
            other => {
                let p: proto::ReqIdOnly = decode_proto(d, other, body)?;
                let req_id = p.req_id.unwrap_or(0);
                match other {
                    id::CANCEL_MKT_DATA => Self::CancelMktData { req_id },
                    id::CANCEL_REAL_TIME_BARS => Self::CancelRealTimeBars { req_id },
                    _ => Self::CancelTickByTick { req_id },
                }
            }
        })
    }

    /// Read a text streaming request's fields after the id (the gateway side).
    pub(crate) fn read_text(
        msg_id: i32,
        r: &mut FieldReader<'_>,
        sv: i32,
    ) -> Result<Self, DecodeError> {
        Ok(match msg_id {
            id::REQ_MKT_DATA => {
                r.i32("version")?;
                let req_id = r.i32("req_id")?;
                let contract = Contract::read_request_fields(r)?;
                if contract.sec_type == "BAG" {
                    let legs = r.count("combo_legs", 4)?;
                    for _ in 0..legs {
                        for field in ["leg_con_id", "leg_ratio", "leg_action", "leg_exchange"] {
                            r.str(field)?;
                        }
                    }
                }
                if r.bool("delta_neutral")? {
                    for field in ["dn_con_id", "dn_delta", "dn_price"] {
                        r.str(field)?;
                    }
                }
                let generic_ticks = r.string("generic_ticks")?;
                let snapshot = r.bool("snapshot")?;
                let regulatory_snapshot =
                    sv >= version::REGULATORY_SNAPSHOT && r.bool("regulatory_snapshot")?;
                if sv >= version::LINKING {
                    r.str("options")?;
                }
                Self::MktData(MarketDataRequest {
                    req_id,
                    contract,
                    generic_ticks,
                    snapshot,
                    regulatory_snapshot,
                })
            }
            id::CANCEL_MKT_DATA => {
                r.i32("version")?;
                Self::CancelMktData {
                    req_id: r.i32("req_id")?,
                }
            }
            id::REQ_MARKET_DATA_TYPE => {
                r.i32("version")?;
                Self::MarketDataType {
                    market_data_type: r.i32("market_data_type")?,
                }
            }
            id::REQ_REAL_TIME_BARS => {
                r.i32("version")?;
                let req_id = r.i32("req_id")?;
                let contract = Contract::read_request_fields(r)?;
                let req = RealTimeBarsRequest {
                    req_id,
                    contract,
                    bar_size: r.i32("bar_size")?,
                    what_to_show: r.string("what_to_show")?,
                    use_rth: r.bool("use_rth")?,
                };
                if sv >= version::LINKING {
                    r.str("options")?;
                }
                Self::RealTimeBars(req)
            }
            id::CANCEL_REAL_TIME_BARS => {
                r.i32("version")?;
                Self::CancelRealTimeBars {
                    req_id: r.i32("req_id")?,
                }
            }
            id::REQ_TICK_BY_TICK_DATA => {
                let req_id = r.i32("req_id")?;
                let contract = Contract::read_request_fields(r)?;
                let tick_type = r.string("tick_type")?;
                let (number_of_ticks, ignore_size) = if sv >= version::TICK_BY_TICK_IGNORE_SIZE {
                    (r.i32("number_of_ticks")?, r.bool("ignore_size")?)
                } else {
                    (0, false)
                };
                Self::TickByTick(TickByTickRequest {
                    req_id,
                    contract,
                    tick_type,
                    number_of_ticks,
                    ignore_size,
                })
            }
            _ => Self::CancelTickByTick {
                req_id: r.i32("req_id")?,
            },
        })
    }
}
