//! Start an in-process simulated gateway, lease a backfill connection from a pool and fetch bars.
//!
//! `cargo run -p ibconn-tokio --example tokio_fetch_bars`
#![allow(missing_docs)]

use std::time::Duration;

use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::utc;
use ibconn_core::client_id::{Holder, RegistryConfig};
use ibconn_core::message::Contract;
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{ServerConfig, SimServer};
use ibconn_tokio::{MemoryRegistry, Pool, PoolConfig, Purpose};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = SimServer::start(listener, ServerConfig::default())?;
    let registry = MemoryRegistry::new(
        RegistryConfig::default(),
        Holder::from_pid(std::process::id()),
    );
    let config = PoolConfig {
        gateways: vec![sim.local_addr().to_string()],
        ..PoolConfig::default()
    };
    let pool = Pool::start(config, Box::new(registry));
    let conn = pool.acquire(Purpose::Backfill).await?;
    let request = HistoricalQuery {
        use_rth: true,
        ..HistoricalQuery::new(
            Contract::stock("AAPL"),
            EndTime::At(utc(2025, 12, 31, 21, 0, 0)),
            "2 D".parse()?,
            BarSize::Hour1,
            WhatToShow::Trades,
        )
    };
    let bars = conn.historical_data(request).await?;
    println!(
        "client {} got {} bars from {} to {}",
        conn.client_id(),
        bars.bars.len(),
        bars.start,
        bars.end
    );
    for bar in bars.bars.iter().take(3) {
        println!("{:?} close {}", bar.date, bar.close);
    }
    drop(conn);
    let stats = pool.stats().await?;
    println!("handshake latency {} us", stats.handshake_latency.last);
    pool.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown()).await?;
    Ok(())
}
