//! A gateway session for one-shot commands (`validate`, `head`): a pool on the configured
//! gateway, or on an embedded simulated gateway started in this process on a loopback port.

use std::time::Duration;

use ibconn_core::client_id::Purpose;
use ibconn_core::pacer::MemoryLedger;
use ibconn_sim::{ServerConfig, SimServer};
use ibconn_tokio::{Pool, PooledConnection};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::probe::{self, ProbeError};
use crate::{coordination, ids};

/// The longest a shutdown may delay the exit.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// What `gateway` in reports says for the embedded simulator.
pub(crate) const EMBEDDED_LABEL: &str = "embedded-sim";

/// A pool on one gateway (and the embedded simulator behind it, if that is the gateway).
#[derive(Debug)]
pub(crate) struct Session {
    pool: Pool,
    sim: Option<SimServer>,
    addr: String,
    acquire_timeout: Duration,
}

impl Session {
    /// Start a pool on `gateway`, or on an embedded simulator (seeded with `seed`) when it is
    /// `None`. Nothing is dialed yet.
    pub(crate) async fn open(
        gateway: Option<&str>,
        seed: u64,
        settings: &Settings,
        label: &str,
    ) -> Result<Self, ProbeError> {
        Self::open_at(gateway, seed, settings, label, None).await
    }

    /// [`Session::open`] with the embedded simulator's clock starting at `sim_start_ms` (Unix
    /// milliseconds; `None`: the real time).
    pub(crate) async fn open_at(
        gateway: Option<&str>,
        seed: u64,
        settings: &Settings,
        label: &str,
        sim_start_ms: Option<i64>,
    ) -> Result<Self, ProbeError> {
        let (addr, sim, shared) = match gateway {
            Some(addr) => (
                addr.to_owned(),
                None,
                coordination::open(settings, label).map_err(ProbeError::Pool)?,
            ),
            None => {
                let started = async {
                    let listener = TcpListener::bind("127.0.0.1:0").await?;
                    let config = ServerConfig {
                        seed,
                        ..ServerConfig::default()
                    };
                    match sim_start_ms {
                        Some(ms) => SimServer::start_at(listener, config, ms),
                        None => SimServer::start(listener, config),
                    }
                }
                .await
                .map_err(|e| {
                    ProbeError::Pool(format!("cannot start the embedded simulator: {e}"))
                })?;
                // The simulator is private to this process: its ids and pacing are too.
                let shared = coordination::Shared {
                    registry: ids::memory_registry(settings),
                    ledger: Box::new(MemoryLedger::new(label)),
                };
                (started.local_addr().to_string(), Some(started), shared)
            }
        };
        let config = settings.pool_config(vec![addr.clone()]);
        let acquire_timeout = config.acquire_timeout;
        Ok(Self {
            pool: Pool::start_with_ledger(config, shared.registry, shared.ledger),
            sim,
            addr,
            acquire_timeout,
        })
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How long an acquire may wait (the configuration's).
    pub(crate) fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// The gateway's address (the embedded simulator's loopback port, if that is the gateway).
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Lease a `purpose` connection; a refused or failing dial fails at once.
    pub(crate) async fn acquire(&self, purpose: Purpose) -> Result<PooledConnection, ProbeError> {
        probe::acquire_fast(&self.pool, purpose, &self.addr, self.acquire_timeout).await
    }

    /// Close the pool (and stop the embedded simulator).
    pub(crate) async fn close(self) {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.pool.shutdown()).await;
        if let Some(sim) = self.sim {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, sim.shutdown()).await;
        }
    }
}

/// A current-thread runtime, or the error text.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}
