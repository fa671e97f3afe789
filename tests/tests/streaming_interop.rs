//! Streaming over real loopback TCP, with third-party clients as peers: `ibapi` 5.5.0
//! (protobuf, server version 226) and ib_async 2.1.0 (text, 178) subscribe to market data,
//! real-time bars and tick-by-tick from `ibconn-sim`, receive them, and cancel; the sim's
//! counters show the subscriptions gone.
//!
//! The gateway's wall clock is pinned to Tuesday 2026-01-06 10:00 New York (the market open)
//! and runs in real time from there, so the market is open whatever day the tests run.
//!
//! The ibapi test also records ibapi's request frames through a proxy, decodes each streaming
//! request with the core's decoder and checks that the core's encoder writes the same bytes
//! (`--nocapture` prints them in hex).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{start_sim_with, within, Recorder};
use ibapi::contracts::Contract;
use ibapi::market_data::historical::{BarSize, BarTimestamp, ToDuration};
use ibapi::market_data::realtime::{TickTypes, WhatToShow};
use ibapi::market_data::{IgnoreSize, MarketDataType, TradingHours};
use ibapi::prelude::StreamExt;
use ibapi::subscriptions::SubscriptionItem;
use ibconn_core::message::Request;
use ibconn_core::wire::FrameDecoder;
use ibconn_sim::{GatewayConfig, GatewayCounters, SimServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Tuesday 2026-01-06 15:00:00 UTC, 10:00 in New York.
const OPEN_MS: i64 = 1_767_711_600_000;

async fn counters(sim: &SimServer) -> GatewayCounters {
    sim.counters().await.unwrap()
}

/// Poll the sim's counters until `done` holds (bounded).
async fn until(sim: &SimServer, what: &str, done: impl Fn(&GatewayCounters) -> bool) {
    within(what, async {
        loop {
            if done(&counters(sim).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The next data item of an ibapi subscription (notices skipped), bounded.
async fn next_data<T, S>(what: &str, sub: &mut S) -> T
where
    S: StreamExt<Item = Result<SubscriptionItem<T>, ibapi::Error>> + Unpin,
{
    within(what, async {
        loop {
            match sub.next().await {
                Some(Ok(SubscriptionItem::Data(t))) => return t,
                Some(Ok(SubscriptionItem::Notice(n))) => eprintln!("{what}: notice {n}"),
                Some(Err(e)) => panic!("{what}: {e}"),
                None => panic!("{what}: the stream ended"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibapi_streams_market_data_bars_and_tick_by_tick_and_cancels_them() {
    let sim = start_sim_with(GatewayConfig::default(), Some(OPEN_MS)).await;
    let proxy = Recorder::start(sim.local_addr()).await;
    let client = within("connect", ibapi::Client::connect(&proxy.addr(), 500))
        .await
        .unwrap();
    assert_eq!(client.server_version(), 226);
    let aapl = Contract::stock("AAPL").build();

    // reqMktData: type, parameters, then bid/ask/last with sizes.
    let mut md = within("market_data", client.market_data(&aapl).subscribe())
        .await
        .unwrap();
    let first = next_data("market data type", &mut md).await;
    assert!(
        matches!(first, TickTypes::MarketDataType(MarketDataType::Realtime)),
        "{first:?}"
    );
    let (mut quotes, mut lasts, mut params, mut stamps) = (0, 0, 0, 0);
    while quotes < 8 || lasts < 2 || stamps < 2 {
        match next_data("ticks", &mut md).await {
            TickTypes::PriceSize(t) => {
                assert!(t.price > 100.0 && t.size >= 0.0, "{t:?}");
                match t.price_tick_type as i32 {
                    1 | 2 => quotes += 1,
                    4 => lasts += 1,
                    other => panic!("price tick {other}: {t:?}"),
                }
            }
            TickTypes::Size(s) => quotes += usize::from(matches!(s.tick_type as i32, 0 | 3)),
            TickTypes::RequestParameters(p) => {
                params += 1;
                assert_eq!(p.min_tick, 0.01);
            }
            TickTypes::String(s) => {
                let t: i64 = s.value.parse().unwrap();
                assert!((OPEN_MS / 1000..OPEN_MS / 1000 + 60).contains(&t), "{s:?}");
                stamps += 1;
            }
            TickTypes::Price(p) => assert_eq!(p.tick_type as i32, 9, "the close: {p:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(params, 1);
    assert_eq!(counters(&sim).await.lines_in_use, 1);

    // reqRealTimeBars: 5-second bars equal to the historical 5-second bars of their interval.
    let mut bars = within(
        "realtime_bars",
        client
            .realtime_bars(&aapl)
            .what_to_show(WhatToShow::Trades)
            .trading_hours(TradingHours::Extended)
            .subscribe(),
    )
    .await
    .unwrap();
    let bar = next_data("first real-time bar", &mut bars).await;
    assert_eq!(bar.date.unix_timestamp() % 5, 0, "{bar:?}");
    assert!(bar.low <= bar.open && bar.open <= bar.high && bar.volume > 0.0);

    // reqTickByTickData: Last, BidAsk, MidPoint.
    let mut last = within("tick_by_tick last", client.tick_by_tick(&aapl, 0).last())
        .await
        .unwrap();
    let mut bid_ask = within(
        "tick_by_tick bid_ask",
        client.tick_by_tick(&aapl, 0).bid_ask(IgnoreSize::No),
    )
    .await
    .unwrap();
    let mut mid = within(
        "tick_by_tick mid_point",
        client.tick_by_tick(&aapl, 0).mid_point(),
    )
    .await
    .unwrap();
    let t1 = next_data("trade", &mut last).await;
    let t2 = next_data("trade", &mut last).await;
    assert_eq!(
        t2.time.unix_timestamp(),
        t1.time.unix_timestamp() + 1,
        "a trade a second"
    );
    assert_eq!(t1.exchange, "NASDAQ");
    let q = next_data("bid/ask", &mut bid_ask).await;
    assert!((q.ask_price - q.bid_price - 0.02).abs() < 1e-9, "{q:?}");
    let m = next_data("midpoint", &mut mid).await;
    assert!(
        (m.mid_point - (q.bid_price + q.ask_price) / 2.0).abs() < 0.05,
        "{m:?}"
    );
    let k = counters(&sim).await;
    assert_eq!((k.lines_in_use, k.tick_by_tick_in_use), (2, 3), "{k:?}");
    assert_eq!(k.live_subscriptions, 5);

    // The historical 5-second bars say the same as the real-time bar.
    let hist = within(
        "historical 5 secs",
        client
            .historical_data(&aapl, BarSize::Sec5)
            .duration(60.seconds())
            .trading_hours(TradingHours::Extended)
            .fetch(),
    )
    .await
    .unwrap();
    let h = hist
        .bars
        .iter()
        .find(|h| h.date == BarTimestamp::DateTime(bar.date))
        .unwrap_or_else(|| panic!("no historical bar at {}", bar.date));
    assert_eq!(
        (h.open, h.high, h.low, h.close, h.volume, h.wap, h.count),
        (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap, bar.count)
    );

    // Cancel: explicitly for market data, by dropping for the others.
    md.cancel().await;
    until(&sim, "market data cancelled", |k| k.lines_in_use == 1).await;
    drop((bars, last, bid_ask, mid));
    until(&sim, "every subscription cancelled", |k| {
        k.live_subscriptions == 0
    })
    .await;
    let k = counters(&sim).await;
    assert_eq!((k.lines_in_use, k.tick_by_tick_in_use), (0, 0), "{k:?}");
    let sent = k.stream_messages;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        counters(&sim).await.stream_messages,
        sent,
        "nothing streams any more"
    );
    assert_eq!(counters(&sim).await.duplicate_subscriptions, 0);

    within("disconnect", client.disconnect()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    check_frames(&proxy.bytes());
    within("shutdown", sim.shutdown()).await;
}

/// Decode ibapi's streaming request frames with the core and check the core's encoder writes
/// them byte for byte; print each (hex) for the core's own fixtures.
fn check_frames(sent: &[u8]) {
    let mut dec = FrameDecoder::server();
    dec.push(sent);
    let _hello = dec.next_frame().unwrap().unwrap();
    let mut names = Vec::new();
    while let Some(body) = dec.next_frame().unwrap() {
        let req = Request::decode_payload(body.clone(), 226)
            .unwrap_or_else(|e| panic!("ibapi frame the core cannot decode ({e}): {body:02x?}"));
        if !matches!(req, Request::Market(_)) {
            continue;
        }
        let mut ours = bytes::BytesMut::new();
        req.encode(226, &mut ours).unwrap();
        println!("ibapi {}: {}", req.name(), hex(&body));
        assert_eq!(hex(&ours[4..]), hex(&body), "{} re-encoded", req.name());
        names.push(req.name());
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names,
        [
            "CancelMktData",
            "CancelRealTimeBars",
            "CancelTickByTickData",
            "ReqMktData",
            "ReqRealTimeBars",
            "ReqTickByTickData"
        ]
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// ib_async 2.1.0 (text protocol, server version 178): reqMktData, reqRealTimeBars and
/// reqTickByTickData (Last, BidAsk) receive ticks and bars; its cancels stop them while the
/// session stays up (the script waits for the test's go before it disconnects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ib_async_streams_and_cancels() {
    let Some(python) = common::python("ib_async streaming interop") else {
        return;
    };
    let sim = start_sim_with(GatewayConfig::default(), Some(OPEN_MS)).await;
    let port = sim.local_addr().port().to_string();
    let mut child = tokio::process::Command::new(&python)
        .arg(common::script("ib_async_streaming.py"))
        .arg(&port)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await
        .expect("ib_async script timed out")
        .unwrap();
    let Some(line) = line else {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "script ended without a result ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let json: Value =
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {line}"));
    println!("ib_async: {json}");
    // Cancelled, still connected: nothing is left at the gateway.
    let k = counters(&sim).await;
    assert_eq!(
        (k.live_subscriptions, k.lines_in_use, k.tick_by_tick_in_use),
        (0, 0, 0),
        "{k:?}"
    );
    assert_eq!(
        (k.lines_in_use_max, k.tick_by_tick_in_use_max),
        (2, 2),
        "{k:?}"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        counters(&sim).await.stream_messages,
        k.stream_messages,
        "nothing streams after the cancels"
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("ib_async script did not end")
        .unwrap();
    assert!(
        out.status.success(),
        "script failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    sim.shutdown().await;

    assert_eq!(json["server_version"], 178);
    let t = &json["ticker"];
    assert_eq!(t["marketDataType"], 1, "{json}");
    let (bid, ask, last) = (
        t["bid"].as_f64().unwrap(),
        t["ask"].as_f64().unwrap(),
        t["last"].as_f64().unwrap(),
    );
    assert!((ask - bid - 0.02).abs() < 1e-9, "{json}");
    assert!(bid < last + 0.02 && last < ask + 0.02, "{json}");
    assert!(t["bidSize"].as_f64().unwrap() >= 100.0, "{json}");
    assert!(t["volume"].as_f64().unwrap() > 0.0, "{json}");
    assert!(t["close"].as_f64().unwrap() > 0.0, "{json}");
    assert_eq!(t["minTick"], 0.01, "{json}");
    let bars = &json["bars"];
    assert!(bars["count"].as_i64().unwrap() >= 2, "{json}");
    assert_eq!(bars["aligned"], true, "{json}");
    assert_eq!(bars["ohlc_ok"], true, "{json}");
    assert!(bars["volume"].as_f64().unwrap() > 0.0, "{json}");
    let tbt = &json["tick_by_tick"];
    assert!(tbt["last"].as_i64().unwrap() >= 5, "{json}");
    assert!(tbt["bid_ask"].as_i64().unwrap() >= 5, "{json}");
    assert_eq!(tbt["last_exchange"], "NASDAQ", "{json}");
    // After the cancels nothing more arrived.
    assert_eq!(json["after_cancel"]["new_ticks"], 0, "{json}");
    assert_eq!(json["after_cancel"]["new_tick_by_tick"], 0, "{json}");
}
