//! The protobuf form of every reply (server version 201+, per message): one match over the
//! variants each way, kept together so a new message is added to both directions at once.

use bytes::BytesMut;

use super::{fast_bars, text_name, Bar, ErrorMessage, Response};
use crate::message::contract::{Contract, ContractDescription, ContractDetails};
use crate::message::convert::{opt_str, str_or_empty};
use crate::message::ids::incoming as id;
use crate::message::market::MarketReply;
use crate::message::{decode_proto, proto, repeated, Direction};
use crate::wire::{DecodeError, EncodeError, Form, Frame, FrameEncoder};

impl Response {
    pub(super) fn encode_proto(
        &self,
        enc: &FrameEncoder,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let (name, id) = (self.name(), self.id());
        match self {
            Self::NextValidId { order_id } => enc.protobuf(
                out,
                name,
                id,
                // Always present: ibapi treats an absent id as "not received yet".
                &proto::NextValidId {
                    order_id: Some(*order_id),
                },
            ),
            Self::ManagedAccounts { accounts } => enc.protobuf(
                out,
                name,
                id,
                &proto::ManagedAccounts {
                    accounts_list: Some(accounts.clone()),
                },
            ),
            Self::Error(e) => enc.protobuf(
                out,
                name,
                id,
                &proto::ErrorMessage {
                    id: Some(e.req_id),
                    error_time: e.error_time_ms,
                    error_code: Some(e.code),
                    error_msg: opt_str(&e.message),
                    advanced_order_reject_json: opt_str(&e.advanced_order_reject_json),
                },
            ),
            Self::CurrentTime { time } => enc.protobuf(
                out,
                name,
                id,
                &proto::CurrentTime {
                    current_time: Some(*time),
                },
            ),
            Self::CurrentTimeInMillis { millis } => enc.protobuf(
                out,
                name,
                id,
                &proto::CurrentTimeInMillis {
                    current_time_in_millis: Some(*millis),
                },
            ),
            Self::HistoricalData { req_id, bars, .. } => enc.protobuf(
                out,
                name,
                id,
                &proto::HistoricalData {
                    req_id: Some(*req_id),
                    historical_data_bars: bars.iter().map(Bar::to_proto).collect(),
                },
            ),
            Self::HistoricalDataEnd { req_id, start, end } => enc.protobuf(
                out,
                name,
                id,
                &proto::HistoricalDataEnd {
                    req_id: Some(*req_id),
                    start_date_str: opt_str(start),
                    end_date_str: opt_str(end),
                },
            ),
            Self::HistoricalDataUpdate { req_id, bar } => enc.protobuf(
                out,
                name,
                id,
                &proto::HistoricalDataUpdate {
                    req_id: Some(*req_id),
                    historical_data_bar: Some(bar.to_proto()),
                },
            ),
            Self::HeadTimestamp { req_id, timestamp } => enc.protobuf(
                out,
                name,
                id,
                &proto::HeadTimestamp {
                    req_id: Some(*req_id),
                    head_timestamp: opt_str(timestamp),
                },
            ),
            Self::ContractData {
                req_id,
                contract,
                details,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::ContractData {
                    req_id: Some(*req_id),
                    contract: Some(contract.to_proto()),
                    contract_details: Some(details.to_proto()),
                },
            ),
            Self::ContractDataEnd { req_id } => enc.protobuf(
                out,
                name,
                id,
                &proto::ReqIdOnly {
                    req_id: Some(*req_id),
                },
            ),
            Self::SymbolSamples {
                req_id,
                descriptions,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::SymbolSamples {
                    req_id: Some(*req_id),
                    contract_descriptions: descriptions
                        .iter()
                        .map(ContractDescription::to_proto)
                        .collect(),
                },
            ),
            Self::Market(m) => m.encode_proto(enc, out),
            Self::Unknown { payload, .. } => enc.protobuf_bytes(out, name, id, payload),
        }
    }

    /// `HistoricalData` through prost: the reference the fast path is tested against, and the
    /// decoder of every body the fast path declines (so errors stay exactly as prost reports them).
    pub(super) fn historical_data_prost(body: &[u8]) -> Result<Self, DecodeError> {
        let name = text_name(id::HISTORICAL_DATA);
        let p: proto::HistoricalData =
            decode_proto(Direction::ToClient, id::HISTORICAL_DATA, body)?;
        Ok(Self::HistoricalData {
            req_id: p.req_id.unwrap_or(0),
            start: String::new(),
            end: String::new(),
            bars: p
                .historical_data_bars
                .into_iter()
                .map(|b| Bar::from_proto(b, name))
                .collect::<Result<_, _>>()?,
        })
    }

    pub(super) fn decode_proto(frame: &Frame) -> Result<Self, DecodeError> {
        let body = &frame.body;
        let d = Direction::ToClient;
        let name = text_name(frame.id);
        Ok(match frame.id {
            id::NEXT_VALID_ID => {
                let p: proto::NextValidId = decode_proto(d, frame.id, body)?;
                Self::NextValidId {
                    order_id: p.order_id.ok_or(DecodeError::Absent {
                        msg: name,
                        field: "order_id",
                    })?,
                }
            }
            id::MANAGED_ACCTS => {
                let p: proto::ManagedAccounts = decode_proto(d, frame.id, body)?;
                Self::ManagedAccounts {
                    accounts: p.accounts_list.ok_or(DecodeError::Absent {
                        msg: name,
                        field: "accounts_list",
                    })?,
                }
            }
            id::ERR_MSG => {
                let p: proto::ErrorMessage = decode_proto(d, frame.id, body)?;
                Self::Error(ErrorMessage {
                    req_id: p.id.unwrap_or(-1),
                    code: p.error_code.unwrap_or(0),
                    message: str_or_empty(p.error_msg),
                    advanced_order_reject_json: str_or_empty(p.advanced_order_reject_json),
                    error_time_ms: p.error_time,
                })
            }
            id::CURRENT_TIME => {
                let p: proto::CurrentTime = decode_proto(d, frame.id, body)?;
                Self::CurrentTime {
                    time: p.current_time.unwrap_or(0),
                }
            }
            id::CURRENT_TIME_IN_MILLIS => {
                let p: proto::CurrentTimeInMillis = decode_proto(d, frame.id, body)?;
                Self::CurrentTimeInMillis {
                    millis: p.current_time_in_millis.unwrap_or(0),
                }
            }
            id::HISTORICAL_DATA => {
                // The hot path: bars straight from the bytes, after the same cap check as prost's
                // path. Whatever it declines, prost decodes (and names the error of).
                let n = repeated::check_count::<proto::HistoricalData>(name, body)?;
                match fast_bars::historical_data(body, n, name) {
                    Ok((req_id, bars)) => Self::HistoricalData {
                        req_id,
                        start: String::new(),
                        end: String::new(),
                        bars,
                    },
                    Err(fast_bars::Fallback) => Self::historical_data_prost(body)?,
                }
            }
            id::HISTORICAL_DATA_END => {
                let p: proto::HistoricalDataEnd = decode_proto(d, frame.id, body)?;
                Self::HistoricalDataEnd {
                    req_id: p.req_id.unwrap_or(0),
                    start: str_or_empty(p.start_date_str),
                    end: str_or_empty(p.end_date_str),
                }
            }
            id::HISTORICAL_DATA_UPDATE => {
                let p: proto::HistoricalDataUpdate = decode_proto(d, frame.id, body)?;
                let bar = p.historical_data_bar.ok_or(DecodeError::Absent {
                    msg: name,
                    field: "historical_data_bar",
                })?;
                Self::HistoricalDataUpdate {
                    req_id: p.req_id.unwrap_or(0),
                    bar: Bar::from_proto(bar, name)?,
                }
            }
            id::HEAD_TIMESTAMP => {
                let p: proto::HeadTimestamp = decode_proto(d, frame.id, body)?;
                Self::HeadTimestamp {
                    req_id: p.req_id.unwrap_or(0),
                    timestamp: str_or_empty(p.head_timestamp),
                }
            }
            id::CONTRACT_DATA => {
                let p: proto::ContractData = decode_proto(d, frame.id, body)?;
                let contract = p.contract.ok_or(DecodeError::Absent {
                    msg: name,
                    field: "contract",
                })?;
                let details = p.contract_details.ok_or(DecodeError::Absent {
                    msg: name,
                    field: "contract_details",
                })?;
                Self::ContractData {
                    req_id: p.req_id.unwrap_or(0),
                    contract: Box::new(Contract::from_proto(contract)),
                    details: Box::new(ContractDetails::from_proto(details, name)?),
                }
            }
            id::CONTRACT_DATA_END => {
                let p: proto::ReqIdOnly = decode_proto(d, frame.id, body)?;
                Self::ContractDataEnd {
                    req_id: p.req_id.unwrap_or(0),
                }
            }
            id::SYMBOL_SAMPLES => {
                let p: proto::SymbolSamples = decode_proto(d, frame.id, body)?;
                Self::SymbolSamples {
                    req_id: p.req_id.unwrap_or(0),
                    descriptions: p
                        .contract_descriptions
                        .into_iter()
                        .map(ContractDescription::from_proto)
                        .collect(),
                }
            }
            other if MarketReply::is_id(other) => Self::Market(MarketReply::decode_proto(frame)?),
            other => Self::Unknown {
                id: other,
                form: Form::Protobuf,
                payload: body.clone(),
            },
        })
    }
}
