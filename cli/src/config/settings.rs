//! The `ibconn.toml` settings types, their defaults and their conversions to the core's
//! configurations.

use ibconn_core::stream::StreamLimits;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ibconn_core::backoff::BackoffConfig;
use ibconn_core::breaker::BreakerConfig;
use ibconn_core::client_id::{IdRange, Purpose, RegistryConfig};
use ibconn_core::connection::{Config as ConnectionConfig, VersionPolicy};
use ibconn_core::pacer::PacingRules;
use ibconn_core::pool::{PoolConfig, PurposeConfig, Sharing, PACING_MARGIN};
use ibconn_core::validator::CacheConfig;
use ibconn_core::wire::VersionRange;
use ibconn_sim::BackfillRun;
use serde::{Deserialize, Serialize};

/// `ibconn health --timeout` default, seconds.
const HEALTH_TIMEOUT_SECS: f64 = 5.0;
/// `ibconn serve --probe-timeout` default, seconds.
const HEALTH_PROBE_TIMEOUT_SECS: f64 = 2.0;
/// `ibconn serve --listen` default.
const HTTP_LISTEN: &str = "127.0.0.1:8787";

/// `[pool]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PoolSettings {
    /// How long an acquire waits for a connection.
    pub(crate) acquire_timeout_secs: f64,
    /// A TCP connect not finished within this is a failed dial.
    pub(crate) dial_timeout_secs: f64,
    /// An idle connection is closed (and its client id released) after this.
    pub(crate) idle_timeout_secs: f64,
    /// Interval of client-id lease heartbeats (at most a third of `client_ids.lease_ttl_secs`).
    pub(crate) heartbeat_interval_secs: f64,
    /// First reconnect delay bound.
    pub(crate) reconnect_base_secs: f64,
    /// Largest reconnect delay.
    pub(crate) reconnect_cap_secs: f64,
    /// Consecutive dial failures that open a gateway's circuit breaker.
    pub(crate) breaker_failure_threshold: u32,
    /// How long an open breaker stays open.
    pub(crate) breaker_open_secs: f64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        let pool = PoolConfig::default();
        Self {
            acquire_timeout_secs: pool.acquire_timeout.as_secs_f64(),
            dial_timeout_secs: pool.dial_timeout.as_secs_f64(),
            idle_timeout_secs: pool.idle_timeout.as_secs_f64(),
            heartbeat_interval_secs: pool.heartbeat_interval.as_secs_f64(),
            reconnect_base_secs: pool.backoff.base.as_secs_f64(),
            reconnect_cap_secs: pool.backoff.cap.as_secs_f64(),
            breaker_failure_threshold: pool.breaker.failure_threshold,
            breaker_open_secs: pool.breaker.open_for.as_secs_f64(),
        }
    }
}

/// `[purposes.NAME]`: the connections of one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PurposeSettings {
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Leases sharing one connection; 0 = exclusive (one lease per connection).
    pub(crate) max_in_flight: usize,
}

impl Default for PurposeSettings {
    fn default() -> Self {
        Self::from(PurposeConfig {
            max_connections: 1,
            sharing: Sharing::Exclusive,
        })
    }
}

impl From<PurposeConfig> for PurposeSettings {
    fn from(p: PurposeConfig) -> Self {
        Self {
            max_connections: p.max_connections,
            max_in_flight: match p.sharing {
                Sharing::Exclusive => 0,
                Sharing::Shared { max_in_flight } => max_in_flight,
            },
        }
    }
}

impl From<PurposeSettings> for PurposeConfig {
    fn from(p: PurposeSettings) -> Self {
        Self {
            max_connections: p.max_connections,
            sharing: match p.max_in_flight {
                0 => Sharing::Exclusive,
                n => Sharing::Shared { max_in_flight: n },
            },
        }
    }
}

/// `[client_ids]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ClientIdSettings {
    /// Whether leases live in the shared registry file (every process on the host agrees on who
    /// holds which id); `false`: each process keeps its own, in memory.
    pub(crate) shared_registry: bool,
    /// The registry file (`ibconn ids` reads it).
    pub(crate) registry_file: PathBuf,
    /// Lease lifetime without a heartbeat.
    pub(crate) lease_ttl_secs: f64,
    /// How long an id IB rejected with 326 is avoided.
    pub(crate) foreign_cooldown_secs: f64,
    /// 326 conflicts in a row before a connect gives up.
    pub(crate) max_conflict_attempts: u32,
    /// Id range per purpose, inclusive.
    pub(crate) ranges: BTreeMap<String, IdRange>,
}

impl Default for ClientIdSettings {
    fn default() -> Self {
        let reg = RegistryConfig::default();
        Self {
            shared_registry: true,
            registry_file: default_registry_file(),
            lease_ttl_secs: reg.lease_ttl.as_secs_f64(),
            foreign_cooldown_secs: reg.foreign_cooldown.as_secs_f64(),
            max_conflict_attempts: reg.max_conflict_attempts,
            ranges: reg
                .ranges
                .into_iter()
                .map(|(p, r)| (p.to_string(), r))
                .collect(),
        }
    }
}

/// `[coordination]`: what the processes (and hosts) sharing a gateway share — client-id leases
/// and IB's per-gateway pacing budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CoordinationSettings {
    /// `"file"` (every process on this host: the registry file and `pacing_dir`), `"memory"`
    /// (this process only) or `"redis://HOST:PORT[/DB]"` (every host using that Redis).
    pub(crate) store: String,
    /// Directory of the file store's pacing books, one per gateway.
    pub(crate) pacing_dir: PathBuf,
    /// Pacing-book key of the configured gateway, where one gateway is reached under several
    /// names (`localhost:4002`, `127.0.0.1:4002`, a container name); empty = the address.
    pub(crate) gateway_id: String,
    /// Longest wait for another process's file lock (then a typed error, never a hang).
    pub(crate) lock_timeout_secs: f64,
    /// A process that stops renewing (killed) frees its unsent pacing slots after this.
    pub(crate) claim_ttl_secs: f64,
}

impl Default for CoordinationSettings {
    fn default() -> Self {
        Self {
            store: "file".to_owned(),
            pacing_dir: default_pacing_dir(),
            gateway_id: String::new(),
            lock_timeout_secs: ibconn_core::locked_file::DEFAULT_LOCK_TIMEOUT.as_secs_f64(),
            claim_ttl_secs: PoolConfig::default().pacing_claim_ttl.as_secs_f64(),
        }
    }
}

/// Where coordination lives, parsed from `coordination.store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// This process only.
    Memory,
    /// Files on this host.
    File,
    /// A Redis server (the URL as given).
    Redis(String),
}

/// Parses `coordination.store`.
pub(crate) fn parse_store(s: &str) -> Result<StoreKind, String> {
    match s {
        "file" => Ok(StoreKind::File),
        "memory" => Ok(StoreKind::Memory),
        url if url.starts_with("redis://") && url.len() > "redis://".len() => {
            Ok(StoreKind::Redis(url.to_owned()))
        }
        other => Err(format!(
            "{other:?} is not a store: use \"file\", \"memory\" or \"redis://HOST:PORT[/DB]\""
        )),
    }
}

/// `[connection]`: every session's timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ConnectionSettings {
    /// From connect until the session is ready.
    pub(crate) handshake_timeout_secs: f64,
    /// Deadline of a request without its own.
    pub(crate) request_timeout_secs: f64,
    /// Send a keepalive `reqCurrentTime` after this long without inbound bytes.
    pub(crate) probe_idle_secs: f64,
    /// A keepalive probe unanswered this long declares the connection dead (half-open socket).
    pub(crate) probe_timeout_secs: f64,
    /// Protocol versions offered: `auto` (v213..226, falling back to v100..226 for an older
    /// gateway) or a pinned `MIN..MAX`.
    pub(crate) versions: String,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        let c = ConnectionConfig::new(0);
        Self {
            handshake_timeout_secs: c.handshake_timeout.as_secs_f64(),
            request_timeout_secs: c.request_timeout.as_secs_f64(),
            probe_idle_secs: c.probe_idle.as_secs_f64(),
            probe_timeout_secs: c.probe_timeout.as_secs_f64(),
            versions: AUTO_VERSIONS.to_owned(),
        }
    }
}

const AUTO_VERSIONS: &str = "auto";

/// `connection.versions`: `auto`, or `MIN..MAX` within what the core speaks.
pub(crate) fn parse_versions(s: &str) -> Result<VersionPolicy, String> {
    if s == AUTO_VERSIONS {
        return Ok(VersionPolicy::Auto);
    }
    let supported = VersionRange::supported();
    let range = s
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .map(|(min, max)| VersionRange::new(min, max))
        .ok_or_else(|| format!("{s:?} is neither \"auto\" nor MIN..MAX (e.g. \"100..226\")"))?;
    if range.min > range.max || range.min < supported.min || range.max > supported.max {
        return Err(format!(
            "{s:?} is not a range inside {}..{}",
            supported.min, supported.max
        ));
    }
    Ok(VersionPolicy::Pinned(range))
}

/// `[pacing]`: IB's pacing rules as the pool applies them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PacingSettings {
    /// Safety margin added to every pacing window (network jitter).
    pub(crate) margin_secs: f64,
    /// Messages per `message_rate_window_secs`.
    pub(crate) message_rate_max: u32,
    /// The message-rate window.
    pub(crate) message_rate_window_secs: f64,
    /// Historical requests (weighted) per `historical_window_secs`.
    pub(crate) historical_max: u32,
    /// The historical window.
    pub(crate) historical_window_secs: f64,
    /// Requests (weighted) per contract, exchange and whatToShow per `burst_window_secs`.
    pub(crate) burst_max: u32,
    /// The burst window.
    pub(crate) burst_window_secs: f64,
    /// Identical requests at least this far apart.
    pub(crate) identical_gap_secs: f64,
    /// Requests open at once.
    pub(crate) open_max: u32,
    /// Weight of a BID_ASK request.
    pub(crate) bid_ask_weight: u32,
}

impl Default for PacingSettings {
    fn default() -> Self {
        let r = PacingRules::default();
        Self {
            margin_secs: PACING_MARGIN.as_secs_f64(),
            message_rate_max: r.message_rate.max_weight,
            message_rate_window_secs: r.message_rate.window.as_secs_f64(),
            historical_max: r.historical.max_weight,
            historical_window_secs: r.historical.window.as_secs_f64(),
            burst_max: r.burst.max_weight,
            burst_window_secs: r.burst.window.as_secs_f64(),
            identical_gap_secs: r.identical_gap.as_secs_f64(),
            open_max: r.open_max,
            bid_ask_weight: r.bid_ask_weight,
        }
    }
}

/// `[health]`: probe deadlines of `ibconn health` and `ibconn serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HealthSettings {
    /// `ibconn health`: overall deadline (connect, handshake, probe).
    pub(crate) timeout_secs: f64,
    /// `ibconn serve`: deadline of the live probe behind `/api/ib/pool/health`.
    pub(crate) probe_timeout_secs: f64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            timeout_secs: HEALTH_TIMEOUT_SECS,
            probe_timeout_secs: HEALTH_PROBE_TIMEOUT_SECS,
        }
    }
}

/// `[http]`: `ibconn serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HttpSettings {
    /// Address of the HTTP API.
    pub(crate) listen: String,
    /// Bearer token every request must carry; absent = no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: HTTP_LISTEN.to_owned(),
            token: None,
        }
    }
}

/// `[fetch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FetchSettings {
    /// Chunk requests in flight at once.
    pub(crate) concurrency: u16,
    /// Bound on each chunk request, pacing wait included.
    pub(crate) request_timeout_secs: f64,
    /// How long a wall-time fetch waits for a lost gateway to come back before it stops (what
    /// was fetched is written; run it again to resume). Covers IB's nightly restart.
    pub(crate) gateway_down_secs: f64,
    /// Ask no chunk that meets none of the contract's sessions (its contract details' hours);
    /// `false` asks every chunk of the grid (`JobConfig::skip_closed_sessions`).
    pub(crate) skip_closed_sessions: bool,
    /// With stderr not a terminal: a progress line this often (the run's clock: wall time on a
    /// gateway, virtual time on the embedded simulator).
    pub(crate) progress_every_secs: f64,
}

impl Default for FetchSettings {
    fn default() -> Self {
        let run = BackfillRun::default();
        Self {
            concurrency: u16::try_from(run.concurrency).unwrap_or(u16::MAX),
            request_timeout_secs: run.request_timeout.as_secs_f64(),
            gateway_down_secs: 300.0,
            skip_closed_sessions: true,
            progress_every_secs: 30.0,
        }
    }
}

/// `[validate]`: the symbol cache of `ibconn validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ValidateSettings {
    /// The cache file.
    pub(crate) cache_file: PathBuf,
    /// How long a valid symbol stays cached.
    pub(crate) valid_ttl_secs: i64,
    /// How long a definitive "no such symbol" (IB error 200) stays cached.
    pub(crate) unknown_ttl_secs: i64,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        let c = CacheConfig::default();
        Self {
            cache_file: default_cache_file(),
            valid_ttl_secs: c.valid_ttl_secs,
            unknown_ttl_secs: c.unknown_ttl_secs,
        }
    }
}

/// The whole configuration (the effective one after [`load`](super::load())).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Settings {
    /// Default gateway (`HOST:PORT`) for commands without `--gateway`; absent: `fetch`,
    /// `validate` and `head` use the embedded simulator, `health` and `serve` need `--gateway`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gateway: Option<String>,
    /// Pool timeouts, reconnects, breaker.
    pub(crate) pool: PoolSettings,
    /// Connections per purpose.
    pub(crate) purposes: BTreeMap<String, PurposeSettings>,
    /// Client-id registry.
    pub(crate) client_ids: ClientIdSettings,
    /// What processes and hosts share.
    pub(crate) coordination: CoordinationSettings,
    /// Session timeouts.
    pub(crate) connection: ConnectionSettings,
    /// Pacing rules.
    pub(crate) pacing: PacingSettings,
    /// Health probes.
    pub(crate) health: HealthSettings,
    /// HTTP API.
    pub(crate) http: HttpSettings,
    /// Backfills.
    pub(crate) fetch: FetchSettings,
    /// Symbol validation.
    pub(crate) validate: ValidateSettings,
    /// How many streams may be open at once (IB's caps).
    pub(crate) streams: StreamLimits,
}

impl Default for Settings {
    fn default() -> Self {
        let mut purposes: BTreeMap<String, PurposeSettings> = PoolConfig::default()
            .purposes
            .into_iter()
            .map(|(p, c)| (p.to_string(), PurposeSettings::from(c)))
            .collect();
        // The CLI's own sessions: one shared health session (`health`, `serve`), one shared
        // validation session (`validate`, `head`).
        for p in [Purpose::Health, Purpose::Validation] {
            purposes.insert(
                p.to_string(),
                PurposeSettings {
                    max_connections: 1,
                    max_in_flight: 4,
                },
            );
        }
        Self {
            gateway: None,
            pool: PoolSettings::default(),
            purposes,
            client_ids: ClientIdSettings::default(),
            coordination: CoordinationSettings::default(),
            connection: ConnectionSettings::default(),
            pacing: PacingSettings::default(),
            health: HealthSettings::default(),
            http: HttpSettings::default(),
            fetch: FetchSettings::default(),
            validate: ValidateSettings::default(),
            streams: StreamLimits::default(),
        }
    }
}

/// A seconds value as a [`Duration`] (validated values only; anything else saturates to zero).
pub(crate) fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

impl Settings {
    /// The core's pool configuration for `gateways`.
    pub(crate) fn pool_config(&self, gateways: Vec<String>) -> PoolConfig {
        let base = PoolConfig::default();
        let connection = ConnectionConfig {
            handshake_timeout: secs(self.connection.handshake_timeout_secs),
            request_timeout: secs(self.connection.request_timeout_secs),
            probe_idle: secs(self.connection.probe_idle_secs),
            probe_timeout: secs(self.connection.probe_timeout_secs),
            // Checked when the settings were loaded.
            versions: parse_versions(&self.connection.versions).unwrap_or_default(),
            ..base.connection.clone()
        };
        PoolConfig {
            streams: self.streams,
            purposes: self
                .purposes
                .iter()
                .map(|(name, p)| (Purpose::from(name.clone()), PurposeConfig::from(*p)))
                .collect(),
            connection,
            pacing: self.pacing_rules(),
            backoff: BackoffConfig {
                base: secs(self.pool.reconnect_base_secs),
                cap: secs(self.pool.reconnect_cap_secs),
                ..base.backoff
            },
            breaker: BreakerConfig {
                failure_threshold: self.pool.breaker_failure_threshold,
                open_for: secs(self.pool.breaker_open_secs),
                ..base.breaker
            },
            acquire_timeout: secs(self.pool.acquire_timeout_secs),
            dial_timeout: secs(self.pool.dial_timeout_secs),
            idle_timeout: secs(self.pool.idle_timeout_secs),
            heartbeat_interval: secs(self.pool.heartbeat_interval_secs),
            pacing_claim_ttl: secs(self.coordination.claim_ttl_secs),
            gateway_ids: self.gateway_ids(&gateways),
            gateways,
            ..base
        }
    }

    /// `coordination.gateway_id` for the configured gateway (and for the one address given, when
    /// there is one and no configured gateway).
    fn gateway_ids(&self, gateways: &[String]) -> BTreeMap<String, String> {
        let id = self.coordination.gateway_id.trim();
        if id.is_empty() {
            return BTreeMap::new();
        }
        gateways
            .iter()
            .filter(|g| self.gateway.as_ref().is_none_or(|c| c == *g) || gateways.len() == 1)
            .map(|g| (g.clone(), id.to_owned()))
            .collect()
    }

    /// The configured gateway, unless it is `embedded` (the embedded simulator: no address).
    pub(crate) fn real_gateway(&self) -> Option<String> {
        self.gateway.clone().filter(|g| g != crate::args::EMBEDDED)
    }

    /// IB's pacing rules as configured, margin included.
    pub(crate) fn pacing_rules(&self) -> PacingRules {
        let p = &self.pacing;
        let mut r = PacingRules::default();
        r.message_rate.max_weight = p.message_rate_max;
        r.message_rate.window = secs(p.message_rate_window_secs);
        r.historical.max_weight = p.historical_max;
        r.historical.window = secs(p.historical_window_secs);
        r.burst.max_weight = p.burst_max;
        r.burst.window = secs(p.burst_window_secs);
        r.identical_gap = secs(p.identical_gap_secs);
        r.open_max = p.open_max;
        r.bid_ask_weight = p.bid_ask_weight;
        r.with_margin(secs(p.margin_secs))
    }

    /// The core's client-id registry configuration.
    pub(crate) fn registry_config(&self) -> RegistryConfig {
        let c = &self.client_ids;
        RegistryConfig {
            ranges: c
                .ranges
                .iter()
                .map(|(name, r)| (Purpose::from(name.clone()), *r))
                .collect(),
            lease_ttl: secs(c.lease_ttl_secs),
            foreign_cooldown: secs(c.foreign_cooldown_secs),
            max_conflict_attempts: c.max_conflict_attempts,
        }
    }

    /// The symbol cache's TTLs.
    pub(crate) fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            valid_ttl_secs: self.validate.valid_ttl_secs,
            unknown_ttl_secs: self.validate.unknown_ttl_secs,
        }
    }

    /// The HTTP listen address (validated by [`load`](super::load())).
    pub(crate) fn http_listen(&self) -> Option<SocketAddr> {
        self.http.listen.parse().ok()
    }

    /// The settings with the token hidden (for printing).
    pub(crate) fn redacted(&self) -> Self {
        let mut s = self.clone();
        if s.http.token.is_some() {
            s.http.token = Some("[redacted]".to_owned());
        }
        s
    }
}

/// `$XDG_<kind>_HOME/ibconn/NAME`, else `$HOME/<fallback>/ibconn/NAME`, else the temp dir.
fn user_dir_file(xdg: &str, fallback: &str, name: &str) -> PathBuf {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = from_env(xdg) {
        return dir.join("ibconn").join(name);
    }
    if let Some(home) = from_env("HOME") {
        return home.join(fallback).join("ibconn").join(name);
    }
    std::env::temp_dir().join("ibconn").join(name)
}

/// Default registry file: `$XDG_STATE_HOME/ibconn/client-ids.json` (else
/// `~/.local/state/ibconn/client-ids.json`).
fn default_registry_file() -> PathBuf {
    user_dir_file("XDG_STATE_HOME", ".local/state", "client-ids.json")
}

/// Default pacing books: `$XDG_STATE_HOME/ibconn/pacing/` (else `~/.local/state/ibconn/pacing/`),
/// beside the client-id registry.
fn default_pacing_dir() -> PathBuf {
    user_dir_file("XDG_STATE_HOME", ".local/state", "pacing")
}

/// Default symbol cache: `$XDG_CACHE_HOME/ibconn/symbols.json` (else
/// `~/.cache/ibconn/symbols.json`).
fn default_cache_file() -> PathBuf {
    user_dir_file("XDG_CACHE_HOME", ".cache", "symbols.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_from;

    #[test]
    fn version_offers_parse_as_auto_or_a_pinned_range_inside_what_we_speak() {
        assert_eq!(parse_versions("auto"), Ok(VersionPolicy::Auto));
        assert_eq!(
            parse_versions("100..226"),
            Ok(VersionPolicy::Pinned(VersionRange::new(100, 226)))
        );
        assert_eq!(
            parse_versions("213 .. 220"),
            Ok(VersionPolicy::Pinned(VersionRange::new(213, 220)))
        );
        for bad in ["", "Auto", "213", "226..213", "99..226", "100..227", "a..b"] {
            assert!(parse_versions(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_map_onto_the_cores_defaults() {
        let s = Settings::default();
        let pool = s.pool_config(vec!["127.0.0.1:4002".to_owned()]);
        let core = PoolConfig::default();
        assert_eq!(pool.pacing, core.pacing);
        assert_eq!(pool.connection, core.connection);
        assert_eq!(pool.backoff, core.backoff);
        assert_eq!(pool.breaker, core.breaker);
        assert_eq!(pool.acquire_timeout, core.acquire_timeout);
        assert_eq!(pool.dial_timeout, core.dial_timeout);
        assert_eq!(pool.heartbeat_interval, core.heartbeat_interval);
        for (p, c) in &core.purposes {
            assert_eq!(pool.purposes.get(p), Some(c), "{p}");
        }
        assert_eq!(s.registry_config(), RegistryConfig::default());
        assert_eq!(s.cache_config(), CacheConfig::default());
        assert!(load_from(None, &[]).is_ok());
    }
}
