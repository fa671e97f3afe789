//! `Client::connect`'s inline handshake (dial, write and read in the caller's task, then the
//! driver takes over the open socket) against `ibconn-sim` over real loopback TCP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::time::Duration;

use ibconn_core::connection::Config;
use ibconn_core::wire::VersionRange;
use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use ibconn_tokio::{Client, Error, PoolNotice};

const LIMIT: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

async fn sim_with(gateway: GatewayConfig) -> SimServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    SimServer::start(listener, ServerConfig { gateway, seed: 3 }).unwrap()
}

fn modern(client_id: i32) -> Config {
    let mut config = Config::new(client_id);
    config.versions = VersionRange::new(213, 226);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_takes_over_the_handshaken_socket() {
    let sim = sim_with(GatewayConfig::default()).await;
    let addr = sim.local_addr().to_string();
    for config in [Config::new(11), modern(11)] {
        let client = within("connect", Client::connect_with(&addr, 11, config))
            .await
            .unwrap();
        assert_eq!(client.client_id(), 11);
        // The startup burst's farm notices were read inline; requests now go through the driver.
        let time = within("current time", client.current_time()).await.unwrap();
        assert!(time > 1_700_000_000, "{time}");
        let stats = within("stats", client.stats()).await.unwrap();
        assert!(stats.established >= 1, "{stats:?}");
        within("shutdown", client.shutdown()).await;
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_and_a_dropped_socket_after_the_handover() {
    let sim = sim_with(GatewayConfig::default()).await;
    let addr = format!("localhost:{}", sim.local_addr().port());
    let client = within("connect by name", Client::connect(&addr, 12))
        .await
        .unwrap();
    let mut events = client.events();
    sim.drop_connections();
    // The socket the inline handshake opened now belongs to the driver: its EOF leads to a redial.
    loop {
        match within("notice", events.recv()).await {
            Some(PoolNotice::Connected { .. }) => break,
            Some(_) => {}
            None => panic!("notices ended"),
        }
    }
    within("current time after redial", client.current_time())
        .await
        .unwrap();
    within("shutdown", client.shutdown()).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_in_use_fails_the_connect() {
    let sim = sim_with(GatewayConfig::default()).await;
    let addr = sim.local_addr().to_string();
    let first = within("first", Client::connect_with(&addr, 13, modern(13)))
        .await
        .unwrap();
    let second = within("second", Client::connect_with(&addr, 13, modern(13))).await;
    assert!(matches!(second, Err(Error::Acquire(_))), "{second:?}");
    within("shutdown", first.shutdown()).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_era_gateway_with_the_explicit_wide_offer() {
    let sim = sim_with(GatewayConfig {
        versions: VersionRange::new(100, 187),
        ..GatewayConfig::default()
    })
    .await;
    let addr = sim.local_addr().to_string();
    let mut config = Config::new(14);
    config.versions = VersionRange::supported();
    let client = within("connect", Client::connect_with(&addr, 14, config))
        .await
        .unwrap();
    within("current time", client.current_time()).await.unwrap();
    within("shutdown", client.shutdown()).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn connects_on_a_current_thread_runtime() {
    let sim = sim_with(GatewayConfig::default()).await;
    let addr = sim.local_addr().to_string();
    let client = within("connect", Client::connect_with(&addr, 15, modern(15)))
        .await
        .unwrap();
    within("current time", client.current_time()).await.unwrap();
    within("shutdown", client.shutdown()).await;
    sim.shutdown().await;
}
