//! Start an in-process simulated gateway (on a Tokio runtime of its own, as the sim's TCP server
//! is Tokio-based), then lease a backfill connection from a smol pool and fetch bars.
//!
//! `cargo run -p ibconn-smol --example smol_fetch_bars`
#![allow(missing_docs)]

use ibconn_core::client_id::{Holder, RegistryConfig};
use ibconn_core::message::{Contract, HistoricalDataRequest};
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
        drop(conn);
        pool.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    sim_rt.block_on(sim.shutdown());
    Ok(())
}
