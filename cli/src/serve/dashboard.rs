//! The dashboard: one page (`GET /`, its script and style sheet embedded in the binary, no
//! external URL) that polls `GET /api/ib/dashboard` every 2 s and `GET /api/ib/pool/history`
//! for its chart. The page carries no data, so it is served without the token; the data routes
//! need it like every other route (the page asks for it once and sends it as a bearer header).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ibconn_core::client_id::{ClientId, Purpose};
use serde::Serialize;

use super::events::Event;
use super::history::TierView;
use super::leases::LeaseView;
use super::observer::{unix_ms, Version};
use super::{fail, ok, AppState, PaceStats, PaceStatus, PoolStatus};
use crate::metrics::class_labels;

/// An embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: &'static str,
}

/// FNV-1a of `bytes`, for the assets' ETags (computed at build time).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits of `hash` + `"`: an ETag.
const fn etag(hash: u64) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal) => {{
        const BYTES: &[u8] = include_bytes!(concat!("../../assets/dashboard/", $file));
        const TAG: [u8; 18] = etag(fnv1a(BYTES));
        Asset {
            path: $path,
            content_type: $type,
            bytes: BYTES,
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => "\"0\"",
            },
        }
    }};
}

/// Every file the page needs.
const ASSETS: [Asset; 3] = [
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!(
        "/assets/dashboard.js",
        "dashboard.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/assets/dashboard.css",
        "dashboard.css",
        "text/css; charset=utf-8"
    ),
];

/// The paths served without the token.
pub(crate) fn is_public(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// The page's own origin only: scripts, styles and data from `serve`, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// `GET` of an embedded file: revalidated on every load (`no-cache` with an ETag, so a new
/// binary's page is never stale and an unchanged one costs a 304).
pub(crate) async fn asset(request: Request) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == request.uri().path()) else {
        return super::not_found().await;
    };
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_static(a.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if a.path == "/" {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    (headers, a.bytes).into_response()
}

/// The bytes of every embedded file together: what a first load of the page costs.
#[cfg(test)]
fn page_bytes() -> usize {
    ASSETS.iter().map(|a| a.bytes.len()).sum()
}

/// A gateway's facts the pool's snapshot lacks.
#[derive(Debug, Serialize)]
struct GatewayExtra {
    addr: String,
    /// The version the gateway answers (null until read).
    server_version: Option<i32>,
    /// Why it could not be read.
    version_error: Option<String>,
}

/// A connection's facts the pool's snapshot lacks.
#[derive(Debug, Serialize)]
struct ConnectionExtra {
    client_id: ClientId,
    /// Unix ms the session became ready (null when not ready).
    ready_since_ms: Option<u64>,
    /// Its last probe round trip, µs: the keepalive probe's, else (the health session) the
    /// last `/api/ib/pool/health` probe's.
    last_probe_rtt_us: Option<u64>,
    /// Requests it answered, and failed.
    answered: u64,
    failed: u64,
}

/// IB errors and notices of one class.
#[derive(Debug, Serialize)]
struct ErrorCount {
    class: String,
    detail: String,
    count: u64,
}

/// The pacing limits the gauges fill up to.
#[derive(Debug, Serialize)]
pub(crate) struct Limits {
    historical_max: u32,
    historical_window_secs: f64,
    open_max: u32,
    messages_max: u32,
    messages_window_secs: f64,
}

/// `data` of `/api/ib/dashboard`: one consistent snapshot for the page.
#[derive(Debug, Serialize)]
struct Dashboard {
    now_ms: u64,
    gateway: String,
    /// As `/api/ib/pool/status`.
    status: PoolStatus,
    /// As `/api/ib/pace/status`.
    pace: PaceStatus,
    /// As `/api/ib/pace/stats`.
    pace_stats: PaceStats,
    limits: Limits,
    gateways: Vec<GatewayExtra>,
    connections: Vec<ConnectionExtra>,
    errors: Vec<ErrorCount>,
    leases: LeaseView,
    events: Vec<Event>,
    /// Counters the other parts do not show.
    established: u64,
    failed: u64,
    disconnects: u64,
    reconnects: u64,
    client_id_conflicts: u64,
    /// The last `/api/ib/pool/health` probe: whether it answered.
    probe_ok: Option<bool>,
    history_interval_ms: u64,
}

fn limits(s: &AppState) -> Limits {
    let r = &s.observer.rules;
    Limits {
        historical_max: r.historical.max_weight,
        historical_window_secs: r.historical.window.as_secs_f64(),
        open_max: r.open_max,
        messages_max: r.message_rate.max_weight,
        messages_window_secs: r.message_rate.window.as_secs_f64(),
    }
}

/// `GET /api/ib/dashboard`.
pub(crate) async fn dashboard(State(s): State<Arc<AppState>>) -> Response {
    let stats = match s.stats().await {
        Ok(st) => st,
        Err(r) => return r,
    };
    let ids: Vec<ClientId> = stats.connections.iter().map(|c| c.client_id).collect();
    let leases = s.observer.leases.view(&ids).await;
    let last_probe = s.last_probe.lock().ok().and_then(|l| *l);
    let (connections, events) = {
        let log = s.observer.events();
        let connections = stats
            .connections
            .iter()
            .map(|c| ConnectionExtra {
                client_id: c.client_id,
                ready_since_ms: (c.state == "ready")
                    .then(|| log.ready_since(c.client_id))
                    .flatten(),
                last_probe_rtt_us: c
                    .session
                    .as_ref()
                    .and_then(|st| st.last_probe_rtt_us)
                    .or_else(|| {
                        (c.purpose == Purpose::Health)
                            .then(|| last_probe.and_then(|p| p.rtt_us))
                            .flatten()
                    }),
                answered: c.session.as_ref().map_or(0, |st| st.answered),
                failed: c.session.as_ref().map_or(0, |st| st.failed),
            })
            .collect();
        (connections, log.newest_first())
    };
    let gateways = stats
        .gateways
        .iter()
        .map(|g| {
            let (server_version, version_error) = match s.observer.version(&g.addr) {
                Some(Version::Known(v)) => (Some(v), None),
                Some(Version::Failed(e)) => (None, Some(e)),
                Some(Version::Reading) | None => (None, None),
            };
            GatewayExtra {
                addr: g.addr.clone(),
                server_version,
                version_error,
            }
        })
        .collect();
    let errors = stats
        .errors_by_class
        .iter()
        .map(|(name, n)| {
            let (class, detail) = class_labels(name);
            ErrorCount {
                class,
                detail,
                count: *n,
            }
        })
        .collect();
    ok(Dashboard {
        now_ms: unix_ms(),
        gateway: s.gateway.clone(),
        status: PoolStatus::of(&stats),
        pace: PaceStatus::of(&stats),
        pace_stats: PaceStats::of(&stats),
        limits: limits(&s),
        gateways,
        connections,
        errors,
        leases,
        events,
        established: stats.established,
        failed: stats.failed,
        disconnects: stats.disconnects,
        reconnects: stats.reconnects,
        client_id_conflicts: stats.client_id_conflicts,
        probe_ok: last_probe.map(|p| p.ok),
        history_interval_ms: u64::try_from(s.observer.interval.as_millis()).unwrap_or(u64::MAX),
    })
}

/// `data` of `/api/ib/pool/history`.
#[derive(Debug, Serialize)]
struct HistoryData {
    now_ms: u64,
    /// Bytes the rings hold (fixed at start: the bound).
    memory_bytes: usize,
    limits: Limits,
    tiers: Vec<TierView>,
}

/// `GET /api/ib/pool/history[?tier=hour|day]`: the rings, oldest sample first, as columns.
pub(crate) async fn history(State(s): State<Arc<AppState>>, request: Request) -> Response {
    let tier = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("tier="))
            .map(str::to_owned)
    });
    let (memory_bytes, tiers, names) = {
        let h = s.observer.history();
        (h.memory_bytes(), h.view(tier.as_deref()), h.names())
    };
    match tiers {
        Some(tiers) => ok(HistoryData {
            now_ms: unix_ms(),
            memory_bytes,
            limits: limits(&s),
            tiers,
        }),
        None => fail::<()>(
            StatusCode::BAD_REQUEST,
            None,
            "bad_request",
            format!(
                "no history tier {:?}; tiers: {}",
                tier.unwrap_or_default(),
                names.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_no_other_origin_and_only_embedded_files() {
        for a in &ASSETS {
            let text = std::str::from_utf8(a.bytes).unwrap();
            for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                assert!(!text.contains(scheme), "{} names {scheme}", a.path);
            }
        }
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        for a in &ASSETS[1..] {
            assert!(html.contains(a.path), "the page does not load {}", a.path);
        }
        // A first load stays small: a few tens of KiB.
        assert!(page_bytes() < 64 * 1024, "{} bytes", page_bytes());
    }

    #[test]
    fn etags_are_quoted_hex_and_follow_the_bytes() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(&etag(0x0123_4567_89ab_cdef), b"\"0123456789abcdef\"");
        let tags: Vec<&str> = ASSETS.iter().map(|a| a.etag).collect();
        assert!(tags.iter().all(|t| t.len() == 18 && t.starts_with('"')));
        assert_ne!(tags[0], tags[1]);
    }

    #[test]
    fn only_the_page_and_its_files_are_public() {
        assert!(is_public("/"));
        assert!(is_public("/assets/dashboard.js"));
        assert!(!is_public("/api/ib/dashboard"));
        assert!(!is_public("/api/ib/pool/history"));
        assert!(!is_public("/assets/other.js"));
        assert!(!is_public("/metrics"));
    }
}
