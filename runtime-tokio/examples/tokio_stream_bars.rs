//! Start an in-process simulated gateway (its clock on a trading day), subscribe to AAPL's
//! 5-second real-time bars and level-1 ticks through a pool, and print what arrives for a while;
//! then drop both subscriptions (which cancels them at the gateway).
//!
//! `cargo run -p ibconn-tokio --example tokio_stream_bars`
#![allow(missing_docs)]

use std::time::Duration;

use ibconn_core::client_id::{Holder, RegistryConfig};
use ibconn_core::message::Contract;
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use ibconn_tokio::{MemoryRegistry, Pool, PoolConfig, StreamData, StreamItem, StreamQuery};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // Tuesday 2026-01-06 15:00 UTC: the US session is open, so bars and ticks flow.
    let open = GatewayConfig::default().start_unix_ms;
    let sim = SimServer::start_at(listener, ServerConfig::default(), open)?;
    let registry = MemoryRegistry::new(
        RegistryConfig::default(),
        Holder::from_pid(std::process::id()),
    );
    let config = PoolConfig {
        gateways: vec![sim.local_addr().to_string()],
        ..PoolConfig::default()
    };
    let pool = Pool::start(config, Box::new(registry));
    let mut bars = pool
        .subscribe(StreamQuery::RealTimeBars {
            contract: Contract::stock("AAPL"),
            what_to_show: WhatToShow::Trades,
            use_rth: false,
        })
        .await?;
    let mut ticks = pool
        .subscribe(StreamQuery::market_data(Contract::stock("AAPL")))
        .await?;
    let until = tokio::time::Instant::now() + Duration::from_secs(11);
    let (mut n_bars, mut n_ticks) = (0, 0);
    loop {
        tokio::select! {
            item = bars.next() => match item {
                Some(Ok(StreamItem::Data(StreamData::RealTimeBar(b)))) => {
                    n_bars += 1;
                    println!("bar {} o {} h {} l {} c {} v {}", b.time, b.open, b.high, b.low, b.close, b.volume);
                }
                Some(Ok(other)) => println!("bars: {other:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            item = ticks.next() => match item {
                Some(Ok(StreamItem::Data(StreamData::Tick(t)))) => {
                    n_ticks += 1;
                    if n_ticks <= 5 {
                        println!("tick {t:?}");
                    }
                }
                Some(Ok(other)) => println!("ticks: {other:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            () = tokio::time::sleep_until(until) => break,
        }
    }
    println!("{n_bars} bars and {n_ticks} ticks in 11 s");
    drop((bars, ticks));
    let stats = pool.stats().await?;
    println!("streams open after the drop: {:?}", stats.streams.open);
    pool.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown()).await?;
    Ok(())
}
