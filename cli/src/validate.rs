//! `ibconn validate SYMBOL…` (contract details and head timestamp through the core's
//! [`SymbolCache`], persisted to a file) and `ibconn head SYMBOL`.
//!
//! The cache rule is the core's: a negative answer is cached only for IB's definitive error 200
//! (no security definition); a connection failure or timeout says nothing about the symbol and
//! is reported as an error, never cached.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ibconn_core::backfill::parse_head_timestamp;
use ibconn_core::client_id::{Purpose, UnixMillis};
use ibconn_core::connection::RequestError;
use ibconn_core::date_format::DateFormat;
use ibconn_core::message::Contract;
use ibconn_core::pool::CallError;
use ibconn_core::query::HeadTimestampQuery;
use ibconn_core::validator::{FailureRecord, Lookup, SymbolCache, SymbolQuery, ValidSymbol};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_tokio::{Error as PoolError, PooledConnection};
use serde::Serialize;

use crate::args::{HeadArgs, ValidateArgs};
use crate::config::Settings;
use crate::session::{self, Session, EMBEDDED_LABEL};
use crate::util::{iso_utc, table, write_atomic};

/// Exit code: a symbol does not exist (IB error 200).
pub(crate) const EXIT_INVALID: u8 = 4;

/// IB's head-timestamp `whatToShow` used by `validate`.
const VALIDATE_WHAT: WhatToShow = WhatToShow::Trades;

/// Why `validate` or `head` could not run at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValidateError {
    /// The cache file exists but cannot be read (exit 1).
    #[error("symbol cache {path}: {source}")]
    CacheRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime could not start (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl ValidateError {
    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        1
    }
}

/// Wall clock, Unix seconds.
fn now_unix() -> i64 {
    UnixMillis::from_system_time(SystemTime::now()).as_unix_secs()
}

/// One symbol's verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SymbolReport {
    /// The symbol, upper-cased.
    pub(crate) symbol: String,
    /// `valid`, `invalid` (IB error 200) or `error` (could not be checked; not cached).
    pub(crate) status: &'static str,
    /// `cache` or `gateway`; absent when the check failed before any answer.
    pub(crate) source: Option<&'static str>,
    /// IB's contract id.
    pub(crate) con_id: Option<i32>,
    /// Descriptive name.
    pub(crate) long_name: Option<String>,
    /// Primary exchange.
    pub(crate) primary_exchange: Option<String>,
    /// Exchange time zone.
    pub(crate) time_zone_id: Option<String>,
    /// Earliest TRADES data point, Unix seconds.
    pub(crate) head_timestamp: Option<i64>,
    /// The same, ISO 8601 UTC.
    pub(crate) head_timestamp_utc: Option<String>,
    /// IB's message (invalid), the failure (error), or a note (head timestamp unavailable).
    pub(crate) message: Option<String>,
}

impl SymbolReport {
    fn valid(symbol: &str, v: &ValidSymbol, source: &'static str, note: Option<String>) -> Self {
        Self {
            symbol: symbol.to_owned(),
            status: "valid",
            source: Some(source),
            con_id: Some(v.con_id),
            long_name: Some(v.long_name.clone()),
            primary_exchange: Some(v.primary_exchange.clone()),
            time_zone_id: Some(v.time_zone_id.clone()),
            head_timestamp: v.head_timestamp,
            head_timestamp_utc: v.head_timestamp.map(iso_utc),
            message: note,
        }
    }

    fn other(
        symbol: &str,
        status: &'static str,
        source: Option<&'static str>,
        msg: String,
    ) -> Self {
        Self {
            symbol: symbol.to_owned(),
            status,
            source,
            con_id: None,
            long_name: None,
            primary_exchange: None,
            time_zone_id: None,
            head_timestamp: None,
            head_timestamp_utc: None,
            message: Some(msg),
        }
    }
}

/// What `validate` prints.
#[derive(Debug, Serialize)]
pub(crate) struct ValidateReport {
    /// `embedded-sim` or the gateway address.
    pub(crate) gateway: String,
    /// The cache file.
    pub(crate) cache: PathBuf,
    /// A problem with the cache file (unreadable content replaced, or not written).
    pub(crate) cache_warning: Option<String>,
    /// One entry per symbol, in the order given.
    pub(crate) symbols: Vec<SymbolReport>,
}

impl ValidateReport {
    /// 1 if any symbol could not be checked, else 4 if any is invalid, else 0.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.symbols.iter().any(|s| s.status == "error") {
            1
        } else if self.symbols.iter().any(|s| s.status == "invalid") {
            EXIT_INVALID
        } else {
            0
        }
    }

    /// A table.
    pub(crate) fn text(&self) -> String {
        let dash = || "-".to_owned();
        let mut rows = vec![[
            "SYMBOL".to_owned(),
            "STATUS".to_owned(),
            "CON_ID".to_owned(),
            "EXCHANGE".to_owned(),
            "DATA SINCE".to_owned(),
            "SOURCE".to_owned(),
            "DETAIL".to_owned(),
        ]];
        for s in &self.symbols {
            rows.push([
                s.symbol.clone(),
                s.status.to_owned(),
                s.con_id.map_or_else(dash, |c| c.to_string()),
                s.primary_exchange.clone().unwrap_or_else(dash),
                s.head_timestamp_utc
                    .as_deref()
                    .and_then(|t| t.get(..10))
                    .map_or_else(dash, str::to_owned),
                s.source.map_or_else(dash, str::to_owned),
                match (&s.long_name, &s.message) {
                    (Some(n), Some(m)) => format!("{n} ({m})"),
                    (Some(n), None) => n.clone(),
                    (None, Some(m)) => m.clone(),
                    (None, None) => String::new(),
                },
            ]);
        }
        table(&rows)
    }
}

/// Read the cache; an absent file is an empty cache, unreadable content is replaced (with a
/// warning), an unreadable file is an error.
fn read_cache(
    path: &Path,
    settings: &Settings,
) -> Result<(SymbolCache, Option<String>), ValidateError> {
    let mut warning = None;
    let mut cache = match std::fs::read(path) {
        Ok(bytes) => match SymbolCache::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                warning = Some(format!("{}: {e}; starting a new cache", path.display()));
                SymbolCache::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SymbolCache::default(),
        Err(source) => {
            return Err(ValidateError::CacheRead {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    cache.set_config(settings.cache_config());
    Ok((cache, warning))
}

/// How a failed request ends up: IB's definitive 200 is `invalid`, anything else `error`.
fn failure(cache: &mut SymbolCache, q: &SymbolQuery, e: &PoolError, now: i64) -> SymbolReport {
    if let PoolError::Call(CallError::Request(re)) = e {
        if cache.record_failure(q, re, now) == FailureRecord::CachedAsUnknown {
            return SymbolReport::other(&q.symbol, "invalid", Some("gateway"), e.to_string());
        }
    }
    SymbolReport::other(&q.symbol, "error", None, e.to_string())
}

/// The head timestamp of `contract`, Unix seconds.
async fn head_timestamp(
    conn: &PooledConnection,
    contract: Contract,
    what: WhatToShow,
    rth: bool,
) -> Result<i64, PoolError> {
    let raw = conn
        .head_timestamp(HeadTimestampQuery {
            contract,
            what_to_show: what,
            use_rth: rth,
            format_date: DateFormat::Epoch,
        })
        .await?;
    parse_head_timestamp(&raw).ok_or(PoolError::UnexpectedAnswer)
}

/// Resolve `--gateway` against the config: `embedded` or absent-without-config → `None`.
pub(crate) fn resolve_gateway(flag: Option<&str>, settings: &Settings) -> Option<String> {
    match flag {
        Some(crate::args::EMBEDDED) => None,
        Some(g) => Some(g.to_owned()),
        None => settings.gateway.clone(),
    }
}

/// `ibconn validate`.
pub(crate) fn validate(
    args: &ValidateArgs,
    settings: &Settings,
) -> Result<ValidateReport, ValidateError> {
    let path = args
        .cache
        .clone()
        .unwrap_or_else(|| settings.validate.cache_file.clone());
    let (mut cache, mut warning) = read_cache(&path, settings)?;
    let gateway = resolve_gateway(args.gateway.as_deref(), settings);
    let rt = session::runtime().map_err(ValidateError::Runtime)?;
    let symbols = rt.block_on(check_all(args, settings, gateway.as_deref(), &mut cache));
    let now = now_unix();
    cache.purge_expired(now);
    if let Err(e) = write_atomic(&path, &cache.to_json()) {
        warning = Some(format!("cannot write {}: {e}", path.display()));
    }
    Ok(ValidateReport {
        gateway: gateway.unwrap_or_else(|| EMBEDDED_LABEL.to_owned()),
        cache: path,
        cache_warning: warning,
        symbols,
    })
}

async fn check_all(
    args: &ValidateArgs,
    settings: &Settings,
    gateway: Option<&str>,
    cache: &mut SymbolCache,
) -> Vec<SymbolReport> {
    let mut out = Vec::new();
    // Connected lazily: a run answered from the cache dials nothing.
    let mut session: Option<Session> = None;
    let mut conn: Option<PooledConnection> = None;
    let mut connect_error: Option<String> = None;
    for symbol in &args.symbols {
        let q = SymbolQuery::stock(symbol);
        let now = now_unix();
        if !args.refresh {
            match cache.lookup(&q, now) {
                Lookup::Valid(v) => {
                    out.push(SymbolReport::valid(&q.symbol, v, "cache", None));
                    continue;
                }
                Lookup::Unknown(m) => {
                    out.push(SymbolReport::other(
                        &q.symbol,
                        "invalid",
                        Some("cache"),
                        m.to_owned(),
                    ));
                    continue;
                }
                Lookup::Miss => {}
            }
        }
        if conn.is_none() && connect_error.is_none() {
            let opened = match session.take() {
                Some(s) => Ok(s),
                None => Session::open(gateway, args.seed, settings, "ibconn validate").await,
            };
            match opened {
                Ok(s) => {
                    match s.acquire(Purpose::Validation).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => connect_error = Some(e.to_string()),
                    }
                    session = Some(s);
                }
                Err(e) => connect_error = Some(e.to_string()),
            }
        }
        let Some(c) = &conn else {
            let why = connect_error.clone().unwrap_or_default();
            out.push(SymbolReport::other(&q.symbol, "error", None, why));
            continue;
        };
        out.push(check_one(c, &q, cache).await);
    }
    drop(conn);
    if let Some(s) = session {
        s.close().await;
    }
    out
}

async fn check_one(
    conn: &PooledConnection,
    q: &SymbolQuery,
    cache: &mut SymbolCache,
) -> SymbolReport {
    let contract = Contract::stock(&q.symbol);
    let found = match conn.contract_details(contract.clone()).await {
        Ok(found) => found,
        Err(e) => return failure(cache, q, &e, now_unix()),
    };
    let Some((c, d)) = found.first() else {
        // IB answers an unknown contract with error 200, never with an empty list.
        return SymbolReport::other(
            &q.symbol,
            "error",
            Some("gateway"),
            "empty contract-details answer".to_owned(),
        );
    };
    // Named as every other command names it (not by conId): pacers key IB's identical-request
    // and per-contract rules by how a request names its contract.
    let (head, note) = match head_timestamp(conn, contract, VALIDATE_WHAT, false).await {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(format!("no head timestamp: {e}"))),
    };
    let mut note = note;
    if found.len() > 1 {
        let extra = format!("{} matches, first shown", found.len());
        note = Some(note.map_or(extra.clone(), |n| format!("{n}; {extra}")));
    }
    let valid = ValidSymbol::from_details(c, d, head);
    cache.record_valid(q, valid.clone(), now_unix());
    SymbolReport::valid(&q.symbol, &valid, "gateway", note)
}

/// What `head` prints.
#[derive(Debug, Serialize)]
pub(crate) struct HeadReport {
    /// `embedded-sim` or the gateway address.
    pub(crate) gateway: String,
    /// The symbol, upper-cased.
    pub(crate) symbol: String,
    /// IB's whatToShow.
    pub(crate) what_to_show: WhatToShow,
    /// Regular trading hours only.
    pub(crate) use_rth: bool,
    /// Earliest data point, Unix seconds.
    pub(crate) head_timestamp: Option<i64>,
    /// The same, ISO 8601 UTC.
    pub(crate) head_timestamp_utc: Option<String>,
    /// Why there is none.
    pub(crate) error: Option<String>,
    /// 0, 4 (no such symbol) or 1.
    #[serde(skip)]
    pub(crate) exit_code: u8,
}

impl HeadReport {
    /// One line.
    pub(crate) fn text(&self) -> String {
        match (&self.head_timestamp_utc, self.head_timestamp, &self.error) {
            (Some(utc), Some(t), _) => format!(
                "{} {}{}: data since {utc} ({t})\n",
                self.symbol,
                self.what_to_show,
                if self.use_rth { " (RTH)" } else { "" }
            ),
            (_, _, Some(e)) => format!("{}: {e}\n", self.symbol),
            _ => format!("{}: no head timestamp\n", self.symbol),
        }
    }
}

/// `ibconn head`.
pub(crate) fn head(args: &HeadArgs, settings: &Settings) -> Result<HeadReport, ValidateError> {
    let gateway = resolve_gateway(args.gateway.as_deref(), settings);
    let symbol = args.symbol.to_ascii_uppercase();
    let rt = session::runtime().map_err(ValidateError::Runtime)?;
    let result: Result<i64, (u8, String)> = rt.block_on(async {
        let session = Session::open(gateway.as_deref(), args.seed, settings, "ibconn head")
            .await
            .map_err(|e| (1, e.to_string()))?;
        let result = async {
            let conn = session
                .acquire(Purpose::Validation)
                .await
                .map_err(|e| (1, e.to_string()))?;
            head_timestamp(&conn, Contract::stock(&symbol), args.what, args.rth)
                .await
                .map_err(|e| match &e {
                    PoolError::Call(CallError::Request(RequestError::Api {
                        code: 200, ..
                    })) => (EXIT_INVALID, e.to_string()),
                    _ => (1, e.to_string()),
                })
        }
        .await;
        session.close().await;
        result
    });
    let (head, error, exit_code) = match result {
        Ok(t) => (Some(t), None, 0),
        Err((code, e)) => (None, Some(e), code),
    };
    Ok(HeadReport {
        gateway: gateway.unwrap_or_else(|| EMBEDDED_LABEL.to_owned()),
        symbol,
        what_to_show: args.what,
        use_rth: args.rth,
        head_timestamp: head,
        head_timestamp_utc: head.map(iso_utc),
        error,
        exit_code,
    })
}
