//! Typed TWS API messages, each encoded and decoded in both directions and both forms.
//!
//! [`Request`] is what a client sends and a gateway reads; [`Response`] is what a gateway sends and
//! a client reads. `encode(server_version, out)` picks the text or protobuf form from IB's
//! per-message thresholds, so one codec speaks server versions 100..=226. `decode` follows the form
//! the frame actually arrived in. Ids we do not model decode to `Unknown { id, form, payload }`.

pub mod contract;
mod convert;
pub mod ids;
pub mod market;
pub mod proto;
mod repeated;
pub mod request;
pub mod response;

pub use contract::{Contract, ContractDescription, ContractDetails};
pub use market::{MarketReply, MarketRequest, RealTimeBar, TickByTick};
pub use request::{HeadTimestampRequest, HistoricalDataRequest, Request};
pub use response::{Bar, BarTime, ErrorMessage, Response};

use crate::wire::frame::PROTOBUF_ID_OFFSET;
use crate::wire::{version, DecodeError, EncodeError, Form};

/// Which way a message travels; only used to name it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// The form a message takes at `server_version`: protobuf from `proto_from`, text before, and
/// nothing before `exists_from`. An `Unknown` message keeps its own form, if the wire can carry its
/// id in it at this version.
fn choose_form(
    name: &'static str,
    (proto_from, exists_from): (i32, i32),
    unknown: Option<(i32, Form)>,
    server_version: i32,
) -> Result<Form, EncodeError> {
    if let Some((id, form)) = unknown {
        let carried = match form {
            // Binary ids exist from 201; the id travels as id + 200 in an i32.
            Form::Protobuf => {
                server_version >= version::PROTOBUF
                    && (1..=i32::MAX - PROTOBUF_ID_OFFSET).contains(&id)
            }
            // A binary text id above 200 would read back as protobuf.
            Form::Text => server_version < version::PROTOBUF || id <= PROTOBUF_ID_OFFSET,
        };
        return if carried {
            Ok(form)
        } else {
            Err(EncodeError::BadMessageId {
                id,
                form,
                server_version,
            })
        };
    }
    if server_version < exists_from {
        return Err(EncodeError::Unsupported {
            msg: name,
            min: exists_from,
            server_version,
        });
    }
    Ok(if server_version >= proto_from {
        Form::Protobuf
    } else {
        Form::Text
    })
}

/// Decode a protobuf body, naming the message in the error. Its repeated fields are counted
/// against [`MAX_REPEATED`](crate::wire::MAX_REPEATED) first, before prost allocates any of them.
fn decode_proto<M: prost::Message + Default + repeated::Repeated>(
    direction: Direction,
    msg_id: i32,
    body: &[u8],
) -> Result<M, DecodeError> {
    let msg = proto_name(direction, msg_id);
    repeated::check::<M>(msg, body)?;
    M::decode(body).map_err(|e| DecodeError::Protobuf {
        msg,
        reason: e.to_string(),
    })
}

fn proto_name(direction: Direction, msg_id: i32) -> &'static str {
    use ids::{incoming as i, outgoing as o};
    match (direction, msg_id) {
        (Direction::ToServer, o::START_API) => "StartApi",
        (Direction::ToServer, o::REQ_IDS) => "ReqIds",
        (Direction::ToServer, o::REQ_CURRENT_TIME) => "ReqCurrentTime",
        (Direction::ToServer, o::REQ_CURRENT_TIME_IN_MILLIS) => "ReqCurrentTimeInMillis",
        (Direction::ToServer, o::REQ_MANAGED_ACCTS) => "ReqManagedAccts",
        (Direction::ToServer, o::REQ_HISTORICAL_DATA) => "ReqHistoricalData",
        (Direction::ToServer, o::CANCEL_HISTORICAL_DATA) => "CancelHistoricalData",
        (Direction::ToServer, o::REQ_HEAD_TIMESTAMP) => "ReqHeadTimestamp",
        (Direction::ToServer, o::CANCEL_HEAD_TIMESTAMP) => "CancelHeadTimestamp",
        (Direction::ToServer, o::REQ_CONTRACT_DATA) => "ReqContractDetails",
        (Direction::ToServer, o::CANCEL_CONTRACT_DATA) => "CancelContractData",
        (Direction::ToServer, o::REQ_MATCHING_SYMBOLS) => "ReqMatchingSymbols",
        (Direction::ToClient, i::NEXT_VALID_ID) => "NextValidId",
        (Direction::ToClient, i::MANAGED_ACCTS) => "ManagedAccounts",
        (Direction::ToClient, i::ERR_MSG) => "Error",
        (Direction::ToClient, i::CURRENT_TIME) => "CurrentTime",
        (Direction::ToClient, i::CURRENT_TIME_IN_MILLIS) => "CurrentTimeInMillis",
        (Direction::ToClient, i::HISTORICAL_DATA) => "HistoricalData",
        (Direction::ToClient, i::HISTORICAL_DATA_END) => "HistoricalDataEnd",
        (Direction::ToClient, i::HISTORICAL_DATA_UPDATE) => "HistoricalDataUpdate",
        (Direction::ToClient, i::HEAD_TIMESTAMP) => "HeadTimestamp",
        (Direction::ToClient, i::CONTRACT_DATA) => "ContractData",
        (Direction::ToClient, i::CONTRACT_DATA_END) => "ContractDataEnd",
        (Direction::ToClient, i::SYMBOL_SAMPLES) => "SymbolSamples",
        (Direction::ToServer, other) => MarketRequest::text_name(other).unwrap_or("Unknown"),
        (Direction::ToClient, other) => MarketReply::text_name(other).unwrap_or("Unknown"),
    }
}
