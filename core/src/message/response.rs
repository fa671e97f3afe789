//! Server → client messages: what a gateway (the sim) encodes and a client decodes.
//!
//! This file holds [`Response`] and what every reply shares (names, ids, versions, the form
//! chosen); the families' types and layouts live in `historical` (bars) and `error`, and the two
//! wire forms' codecs in `text` and `protobuf`.

mod error;
mod fast_bars;
mod historical;
mod protobuf;
mod text;

use bytes::{Bytes, BytesMut};

pub use self::error::ErrorMessage;
pub use self::historical::{Bar, BarTime};
use super::choose_form;
use super::contract::{Contract, ContractDescription, ContractDetails};
use super::ids::incoming as id;
use super::market::MarketReply;
use crate::wire::{version, DecodeError, EncodeError, Form, Frame, FrameEncoder};

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
    /// Ticks, real-time bars and tick-by-tick.
    Market(MarketReply),
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
            Self::Market(m) => m.name(),
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
            Self::Market(m) => m.id(),
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
            Self::Market(m) => Some(m.req_id()),
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
            Self::Market(m) => m.versions(),
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
        other => MarketReply::text_name(other).unwrap_or("Unknown"),
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
