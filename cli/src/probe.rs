//! The health probe shared by `ibconn health` and `ibconn serve`: lease a session (failing fast
//! when the gateway refuses or its breaker is open, instead of waiting out the acquire timeout),
//! then time one `reqCurrentTime` round trip.

use std::time::Duration;

use ibconn_core::client_id::Purpose;
use ibconn_core::pool::PoolStats;
use ibconn_tokio::{Pool, PooledConnection};
use serde::Serialize;
use tokio::time::Instant;

/// How often the pool's counters are read while an acquire is pending.
const POLL: Duration = Duration::from_millis(20);

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProbeError {
    /// A dial or handshake to the gateway failed (refused, reset, bad address, handshake error).
    #[error("cannot connect to {gateway}: dial or handshake failed")]
    Unreachable {
        /// The gateway address.
        gateway: String,
    },
    /// The gateway's circuit breaker is open after repeated failures.
    #[error("the circuit breaker of {gateway} is open after repeated failures")]
    BreakerOpen {
        /// The gateway address.
        gateway: String,
    },
    /// No answer within the deadline.
    #[error("no answer from {gateway} within {after:.1?}")]
    Timeout {
        /// The gateway address.
        gateway: String,
        /// The deadline.
        after: Duration,
    },
    /// The pool refused or the request failed.
    #[error("{0}")]
    Pool(String),
}

impl ProbeError {
    /// A stable machine-readable code for the HTTP envelope.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "gateway_unreachable",
            Self::BreakerOpen { .. } => "breaker_open",
            Self::Timeout { .. } => "probe_timeout",
            Self::Pool(_) => "probe_failed",
        }
    }
}

/// A successful probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct ProbeOk {
    /// Time to obtain a ready session, microseconds (0 when one was already held).
    pub(crate) connect_us: u64,
    /// `reqCurrentTime` round trip, microseconds.
    pub(crate) rtt_us: u64,
    /// The gateway's clock, epoch seconds.
    pub(crate) server_time: i64,
}

/// Dial and handshake failures so far (326 conflicts excluded: the pool retries another id).
fn failures(stats: &PoolStats) -> u64 {
    stats.failed.saturating_sub(stats.client_id_conflicts)
}

/// Whether every gateway's breaker is open (nothing will be dialed before it half-opens).
fn all_breakers_open(stats: &PoolStats) -> bool {
    !stats.gateways.is_empty() && stats.gateways.iter().all(|g| g.breaker.state == "open")
}

/// Lease a `purpose` session within `timeout`; fails as soon as a dial or handshake fails or
/// every breaker is open, so a closed port answers in milliseconds.
pub(crate) async fn acquire_fast(
    pool: &Pool,
    purpose: Purpose,
    gateway: &str,
    timeout: Duration,
) -> Result<PooledConnection, ProbeError> {
    let pool_err = |e: ibconn_tokio::Error| ProbeError::Pool(e.to_string());
    let before = pool.stats().await.map_err(pool_err)?;
    let baseline = failures(&before);
    let acquire = pool.acquire_within(purpose, Some(timeout));
    tokio::pin!(acquire);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            got = &mut acquire => {
                return got.map_err(|e| match e {
                    ibconn_tokio::Error::Acquire(ibconn_tokio::AcquireError::Timeout { after, .. }) => {
                        ProbeError::Timeout { gateway: gateway.to_owned(), after }
                    }
                    e => pool_err(e),
                });
            }
            _ = tick.tick() => {
                let now = pool.stats().await.map_err(pool_err)?;
                if failures(&now) > baseline {
                    return Err(ProbeError::Unreachable { gateway: gateway.to_owned() });
                }
                if all_breakers_open(&now) {
                    return Err(ProbeError::BreakerOpen { gateway: gateway.to_owned() });
                }
            }
        }
    }
}

/// Time one `reqCurrentTime` round trip on `conn`, bounded by `timeout`.
pub(crate) async fn round_trip(
    conn: &PooledConnection,
    gateway: &str,
    timeout: Duration,
) -> Result<ProbeOk, ProbeError> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, conn.current_time()).await {
        Ok(Ok(server_time)) => Ok(ProbeOk {
            connect_us: 0,
            rtt_us: micros(started.elapsed()),
            server_time,
        }),
        Ok(Err(e)) => Err(ProbeError::Pool(e.to_string())),
        Err(_) => Err(ProbeError::Timeout {
            gateway: gateway.to_owned(),
            after: timeout,
        }),
    }
}

/// A duration in whole microseconds, saturating.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
