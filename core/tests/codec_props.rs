//! Property tests of the codec:
//!
//! - (a) every request and response round-trips `decode(encode(m)) == m`, in both forms, at every
//!   server version where that form exists, in its direction (requests: client encodes, gateway
//!   decodes; responses: gateway encodes, client decodes); and the hellos round-trip;
//! - (b) the frame decoder yields the same frames for any split of the byte stream, client side
//!   and server side (`API\0` hello first);
//! - (c) arbitrary and half-structured bytes never panic any decoder, and frames never exceed the
//!   cap;
//! - (d) an oversized length prefix is rejected before the body is buffered;
//! - decimals decode bit-for-bit as `str::parse` would (the decoders parse plain decimals on a
//!   fast path of their own), and version negotiation picks the highest common version.
//!
//! "Valid" contents are what the wire can carry: strings without NUL, finite doubles, no IB
//! "unset" sentinel (`i32::MAX`, `f64::MAX`, the decimal sentinels), and only the fields the
//! chosen form and version actually transmit — [`request_on_the_wire`] and
//! [`response_on_the_wire`] state which (docs/ib-facts.md#message-layouts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod codec_fixtures;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes, BytesMut};
use codec_fixtures::{REQUEST_IDS, RESPONSE_IDS};
use ibconn_core::message::market::{MarketDataRequest, RealTimeBarsRequest, TickByTickRequest};
use ibconn_core::message::{
    Bar, BarTime, Contract, ContractDescription, ContractDetails, ErrorMessage,
    HeadTimestampRequest, HistoricalDataRequest, MarketReply, MarketRequest, RealTimeBar, Request,
    Response, TickByTick,
};
use ibconn_core::wire::{
    check_server_choice, negotiate, ClientHello, Form, Frame, FrameDecoder, FrameError,
    HandshakeError, ServerHello, VersionRange, MAX_FRAME_LEN,
};
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// Cases per property: small enough to keep the whole file well under 30 s in a debug build on
/// two cores.
const CASES: u32 = 256;

/// Cases for the round trips (13 variants × forms × versions need more to reach each often) and
/// for the decimal parser comparisons.
const ROUND_TRIP_CASES: u32 = 1024;

/// Server versions where some layout changes (for the never-panic properties).
const VERSIONS: [i32; 22] = codec_fixtures::GATE_VERSIONS;

// =============================================================================================
// Leaf strategies

/// Text without NUL: mostly printable ASCII, sometimes any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[ -~]{0,12}", 1 => "[^\\x00]{0,6}"]
}

/// Text usable inside IB's `tag=value;` lists.
fn tag_text() -> impl Strategy<Value = String> {
    "[^\\x00=;]{0,8}"
}

/// Any `i32` but IB's `UNSET_INTEGER`, biased towards small values.
fn int() -> impl Strategy<Value = i32> {
    prop_oneof![
        2 => -3..1_000i32,
        2 => any::<i32>(),
        1 => Just(i32::MIN),
        1 => Just(i32::MAX - 1),
    ]
    .prop_filter("i32::MAX is IB's unset integer", |v| *v != i32::MAX)
}

fn long() -> impl Strategy<Value = i64> {
    prop_oneof![
        -3..2_000_000_000_000i64,
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX)
    ]
}

/// IB's "unset" doubles: `f64::MAX` in text, and the decimal-as-string sentinels of the protobuf
/// form (`"2147483647"`, `"-9223372036854775808"`).
fn is_unset_sentinel(v: f64) -> bool {
    v == f64::MAX || v == 2_147_483_647.0 || v == -9_223_372_036_854_775_808.0
}

/// A finite double that is not an unset sentinel: prices, and the whole range.
fn num() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => (-10_000_000i64..10_000_000).prop_map(|cents| cents as f64 / 100.0),
        2 => prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        1 => select(vec![-f64::MAX, f64::MIN_POSITIVE, 1e300, -0.0, 0.1 + 0.2]),
    ]
    .prop_filter("unset sentinel", |v| !is_unset_sentinel(*v))
}

fn sec_type() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec!["STK", "FUT", "OPT", "CASH", "IND", "FUND", "BOND"]).prop_map(String::from),
        1 => text(),
    ]
}

fn pairs<S: Strategy<Value = String>>(
    item: impl Fn() -> S,
) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((item(), item()), 0..4)
}

// =============================================================================================
// Message strategies

fn contract() -> impl Strategy<Value = Contract> {
    (
        (
            int(),
            text(),
            sec_type(),
            text(),
            prop::option::of(num()),
            text(),
        ),
        (
            prop::option::of(num()),
            text(),
            text(),
            text(),
            text(),
            text(),
        ),
        (any::<bool>(), text(), text(), text(), text(), text()),
    )
        .prop_map(
            |(
                (con_id, symbol, sec_type, ltdocm, strike, right),
                (multiplier, exchange, primary_exchange, currency, local_symbol, trading_class),
                (include_expired, sec_id_type, sec_id, description, issuer_id, last_trade_date),
            )| Contract {
                con_id,
                symbol,
                sec_type,
                last_trade_date_or_contract_month: ltdocm,
                strike,
                right,
                multiplier,
                exchange,
                primary_exchange,
                currency,
                local_symbol,
                trading_class,
                include_expired,
                sec_id_type,
                sec_id,
                description,
                issuer_id,
                last_trade_date,
            },
        )
}

fn details() -> impl Strategy<Value = ContractDetails> {
    (
        (text(), num(), text(), text(), int(), int(), text()),
        (text(), text(), text(), text(), text(), text(), text()),
        (text(), num(), pairs(text), int(), text(), text(), text()),
        (text(), text(), text(), text(), text(), pairs(text)),
    )
        .prop_map(
            |(
                (
                    market_name,
                    min_tick,
                    order_types,
                    valid_exchanges,
                    price_magnifier,
                    under_con_id,
                    long_name,
                ),
                (
                    contract_month,
                    industry,
                    category,
                    subcategory,
                    time_zone_id,
                    trading_hours,
                    liquid_hours,
                ),
                (
                    ev_rule,
                    ev_multiplier,
                    sec_id_list,
                    agg_group,
                    under_symbol,
                    under_sec_type,
                    market_rule_ids,
                ),
                (
                    real_expiration_date,
                    stock_type,
                    min_size,
                    size_increment,
                    suggested_size_increment,
                    ineligibility_reasons,
                ),
            )| ContractDetails {
                market_name,
                min_tick,
                order_types,
                valid_exchanges,
                price_magnifier,
                under_con_id,
                long_name,
                contract_month,
                industry,
                category,
                subcategory,
                time_zone_id,
                trading_hours,
                liquid_hours,
                ev_rule,
                ev_multiplier,
                sec_id_list,
                agg_group,
                under_symbol,
                under_sec_type,
                market_rule_ids,
                real_expiration_date,
                stock_type,
                min_size,
                size_increment,
                suggested_size_increment,
                ineligibility_reasons,
            },
        )
}

fn bar() -> impl Strategy<Value = Bar> {
    (text(), num(), num(), num(), num(), num(), num(), int()).prop_map(
        |(date, open, high, low, close, volume, wap, count)| Bar {
            // Any text: numeric forms become Epoch/Day, the rest stays verbatim.
            date: BarTime::parse(&date),
            open,
            high,
            low,
            close,
            volume,
            wap,
            count,
        },
    )
}

fn historical_request() -> impl Strategy<Value = HistoricalDataRequest> {
    (
        (int(), contract(), text(), text(), text()),
        (any::<bool>(), text(), int(), any::<bool>(), pairs(tag_text)),
    )
        .prop_map(
            |(
                (req_id, contract, end_date_time, bar_size, duration),
                (use_rth, what_to_show, format_date, keep_up_to_date, chart_options),
            )| HistoricalDataRequest {
                req_id,
                contract,
                end_date_time,
                bar_size,
                duration,
                use_rth,
                what_to_show,
                format_date,
                keep_up_to_date,
                chart_options,
            },
        )
}

fn head_timestamp_request() -> impl Strategy<Value = HeadTimestampRequest> {
    (int(), contract(), any::<bool>(), text(), int()).prop_map(
        |(req_id, contract, use_rth, what_to_show, format_date)| HeadTimestampRequest {
            req_id,
            contract,
            use_rth,
            what_to_show,
            format_date,
        },
    )
}

/// An `Unknown` the wire can carry: an id outside `modelled`; a protobuf id travels as `id + 200`
/// so it must be in `1..=i32::MAX - 200`; a text id must not be IB's unset integer.
fn unknown(modelled: &'static [i32]) -> impl Strategy<Value = (i32, Form, Bytes)> {
    let text_id = prop_oneof![
        -2..300i32,
        any::<i32>(),
        Just(i32::MIN),
        Just(200),
        Just(201)
    ]
    .prop_filter("i32::MAX is IB's unset integer", |id| *id != i32::MAX)
    .prop_map(|id| (id, Form::Text));
    let proto_id = prop_oneof![1..300i32, 1..=i32::MAX - 200].prop_map(|id| (id, Form::Protobuf));
    (
        prop_oneof![text_id, proto_id]
            .prop_filter("modelled id", move |(id, _)| !modelled.contains(id)),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|((id, form), payload)| (id, form, Bytes::from(payload)))
}

/// A contract a streaming request can carry (no combo: its legs are not modelled).
fn stream_contract() -> impl Strategy<Value = Contract> {
    contract().prop_filter("combo legs are not modelled", |c| c.sec_type != "BAG")
}

fn market_request() -> impl Strategy<Value = MarketRequest> {
    prop_oneof![
        (
            int(),
            stream_contract(),
            text(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(req_id, contract, generic_ticks, snapshot, regulatory_snapshot)| {
                    MarketRequest::MktData(MarketDataRequest {
                        req_id,
                        contract,
                        generic_ticks,
                        snapshot,
                        regulatory_snapshot,
                    })
                }
            ),
        int().prop_map(|req_id| MarketRequest::CancelMktData { req_id }),
        int().prop_map(|market_data_type| MarketRequest::MarketDataType { market_data_type }),
        (int(), stream_contract(), int(), text(), any::<bool>()).prop_map(
            |(req_id, contract, bar_size, what_to_show, use_rth)| {
                MarketRequest::RealTimeBars(RealTimeBarsRequest {
                    req_id,
                    contract,
                    bar_size,
                    what_to_show,
                    use_rth,
                })
            }
        ),
        int().prop_map(|req_id| MarketRequest::CancelRealTimeBars { req_id }),
        (int(), stream_contract(), text(), int(), any::<bool>()).prop_map(
            |(req_id, contract, tick_type, number_of_ticks, ignore_size)| {
                MarketRequest::TickByTick(TickByTickRequest {
                    req_id,
                    contract,
                    tick_type,
                    number_of_ticks,
                    ignore_size,
                })
            }
        ),
        int().prop_map(|req_id| MarketRequest::CancelTickByTick { req_id }),
    ]
}

/// A size: whole shares mostly, fractional ones (server 163+) sometimes.
fn size() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => (0i64..10_000_000).prop_map(|n| n as f64),
        1 => (0i64..10_000_000).prop_map(|n| n as f64 / 100.0),
    ]
}

fn tick_by_tick() -> impl Strategy<Value = TickByTick> {
    prop_oneof![
        (
            any::<bool>(),
            long(),
            num(),
            size(),
            any::<bool>(),
            any::<bool>(),
            text(),
            text()
        )
            .prop_map(
                |(all, time, price, size, past_limit, unreported, exchange, special_conditions)| {
                    TickByTick::Last {
                        all,
                        time,
                        price,
                        size,
                        past_limit,
                        unreported,
                        exchange,
                        special_conditions,
                    }
                }
            ),
        (
            long(),
            num(),
            num(),
            size(),
            size(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(time, bid, ask, bid_size, ask_size, bid_past_low, ask_past_high)| {
                    TickByTick::BidAsk {
                        time,
                        bid,
                        ask,
                        bid_size,
                        ask_size,
                        bid_past_low,
                        ask_past_high,
                    }
                }
            ),
        (long(), num()).prop_map(|(time, mid)| TickByTick::MidPoint { time, mid }),
    ]
}

fn market_reply() -> impl Strategy<Value = MarketReply> {
    prop_oneof![
        (int(), int(), num(), prop::option::of(size()), int()).prop_map(
            |(req_id, tick_type, price, size, attr_mask)| MarketReply::TickPrice {
                req_id,
                tick_type,
                price,
                size,
                attr_mask,
            }
        ),
        (int(), int(), size()).prop_map(|(req_id, tick_type, size)| MarketReply::TickSize {
            req_id,
            tick_type,
            size,
        }),
        (int(), int(), text()).prop_map(|(req_id, tick_type, value)| MarketReply::TickString {
            req_id,
            tick_type,
            value,
        }),
        (int(), int(), num()).prop_map(|(req_id, tick_type, value)| MarketReply::TickGeneric {
            req_id,
            tick_type,
            value,
        }),
        int().prop_map(|req_id| MarketReply::TickSnapshotEnd { req_id }),
        (int(), int()).prop_map(|(req_id, market_data_type)| MarketReply::MarketDataType {
            req_id,
            market_data_type,
        }),
        (int(), text(), text(), int()).prop_map(
            |(req_id, min_tick, bbo_exchange, snapshot_permissions)| MarketReply::TickReqParams {
                req_id,
                min_tick,
                bbo_exchange,
                snapshot_permissions,
            }
        ),
        (
            int(),
            long(),
            (num(), num(), num(), num()),
            size(),
            num(),
            int()
        )
            .prop_map(
                |(req_id, time, (open, high, low, close), volume, wap, count)| {
                    MarketReply::RealTimeBar {
                        req_id,
                        bar: RealTimeBar {
                            time,
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
            ),
        (int(), tick_by_tick()).prop_map(|(req_id, tick)| MarketReply::TickByTick { req_id, tick }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (int(), text())
            .prop_map(|(client_id, optional_capabilities)| Request::StartApi {
                client_id,
                optional_capabilities
            })
            .boxed(),
        int()
            .prop_map(|num_ids| Request::ReqIds { num_ids })
            .boxed(),
        Just(Request::ReqCurrentTime).boxed(),
        Just(Request::ReqCurrentTimeInMillis).boxed(),
        Just(Request::ReqManagedAccts).boxed(),
        historical_request()
            .prop_map(Request::ReqHistoricalData)
            .boxed(),
        int()
            .prop_map(|req_id| Request::CancelHistoricalData { req_id })
            .boxed(),
        head_timestamp_request()
            .prop_map(Request::ReqHeadTimestamp)
            .boxed(),
        int()
            .prop_map(|req_id| Request::CancelHeadTimestamp { req_id })
            .boxed(),
        (int(), contract())
            .prop_map(|(req_id, contract)| Request::ReqContractDetails { req_id, contract })
            .boxed(),
        int()
            .prop_map(|req_id| Request::CancelContractData { req_id })
            .boxed(),
        (int(), text())
            .prop_map(|(req_id, pattern)| Request::ReqMatchingSymbols { req_id, pattern })
            .boxed(),
        market_request().prop_map(Request::Market).boxed(),
        unknown(&REQUEST_IDS)
            .prop_map(|(id, form, payload)| Request::Unknown { id, form, payload })
            .boxed(),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        int()
            .prop_map(|order_id| Response::NextValidId { order_id })
            .boxed(),
        text()
            .prop_map(|accounts| Response::ManagedAccounts { accounts })
            .boxed(),
        (int(), int(), text(), text(), prop::option::of(long()))
            .prop_map(
                |(req_id, code, message, json, time)| Response::Error(ErrorMessage {
                    req_id,
                    code,
                    message,
                    advanced_order_reject_json: json,
                    error_time_ms: time,
                })
            )
            .boxed(),
        long()
            .prop_map(|time| Response::CurrentTime { time })
            .boxed(),
        long()
            .prop_map(|millis| Response::CurrentTimeInMillis { millis })
            .boxed(),
        (int(), text(), text(), prop::collection::vec(bar(), 0..5))
            .prop_map(|(req_id, start, end, bars)| Response::HistoricalData {
                req_id,
                start,
                end,
                bars
            })
            .boxed(),
        (int(), text(), text())
            .prop_map(|(req_id, start, end)| Response::HistoricalDataEnd { req_id, start, end })
            .boxed(),
        (int(), bar())
            .prop_map(|(req_id, bar)| Response::HistoricalDataUpdate { req_id, bar })
            .boxed(),
        (int(), text())
            .prop_map(|(req_id, timestamp)| Response::HeadTimestamp { req_id, timestamp })
            .boxed(),
        (int(), contract(), details())
            .prop_map(|(req_id, c, d)| Response::ContractData {
                req_id,
                contract: Box::new(c),
                details: Box::new(d),
            })
            .boxed(),
        int()
            .prop_map(|req_id| Response::ContractDataEnd { req_id })
            .boxed(),
        (
            int(),
            prop::collection::vec(
                (contract(), prop::collection::vec(text(), 0..4)).prop_map(|(contract, d)| {
                    ContractDescription {
                        contract,
                        derivative_sec_types: d,
                    }
                }),
                0..4
            )
        )
            .prop_map(|(req_id, descriptions)| Response::SymbolSamples {
                req_id,
                descriptions
            })
            .boxed(),
        market_reply().prop_map(Response::Market).boxed(),
        unknown(&RESPONSE_IDS)
            .prop_map(|(id, form, payload)| Response::Unknown { id, form, payload })
            .boxed(),
    ]
}

/// A message, a form it has, and a server version at which it takes that form.
fn with_version<M: Clone + std::fmt::Debug + 'static>(
    msg: impl Strategy<Value = M>,
    versions: fn(&M, Form) -> Option<RangeInclusive<i32>>,
    form: Form,
) -> impl Strategy<Value = (M, i32)> {
    msg.prop_filter_map("no such form", move |m| {
        versions(&m, form).map(|range| (m, range))
    })
    .prop_flat_map(|(m, range)| (Just(m), range))
}

// =============================================================================================
// What each form carries (docs/ib-facts.md#message-layouts)

/// Protobuf maps are unordered with unique keys: the decoder returns them sorted by key.
fn as_proto_map(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect()
}

/// The 12 contract fields of every text request plus `includeExpired`.
fn text_request_contract(c: Contract) -> Contract {
    Contract {
        con_id: c.con_id,
        symbol: c.symbol,
        sec_type: c.sec_type,
        last_trade_date_or_contract_month: c.last_trade_date_or_contract_month,
        strike: c.strike,
        right: c.right,
        multiplier: c.multiplier,
        exchange: c.exchange,
        primary_exchange: c.primary_exchange,
        currency: c.currency,
        local_symbol: c.local_symbol,
        trading_class: c.trading_class,
        include_expired: c.include_expired,
        ..Contract::default()
    }
}

/// `m` as the peer sees it: fields the form/version does not transmit are at their defaults.
fn request_on_the_wire(m: Request, sv: i32, form: Form) -> Request {
    match (form, m) {
        (Form::Protobuf, Request::ReqHistoricalData(mut r)) => {
            r.chart_options = as_proto_map(r.chart_options);
            Request::ReqHistoricalData(r)
        }
        (Form::Text, Request::ReqHistoricalData(mut r)) => {
            r.contract = text_request_contract(r.contract);
            if sv < 124 {
                r.keep_up_to_date = false;
            }
            Request::ReqHistoricalData(r)
        }
        (Form::Text, Request::ReqHeadTimestamp(mut r)) => {
            r.contract = text_request_contract(r.contract);
            Request::ReqHeadTimestamp(r)
        }
        (Form::Text, Request::Market(m)) => Request::Market(market_request_as_text(m, sv)),
        (Form::Text, Request::ReqContractDetails { req_id, contract }) => {
            let full = contract.clone();
            let mut contract = text_request_contract(contract);
            contract.sec_id_type = full.sec_id_type;
            contract.sec_id = full.sec_id;
            if sv >= 176 {
                contract.issuer_id = full.issuer_id;
            }
            Request::ReqContractDetails { req_id, contract }
        }
        (_, m) => m,
    }
}

/// A streaming request as the text form carries it at `sv`.
fn market_request_as_text(m: MarketRequest, sv: i32) -> MarketRequest {
    let contract = |c: Contract| Contract {
        include_expired: false,
        ..text_request_contract(c)
    };
    match m {
        MarketRequest::MktData(mut r) => {
            r.contract = contract(r.contract);
            r.regulatory_snapshot &= sv >= 114;
            MarketRequest::MktData(r)
        }
        MarketRequest::RealTimeBars(mut r) => {
            r.contract = contract(r.contract);
            MarketRequest::RealTimeBars(r)
        }
        MarketRequest::TickByTick(mut r) => {
            r.contract = contract(r.contract);
            if sv < 140 {
                r.number_of_ticks = 0;
                r.ignore_size = false;
            }
            MarketRequest::TickByTick(r)
        }
        other => other,
    }
}

/// A streaming reply as the text form carries it at `sv`: whole sizes below 163, and a price
/// tick always with a size.
fn market_reply_as_text(m: MarketReply, sv: i32) -> MarketReply {
    let sz = |v: f64| if sv >= 163 { v } else { v.trunc() };
    match m {
        MarketReply::TickPrice {
            req_id,
            tick_type,
            price,
            size,
            attr_mask,
        } => MarketReply::TickPrice {
            req_id,
            tick_type,
            price,
            size: Some(sz(size.unwrap_or(0.0))),
            attr_mask,
        },
        MarketReply::TickSize {
            req_id,
            tick_type,
            size,
        } => MarketReply::TickSize {
            req_id,
            tick_type,
            size: sz(size),
        },
        MarketReply::RealTimeBar { req_id, mut bar } => {
            bar.volume = sz(bar.volume);
            MarketReply::RealTimeBar { req_id, bar }
        }
        MarketReply::TickByTick { req_id, tick } => {
            let tick = match tick {
                TickByTick::Last {
                    all,
                    time,
                    price,
                    size,
                    past_limit,
                    unreported,
                    exchange,
                    special_conditions,
                } => TickByTick::Last {
                    all,
                    time,
                    price,
                    size: sz(size),
                    past_limit,
                    unreported,
                    exchange,
                    special_conditions,
                },
                TickByTick::BidAsk {
                    time,
                    bid,
                    ask,
                    bid_size,
                    ask_size,
                    bid_past_low,
                    ask_past_high,
                } => TickByTick::BidAsk {
                    time,
                    bid,
                    ask,
                    bid_size: sz(bid_size),
                    ask_size: sz(ask_size),
                    bid_past_low,
                    ask_past_high,
                },
                mid => mid,
            };
            MarketReply::TickByTick { req_id, tick }
        }
        other => other,
    }
}

/// `m` as the peer sees it: fields the form/version does not transmit are at their defaults.
fn response_on_the_wire(m: Response, sv: i32, form: Form) -> Response {
    match (form, m) {
        (Form::Text, Response::Market(m)) => Response::Market(market_reply_as_text(m, sv)),
        // The window dates travel in HistoricalData only in the text form below 196.
        (form, Response::HistoricalData { req_id, bars, .. })
            if form == Form::Protobuf || sv >= 196 =>
        {
            Response::HistoricalData {
                req_id,
                start: String::new(),
                end: String::new(),
                bars,
            }
        }
        (
            Form::Protobuf,
            Response::ContractData {
                req_id,
                contract,
                mut details,
            },
        ) => {
            details.sec_id_list = as_proto_map(std::mem::take(&mut details.sec_id_list));
            Response::ContractData {
                req_id,
                contract,
                details,
            }
        }
        (Form::Text, Response::Error(mut e)) => {
            if sv < 166 {
                e.advanced_order_reject_json.clear();
            }
            if sv < 194 {
                e.error_time_ms = None;
            }
            Response::Error(e)
        }
        (
            Form::Text,
            Response::ContractData {
                req_id,
                contract,
                details,
            },
        ) => {
            let c = *contract;
            let d = *details;
            let contract = Contract {
                con_id: c.con_id,
                symbol: c.symbol,
                sec_type: c.sec_type,
                last_trade_date_or_contract_month: c.last_trade_date_or_contract_month,
                last_trade_date: if sv >= 182 {
                    c.last_trade_date
                } else {
                    String::new()
                },
                strike: c.strike,
                right: c.right,
                multiplier: c.multiplier,
                exchange: c.exchange,
                primary_exchange: c.primary_exchange,
                currency: c.currency,
                local_symbol: c.local_symbol,
                trading_class: c.trading_class,
                ..Contract::default()
            };
            let gate = |from: i32, s: String| if sv >= from { s } else { String::new() };
            let details = ContractDetails {
                agg_group: if sv >= 121 { d.agg_group } else { 0 },
                under_symbol: gate(122, d.under_symbol),
                under_sec_type: gate(122, d.under_sec_type),
                market_rule_ids: gate(126, d.market_rule_ids),
                real_expiration_date: gate(134, d.real_expiration_date),
                stock_type: gate(152, d.stock_type),
                min_size: gate(164, d.min_size),
                size_increment: gate(164, d.size_increment),
                suggested_size_increment: gate(164, d.suggested_size_increment),
                ineligibility_reasons: if sv >= 186 {
                    d.ineligibility_reasons
                } else {
                    Vec::new()
                },
                ..d
            };
            Response::ContractData {
                req_id,
                contract: Box::new(contract),
                details: Box::new(details),
            }
        }
        (
            Form::Text,
            Response::SymbolSamples {
                req_id,
                descriptions,
            },
        ) => {
            let descriptions = descriptions
                .into_iter()
                .map(|d| {
                    let c = d.contract;
                    let contract = Contract {
                        con_id: c.con_id,
                        symbol: c.symbol,
                        sec_type: c.sec_type,
                        primary_exchange: c.primary_exchange,
                        currency: c.currency,
                        description: if sv >= 176 {
                            c.description
                        } else {
                            String::new()
                        },
                        issuer_id: if sv >= 176 {
                            c.issuer_id
                        } else {
                            String::new()
                        },
                        ..Contract::default()
                    };
                    ContractDescription {
                        contract,
                        derivative_sec_types: d.derivative_sec_types,
                    }
                })
                .collect();
            Response::SymbolSamples {
                req_id,
                descriptions,
            }
        }
        (_, m) => m,
    }
}

// =============================================================================================
// (a) Round trips

/// Encode at `sv`, split with a fresh `FrameDecoder`, parse, decode; the frame must be exactly one
/// and take the expected form.
fn round_trip_request(m: &Request, sv: i32, form: Form) -> Result<Request, TestCaseError> {
    prop_assert_eq!(m.form(sv), Ok(form));
    let mut out = BytesMut::new();
    m.encode(sv, &mut out)
        .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let body = single_frame(&out)?;
    let frame = Frame::parse(body, sv).map_err(|e| TestCaseError::fail(format!("parse: {e}")))?;
    prop_assert_eq!(frame.form, form);
    prop_assert_eq!(frame.id, m.id());
    Request::decode(&frame, sv).map_err(|e| TestCaseError::fail(format!("decode: {e}")))
}

fn round_trip_response(m: &Response, sv: i32, form: Form) -> Result<Response, TestCaseError> {
    prop_assert_eq!(m.form(sv), Ok(form));
    let mut out = BytesMut::new();
    m.encode(sv, &mut out)
        .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let body = single_frame(&out)?;
    let frame = Frame::parse(body, sv).map_err(|e| TestCaseError::fail(format!("parse: {e}")))?;
    prop_assert_eq!(frame.form, form);
    prop_assert_eq!(frame.id, m.id());
    Response::decode(&frame, sv).map_err(|e| TestCaseError::fail(format!("decode: {e}")))
}

fn single_frame(stream: &[u8]) -> Result<Bytes, TestCaseError> {
    let mut dec = FrameDecoder::new();
    dec.push(stream);
    let body = dec
        .next_frame()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let body = body.ok_or_else(|| TestCaseError::fail("incomplete frame"))?;
    prop_assert_eq!(dec.next_frame(), Ok(None));
    prop_assert_eq!(dec.buffered(), 0);
    Ok(body)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ROUND_TRIP_CASES))]

    #[test]
    fn requests_round_trip_as_protobuf(
        (m, sv) in with_version(request(), codec_fixtures::request_versions, Form::Protobuf)
    ) {
        let expected = request_on_the_wire(m.clone(), sv, Form::Protobuf);
        prop_assert_eq!(round_trip_request(&m, sv, Form::Protobuf)?, expected);
    }

    #[test]
    fn requests_round_trip_as_text(
        (m, sv) in with_version(request(), codec_fixtures::request_versions, Form::Text)
    ) {
        let expected = request_on_the_wire(m.clone(), sv, Form::Text);
        prop_assert_eq!(round_trip_request(&m, sv, Form::Text)?, expected);
    }

    #[test]
    fn responses_round_trip_as_protobuf(
        (m, sv) in with_version(response(), codec_fixtures::response_versions, Form::Protobuf)
    ) {
        let expected = response_on_the_wire(m.clone(), sv, Form::Protobuf);
        prop_assert_eq!(round_trip_response(&m, sv, Form::Protobuf)?, expected);
    }

    #[test]
    fn responses_round_trip_as_text(
        (m, sv) in with_version(response(), codec_fixtures::response_versions, Form::Text)
    ) {
        let expected = response_on_the_wire(m.clone(), sv, Form::Text);
        prop_assert_eq!(round_trip_response(&m, sv, Form::Text)?, expected);
    }

    /// What the peer decodes re-encodes to the very same bytes (the wire form is canonical).
    #[test]
    fn decoded_messages_re_encode_identically(
        (req, req_sv) in with_version(request(), codec_fixtures::request_versions, Form::Text),
        (resp, resp_sv) in with_version(response(), codec_fixtures::response_versions, Form::Protobuf),
    ) {
        let first = codec_fixtures::encode_request(&req, req_sv).unwrap();
        let decoded = Request::decode_payload(first.slice(4..), req_sv).unwrap();
        prop_assert_eq!(codec_fixtures::encode_request(&decoded, req_sv).unwrap(), first);
        let first = codec_fixtures::encode_response(&resp, resp_sv).unwrap();
        let decoded = Response::decode_payload(first.slice(4..), resp_sv).unwrap();
        prop_assert_eq!(codec_fixtures::encode_response(&decoded, resp_sv).unwrap(), first);
    }

    #[test]
    fn client_hello_round_trips(
        min in 0..300i32,
        span in 0..200i32,
        options in prop_oneof![Just(String::new()), "\\+[A-Z]{1,10}( \\+[A-Z]{1,8})?"],
    ) {
        let hello = ClientHello {
            versions: VersionRange::new(min, min + span),
            options,
        };
        let mut out = BytesMut::new();
        hello.encode(&mut out);
        let mut dec = FrameDecoder::server();
        dec.push(&out);
        let body = dec.next_frame().unwrap().unwrap();
        prop_assert_eq!(ClientHello::decode(&body), Ok(hello));
    }

    /// The answer is the highest version both ranges contain, and the client accepts it.
    #[test]
    fn negotiation_picks_the_highest_common_version(
        client_min in 90..230i32,
        client_span in 0..40i32,
        server_min in 90..230i32,
        server_span in 0..40i32,
    ) {
        let client = VersionRange::new(client_min, client_min + client_span);
        let server = VersionRange::new(server_min, server_min + server_span);
        let highest_common = (client.min..=client.max).rev().find(|v| server.contains(*v));
        match highest_common {
            Some(v) => {
                prop_assert_eq!(negotiate(client, server), Ok(v));
                prop_assert_eq!(check_server_choice(client, v), Ok(v));
            }
            None => prop_assert_eq!(
                negotiate(client, server),
                Err(HandshakeError::NoCommonVersion { client, server })
            ),
        }
    }

    #[test]
    fn server_hello_round_trips(server_version in 1..i32::MAX, connection_time in text()) {
        let hello = ServerHello { server_version, connection_time };
        let mut out = BytesMut::new();
        hello.encode(&mut out).unwrap();
        let body = single_frame(&out)?;
        prop_assert_eq!(ServerHello::decode(&body), Ok(hello));
    }
}

// =============================================================================================
// (b) Chunking invariance

/// Split `stream` at `cuts`, push chunk by chunk, and drain every complete frame after each push.
fn frames_in_chunks(
    mut dec: FrameDecoder,
    stream: &[u8],
    cuts: &[Index],
) -> (Vec<Bytes>, FrameDecoder) {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    let mut frames = Vec::new();
    for w in points.windows(2) {
        dec.push(&stream[w[0]..w[1]]);
        while let Some(f) = dec.next_frame().expect("valid stream") {
            frames.push(f);
        }
    }
    (frames, dec)
}

fn one_byte_at_a_time(mut dec: FrameDecoder, stream: &[u8]) -> Vec<Bytes> {
    let mut frames = Vec::new();
    for b in stream {
        dec.push(std::slice::from_ref(b));
        while let Some(f) = dec.next_frame().expect("valid stream") {
            frames.push(f);
        }
    }
    assert_eq!(dec.buffered(), 0);
    frames
}

/// Whether a message exists on the wire at `sv` in one of its forms.
fn carried_at(
    text: Option<RangeInclusive<i32>>,
    proto: Option<RangeInclusive<i32>>,
    sv: i32,
) -> bool {
    [text, proto].iter().flatten().any(|r| r.contains(&sv))
}

/// Messages of one direction encoded back to back at one version, and the frame bodies they are.
fn encoded_stream<M>(
    msgs: &[M],
    sv: i32,
    encode: impl Fn(&M, i32, &mut BytesMut) -> bool,
) -> (BytesMut, Vec<Bytes>) {
    let mut stream = BytesMut::new();
    let mut expected = Vec::new();
    for m in msgs {
        let start = stream.len();
        if encode(m, sv, &mut stream) {
            expected.push(Bytes::copy_from_slice(&stream[start + 4..]));
        }
    }
    (stream, expected)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn client_decoder_is_chunking_invariant(
        msgs in prop::collection::vec(response(), 1..6),
        sv in select(vec![100, 123, 176, 196, 200, 201, 207, 212, 226]),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let (stream, expected) = encoded_stream(&msgs, sv, |m, sv, out| {
            carried_at(codec_fixtures::response_versions(m, Form::Text), codec_fixtures::response_versions(m, Form::Protobuf), sv)
                && m.encode(sv, out).is_ok()
        });
        let (frames, dec) = frames_in_chunks(FrameDecoder::new(), &stream, &cuts);
        prop_assert_eq!(&frames, &expected);
        prop_assert_eq!(dec.buffered(), 0);
        prop_assert_eq!(&one_byte_at_a_time(FrameDecoder::new(), &stream), &expected);

        // Every frame body decodes the same way whichever way it was cut.
        for body in frames {
            let decoded = Response::decode_payload(body, sv);
            prop_assert!(decoded.is_ok(), "{:?}", decoded);
        }

        // A stream cut short keeps exactly the unfinished tail buffered.
        if let Some(last) = expected.last() {
            let cut = stream.len() - 1;
            let (frames, dec) = frames_in_chunks(FrameDecoder::new(), &stream[..cut], &cuts);
            prop_assert_eq!(frames.len(), expected.len() - 1);
            prop_assert_eq!(dec.buffered(), last.len() + 4 - 1);
        }
    }

    #[test]
    fn server_decoder_is_chunking_invariant(
        msgs in prop::collection::vec(request(), 1..6),
        sv in select(vec![100, 124, 176, 200, 201, 208, 213, 226]),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        min in 100..=226i32,
    ) {
        let hello = ClientHello {
            versions: VersionRange::new(min, 226),
            options: if min % 2 == 0 { "+PACEAPI".into() } else { String::new() },
        };
        let mut stream = BytesMut::new();
        hello.encode(&mut stream);
        let (frames_part, mut expected) = encoded_stream(&msgs, sv, |m, sv, out| {
            carried_at(codec_fixtures::request_versions(m, Form::Text), codec_fixtures::request_versions(m, Form::Protobuf), sv)
                && m.encode(sv, out).is_ok()
        });
        expected.insert(0, Bytes::from(hello.version_string()));
        stream.put_slice(&frames_part);

        let (frames, dec) = frames_in_chunks(FrameDecoder::server(), &stream, &cuts);
        prop_assert_eq!(&frames, &expected);
        prop_assert_eq!(dec.buffered(), 0);
        prop_assert_eq!(&one_byte_at_a_time(FrameDecoder::server(), &stream), &expected);
        prop_assert_eq!(ClientHello::decode(&frames[0]), Ok(hello));
        for body in frames.into_iter().skip(1) {
            let decoded = Request::decode_payload(body, sv);
            prop_assert!(decoded.is_ok(), "{:?}", decoded);
        }
    }
}

// =============================================================================================
// Decimal parsing: the decoders' fast path must give exactly what `str::parse` gives

/// A text `historicalDataUpdate` (v176) whose `open` field is `open`.
fn update_with_open(open: &str) -> Bytes {
    let fields = ["1", "3", "1767186000", open, "2", "3", "1", "2.5", "100"];
    let mut out = b"90\0".to_vec();
    for f in fields {
        out.extend_from_slice(f.as_bytes());
        out.push(0);
    }
    Bytes::from(out)
}

/// A protobuf `historicalData` (v226) with one bar whose `volume` decimal string is `volume`.
fn bars_with_volume(volume: &str) -> Bytes {
    let mut bar = vec![0x0a, 0x01, b'1', 0x32, volume.len() as u8];
    bar.extend_from_slice(volume.as_bytes());
    let mut out = (17 + 200i32).to_be_bytes().to_vec();
    out.extend_from_slice(&[0x08, 0x01, 0x12, bar.len() as u8]);
    out.extend_from_slice(&bar);
    Bytes::from(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ROUND_TRIP_CASES))]

    #[test]
    fn text_doubles_decode_exactly_like_str_parse(
        s in "-?[0-9]{0,20}(\\.[0-9]{0,25})?([eE][-+]?[0-9]{1,3})?",
    ) {
        prop_assume!(!s.is_empty());
        let decoded = Response::decode_payload(update_with_open(&s), 176);
        match (s.parse::<f64>(), decoded) {
            (Ok(v), Ok(Response::HistoricalDataUpdate { bar, .. })) => {
                prop_assert_eq!(bar.open.to_bits(), v.to_bits(), "{:?}", s);
            }
            (Err(_), Err(_)) => {}
            (std, ours) => prop_assert!(false, "{:?}: str::parse {:?}, decoder {:?}", s, std, ours),
        }
    }

    #[test]
    fn protobuf_decimals_decode_exactly_like_str_parse(
        s in "-?[0-9]{1,20}(\\.[0-9]{0,25})?([eE][-+]?[0-9]{1,3})?",
    ) {
        let sentinel = ["2147483647", "9223372036854775807", "-9223372036854775808"]
            .contains(&s.as_str());
        let decoded = Response::decode_payload(bars_with_volume(&s), 226);
        match (s.parse::<f64>(), decoded) {
            (Ok(v), Ok(Response::HistoricalData { bars, .. })) => {
                // Sentinels, f64::MAX and overflow to infinity mean "no value" (as ibapi reads them).
                let no_value = sentinel || v == f64::MAX || !v.is_finite();
                let expected = if no_value { 0.0 } else { v };
                prop_assert_eq!(bars[0].volume.to_bits(), expected.to_bits(), "{:?}", s);
            }
            (std, ours) => prop_assert!(false, "{:?}: str::parse {:?}, decoder {:?}", s, std, ours),
        }
    }
}

// =============================================================================================
// (c) Arbitrary bytes never panic

/// Drain a decoder fed `bytes` in `cuts` chunks; check the cap, the byte accounting and that an
/// error is sticky.
fn drain_checked(mut dec: FrameDecoder, bytes: &[u8], cuts: &[Index], max: usize) {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.extend([0, bytes.len()]);
    points.sort_unstable();
    let mut taken = 0usize;
    for w in points.windows(2) {
        dec.push(&bytes[w[0]..w[1]]);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    assert!(
                        f.len() <= max,
                        "frame of {} bytes over the cap {max}",
                        f.len()
                    );
                    assert!(!f.is_empty(), "empty frames are rejected");
                    taken += 4 + f.len();
                    assert!(taken <= w[1], "decoder produced more than it was given");
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(dec.next_frame(), Err(e.clone()), "errors are sticky");
                    assert_eq!(dec.buffered(), 0, "a failed decoder holds nothing");
                    return;
                }
            }
        }
    }
    assert!(dec.buffered() <= bytes.len());
}

/// Bytes that look like a message: a modelled (or nearby) id in either header form, then fields
/// drawn from values that stress the parsers, or protobuf-ish bytes.
fn structured_payload() -> impl Strategy<Value = (Vec<u8>, i32)> {
    let field = prop_oneof![
        select(vec![
            "",
            "0",
            "1",
            "-1",
            "2",
            "3",
            "8",
            "2147483647",
            "-2147483648",
            "2147483648",
            "9223372036854775807",
            "99999999999999999999",
            "1.5",
            "-0",
            "1e308",
            "Infinity",
            "-Infinity",
            "inf",
            "-nan",
            "NaN",
            "+5",
            "FUND",
            "STK",
            "true",
            "x",
            " 1",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(1u8..=255, 0..6),
    ];
    let ids: Vec<i32> = REQUEST_IDS
        .iter()
        .chain(RESPONSE_IDS.iter())
        .copied()
        .chain([0, 1, 200, 201, 255])
        .collect();
    (
        select(ids),
        any::<bool>(),
        select(VERSIONS.to_vec()),
        prop::collection::vec(field, 0..40),
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(id, proto, sv, fields, raw)| {
            let mut out = Vec::new();
            if sv >= codec_fixtures::PROTOBUF {
                let wire_id = if proto { id + 200 } else { id };
                out.extend_from_slice(&wire_id.to_be_bytes());
            } else {
                out.extend_from_slice(id.to_string().as_bytes());
                out.push(0);
            }
            if proto && sv >= codec_fixtures::PROTOBUF {
                out.extend_from_slice(&raw);
            } else {
                for f in fields {
                    out.extend_from_slice(&f);
                    out.push(0);
                }
            }
            (out, sv)
        })
}

/// Protobuf-shaped bytes: random fields with plausible tags and wire types (nested once), so
/// decoding gets past `prost` and into the presence and decimal checks.
fn protobuf_body() -> impl Strategy<Value = Vec<u8>> {
    let leaf = (
        1u32..30,
        0u8..4,
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..12),
    );
    let field = (leaf.clone(), prop::collection::vec(leaf, 0..6)).prop_map(
        |((tag, kind, v, bytes), nested)| {
            let mut out = Vec::new();
            encode_leaf(&mut out, tag, kind, v, &bytes);
            if kind == 3 {
                // Replace the leaf by a sub-message of leaves under the same tag.
                out.clear();
                let mut inner = Vec::new();
                for (t, k, v, b) in nested {
                    encode_leaf(&mut inner, t, k.min(2), v, &b);
                }
                put_varint(&mut out, u64::from(tag) << 3 | 2);
                put_varint(&mut out, inner.len() as u64);
                out.extend_from_slice(&inner);
            }
            out
        },
    );
    prop::collection::vec(field, 0..8).prop_map(|fs| fs.concat())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode_leaf(out: &mut Vec<u8>, tag: u32, kind: u8, v: u64, bytes: &[u8]) {
    match kind {
        0 => {
            put_varint(out, u64::from(tag) << 3);
            put_varint(out, v);
        }
        1 => {
            put_varint(out, u64::from(tag) << 3 | 1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        _ => {
            put_varint(out, u64::from(tag) << 3 | 2);
            put_varint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
    }
}

/// Every decoder entry point on `payload` at `sv`; only "returns" is asserted.
fn decode_everything(payload: &[u8], sv: i32) {
    let bytes = Bytes::copy_from_slice(payload);
    let _ = Frame::parse(bytes.clone(), sv);
    if let Ok(frame) = Frame::parse(bytes.clone(), sv) {
        let _ = Request::decode(&frame, sv);
        let _ = Response::decode(&frame, sv);
    }
    let _ = Request::decode_payload(bytes.clone(), sv);
    if let Ok(m) = Response::decode_payload(bytes, sv) {
        // What decodes can be re-encoded without panicking (Ok or a typed error).
        let _ = m.encode(sv, &mut BytesMut::new());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn frame_decoders_never_panic_on_arbitrary_bytes(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            // Mostly-small length prefixes, so that frames actually complete.
            prop::collection::vec((0u8..3, any::<u8>()), 0..300)
                .prop_map(|v| v.into_iter().flat_map(|(a, b)| [a, b]).collect()),
            prop::collection::vec(any::<u8>(), 0..200)
                .prop_map(|v| [b"API\0".to_vec(), v].concat()),
        ],
        cuts in prop::collection::vec(any::<Index>(), 0..8),
        max in prop_oneof![Just(MAX_FRAME_LEN), 1usize..64],
    ) {
        drain_checked(FrameDecoder::new(), &bytes, &cuts, MAX_FRAME_LEN);
        drain_checked(FrameDecoder::server(), &bytes, &cuts, MAX_FRAME_LEN);
        drain_checked(FrameDecoder::new().with_max_len(max), &bytes, &cuts, max);
    }

    #[test]
    fn message_decoders_never_panic_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        for sv in VERSIONS {
            decode_everything(&bytes, sv);
        }
        let _ = ClientHello::decode(&bytes);
        let _ = ServerHello::decode(&Bytes::from(bytes));
    }

    #[test]
    fn message_decoders_never_panic_on_message_shaped_bytes(
        (payload, sv) in structured_payload(),
    ) {
        decode_everything(&payload, sv);
    }

    #[test]
    fn message_decoders_never_panic_on_protobuf_shaped_bytes(
        id in select(RESPONSE_IDS.iter().chain(REQUEST_IDS.iter()).copied().collect::<Vec<_>>()),
        body in protobuf_body(),
    ) {
        let mut payload = (id + 200).to_be_bytes().to_vec();
        payload.extend_from_slice(&body);
        decode_everything(&payload, 226);
    }

    #[test]
    fn hello_decoders_never_panic(
        text in prop_oneof![
            "v[0-9]{0,4}(\\.\\.[0-9-]{0,12})?( .{0,10})?",
            ".{0,20}",
        ],
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        fields in prop::collection::vec("[0-9a-zA-Z :/-]{0,25}", 0..4),
    ) {
        let _ = ClientHello::decode(text.as_bytes());
        let _ = ClientHello::decode(&bytes);
        let joined: Vec<u8> = fields.iter().flat_map(|f| [f.as_bytes(), b"\0"].concat()).collect();
        if let Ok(hello) = ServerHello::decode(&Bytes::from(joined)) {
            prop_assert!(hello.server_version > 0);
            let _ = hello.parsed_time();
        }
        let _ = ServerHello::decode(&Bytes::from(bytes));
    }
}

// =============================================================================================
// (d) Oversized length prefixes

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn oversized_length_is_rejected_before_the_body_is_buffered(
        len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX,
        body_now in 0usize..2_000,
        body_later in 0usize..2_000,
        server in any::<bool>(),
        leading in prop::collection::vec(response(), 0..3),
    ) {
        let mut dec = if server { FrameDecoder::server() } else { FrameDecoder::new() };
        let mut stream = BytesMut::new();
        let mut expected = Vec::new();
        if server {
            ClientHello::new(VersionRange::new(100, 226)).encode(&mut stream);
            expected.push(Bytes::from_static(b"v100..226"));
        }
        for m in &leading {
            let start = stream.len();
            if m.encode(226, &mut stream).is_ok() {
                expected.push(Bytes::copy_from_slice(&stream[start + 4..]));
            }
        }
        stream.put_u32(len);
        let err = FrameError::TooLarge { len: len as usize, max: MAX_FRAME_LEN };

        // Valid frames before the bad prefix still come out, then the prefix alone is enough to
        // refuse: nothing of the announced body has to arrive.
        dec.push(&stream);
        for f in &expected {
            prop_assert_eq!(dec.next_frame(), Ok(Some(f.clone())));
        }
        prop_assert_eq!(dec.next_frame(), Err(err.clone()));
        prop_assert_eq!(dec.buffered(), 0);

        // Whatever follows is dropped, not buffered.
        dec.push(&vec![0xAB; body_later]);
        prop_assert_eq!(dec.buffered(), 0);
        prop_assert_eq!(dec.next_frame(), Err(err.clone()));

        // Prefix and part of the body in one push: refused, and the buffer is released.
        let mut dec = FrameDecoder::new();
        let mut chunk = len.to_be_bytes().to_vec();
        chunk.extend(std::iter::repeat_n(0u8, body_now));
        dec.push(&chunk);
        prop_assert_eq!(dec.next_frame(), Err(err));
        prop_assert_eq!(dec.buffered(), 0);
    }

    /// A lowered cap applies the same way.
    #[test]
    fn lowered_cap_is_enforced(max in 1usize..1_000, over in 1usize..1_000) {
        let len = max + over;
        let mut dec = FrameDecoder::new().with_max_len(max);
        dec.push(&(len as u32).to_be_bytes());
        prop_assert_eq!(dec.next_frame(), Err(FrameError::TooLarge { len, max }));
        prop_assert_eq!(dec.buffered(), 0);

        let mut ok = FrameDecoder::new().with_max_len(max);
        ok.push(&(max as u32).to_be_bytes());
        prop_assert_eq!(ok.next_frame(), Ok(None));
    }
}

/// A frame exactly at the cap is accepted (only the prefix is needed to know).
#[test]
fn the_cap_itself_is_accepted() {
    let mut dec = FrameDecoder::new();
    dec.push(&(MAX_FRAME_LEN as u32).to_be_bytes());
    assert_eq!(dec.next_frame(), Ok(None));
    assert_eq!(dec.buffered(), 4);
}
