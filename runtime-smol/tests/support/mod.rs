//! The smol pieces both test binaries (`pool.rs`, `client.rs`) hand the shared scenarios in
//! `runtime-tokio/tests/common/`: the bound on every await, a simulated gateway on loopback TCP
//! and its shutdown, and the macro that runs a list of scenarios as tests. The simulated gateway
//! runs on a Tokio runtime of its own, beside the smol code under test.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use ibconn_sim::{ServerConfig, SimServer};

const LIMIT: Duration = Duration::from_secs(5);

pub(crate) async fn within<F: Future>(what: &str, f: F) -> F::Output {
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

/// Start a sim on its own runtime.
#[allow(dead_code)]
pub(crate) async fn start_sim(config: ServerConfig) -> SimServer {
    let _guard = tokio_rt().enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    SimServer::start(tokio::net::TcpListener::from_std(listener).unwrap(), config).unwrap()
}

/// A sim whose clock starts at `unix_ms` (a trading session, for streams).
#[allow(dead_code)]
pub(crate) async fn start_sim_at(config: ServerConfig, unix_ms: i64) -> SimServer {
    let _guard = tokio_rt().enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    SimServer::start_at(listener, config, unix_ms).unwrap()
}

/// Stop a sim on its own runtime.
pub(crate) async fn stop(sim: SimServer) {
    let (tx, rx) = smol::channel::bounded(1);
    tokio_rt().spawn(async move {
        sim.shutdown().await;
        let _ = tx.send(()).await;
    });
    let _ = rx.recv().await;
}

/// `scenarios!(module::{a, b})`: a test `a` that runs `module::a()` under `smol::block_on`, ….
macro_rules! scenarios {
    ($module:ident::{$($name:ident),* $(,)?}) => {$(
        #[test]
        fn $name() {
            smol::block_on($module::$name());
        }
    )*};
}
pub(crate) use scenarios;
