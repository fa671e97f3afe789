//! `ibconn validate SYMBOL…` (contract details and head timestamp through the core's
//! [`SymbolCache`], persisted to a file) and `ibconn head SYMBOL`; SYMBOL is the contract syntax
//! of [`crate::contract`].
//!
//! The cache rule is the core's: a negative answer is cached only for IB's definitive error 200
//! (no security definition); a connection failure or timeout says nothing about the symbol and
//! is reported as an error, never cached. A contract that matches several is never guessed at:
//! `validate` lists the candidates (status `ambiguous`, exit 2) and caches nothing.

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
use crate::contract::{self, Candidate};
use crate::session::{self, Session, EMBEDDED_LABEL};
use crate::util::{iso_utc, table, write_atomic};

/// Exit code: a symbol does not exist (IB error 200).
pub(crate) const EXIT_INVALID: u8 = 4;

/// Exit code: a contract matches several (usage: name one).
pub(crate) const EXIT_AMBIGUOUS: u8 = 2;

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
    /// A contract's overrides cannot apply (exit 2).
    #[error(transparent)]
    Contract(#[from] contract::ContractError),
}

impl ValidateError {
    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Contract(_) => 2,
            Self::CacheRead { .. } | Self::Runtime(_) => 1,
        }
    }
}

/// Wall clock, Unix seconds.
fn now_unix() -> i64 {
    UnixMillis::from_system_time(SystemTime::now()).as_unix_secs()
}

/// One symbol's verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SymbolReport {
    /// The contract in its canonical syntax, e.g. `AAPL`, `ES:FUT:202612`.
    pub(crate) symbol: String,
    /// `valid`, `invalid` (IB error 200), `ambiguous` (several match: see `candidates`) or
    /// `error` (could not be checked; not cached).
    pub(crate) status: &'static str,
    /// `cache` or `gateway`; absent when the check failed before any answer.
    pub(crate) source: Option<&'static str>,
    /// IB's contract id.
    pub(crate) con_id: Option<i32>,
    /// Descriptive name.
    pub(crate) long_name: Option<String>,
    /// Primary exchange.
    pub(crate) primary_exchange: Option<String>,
    /// The exchange IB answered with (`SMART`, `IDEALPRO`, `CME`, …).
    pub(crate) exchange: Option<String>,
    /// Exchange time zone.
    pub(crate) time_zone_id: Option<String>,
    /// Earliest TRADES data point, Unix seconds.
    pub(crate) head_timestamp: Option<i64>,
    /// The same, ISO 8601 UTC.
    pub(crate) head_timestamp_utc: Option<String>,
    /// IB's message (invalid), the failure (error), or a note (head timestamp unavailable).
    pub(crate) message: Option<String>,
    /// IB's local symbol, for anything but a stock (e.g. `ESZ6`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) local_symbol: Option<String>,
    /// The contracts an ambiguous one matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) candidates: Vec<Candidate>,
    /// For an invalid bare symbol: the specs IB's symbol search knows it as (`SPX:IND`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hint: Option<String>,
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
            exchange: Some(v.exchange.clone()).filter(|e| !e.is_empty()),
            time_zone_id: Some(v.time_zone_id.clone()),
            head_timestamp: v.head_timestamp,
            head_timestamp_utc: v.head_timestamp.map(iso_utc),
            message: note,
            // Unless the name already says it (`ESZ6`, `EUR.USD`, `SPX:IND`).
            local_symbol: (!v.local_symbol.is_empty()
                && symbol.split(':').next() != Some(v.local_symbol.as_str()))
            .then(|| v.local_symbol.clone()),
            candidates: Vec::new(),
            hint: None,
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
            exchange: None,
            time_zone_id: None,
            head_timestamp: None,
            head_timestamp_utc: None,
            message: Some(msg),
            local_symbol: None,
            candidates: Vec::new(),
            hint: None,
        }
    }

    fn ambiguous(symbol: &str, candidates: Vec<Candidate>) -> Self {
        let msg = format!(
            "{} contracts match; name one (expiry, local symbol or @con_id)",
            candidates.len()
        );
        Self {
            candidates,
            ..Self::other(symbol, "ambiguous", Some("gateway"), msg)
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
    /// 1 if any symbol could not be checked, else 2 if any is ambiguous, else 4 if any is
    /// invalid, else 0.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.symbols.iter().any(|s| s.status == "error") {
            1
        } else if self.symbols.iter().any(|s| s.status == "ambiguous") {
            EXIT_AMBIGUOUS
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
                s.primary_exchange
                    .clone()
                    .filter(|p| !p.is_empty())
                    .or_else(|| s.exchange.clone())
                    .unwrap_or_else(dash),
                s.head_timestamp_utc
                    .as_deref()
                    .and_then(|t| t.get(..10))
                    .map_or_else(dash, str::to_owned),
                s.source.map_or_else(dash, str::to_owned),
                match (&s.long_name, &s.message, &s.local_symbol) {
                    (Some(n), Some(m), _) => format!("{n} ({m})"),
                    (Some(n), None, Some(l)) => format!("{n} [{l}]"),
                    (Some(n), None, None) => n.clone(),
                    (None, Some(m), _) => m.clone(),
                    (None, None, _) => String::new(),
                },
            ]);
        }
        let mut out = table(&rows);
        for s in &self.symbols {
            if let Some(hint) = &s.hint {
                out.push_str(&format!("{}: {hint}\n", s.symbol));
            }
        }
        for s in self.symbols.iter().filter(|s| !s.candidates.is_empty()) {
            out.push_str(&format!(
                "\n{} is ambiguous: {} contracts match; name one:\n{}",
                s.symbol,
                s.candidates.len(),
                contract::candidates_table(&s.candidates)
            ));
        }
        out
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
fn failure(
    cache: &mut SymbolCache,
    name: &str,
    q: &SymbolQuery,
    e: &PoolError,
    now: i64,
) -> SymbolReport {
    if let PoolError::Call(CallError::Request(re)) = e {
        if cache.record_failure(q, re, now) == FailureRecord::CachedAsUnknown {
            return SymbolReport::other(name, "invalid", Some("gateway"), e.to_string());
        }
    }
    SymbolReport::other(name, "error", None, e.to_string())
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

/// Resolve `--gateway` against the config: `embedded` (flag or `gateway = "embedded"`) or
/// absent in both → `None`, the embedded simulator.
pub(crate) fn resolve_gateway(flag: Option<&str>, settings: &Settings) -> Option<String> {
    match flag {
        Some(crate::args::EMBEDDED) => None,
        Some(g) => Some(g.to_owned()),
        None => settings.real_gateway(),
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
    // Every contract resolves (overrides included) before anything is asked or read.
    let contracts = args
        .symbols
        .iter()
        .map(|spec| Ok((spec.to_string(), contract::resolve(spec, &args.contract)?)))
        .collect::<Result<Vec<_>, contract::ContractError>>()?;
    let (mut cache, mut warning) = read_cache(&path, settings)?;
    let gateway = resolve_gateway(args.gateway.as_deref(), settings);
    let rt = session::runtime().map_err(ValidateError::Runtime)?;
    let symbols = rt.block_on(check_all(
        args,
        &contracts,
        settings,
        gateway.as_deref(),
        &mut cache,
    ));
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
    contracts: &[(String, Contract)],
    settings: &Settings,
    gateway: Option<&str>,
    cache: &mut SymbolCache,
) -> Vec<SymbolReport> {
    let mut out = Vec::new();
    // Connected lazily: a run answered from the cache dials nothing.
    let mut session: Option<Session> = None;
    let mut conn: Option<PooledConnection> = None;
    let mut connect_error: Option<String> = None;
    for (name, contract) in contracts {
        let q = SymbolQuery::from_contract(contract);
        let now = now_unix();
        if !args.refresh {
            match cache.lookup(&q, now) {
                Lookup::Valid(v) => {
                    out.push(SymbolReport::valid(name, v, "cache", None));
                    continue;
                }
                Lookup::Unknown(m) => {
                    out.push(SymbolReport::other(
                        name,
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
            out.push(SymbolReport::other(name, "error", None, why));
            continue;
        };
        out.push(check_one(c, name, contract, &q, cache).await);
    }
    drop(conn);
    if let Some(s) = session {
        s.close().await;
    }
    out
}

async fn check_one(
    conn: &PooledConnection,
    name: &str,
    contract: &Contract,
    q: &SymbolQuery,
    cache: &mut SymbolCache,
) -> SymbolReport {
    let found = match conn.contract_details(contract.clone()).await {
        Ok(found) => found,
        Err(e) => {
            let mut report = failure(cache, name, q, &e, now_unix());
            if report.status == "invalid" {
                // IB's symbol search may know the name as another type (an index, a pair).
                if let Ok(matches) = conn.matching_symbols(&contract.symbol).await {
                    let specs = contract::alternatives(contract, &matches);
                    if !specs.is_empty() {
                        report.hint = Some(format!("did you mean {}?", specs.join(" or ")));
                    }
                }
            }
            return report;
        }
    };
    let (c, d) = match found.as_slice() {
        // IB answers an unknown contract with error 200, never with an empty list.
        [] => {
            let why = "empty contract-details answer".to_owned();
            return SymbolReport::other(name, "error", Some("gateway"), why);
        }
        [one] => one,
        several => {
            let candidates = several
                .iter()
                .map(|(c, d)| Candidate::from_details(c, d))
                .collect();
            return SymbolReport::ambiguous(name, candidates);
        }
    };
    // Named as every other command names it (not by conId): pacers key IB's identical-request
    // and per-contract rules by how a request names its contract. The series is the type's
    // default (IB has no TRADES for forex).
    let what = WhatToShow::default_for(&c.sec_type);
    let (head, note) = match head_timestamp(conn, contract.clone(), what, false).await {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(format!("no head timestamp: {e}"))),
    };
    let valid = ValidSymbol::from_details(c, d, head);
    cache.record_valid(q, valid.clone(), now_unix());
    SymbolReport::valid(name, &valid, "gateway", note)
}

/// What `head` prints.
#[derive(Debug, Serialize)]
pub(crate) struct HeadReport {
    /// `embedded-sim` or the gateway address.
    pub(crate) gateway: String,
    /// The contract in its canonical syntax.
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
    /// 0, 4 (no such symbol), 2 (not one contract, or a series IB lacks for it) or 1.
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
    let symbol = args.symbol.to_string();
    let (contract, what) = match contract::for_bars(&args.symbol, &args.contract, args.what) {
        Ok(found) => found,
        Err(e) => {
            return Ok(HeadReport {
                gateway: gateway.unwrap_or_else(|| EMBEDDED_LABEL.to_owned()),
                symbol,
                what_to_show: args.what.unwrap_or(WhatToShow::Trades),
                use_rth: args.rth,
                head_timestamp: None,
                head_timestamp_utc: None,
                error: Some(e.to_string()),
                exit_code: EXIT_AMBIGUOUS,
            })
        }
    };
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
            head_timestamp(&conn, contract, what, args.rth)
                .await
                .map_err(|e| match &e {
                    // Several contracts match: name one (`validate` lists them).
                    PoolError::Call(CallError::Request(RequestError::Api {
                        code: 200,
                        message,
                        ..
                    })) if message.contains("ambiguous") => (
                        EXIT_AMBIGUOUS,
                        format!("{e}; `ibconn validate {symbol}` lists the candidates"),
                    ),
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
        what_to_show: what,
        use_rth: args.rth,
        head_timestamp: head,
        head_timestamp_utc: head.map(iso_utc),
        error,
        exit_code,
    })
}
