//! Start an in-process simulated gateway (on a Tokio runtime of its own, as the sim's TCP server
//! is Tokio-based; its clock on a trading day), then from a smol pool subscribe to AAPL's
//! tick-by-tick trades and print the first ones.
//!
//! `cargo run -p ibconn-smol --example smol_stream_ticks`
#![allow(missing_docs)]

use ibconn_core::client_id::{Holder, RegistryConfig};
use ibconn_core::message::Contract;
use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use ibconn_smol::{
    MemoryRegistry, Pool, PoolConfig, StreamData, StreamItem, StreamQuery, TickByTickKind,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let sim = {
        let _guard = sim_rt.enter();
        SimServer::start_at(
            tokio::net::TcpListener::from_std(listener)?,
            ServerConfig::default(),
            GatewayConfig::default().start_unix_ms,
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
        let mut trades = pool
            .subscribe(StreamQuery::TickByTick {
                contract: Contract::stock("AAPL"),
                kind: TickByTickKind::Last,
            })
            .await?;
        let mut seen = 0;
        while seen < 10 {
            match trades.next().await {
                Some(Ok(StreamItem::Data(StreamData::TickByTick(t)))) => {
                    seen += 1;
                    println!("trade {t:?}");
                }
                Some(Ok(other)) => println!("{other:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        drop(trades);
        pool.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    sim_rt.block_on(sim.shutdown());
    Ok(())
}
