//! `Client::connect`'s inline handshake (dial, write and read in the caller's task, then the
//! driver takes over the open socket) against `ibconn-sim` over real loopback TCP. The sim runs on
//! a Tokio runtime of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use ibconn_core::connection::Config;
use ibconn_core::wire::VersionRange;
use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use ibconn_smol::{Client, Error, PoolNotice};

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
    let _guard = tokio_rt().enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let config = ServerConfig {
        gateway: GatewayConfig::default(),
        seed: 3,
    };
    SimServer::start(tokio::net::TcpListener::from_std(listener).unwrap(), config).unwrap()
}

fn modern(client_id: i32) -> Config {
    let mut config = Config::new(client_id);
    config.versions = VersionRange::new(213, 226);
    config
}

#[test]
fn the_driver_takes_over_the_handshaken_socket() {
    let sim = sim();
    let addr = sim.local_addr().to_string();
    smol::block_on(async {
        for config in [Config::new(21), modern(21)] {
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
        let second = within("same id", Client::connect_with(&by_name, 22, modern(22))).await;
        assert!(matches!(second, Err(Error::Acquire(_))), "{second:?}");
        within("shutdown", client.shutdown()).await;
    });
}
