//! Stream scenarios against `ibconn-sim` over real loopback TCP, shared word for word by the tokio
//! and the smol runtime tests (`runtime-smol/tests/streams.rs` includes this file by path): a
//! subscription delivers, dropping it cancels at the gateway, it outlives a dropped session with
//! an interruption and a gap, it ends when IB refuses it or the pool shuts down.
//!
//! The including test crate provides at its root: `use ibconn_<rt> as rt;`, `within(what,
//! future)`, `start_sim_at(config, unix_ms) -> SimServer` and `stop(sim)`.

use std::time::Duration;

use ibconn_core::backoff::BackoffConfig;
use ibconn_core::client_id::{Holder, RegistryConfig};
use ibconn_core::message::Contract;
use ibconn_core::pool::{MemoryRegistry, PoolConfig};
use ibconn_core::stream::{StreamData, StreamItem, StreamQuery, TickByTickKind};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};

use crate::{rt, start_sim_at, stop, within};

/// Hands every scenario below to the including crate's `scenarios!` macro.
macro_rules! every_scenario {
    ($runner:ident) => {
        $runner!(common::{
            a_subscription_delivers_and_dropping_it_cancels_at_the_gateway,
            a_subscription_outlives_a_dropped_session_with_an_interruption_and_a_gap,
            a_refused_stream_ends_with_its_error_and_shutdown_ends_the_rest,
        });
    };
}
pub(crate) use every_scenario;

/// A gateway whose clock stands half a second before a 5-second boundary of an open session
/// (2026-01-06 15:00:04.5 UTC), so the first real-time bar is due at once.
async fn open_sim() -> SimServer {
    let config = ServerConfig {
        gateway: GatewayConfig::default(),
        seed: 11,
    };
    let at = GatewayConfig::default().start_unix_ms + 4_500;
    start_sim_at(config, at).await
}

fn pool(sim: &SimServer) -> rt::Pool {
    let cfg = PoolConfig {
        gateways: vec![sim.local_addr().to_string()],
        backoff: BackoffConfig {
            base: Duration::from_millis(50),
            factor: 2,
            cap: Duration::from_millis(200),
            max_attempts: None,
        },
        ..PoolConfig::default()
    };
    let registry = MemoryRegistry::new(RegistryConfig::default(), Holder::from_pid(4242));
    rt::Pool::start(cfg, Box::new(registry))
}

/// Items until one matches; the ones before it are returned too.
async fn until(
    sub: &mut rt::Subscription,
    what: &str,
    pred: impl Fn(&StreamItem) -> bool,
) -> (StreamItem, Vec<StreamItem>) {
    within(what, async {
        let mut before = Vec::new();
        loop {
            match sub.next().await {
                Some(Ok(item)) if pred(&item) => return (item, before),
                Some(Ok(item)) => before.push(item),
                other => panic!("stream ended waiting for {what}: {other:?} after {before:?}"),
            }
        }
    })
    .await
}

async fn live_subscriptions(sim: &SimServer) -> u64 {
    within("counters", sim.counters())
        .await
        .unwrap()
        .live_subscriptions
}

pub(crate) async fn a_subscription_delivers_and_dropping_it_cancels_at_the_gateway() {
    let sim = open_sim().await;
    let pool = pool(&sim);
    let aapl = || Contract::stock("AAPL");
    let mut ticks = within(
        "subscribe",
        pool.subscribe(StreamQuery::market_data(aapl())),
    )
    .await
    .unwrap();
    let mut bars = within(
        "subscribe bars",
        pool.subscribe(StreamQuery::RealTimeBars {
            contract: aapl(),
            what_to_show: WhatToShow::Trades,
            use_rth: false,
        }),
    )
    .await
    .unwrap();
    let mut trades = within(
        "subscribe trades",
        pool.subscribe(StreamQuery::TickByTick {
            contract: aapl(),
            kind: TickByTickKind::Last,
        }),
    )
    .await
    .unwrap();
    let is =
        |f: fn(&StreamData) -> bool| move |i: &StreamItem| matches!(i, StreamItem::Data(d) if f(d));
    until(
        &mut ticks,
        "a tick",
        is(|d| matches!(d, StreamData::Tick(_))),
    )
    .await;
    let (bar, _) = until(
        &mut bars,
        "a bar",
        is(|d| matches!(d, StreamData::RealTimeBar(_))),
    )
    .await;
    let StreamItem::Data(StreamData::RealTimeBar(bar)) = bar else {
        unreachable!()
    };
    assert_eq!(bar.time % 5, 0, "5-second bars on their boundary");
    assert!(bar.low <= bar.open && bar.open <= bar.high, "{bar:?}");
    until(
        &mut trades,
        "a trade",
        is(|d| matches!(d, StreamData::TickByTick(_))),
    )
    .await;
    assert_eq!(live_subscriptions(&sim).await, 3);
    let stats = within("stats", pool.stats()).await.unwrap();
    assert_eq!(stats.streams.open.values().sum::<usize>(), 3);

    drop((ticks, bars, trades));
    within("the gateway hears the cancels", async {
        while live_subscriptions(&sim).await > 0 {
            crate::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let stats = within("stats", pool.stats()).await.unwrap();
    assert!(stats.streams.open.is_empty(), "{:?}", stats.streams);
    within("shutdown", pool.shutdown()).await;
    within("sim", stop(sim)).await;
}

pub(crate) async fn a_subscription_outlives_a_dropped_session_with_an_interruption_and_a_gap() {
    let sim = open_sim().await;
    let pool = pool(&sim);
    let mut ticks = within(
        "subscribe",
        pool.subscribe(StreamQuery::market_data(Contract::stock("MSFT"))),
    )
    .await
    .unwrap();
    let tick = |i: &StreamItem| matches!(i, StreamItem::Data(StreamData::Tick(_)));
    until(&mut ticks, "a tick", tick).await;

    sim.drop_connections();
    let (interrupted, _) = until(&mut ticks, "the interruption", |i| {
        matches!(i, StreamItem::Interrupted { .. })
    })
    .await;
    let (gap, _) = until(&mut ticks, "the gap", |i| {
        matches!(i, StreamItem::Gap { .. })
    })
    .await;
    let (StreamItem::Interrupted { at, reason }, StreamItem::Gap { from, to }) =
        (&interrupted, &gap)
    else {
        unreachable!()
    };
    assert!(reason.contains("session lost"), "{reason}");
    assert_eq!(from, at);
    assert!(to >= from);
    until(&mut ticks, "a tick on the new session", tick).await;
    let counters = within("counters", sim.counters()).await.unwrap();
    assert_eq!(
        counters.live_subscriptions, 1,
        "requested once again, not twice"
    );
    assert_eq!(counters.duplicate_subscriptions, 0);
    let stats = within("stats", pool.stats()).await.unwrap();
    assert_eq!(
        (stats.streams.interrupted, stats.streams.resubscribed),
        (1, 1)
    );
    drop(ticks);
    within("shutdown", pool.shutdown()).await;
    within("sim", stop(sim)).await;
}

pub(crate) async fn a_refused_stream_ends_with_its_error_and_shutdown_ends_the_rest() {
    let sim = open_sim().await;
    let pool = pool(&sim);
    let mut unknown = within(
        "subscribe",
        pool.subscribe(StreamQuery::market_data(Contract::stock("NOSUCHSYM"))),
    )
    .await
    .unwrap();
    let end = within("the refusal", async {
        loop {
            match unknown.next().await {
                Some(Ok(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(
        matches!(&end, Some(Err(e)) if e.to_string().contains("200")),
        "error 200 ends the stream: {end:?}"
    );
    assert!(within("after the error", unknown.next()).await.is_none());

    let mut ticks = within(
        "subscribe",
        pool.subscribe(StreamQuery::market_data(Contract::stock("AAPL"))),
    )
    .await
    .unwrap();
    within("shutdown", pool.shutdown()).await;
    let end = within("the end", async {
        loop {
            match ticks.next().await {
                Some(Ok(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(
        matches!(end, Some(Err(rt::Error::Closed)) | None),
        "{end:?}"
    );
    within("sim", stop(sim)).await;
}
