//! `ibconn serve`: an HTTP status API (axum) over a Tokio [`Pool`].
//!
//! Every `/api/ib/...` answer is the envelope
//! `{"success": bool, "data": {...} | null, "error": {"code", "message"} | null}`:
//!
//! - `GET /api/ib/pool/status`: gateways (counters, breaker), connections, leases, waiters.
//! - `GET /api/ib/pool/metrics`: the pool's full [`PoolStats`] snapshot.
//! - `GET /api/ib/pool/health`: a live `reqCurrentTime` probe; 200 when it answered, else 503.
//! - `GET /api/ib/pace/status`: each gateway's pacer now (windows, pause, horizon).
//! - `GET /api/ib/pace/stats`: cumulative pacing counters, pool-wide and per gateway.
//! - `GET /metrics`: the same snapshot in Prometheus text format.
//!
//! With a token (`--token` or `IBCONN_HTTP_TOKEN`) every route, `/metrics` included, needs
//! `Authorization: Bearer TOKEN`; otherwise 401 in the envelope.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ibconn_core::breaker::BreakerSnapshot;
use ibconn_core::client_id::Purpose;
use ibconn_core::pacer::PacerSnapshot;
use ibconn_core::pool::PoolStats;
use ibconn_tokio::{Pool, PooledConnection};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::args::ServeArgs;
use crate::config::{secs, Settings};
use crate::coordination;
use crate::health::health_pool_config;
use crate::metrics::{self, LastProbe};
use crate::probe::{self, ProbeError, ProbeOk};

/// The environment variable holding the bearer token when `--token` is not given.
pub(crate) const TOKEN_ENV: &str = "IBCONN_HTTP_TOKEN";

/// The longest the pool's shutdown may delay the exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// Bad configuration (e.g. an empty token).
    #[error("{0}")]
    Config(String),
    /// The runtime or the listening socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl ServeError {
    /// The process exit code: 2 for configuration, 1 otherwise.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Io { .. } => 1,
        }
    }
}

/// The `error` member of the envelope.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ApiError {
    /// Machine-readable code, e.g. `unauthorized`, `gateway_unreachable`.
    pub(crate) code: &'static str,
    /// Human-readable message.
    pub(crate) message: String,
}

/// `{"success", "data", "error"}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Envelope<T> {
    /// Whether the call succeeded.
    pub(crate) success: bool,
    /// The payload (present on success; `pool/health` also sends it with a 503).
    pub(crate) data: Option<T>,
    /// Why it failed (null on success).
    pub(crate) error: Option<ApiError>,
}

/// A 2xx envelope.
fn ok<T: Serialize>(data: T) -> Response {
    Json(Envelope {
        success: true,
        data: Some(data),
        error: None,
    })
    .into_response()
}

/// An error envelope with `status`.
fn fail<T: Serialize>(
    status: StatusCode,
    data: Option<T>,
    code: &'static str,
    message: String,
) -> Response {
    (
        status,
        Json(Envelope {
            success: false,
            data,
            error: Some(ApiError { code, message }),
        }),
    )
        .into_response()
}

/// How long a successful probe answers later health calls (IB ignores a `reqCurrentTime` sent
/// within a second of the previous one).
const PROBE_REUSE: Duration = Duration::from_millis(1_100);

/// The health probe's lease and last success.
#[derive(Debug, Default)]
struct ProbeSession {
    conn: Option<PooledConnection>,
    last_ok: Option<(Instant, ProbeOk)>,
}

/// Shared state of the handlers.
#[derive(Debug)]
struct AppState {
    pool: Pool,
    gateway: String,
    token: Option<String>,
    probe_timeout: Duration,
    /// The probe session, kept between probes (dropped after a failed probe).
    probe_session: Mutex<ProbeSession>,
    /// The outcome of the last probe, for `/metrics`.
    last_probe: std::sync::Mutex<Option<LastProbe>>,
}

impl AppState {
    /// One probe: lease (or reuse) the health session and time `reqCurrentTime`. IB ignores a
    /// `reqCurrentTime` within a second of the last one, so a success younger than
    /// [`PROBE_REUSE`] on a session that is still ready is answered from the cache.
    async fn probe(&self) -> Result<(ProbeOk, bool), ProbeError> {
        let mut session = self.probe_session.lock().await;
        if let (Some(_), Some((at, last))) = (&session.conn, session.last_ok) {
            if at.elapsed() < PROBE_REUSE && self.health_session_ready().await {
                return Ok((last, true));
            }
        }
        let started = Instant::now();
        let result = async {
            let connect_us = match session.conn {
                Some(_) => 0,
                None => {
                    let conn = probe::acquire_fast(
                        &self.pool,
                        Purpose::Health,
                        &self.gateway,
                        self.probe_timeout,
                    )
                    .await?;
                    session.conn = Some(conn);
                    probe::micros(started.elapsed())
                }
            };
            let left = self.probe_timeout.saturating_sub(started.elapsed());
            match &session.conn {
                Some(conn) => probe::round_trip(conn, &self.gateway, left)
                    .await
                    .map(|ok| ProbeOk { connect_us, ..ok }),
                None => Err(ProbeError::Pool("no probe session".to_owned())),
            }
        }
        .await;
        match &result {
            Ok(ok) => session.last_ok = Some((Instant::now(), *ok)),
            Err(_) => {
                // A fresh lease next time, so a redialed session is used.
                session.conn = None;
                session.last_ok = None;
            }
        }
        if let Ok(mut last) = self.last_probe.lock() {
            *last = Some(LastProbe {
                ok: result.is_ok(),
                rtt_us: result.as_ref().ok().map(|p| p.rtt_us),
            });
        }
        result.map(|ok| (ok, false))
    }

    /// Whether the pool's health session is ready now.
    async fn health_session_ready(&self) -> bool {
        self.pool.stats().await.is_ok_and(|st| {
            st.connections
                .iter()
                .any(|c| c.purpose == Purpose::Health && c.state == "ready")
        })
    }

    /// The pool's snapshot, or a 503 envelope.
    async fn stats(&self) -> Result<PoolStats, Response> {
        self.pool.stats().await.map_err(|e| {
            fail::<()>(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "pool_unavailable",
                e.to_string(),
            )
        })
    }
}

/// `data` of `/api/ib/pool/status`.
#[derive(Debug, Serialize)]
struct PoolStatus {
    gateways: Vec<GatewayStatus>,
    connections: Vec<ConnectionStatus>,
    connections_ready: usize,
    leases: usize,
    waiters: usize,
}

#[derive(Debug, Serialize)]
struct GatewayStatus {
    addr: String,
    established: u64,
    failed: u64,
    breaker: BreakerSnapshot,
}

#[derive(Debug, Serialize)]
struct ConnectionStatus {
    client_id: i32,
    purpose: Purpose,
    gateway: usize,
    state: &'static str,
    leases: usize,
}

/// `data` of `/api/ib/pool/health`.
#[derive(Debug, Serialize)]
struct Health {
    healthy: bool,
    gateway: String,
    probe_rtt_us: Option<u64>,
    connect_us: Option<u64>,
    server_time: Option<i64>,
    /// Whether the probe result is a reused one (younger than 1.1 s, session still ready).
    cached: bool,
    connections_ready: usize,
}

/// `data` of `/api/ib/pace/status`.
#[derive(Debug, Serialize)]
struct PaceStatus {
    gateways: Vec<GatewayPace>,
}

#[derive(Debug, Serialize)]
struct GatewayPace {
    addr: String,
    /// Whether an adaptive pause (after a violation or rate limit) is in force.
    paused: bool,
    pacer: PacerSnapshot,
}

/// `data` of `/api/ib/pace/stats`.
#[derive(Debug, Serialize)]
struct PaceStats {
    requests: u64,
    requests_retried: u64,
    pacing_waits: u64,
    pacing_wait_ms: u64,
    pacing_violations: u64,
    rate_limited: u64,
    gateways: Vec<GatewayPaceStats>,
}

#[derive(Debug, Serialize)]
struct GatewayPaceStats {
    addr: String,
    reservations_total: u64,
    violations_total: u64,
    violation_streak: u32,
}

fn ready(stats: &PoolStats) -> usize {
    stats
        .connections
        .iter()
        .filter(|c| c.state == "ready")
        .count()
}

async fn pool_status(State(s): State<Arc<AppState>>) -> Response {
    let stats = match s.stats().await {
        Ok(st) => st,
        Err(r) => return r,
    };
    ok(PoolStatus {
        connections_ready: ready(&stats),
        gateways: stats
            .gateways
            .iter()
            .map(|g| GatewayStatus {
                addr: g.addr.clone(),
                established: g.established,
                failed: g.failed,
                breaker: g.breaker.clone(),
            })
            .collect(),
        connections: stats
            .connections
            .iter()
            .map(|c| ConnectionStatus {
                client_id: c.client_id,
                purpose: c.purpose.clone(),
                gateway: c.gateway,
                state: c.state,
                leases: c.leases,
            })
            .collect(),
        leases: stats.leases,
        waiters: stats.waiters,
    })
}

async fn pool_metrics(State(s): State<Arc<AppState>>) -> Response {
    match s.stats().await {
        Ok(st) => ok(st),
        Err(r) => r,
    }
}

async fn pool_health(State(s): State<Arc<AppState>>) -> Response {
    let probed = s.probe().await;
    let connections_ready = s.pool.stats().await.map_or(0, |st| ready(&st));
    let health = |p: Option<&ProbeOk>, cached: bool| Health {
        healthy: p.is_some(),
        cached,
        gateway: s.gateway.clone(),
        probe_rtt_us: p.map(|p| p.rtt_us),
        connect_us: p.map(|p| p.connect_us),
        server_time: p.map(|p| p.server_time),
        connections_ready,
    };
    match probed {
        Ok((p, cached)) => ok(health(Some(&p), cached)),
        Err(e) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(health(None, false)),
            e.code(),
            e.to_string(),
        ),
    }
}

async fn pace_status(State(s): State<Arc<AppState>>) -> Response {
    let stats = match s.stats().await {
        Ok(st) => st,
        Err(r) => return r,
    };
    ok(PaceStatus {
        gateways: stats
            .gateways
            .into_iter()
            .map(|g| GatewayPace {
                addr: g.addr,
                paused: g.pacer.paused_for_ms > 0,
                pacer: g.pacer,
            })
            .collect(),
    })
}

async fn pace_stats(State(s): State<Arc<AppState>>) -> Response {
    let stats = match s.stats().await {
        Ok(st) => st,
        Err(r) => return r,
    };
    ok(PaceStats {
        requests: stats.requests,
        requests_retried: stats.requests_retried,
        pacing_waits: stats.pacing_waits,
        pacing_wait_ms: stats.pacing_wait_ms,
        pacing_violations: stats.pacing_violations,
        rate_limited: stats.rate_limited,
        gateways: stats
            .gateways
            .into_iter()
            .map(|g| GatewayPaceStats {
                addr: g.addr,
                reservations_total: g.pacer.reservations_total,
                violations_total: g.pacer.violations_total,
                violation_streak: g.pacer.violation_streak,
            })
            .collect(),
    })
}

async fn prometheus(State(s): State<Arc<AppState>>) -> Response {
    let stats = match s.stats().await {
        Ok(st) => st,
        Err(r) => return r,
    };
    let last = s.last_probe.lock().ok().and_then(|l| *l);
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&stats, last),
    )
        .into_response()
}

async fn not_found() -> Response {
    fail::<()>(
        StatusCode::NOT_FOUND,
        None,
        "not_found",
        "no such endpoint".to_owned(),
    )
}

/// Equal in time independent of where the inputs differ (lengths may leak).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reject requests without the configured bearer token.
async fn auth(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => unauthorized("invalid bearer token"),
        None => unauthorized("missing bearer token (Authorization: Bearer TOKEN)"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = fail::<()>(
        StatusCode::UNAUTHORIZED,
        None,
        "unauthorized",
        message.to_owned(),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The router over `state`.
fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/ib/pool/status", get(pool_status))
        .route("/api/ib/pool/metrics", get(pool_metrics))
        .route("/api/ib/pool/health", get(pool_health))
        .route("/api/ib/pace/status", get(pace_status))
        .route("/api/ib/pace/stats", get(pace_stats))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), auth))
        .with_state(state)
}

/// The token: `--token`, else `IBCONN_HTTP_TOKEN` / `http.token` (the config already merged
/// the variable over the file); an empty one is a configuration error.
fn token(args: &ServeArgs, settings: &Settings) -> Result<Option<String>, ServeError> {
    let token = args.token.clone().or_else(|| settings.http.token.clone());
    match token {
        Some(t) if t.trim().is_empty() => Err(ServeError::Config(format!(
            "the bearer token (--token, {TOKEN_ENV} or http.token) is empty"
        ))),
        t => Ok(t),
    }
}

/// What `serve` runs with: flags over the configuration.
struct Resolved {
    gateway: String,
    listen: SocketAddr,
    token: Option<String>,
    probe_timeout: Duration,
}

/// Run the server until Ctrl-C or SIGTERM.
pub(crate) fn serve(args: &ServeArgs, settings: &Settings) -> Result<(), ServeError> {
    let resolved = Resolved {
        gateway: args
            .gateway
            .clone()
            .or_else(|| settings.gateway.clone())
            .ok_or_else(|| {
                ServeError::Config(
                    "no gateway: pass --gateway HOST:PORT or set `gateway` in ibconn.toml"
                        .to_owned(),
                )
            })?,
        listen: match args.listen.or_else(|| settings.http_listen()) {
            Some(a) => a,
            None => {
                return Err(ServeError::Config(format!(
                    "http.listen {:?} is not an ADDRESS:PORT",
                    settings.http.listen
                )))
            }
        },
        token: token(args, settings)?,
        probe_timeout: args
            .probe_timeout
            .unwrap_or_else(|| secs(settings.health.probe_timeout_secs)),
    };
    let rt = tokio::runtime::Runtime::new().map_err(|source| ServeError::Io {
        context: "cannot start the runtime".to_owned(),
        source,
    })?;
    rt.block_on(run(&resolved, settings))
}

async fn run(args: &Resolved, settings: &Settings) -> Result<(), ServeError> {
    let token = args.token.clone();
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Io {
            context: format!("cannot listen on {}", args.listen),
            source,
        })?;
    let addr: SocketAddr = listener.local_addr().map_err(|source| ServeError::Io {
        context: "cannot read the bound address".to_owned(),
        source,
    })?;
    if !addr.ip().is_loopback() && token.is_none() {
        eprintln!("ibconn: warning: serving on {addr} without a bearer token");
    }
    let pool = coordination::start_pool(
        settings,
        health_pool_config(settings, &args.gateway, args.probe_timeout),
        "ibconn serve",
    )
    .map_err(ServeError::Config)?;
    let state = Arc::new(AppState {
        pool: pool.clone(),
        gateway: args.gateway.clone(),
        token,
        probe_timeout: args.probe_timeout,
        probe_session: Mutex::new(ProbeSession::default()),
        last_probe: std::sync::Mutex::new(None),
    });
    // Connect right away, so status and /metrics show the session before the first health call.
    let first = Arc::clone(&state);
    tokio::spawn(async move {
        if let Err(e) = first.probe().await {
            tracing::warn!(error = %e, "initial probe failed");
        }
    });
    println!("listening on {addr}");
    let served = axum::serve(listener, router(Arc::clone(&state)))
        .with_graceful_shutdown(stop_signal())
        .await;
    drop(state.probe_session.lock().await.conn.take());
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, pool.shutdown()).await;
    served.map_err(|source| ServeError::Io {
        context: "the HTTP server failed".to_owned(),
        source,
    })
}

/// Ctrl-C, or SIGTERM on Unix (how containers stop).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
