//! Client → server messages: what a client encodes and a gateway (the sim) decodes.

use bytes::{Bytes, BytesMut};

use super::contract::Contract;
use super::convert::{opt_str, opt_true, str_or_empty};
use super::ids::outgoing as id;
use super::market::MarketRequest;
use super::{choose_form, decode_proto, proto, Direction};
use crate::wire::{version, DecodeError, EncodeError, FieldReader, Form, Frame, FrameEncoder};

/// `reqHistoricalData` parameters as they travel: IB's text, unchecked, so a server (the sim) can
/// read and answer whatever a client sends. Callers ask with a typed
/// [`HistoricalQuery`](crate::query::HistoricalQuery), which becomes this when sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoricalDataRequest {
    /// Request id, echoed in every reply.
    pub req_id: i32,
    /// The instrument.
    pub contract: Contract,
    /// End of the window, `YYYYMMDD HH:MM:SS <zone>` or `YYYYMMDD-HH:MM:SS` (UTC); empty = now.
    pub end_date_time: String,
    /// Bar size, e.g. `1 hour`.
    pub bar_size: String,
    /// Duration, e.g. `2 D`.
    pub duration: String,
    /// Regular trading hours only.
    pub use_rth: bool,
    /// `TRADES`, `MIDPOINT`, `BID`, `ASK`, `BID_ASK`, …
    pub what_to_show: String,
    /// 1 = exchange-zone text dates, 2 = epoch seconds.
    pub format_date: i32,
    /// Keep streaming updates after the initial bars (end date must be empty).
    pub keep_up_to_date: bool,
    /// Chart options (always empty in practice).
    pub chart_options: Vec<(String, String)>,
}

/// `reqHeadTimestamp` parameters as they travel; callers ask with a typed
/// [`HeadTimestampQuery`](crate::query::HeadTimestampQuery).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadTimestampRequest {
    /// Request id.
    pub req_id: i32,
    /// The instrument.
    pub contract: Contract,
    /// Regular trading hours only.
    pub use_rth: bool,
    /// Data type, e.g. `TRADES`.
    pub what_to_show: String,
    /// 1 = text date, 2 = epoch seconds.
    pub format_date: i32,
}

/// Every client → server message ibconn speaks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    /// START_API: opens the session for `client_id`.
    StartApi {
        /// The client id (one session per id per gateway).
        client_id: i32,
        /// Optional capabilities; usually empty.
        optional_capabilities: String,
    },
    /// Ask for the next valid order id.
    ReqIds {
        /// Number of ids (ignored by IB; 1 by convention, ibapi sends 0).
        num_ids: i32,
    },
    /// Ask for the server time in seconds (also our health probe).
    ReqCurrentTime,
    /// Ask for the server time in milliseconds (server version 197+).
    ReqCurrentTimeInMillis,
    /// Ask for the managed account list.
    ReqManagedAccts,
    /// Historical bars.
    ReqHistoricalData(HistoricalDataRequest),
    /// Cancel a historical request (or its keep-up-to-date stream).
    CancelHistoricalData {
        /// The request to cancel.
        req_id: i32,
    },
    /// Earliest available data point.
    ReqHeadTimestamp(HeadTimestampRequest),
    /// Cancel a head-timestamp request.
    CancelHeadTimestamp {
        /// The request to cancel.
        req_id: i32,
    },
    /// Contract details lookup.
    ReqContractDetails {
        /// Request id.
        req_id: i32,
        /// What to match.
        contract: Contract,
    },
    /// Cancel a contract-details lookup (protobuf only, server version 215+).
    CancelContractData {
        /// The request to cancel.
        req_id: i32,
    },
    /// Symbol search.
    ReqMatchingSymbols {
        /// Request id.
        req_id: i32,
        /// Search pattern.
        pattern: String,
    },
    /// Market data, real-time bars, tick-by-tick and their cancels.
    Market(MarketRequest),
    /// A message id this crate does not model, kept verbatim.
    Unknown {
        /// Message id.
        id: i32,
        /// Encoding of `payload`.
        form: Form,
        /// The body after the id.
        payload: Bytes,
    },
}

impl Request {
    /// Message name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StartApi { .. } => "StartApi",
            Self::ReqIds { .. } => "ReqIds",
            Self::ReqCurrentTime => "ReqCurrentTime",
            Self::ReqCurrentTimeInMillis => "ReqCurrentTimeInMillis",
            Self::ReqManagedAccts => "ReqManagedAccts",
            Self::ReqHistoricalData(_) => "ReqHistoricalData",
            Self::CancelHistoricalData { .. } => "CancelHistoricalData",
            Self::ReqHeadTimestamp(_) => "ReqHeadTimestamp",
            Self::CancelHeadTimestamp { .. } => "CancelHeadTimestamp",
            Self::ReqContractDetails { .. } => "ReqContractDetails",
            Self::CancelContractData { .. } => "CancelContractData",
            Self::ReqMatchingSymbols { .. } => "ReqMatchingSymbols",
            Self::Market(m) => m.name(),
            Self::Unknown { .. } => "Unknown",
        }
    }

    /// The wire message id.
    pub fn id(&self) -> i32 {
        match self {
            Self::StartApi { .. } => id::START_API,
            Self::ReqIds { .. } => id::REQ_IDS,
            Self::ReqCurrentTime => id::REQ_CURRENT_TIME,
            Self::ReqCurrentTimeInMillis => id::REQ_CURRENT_TIME_IN_MILLIS,
            Self::ReqManagedAccts => id::REQ_MANAGED_ACCTS,
            Self::ReqHistoricalData(_) => id::REQ_HISTORICAL_DATA,
            Self::CancelHistoricalData { .. } => id::CANCEL_HISTORICAL_DATA,
            Self::ReqHeadTimestamp(_) => id::REQ_HEAD_TIMESTAMP,
            Self::CancelHeadTimestamp { .. } => id::CANCEL_HEAD_TIMESTAMP,
            Self::ReqContractDetails { .. } => id::REQ_CONTRACT_DATA,
            Self::CancelContractData { .. } => id::CANCEL_CONTRACT_DATA,
            Self::ReqMatchingSymbols { .. } => id::REQ_MATCHING_SYMBOLS,
            Self::Market(m) => m.id(),
            Self::Unknown { id, .. } => *id,
        }
    }

    /// The request id this message carries, if any.
    pub fn req_id(&self) -> Option<i32> {
        match self {
            Self::ReqHistoricalData(r) => Some(r.req_id),
            Self::ReqHeadTimestamp(r) => Some(r.req_id),
            Self::CancelHistoricalData { req_id }
            | Self::CancelHeadTimestamp { req_id }
            | Self::ReqContractDetails { req_id, .. }
            | Self::CancelContractData { req_id }
            | Self::ReqMatchingSymbols { req_id, .. } => Some(*req_id),
            Self::Market(m) => m.req_id(),
            _ => None,
        }
    }

    /// First server version at which this request travels as protobuf (IB's per-message table),
    /// and the first at which it exists at all.
    fn versions(&self) -> (i32, i32) {
        match self {
            Self::StartApi { .. } | Self::ReqIds { .. } | Self::ReqCurrentTime => {
                (version::PROTOBUF_REST_MESSAGES_3, 0)
            }
            Self::ReqCurrentTimeInMillis => (
                version::PROTOBUF_REST_MESSAGES_3,
                version::CURRENT_TIME_IN_MILLIS,
            ),
            Self::ReqManagedAccts => (version::PROTOBUF_ACCOUNTS_POSITIONS, 0),
            Self::ReqHistoricalData(_)
            | Self::CancelHistoricalData { .. }
            | Self::ReqHeadTimestamp(_)
            | Self::CancelHeadTimestamp { .. } => (version::PROTOBUF_HISTORICAL_DATA, 0),
            Self::ReqContractDetails { .. } => (version::PROTOBUF_CONTRACT_DATA, 0),
            Self::CancelContractData { .. } => {
                (version::CANCEL_CONTRACT_DATA, version::CANCEL_CONTRACT_DATA)
            }
            Self::ReqMatchingSymbols { .. } => (version::PROTOBUF_REST_MESSAGES_2, 0),
            Self::Market(m) => m.versions(),
            Self::Unknown { .. } => (i32::MAX, 0),
        }
    }

    /// The form this request takes at `server_version`, or why it cannot be sent.
    pub fn form(&self, server_version: i32) -> Result<Form, EncodeError> {
        let unknown = match self {
            Self::Unknown { id, form, .. } => Some((*id, *form)),
            _ => None,
        };
        choose_form(self.name(), self.versions(), unknown, server_version)
    }

    /// Append this request as one complete frame for a session at `server_version`.
    pub fn encode(&self, server_version: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let enc = FrameEncoder::new(server_version);
        match self.form(server_version)? {
            Form::Protobuf => self.encode_proto(&enc, out),
            Form::Text => self.encode_text(&enc, out),
        }
    }

    fn encode_proto(&self, enc: &FrameEncoder, out: &mut BytesMut) -> Result<(), EncodeError> {
        let (name, id) = (self.name(), self.id());
        match self {
            Self::StartApi {
                client_id,
                optional_capabilities,
            } => enc.protobuf(
                out,
                name,
                id,
                &proto::StartApiRequest {
                    client_id: Some(*client_id),
                    optional_capabilities: opt_str(optional_capabilities),
                },
            ),
            Self::ReqIds { num_ids } => enc.protobuf(
                out,
                name,
                id,
                &proto::IdsRequest {
                    num_ids: Some(*num_ids),
                },
            ),
            Self::ReqCurrentTime | Self::ReqCurrentTimeInMillis | Self::ReqManagedAccts => {
                enc.protobuf(out, name, id, &proto::Empty {})
            }
            Self::ReqHistoricalData(r) => enc.protobuf(
                out,
                name,
                id,
                &proto::HistoricalDataRequest {
                    req_id: Some(r.req_id),
                    contract: Some(r.contract.to_proto()),
                    end_date_time: opt_str(&r.end_date_time),
                    bar_size_setting: opt_str(&r.bar_size),
                    duration: opt_str(&r.duration),
                    use_rth: opt_true(r.use_rth),
                    what_to_show: opt_str(&r.what_to_show),
                    format_date: Some(r.format_date),
                    keep_up_to_date: opt_true(r.keep_up_to_date),
                    chart_options: r.chart_options.iter().cloned().collect(),
                },
            ),
            Self::ReqHeadTimestamp(r) => enc.protobuf(
                out,
                name,
                id,
                &proto::HeadTimestampRequest {
                    req_id: Some(r.req_id),
                    contract: Some(r.contract.to_proto()),
                    use_rth: opt_true(r.use_rth),
                    what_to_show: opt_str(&r.what_to_show),
                    format_date: Some(r.format_date),
                },
            ),
            Self::CancelHistoricalData { req_id }
            | Self::CancelHeadTimestamp { req_id }
            | Self::CancelContractData { req_id } => enc.protobuf(
                out,
                name,
                id,
                &proto::ReqIdOnly {
                    req_id: Some(*req_id),
                },
            ),
            Self::ReqContractDetails { req_id, contract } => enc.protobuf(
                out,
                name,
                id,
                &proto::ContractDataRequest {
                    req_id: Some(*req_id),
                    contract: Some(contract.to_proto()),
                },
            ),
            Self::ReqMatchingSymbols { req_id, pattern } => enc.protobuf(
                out,
                name,
                id,
                &proto::MatchingSymbolsRequest {
                    req_id: Some(*req_id),
                    pattern: opt_str(pattern),
                },
            ),
            Self::Market(m) => m.encode_proto(enc, out),
            Self::Unknown { payload, .. } => enc.protobuf_bytes(out, name, id, payload),
        }
    }

    fn encode_text(&self, enc: &FrameEncoder, out: &mut BytesMut) -> Result<(), EncodeError> {
        let sv = enc.server_version();
        let (name, id) = (self.name(), self.id());
        enc.text(out, name, id, |w| match self {
            Self::StartApi {
                client_id,
                optional_capabilities,
            } => {
                w.i32("version", 2).i32("client_id", *client_id);
                if sv >= version::OPTIONAL_CAPABILITIES {
                    w.str("optional_capabilities", optional_capabilities);
                }
            }
            Self::ReqIds { num_ids } => {
                w.i32("version", 1).i32("num_ids", *num_ids);
            }
            Self::ReqCurrentTime | Self::ReqManagedAccts => {
                w.i32("version", 1);
            }
            Self::ReqCurrentTimeInMillis => {}
            Self::ReqHistoricalData(r) => {
                if sv < version::SYNT_REALTIME_BARS {
                    w.i32("version", 6);
                }
                w.i32("req_id", r.req_id);
                r.contract.write_request_fields(w);
                w.bool("include_expired", r.contract.include_expired)
                    .str("end_date_time", &r.end_date_time)
                    .str("bar_size", &r.bar_size)
                    .str("duration", &r.duration)
                    .bool("use_rth", r.use_rth)
                    .str("what_to_show", &r.what_to_show)
                    .i32("format_date", r.format_date);
                if sv >= version::SYNT_REALTIME_BARS {
                    w.bool("keep_up_to_date", r.keep_up_to_date);
                }
                if sv >= version::LINKING {
                    w.str("chart_options", &tag_values(&r.chart_options));
                }
            }
            Self::CancelHistoricalData { req_id } => {
                w.i32("version", 1).i32("req_id", *req_id);
            }
            Self::ReqHeadTimestamp(r) => {
                w.i32("req_id", r.req_id);
                r.contract.write_request_fields(w);
                w.bool("include_expired", r.contract.include_expired)
                    .bool("use_rth", r.use_rth)
                    .str("what_to_show", &r.what_to_show)
                    .i32("format_date", r.format_date);
            }
            Self::CancelHeadTimestamp { req_id } | Self::CancelContractData { req_id } => {
                w.i32("req_id", *req_id);
            }
            Self::ReqContractDetails { req_id, contract } => {
                w.i32("version", 8).i32("req_id", *req_id);
                contract.write_request_fields(w);
                w.bool("include_expired", contract.include_expired)
                    .str("sec_id_type", &contract.sec_id_type)
                    .str("sec_id", &contract.sec_id);
                if sv >= version::BOND_ISSUERID {
                    w.str("issuer_id", &contract.issuer_id);
                }
            }
            Self::ReqMatchingSymbols { req_id, pattern } => {
                w.i32("req_id", *req_id).str("pattern", pattern);
            }
            Self::Market(m) => m.write_text(w, sv),
            Self::Unknown { payload, .. } => {
                // Verbatim: the payload already holds NUL-terminated fields.
                w.raw(payload);
            }
        })
    }

    /// Decode a frame a client sent (the gateway side). The frame's own form decides the decoding.
    pub fn decode(frame: &Frame, server_version: i32) -> Result<Self, DecodeError> {
        match frame.form {
            Form::Protobuf => Self::decode_proto(frame),
            Form::Text => Self::decode_text(frame, server_version),
        }
    }

    /// Decode a whole frame body (as returned by [`FrameDecoder`](crate::wire::FrameDecoder)).
    pub fn decode_payload(payload: Bytes, server_version: i32) -> Result<Self, DecodeError> {
        Self::decode(&Frame::parse(payload, server_version)?, server_version)
    }

    fn decode_proto(frame: &Frame) -> Result<Self, DecodeError> {
        let body = &frame.body;
        let d = Direction::ToServer;
        Ok(match frame.id {
            id::START_API => {
                let p: proto::StartApiRequest = decode_proto(d, frame.id, body)?;
                Self::StartApi {
                    client_id: p.client_id.unwrap_or(0),
                    optional_capabilities: str_or_empty(p.optional_capabilities),
                }
            }
            id::REQ_IDS => {
                let p: proto::IdsRequest = decode_proto(d, frame.id, body)?;
                Self::ReqIds {
                    num_ids: p.num_ids.unwrap_or(0),
                }
            }
            id::REQ_CURRENT_TIME => {
                decode_proto::<proto::Empty>(d, frame.id, body)?;
                Self::ReqCurrentTime
            }
            id::REQ_CURRENT_TIME_IN_MILLIS => {
                decode_proto::<proto::Empty>(d, frame.id, body)?;
                Self::ReqCurrentTimeInMillis
            }
            id::REQ_MANAGED_ACCTS => {
                decode_proto::<proto::Empty>(d, frame.id, body)?;
                Self::ReqManagedAccts
            }
            id::REQ_HISTORICAL_DATA => {
                let p: proto::HistoricalDataRequest = decode_proto(d, frame.id, body)?;
                Self::ReqHistoricalData(HistoricalDataRequest {
                    req_id: p.req_id.unwrap_or(0),
                    contract: p.contract.map(Contract::from_proto).unwrap_or_default(),
                    end_date_time: str_or_empty(p.end_date_time),
                    bar_size: str_or_empty(p.bar_size_setting),
                    duration: str_or_empty(p.duration),
                    use_rth: p.use_rth.unwrap_or(false),
                    what_to_show: str_or_empty(p.what_to_show),
                    format_date: p.format_date.unwrap_or(0),
                    keep_up_to_date: p.keep_up_to_date.unwrap_or(false),
                    chart_options: p.chart_options.into_iter().collect(),
                })
            }
            id::REQ_HEAD_TIMESTAMP => {
                let p: proto::HeadTimestampRequest = decode_proto(d, frame.id, body)?;
                Self::ReqHeadTimestamp(HeadTimestampRequest {
                    req_id: p.req_id.unwrap_or(0),
                    contract: p.contract.map(Contract::from_proto).unwrap_or_default(),
                    use_rth: p.use_rth.unwrap_or(false),
                    what_to_show: str_or_empty(p.what_to_show),
                    format_date: p.format_date.unwrap_or(0),
                })
            }
            id::CANCEL_HISTORICAL_DATA | id::CANCEL_HEAD_TIMESTAMP | id::CANCEL_CONTRACT_DATA => {
                let p: proto::ReqIdOnly = decode_proto(d, frame.id, body)?;
                let req_id = p.req_id.unwrap_or(0);
                match frame.id {
                    id::CANCEL_HISTORICAL_DATA => Self::CancelHistoricalData { req_id },
                    id::CANCEL_HEAD_TIMESTAMP => Self::CancelHeadTimestamp { req_id },
                    _ => Self::CancelContractData { req_id },
                }
            }
            id::REQ_CONTRACT_DATA => {
                let p: proto::ContractDataRequest = decode_proto(d, frame.id, body)?;
                Self::ReqContractDetails {
                    req_id: p.req_id.unwrap_or(0),
                    contract: p.contract.map(Contract::from_proto).unwrap_or_default(),
                }
            }
            id::REQ_MATCHING_SYMBOLS => {
                let p: proto::MatchingSymbolsRequest = decode_proto(d, frame.id, body)?;
                Self::ReqMatchingSymbols {
                    req_id: p.req_id.unwrap_or(0),
                    pattern: str_or_empty(p.pattern),
                }
            }
            other if MarketRequest::is_id(other) => {
                Self::Market(MarketRequest::decode_proto(frame)?)
            }
            other => Self::Unknown {
                id: other,
                form: Form::Protobuf,
                payload: body.clone(),
            },
        })
    }

    fn decode_text(frame: &Frame, sv: i32) -> Result<Self, DecodeError> {
        let name = text_name(frame.id);
        let mut r = FieldReader::new(&frame.body, name);
        let msg = match frame.id {
            id::START_API => {
                r.i32("version")?;
                let client_id = r.i32("client_id")?;
                let optional_capabilities = if sv >= version::OPTIONAL_CAPABILITIES {
                    r.string("optional_capabilities")?
                } else {
                    String::new()
                };
                Self::StartApi {
                    client_id,
                    optional_capabilities,
                }
            }
            id::REQ_IDS => {
                r.i32("version")?;
                Self::ReqIds {
                    num_ids: r.i32("num_ids")?,
                }
            }
            id::REQ_CURRENT_TIME => {
                r.i32("version")?;
                Self::ReqCurrentTime
            }
            id::REQ_MANAGED_ACCTS => {
                r.i32("version")?;
                Self::ReqManagedAccts
            }
            id::REQ_CURRENT_TIME_IN_MILLIS => Self::ReqCurrentTimeInMillis,
            id::REQ_HISTORICAL_DATA => {
                if sv < version::SYNT_REALTIME_BARS {
                    r.i32("version")?;
                }
                let req_id = r.i32("req_id")?;
                let mut contract = Contract::read_request_fields(&mut r)?;
                contract.include_expired = r.bool("include_expired")?;
                let mut req = HistoricalDataRequest {
                    req_id,
                    contract,
                    end_date_time: r.string("end_date_time")?,
                    bar_size: r.string("bar_size")?,
                    duration: r.string("duration")?,
                    use_rth: r.bool("use_rth")?,
                    what_to_show: r.string("what_to_show")?,
                    format_date: r.i32("format_date")?,
                    ..HistoricalDataRequest::default()
                };
                if sv >= version::SYNT_REALTIME_BARS {
                    req.keep_up_to_date = r.bool("keep_up_to_date")?;
                }
                if sv >= version::LINKING {
                    req.chart_options = parse_tag_values(r.str("chart_options")?);
                }
                Self::ReqHistoricalData(req)
            }
            id::CANCEL_HISTORICAL_DATA => {
                r.i32("version")?;
                Self::CancelHistoricalData {
                    req_id: r.i32("req_id")?,
                }
            }
            id::REQ_HEAD_TIMESTAMP => {
                let req_id = r.i32("req_id")?;
                let mut contract = Contract::read_request_fields(&mut r)?;
                contract.include_expired = r.bool("include_expired")?;
                Self::ReqHeadTimestamp(HeadTimestampRequest {
                    req_id,
                    contract,
                    use_rth: r.bool("use_rth")?,
                    what_to_show: r.string("what_to_show")?,
                    format_date: r.i32("format_date")?,
                })
            }
            id::CANCEL_HEAD_TIMESTAMP => Self::CancelHeadTimestamp {
                req_id: r.i32("req_id")?,
            },
            id::CANCEL_CONTRACT_DATA => Self::CancelContractData {
                req_id: r.i32("req_id")?,
            },
            id::REQ_CONTRACT_DATA => {
                r.i32("version")?;
                let req_id = r.i32("req_id")?;
                let mut contract = Contract::read_request_fields(&mut r)?;
                contract.include_expired = r.bool("include_expired")?;
                contract.sec_id_type = r.string("sec_id_type")?;
                contract.sec_id = r.string("sec_id")?;
                if sv >= version::BOND_ISSUERID {
                    contract.issuer_id = r.string("issuer_id")?;
                }
                Self::ReqContractDetails { req_id, contract }
            }
            id::REQ_MATCHING_SYMBOLS => Self::ReqMatchingSymbols {
                req_id: r.i32("req_id")?,
                pattern: r.string("pattern")?,
            },
            other if MarketRequest::is_id(other) => {
                Self::Market(MarketRequest::read_text(other, &mut r, sv)?)
            }
            other => {
                return Ok(Self::Unknown {
                    id: other,
                    form: Form::Text,
                    payload: frame.body.clone(),
                })
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Name of a client → server text message for error reports.
fn text_name(msg_id: i32) -> &'static str {
    match msg_id {
        id::START_API => "StartApi",
        id::REQ_IDS => "ReqIds",
        id::REQ_CURRENT_TIME => "ReqCurrentTime",
        id::REQ_CURRENT_TIME_IN_MILLIS => "ReqCurrentTimeInMillis",
        id::REQ_MANAGED_ACCTS => "ReqManagedAccts",
        id::REQ_HISTORICAL_DATA => "ReqHistoricalData",
        id::CANCEL_HISTORICAL_DATA => "CancelHistoricalData",
        id::REQ_HEAD_TIMESTAMP => "ReqHeadTimestamp",
        id::CANCEL_HEAD_TIMESTAMP => "CancelHeadTimestamp",
        id::REQ_CONTRACT_DATA => "ReqContractDetails",
        id::CANCEL_CONTRACT_DATA => "CancelContractData",
        id::REQ_MATCHING_SYMBOLS => "ReqMatchingSymbols",
        other => MarketRequest::text_name(other).unwrap_or("Unknown"),
    }
}

/// IB's text form of a tag-value list: `tag=value;` repeated.
fn tag_values(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v};")).collect()
}

fn parse_tag_values(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}
