//! Server → client messages: what a gateway (the sim) encodes and a client decodes.

use bytes::{Bytes, BytesMut};

use super::contract::ContractDetails;
use super::contract::{read_contract_data, write_contract_data, Contract, ContractDescription};
use super::convert::{decimal, opt_str, str_or_empty};
use super::ids::incoming as id;
use super::{choose_form, decode_proto, proto, Direction};
use crate::wire::fields::format_f64;
use crate::wire::{
    version, DecodeError, EncodeError, FieldReader, FieldWriter, Form, Frame, FrameEncoder,
};

/// When a bar starts, typed from the form IB sent it in; writes back byte-identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BarTime {
    /// Epoch seconds (`formatDate=2`, intraday bars).
    Epoch(i64),
    /// A trading day, `YYYYMMDD` as a number (daily and longer bars: IB sends only the date).
    Day(u32),
    /// Any other form (e.g. `formatDate=1`: `20231019 16:11:48 America/New_York`), verbatim.
    Text(String),
}

impl Default for BarTime {
    fn default() -> Self {
        Self::Epoch(0)
    }
}

impl BarTime {
    /// Classify IB's text: exactly 8 digits is a day (as ibapi reads it), a canonical integer is
    /// epoch seconds, anything else is kept as text.
    pub fn parse(s: &str) -> Self {
        Self::from_bytes(s.as_bytes()).unwrap_or_else(|| Self::Text(s.to_owned()))
    }

    /// The allocation-free cases of [`parse`](Self::parse); `None` means "text".
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() == 8 && b.iter().all(u8::is_ascii_digit) {
            return b
                .iter()
                .try_fold(0u32, |n, d| {
                    n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
                })
                .map(Self::Day);
        }
        let digits = b.strip_prefix(b"-").unwrap_or(b);
        let canonical = match digits {
            [] => false,
            [b'0'] => b.len() == 1,
            [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
        };
        if !canonical {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok().map(Self::Epoch)
    }

    /// Epoch seconds, for the epoch form.
    pub fn epoch_seconds(&self) -> Option<i64> {
        match self {
            Self::Epoch(t) => Some(*t),
            _ => None,
        }
    }
}

impl std::fmt::Display for BarTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Epoch(t) => write!(f, "{t}"),
            Self::Day(d) => write!(f, "{d:08}"),
            Self::Text(s) => f.write_str(s),
        }
    }
}

impl From<&str> for BarTime {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

/// Read a bar time field without allocating for the numeric forms.
fn read_bar_time(r: &mut FieldReader<'_>) -> Result<BarTime, DecodeError> {
    let mut probe = r.clone();
    let raw = probe.bytes("date")?;
    match BarTime::from_bytes(raw) {
        Some(t) => {
            *r = probe;
            Ok(t)
        }
        None => r.string("date").map(BarTime::Text),
    }
}

/// One historical bar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bar {
    /// When the bar starts.
    pub date: BarTime,
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Volume (IB sends a decimal; −1 where not applicable).
    pub volume: f64,
    /// Volume-weighted average price.
    pub wap: f64,
    /// Number of trades; −1 where not applicable.
    pub count: i32,
}

impl Bar {
    fn to_proto(&self) -> proto::HistoricalDataBar {
        proto::HistoricalDataBar {
            date: Some(self.date.to_string()),
            open: Some(self.open),
            high: Some(self.high),
            low: Some(self.low),
            close: Some(self.close),
            volume: Some(format_f64(self.volume)),
            wap: Some(format_f64(self.wap)),
            bar_count: Some(self.count),
        }
    }

    fn from_proto(p: proto::HistoricalDataBar, msg: &'static str) -> Result<Self, DecodeError> {
        Ok(Self {
            date: BarTime::parse(&p.date.ok_or(DecodeError::Absent { msg, field: "date" })?),
            open: p.open.unwrap_or(0.0),
            high: p.high.unwrap_or(0.0),
            low: p.low.unwrap_or(0.0),
            close: p.close.unwrap_or(0.0),
            volume: decimal(p.volume.as_deref(), 0.0, msg, "volume")?,
            wap: decimal(p.wap.as_deref(), 0.0, msg, "wap")?,
            count: p.bar_count.unwrap_or(-1),
        })
    }
}

/// An `error` message: a request failure, a warning or a system notice (id −1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorMessage {
    /// Request (or order) id; −1 for notices not tied to a request.
    pub req_id: i32,
    /// IB's error code, e.g. 162, 2104.
    pub code: i32,
    /// IB's text.
    pub message: String,
    /// Advanced order reject JSON (server version 166+); usually empty.
    pub advanced_order_reject_json: String,
    /// When IB raised it, milliseconds since the epoch (server version 194+).
    pub error_time_ms: Option<i64>,
}

/// Every server → client message ibconn speaks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Response {
    /// First usable order id; part of the startup burst.
    NextValidId {
        /// The id.
        order_id: i32,
    },
    /// Comma-separated managed accounts; part of the startup burst.
    ManagedAccounts {
        /// E.g. `DU1234567,`.
        accounts: String,
    },
    /// An error, warning or notice.
    Error(ErrorMessage),
    /// Server time, epoch seconds.
    CurrentTime {
        /// Seconds since the epoch.
        time: i64,
    },
    /// Server time, epoch milliseconds.
    CurrentTimeInMillis {
        /// Milliseconds since the epoch.
        millis: i64,
    },
    /// The bars of a historical request.
    HistoricalData {
        /// Request id.
        req_id: i32,
        /// Window start; carried here only by text servers below 196 (else in `HistoricalDataEnd`).
        start: String,
        /// Window end; as `start`.
        end: String,
        /// The bars.
        bars: Vec<Bar>,
    },
    /// End of a historical request's bars (server version 196+).
    HistoricalDataEnd {
        /// Request id.
        req_id: i32,
        /// Window start.
        start: String,
        /// Window end.
        end: String,
    },
    /// A keep-up-to-date bar update.
    HistoricalDataUpdate {
        /// Request id.
        req_id: i32,
        /// The bar being built (repeated with the same date while it forms).
        bar: Bar,
    },
    /// Earliest data point.
    HeadTimestamp {
        /// Request id.
        req_id: i32,
        /// Epoch seconds (`formatDate=2`) or a text date.
        timestamp: String,
    },
    /// One contract-details match.
    ContractData {
        /// Request id.
        req_id: i32,
        /// The contract (boxed: it dwarfs every other reply).
        contract: Box<Contract>,
        /// Its details (boxed, as `contract`).
        details: Box<ContractDetails>,
    },
    /// End of contract-details matches.
    ContractDataEnd {
        /// Request id.
        req_id: i32,
    },
    /// Matching symbols.
    SymbolSamples {
        /// Request id.
        req_id: i32,
        /// The matches.
        descriptions: Vec<ContractDescription>,
    },
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

impl Response {
    /// Message name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NextValidId { .. } => "NextValidId",
            Self::ManagedAccounts { .. } => "ManagedAccounts",
            Self::Error(_) => "Error",
            Self::CurrentTime { .. } => "CurrentTime",
            Self::CurrentTimeInMillis { .. } => "CurrentTimeInMillis",
            Self::HistoricalData { .. } => "HistoricalData",
            Self::HistoricalDataEnd { .. } => "HistoricalDataEnd",
            Self::HistoricalDataUpdate { .. } => "HistoricalDataUpdate",
            Self::HeadTimestamp { .. } => "HeadTimestamp",
            Self::ContractData { .. } => "ContractData",
            Self::ContractDataEnd { .. } => "ContractDataEnd",
            Self::SymbolSamples { .. } => "SymbolSamples",
            Self::Unknown { .. } => "Unknown",
        }
    }

    /// The wire message id.
    pub fn id(&self) -> i32 {
        match self {
            Self::NextValidId { .. } => id::NEXT_VALID_ID,
            Self::ManagedAccounts { .. } => id::MANAGED_ACCTS,
            Self::Error(_) => id::ERR_MSG,
            Self::CurrentTime { .. } => id::CURRENT_TIME,
            Self::CurrentTimeInMillis { .. } => id::CURRENT_TIME_IN_MILLIS,
            Self::HistoricalData { .. } => id::HISTORICAL_DATA,
            Self::HistoricalDataEnd { .. } => id::HISTORICAL_DATA_END,
            Self::HistoricalDataUpdate { .. } => id::HISTORICAL_DATA_UPDATE,
            Self::HeadTimestamp { .. } => id::HEAD_TIMESTAMP,
            Self::ContractData { .. } => id::CONTRACT_DATA,
            Self::ContractDataEnd { .. } => id::CONTRACT_DATA_END,
            Self::SymbolSamples { .. } => id::SYMBOL_SAMPLES,
            Self::Unknown { id, .. } => *id,
        }
    }

    /// The request id a reply belongs to (−1 or `None` for session-level messages).
    pub fn req_id(&self) -> Option<i32> {
        match self {
            Self::Error(e) => Some(e.req_id),
            Self::HistoricalData { req_id, .. }
            | Self::HistoricalDataEnd { req_id, .. }
            | Self::HistoricalDataUpdate { req_id, .. }
            | Self::HeadTimestamp { req_id, .. }
            | Self::ContractData { req_id, .. }
            | Self::ContractDataEnd { req_id }
            | Self::SymbolSamples { req_id, .. } => Some(*req_id),
            _ => None,
        }
    }

    /// (first protobuf version, first version the message exists at).
    fn versions(&self) -> (i32, i32) {
        match self {
            Self::Error(_) => (version::PROTOBUF, 0),
            Self::NextValidId { .. } | Self::CurrentTime { .. } => {
                (version::PROTOBUF_REST_MESSAGES_3, 0)
            }
            Self::CurrentTimeInMillis { .. } => (
                version::PROTOBUF_REST_MESSAGES_3,
                version::CURRENT_TIME_IN_MILLIS,
            ),
            Self::ManagedAccounts { .. } => (version::PROTOBUF_ACCOUNTS_POSITIONS, 0),
            Self::HistoricalData { .. }
            | Self::HistoricalDataUpdate { .. }
            | Self::HeadTimestamp { .. } => (version::PROTOBUF_HISTORICAL_DATA, 0),
            Self::HistoricalDataEnd { .. } => (
                version::PROTOBUF_HISTORICAL_DATA,
                version::HISTORICAL_DATA_END,
            ),
            Self::ContractData { .. } | Self::ContractDataEnd { .. } => {
                (version::PROTOBUF_CONTRACT_DATA, 0)
            }
            Self::SymbolSamples { .. } => (version::PROTOBUF_REST_MESSAGES_2, 0),
            Self::Unknown { .. } => (i32::MAX, 0),
        }
    }

    /// The form this reply takes at `server_version`, or why it cannot be sent.
    pub fn form(&self, server_version: i32) -> Result<Form, EncodeError> {
        let unknown = match self {
            Self::Unknown { id, form, .. } => Some((*id, *form)),
            _ => None,
        };
        choose_form(self.name(), self.versions(), unknown, server_version)
    }

    /// Append this reply as one complete frame for a session at `server_version`.
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
            Self::Unknown { payload, .. } => enc.protobuf_bytes(out, name, id, payload),
        }
    }

    fn encode_text(&self, enc: &FrameEncoder, out: &mut BytesMut) -> Result<(), EncodeError> {
        let sv = enc.server_version();
        let (name, id) = (self.name(), self.id());
        enc.text(out, name, id, |w| match self {
            Self::NextValidId { order_id } => {
                w.i32("version", 1).i32("order_id", *order_id);
            }
            Self::ManagedAccounts { accounts } => {
                w.i32("version", 1).str("accounts", accounts);
            }
            Self::Error(e) => write_error(w, sv, e),
            Self::CurrentTime { time } => {
                w.i32("version", 1).i64("time", *time);
            }
            Self::CurrentTimeInMillis { millis } => {
                w.i64("millis", *millis);
            }
            Self::HistoricalData {
                req_id,
                start,
                end,
                bars,
            } => write_historical_data(w, sv, *req_id, start, end, bars),
            Self::HistoricalDataEnd { req_id, start, end } => {
                w.i32("req_id", *req_id).str("start", start).str("end", end);
            }
            Self::HistoricalDataUpdate { req_id, bar } => {
                w.i32("req_id", *req_id)
                    .i32("count", bar.count)
                    .str("date", &bar.date.to_string())
                    .f64("open", bar.open)
                    .f64("close", bar.close)
                    .f64("high", bar.high)
                    .f64("low", bar.low)
                    .f64("wap", bar.wap)
                    .f64("volume", bar.volume);
            }
            Self::HeadTimestamp { req_id, timestamp } => {
                w.i32("req_id", *req_id).str("timestamp", timestamp);
            }
            Self::ContractData {
                req_id,
                contract,
                details,
            } => write_contract_data(w, sv, *req_id, contract, details),
            Self::ContractDataEnd { req_id } => {
                w.i32("version", 1).i32("req_id", *req_id);
            }
            Self::SymbolSamples {
                req_id,
                descriptions,
            } => {
                w.i32("req_id", *req_id).i32(
                    "count",
                    i32::try_from(descriptions.len()).unwrap_or(i32::MAX),
                );
                for d in descriptions {
                    d.write_text(w, sv);
                }
            }
            Self::Unknown { payload, .. } => {
                w.raw(payload);
            }
        })
    }

    /// Decode a frame the server sent (the client side). The frame's own form decides the decoding.
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
                let p: proto::HistoricalData = decode_proto(d, frame.id, body)?;
                Self::HistoricalData {
                    req_id: p.req_id.unwrap_or(0),
                    start: String::new(),
                    end: String::new(),
                    bars: p
                        .historical_data_bars
                        .into_iter()
                        .map(|b| Bar::from_proto(b, name))
                        .collect::<Result<_, _>>()?,
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
            id::NEXT_VALID_ID => {
                r.i32("version")?;
                Self::NextValidId {
                    order_id: r.i32("order_id")?,
                }
            }
            id::MANAGED_ACCTS => {
                r.i32("version")?;
                Self::ManagedAccounts {
                    accounts: r.string("accounts")?,
                }
            }
            id::ERR_MSG => Self::Error(read_error(&mut r, sv)?),
            id::CURRENT_TIME => {
                r.i32("version")?;
                Self::CurrentTime {
                    time: r.i64("time")?,
                }
            }
            id::CURRENT_TIME_IN_MILLIS => Self::CurrentTimeInMillis {
                millis: r.i64("millis")?,
            },
            id::HISTORICAL_DATA => read_historical_data(&mut r, sv)?,
            id::HISTORICAL_DATA_END => Self::HistoricalDataEnd {
                req_id: r.i32("req_id")?,
                start: r.string("start")?,
                end: r.string("end")?,
            },
            id::HISTORICAL_DATA_UPDATE => {
                let req_id = r.i32("req_id")?;
                let count = r.i32("count")?;
                let date = read_bar_time(&mut r)?;
                let open = r.f64("open")?;
                let close = r.f64("close")?;
                let high = r.f64("high")?;
                let low = r.f64("low")?;
                let wap = r.f64("wap")?;
                let volume = r.f64("volume")?;
                Self::HistoricalDataUpdate {
                    req_id,
                    bar: Bar {
                        date,
                        open,
                        high,
                        low,
                        close,
                        volume,
                        wap,
                        count,
                    },
                }
            }
            id::HEAD_TIMESTAMP => Self::HeadTimestamp {
                req_id: r.i32("req_id")?,
                timestamp: r.string("timestamp")?,
            },
            id::CONTRACT_DATA => {
                let (req_id, contract, details) = read_contract_data(&mut r, sv)?;
                Self::ContractData {
                    req_id,
                    contract: Box::new(contract),
                    details: Box::new(details),
                }
            }
            id::CONTRACT_DATA_END => {
                r.i32("version")?;
                Self::ContractDataEnd {
                    req_id: r.i32("req_id")?,
                }
            }
            id::SYMBOL_SAMPLES => {
                let req_id = r.i32("req_id")?;
                let n = r.count("count", 6)?;
                let mut descriptions = Vec::with_capacity(n);
                for _ in 0..n {
                    descriptions.push(ContractDescription::read_text(&mut r, sv)?);
                }
                Self::SymbolSamples {
                    req_id,
                    descriptions,
                }
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

fn write_error(w: &mut FieldWriter<'_>, sv: i32, e: &ErrorMessage) {
    if sv < version::ERROR_TIME {
        w.i32("version", 2);
    }
    w.i32("req_id", e.req_id)
        .i32("code", e.code)
        .str("message", &e.message);
    if sv >= version::ADVANCED_ORDER_REJECT {
        w.str("advanced_order_reject_json", &e.advanced_order_reject_json);
    }
    if sv >= version::ERROR_TIME {
        match e.error_time_ms {
            Some(t) => w.i64("error_time", t),
            None => w.str("error_time", ""),
        };
    }
}

fn read_error(r: &mut FieldReader<'_>, sv: i32) -> Result<ErrorMessage, DecodeError> {
    if sv < version::ERROR_TIME {
        r.i32("version")?;
    }
    let mut e = ErrorMessage {
        req_id: r.i32("req_id")?,
        code: r.i32("code")?,
        message: r.string("message")?,
        ..ErrorMessage::default()
    };
    if sv >= version::ADVANCED_ORDER_REJECT {
        e.advanced_order_reject_json = r.string("advanced_order_reject_json")?;
    }
    if sv >= version::ERROR_TIME {
        let t = r.str("error_time")?;
        e.error_time_ms = if t.is_empty() {
            None
        } else {
            Some(t.parse().map_err(|_| DecodeError::BadNumber {
                msg: "Error",
                field: "error_time",
                value: t.chars().take(64).collect(),
                kind: "i64",
            })?)
        };
    }
    Ok(e)
}

/// Text `historicalData` (17): below 124 a version and `hasGaps` per bar; below 196 the window
/// dates travel here instead of in `historicalDataEnd`.
fn write_historical_data(
    w: &mut FieldWriter<'_>,
    sv: i32,
    req_id: i32,
    start: &str,
    end: &str,
    bars: &[Bar],
) {
    if sv < version::SYNT_REALTIME_BARS {
        w.i32("version", 3);
    }
    w.i32("req_id", req_id);
    if sv < version::HISTORICAL_DATA_END {
        w.str("start", start).str("end", end);
    }
    w.i32("count", i32::try_from(bars.len()).unwrap_or(i32::MAX));
    for b in bars {
        w.str("date", &b.date.to_string())
            .f64("open", b.open)
            .f64("high", b.high)
            .f64("low", b.low)
            .f64("close", b.close)
            .f64("volume", b.volume)
            .f64("wap", b.wap);
        if sv < version::SYNT_REALTIME_BARS {
            w.str("has_gaps", "false");
        }
        w.i32("count", b.count);
    }
}

fn read_historical_data(r: &mut FieldReader<'_>, sv: i32) -> Result<Response, DecodeError> {
    if sv < version::SYNT_REALTIME_BARS {
        r.i32("version")?;
    }
    let req_id = r.i32("req_id")?;
    let (start, end) = if sv < version::HISTORICAL_DATA_END {
        (r.string("start")?, r.string("end")?)
    } else {
        (String::new(), String::new())
    };
    let fields_per_bar = if sv < version::SYNT_REALTIME_BARS {
        9
    } else {
        8
    };
    let n = r.count("count", fields_per_bar)?;
    let mut bars = Vec::with_capacity(n);
    for _ in 0..n {
        let date = read_bar_time(r)?;
        let open = r.f64("open")?;
        let high = r.f64("high")?;
        let low = r.f64("low")?;
        let close = r.f64("close")?;
        let volume = r.f64("volume")?;
        let wap = r.f64("wap")?;
        if sv < version::SYNT_REALTIME_BARS {
            r.str("has_gaps")?;
        }
        let count = r.i32("count")?;
        bars.push(Bar {
            date,
            open,
            high,
            low,
            close,
            volume,
            wap,
            count,
        });
    }
    Ok(Response::HistoricalData {
        req_id,
        start,
        end,
        bars,
    })
}

/// Name of a server → client message for error reports.
fn text_name(msg_id: i32) -> &'static str {
    match msg_id {
        id::NEXT_VALID_ID => "NextValidId",
        id::MANAGED_ACCTS => "ManagedAccounts",
        id::ERR_MSG => "Error",
        id::CURRENT_TIME => "CurrentTime",
        id::CURRENT_TIME_IN_MILLIS => "CurrentTimeInMillis",
        id::HISTORICAL_DATA => "HistoricalData",
        id::HISTORICAL_DATA_END => "HistoricalDataEnd",
        id::HISTORICAL_DATA_UPDATE => "HistoricalDataUpdate",
        id::HEAD_TIMESTAMP => "HeadTimestamp",
        id::CONTRACT_DATA => "ContractData",
        id::CONTRACT_DATA_END => "ContractDataEnd",
        id::SYMBOL_SAMPLES => "SymbolSamples",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;
    use crate::wire::{MAX_FRAME_LEN, MAX_REPEATED};

    #[test]
    fn an_oversized_protobuf_repeated_field_is_refused_before_decoding() {
        // The attack: one full frame of two-byte empty bars, 8 M of them (≈ 1 GB once decoded).
        let mut payload = BytesMut::with_capacity(MAX_FRAME_LEN);
        payload.put_i32(id::HISTORICAL_DATA + crate::wire::frame::PROTOBUF_ID_OFFSET);
        while payload.len() + 2 <= MAX_FRAME_LEN {
            payload.put_slice(&[0x12, 0x00]);
        }
        let too_many = Err(DecodeError::TooMany {
            msg: "HistoricalData",
            field: "historical_data_bars",
            max: MAX_REPEATED,
        });
        assert_eq!(
            Response::decode_payload(payload.freeze(), version::MAX_SUPPORTED),
            too_many
        );
        // Real bars: the cap is accepted, one more is not.
        for (n, ok) in [(MAX_REPEATED, true), (MAX_REPEATED + 1, false)] {
            let reply = Response::HistoricalData {
                req_id: 1,
                start: String::new(),
                end: String::new(),
                bars: vec![Bar::default(); n],
            };
            let mut out = BytesMut::new();
            reply.encode(version::MAX_SUPPORTED, &mut out).unwrap();
            let body = out.split_off(4).freeze();
            let got = Response::decode_payload(body, version::MAX_SUPPORTED);
            assert_eq!(got.is_ok(), ok, "{n} bars");
            if !ok {
                assert_eq!(got, too_many);
            }
        }
    }

    #[test]
    fn text_counts_obey_the_same_cap() {
        // Server version 176: text historical data, window dates inline, eight fields per bar.
        let sv = 176;
        let frame = |n: usize| {
            let mut body = format!("17\x001\x00s\x00e\x00{n}\x00").into_bytes();
            for _ in 0..n {
                body.extend_from_slice(b"0\x000\x000\x000\x000\x000\x000\x000\x00");
            }
            Bytes::from(body)
        };
        let Ok(Response::HistoricalData { bars, .. }) =
            Response::decode_payload(frame(MAX_REPEATED), sv)
        else {
            panic!("the cap itself decodes")
        };
        assert_eq!(bars.len(), MAX_REPEATED);
        assert_eq!(
            Response::decode_payload(frame(MAX_REPEATED + 1), sv),
            Err(DecodeError::TooMany {
                msg: "HistoricalData",
                field: "count",
                max: MAX_REPEATED,
            })
        );
    }

    #[test]
    fn bar_time_types_ibs_forms_and_writes_them_back_verbatim() {
        let cases = [
            ("1767128400", BarTime::Epoch(1_767_128_400)),
            ("0", BarTime::Epoch(0)),
            ("-5", BarTime::Epoch(-5)),
            ("20251230", BarTime::Day(20_251_230)),
            ("00000001", BarTime::Day(1)),
            ("0123", BarTime::Text("0123".into())),
            ("-0", BarTime::Text("-0".into())),
            ("", BarTime::Text(String::new())),
            (
                "99999999999999999999",
                BarTime::Text("99999999999999999999".into()),
            ),
            (
                "20231019 16:11:48 America/New_York",
                BarTime::Text("20231019 16:11:48 America/New_York".into()),
            ),
        ];
        for (text, typed) in cases {
            assert_eq!(BarTime::parse(text), typed, "{text:?}");
            assert_eq!(typed.to_string(), text);
        }
    }
}
