//! `ibconn.toml`: one configuration file for every command, with `IBCONN_*` environment
//! overrides.
//!
//! Precedence, lowest first: built-in defaults (taken from the core's `Default` impls where the
//! core has one) < the file (`--config FILE`, else `./ibconn.toml` if present) < environment
//! variables < command-line flags. Every key of the file has a variable: `IBCONN_` followed by
//! the key's path with dots as underscores, upper-cased (`http.token` → `IBCONN_HTTP_TOKEN`,
//! `purposes.backfill.max_connections` → `IBCONN_PURPOSES_BACKFILL_MAX_CONNECTIONS`). A variable
//! under a known section that names no key (a typo) is an error, like an unknown key in the file.
//!
//! The file is parsed with serde (`deny_unknown_fields`), so a misspelt key or a wrong type fails
//! with the file, line and key; then every value is range-checked, naming the key and where it
//! came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

use crate::args::parse_host_port;

/// The file read when `--config` is not given (if it exists).
pub(crate) const DEFAULT_FILE: &str = "ibconn.toml";
/// The variable naming the config file when `--config` is not given.
pub(crate) const CONFIG_ENV: &str = "IBCONN_CONFIG";
/// Prefix of every override variable.
const ENV_PREFIX: &str = "IBCONN_";

/// `ibconn health --timeout` default, seconds.
const HEALTH_TIMEOUT_SECS: f64 = 5.0;
/// `ibconn serve --probe-timeout` default, seconds.
const HEALTH_PROBE_TIMEOUT_SECS: f64 = 2.0;
/// `ibconn serve --listen` default.
const HTTP_LISTEN: &str = "127.0.0.1:8787";
/// Longest duration any `*_secs` key accepts (a week).
const MAX_SECS: f64 = 7.0 * 86_400.0;

/// Why the configuration is unusable (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not parse: syntax, an unknown key or a wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line, column, key).
        message: String,
    },
    /// An environment variable names no key, or its value has the wrong type.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("{key} (from {source_}): {message}")]
    Invalid {
        /// The key, dotted.
        key: String,
        /// Where the value came from (`default`, the file, or the variable).
        source_: String,
        /// What is wrong.
        message: String,
    },
}

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
}

impl Default for FetchSettings {
    fn default() -> Self {
        let run = BackfillRun::default();
        Self {
            concurrency: u16::try_from(run.concurrency).unwrap_or(u16::MAX),
            request_timeout_secs: run.request_timeout.as_secs_f64(),
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

/// The whole configuration (the effective one after [`load`]).
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
            connection: ConnectionSettings::default(),
            pacing: PacingSettings::default(),
            health: HealthSettings::default(),
            http: HttpSettings::default(),
            fetch: FetchSettings::default(),
            validate: ValidateSettings::default(),
        }
    }
}

/// Where the effective configuration came from (for `ibconn config`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// The file read, if any.
    pub(crate) file: Option<PathBuf>,
    /// Override variables applied.
    pub(crate) env: Vec<String>,
}

/// The effective configuration and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The settings.
    pub(crate) settings: Settings,
    /// Their origin.
    pub(crate) origin: Origin,
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
            gateways,
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
            ..base
        }
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

    /// The HTTP listen address (validated by [`load`]).
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

/// Default symbol cache: `$XDG_CACHE_HOME/ibconn/symbols.json` (else
/// `~/.cache/ibconn/symbols.json`).
fn default_cache_file() -> PathBuf {
    user_dir_file("XDG_CACHE_HOME", ".cache", "symbols.json")
}

/// Keys that may be absent (no default value) but can still be set from the environment.
const OPTIONAL_KEYS: [&str; 2] = ["gateway", "http.token"];

/// Load the effective configuration: defaults, then `explicit` (or `$IBCONN_CONFIG`, or
/// `./ibconn.toml` if present), then the process environment.
pub(crate) fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    let file = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(p) => Some(PathBuf::from(p)),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
        },
    };
    let text = match &file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    load_from(file.as_deref().zip(text.as_deref()), &env)
}

/// [`load`] with the file's text and the environment passed in.
pub(crate) fn load_from(
    file: Option<(&Path, &str)>,
    env: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let defaults = Settings::default();
    let mut merged = to_table(&defaults);
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    if let Some((path, text)) = file {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        };
        // Typed first: unknown keys and wrong types are reported with line and column.
        toml::from_str::<Settings>(text).map_err(parse_err)?;
        let table: toml::Table = toml::from_str(text).map_err(parse_err)?;
        merge(
            &mut merged,
            table,
            "",
            &path.display().to_string(),
            &mut sources,
        );
    }
    let mut origin = Origin {
        file: file.map(|(p, _)| p.to_path_buf()),
        env: Vec::new(),
    };
    let mut keys = leaf_keys(&merged);
    for k in OPTIONAL_KEYS {
        if !keys.iter().any(|(x, _)| x == k) {
            keys.push((k.to_owned(), Kind::Str));
        }
    }
    // Variables under a section's prefix must name a key (a typo is an error, not ignored).
    let sections: Vec<String> = merged
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| env_name(&format!("{k}.")))
        .collect();
    let mut env: Vec<&(String, String)> = env.iter().collect();
    env.sort();
    for (var, raw) in env {
        let Some((key, kind)) = keys.iter().find(|(k, _)| env_name(k) == *var) else {
            if sections.iter().any(|s| var.starts_with(s.as_str())) {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: "no such configuration key (see ibconn.example.toml)".to_owned(),
                });
            }
            continue;
        };
        let value = parse_env_value(raw, *kind).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        set(&mut merged, key, value);
        // A value of the wrong type for its key is reported against the variable.
        if let Err(e) = toml::Value::Table(merged.clone()).try_into::<Settings>() {
            return Err(ConfigError::Env {
                var: var.clone(),
                message: e.to_string().trim_end().to_owned(),
            });
        }
        sources.insert(key.clone(), format!("${var}"));
        origin.env.push(var.clone());
    }
    let settings: Settings =
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: origin.file.clone().unwrap_or_default(),
                message: e.to_string(),
            })?;
    validate(&settings, &sources)?;
    Ok(Loaded { settings, origin })
}

/// The settings as a TOML table (always representable: plain data).
fn to_table(s: &Settings) -> toml::Table {
    match toml::Table::try_from(s) {
        Ok(t) => t,
        Err(_) => toml::Table::new(),
    }
}

/// Deep-merge `from` into `into`, recording the source of every leaf set.
fn merge(
    into: &mut toml::Table,
    from: toml::Table,
    prefix: &str,
    source: &str,
    sources: &mut BTreeMap<String, String>,
) {
    for (k, v) in from {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => {
                merge(dst, src, &key, source, sources);
            }
            (_, v) => {
                mark_leaves(&key, &v, source, sources);
                into.insert(k, v);
            }
        }
    }
}

fn mark_leaves(key: &str, v: &toml::Value, source: &str, sources: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                mark_leaves(&format!("{key}.{k}"), x, source, sources);
            }
        }
        _ => {
            sources.insert(key.to_owned(), source.to_owned());
        }
    }
}

/// The type of a leaf, for parsing an environment value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

/// Every leaf key (dotted) with its type.
fn leaf_keys(t: &toml::Table) -> Vec<(String, Kind)> {
    fn walk(t: &toml::Table, prefix: &str, out: &mut Vec<(String, Kind)>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            let kind = match v {
                toml::Value::Table(sub) => {
                    walk(sub, &key, out);
                    continue;
                }
                toml::Value::Integer(_) => Kind::Int,
                toml::Value::Float(_) => Kind::Float,
                toml::Value::Boolean(_) => Kind::Bool,
                _ => Kind::Str,
            };
            out.push((key, kind));
        }
    }
    let mut out = Vec::new();
    walk(t, "", &mut out);
    out
}

/// `IBCONN_` + the key, dots and dashes as underscores, upper-cased.
pub(crate) fn env_name(key: &str) -> String {
    let mut s = String::from(ENV_PREFIX);
    s.extend(key.chars().map(|c| match c {
        '.' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

fn parse_env_value(raw: &str, kind: Kind) -> Result<toml::Value, String> {
    let raw_t = raw.trim();
    match kind {
        Kind::Str => Ok(toml::Value::String(raw.to_owned())),
        Kind::Bool => match raw_t {
            "true" | "1" | "yes" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Kind::Int => raw_t
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Kind::Float => match raw_t.parse::<i64>() {
            Ok(i) => Ok(toml::Value::Integer(i)),
            Err(_) => raw_t
                .parse::<f64>()
                .map(toml::Value::Float)
                .map_err(|_| format!("expected a number, got {raw:?}")),
        },
    }
}

/// Set the dotted `key` in `t` (creating tables on the way).
fn set(t: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else {
        return;
    };
    let mut cur = t;
    for p in parts {
        let entry = cur
            .entry(p.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        cur = next;
    }
    cur.insert(last.to_owned(), value);
}

/// Range checks, naming the key and its source.
fn validate(s: &Settings, sources: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.to_owned(),
        source_: sources
            .get(key)
            .cloned()
            .unwrap_or_else(|| "default".to_owned()),
        message,
    };
    let positive_secs = |key: &str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= MAX_SECS {
            Ok(())
        } else {
            Err(invalid(
                key,
                format!("{v} is not a duration in seconds (> 0 and <= {MAX_SECS})"),
            ))
        }
    };
    let at_least = |key: &str, v: u64, min: u64| {
        if v >= min {
            Ok(())
        } else {
            Err(invalid(key, format!("{v} is below the minimum {min}")))
        }
    };
    if let Some(g) = &s.gateway {
        parse_host_port(g).map_err(|e| invalid("gateway", e))?;
    }
    parse_versions(&s.connection.versions).map_err(|e| invalid("connection.versions", e))?;
    let p = &s.pool;
    for (key, v) in [
        ("pool.acquire_timeout_secs", p.acquire_timeout_secs),
        ("pool.dial_timeout_secs", p.dial_timeout_secs),
        ("pool.idle_timeout_secs", p.idle_timeout_secs),
        ("pool.heartbeat_interval_secs", p.heartbeat_interval_secs),
        ("pool.reconnect_base_secs", p.reconnect_base_secs),
        ("pool.reconnect_cap_secs", p.reconnect_cap_secs),
        ("pool.breaker_open_secs", p.breaker_open_secs),
        ("client_ids.lease_ttl_secs", s.client_ids.lease_ttl_secs),
        (
            "client_ids.foreign_cooldown_secs",
            s.client_ids.foreign_cooldown_secs,
        ),
        (
            "connection.handshake_timeout_secs",
            s.connection.handshake_timeout_secs,
        ),
        (
            "connection.request_timeout_secs",
            s.connection.request_timeout_secs,
        ),
        ("connection.probe_idle_secs", s.connection.probe_idle_secs),
        (
            "connection.probe_timeout_secs",
            s.connection.probe_timeout_secs,
        ),
        (
            "pacing.message_rate_window_secs",
            s.pacing.message_rate_window_secs,
        ),
        (
            "pacing.historical_window_secs",
            s.pacing.historical_window_secs,
        ),
        ("pacing.burst_window_secs", s.pacing.burst_window_secs),
        ("pacing.identical_gap_secs", s.pacing.identical_gap_secs),
        ("health.timeout_secs", s.health.timeout_secs),
        ("health.probe_timeout_secs", s.health.probe_timeout_secs),
        ("fetch.request_timeout_secs", s.fetch.request_timeout_secs),
    ] {
        positive_secs(key, v)?;
    }
    if p.reconnect_cap_secs < p.reconnect_base_secs {
        return Err(invalid(
            "pool.reconnect_cap_secs",
            format!(
                "{} is below pool.reconnect_base_secs ({})",
                p.reconnect_cap_secs, p.reconnect_base_secs
            ),
        ));
    }
    if p.heartbeat_interval_secs * 3.0 > s.client_ids.lease_ttl_secs {
        // Blame the key that was set (the other one is a default).
        let key = if sources.contains_key("client_ids.lease_ttl_secs") {
            "client_ids.lease_ttl_secs"
        } else {
            "pool.heartbeat_interval_secs"
        };
        return Err(invalid(
            key,
            format!(
                "pool.heartbeat_interval_secs ({}) is more than a third of \
                 client_ids.lease_ttl_secs ({}): leases would expire between heartbeats",
                p.heartbeat_interval_secs, s.client_ids.lease_ttl_secs
            ),
        ));
    }
    let m = s.pacing.margin_secs;
    if !(m.is_finite() && (0.0..=60.0).contains(&m)) {
        return Err(invalid(
            "pacing.margin_secs",
            format!("{m} is not between 0 and 60 seconds"),
        ));
    }
    for (key, v) in [
        (
            "pool.breaker_failure_threshold",
            p.breaker_failure_threshold,
        ),
        (
            "client_ids.max_conflict_attempts",
            s.client_ids.max_conflict_attempts,
        ),
        ("pacing.message_rate_max", s.pacing.message_rate_max),
        ("pacing.historical_max", s.pacing.historical_max),
        ("pacing.burst_max", s.pacing.burst_max),
        ("pacing.open_max", s.pacing.open_max),
        ("pacing.bid_ask_weight", s.pacing.bid_ask_weight),
    ] {
        at_least(key, u64::from(v), 1)?;
    }
    at_least("fetch.concurrency", u64::from(s.fetch.concurrency), 1)?;
    if s.fetch.concurrency > 50 {
        return Err(invalid(
            "fetch.concurrency",
            format!("{} is above IB's 50 open requests", s.fetch.concurrency),
        ));
    }
    for (key, v) in [
        ("validate.valid_ttl_secs", s.validate.valid_ttl_secs),
        ("validate.unknown_ttl_secs", s.validate.unknown_ttl_secs),
    ] {
        if v <= 0 {
            return Err(invalid(
                key,
                format!("{v} is not a positive number of seconds"),
            ));
        }
    }
    // Purposes: a sane size and an id range each.
    for (name, purpose) in &s.purposes {
        let key = format!("purposes.{name}.max_connections");
        if !(1..=64).contains(&purpose.max_connections) {
            return Err(invalid(
                &key,
                format!("{} is not between 1 and 64", purpose.max_connections),
            ));
        }
        if !s.client_ids.ranges.contains_key(name) {
            return Err(invalid(
                &format!("purposes.{name}"),
                format!("purpose {name:?} has no client-id range (add client_ids.ranges.{name})"),
            ));
        }
    }
    // Ranges: ordered, non-negative, disjoint.
    let ranges: Vec<(&String, &IdRange)> = s.client_ids.ranges.iter().collect();
    for (i, (name, r)) in ranges.iter().enumerate() {
        let key = format!("client_ids.ranges.{name}");
        let src_key = |field: &str| format!("{key}.{field}");
        if r.first < 0 || r.first > r.last {
            return Err(ConfigError::Invalid {
                source_: sources
                    .get(&src_key("first"))
                    .or_else(|| sources.get(&src_key("last")))
                    .cloned()
                    .unwrap_or_else(|| "default".to_owned()),
                key,
                message: format!(
                    "{}..={} is not a range of client ids (0 <= first <= last)",
                    r.first, r.last
                ),
            });
        }
        for (other, o) in &ranges[i + 1..] {
            if r.first <= o.last && o.first <= r.last {
                return Err(ConfigError::Invalid {
                    source_: sources
                        .get(&src_key("first"))
                        .or_else(|| sources.get(&format!("client_ids.ranges.{other}.first")))
                        .cloned()
                        .unwrap_or_else(|| "default".to_owned()),
                    key,
                    message: format!(
                        "{}..={} overlaps client_ids.ranges.{other} ({}..={})",
                        r.first, r.last, o.first, o.last
                    ),
                });
            }
        }
    }
    if s.http_listen().is_none() {
        return Err(invalid(
            "http.listen",
            format!("{:?} is not an ADDRESS:PORT", s.http.listen),
        ));
    }
    if s.http.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(invalid(
            "http.token",
            "the bearer token is empty (leave it out for no authentication)".to_owned(),
        ));
    }
    Ok(())
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "# file: {}", p.display())?,
            None => write!(f, "# file: none (built-in defaults)")?,
        }
        if self.env.is_empty() {
            writeln!(f)
        } else {
            writeln!(f, "\n# environment: {}", self.env.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        load_from(Some((Path::new("t.toml"), text)), &env(vars)).map(|l| l.settings)
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

    #[test]
    fn precedence_is_defaults_file_env() {
        let s = load_text(
            "[pool]\nacquire_timeout_secs = 12\n[purposes.backfill]\nmax_connections = 2\n\
             [http]\ntoken = \"from-file\"\n",
            &[
                ("IBCONN_HTTP_TOKEN", "from-env"),
                ("IBCONN_PURPOSES_BACKFILL_MAX_CONNECTIONS", "3"),
                ("IBCONN_PACING_MARGIN_SECS", "0.5"),
                ("IBCONN_PYTHON", "/usr/bin/python3"),
            ],
        )
        .unwrap();
        assert_eq!(s.pool.acquire_timeout_secs, 12.0);
        assert_eq!(s.purposes["backfill"].max_connections, 3);
        // Keys the file left out keep their defaults, also inside a table it touched.
        assert_eq!(s.purposes["backfill"].max_in_flight, 0);
        assert!(s.purposes.contains_key("api"));
        assert_eq!(s.http.token.as_deref(), Some("from-env"));
        assert_eq!(s.pacing.margin_secs, 0.5);
        assert_eq!(
            s.pool_config(Vec::new()).pacing,
            PacingRules::default().with_margin(Duration::from_millis(500))
        );
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_ranges_are_named() {
        let e = load_text("[pool]\nacquire_timeout = 3\n", &[]).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("t.toml") && m.contains("acquire_timeout"), "{m}");
        let m = load_text("[fetch]\nconcurrency = \"four\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("t.toml") && m.contains("concurrency"), "{m}");
        let m = load_text(
            "[client_ids.ranges.backfill]\nfirst = 2500\nlast = 2000\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            m.contains("client_ids.ranges.backfill") && m.contains("t.toml"),
            "{m}"
        );
        let m = load_text(
            "[client_ids.ranges.backfill]\nfirst = 1500\nlast = 2500\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(m.contains("overlaps"), "{m}");
        let m = load_text("", &[("IBCONN_POOL_ACQUIRE_TIMEOUT", "3")])
            .unwrap_err()
            .to_string();
        assert!(m.contains("IBCONN_POOL_ACQUIRE_TIMEOUT"), "{m}");
        let m = load_text("", &[("IBCONN_FETCH_CONCURRENCY", "lots")])
            .unwrap_err()
            .to_string();
        assert!(m.contains("IBCONN_FETCH_CONCURRENCY"), "{m}");
        let m = load_text("", &[("IBCONN_FETCH_CONCURRENCY", "99")])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("fetch.concurrency") && m.contains("$IBCONN_FETCH_CONCURRENCY"),
            "{m}"
        );
        let m = load_text("[purposes.reports]\nmax_connections = 2\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("client_ids.ranges.reports"), "{m}");
        let m = load_text("[pool]\nheartbeat_interval_secs = 30\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("lease_ttl_secs"), "{m}");
        let m = load_text("gateway = \"nohost\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("gateway"), "{m}");
        let m = load_text("", &[("IBCONN_HTTP_TOKEN", " ")])
            .unwrap_err()
            .to_string();
        assert!(m.contains("IBCONN_HTTP_TOKEN"), "{m}");
    }

    #[test]
    fn a_custom_purpose_with_a_range_is_accepted() {
        let s = load_text(
            "[purposes.reports]\nmax_connections = 2\nmax_in_flight = 8\n\
             [client_ids.ranges.reports]\nfirst = 7000\nlast = 7099\n",
            &[("IBCONN_PURPOSES_REPORTS_MAX_IN_FLIGHT", "4")],
        )
        .unwrap();
        let pool = s.pool_config(Vec::new());
        assert_eq!(
            pool.purposes.get(&Purpose::Custom("reports".to_owned())),
            Some(&PurposeConfig {
                max_connections: 2,
                sharing: Sharing::Shared { max_in_flight: 4 }
            })
        );
        assert_eq!(
            s.registry_config()
                .ranges
                .get(&Purpose::Custom("reports".to_owned())),
            Some(&IdRange::new(7000, 7099))
        );
    }

    #[test]
    fn env_names_follow_the_keys() {
        assert_eq!(env_name("http.token"), "IBCONN_HTTP_TOKEN");
        assert_eq!(
            env_name("purposes.backfill.max_connections"),
            "IBCONN_PURPOSES_BACKFILL_MAX_CONNECTIONS"
        );
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        // ibconn.example.toml documents every key with its default value (the path-valued keys
        // commented out, since their defaults depend on the user's directories).
        let text = include_str!("../../ibconn.example.toml");
        let example: Settings = toml::from_str(text).unwrap();
        let defaults = Settings::default();
        assert_eq!(example, defaults);
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut documented: Vec<String> = leaf_keys(&table).into_iter().map(|(k, _)| k).collect();
        documented.extend(
            ["client_ids.registry_file", "validate.cache_file"]
                .into_iter()
                .map(str::to_owned),
        );
        for (key, _) in leaf_keys(&to_table(&defaults)) {
            assert!(documented.contains(&key), "{key} is not in the example");
        }
    }
}
