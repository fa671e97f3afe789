//! `ibconn-tokio` against `ibconn-sim` over real loopback TCP. The scenarios live in `common/` and
//! are shared with `ibconn-smol`; this file supplies the Tokio pieces. Every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::future::Future;
use std::time::Duration;

use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use ibconn_tokio as rt;

const LIMIT: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

fn spawn<T: Send + 'static>(
    f: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = T> {
    let task = tokio::spawn(f);
    async move { task.await.unwrap() }
}

async fn sim() -> SimServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServerConfig {
        gateway: GatewayConfig::default(),
        seed: 7,
    };
    SimServer::start(listener, config).unwrap()
}

async fn stop(sim: SimServer) {
    sim.shutdown().await;
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            common::$name().await;
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
