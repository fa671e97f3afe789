//! The symbol validator's cache: what a contract-details lookup (plus head timestamp) found,
//! cached with a TTL, persisted as JSON by the caller.
//!
//! The rule that the system we replace (kpiteira/ktrdr) got wrong: a **negative** result is cached
//! only for a definitive "no security definition" (IB error 200) — never for a timeout, a dropped
//! connection or any other failure, which say nothing about the symbol. Positive results are keyed
//! by the query and also indexed by conId. Times are unix seconds passed in (wall-clock data).
//!
//! Persistence stays sans-IO: with the `file-store` feature, [`SymbolCache::to_json`] and
//! [`SymbolCache::from_json`] turn the cache into bytes and back (checking the schema version);
//! reading and writing the file is the caller's job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::classify::ErrorClass;
use crate::connection::RequestError;
use crate::message::{Contract, ContractDetails};

/// Schema version of the persisted cache.
pub const SCHEMA_VERSION: u32 = 1;

/// What was asked: the fields that select a contract.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SymbolQuery {
    /// Symbol, e.g. `AAPL`.
    pub symbol: String,
    /// Security type, e.g. `STK`.
    pub sec_type: String,
    /// Exchange, e.g. `SMART`.
    pub exchange: String,
    /// Currency, e.g. `USD`.
    pub currency: String,
    /// Everything else that selects the contract (contract id, expiry, strike, right, local
    /// symbol, primary exchange), `key=value` joined by `;`; empty for a plain stock.
    #[serde(default)]
    pub detail: String,
}

impl SymbolQuery {
    /// A SMART-routed USD stock.
    pub fn stock(symbol: &str) -> Self {
        Self {
            symbol: symbol.to_ascii_uppercase(),
            sec_type: "STK".into(),
            exchange: "SMART".into(),
            currency: "USD".into(),
            detail: String::new(),
        }
    }

    /// The query a request contract makes: every field that selects a contract, so
    /// `ES:FUT:202612` and `ES:FUT:202703` are cached apart (and a stock keys as before).
    pub fn from_contract(c: &Contract) -> Self {
        let detail: Vec<String> = crate::contract_spec::selecting_fields(c)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Self {
            symbol: c.symbol.to_ascii_uppercase(),
            sec_type: c.sec_type.clone(),
            exchange: c.exchange.clone(),
            currency: c.currency.clone(),
            detail: detail.join(";"),
        }
    }

    fn key(&self) -> String {
        let base = format!(
            "{}/{}/{}/{}",
            self.symbol, self.sec_type, self.exchange, self.currency
        );
        if self.detail.is_empty() {
            base
        } else {
            format!("{base}/{}", self.detail)
        }
    }
}

/// A validated instrument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidSymbol {
    /// IB's contract id.
    pub con_id: i32,
    /// Descriptive name.
    pub long_name: String,
    /// Primary exchange.
    pub primary_exchange: String,
    /// Exchange time zone id.
    pub time_zone_id: String,
    /// Earliest data point (unix seconds), if looked up.
    pub head_timestamp: Option<i64>,
    /// IB's local symbol, e.g. `ESZ6` (empty in caches written before it was kept).
    #[serde(default)]
    pub local_symbol: String,
    /// The exchange IB answered with, e.g. `SMART`, `CME` (empty in older caches).
    #[serde(default)]
    pub exchange: String,
}

impl ValidSymbol {
    /// The validated instrument from IB's contract-details answer (and the head timestamp, if
    /// it was looked up).
    pub fn from_details(
        contract: &Contract,
        details: &ContractDetails,
        head_timestamp: Option<i64>,
    ) -> Self {
        Self {
            con_id: contract.con_id,
            long_name: details.long_name.clone(),
            primary_exchange: contract.primary_exchange.clone(),
            time_zone_id: details.time_zone_id.clone(),
            head_timestamp,
            local_symbol: contract.local_symbol.clone(),
            exchange: contract.exchange.clone(),
        }
    }
}

/// A cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    Valid {
        symbol: ValidSymbol,
        fetched_at: i64,
    },
    /// IB said 200: no such contract.
    Unknown { message: String, fetched_at: i64 },
}

/// Answer of [`SymbolCache::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Cached and fresh.
    Valid(&'a ValidSymbol),
    /// IB said it does not exist, recently.
    Unknown(&'a str),
    /// Not cached, or stale: ask IB.
    Miss,
}

/// What [`SymbolCache::record_failure`] did with a failed lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureRecord {
    /// A definitive 200: cached as unknown.
    CachedAsUnknown,
    /// Anything else (timeout, connection, other errors): not cached; ask again next time.
    NotCached,
}

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// How long a valid symbol stays fresh (default one day).
    pub valid_ttl_secs: i64,
    /// How long a definitive "unknown" stays fresh (default one hour: listings change).
    pub unknown_ttl_secs: i64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            valid_ttl_secs: 86_400,
            unknown_ttl_secs: 3_600,
        }
    }
}

/// Why persisted cache bytes could not be read back (feature `file-store`).
#[cfg(feature = "file-store")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheDecodeError {
    /// Not a cache at all (not JSON, wrong shape).
    #[error("not a symbol cache: {0}")]
    Malformed(String),
    /// Written by another schema version.
    #[error("symbol cache schema version {found}, this build reads {supported}")]
    UnsupportedSchema {
        /// Version in the bytes.
        found: u32,
        /// [`SCHEMA_VERSION`].
        supported: u32,
    },
}

/// The validator cache (serde: persist it as JSON between runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolCache {
    schema_version: u32,
    config: CacheConfig,
    entries: BTreeMap<String, Entry>,
}

impl Default for SymbolCache {
    fn default() -> Self {
        Self::new(CacheConfig::default())
    }
}

impl SymbolCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            config,
            entries: BTreeMap::new(),
        }
    }

    /// The schema version this cache was written with.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// The TTLs in force.
    pub fn config(&self) -> CacheConfig {
        self.config
    }

    /// Replace the TTLs (e.g. from the caller's configuration; entries keep their fetch times).
    pub fn set_config(&mut self, config: CacheConfig) {
        self.config = config;
    }

    /// When the entry for `query` was fetched (unix seconds), fresh or not.
    pub fn fetched_at(&self, query: &SymbolQuery) -> Option<i64> {
        self.entries.get(&query.key()).map(|e| match e {
            Entry::Valid { fetched_at, .. } | Entry::Unknown { fetched_at, .. } => *fetched_at,
        })
    }

    /// The cache as JSON bytes (feature `file-store`).
    #[cfg(feature = "file-store")]
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialization cannot fail.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// A cache from [`SymbolCache::to_json`]'s bytes; another schema version is an error (the
    /// caller decides whether to start afresh).
    #[cfg(feature = "file-store")]
    pub fn from_json(bytes: &[u8]) -> Result<Self, CacheDecodeError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| CacheDecodeError::Malformed(e.to_string()))?;
        let found = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| CacheDecodeError::Malformed("missing schema_version".to_owned()))?;
        if found != u64::from(SCHEMA_VERSION) {
            return Err(CacheDecodeError::UnsupportedSchema {
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: SCHEMA_VERSION,
            });
        }
        serde_json::from_value(value).map_err(|e| CacheDecodeError::Malformed(e.to_string()))
    }

    /// Fresh cached knowledge about `query` at `now_unix`.
    pub fn lookup(&self, query: &SymbolQuery, now_unix: i64) -> Lookup<'_> {
        match self.entries.get(&query.key()) {
            Some(Entry::Valid { symbol, fetched_at })
                if now_unix - fetched_at < self.config.valid_ttl_secs =>
            {
                Lookup::Valid(symbol)
            }
            Some(Entry::Unknown {
                message,
                fetched_at,
            }) if now_unix - fetched_at < self.config.unknown_ttl_secs => Lookup::Unknown(message),
            _ => Lookup::Miss,
        }
    }

    /// A cached valid symbol by conId (fresh or not: con ids never change meaning).
    pub fn by_con_id(&self, con_id: i32) -> Option<&ValidSymbol> {
        self.entries.values().find_map(|e| match e {
            Entry::Valid { symbol, .. } if symbol.con_id == con_id => Some(symbol),
            _ => None,
        })
    }

    /// Record a successful lookup.
    pub fn record_valid(&mut self, query: &SymbolQuery, symbol: ValidSymbol, now_unix: i64) {
        self.entries.insert(
            query.key(),
            Entry::Valid {
                symbol,
                fetched_at: now_unix,
            },
        );
    }

    /// Record a failed lookup: cached only when IB definitively said "no security definition".
    pub fn record_failure(
        &mut self,
        query: &SymbolQuery,
        error: &RequestError,
        now_unix: i64,
    ) -> FailureRecord {
        match error {
            RequestError::Api {
                code: 200,
                message,
                class: ErrorClass::NoSecurityDefinition,
                ..
            } => {
                self.entries.insert(
                    query.key(),
                    Entry::Unknown {
                        message: message.clone(),
                        fetched_at: now_unix,
                    },
                );
                FailureRecord::CachedAsUnknown
            }
            _ => FailureRecord::NotCached,
        }
    }

    /// Drop expired entries (keeps the file small).
    pub fn purge_expired(&mut self, now_unix: i64) {
        let cfg = self.config;
        self.entries.retain(|_, e| match e {
            Entry::Valid { fetched_at, .. } => now_unix - *fetched_at < cfg.valid_ttl_secs,
            Entry::Unknown { fetched_at, .. } => now_unix - *fetched_at < cfg.unknown_ttl_secs,
        });
    }

    /// Number of entries, fresh or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::classify::Advice;
    use crate::connection::ConnectionError;

    fn aapl() -> ValidSymbol {
        ValidSymbol {
            con_id: 265_598,
            long_name: "APPLE INC".into(),
            primary_exchange: "NASDAQ".into(),
            time_zone_id: "US/Eastern".into(),
            head_timestamp: Some(345_479_400),
            local_symbol: String::new(),
            exchange: "SMART".into(),
        }
    }

    #[test]
    fn queries_from_contracts_key_every_selecting_field() {
        use crate::contract_spec::ContractSpec;
        let q =
            |s: &str| SymbolQuery::from_contract(&ContractSpec::parse(s).unwrap().to_contract());
        assert_eq!(
            q("aapl"),
            SymbolQuery::stock("AAPL"),
            "a stock keys as before"
        );
        assert_ne!(q("ES:FUT:202612").key(), q("ES:FUT:202703").key());
        assert_ne!(
            q("AAPL:OPT:20261218:200:C").key(),
            q("AAPL:OPT:20261218:200:P").key()
        );
        assert_ne!(q("ESZ6").key(), q("ESH7").key());
        assert_ne!(q("@265598").key(), q("@272093").key());
    }

    #[test]
    fn valid_entries_expire_after_their_ttl() {
        let mut cache = SymbolCache::default();
        let q = SymbolQuery::stock("aapl");
        assert_eq!(cache.lookup(&q, 0), Lookup::Miss);
        cache.record_valid(&q, aapl(), 1_000);
        assert_eq!(cache.lookup(&q, 1_000 + 86_399), Lookup::Valid(&aapl()));
        assert_eq!(cache.lookup(&q, 1_000 + 86_400), Lookup::Miss);
        assert_eq!(cache.by_con_id(265_598), Some(&aapl()));
    }

    #[test]
    fn only_a_definitive_200_is_cached_as_unknown() {
        let mut cache = SymbolCache::default();
        let q = SymbolQuery::stock("NOPE");
        let not_found = RequestError::Api {
            code: 200,
            message: "No security definition has been found for the request.".into(),
            class: ErrorClass::NoSecurityDefinition,
            advice: Advice::Fail,
        };
        for transient in [
            RequestError::Timeout {
                after: Duration::from_secs(30),
            },
            RequestError::ConnectionClosed(ConnectionError::PeerClosed),
            RequestError::Api {
                code: 162,
                message: "Historical Market Data Service error message:Historical data request pacing violation".into(),
                class: ErrorClass::Pacing,
                advice: Advice::RetryWhenPacerAllows,
            },
        ] {
            assert_eq!(
                cache.record_failure(&q, &transient, 0),
                FailureRecord::NotCached
            );
            assert_eq!(cache.lookup(&q, 0), Lookup::Miss, "{transient:?}");
        }
        assert_eq!(
            cache.record_failure(&q, &not_found, 0),
            FailureRecord::CachedAsUnknown
        );
        assert!(matches!(cache.lookup(&q, 3_599), Lookup::Unknown(_)));
        assert_eq!(cache.lookup(&q, 3_600), Lookup::Miss);
    }

    #[test]
    fn the_cache_round_trips_through_json() {
        let mut cache = SymbolCache::default();
        cache.record_valid(&SymbolQuery::stock("AAPL"), aapl(), 5);
        let json = serde_json::to_string(&cache).unwrap();
        let back: SymbolCache = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cache);
        assert_eq!(back.schema_version(), SCHEMA_VERSION);
        let mut purged = back;
        purged.purge_expired(5 + 86_400);
        assert!(purged.is_empty());
    }

    #[test]
    #[cfg(feature = "file-store")]
    fn json_bytes_round_trip_and_other_schemas_are_refused() {
        let mut cache = SymbolCache::new(CacheConfig {
            valid_ttl_secs: 10,
            unknown_ttl_secs: 5,
        });
        let q = SymbolQuery::stock("AAPL");
        cache.record_valid(&q, aapl(), 7);
        let back = SymbolCache::from_json(&cache.to_json()).unwrap();
        assert_eq!(back, cache);
        assert_eq!(back.fetched_at(&q), Some(7));
        assert_eq!(back.config().valid_ttl_secs, 10);

        let newer = String::from_utf8(cache.to_json())
            .unwrap()
            .replace("\"schema_version\": 1", "\"schema_version\": 2");
        assert_eq!(
            SymbolCache::from_json(newer.as_bytes()),
            Err(CacheDecodeError::UnsupportedSchema {
                found: 2,
                supported: SCHEMA_VERSION
            })
        );
        assert!(matches!(
            SymbolCache::from_json(b"{\"entries\": 3}"),
            Err(CacheDecodeError::Malformed(_))
        ));
        assert!(matches!(
            SymbolCache::from_json(b"not json"),
            Err(CacheDecodeError::Malformed(_))
        ));
    }

    #[test]
    fn set_config_changes_the_ttls_of_existing_entries() {
        let mut cache = SymbolCache::default();
        let q = SymbolQuery::stock("AAPL");
        cache.record_valid(&q, aapl(), 0);
        assert_eq!(cache.lookup(&q, 100), Lookup::Valid(&aapl()));
        cache.set_config(CacheConfig {
            valid_ttl_secs: 50,
            unknown_ttl_secs: 50,
        });
        assert_eq!(cache.lookup(&q, 100), Lookup::Miss);
    }

    #[test]
    fn a_valid_symbol_comes_from_contract_details() {
        let contract = Contract {
            con_id: 265_598,
            primary_exchange: "NASDAQ".into(),
            ..Contract::stock("AAPL")
        };
        let details = ContractDetails {
            long_name: "APPLE INC".into(),
            time_zone_id: "US/Eastern".into(),
            ..ContractDetails::default()
        };
        assert_eq!(
            ValidSymbol::from_details(&contract, &details, Some(345_479_400)),
            aapl()
        );
    }
}
