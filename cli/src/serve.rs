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
//! - `GET /api/ib/pool/history`: the pool's recent past, bounded ([`history`]).
//! - `GET /api/ib/dashboard`: everything the dashboard shows, in one snapshot.
//! - `GET /`: the dashboard page ([`dashboard`]), served without the token (it holds no data).
//!
//! With a token (`--token` or `IBCONN_HTTP_TOKEN`) every route, `/metrics` included, needs
//! `Authorization: Bearer TOKEN` (the scheme in any case, RFC 7235; the token compared in
//! constant time); otherwise 401 in the envelope. The dashboard's page and its two files are the
//! exception: they hold no data. Without a token `serve` binds to loopback
//! only, unless told `--insecure-no-token`.
//!
//! Every error is the envelope too: 401, 404, 405, and the limits of [`limits`] (408, 413, 431,
//! 503). Health probes are single-flight ([`flight`]); the server under the router bounds slow
//! clients, connections and the shutdown ([`server`]).

mod dashboard;
mod events;
mod flight;
mod history;
mod leases;
mod limits;
mod observer;
mod server;
mod version;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ibconn_core::breaker::BreakerSnapshot;
use ibconn_core::client_id::Purpose;
use ibconn_core::pacer::{PacerSnapshot, SharedPacerStatus};
use ibconn_core::pool::PoolStats;
use ibconn_tokio::{Pool, PooledConnection};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::time::Instant;

use self::flight::SingleFlight;
use self::leases::Leases;
use self::limits::{Gate, Limits};
use self::observer::{Observer, NOTICE_QUEUE};

use crate::args::ServeArgs;
use crate::config::{secs, Settings};
use crate::coordination;
use crate::health::health_pool_config;
use crate::metrics::{self, LastProbe};
use crate::probe::{self, ProbeError, ProbeOk};

/// The environment variable holding the bearer token when `--token` is not given.
pub(crate) const TOKEN_ENV: &str = "IBCONN_HTTP_TOKEN";

/// The longest the pool's shutdown may delay the exit (after the HTTP drain,
/// [`server::SHUTDOWN_DRAIN`]).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The longest the runtime waits for blocking work (registry file I/O) when `serve` returns.
const RUNTIME_GRACE: Duration = Duration::from_millis(500);

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// Bad configuration (e.g. an empty token).
    #[error("{0}")]
    Config(String),
    /// A non-loopback address without a token and without `--insecure-no-token`: anyone who
    /// can reach the port could read the pool's state.
    #[error(
        "refusing to serve on {listen} without a bearer token: anyone who can reach that \
         address could read the pool's state. Set a token (--token, {TOKEN_ENV} or http.token \
         in ibconn.toml), listen on loopback (e.g. --listen 127.0.0.1:8787), or pass \
         --insecure-no-token if something in front restricts access"
    )]
    NoToken {
        /// The listen address asked for.
        listen: SocketAddr,
    },
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
            Self::Config(_) | Self::NoToken { .. } => 2,
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

/// An error envelope as JSON bytes, for answers written outside axum (the connection layer).
fn envelope_json(code: &'static str, message: &str) -> Vec<u8> {
    let envelope = Envelope::<()> {
        success: false,
        data: None,
        error: Some(ApiError {
            code,
            message: message.to_owned(),
        }),
    };
    serde_json::to_vec(&envelope).unwrap_or_else(|_| {
        br#"{"success":false,"data":null,"error":{"code":"internal","message":""}}"#.to_vec()
    })
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

/// A probe's result: the probe and whether it was answered from the cache.
type ProbeOutcome = Result<(ProbeOk, bool), ProbeError>;

/// Shared state of the handlers.
#[derive(Debug)]
struct AppState {
    pool: Pool,
    gateway: String,
    token: Option<String>,
    probe_timeout: Duration,
    /// The probe session, kept between probes (dropped after a failed probe). Only the probe
    /// in flight locks it.
    probe_session: Mutex<ProbeSession>,
    /// The probe in flight, shared by every health call that arrives while it runs.
    probe_flight: SingleFlight<ProbeOutcome>,
    /// The outcome of the last probe, for `/metrics`.
    last_probe: std::sync::Mutex<Option<LastProbe>>,
    /// History, events, versions and leases for the dashboard.
    observer: Arc<Observer>,
}

impl AppState {
    /// The health probe, single-flight: joins the probe in flight, or starts one. A burst of
    /// health calls thus costs one probe and answers in about one probe's time, instead of
    /// queueing for a lock held up to the probe timeout per caller.
    async fn shared_probe(self: &Arc<Self>) -> ProbeOutcome {
        let state = Arc::clone(self);
        self.probe_flight
            .run(|| async move { state.probe().await })
            .await
            .unwrap_or_else(|e| Err(ProbeError::Pool(e.to_string())))
    }

    /// One probe: lease (or reuse) the health session and time `reqCurrentTime`. IB ignores a
    /// `reqCurrentTime` within a second of the last one, so a success younger than
    /// [`PROBE_REUSE`] on a session that is still ready is answered from the cache.
    async fn probe(&self) -> ProbeOutcome {
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
    /// The gateway's shared pacing book: where it lives and what every process (and host)
    /// sharing the gateway holds in it, this one included.
    shared: SharedPacerStatus,
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

impl PoolStatus {
    /// The status part of `stats`.
    fn of(stats: &PoolStats) -> Self {
        Self {
            connections_ready: ready(stats),
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
        }
    }
}

impl PaceStatus {
    /// Each gateway's pacer in `stats`.
    fn of(stats: &PoolStats) -> Self {
        Self {
            gateways: stats
                .gateways
                .iter()
                .map(|g| GatewayPace {
                    addr: g.addr.clone(),
                    paused: g.pacer.paused_for_ms > 0,
                    pacer: g.pacer.clone(),
                    shared: g.pacing.clone(),
                })
                .collect(),
        }
    }
}

impl PaceStats {
    /// The pacing counters of `stats`.
    fn of(stats: &PoolStats) -> Self {
        Self {
            requests: stats.requests,
            requests_retried: stats.requests_retried,
            pacing_waits: stats.pacing_waits,
            pacing_wait_ms: stats.pacing_wait_ms,
            pacing_violations: stats.pacing_violations,
            rate_limited: stats.rate_limited,
            gateways: stats
                .gateways
                .iter()
                .map(|g| GatewayPaceStats {
                    addr: g.addr.clone(),
                    reservations_total: g.pacer.reservations_total,
                    violations_total: g.pacer.violations_total,
                    violation_streak: g.pacer.violation_streak,
                })
                .collect(),
        }
    }
}

async fn pool_status(State(s): State<Arc<AppState>>) -> Response {
    match s.stats().await {
        Ok(st) => ok(PoolStatus::of(&st)),
        Err(r) => r,
    }
}

async fn pool_metrics(State(s): State<Arc<AppState>>) -> Response {
    match s.stats().await {
        Ok(st) => ok(st),
        Err(r) => r,
    }
}

async fn pool_health(State(s): State<Arc<AppState>>) -> Response {
    let probed = s.shared_probe().await;
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
    match s.stats().await {
        Ok(st) => ok(PaceStatus::of(&st)),
        Err(r) => r,
    }
}

async fn pace_stats(State(s): State<Arc<AppState>>) -> Response {
    match s.stats().await {
        Ok(st) => ok(PaceStats::of(&st)),
        Err(r) => r,
    }
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

/// A known path with another method than `GET`/`HEAD` (axum adds the `Allow` header).
async fn method_not_allowed(method: Method) -> Response {
    fail::<()>(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "method_not_allowed",
        format!("{method} is not allowed here; this API answers GET"),
    )
}

/// Whether `presented` equals `secret`, in a time that depends on `presented`'s length only
/// (what the caller sent), never on where or whether it differs from the secret, nor on the
/// secret's length.
fn constant_time_eq(presented: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return presented.is_empty();
    }
    let mut diff = presented.len() ^ secret.len();
    for (i, p) in presented.iter().enumerate() {
        diff |= usize::from(p ^ secret[i % secret.len()]);
    }
    std::hint::black_box(diff) == 0
}

/// The credentials of an `Authorization: Bearer TOKEN` header: the scheme matched in any case
/// (RFC 7235 §2.1), one or more spaces, then the token. `None` for another scheme.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_start_matches(' '))
}

/// Reject requests without the configured bearer token (the dashboard's page and files, which
/// hold no data, excepted).
async fn auth(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(request).await;
    };
    if dashboard::is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
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

/// The router over `state`: the limits first (they bound unauthenticated clients too), then
/// the token, then the routes.
fn router(state: Arc<AppState>, limits: Limits) -> Router {
    Router::new()
        .route("/api/ib/pool/status", get(pool_status))
        .route("/api/ib/pool/metrics", get(pool_metrics))
        .route("/api/ib/pool/health", get(pool_health))
        .route("/api/ib/pace/status", get(pace_status))
        .route("/api/ib/pace/stats", get(pace_stats))
        .route("/metrics", get(prometheus))
        .route("/api/ib/pool/history", get(dashboard::history))
        .route("/api/ib/dashboard", get(dashboard::dashboard))
        .route("/", get(dashboard::asset))
        .route("/assets/dashboard.js", get(dashboard::asset))
        .route("/assets/dashboard.css", get(dashboard::asset))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), auth))
        .layer(middleware::from_fn_with_state(
            Arc::new(Gate::new(limits)),
            limits::enforce,
        ))
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

/// Whether `ip` is a loopback address (127.0.0.0/8, ::1, or either mapped into IPv6).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// What `serve` runs with: flags over the configuration.
struct Resolved {
    gateway: String,
    listen: SocketAddr,
    token: Option<String>,
    probe_timeout: Duration,
    limits: Limits,
    history_interval: Duration,
}

/// Run the server until Ctrl-C or SIGTERM, then stop accepting, give requests in flight up to
/// [`server::SHUTDOWN_DRAIN`], close what is left and shut the pool down (up to
/// [`SHUTDOWN_GRACE`]): the exit is bounded whatever clients or the gateway do.
pub(crate) fn serve(args: &ServeArgs, settings: &Settings) -> Result<(), ServeError> {
    let probe_timeout = args
        .probe_timeout
        .unwrap_or_else(|| secs(settings.health.probe_timeout_secs));
    let resolved = Resolved {
        gateway: args
            .gateway
            .clone()
            .or_else(|| settings.real_gateway())
            .ok_or_else(|| {
                ServeError::Config(
                    "no gateway: pass --gateway HOST:PORT or set `gateway` in ibconn.toml                      (serve needs a real gateway, not the embedded simulator)"
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
        probe_timeout,
        limits: Limits::new(
            args.request_timeout,
            args.max_concurrent_requests,
            probe_timeout,
        ),
        history_interval: args
            .history_interval
            .unwrap_or(history::DEFAULT_INTERVAL),
    };
    if resolved.token.is_none() && !is_loopback(resolved.listen.ip()) {
        if !args.insecure_no_token {
            return Err(ServeError::NoToken {
                listen: resolved.listen,
            });
        }
        eprintln!(
            "ibconn: warning: serving on {} without a bearer token (--insecure-no-token)",
            resolved.listen
        );
        tracing::warn!(listen = %resolved.listen, "serving without a bearer token");
    }
    if resolved.limits.request_timeout <= resolved.probe_timeout {
        eprintln!(
            "ibconn: warning: --request-timeout ({:?}) is not longer than the probe timeout \
             ({:?}): a slow health probe is answered 503 response_timeout",
            resolved.limits.request_timeout, resolved.probe_timeout
        );
        tracing::warn!(
            request_timeout = ?resolved.limits.request_timeout,
            probe_timeout = ?resolved.probe_timeout,
            "the request timeout does not outlast the probe timeout"
        );
    }
    let rt = tokio::runtime::Runtime::new().map_err(|source| ServeError::Io {
        context: "cannot start the runtime".to_owned(),
        source,
    })?;
    let served = rt.block_on(run(&resolved, settings));
    // Tasks still running (a probe's file I/O) must not hold the exit up.
    rt.shutdown_timeout(RUNTIME_GRACE);
    served
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
    let config = health_pool_config(settings, &args.gateway, args.probe_timeout);
    let observer = Arc::new(Observer::new(
        config.gateways.clone(),
        config.pacing.clone(),
        args.history_interval,
        Leases::new(settings),
    ));
    let pool =
        coordination::start_pool(settings, config, "ibconn serve").map_err(ServeError::Config)?;
    // Subscribed before the first acquire, so the first session's `connected` is recorded.
    observer.start(&pool, pool.events_with_capacity(NOTICE_QUEUE));
    let state = Arc::new(AppState {
        pool: pool.clone(),
        gateway: args.gateway.clone(),
        token,
        probe_timeout: args.probe_timeout,
        probe_session: Mutex::new(ProbeSession::default()),
        probe_flight: SingleFlight::default(),
        last_probe: std::sync::Mutex::new(None),
        observer,
    });
    // Connect right away, so status and /metrics show the session before the first health call.
    let first = Arc::clone(&state);
    tokio::spawn(async move {
        if let Err(e) = first.shared_probe().await {
            tracing::warn!(error = %e, "initial probe failed");
        }
    });
    println!("listening on {addr}");
    tracing::info!(%addr, "serving the API, and the dashboard at /");
    server::run(
        listener,
        router(Arc::clone(&state), args.limits),
        args.limits,
        stop_signal(),
    )
    .await;
    // A probe still waiting on the gateway must not hold the shutdown up.
    state.probe_flight.abort();
    if let Ok(mut session) = tokio::time::timeout(SHUTDOWN_GRACE, state.probe_session.lock()).await
    {
        drop(session.conn.take());
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, pool.shutdown()).await;
    Ok(())
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
        assert!(!constant_time_eq(b"secretsecret", b"secret"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
    }

    #[test]
    fn the_bearer_scheme_matches_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn loopback_is_127_8_and_ipv6_one_also_mapped() {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "::",
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "192.168.1.1",
        ] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
