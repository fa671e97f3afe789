//! The Tokio pieces both test binaries (`pool.rs`, `client.rs`) hand the shared scenarios in
//! `common/`: the bound on every await, a simulated gateway on loopback TCP and its shutdown, and
//! the macro that runs a list of scenarios as tests.

use std::future::Future;
use std::time::Duration;

use ibconn_sim::{ServerConfig, SimServer};

const LIMIT: Duration = Duration::from_secs(5);

pub(crate) async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

#[allow(dead_code)]
pub(crate) async fn start_sim(config: ServerConfig) -> SimServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    SimServer::start(listener, config).unwrap()
}

/// A sim whose clock starts at `unix_ms` (a trading session, for streams).
#[allow(dead_code)]
pub(crate) async fn start_sim_at(config: ServerConfig, unix_ms: i64) -> SimServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    SimServer::start_at(listener, config, unix_ms).unwrap()
}

pub(crate) async fn stop(sim: SimServer) {
    sim.shutdown().await;
}

/// `scenarios!(module::{a, b})`: a test `a` that runs `module::a()` on a two-worker runtime, ….
macro_rules! scenarios {
    ($module:ident::{$($name:ident),* $(,)?}) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $module::$name().await;
        }
    )*};
}
pub(crate) use scenarios;
