//! `ibconn health --gateway HOST:PORT`: handshake plus one `reqCurrentTime` round trip, bounded
//! by `--timeout`. A refused dial fails at once (no waiting out the deadline), so the command is
//! usable as a container healthcheck.

use std::time::Duration;

use ibconn_core::client_id::Purpose;
use ibconn_core::pool::{PoolConfig, PurposeConfig, Sharing};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::Settings;
use crate::coordination;
use crate::probe::{self, ProbeError, ProbeOk};

/// The longest a pool shutdown may delay the exit.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// The result of `ibconn health`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthReport {
    /// Whether the probe round trip succeeded.
    pub(crate) healthy: bool,
    /// The gateway checked.
    pub(crate) gateway: String,
    /// Connect + handshake time, milliseconds (when it connected).
    pub(crate) connect_ms: Option<f64>,
    /// `reqCurrentTime` round trip, milliseconds (when healthy).
    pub(crate) probe_rtt_ms: Option<f64>,
    /// The gateway's clock, epoch seconds (when healthy).
    pub(crate) server_time: Option<i64>,
    /// Why it is unhealthy.
    pub(crate) error: Option<String>,
}

impl HealthReport {
    /// The exit code: 0 healthy, 1 not.
    pub(crate) fn exit_code(&self) -> u8 {
        u8::from(!self.healthy)
    }

    /// One human-readable line.
    pub(crate) fn text(&self) -> String {
        match (&self.error, self.connect_ms, self.probe_rtt_ms) {
            (None, Some(c), Some(r)) => format!(
                "healthy: {} (connect {c:.1} ms, probe round trip {r:.2} ms)\n",
                self.gateway
            ),
            (Some(e), _, _) => format!("unhealthy: {e}\n"),
            _ => format!("unhealthy: {}\n", self.gateway),
        }
    }
}

/// The pool behind health checks: the configured pool with `Health` sessions (one shared
/// session unless the config says otherwise) to `gateway`, dials bounded by `timeout`.
pub(crate) fn health_pool_config(
    settings: &Settings,
    gateway: &str,
    timeout: Duration,
) -> PoolConfig {
    let mut cfg = PoolConfig {
        acquire_timeout: timeout,
        dial_timeout: timeout,
        ..settings.pool_config(vec![gateway.to_owned()])
    };
    cfg.purposes
        .entry(Purpose::Health)
        .or_insert(PurposeConfig {
            max_connections: 1,
            sharing: Sharing::Shared { max_in_flight: 4 },
        });
    cfg
}

/// Run the check against `gateway` within `timeout` (builds its own runtime).
pub(crate) fn health(settings: &Settings, gateway: &str, timeout: Duration) -> HealthReport {
    let unhealthy = |error: String| HealthReport {
        healthy: false,
        gateway: gateway.to_owned(),
        connect_ms: None,
        probe_rtt_ms: None,
        server_time: None,
        error: Some(error),
    };
    let rt = match crate::session::runtime() {
        Ok(rt) => rt,
        Err(error) => return unhealthy(error),
    };
    match rt.block_on(check(settings, gateway, timeout)) {
        Ok(ok) => HealthReport {
            healthy: true,
            gateway: gateway.to_owned(),
            connect_ms: Some(ms(ok.connect_us)),
            probe_rtt_ms: Some(ms(ok.rtt_us)),
            server_time: Some(ok.server_time),
            error: None,
        },
        Err(e) => unhealthy(e.to_string()),
    }
}

/// Connect, probe once and shut down, all within `timeout` (plus a short shutdown grace).
async fn check(
    settings: &Settings,
    gateway: &str,
    timeout: Duration,
) -> Result<ProbeOk, ProbeError> {
    let deadline = Instant::now() + timeout;
    let pool = coordination::start_pool(
        settings,
        health_pool_config(settings, gateway, timeout),
        "ibconn health",
    )
    .map_err(ProbeError::Pool)?;
    let started = Instant::now();
    let result = async {
        let conn = probe::acquire_fast(&pool, Purpose::Health, gateway, timeout).await?;
        let connect_us = probe::micros(started.elapsed());
        let left = deadline.saturating_duration_since(Instant::now());
        let ok = probe::round_trip(&conn, gateway, left).await?;
        Ok(ProbeOk { connect_us, ..ok })
    };
    let result = match tokio::time::timeout(timeout, result).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout {
            gateway: gateway.to_owned(),
            after: timeout,
        }),
    };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, pool.shutdown()).await;
    result
}

/// Microseconds as milliseconds.
fn ms(us: u64) -> f64 {
    // Precision loss above 2^53 µs (285 years) is irrelevant here.
    #[allow(clippy::cast_precision_loss)]
    let ms = us as f64 / 1_000.0;
    ms
}
