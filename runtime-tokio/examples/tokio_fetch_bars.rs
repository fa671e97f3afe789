//! Start an in-process simulated gateway, lease a backfill connection from a pool and fetch bars.
//!
//! `cargo run -p ibconn-tokio --example tokio_fetch_bars`
#![allow(missing_docs)]

use std::time::Duration;

use ibconn_core::client_id::{Holder, RegistryConfig};
use ibconn_core::message::{Contract, HistoricalDataRequest};
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
    let request = HistoricalDataRequest {
        contract: Contract::stock("AAPL"),
        end_date_time: "20251231-21:00:00".into(),
        bar_size: "1 hour".into(),
        duration: "2 D".into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        ..HistoricalDataRequest::default()
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
