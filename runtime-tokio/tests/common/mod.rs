//! Pool scenarios against `ibconn-sim` over real loopback TCP, shared word for word by the tokio
//! and the smol runtime tests (`runtime-smol/tests/pool.rs` includes this file by path): reuse,
//! caps, typed timeouts, 326, dropped sockets, and the faults (half-open socket, 1100/1101,
//! restart with failover and return, foreign-id cooldown, a gateway that stops reading).
//!
//! The including test crate provides the runtime-specific pieces at its root: `use ibconn_<rt> as
//! rt;`, `within(what, future)` (every await here is bounded by it), `sleep(duration)`,
//! `spawn(future)` (a task whose handle yields the output), `start_sim(config) -> SimServer` and
//! `stop(sim)`. The client scenarios are in `client.rs` beside this file.

#[path = "stalling.rs"]
mod stalling;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ibconn_core::backoff::BackoffConfig;
use ibconn_core::breaker::BreakerConfig;
use ibconn_core::classify::Connectivity;
use ibconn_core::client_id::store::FileStore;
use ibconn_core::client_id::{Purpose, RegistryConfig, UnixMillis};
use ibconn_core::connection::ConnectionError;
use ibconn_core::pool::{
    AcquireError, FileRegistry, PoolConfig, PoolError, PoolNotice, PurposeConfig, Sharing,
};
use ibconn_sim::{Fault, GatewayConfig, ServerConfig, SimServer, Target};

use crate::{rt, sleep, spawn, start_sim, stop, within};
use stalling::StallingProxy;

/// Health probe after this much silence…
const PROBE_IDLE: Duration = Duration::from_millis(400);
/// …declared dead when unanswered for this long.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// Scheduling and clock-tick slack on top of a bound.
const SLACK: Duration = Duration::from_millis(400);
/// A tripped gateway breaker lets a probe dial through after this.
const BREAKER_OPEN_FOR: Duration = Duration::from_millis(300);
/// The socket write deadline where a gateway stops reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Hands every scenario below to the including crate's `scenarios!` macro, which makes each a test
/// of the same name (this module must be mounted as `common`).
macro_rules! every_scenario {
    ($runner:ident) => {
        $runner!(common::{
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
            a_gateway_that_stops_reading_loses_its_session_at_the_write_deadline,
        });
    };
}
pub(crate) use every_scenario;

async fn sim() -> SimServer {
    let config = ServerConfig {
        gateway: GatewayConfig::default(),
        seed: 7,
    };
    start_sim(config).await
}

/// Short backoff, a breaker that opens on the first failure and reopens quickly; backfill
/// connections exclusive, at most `backfill_max`.
fn pool_config(addrs: &[SocketAddr], backfill_max: usize) -> PoolConfig {
    let mut cfg = PoolConfig {
        gateways: addrs.iter().map(ToString::to_string).collect(),
        backoff: BackoffConfig {
            base: Duration::from_millis(50),
            factor: 2,
            cap: Duration::from_millis(200),
            max_attempts: None,
        },
        breaker: BreakerConfig {
            failure_threshold: 1,
            open_for: BREAKER_OPEN_FOR,
            half_open_probes_max: 1,
            success_threshold: 1,
        },
        acquire_timeout: Duration::from_secs(5),
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

/// A pool with a registry file of this test's own (returned for inspection); the notice
/// subscription is taken before any work, so no notice is missed.
fn start(cfg: PoolConfig, ids: RegistryConfig, name: &str) -> (rt::Pool, rt::Events, PathBuf) {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "{}-{}-{name}.json",
        env!("CARGO_PKG_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let registry = FileRegistry::new(ids, FileStore::new(&path), Some(name.into()));
    let pool = rt::Pool::start(cfg, Box::new(registry));
    let events = pool.events();
    (pool, events, path)
}

/// Leases recorded in a registry file.
fn leases_in(path: &Path) -> usize {
    FileStore::new(path)
        .load(UnixMillis(u64::MAX / 2))
        .map_or(0, |s| s.leases.len())
}

/// Read notices until one matches; return it with the ones skipped on the way.
async fn notice_where(
    events: &mut rt::Events,
    what: &str,
    pred: impl Fn(&PoolNotice) -> bool,
) -> (PoolNotice, Vec<PoolNotice>) {
    within(what, async {
        let mut skipped = Vec::new();
        loop {
            match events.recv().await {
                Some(n) if pred(&n) => return (n, skipped),
                Some(n) => skipped.push(n),
                None => panic!("notices ended while waiting for {what}: {skipped:?}"),
            }
        }
    })
    .await
}

/// The gateway index of the next `Connected` notice of each of `client_ids` (in any order).
async fn connected_gateways(events: &mut rt::Events, client_ids: &[i32]) -> Vec<usize> {
    let mut found: Vec<Option<usize>> = vec![None; client_ids.len()];
    while found.iter().any(Option::is_none) {
        let is_connected = |n: &PoolNotice| matches!(n, PoolNotice::Connected { .. });
        if let (PoolNotice::Connected { client_id, gateway }, _) =
            notice_where(events, "connected", is_connected).await
        {
            if let Some(i) = client_ids.iter().position(|c| *c == client_id) {
                found[i] = found[i].or(Some(gateway));
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// Shut down and check that the notice stream ends (the driver is gone).
async fn finish(pool: rt::Pool, mut events: rt::Events) {
    within("shutdown", pool.shutdown()).await;
    within("notices end", async {
        while events.recv().await.is_some() {}
    })
    .await;
}

/// A released connection is reused; shutdown releases every registry lease and ends the notices.
pub(crate) async fn acquire_release_reuse_then_shutdown_releases_every_lease() {
    let sim = sim().await;
    let cfg = pool_config(&[sim.local_addr()], 4);
    let (pool, events, path) = start(cfg, RegistryConfig::default(), "reuse");
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
    finish(pool, events).await;
    assert_eq!(leases_in(&path), 0, "shutdown released every lease");
    let after = within("call after shutdown", again.current_time()).await;
    assert!(matches!(after, Err(PoolError::Closed)), "{after:?}");
    within("sim", stop(sim)).await;
}

/// 32 tasks acquire at once under a cap of 4 connections; all are served.
pub(crate) async fn thirty_two_concurrent_acquires_under_caps() {
    let sim = sim().await;
    let cfg = pool_config(&[sim.local_addr()], 4);
    let (pool, events, _path) = start(cfg, RegistryConfig::default(), "caps");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let pool = pool.clone();
            spawn(async move {
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
    finish(pool, events).await;
    within("sim", stop(sim)).await;
}

/// With the only connection leased, a second acquire times out with a typed error.
pub(crate) async fn waiters_time_out_with_a_typed_error() {
    let sim = sim().await;
    let cfg = pool_config(&[sim.local_addr()], 1);
    let (pool, events, _path) = start(cfg, RegistryConfig::default(), "timeout");
    let held = within("acquire", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    let wait = Duration::from_millis(300);
    let late = within(
        "acquire",
        pool.acquire_within(Purpose::Backfill, Some(wait)),
    )
    .await;
    let Err(PoolError::Acquire(AcquireError::Timeout { after, .. })) = &late else {
        panic!("{late:?}");
    };
    assert_eq!(*after, wait);
    drop(held);
    finish(pool, events).await;
    within("sim", stop(sim)).await;
}

/// A 326 moves the connection to the next id and records the refused one as foreign.
pub(crate) async fn duplicate_client_id_moves_to_the_next_id() {
    let sim = sim().await;
    let addr = sim.local_addr().to_string();
    let squatter = within("squatter", rt::Client::connect(&addr, 2000))
        .await
        .unwrap();
    let cfg = pool_config(&[sim.local_addr()], 4);
    let (pool, events, path) = start(cfg, RegistryConfig::default(), "dup");
    let conn = within("acquire", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    assert_eq!(conn.client_id(), 2001);
    let state = FileStore::new(&path).load(UnixMillis(0)).unwrap();
    assert!(state.foreign.contains_key(&2000), "{state:?}");
    let stats = within("stats", pool.stats()).await.unwrap();
    assert_eq!(stats.client_id_conflicts, 1);
    drop(conn);
    finish(pool, events).await;
    within("squatter", squatter.shutdown()).await;
    within("sim", stop(sim)).await;
}

/// The gateway drops every socket: a request on the lease and a new acquire, both made while the
/// pool reconnects, complete after it is ready again.
pub(crate) async fn dropped_sockets_reconnect_and_waiting_callers_complete() {
    let sim = sim().await;
    let cfg = pool_config(&[sim.local_addr()], 2);
    let (pool, events, _path) = start(cfg, RegistryConfig::default(), "drop");
    let conn = within("acquire", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    within("time", conn.current_time()).await.unwrap();
    sim.drop_connections();
    let other = pool.clone();
    let waiting = spawn(async move {
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
    finish(pool, events).await;
    within("sim", stop(sim)).await;
}

/// The first gateway stops for good: new work goes to the second; the stats show both.
pub(crate) async fn first_gateway_down_new_work_goes_to_the_second() {
    let first = sim().await;
    let second = sim().await;
    let cfg = pool_config(&[first.local_addr(), second.local_addr()], 2);
    let (pool, events, _path) = start(cfg, RegistryConfig::default(), "stopped");
    let conn = within("acquire", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    within("time", conn.current_time()).await.unwrap();
    drop(conn);
    within("first", stop(first)).await;
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
    finish(pool, events).await;
    within("second", stop(second)).await;
}

/// A paused gateway (socket open, nothing read or answered) is declared dead by the health probe
/// within `probe_idle + probe_timeout`, the lease's session is redialed, and the same lease works.
pub(crate) async fn half_open_socket_is_detected_by_the_probe_and_redialed() {
    let sim = sim().await;
    let mut cfg = pool_config(&[sim.local_addr()], 1);
    cfg.connection.probe_idle = PROBE_IDLE;
    cfg.connection.probe_timeout = PROBE_TIMEOUT;
    let (pool, mut events, _path) = start(cfg, RegistryConfig::default(), "half-open");
    let conn = within("acquire", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    // Not `current_time`: its 1 s spacing rule would delay the probe.
    let symbols = within("symbols", conn.matching_symbols("AAPL")).await;
    assert!(!symbols.unwrap().is_empty());
    let paused = Instant::now();
    within("pause", sim.inject(Fault::Pause(Target::All))).await;
    let is_drop = |n: &PoolNotice| matches!(n, PoolNotice::Disconnected { .. });
    let (gone, _) = notice_where(&mut events, "probe timeout", is_drop).await;
    let took = paused.elapsed();
    let expected = PoolNotice::Disconnected {
        client_id: conn.client_id(),
        reason: ConnectionError::ProbeTimeout(PROBE_TIMEOUT),
    };
    assert_eq!(gone, expected);
    assert!(
        took <= PROBE_IDLE + PROBE_TIMEOUT + SLACK,
        "detected after {took:?}"
    );
    assert_eq!(
        connected_gateways(&mut events, &[conn.client_id()]).await,
        [0]
    );
    assert!(within("time", conn.current_time()).await.unwrap() > 1_700_000_000);
    let stats = within("stats", pool.stats()).await.unwrap();
    assert!(stats.disconnects == 1 && stats.reconnects == 1, "{stats:?}");
    drop(conn);
    finish(pool, events).await;
    within("sim", stop(sim)).await;
}

/// 1100 then 1101 (data lost): the user sees both connectivity changes and a `Resubscribe` naming
/// the lease; the session itself stays up.
pub(crate) async fn link_loss_then_data_lost_tells_the_user_to_resubscribe() {
    let sim = sim().await;
    let cfg = pool_config(&[sim.local_addr()], 1);
    let (pool, mut events, _path) = start(cfg, RegistryConfig::default(), "link-loss");
    let conn = within("acquire", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    let fault = Fault::LinkLoss {
        outage: Duration::from_millis(300),
        data_lost: true,
    };
    within("link loss", sim.inject(fault)).await;
    let is_resub = |n: &PoolNotice| matches!(n, PoolNotice::Resubscribe { .. });
    let (resub, before) = notice_where(&mut events, "resubscribe", is_resub).await;
    assert_eq!(
        resub,
        PoolNotice::Resubscribe {
            client_id: conn.client_id(),
            leases: vec![conn.lease()],
        }
    );
    let changes: Vec<Connectivity> = before
        .iter()
        .filter_map(|n| match n {
            PoolNotice::Connectivity { change, .. } => Some(*change),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [Connectivity::Lost, Connectivity::RestoredDataLost],
        "{before:?}"
    );
    assert!(within("time", conn.current_time()).await.unwrap() > 1_700_000_000);
    let stats = within("stats", pool.stats()).await.unwrap();
    assert_eq!(stats.disconnects, 0, "the socket stayed up: {stats:?}");
    drop(conn);
    finish(pool, events).await;
    within("sim", stop(sim)).await;
}

/// Two gateways; the first restarts and refuses connections for a while: the held lease and new
/// work move to the second, and once the first accepts again new connections go back to it.
pub(crate) async fn failover_to_the_second_gateway_and_back_after_the_first_returns() {
    let first = sim().await;
    let second = sim().await;
    let cfg = pool_config(&[first.local_addr(), second.local_addr()], 3);
    let (pool, mut events, _path) = start(cfg, RegistryConfig::default(), "failover");
    let a = within("acquire a", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    assert_eq!(connected_gateways(&mut events, &[a.client_id()]).await, [0]);

    within("restart", first.restart(Duration::from_millis(800))).await;
    let b = within("acquire b", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    let ids = [a.client_id(), b.client_id()];
    assert_eq!(connected_gateways(&mut events, &ids).await, [1, 1]);
    within("a on the second", a.current_time()).await.unwrap();
    within("b on the second", b.current_time()).await.unwrap();

    within("first back", async {
        let addr = first.local_addr();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let c = within("acquire c", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    assert_eq!(connected_gateways(&mut events, &[c.client_id()]).await, [0]);
    within("c on the first", c.current_time()).await.unwrap();
    let stats = within("stats", pool.stats()).await.unwrap();
    assert_eq!(stats.gateways[0].established, 2, "{stats:?}");
    assert_eq!(stats.gateways[1].established, 2, "{stats:?}");
    assert!(stats.gateways[0].failed >= 1, "{stats:?}");
    drop((a, b, c));
    finish(pool, events).await;
    within("first", stop(first)).await;
    within("second", stop(second)).await;
}

/// A 326 marks the id foreign: the next connection skips it without asking the gateway again, and
/// once the cooldown is over (and its holder gone) the id is handed out again.
pub(crate) async fn foreign_client_id_is_avoided_until_its_cooldown_ends() {
    const COOLDOWN: Duration = Duration::from_secs(1);
    let sim = sim().await;
    let addr = sim.local_addr().to_string();
    let squatter = within("squatter", rt::Client::connect(&addr, 2000))
        .await
        .unwrap();
    let ids = RegistryConfig {
        foreign_cooldown: COOLDOWN,
        ..RegistryConfig::default()
    };
    let (pool, events, _path) = start(pool_config(&[sim.local_addr()], 3), ids, "cooldown");
    let a = within("acquire a", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    let marked = Instant::now();
    assert_eq!(a.client_id(), 2001, "2000 answered 326");
    let b = within("acquire b", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    assert_eq!(b.client_id(), 2002, "2000 is still foreign");
    within("squatter leaves", squatter.shutdown()).await;
    let stats = within("stats", pool.stats()).await.unwrap();
    assert_eq!(stats.client_id_conflicts, 1, "{stats:?}");

    within(
        "cooldown",
        sleep((marked + COOLDOWN + SLACK).saturating_duration_since(Instant::now())),
    )
    .await;
    let c = within("acquire c", pool.acquire(Purpose::Backfill))
        .await
        .unwrap();
    assert_eq!(c.client_id(), 2000, "the cooldown is over");
    within("time", c.current_time()).await.unwrap();
    let stats = within("stats", pool.stats()).await.unwrap();
    assert_eq!(stats.client_id_conflicts, 1, "{stats:?}");
    drop((a, b, c));
    finish(pool, events).await;
    within("sim", stop(sim)).await;
}

/// A gateway that stops reading (its socket buffers full): the client's write blocks, passes its
/// deadline and the session ends with the typed [`ConnectionError::WriteTimeout`], while the
/// driver keeps answering; the pool redials and the stuck requests are retried and answered.
pub(crate) async fn a_gateway_that_stops_reading_loses_its_session_at_the_write_deadline() {
    // Two requests of 8 MiB: several times what the loopback socket buffers take (Linux's send
    // buffer grows to 4 MiB by default; the proxy's receive buffer is pinned small).
    const PATTERN: usize = 8 << 20;
    let sim = sim().await;
    let proxy = StallingProxy::start(sim.local_addr());
    let mut cfg = pool_config(&[proxy.addr()], 1);
    cfg.connection.write_timeout = WRITE_TIMEOUT;
    let (pool, mut events, _path) = start(cfg, RegistryConfig::default(), "stops-reading");
    let conn = within("acquire", pool.acquire(Purpose::Api)).await.unwrap();
    let symbols = within("symbols", conn.matching_symbols("AAPL")).await;
    assert!(!symbols.unwrap().is_empty());
    proxy.stall();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            spawn(async move {
                let conn = pool.acquire(Purpose::Api).await?;
                conn.matching_symbols(&"A".repeat(PATTERN)).await
            })
        })
        .collect();
    // The driver never waits on the stuck socket.
    for _ in 0..3 {
        within("stats while the write is stuck", pool.stats())
            .await
            .unwrap();
    }
    let is_drop = |n: &PoolNotice| matches!(n, PoolNotice::Disconnected { .. });
    let (gone, skipped) = notice_where(&mut events, "write timeout", is_drop).await;
    let expected = PoolNotice::Disconnected {
        client_id: conn.client_id(),
        reason: ConnectionError::WriteTimeout(WRITE_TIMEOUT),
    };
    assert_eq!(gone, expected, "after {skipped:?}");
    assert_eq!(proxy.stalled(), 1);
    // Redialed (through the proxy, which reads the new connection) with the same lease.
    let is_up = |n: &PoolNotice| matches!(n, PoolNotice::Connected { .. });
    notice_where(&mut events, "redial", is_up).await;
    for call in calls {
        let symbols = within("retried call", call).await;
        assert!(symbols.is_ok(), "{symbols:?}");
    }
    assert!(within("time", conn.current_time()).await.unwrap() > 1_700_000_000);
    let stats = within("stats", pool.stats()).await.unwrap();
    assert!(
        stats.disconnects == 1 && stats.requests_retried >= 1,
        "{stats:?}"
    );
    drop(conn);
    finish(pool, events).await;
    within("sim", stop(sim)).await;
}
