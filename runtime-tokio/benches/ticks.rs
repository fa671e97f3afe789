//! Ticks: a tiny server answers `reqMktData` with N pre-encoded tick frames (protobuf, server
//! 226: a bid/ask/last price with its size, then the size alone, round-robin) written as fast as
//! the socket takes them, then a text tick marking the end. ibconn-tokio (a `Subscription`) and
//! `ibapi` 5.5.0 (its market-data subscription) consume the same bytes in interleaved rounds, same
//! run; the time runs from the subscribe call to the end marker in the consumer's hands. Then the
//! memory one open subscription costs: RSS before and after 99 more subscriptions, measured first
//! in the process (4 KiB pages: a resolution of 41 bytes per subscription).
//!
//! Run: `cargo bench -p ibconn-tokio --bench ticks` (`-- --quick` for a short run)
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ibconn_core::message::{Contract, MarketReply, MarketRequest, Request, Response};
use ibconn_core::wire::ServerHello;
use ibconn_tokio::{StreamData, StreamItem, StreamQuery, Tick};
use support::{median, rss_bytes};

mod support;

const SV: i32 = 226;
const STEP: Duration = Duration::from_secs(60);
/// The end marker's text.
const END: &str = "end";

/// `n` tick frames for `req_id`, then the end marker.
fn ticks(req_id: i32, n: usize) -> BytesMut {
    let mut out = BytesMut::new();
    for i in 0..n {
        let tick_type = [1, 2, 4][i % 3];
        let price = 250.0 + (i % 100) as f64 / 100.0;
        let reply = if i % 2 == 0 {
            MarketReply::TickPrice {
                req_id,
                tick_type,
                price,
                size: Some(100.0 + (i % 7) as f64),
                attr_mask: 0,
            }
        } else {
            MarketReply::TickSize {
                req_id,
                tick_type: [0, 3, 5][i % 3],
                size: 200.0 + (i % 11) as f64,
            }
        };
        Response::Market(reply).encode(SV, &mut out).unwrap();
    }
    Response::Market(MarketReply::TickString {
        req_id,
        tick_type: 45,
        value: END.into(),
    })
    .encode(SV, &mut out)
    .unwrap();
    out
}

/// One client's frame: hello, startup burst, and `n` ticks for each `reqMktData` (none when 0).
fn reply(n: &usize, body: Bytes, hello: bool) -> Vec<Bytes> {
    let mut out = BytesMut::new();
    if hello {
        let hello = ServerHello {
            server_version: SV,
            connection_time: "20260106 10:00:00 America/New_York".into(),
        };
        hello.encode(&mut out).unwrap();
        return vec![out.freeze()];
    }
    match Request::decode_payload(body, SV) {
        Ok(Request::StartApi { .. }) => {
            for r in [
                Response::ManagedAccounts {
                    accounts: "DU1,".into(),
                },
                Response::NextValidId { order_id: 1 },
            ] {
                r.encode(SV, &mut out).unwrap();
            }
        }
        Ok(Request::Market(MarketRequest::MktData(r))) if *n > 0 => out = ticks(r.req_id, *n),
        _ => {}
    }
    vec![out.freeze()]
}

async fn serve(n: usize) -> String {
    support::serve(n, reply).await
}

/// Ours: subscribe, count ticks (conflated ones included, as `Lagged` reports them) to the end.
async fn ours_round(c: &ibconn_tokio::Client, capacity: usize) -> (f64, usize, u64) {
    let t = Instant::now();
    let mut sub = c
        .subscribe_with_capacity(StreamQuery::market_data(Contract::stock("AAPL")), capacity)
        .await
        .unwrap();
    let (mut got, mut lagged) = (0usize, 0u64);
    loop {
        match tokio::time::timeout(STEP, sub.next()).await.unwrap() {
            Some(Ok(StreamItem::Data(StreamData::Tick(Tick::Text { value, .. }))))
                if value == END =>
            {
                break;
            }
            Some(Ok(StreamItem::Data(StreamData::Tick(_)))) => got += 1,
            Some(Ok(StreamItem::Lagged { dropped })) => lagged += dropped,
            Some(Ok(_)) => {}
            other => panic!("stream ended early: {other:?}"),
        }
    }
    (t.elapsed().as_secs_f64(), got, lagged)
}

/// ibapi: the same, through its market-data subscription (a price with its size is one item).
async fn theirs_round(c: &ibapi::Client) -> (f64, usize) {
    use ibapi::market_data::realtime::TickTypes;
    use ibapi::subscriptions::SubscriptionItem;
    let aapl = ibapi::contracts::Contract::stock("AAPL").build();
    let t = Instant::now();
    let mut sub = c.market_data(&aapl).subscribe().await.unwrap();
    let mut got = 0usize;
    loop {
        let next = poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut sub), cx));
        match tokio::time::timeout(STEP, next).await.unwrap() {
            Some(Ok(SubscriptionItem::Data(TickTypes::String(s)))) if s.value == END => break,
            Some(Ok(SubscriptionItem::Data(_))) => got += 1,
            Some(Ok(SubscriptionItem::Notice(_))) => {}
            other => panic!("ibapi stream ended early: {other:?}"),
        }
    }
    (t.elapsed().as_secs_f64(), got)
}

/// RSS per open subscription, measured before anything else ran (so no freed memory is
/// reused): 99 quiet subscriptions after a first one on one session (100 lines, IB's cap).
async fn memory_per_subscription() -> f64 {
    let quiet = serve(0).await;
    let c = ibconn_tokio::Client::connect(&quiet, 3).await.unwrap();
    let warm = c
        .subscribe(StreamQuery::market_data(Contract::stock("SPY")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = rss_bytes();
    let mut subs = Vec::new();
    for i in 0..99 {
        let contract = Contract::stock(&format!("S{i}"));
        subs.push(
            c.subscribe(StreamQuery::market_data(contract))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per = rss_bytes().saturating_sub(before) as f64 / 99.0;
    drop((subs, warm));
    c.shutdown().await;
    per
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let per_subscription = memory_per_subscription().await;
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let (n, rounds) = if quick { (20_000, 3) } else { (200_000, 15) };
    let addr = serve(n).await;
    println!("ticks: {n} tick frames per round over loopback (server {SV}, protobuf), {rounds} interleaved rounds (median)");
    // Queues big enough for a whole round: every tick reaches the consumer, so the figure is
    // ticks decoded and delivered. Then both clients' default queues (1,024), which shed ticks
    // of a burst the consumer has not caught up with: how many each lost.
    for (label, capacity) in [("every tick", 1usize << 18), ("default queues", 1024)] {
        let ours = ibconn_tokio::Client::connect(&addr, 1).await.unwrap();
        let theirs = ibapi::Client::builder()
            .address(addr.as_str())
            .client_id(2)
            .channel_capacity(capacity)
            .connect()
            .await
            .unwrap();
        let (mut ot, mut tt, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut dropped, mut lost) = (0u64, 0usize);
        for _ in 0..rounds {
            let (o, got, lagged) = ours_round(&ours, capacity).await;
            assert_eq!(
                got as u64 + lagged,
                n as u64,
                "every tick delivered or reported lagged"
            );
            dropped += lagged;
            let (t, got) = theirs_round(&theirs).await;
            // ibapi's async channels evict the oldest frames of a lagging consumer (a -6 notice).
            lost += n.saturating_sub(got);
            ot.push(o);
            tt.push(t);
            // Delivered ticks per second, ours over theirs.
            let (ours_rate, theirs_rate) = ((n as u64 - lagged) as f64 / o, got as f64 / t);
            ratios.push(ours_rate / theirs_rate);
        }
        let (o, t) = (median(ot), median(tt));
        println!("{label} (queue {capacity}):");
        println!(
            "  {:<13} {:>10} {:>18} {:>14} {:>8}",
            "client", "ms/round", "ticks decoded/s", "not delivered", "÷ ibapi"
        );
        println!(
            "  {:<13} {:>10.1} {:>18.0} {:>14} {:>7.2}×",
            "ibconn-tokio",
            o * 1e3,
            n as f64 / o,
            dropped,
            median(ratios)
        );
        println!(
            "  {:<13} {:>10.1} {:>18.0} {:>14} {:>7.2}×",
            "ibapi 5.5.0",
            t * 1e3,
            n as f64 / t,
            lost,
            1.0
        );
        theirs.disconnect().await;
        ours.shutdown().await;
    }
    println!(
        "memory per open subscription (RSS over 99, first thing in the process): \
         {per_subscription:.0} bytes"
    );
}
