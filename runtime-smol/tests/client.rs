//! `Client::connect`'s inline handshake (dial, write and read in the caller's task, then the
//! driver takes over the open socket) against `ibconn-sim` over real loopback TCP. The sim runs on
//! a Tokio runtime of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../runtime-tokio/tests/common/recorder.rs"]
mod recorder;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use ibconn_core::connection::{Config, VersionPolicy};
use ibconn_core::message::{Contract, HistoricalDataRequest};
use ibconn_core::wire::VersionRange;
use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use ibconn_smol::{Client, Error, PoolNotice};
use recorder::{Recorder, Seen};

const LIMIT: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    let limit = async {
        smol::Timer::after(LIMIT).await;
        None
    };
    smol::future::or(async { Some(f.await) }, limit)
        .await
        .unwrap_or_else(|| panic!("{what} timed out"))
}

fn tokio_rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn sim() -> SimServer {
    sim_with(GatewayConfig::default())
}

fn sim_with(gateway: GatewayConfig) -> SimServer {
    let _guard = tokio_rt().enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let config = ServerConfig { gateway, seed: 3 };
    SimServer::start(tokio::net::TcpListener::from_std(listener).unwrap(), config).unwrap()
}

fn stop(sim: SimServer) {
    tokio_rt().block_on(sim.shutdown());
}

/// The wide offer, pinned: START_API waits for the server's hello.
fn wide(client_id: i32) -> Config {
    let mut config = Config::new(client_id);
    config.versions = VersionPolicy::Pinned(VersionRange::supported());
    config
}

#[test]
fn the_driver_takes_over_the_handshaken_socket() {
    let sim = sim();
    let addr = sim.local_addr().to_string();
    smol::block_on(async {
        for config in [Config::new(21), wide(21)] {
            let client = within("connect", Client::connect_with(&addr, 21, config))
                .await
                .unwrap();
            let time = within("current time", client.current_time()).await.unwrap();
            assert!(time > 1_700_000_000, "{time}");
            within("shutdown", client.shutdown()).await;
        }
        // By name, then the socket the handshake opened (now the driver's) is dropped: a redial.
        let by_name = format!("localhost:{}", sim.local_addr().port());
        let client = within("connect by name", Client::connect(&by_name, 22))
            .await
            .unwrap();
        let mut events = client.events();
        sim.drop_connections();
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
        // A second session with the same id gets 326.
        let second = within("same id", Client::connect(&by_name, 22)).await;
        assert!(matches!(second, Err(Error::Acquire(_))), "{second:?}");
        within("shutdown", client.shutdown()).await;
    });
}

#[test]
fn the_default_offer_pipelines_start_api_and_falls_back_for_text_era_gateways() {
    let modern = sim();
    let proxy = Recorder::start(modern.local_addr());
    smol::block_on(async {
        let client = within("connect", Client::connect(&proxy.addr(), 23))
            .await
            .unwrap();
        // The recorder forwards nothing before the frame after a modern hello: START_API came
        // with the hello (one round trip).
        assert_eq!(proxy.seen(), [Seen::modern_pipelined()]);
        let stats = within("stats", client.stats()).await.unwrap();
        assert_eq!(stats.gateways[0].version_fallbacks, 0);
        within("shutdown", client.shutdown()).await;
    });
    stop(modern);
    for max in [176, 200] {
        let old = sim_with(GatewayConfig {
            versions: VersionRange::new(100, max),
            ..GatewayConfig::default()
        });
        let proxy = Recorder::start(old.local_addr());
        smol::block_on(async {
            let client = within("connect", Client::connect(&proxy.addr(), 24))
                .await
                .unwrap_or_else(|e| panic!("v{max}: {e}"));
            assert_eq!(
                proxy.seen(),
                [Seen::modern_pipelined(), Seen::wide()],
                "v{max}: one modern attempt, then the wide offer"
            );
            let time = within("current time", client.current_time()).await.unwrap();
            assert!(time > 1_700_000_000, "{time}");
            let bars = within(
                "historical data",
                client.historical_data(HistoricalDataRequest {
                    contract: Contract::stock("AAPL"),
                    end_date_time: "20251231-21:00:00".into(),
                    bar_size: "1 hour".into(),
                    duration: "2 D".into(),
                    use_rth: true,
                    what_to_show: "TRADES".into(),
                    format_date: 2,
                    ..HistoricalDataRequest::default()
                }),
            )
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
            within("shutdown", client.shutdown()).await;
        });
        stop(old);
    }
}
