//! Byte-for-byte interop with the third-party `ibapi` 5.5.0 client.
//!
//! A scripted gateway (built from our own codec's server side) accepts the real ibapi client over TCP,
//! answers its requests, and records every frame ibapi sends. For each request we then build the
//! same request with our own types, encode it at the negotiated version, and require identical bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ibapi::contracts::Contract as IbContract;
use ibapi::market_data::historical::{BarSize, ToDuration, WhatToShow};
use ibapi::market_data::TradingHours;
use ibconn_core::message::market::{MarketDataRequest, RealTimeBarsRequest, TickByTickRequest};
use ibconn_core::message::{
    Bar, BarTime, Contract, ContractDescription, ContractDetails, HeadTimestampRequest,
    HistoricalDataRequest, MarketRequest, Request, Response,
};
use ibconn_core::wire::{ClientHello, FrameDecoder, ServerHello, VersionRange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const SERVER_VERSION: i32 = 226;
const STEP: Duration = Duration::from_secs(10);

/// What the client sent, as raw bytes: the hello first, then one entry per frame.
#[derive(Debug)]
enum Captured {
    Hello(Bytes),
    Frame(Bytes),
}

fn reply_for(req: &Request) -> Vec<Response> {
    match req {
        Request::StartApi { .. } => vec![
            Response::ManagedAccounts {
                accounts: "DU1234567,".into(),
            },
            Response::NextValidId { order_id: 42 },
        ],
        Request::ReqCurrentTime => vec![Response::CurrentTime {
            time: 1_767_268_800,
        }],
        Request::ReqHistoricalData(r) => {
            let daily = r.bar_size == "1 day";
            let bar = Bar {
                date: if daily {
                    BarTime::Day(20251230)
                } else {
                    BarTime::Epoch(1_767_128_400)
                },
                open: 250.0,
                high: 251.5,
                low: 249.25,
                close: 251.0,
                volume: 1200.0,
                wap: 250.5,
                count: 17,
            };
            vec![
                Response::HistoricalData {
                    req_id: r.req_id,
                    start: String::new(),
                    end: String::new(),
                    bars: vec![bar],
                },
                Response::HistoricalDataEnd {
                    req_id: r.req_id,
                    start: "20251229-21:00:00".into(),
                    end: "20251231-21:00:00".into(),
                },
            ]
        }
        Request::ReqHeadTimestamp(r) => vec![Response::HeadTimestamp {
            req_id: r.req_id,
            timestamp: "345479400".into(),
        }],
        Request::ReqContractDetails { req_id, .. } => vec![
            Response::ContractData {
                req_id: *req_id,
                contract: Box::new(Contract {
                    con_id: 265_598,
                    primary_exchange: "NASDAQ".into(),
                    local_symbol: "AAPL".into(),
                    trading_class: "NMS".into(),
                    ..Contract::stock("AAPL")
                }),
                details: Box::new(ContractDetails {
                    market_name: "NMS".into(),
                    min_tick: 0.01,
                    order_types: "LMT,MKT".into(),
                    valid_exchanges: "SMART,NASDAQ".into(),
                    price_magnifier: 1,
                    long_name: "APPLE INC".into(),
                    time_zone_id: "US/Eastern".into(),
                    stock_type: "COMMON".into(),
                    min_size: "1".into(),
                    size_increment: "1".into(),
                    suggested_size_increment: "100".into(),
                    ..ContractDetails::default()
                }),
            },
            Response::ContractDataEnd { req_id: *req_id },
        ],
        Request::ReqMatchingSymbols { req_id, .. } => vec![Response::SymbolSamples {
            req_id: *req_id,
            descriptions: vec![ContractDescription {
                contract: Contract {
                    con_id: 265_598,
                    symbol: "AAPL".into(),
                    sec_type: "STK".into(),
                    primary_exchange: "NASDAQ".into(),
                    currency: "USD".into(),
                    ..Contract::default()
                },
                derivative_sec_types: vec!["OPT".into()],
            }],
        }],
        _ => vec![],
    }
}

fn with_len_prefix(prefix: &[u8], body: &[u8]) -> Bytes {
    let mut raw = BytesMut::from(prefix);
    raw.put_u32(u32::try_from(body.len()).unwrap());
    raw.extend_from_slice(body);
    raw.freeze()
}

/// A one-connection gateway built from the codec's server side; records what the client sends.
async fn scripted_gateway(listener: TcpListener, captured: mpsc::UnboundedSender<Captured>) {
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut decoder = FrameDecoder::server();
    let mut buf = [0u8; 4096];
    let mut handshake_done = false;
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.push(&buf[..n]);
        while let Some(body) = decoder.next_frame().unwrap() {
            let mut out = BytesMut::new();
            if handshake_done {
                captured
                    .send(Captured::Frame(with_len_prefix(b"", &body)))
                    .unwrap();
                let req = Request::decode_payload(body, SERVER_VERSION).unwrap();
                for resp in reply_for(&req) {
                    resp.encode(SERVER_VERSION, &mut out).unwrap();
                }
            } else {
                let hello = ClientHello::decode(&body).unwrap();
                captured
                    .send(Captured::Hello(with_len_prefix(b"API\0", &body)))
                    .unwrap();
                assert!(hello.versions.contains(SERVER_VERSION));
                ServerHello {
                    server_version: SERVER_VERSION,
                    connection_time: "20260101 12:00:00 America/New_York".into(),
                }
                .encode(&mut out)
                .unwrap();
                handshake_done = true;
            }
            sock.write_all(&out).await.unwrap();
        }
    }
}

/// Our encoding of `req` at the negotiated version.
fn ours(req: &Request) -> Bytes {
    let mut out = BytesMut::new();
    req.encode(SERVER_VERSION, &mut out).unwrap();
    out.freeze()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The request id ibapi minted for the captured frame (ids are ibapi's choice, not ours).
fn req_id_of(raw: &Bytes) -> i32 {
    Request::decode_payload(raw.slice(4..), SERVER_VERSION)
        .unwrap()
        .req_id()
        .expect("request carries an id")
}

async fn next_capture(rx: &mut mpsc::UnboundedReceiver<Captured>) -> Captured {
    tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("no frame from ibapi in time")
        .expect("gateway task ended")
}

async fn next_frame(rx: &mut mpsc::UnboundedReceiver<Captured>) -> Bytes {
    match next_capture(rx).await {
        Captured::Frame(b) => b,
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn assert_same(what: &str, theirs: &Bytes, ours: &Bytes) {
    assert_eq!(
        hex(ours),
        hex(theirs),
        "{what}: our encoding differs from ibapi's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_encoder_produces_ibapis_exact_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(scripted_gateway(listener, tx));

    let client = tokio::time::timeout(STEP, ibapi::Client::connect(&addr, 100))
        .await
        .expect("connect timed out")
        .expect("ibapi connects to the scripted gateway");
    assert_eq!(client.server_version(), SERVER_VERSION);

    // Handshake and START_API.
    let Captured::Hello(hello) = next_capture(&mut rx).await else {
        panic!("first capture must be the hello")
    };
    let mut expected = BytesMut::new();
    ClientHello::new(VersionRange::new(213, 226)).encode(&mut expected);
    assert_same("client hello", &hello, &expected.freeze());
    assert_same(
        "StartApi",
        &next_frame(&mut rx).await,
        &ours(&Request::StartApi {
            client_id: 100,
            optional_capabilities: String::new(),
        }),
    );

    // server_time
    let t = tokio::time::timeout(STEP, client.server_time())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.unix_timestamp(), 1_767_268_800);
    assert_same(
        "ReqCurrentTime",
        &next_frame(&mut rx).await,
        &ours(&Request::ReqCurrentTime),
    );

    // historical_data, hourly with an end date.
    let aapl = IbContract::stock("AAPL").build();
    let end = time::macros::datetime!(2025-12-31 21:00:00 UTC);
    let hourly = tokio::time::timeout(
        STEP,
        client
            .historical_data(&aapl, BarSize::Hour)
            .duration(2.days())
            .ending(end)
            .fetch(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(hourly.bars.len(), 1);
    let raw = next_frame(&mut rx).await;
    assert_same(
        "ReqHistoricalData (hourly, with end date)",
        &raw,
        &ours(&Request::ReqHistoricalData(HistoricalDataRequest {
            req_id: req_id_of(&raw),
            contract: Contract::stock("AAPL"),
            end_date_time: "20251231 21:00:00 UTC".into(),
            bar_size: "1 hour".into(),
            duration: "2 D".into(),
            use_rth: true,
            what_to_show: "TRADES".into(),
            format_date: 2,
            ..HistoricalDataRequest::default()
        })),
    );

    // historical_data, daily, no end date, extended hours, midpoint.
    let daily = tokio::time::timeout(
        STEP,
        client
            .historical_data(&aapl, BarSize::Day)
            .duration(1.months())
            .what_to_show(WhatToShow::MidPoint)
            .trading_hours(TradingHours::Extended)
            .fetch(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(daily.bars.len(), 1);
    let raw = next_frame(&mut rx).await;
    assert_same(
        "ReqHistoricalData (daily, no end date)",
        &raw,
        &ours(&Request::ReqHistoricalData(HistoricalDataRequest {
            req_id: req_id_of(&raw),
            contract: Contract::stock("AAPL"),
            bar_size: "1 day".into(),
            duration: "1 M".into(),
            use_rth: false,
            what_to_show: "MIDPOINT".into(),
            format_date: 2,
            ..HistoricalDataRequest::default()
        })),
    );

    // head_timestamp
    let head = tokio::time::timeout(
        STEP,
        client.head_timestamp(&aapl, WhatToShow::Trades, TradingHours::Regular),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(head.unix_timestamp(), 345_479_400);
    let raw = next_frame(&mut rx).await;
    assert_same(
        "ReqHeadTimestamp",
        &raw,
        &ours(&Request::ReqHeadTimestamp(HeadTimestampRequest {
            req_id: req_id_of(&raw),
            contract: Contract::stock("AAPL"),
            use_rth: true,
            what_to_show: "TRADES".into(),
            format_date: 2,
        })),
    );

    // contract_details
    let details = tokio::time::timeout(STEP, client.contract_details(&aapl))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0].contract.contract_id, 265_598);
    let raw = next_frame(&mut rx).await;
    assert_same(
        "ReqContractDetails",
        &raw,
        &ours(&Request::ReqContractDetails {
            req_id: req_id_of(&raw),
            contract: Contract::stock("AAPL"),
        }),
    );

    // matching_symbols
    let matches = tokio::time::timeout(STEP, client.matching_symbols("AAP"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(matches.len(), 1);
    let raw = next_frame(&mut rx).await;
    assert_same(
        "ReqMatchingSymbols",
        &raw,
        &ours(&Request::ReqMatchingSymbols {
            req_id: req_id_of(&raw),
            pattern: "AAP".into(),
        }),
    );

    // The streaming family: each request as ibapi builds it, then its cancel when the
    // subscription is dropped.
    let market = |r: MarketRequest| ours(&Request::Market(r));
    let sub = tokio::time::timeout(STEP, client.market_data(&aapl).subscribe())
        .await
        .unwrap()
        .unwrap();
    let raw = next_frame(&mut rx).await;
    let req_id = req_id_of(&raw);
    let mkt = market(MarketRequest::MktData(MarketDataRequest {
        req_id,
        contract: Contract::stock("AAPL"),
        ..MarketDataRequest::default()
    }));
    assert_same("ReqMktData", &raw, &mkt);
    drop(sub);
    assert_same(
        "CancelMktData",
        &next_frame(&mut rx).await,
        &market(MarketRequest::CancelMktData { req_id }),
    );

    let sub = tokio::time::timeout(STEP, client.realtime_bars(&aapl).subscribe())
        .await
        .unwrap()
        .unwrap();
    let raw = next_frame(&mut rx).await;
    let req_id = req_id_of(&raw);
    assert_same(
        "ReqRealTimeBars",
        &raw,
        &market(MarketRequest::RealTimeBars(RealTimeBarsRequest {
            req_id,
            contract: Contract::stock("AAPL"),
            bar_size: 0,
            what_to_show: "TRADES".into(),
            use_rth: true,
        })),
    );
    drop(sub);
    assert_same(
        "CancelRealTimeBars",
        &next_frame(&mut rx).await,
        &market(MarketRequest::CancelRealTimeBars { req_id }),
    );

    let sub = tokio::time::timeout(STEP, client.tick_by_tick(&aapl, 0).last())
        .await
        .unwrap()
        .unwrap();
    let raw = next_frame(&mut rx).await;
    let req_id = req_id_of(&raw);
    assert_same(
        "ReqTickByTickData",
        &raw,
        &market(MarketRequest::TickByTick(TickByTickRequest {
            req_id,
            contract: Contract::stock("AAPL"),
            tick_type: "Last".into(),
            number_of_ticks: 0,
            ignore_size: false,
        })),
    );
    drop(sub);
    assert_same(
        "CancelTickByTickData",
        &next_frame(&mut rx).await,
        &market(MarketRequest::CancelTickByTick { req_id }),
    );

    client
        .switch_market_data_type(ibapi::market_data::MarketDataType::Delayed)
        .await
        .unwrap();
    assert_same(
        "ReqMarketDataType",
        &next_frame(&mut rx).await,
        &market(MarketRequest::MarketDataType {
            market_data_type: 3,
        }),
    );

    client.disconnect().await;
    server.abort();
}

/// Our encoder against the recorded captures, docs/ib-facts.md#captured-bytes (no live peer).
#[test]
fn matches_the_recorded_ibapi_captures() {
    let cases: Vec<(Request, &str)> = vec![
        (
            Request::StartApi {
                client_id: 100,
                optional_capabilities: String::new(),
            },
            "000000060000010f0864",
        ),
        (Request::ReqCurrentTime, "00000004000000f9"),
        (Request::ReqCurrentTimeInMillis, "0000000400000131"),
        (Request::ReqIds { num_ids: 0 }, "00000006000000d00800"),
        (Request::ReqManagedAccts, "00000004000000d9"),
        (
            Request::CancelHistoricalData {
                req_id: 1_500_000_000,
            },
            "0000000a000000e10880dea0cb05",
        ),
        (
            Request::ReqMatchingSymbols {
                req_id: 1_500_000_004,
                pattern: "AAP".into(),
            },
            "0000000f000001190884dea0cb0512034141 50",
        ),
    ];
    for (req, expected) in cases {
        assert_eq!(hex(&ours(&req)), expected.replace(' ', ""), "{req:?}");
    }
}
