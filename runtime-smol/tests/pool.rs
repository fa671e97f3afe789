//! `ibconn-smol` against `ibconn-sim` over real loopback TCP. The scenarios are `ibconn-tokio`'s
//! (`runtime-tokio/tests/common/`, included by path); this file supplies the smol pieces. The
//! simulated gateway runs on a Tokio runtime of its own, beside the smol code under test. Every
//! await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../runtime-tokio/tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use ibconn_smol as rt;

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

async fn sleep(d: Duration) {
    smol::Timer::after(d).await;
}

fn spawn<T: Send + 'static>(
    f: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = T> {
    smol::spawn(f)
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

async fn sim() -> SimServer {
    let _guard = tokio_rt().enter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let config = ServerConfig {
        gateway: GatewayConfig::default(),
        seed: 7,
    };
    SimServer::start(tokio::net::TcpListener::from_std(listener).unwrap(), config).unwrap()
}

/// Stop a sim on its own runtime.
async fn stop(sim: SimServer) {
    let (tx, rx) = smol::channel::bounded(1);
    tokio_rt().spawn(async move {
        sim.shutdown().await;
        let _ = tx.send(()).await;
    });
    let _ = rx.recv().await;
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            smol::block_on(common::$name());
        }
    )*};
}

scenarios!(
    acquire_release_reuse_then_shutdown_releases_every_lease,
    thirty_two_concurrent_acquires_under_caps,
    waiters_time_out_with_a_typed_error,
    duplicate_client_id_moves_to_the_next_id,
    dropped_sockets_reconnect_and_waiting_callers_complete,
    first_gateway_down_new_work_goes_to_the_second,
    half_open_socket_is_detected_by_the_probe_and_redialed,
    link_loss_then_data_lost_tells_the_user_to_resubscribe,
    failover_to_the_second_gateway_and_back_after_the_first_returns,
    foreign_client_id_is_avoided_until_its_cooldown_ends,
);
