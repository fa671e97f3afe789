//! Shared by the codec integration tests: one realistic value of every message (taken from the
//! ibapi 5.5.0 captures in docs/ib-facts.md#captured-bytes where there is one), the server
//! versions at which each is exercised, IB's per-message form thresholds, and small encoding
//! helpers.
//!
//! Each test crate uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code, unreachable_pub)]

use std::ops::RangeInclusive;

use bytes::{Bytes, BytesMut};
use ibconn_core::message::market::{MarketDataRequest, RealTimeBarsRequest, TickByTickRequest};
use ibconn_core::message::{
    Bar, BarTime, Contract, ContractDescription, ContractDetails, ErrorMessage,
    HeadTimestampRequest, HistoricalDataRequest, MarketReply, MarketRequest, RealTimeBar, Request,
    Response, TickByTick,
};
use ibconn_core::wire::{EncodeError, Form};

/// ibapi's first minted request id (`08 80 DE A0 CB 05` in the captures).
pub const REQ: i32 = 1_500_000_000;

/// Lowest and highest server version the crate speaks.
pub const MIN_VERSION: i32 = 100;
pub const MAX_VERSION: i32 = 226;

/// Server versions where some message layout changes, plus the ends of the supported range.
pub const GATE_VERSIONS: [i32; 22] = [
    100, 109, 110, 120, 121, 122, 123, 124, 163, 164, 175, 176, 179, 182, 186, 194, 196, 197, 200,
    201, 212, 226,
];

/// Every `Request` variant, by `Request::name`.
pub const REQUEST_NAMES: [&str; 20] = [
    "StartApi",
    "ReqIds",
    "ReqCurrentTime",
    "ReqCurrentTimeInMillis",
    "ReqManagedAccts",
    "ReqHistoricalData",
    "CancelHistoricalData",
    "ReqHeadTimestamp",
    "CancelHeadTimestamp",
    "ReqContractDetails",
    "CancelContractData",
    "ReqMatchingSymbols",
    "ReqMktData",
    "CancelMktData",
    "ReqMarketDataType",
    "ReqRealTimeBars",
    "CancelRealTimeBars",
    "ReqTickByTickData",
    "CancelTickByTickData",
    "Unknown",
];

/// Every `Response` variant, by `Response::name`.
pub const RESPONSE_NAMES: [&str; 22] = [
    "NextValidId",
    "ManagedAccounts",
    "Error",
    "CurrentTime",
    "CurrentTimeInMillis",
    "HistoricalData",
    "HistoricalDataEnd",
    "HistoricalDataUpdate",
    "HeadTimestamp",
    "ContractData",
    "ContractDataEnd",
    "SymbolSamples",
    "TickPrice",
    "TickSize",
    "TickString",
    "TickGeneric",
    "TickSnapshotEnd",
    "MarketDataType",
    "TickReqParams",
    "RealTimeBar",
    "TickByTick",
    "Unknown",
];

/// Client → server message ids the crate models (anything else decodes to `Request::Unknown`).
pub const REQUEST_IDS: [i32; 19] = [
    1, 2, 8, 9, 17, 20, 25, 49, 50, 51, 59, 71, 81, 87, 90, 97, 98, 105, 106,
];

/// Server → client message ids the crate models (anything else decodes to `Response::Unknown`).
pub const RESPONSE_IDS: [i32; 21] = [
    1, 2, 4, 9, 10, 15, 17, 45, 46, 49, 50, 52, 57, 58, 79, 81, 88, 90, 99, 108, 109,
];

/// The message-id threshold: from 201 every frame starts with a 4-byte binary id.
pub const PROTOBUF: i32 = 201;

/// (first server version with the protobuf form, first server version with the message at all),
/// from IB's `getServerVersionForMessage` table (docs/ib-facts.md#server-version-thresholds).
/// `None` for `Unknown`.
pub fn request_thresholds(name: &str) -> Option<(i32, i32)> {
    Some(match name {
        "StartApi" | "ReqIds" | "ReqCurrentTime" => (213, MIN_VERSION),
        // IB's clients refuse reqCurrentTimeInMillis below MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS.
        "ReqCurrentTimeInMillis" => (213, 197),
        "ReqManagedAccts" => (207, MIN_VERSION),
        "ReqHistoricalData"
        | "CancelHistoricalData"
        | "ReqHeadTimestamp"
        | "CancelHeadTimestamp" => (208, MIN_VERSION),
        "ReqContractDetails" => (205, MIN_VERSION),
        // Protobuf only: no text form at all.
        "CancelContractData" => (215, 215),
        "ReqMatchingSymbols" => (212, MIN_VERSION),
        "ReqMktData" | "CancelMktData" | "ReqMarketDataType" => (206, MIN_VERSION),
        "ReqRealTimeBars" | "CancelRealTimeBars" => (208, MIN_VERSION),
        "ReqTickByTickData" | "CancelTickByTickData" => (208, 137),
        _ => return None,
    })
}

/// As [`request_thresholds`], for replies (they follow the request family they answer; Error
/// goes protobuf with the binary message id, 201).
pub fn response_thresholds(name: &str) -> Option<(i32, i32)> {
    Some(match name {
        "Error" => (201, MIN_VERSION),
        "NextValidId" | "CurrentTime" => (213, MIN_VERSION),
        "CurrentTimeInMillis" => (213, 197),
        "ManagedAccounts" => (207, MIN_VERSION),
        "HistoricalData" | "HistoricalDataUpdate" | "HeadTimestamp" => (208, MIN_VERSION),
        "HistoricalDataEnd" => (208, 196),
        "ContractData" | "ContractDataEnd" => (205, MIN_VERSION),
        "SymbolSamples" => (212, MIN_VERSION),
        "TickPrice" | "TickSize" | "TickString" | "TickGeneric" | "TickSnapshotEnd"
        | "MarketDataType" | "TickReqParams" => (206, MIN_VERSION),
        "RealTimeBar" => (208, MIN_VERSION),
        "TickByTick" => (208, 137),
        _ => return None,
    })
}

/// The server versions at which a message of this name/kind takes `form`, or `None` if it never
/// does. `unknown` is `(id, form)` of an `Unknown` message.
pub fn versions_for(
    thresholds: Option<(i32, i32)>,
    unknown: Option<(i32, Form)>,
    form: Form,
) -> Option<RangeInclusive<i32>> {
    match (thresholds, unknown) {
        (Some((proto_from, exists_from)), _) => match form {
            Form::Protobuf => Some(proto_from..=MAX_VERSION),
            Form::Text if exists_from < proto_from => Some(exists_from..=proto_from - 1),
            Form::Text => None,
        },
        // A protobuf frame needs the binary id header (201+); a text id above 200 is only
        // representable while the id is itself a text field (below 201).
        (None, Some((_, f))) if f != form => None,
        (None, Some((_, Form::Protobuf))) => Some(PROTOBUF..=MAX_VERSION),
        (None, Some((id, Form::Text))) if id > 200 => Some(MIN_VERSION..=PROTOBUF - 1),
        (None, Some((_, Form::Text))) => Some(MIN_VERSION..=MAX_VERSION),
        (None, None) => None,
    }
}

/// Versions at which `m` is sent in `form`.
pub fn request_versions(m: &Request, form: Form) -> Option<RangeInclusive<i32>> {
    let unknown = match m {
        Request::Unknown { id, form, .. } => Some((*id, *form)),
        _ => None,
    };
    versions_for(request_thresholds(m.name()), unknown, form)
}

/// Versions at which `m` is sent in `form`.
pub fn response_versions(m: &Response, form: Form) -> Option<RangeInclusive<i32>> {
    let unknown = match m {
        Response::Unknown { id, form, .. } => Some((*id, *form)),
        _ => None,
    };
    versions_for(response_thresholds(m.name()), unknown, form)
}

/// One complete frame (length prefix included).
pub fn encode_request(m: &Request, sv: i32) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    m.encode(sv, &mut out)?;
    Ok(out.freeze())
}

/// One complete frame (length prefix included).
pub fn encode_response(m: &Response, sv: i32) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    m.encode(sv, &mut out)?;
    Ok(out.freeze())
}

/// Lower-case hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex; spaces and `"…"` ASCII literals are allowed for readability, as in the
/// captures in docs/ib-facts.md#captured-bytes: `0a0a "DU1234567,"`.
pub fn unhex(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut digits = String::new();
    let mut in_str = false;
    for c in s.chars() {
        match (in_str, c) {
            (true, '"') | (false, '"') => in_str = !in_str,
            (true, c) => out.extend_from_slice(c.to_string().as_bytes()),
            (false, c) if c.is_ascii_whitespace() => {}
            (false, c) => {
                digits.push(c);
                if digits.len() == 2 {
                    out.push(u8::from_str_radix(&digits, 16).expect("hex digit"));
                    digits.clear();
                }
            }
        }
    }
    assert!(digits.is_empty(), "odd number of hex digits in {s:?}");
    out
}

/// A named fixture and the server versions at which it is snapshotted.
pub struct Case<M> {
    /// Snapshot name suffix.
    pub name: &'static str,
    /// The message.
    pub msg: M,
    /// Server versions to encode it at.
    pub versions: Vec<i32>,
}

fn case<M>(name: &'static str, msg: M, versions: &[i32]) -> Case<M> {
    Case {
        name,
        msg,
        versions: versions.to_vec(),
    }
}

/// `AAPL` SMART/USD stock, as ibapi sends it (`12 17 …` in the captures).
pub fn aapl() -> Contract {
    Contract::stock("AAPL")
}

fn aapl_call() -> Contract {
    Contract {
        symbol: "AAPL".into(),
        sec_type: "OPT".into(),
        last_trade_date_or_contract_month: "20261218".into(),
        strike: Some(250.0),
        right: "C".into(),
        multiplier: Some(100.0),
        exchange: "SMART".into(),
        currency: "USD".into(),
        ..Contract::default()
    }
}

fn es_future() -> Contract {
    Contract {
        symbol: "ES".into(),
        sec_type: "FUT".into(),
        last_trade_date_or_contract_month: "202612".into(),
        exchange: "CME".into(),
        currency: "USD".into(),
        include_expired: true,
        ..Contract::default()
    }
}

/// ibapi's hourly request with an end date (docs/ib-facts.md#captured-bytes, `reqHistData`).
pub fn hourly_request() -> HistoricalDataRequest {
    HistoricalDataRequest {
        req_id: REQ,
        contract: aapl(),
        end_date_time: "20251231 21:00:00 UTC".into(),
        bar_size: "1 hour".into(),
        duration: "2 D".into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        ..HistoricalDataRequest::default()
    }
}

/// ibapi's daily request without an end date, extended hours
/// (docs/ib-facts.md#captured-bytes, `reqHistData(d)`).
pub fn daily_request() -> HistoricalDataRequest {
    HistoricalDataRequest {
        req_id: REQ + 1,
        contract: aapl(),
        bar_size: "1 day".into(),
        duration: "1 M".into(),
        what_to_show: "MIDPOINT".into(),
        format_date: 2,
        ..HistoricalDataRequest::default()
    }
}

/// ibapi's `stream()`: keep-up-to-date, no end date (docs/ib-facts.md#captured-bytes, `stream()`).
pub fn stream_request() -> HistoricalDataRequest {
    HistoricalDataRequest {
        req_id: REQ,
        contract: aapl(),
        bar_size: "5 mins".into(),
        duration: "1 D".into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        keep_up_to_date: true,
        ..HistoricalDataRequest::default()
    }
}

/// One fixture (or more) of every `Request` variant.
pub fn request_cases() -> Vec<Case<Request>> {
    vec![
        case(
            "start_api",
            Request::StartApi {
                client_id: 100,
                optional_capabilities: String::new(),
            },
            &[226, 210, 176, 100],
        ),
        case(
            "start_api_with_capabilities",
            Request::StartApi {
                client_id: 0,
                optional_capabilities: "+PACEAPI".into(),
            },
            &[226, 176],
        ),
        case("req_ids", Request::ReqIds { num_ids: 0 }, &[226, 210, 176]),
        case(
            "req_current_time",
            Request::ReqCurrentTime,
            &[226, 210, 176],
        ),
        case(
            "req_current_time_in_millis",
            Request::ReqCurrentTimeInMillis,
            &[226, 210, 197],
        ),
        case("req_managed_accts", Request::ReqManagedAccts, &[226, 176]),
        case(
            "req_historical_data_hourly",
            Request::ReqHistoricalData(hourly_request()),
            &[226, 176, 123],
        ),
        case(
            "req_historical_data_daily",
            Request::ReqHistoricalData(daily_request()),
            &[226, 176],
        ),
        case(
            "req_historical_data_stream",
            Request::ReqHistoricalData(stream_request()),
            &[226, 176],
        ),
        case(
            "cancel_historical_data",
            Request::CancelHistoricalData { req_id: REQ },
            &[226, 176],
        ),
        case(
            "req_head_timestamp",
            Request::ReqHeadTimestamp(HeadTimestampRequest {
                req_id: REQ + 2,
                contract: aapl(),
                use_rth: true,
                what_to_show: "TRADES".into(),
                format_date: 2,
            }),
            &[226, 176],
        ),
        case(
            "cancel_head_timestamp",
            Request::CancelHeadTimestamp { req_id: REQ + 2 },
            &[226, 176],
        ),
        case(
            "req_contract_details_stock",
            Request::ReqContractDetails {
                req_id: REQ + 3,
                contract: aapl(),
            },
            &[226, 176, 100],
        ),
        case(
            "req_contract_details_option",
            Request::ReqContractDetails {
                req_id: 7,
                contract: aapl_call(),
            },
            &[226, 176],
        ),
        case(
            "req_contract_details_future_by_isin",
            Request::ReqContractDetails {
                req_id: 8,
                contract: Contract {
                    sec_id_type: "ISIN".into(),
                    sec_id: "DE000C52GS19".into(),
                    issuer_id: "e1234".into(),
                    ..es_future()
                },
            },
            &[226, 176, 175],
        ),
        case(
            "cancel_contract_data",
            Request::CancelContractData { req_id: REQ },
            &[226, 215],
        ),
        case(
            "req_matching_symbols",
            Request::ReqMatchingSymbols {
                req_id: REQ + 4,
                pattern: "AAP".into(),
            },
            &[226, 210, 176],
        ),
        case(
            "req_mkt_data",
            Request::Market(MarketRequest::MktData(MarketDataRequest {
                req_id: REQ,
                contract: aapl(),
                generic_ticks: "233,236".into(),
                snapshot: false,
                regulatory_snapshot: false,
            })),
            &[226, 206, 205, 176, 113, 100],
        ),
        case(
            "req_mkt_data_snapshot",
            Request::Market(MarketRequest::MktData(MarketDataRequest {
                req_id: REQ,
                contract: aapl(),
                snapshot: true,
                ..MarketDataRequest::default()
            })),
            &[226, 176],
        ),
        case(
            "cancel_mkt_data",
            Request::Market(MarketRequest::CancelMktData { req_id: REQ }),
            &[226, 176],
        ),
        case(
            "req_market_data_type",
            Request::Market(MarketRequest::MarketDataType {
                market_data_type: 3,
            }),
            &[226, 176],
        ),
        case(
            "req_real_time_bars",
            Request::Market(MarketRequest::RealTimeBars(RealTimeBarsRequest {
                req_id: REQ,
                contract: aapl(),
                bar_size: 5,
                what_to_show: "TRADES".into(),
                use_rth: true,
            })),
            &[226, 208, 207, 176, 100],
        ),
        case(
            "cancel_real_time_bars",
            Request::Market(MarketRequest::CancelRealTimeBars { req_id: REQ }),
            &[226, 176],
        ),
        case(
            "req_tick_by_tick_data",
            Request::Market(MarketRequest::TickByTick(TickByTickRequest {
                req_id: REQ,
                contract: aapl(),
                tick_type: "BidAsk".into(),
                number_of_ticks: 0,
                ignore_size: true,
            })),
            &[226, 208, 176, 139, 137],
        ),
        case(
            "cancel_tick_by_tick_data",
            Request::Market(MarketRequest::CancelTickByTick { req_id: REQ }),
            &[226, 176],
        ),
        case(
            "unknown_protobuf",
            Request::Unknown {
                id: 77,
                form: Form::Protobuf,
                payload: Bytes::from_static(&[0x08, 0x01]),
            },
            &[226, 201],
        ),
        case(
            "unknown_text",
            Request::Unknown {
                id: 6,
                form: Form::Text,
                payload: Bytes::from_static(b"2\x001\x00DU1234567\x00"),
            },
            &[226, 176],
        ),
    ]
}

/// Two hourly bars, epoch-second dates (`formatDate=2`).
pub fn bars() -> Vec<Bar> {
    vec![
        Bar {
            date: BarTime::Epoch(1_767_105_000),
            open: 272.26,
            high: 273.5,
            low: 271.8,
            close: 273.1,
            volume: 1_234_567.0,
            wap: 272.845,
            count: 8123,
        },
        Bar {
            date: BarTime::Epoch(1_767_108_600),
            open: 273.1,
            high: 274.0,
            low: 272.95,
            close: 273.99,
            volume: 987_654.5,
            wap: 273.6,
            count: 6012,
        },
    ]
}

/// `AAPL`'s contract as a gateway returns it.
pub fn aapl_details() -> (Contract, ContractDetails) {
    let contract = Contract {
        con_id: 265_598,
        primary_exchange: "NASDAQ".into(),
        local_symbol: "AAPL".into(),
        trading_class: "NMS".into(),
        ..aapl()
    };
    let details = ContractDetails {
        market_name: "NMS".into(),
        min_tick: 0.01,
        order_types: "ACTIVETIM,AD,ADJUST,ALERT,LMT,MKT".into(),
        valid_exchanges: "SMART,AMEX,NYSE,NASDAQ".into(),
        price_magnifier: 1,
        long_name: "APPLE INC".into(),
        industry: "Technology".into(),
        category: "Computers".into(),
        subcategory: "Computers".into(),
        time_zone_id: "US/Eastern".into(),
        trading_hours: "20251231:0400-20251231:2000;20260101:CLOSED".into(),
        liquid_hours: "20251231:0930-20251231:1600;20260101:CLOSED".into(),
        sec_id_list: vec![("ISIN".into(), "US0378331005".into())],
        agg_group: 1,
        market_rule_ids: "26,26,26".into(),
        stock_type: "COMMON".into(),
        min_size: "0.0001".into(),
        size_increment: "0.0001".into(),
        suggested_size_increment: "100".into(),
        ..ContractDetails::default()
    };
    (contract, details)
}

/// A mutual fund with an ineligibility reason (exercises the FUND fields and the reason list).
pub fn fund_details() -> (Contract, ContractDetails) {
    let contract = Contract {
        con_id: 12_087_792,
        symbol: "VFIAX".into(),
        sec_type: "FUND".into(),
        exchange: "FUNDSERV".into(),
        currency: "USD".into(),
        local_symbol: "VFIAX".into(),
        trading_class: "VFIAX".into(),
        ..Contract::default()
    };
    let details = ContractDetails {
        market_name: "VFIAX".into(),
        min_tick: 0.0001,
        order_types: "LMT,MKT".into(),
        valid_exchanges: "FUNDSERV".into(),
        price_magnifier: 1,
        long_name: "VANGUARD 500 INDEX FUND ADMIRAL".into(),
        time_zone_id: "US/Eastern".into(),
        sec_id_list: vec![
            ("CUSIP".into(), "922908710".into()),
            ("ISIN".into(), "US9229087104".into()),
        ],
        stock_type: "FUND".into(),
        ineligibility_reasons: vec![("1".into(), "Not available in your jurisdiction".into())],
        ..ContractDetails::default()
    };
    (contract, details)
}

/// A future with a last trade date (the field added at 182) and an underlying.
pub fn future_details() -> (Contract, ContractDetails) {
    let contract = Contract {
        con_id: 637_533_641,
        local_symbol: "ESZ6".into(),
        trading_class: "ES".into(),
        multiplier: Some(50.0),
        last_trade_date_or_contract_month: "20261218".into(),
        last_trade_date: "20261218".into(),
        include_expired: false,
        ..es_future()
    };
    let details = ContractDetails {
        market_name: "ES".into(),
        min_tick: 0.25,
        order_types: "LMT,MKT,STP".into(),
        valid_exchanges: "CME,QBALGO".into(),
        price_magnifier: 1,
        under_con_id: 11_004_968,
        long_name: "E-mini S&P 500".into(),
        contract_month: "202612".into(),
        time_zone_id: "US/Central".into(),
        agg_group: 2,
        under_symbol: "ES".into(),
        under_sec_type: "IND".into(),
        market_rule_ids: "67".into(),
        real_expiration_date: "20261218".into(),
        min_size: "1".into(),
        size_increment: "1".into(),
        suggested_size_increment: "1".into(),
        ..ContractDetails::default()
    };
    (contract, details)
}

fn contract_data(req_id: i32, (contract, details): (Contract, ContractDetails)) -> Response {
    Response::ContractData {
        req_id,
        contract: Box::new(contract),
        details: Box::new(details),
    }
}

/// One fixture (or more) of every `Response` variant.
pub fn response_cases() -> Vec<Case<Response>> {
    vec![
        case(
            "next_valid_id",
            Response::NextValidId { order_id: 42 },
            &[226, 210, 176],
        ),
        case(
            "managed_accounts",
            Response::ManagedAccounts {
                accounts: "DU1234567,".into(),
            },
            &[226, 176],
        ),
        case(
            "error_request_failure",
            Response::Error(ErrorMessage {
                req_id: REQ,
                code: 162,
                message: "Historical Market Data Service error message:HMDS query returned no data"
                    .into(),
                advanced_order_reject_json: String::new(),
                error_time_ms: Some(1_767_268_800_000),
            }),
            &[226, 201, 196, 194, 176, 100],
        ),
        case(
            "error_notice",
            Response::Error(ErrorMessage {
                req_id: -1,
                code: 2104,
                message: "Market data farm connection is OK:usfarm".into(),
                advanced_order_reject_json: String::new(),
                error_time_ms: None,
            }),
            &[226, 196, 100],
        ),
        case(
            "error_order_reject",
            Response::Error(ErrorMessage {
                req_id: 7,
                code: 201,
                message: "Order rejected - reason:Price does not conform to min tick".into(),
                advanced_order_reject_json: r#"{"rejectCode":"MIN_TICK"}"#.into(),
                error_time_ms: Some(1_767_268_800_123),
            }),
            &[226, 196, 176, 165],
        ),
        case(
            "current_time",
            Response::CurrentTime {
                time: 1_767_268_800,
            },
            &[226, 210, 176],
        ),
        case(
            "current_time_in_millis",
            Response::CurrentTimeInMillis {
                millis: 1_767_268_800_123,
            },
            &[226, 210, 197],
        ),
        case(
            "historical_data",
            Response::HistoricalData {
                req_id: REQ,
                start: "20251230 09:30:00 America/New_York".into(),
                end: "20251231-21:00:00".into(),
                bars: bars(),
            },
            &[226, 196, 176, 123],
        ),
        case(
            "historical_data_empty",
            Response::HistoricalData {
                req_id: REQ,
                start: String::new(),
                end: String::new(),
                bars: Vec::new(),
            },
            &[226, 196],
        ),
        case(
            "historical_data_end",
            Response::HistoricalDataEnd {
                req_id: REQ,
                start: "20251230 09:30:00 America/New_York".into(),
                end: "20251231-21:00:00".into(),
            },
            &[226, 196],
        ),
        case(
            "historical_data_update",
            Response::HistoricalDataUpdate {
                req_id: REQ,
                bar: Bar {
                    date: BarTime::Epoch(1_767_186_000),
                    open: 273.1,
                    high: 273.4,
                    low: 272.9,
                    close: 273.25,
                    volume: 1520.0,
                    wap: 273.18,
                    count: -1,
                },
            },
            &[226, 176],
        ),
        case(
            "head_timestamp",
            Response::HeadTimestamp {
                req_id: REQ + 2,
                timestamp: "345479400".into(),
            },
            &[226, 176],
        ),
        case(
            "contract_data_stock",
            contract_data(REQ + 3, aapl_details()),
            &[226, 196, 186, 182, 176, 164, 163, 123, 110, 100],
        ),
        case(
            "contract_data_fund",
            contract_data(9, fund_details()),
            &[226, 196, 179, 178],
        ),
        case(
            "contract_data_future",
            contract_data(10, future_details()),
            &[226, 196, 181],
        ),
        case(
            "contract_data_end",
            Response::ContractDataEnd { req_id: REQ + 3 },
            &[226, 176],
        ),
        case(
            "symbol_samples",
            Response::SymbolSamples {
                req_id: REQ + 4,
                descriptions: vec![
                    ContractDescription {
                        contract: Contract {
                            con_id: 265_598,
                            symbol: "AAPL".into(),
                            sec_type: "STK".into(),
                            primary_exchange: "NASDAQ".into(),
                            currency: "USD".into(),
                            description: "APPLE INC".into(),
                            ..Contract::default()
                        },
                        derivative_sec_types: vec![
                            "CFD".into(),
                            "OPT".into(),
                            "IOPT".into(),
                            "WAR".into(),
                            "BAG".into(),
                        ],
                    },
                    ContractDescription {
                        contract: Contract {
                            con_id: 38_708_077,
                            symbol: "AAPL".into(),
                            sec_type: "STK".into(),
                            primary_exchange: "MEXI".into(),
                            currency: "MXN".into(),
                            description: "APPLE INC".into(),
                            issuer_id: "e1359061".into(),
                            ..Contract::default()
                        },
                        derivative_sec_types: Vec::new(),
                    },
                ],
            },
            &[226, 210, 176, 175],
        ),
        case(
            "tick_price",
            Response::Market(MarketReply::TickPrice {
                req_id: REQ,
                tick_type: 1,
                price: 252.5,
                size: Some(100.0),
                attr_mask: 1,
            }),
            &[226, 206, 176, 163, 162],
        ),
        case(
            "tick_size",
            Response::Market(MarketReply::TickSize {
                req_id: REQ,
                tick_type: 8,
                size: 663_944.0,
            }),
            &[226, 176, 162],
        ),
        case(
            "tick_string",
            Response::Market(MarketReply::TickString {
                req_id: REQ,
                tick_type: 45,
                value: "1767268800".into(),
            }),
            &[226, 176],
        ),
        case(
            "tick_generic",
            Response::Market(MarketReply::TickGeneric {
                req_id: REQ,
                tick_type: 49,
                value: 0.0,
            }),
            &[226, 176],
        ),
        case(
            "tick_snapshot_end",
            Response::Market(MarketReply::TickSnapshotEnd { req_id: REQ }),
            &[226, 176],
        ),
        case(
            "market_data_type",
            Response::Market(MarketReply::MarketDataType {
                req_id: REQ,
                market_data_type: 1,
            }),
            &[226, 176],
        ),
        case(
            "tick_req_params",
            Response::Market(MarketReply::TickReqParams {
                req_id: REQ,
                min_tick: "0.01".into(),
                bbo_exchange: "9c0001".into(),
                snapshot_permissions: 3,
            }),
            &[226, 176],
        ),
        case(
            "real_time_bar",
            Response::Market(MarketReply::RealTimeBar {
                req_id: REQ,
                bar: RealTimeBar {
                    time: 1_767_268_800,
                    open: 252.5,
                    high: 252.75,
                    low: 252.25,
                    close: 252.5,
                    volume: 1200.0,
                    wap: 252.51,
                    count: 9,
                },
            }),
            &[226, 208, 176, 162],
        ),
        case(
            "tick_by_tick_last",
            Response::Market(MarketReply::TickByTick {
                req_id: REQ,
                tick: TickByTick::Last {
                    all: false,
                    time: 1_767_268_800,
                    price: 252.5,
                    size: 100.0,
                    past_limit: false,
                    unreported: true,
                    exchange: "NASDAQ".into(),
                    special_conditions: String::new(),
                },
            }),
            &[226, 176],
        ),
        case(
            "tick_by_tick_bid_ask",
            Response::Market(MarketReply::TickByTick {
                req_id: REQ,
                tick: TickByTick::BidAsk {
                    time: 1_767_268_800,
                    bid: 252.49,
                    ask: 252.51,
                    bid_size: 300.0,
                    ask_size: 200.0,
                    bid_past_low: false,
                    ask_past_high: false,
                },
            }),
            &[226, 176],
        ),
        case(
            "tick_by_tick_mid_point",
            Response::Market(MarketReply::TickByTick {
                req_id: REQ,
                tick: TickByTick::MidPoint {
                    time: 1_767_268_800,
                    mid: 252.5,
                },
            }),
            &[226, 176],
        ),
        case(
            "unknown_protobuf",
            Response::Unknown {
                id: 98,
                form: Form::Protobuf,
                payload: Bytes::from_static(&[0x08, 0x01, 0x12, 0x01, b'x']),
            },
            &[226, 201],
        ),
        case(
            "unknown_text",
            Response::Unknown {
                id: 3,
                form: Form::Text,
                payload: Bytes::from_static(b"7\x00Filled\x001\x00"),
            },
            &[226, 176],
        ),
    ]
}
