//! Start an in-process simulated gateway (on a Tokio runtime of its own, as the sim's TCP server
//! is Tokio-based), then lease a backfill connection from a smol pool and fetch bars.
//!
//! `cargo run -p ibconn-smol --example smol_fetch_bars`
#![allow(missing_docs)]

use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::utc;
use ibconn_core::client_id::{Holder, RegistryConfig};
use ibconn_core::message::Contract;
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{ServerConfig, SimServer};
use ibconn_smol::{MemoryRegistry, Pool, PoolConfig, Purpose};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let sim = {
        let _guard = sim_rt.enter();
        SimServer::start(
            tokio::net::TcpListener::from_std(listener)?,
            ServerConfig::default(),
        )?
    };
    let addr = sim.local_addr().to_string();
    smol::block_on(async {
        let registry = MemoryRegistry::new(
            RegistryConfig::default(),
            Holder::from_pid(std::process::id()),
        );
        let config = PoolConfig {
            gateways: vec![addr],
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
        drop(conn);
        pool.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    sim_rt.block_on(sim.shutdown());
    Ok(())
}
