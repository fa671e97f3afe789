//! `Client::connect`'s inline handshake (dial, write and read in the caller's task, then the
//! driver takes over the open socket) and the version offer, against `ibconn-sim` over real
//! loopback TCP, shared word for word by the tokio and the smol runtime tests
//! (`runtime-smol/tests/client.rs` includes this file by path).
//!
//! The including test crate provides the runtime-specific pieces at its root: `use ibconn_<rt> as
//! rt;`, `within(what, future)` (every await here is bounded by it), `start_sim(config) ->
//! SimServer` and `stop(sim)`.

#[path = "recorder.rs"]
mod recorder;

use std::time::Duration;

use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::utc;
use ibconn_core::client_id::Holder;
use ibconn_core::connection::{Config, VersionPolicy};
use ibconn_core::message::Contract;
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_core::wire::VersionRange;
use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use recorder::{Recorder, Seen};

use crate::{rt, start_sim, stop, within};

/// Hands every scenario below to the including crate's `scenarios!` macro, which makes each a test
/// of the same name (this module must be mounted as `common`).
macro_rules! every_scenario {
    ($runner:ident) => {
        $runner!(common::{
            the_driver_takes_over_the_handshaken_socket,
            a_host_name_and_a_dropped_socket_after_the_handover,
            a_client_id_in_use_fails_the_connect,
            a_text_era_gateway_with_the_explicit_wide_offer,
            the_default_offer_sends_start_api_with_the_hello,
            the_default_offer_falls_back_once_for_a_text_era_gateway,
            a_pinned_modern_offer_never_falls_back,
        });
    };
}
pub(crate) use every_scenario;

pub(crate) async fn sim_with(gateway: GatewayConfig) -> SimServer {
    start_sim(ServerConfig { gateway, seed: 3 }).await
}

/// A gateway that speaks versions 100 to `max` only.
fn text_era(max: i32) -> GatewayConfig {
    GatewayConfig {
        versions: VersionRange::new(100, max),
        ..GatewayConfig::default()
    }
}

/// The wide offer, pinned: START_API waits for the server's hello.
fn wide(client_id: i32) -> Config {
    let mut config = Config::new(client_id);
    config.versions = VersionPolicy::Pinned(VersionRange::supported());
    config
}

fn hourly() -> HistoricalQuery {
    HistoricalQuery {
        use_rth: true,
        ..HistoricalQuery::new(
            Contract::stock("AAPL"),
            EndTime::At(utc(2025, 12, 31, 21, 0, 0)),
            "2 D".parse().unwrap(),
            BarSize::Hour1,
            WhatToShow::Trades,
        )
    }
}

/// Read notices until the next `Connected` (the session's redial).
async fn redialed(events: &mut rt::Events) {
    loop {
        match within("notice", events.recv()).await {
            Some(rt::PoolNotice::Connected { .. }) => break,
            Some(_) => {}
            None => panic!("notices ended"),
        }
    }
}

/// A second session with `client_id` gets 326.
async fn assert_in_use(addr: &str, client_id: i32) {
    let second = within("same id", rt::Client::connect(addr, client_id)).await;
    assert!(matches!(second, Err(rt::Error::Acquire(_))), "{second:?}");
}

/// With the default and with the wide offer, requests go through the driver after the handshake.
pub(crate) async fn the_driver_takes_over_the_handshaken_socket() {
    let sim = sim_with(GatewayConfig::default()).await;
    let addr = sim.local_addr().to_string();
    for config in [Config::new(11), wide(11)] {
        let client = within("connect", rt::Client::connect_with(&addr, 11, config))
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
    within("sim", stop(sim)).await;
}

/// Connect by host name; the socket the handshake opened is dropped: a redial, and the redialed
/// session still holds its id.
pub(crate) async fn a_host_name_and_a_dropped_socket_after_the_handover() {
    let sim = sim_with(GatewayConfig::default()).await;
    let addr = format!("localhost:{}", sim.local_addr().port());
    let client = within("connect by name", rt::Client::connect(&addr, 12))
        .await
        .unwrap();
    let mut events = client.events();
    sim.drop_connections();
    // The socket the inline handshake opened now belongs to the driver: its EOF leads to a redial.
    redialed(&mut events).await;
    within("current time after redial", client.current_time())
        .await
        .unwrap();
    assert_in_use(&addr, 12).await;
    within("shutdown", client.shutdown()).await;
    within("sim", stop(sim)).await;
}

pub(crate) async fn a_client_id_in_use_fails_the_connect() {
    let sim = sim_with(GatewayConfig::default()).await;
    let addr = sim.local_addr().to_string();
    let first = within("first", rt::Client::connect(&addr, 13))
        .await
        .unwrap();
    assert_in_use(&addr, 13).await;
    within("shutdown", first.shutdown()).await;
    within("sim", stop(sim)).await;
}

pub(crate) async fn a_text_era_gateway_with_the_explicit_wide_offer() {
    let sim = sim_with(text_era(187)).await;
    let addr = sim.local_addr().to_string();
    let client = within("connect", rt::Client::connect_with(&addr, 14, wide(14)))
        .await
        .unwrap();
    within("current time", client.current_time()).await.unwrap();
    within("shutdown", client.shutdown()).await;
    within("sim", stop(sim)).await;
}

pub(crate) async fn the_default_offer_sends_start_api_with_the_hello() {
    let sim = sim_with(GatewayConfig::default()).await;
    let proxy = Recorder::start(sim.local_addr());
    let client = within("connect", rt::Client::connect(&proxy.addr(), 16))
        .await
        .unwrap();
    // The recorder forwards nothing before it has read the frame after a modern hello: this
    // connect finished, so START_API came with the hello (one round trip).
    assert_eq!(proxy.seen(), [Seen::modern_pipelined()]);
    within("current time", client.current_time()).await.unwrap();
    let stats = within("stats", client.stats()).await.unwrap();
    let gateway = &stats.gateways[0];
    assert_eq!((gateway.version_fallbacks, gateway.wide_offer), (0, false));
    within("shutdown", client.shutdown()).await;
    within("sim", stop(sim)).await;
}

pub(crate) async fn the_default_offer_falls_back_once_for_a_text_era_gateway() {
    for max in [176, 200] {
        let sim = sim_with(text_era(max)).await;
        let proxy = Recorder::start(sim.local_addr());
        let client = within("connect", rt::Client::connect(&proxy.addr(), 17))
            .await
            .unwrap_or_else(|e| panic!("v{max}: {e}"));
        assert_eq!(
            proxy.seen(),
            [Seen::modern_pipelined(), Seen::wide()],
            "v{max}: one modern attempt, then the wide offer"
        );
        // Requests go out in text form.
        let time = within("current time", client.current_time()).await.unwrap();
        assert!(time > 1_700_000_000, "{time}");
        let bars = within("historical data", client.historical_data(hourly()))
            .await
            .unwrap();
        assert_eq!(bars.bars.len(), 14, "v{max}: two RTH days of 7 bars");
        let stats = within("stats", client.stats()).await.unwrap();
        let gateway = &stats.gateways[0];
        assert_eq!(
            (
                gateway.version_fallbacks,
                gateway.wide_offer,
                gateway.failed
            ),
            (1, true, 0),
            "v{max}: {gateway:?}"
        );
        assert_eq!(gateway.breaker.consecutive_failures, 0);
        // A redial of the same session goes straight to the wide offer.
        let mut events = client.events();
        sim.drop_connections();
        redialed(&mut events).await;
        within("current time after redial", client.current_time())
            .await
            .unwrap();
        assert_eq!(
            proxy.seen(),
            [Seen::modern_pipelined(), Seen::wide(), Seen::wide()],
            "v{max}"
        );
        within("shutdown", client.shutdown()).await;
        within("sim", stop(sim)).await;
    }
}

pub(crate) async fn a_pinned_modern_offer_never_falls_back() {
    let sim = sim_with(text_era(176)).await;
    let proxy = Recorder::start(sim.local_addr());
    let mut config = Config::new(18);
    config.versions = VersionPolicy::Pinned(VersionRange::modern());
    let (pool_config, ids) = rt::PoolConfig::single_session(&proxy.addr(), 18, config);
    let registry = rt::MemoryRegistry::new(ids, Holder::from_pid(std::process::id()));
    let pool = rt::Pool::start(pool_config, Box::new(registry));
    let purpose = rt::PoolConfig::single_session_purpose();
    let got = within(
        "acquire",
        pool.acquire_within(purpose, Some(Duration::from_secs(3))),
    )
    .await;
    assert!(matches!(got, Err(rt::Error::Acquire(_))), "{got:?}");
    let stats = within("stats", pool.stats()).await.unwrap();
    let gateway = &stats.gateways[0];
    assert_eq!((gateway.version_fallbacks, gateway.wide_offer), (0, false));
    assert!(gateway.failed >= 1, "{gateway:?}");
    let seen = proxy.seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| *s == Seen::modern_pipelined()),
        "{seen:?}"
    );
    within("shutdown", pool.shutdown()).await;
    within("sim", stop(sim)).await;
}
