//! `ibconn-smol` against `ibconn-sim` over real loopback TCP. Every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ibconn_core::backoff::BackoffConfig;
use ibconn_core::breaker::BreakerConfig;
use ibconn_core::client_id::store::FileStore;
use ibconn_core::client_id::{RegistryConfig, UnixMillis};
use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use ibconn_smol::{
    AcquireError, Client, Error, FileRegistry, Pool, PoolConfig, Purpose, PurposeConfig, Sharing,
};

const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    let limit = async {
        smol::Timer::after(LIMIT).await;
        None
    };
    smol::future::or(async { Some(f.await) }, limit)
        .await
        .unwrap_or_else(|| panic!("{what} timed out"))
}

/// The simulated gateway runs on a Tokio runtime of its own, beside the smol code under test.
fn tokio_rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
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
    SimServer::start(
        tokio::net::TcpListener::from_std(listener).unwrap(),
        ServerConfig {
            gateway: GatewayConfig::default(),
            seed: 7,
        },
    )
    .unwrap()
}

/// Stop a sim (on its own runtime).
async fn stop(sim: SimServer) {
    let (tx, rx) = smol::channel::bounded(1);
    tokio_rt().spawn(async move {
        sim.shutdown().await;
        let _ = tx.send(()).await;
    });
    let _ = rx.recv().await;
}

fn config(addrs: &[SocketAddr], backfill_max: usize) -> PoolConfig {
    let mut cfg = PoolConfig {
        gateways: addrs.iter().map(ToString::to_string).collect(),
        backoff: BackoffConfig {
            base: Duration::from_millis(50),
            factor: 2,
            cap: Duration::from_millis(500),
            max_attempts: None,
        },
        breaker: BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(30),
            half_open_probes_max: 1,
            success_threshold: 1,
        },
        acquire_timeout: Duration::from_secs(10),
        ..PoolConfig::default()
    };
    cfg.purposes.insert(
        Purpose::Backfill,
        PurposeConfig {
            max_connections: backfill_max,
            sharing: Sharing::Exclusive,
        },
    );
    cfg
}

/// A registry file of this test's own.
fn registry(name: &str) -> (FileRegistry, PathBuf) {
    let path = std::env::temp_dir().join(format!("ibconn-smol-{}-{name}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let reg = FileRegistry::new(
        RegistryConfig::default(),
        FileStore::new(&path),
        Some(name.into()),
    );
    (reg, path)
}

fn leases_in(path: &PathBuf) -> usize {
    FileStore::new(path)
        .load(UnixMillis(u64::MAX / 2))
        .map_or(0, |s| s.leases.len())
}

fn start(addrs: &[SocketAddr], backfill_max: usize, name: &str) -> (Pool, PathBuf) {
    let (reg, path) = registry(name);
    (
        Pool::start(config(addrs, backfill_max), Box::new(reg)),
        path,
    )
}

#[test]
fn acquire_release_reuse_then_shutdown_releases_every_lease() {
    smol::block_on(async {
        let sim = sim().await;
        let (pool, path) = start(&[sim.local_addr()], 4, "reuse");
        let conn = within("acquire", pool.acquire(Purpose::Backfill))
            .await
            .unwrap();
        let first = conn.client_id();
        assert!(within("time", conn.current_time()).await.unwrap() > 1_700_000_000);
        drop(conn);
        let again = within("acquire", pool.acquire(Purpose::Backfill))
            .await
            .unwrap();
        assert_eq!(again.client_id(), first, "the idle connection is reused");
        let stats = within("stats", pool.stats()).await.unwrap();
        assert_eq!(stats.established, 1);
        assert_eq!(leases_in(&path), 1);
        within("shutdown", pool.shutdown()).await;
        assert_eq!(leases_in(&path), 0, "shutdown released every lease");
        assert!(matches!(again.current_time().await, Err(Error::Closed)));
        within("sim", stop(sim)).await;
    });
}

#[test]
fn thirty_two_concurrent_acquires_under_caps() {
    smol::block_on(async {
        let sim = sim().await;
        let (pool, _path) = start(&[sim.local_addr()], 4, "caps");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let pool = pool.clone();
                smol::spawn(async move {
                    let conn = pool.acquire(Purpose::Backfill).await?;
                    conn.matching_symbols("AAPL").await.map(|s| s.len())
                })
            })
            .collect();
        for t in tasks {
            assert!(within("task", t).await.unwrap() > 0);
        }
        let stats = within("stats", pool.stats()).await.unwrap();
        assert!(stats.established <= 4, "{stats:?}");
        assert_eq!(stats.acquired, 32);
        within("shutdown", pool.shutdown()).await;
        within("sim", stop(sim)).await;
    });
}

#[test]
fn waiters_time_out_with_a_typed_error() {
    smol::block_on(async {
        let sim = sim().await;
        let (pool, _path) = start(&[sim.local_addr()], 1, "timeout");
        let _held = within("acquire", pool.acquire(Purpose::Backfill))
            .await
            .unwrap();
        let late = within(
            "acquire",
            pool.acquire_within(Purpose::Backfill, Some(Duration::from_millis(300))),
        )
        .await;
        assert!(
            matches!(late, Err(Error::Acquire(AcquireError::Timeout { after, .. })) if after == Duration::from_millis(300)),
            "{late:?}"
        );
        within("shutdown", pool.shutdown()).await;
        within("sim", stop(sim)).await;
    });
}

#[test]
fn duplicate_client_id_moves_to_the_next_id() {
    smol::block_on(async {
        let sim = sim().await;
        let squatter = within(
            "client",
            Client::connect(&sim.local_addr().to_string(), 2000),
        )
        .await
        .unwrap();
        let (pool, path) = start(&[sim.local_addr()], 4, "dup");
        let conn = within("acquire", pool.acquire(Purpose::Backfill))
            .await
            .unwrap();
        assert_eq!(conn.client_id(), 2001);
        let state = FileStore::new(&path).load(UnixMillis(0)).unwrap();
        assert!(state.foreign.contains_key(&2000), "{state:?}");
        assert_eq!(
            within("stats", pool.stats())
                .await
                .unwrap()
                .client_id_conflicts,
            1
        );
        drop(conn);
        within("shutdown", pool.shutdown()).await;
        within("squatter", squatter.shutdown()).await;
        within("sim", stop(sim)).await;
    });
}

#[test]
fn dropped_sockets_reconnect_and_waiting_callers_complete() {
    smol::block_on(async {
        let sim = sim().await;
        let (pool, _path) = start(&[sim.local_addr()], 2, "drop");
        let conn = within("acquire", pool.acquire(Purpose::Backfill))
            .await
            .unwrap();
        within("time", conn.current_time()).await.unwrap();
        sim.drop_connections();
        // A request on the lease and a new acquire, both while the pool reconnects.
        let other = pool.clone();
        let waiting = smol::spawn(async move {
            let c = other.acquire(Purpose::Backfill).await?;
            c.matching_symbols("SPY").await.map(|s| s.len())
        });
        let symbols = within("symbols", conn.matching_symbols("AAPL"))
            .await
            .unwrap();
        assert!(!symbols.is_empty());
        assert!(within("waiter", waiting).await.unwrap() > 0);
        let stats = within("stats", pool.stats()).await.unwrap();
        assert!(stats.disconnects >= 1 && stats.reconnects >= 1, "{stats:?}");
        drop(conn);
        within("shutdown", pool.shutdown()).await;
        within("sim", stop(sim)).await;
    });
}

#[test]
fn first_gateway_down_new_work_goes_to_the_second() {
    smol::block_on(async {
        let first = sim().await;
        let second = sim().await;
        let addrs = [first.local_addr(), second.local_addr()];
        let (pool, _path) = start(&addrs, 2, "failover");
        let conn = within("acquire", pool.acquire(Purpose::Backfill))
            .await
            .unwrap();
        within("time", conn.current_time()).await.unwrap();
        drop(conn);
        within("sim", stop(first)).await;
        let conn = within("acquire", pool.acquire(Purpose::Backfill))
            .await
            .unwrap();
        within("time", conn.current_time()).await.unwrap();
        let stats = within("stats", pool.stats()).await.unwrap();
        assert_eq!(stats.gateways[0].established, 1);
        assert_eq!(stats.gateways[1].established, 1);
        assert!(stats.gateways[0].failed >= 1);
        assert!(serde_json::to_string(&stats).unwrap().contains("breaker"));
        drop(conn);
        within("shutdown", pool.shutdown()).await;
        within("sim", stop(second)).await;
    });
}
