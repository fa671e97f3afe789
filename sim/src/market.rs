//! The market model: a built-in instrument set (extendable from a TOML or JSON file), listed
//! futures and options generated around the gateway's today ([`derivatives`]), contract lookup
//! with IB's "not found" / "ambiguous" outcomes, contract details, symbol search, trading
//! calendars, and deterministic synthetic bars (see [`crate::bars`]).

use std::collections::BTreeSet;
use std::path::Path;

use ibconn_core::message::{Contract, ContractDescription, ContractDetails};
use ibconn_core::trading_hours::{HoursEntry, TradingHours, WallTime};
use serde::{Deserialize, Serialize};

use crate::calendar::{self, Date, Zone, NEW_YORK, SECS_PER_DAY};

mod derivatives;
pub mod ticks;

pub use derivatives::{FuturesRoot, OptionChain};

/// Which trading calendar and hours an instrument follows. Minutes are New York wall time
/// (docs/ib-facts.md#contracts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hours {
    /// US stocks and ETFs: regular 09:30–16:00, extended 04:00–20:00, NYSE holidays closed.
    #[default]
    UsEquity,
    /// Cash indices: 09:30–16:00 only, NYSE holidays closed.
    Index,
    /// CME equity futures: a trading day runs from 18:00 the evening before to 17:00 (Sunday
    /// 18:00 to Friday 17:00, with the daily 17:00–18:00 break); regular 09:30–16:00; holidays
    /// closed.
    Futures,
    /// FX: 24×5, a trading day from 17:00 the evening before to 17:00 (Sunday 17:00 to Friday
    /// 17:00); holidays open.
    Fx,
    /// US equity options: 09:30–16:00 only, NYSE holidays closed.
    Options,
}

impl Hours {
    /// Sessions of one trading day as `[start, end)` minutes after its local midnight; a
    /// negative start begins the evening before.
    pub fn sessions(self, regular_only: bool) -> &'static [(i32, i32)] {
        match (self, regular_only) {
            (Self::UsEquity | Self::Futures, true) | (Self::Index | Self::Options, _) => {
                &[(570, 960)]
            }
            (Self::UsEquity, false) => &[(240, 1200)],
            (Self::Futures, false) => &[(-360, 1020)],
            (Self::Fx, _) => &[(-420, 1020)],
        }
    }

    fn observes_holidays(self) -> bool {
        !matches!(self, Self::Fx)
    }
}

fn smart() -> String {
    "SMART".into()
}
fn default_tick() -> f64 {
    0.01
}
fn default_volatility() -> f64 {
    0.25
}
fn default_volume() -> f64 {
    50_000.0
}
fn yes() -> bool {
    true
}

/// One simulated instrument. In a file every field but `con_id`, `symbol`, `sec_type`, `currency`,
/// `head_timestamp` and `price` has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// IB contract id.
    pub con_id: i32,
    /// Symbol, e.g. `AAPL`, `EUR`, `ES`.
    pub symbol: String,
    /// `STK`, `CASH`, `FUT`, `IND`, …
    pub sec_type: String,
    /// Routing exchange (default `SMART`).
    #[serde(default = "smart")]
    pub exchange: String,
    /// Primary listing exchange.
    #[serde(default)]
    pub primary_exchange: String,
    /// Currency.
    pub currency: String,
    /// Local symbol, e.g. `ESH7`, `EUR.USD`.
    #[serde(default)]
    pub local_symbol: String,
    /// Trading class.
    #[serde(default)]
    pub trading_class: String,
    /// Expiry or contract month (derivatives).
    #[serde(default)]
    pub last_trade_date_or_contract_month: String,
    /// Strike (options).
    #[serde(default)]
    pub strike: Option<f64>,
    /// Right `C` or `P` (options).
    #[serde(default)]
    pub right: String,
    /// Multiplier (derivatives).
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// Long name, e.g. `APPLE INC`.
    #[serde(default)]
    pub long_name: String,
    /// Minimum price increment.
    #[serde(default = "default_tick")]
    pub min_tick: f64,
    /// Earliest data point, Unix seconds.
    pub head_timestamp: i64,
    /// Typical price level the synthetic path wanders around.
    pub price: f64,
    /// Annualised volatility of the synthetic path.
    #[serde(default = "default_volatility")]
    pub volatility: f64,
    /// Average traded volume per minute (TRADES bars).
    #[serde(default = "default_volume")]
    pub volume_per_minute: f64,
    /// Trading calendar.
    #[serde(default)]
    pub hours: Hours,
    /// Whether the simulated account has market data permissions for it.
    #[serde(default = "yes")]
    pub data_permitted: bool,
    /// Derivative security types listed in symbol samples.
    #[serde(default)]
    pub derivative_sec_types: Vec<String>,
    /// Industry (contract details).
    #[serde(default)]
    pub industry: String,
    /// The underlying's contract id (options; contract details' `underConId`).
    #[serde(default)]
    pub under_con_id: i32,
}

impl Instrument {
    /// The contract as the gateway reports it.
    pub fn contract(&self) -> Contract {
        Contract {
            con_id: self.con_id,
            symbol: self.symbol.clone(),
            sec_type: self.sec_type.clone(),
            last_trade_date_or_contract_month: self.last_trade_date_or_contract_month.clone(),
            strike: self.strike,
            right: self.right.clone(),
            multiplier: self.multiplier,
            exchange: self.exchange.clone(),
            primary_exchange: self.primary_exchange.clone(),
            currency: self.currency.clone(),
            local_symbol: if self.local_symbol.is_empty() {
                self.symbol.clone()
            } else {
                self.local_symbol.clone()
            },
            trading_class: if self.trading_class.is_empty() {
                self.symbol.clone()
            } else {
                self.trading_class.clone()
            },
            last_trade_date: if self.is_dated() {
                self.last_trade_date_or_contract_month.clone()
            } else {
                String::new()
            },
            ..Contract::default()
        }
    }

    /// Whether the instrument expires (a future or option with a last trade date).
    fn is_dated(&self) -> bool {
        matches!(self.sec_type.as_str(), "FUT" | "OPT")
            && self.last_trade_date_or_contract_month.len() == 8
    }

    /// End of trading (Unix seconds): New York midnight after the last trade date; `None` for
    /// an instrument that does not expire. No bars start after it.
    pub fn trading_end(&self) -> Option<i64> {
        if !self.is_dated() {
            return None;
        }
        let date = calendar::parse_end_date(&self.last_trade_date_or_contract_month, Zone::Utc)
            .ok()?
            .div_euclid(SECS_PER_DAY);
        Some(Zone::Us(NEW_YORK).to_utc(date * SECS_PER_DAY))
    }

    /// Exchanges the instrument can be requested on.
    pub fn valid_exchanges(&self) -> Vec<&str> {
        let mut out = vec![self.exchange.as_str()];
        if !self.primary_exchange.is_empty() && self.primary_exchange != self.exchange {
            out.push(self.primary_exchange.as_str());
        }
        out
    }

    /// Whether `c` (a request's contract) describes this instrument.
    pub fn matches(&self, c: &Contract) -> bool {
        if c.con_id != 0 {
            return c.con_id == self.con_id;
        }
        let opt_eq = |want: &str, have: &str| want.is_empty() || want.eq_ignore_ascii_case(have);
        // A symbol, or a local symbol alone (IB's way to name `ESZ6`).
        let named = if c.symbol.is_empty() {
            !c.local_symbol.is_empty()
        } else {
            c.symbol.eq_ignore_ascii_case(&self.symbol)
        };
        // `C`/`CALL`, `P`/`PUT`.
        let right_ok = c.right.is_empty()
            || c.right
                .get(..1)
                .is_some_and(|r| r.eq_ignore_ascii_case(&self.right));
        named
            && right_ok
            // A strike of 0 is unset, as IB reads it (ib_async sends 0.0 for every stock).
            && c.strike
                .filter(|k| *k != 0.0)
                .is_none_or(|k| self.strike.is_some_and(|s| (s - k).abs() < 1e-6))
            && opt_eq(&c.sec_type, &self.sec_type)
            && opt_eq(&c.currency, &self.currency)
            && opt_eq(&c.primary_exchange, &self.primary_exchange)
            && (c.exchange.is_empty()
                || self
                    .valid_exchanges()
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(&c.exchange)))
            && self
                .last_trade_date_or_contract_month
                .starts_with(c.last_trade_date_or_contract_month.as_str())
            && (c.local_symbol.is_empty()
                || c.local_symbol
                    .eq_ignore_ascii_case(&self.contract().local_symbol))
            && (c.trading_class.is_empty()
                || c.trading_class
                    .eq_ignore_ascii_case(&self.contract().trading_class))
            && c.multiplier.is_none_or(|m| Some(m) == self.multiplier)
    }

    /// The text IB puts after "No market data permissions for", e.g. `NYSE STK`.
    pub fn permission_scope(&self) -> String {
        let venue = if self.primary_exchange.is_empty() {
            &self.exchange
        } else {
            &self.primary_exchange
        };
        format!("{venue} {}", self.sec_type)
    }
}

/// Outcome of resolving a request contract to exactly one instrument.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Exactly one match.
    Found(Box<Instrument>),
    /// No match: IB error 200 "No security definition has been found for the request."
    NotFound,
    /// Several matches: IB error 200 "The contract description specified for X is ambiguous".
    Ambiguous,
}

/// Why an instrument file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarketError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML / JSON for an instrument list.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// A holiday is not `YYYYMMDD`.
    #[error("bad holiday {0:?} (expected YYYYMMDD)")]
    Holiday(String),
    /// An option chain whose strikes cannot be numbered (more than 31 each side, or a step
    /// that is not positive).
    #[error("option chain on {0}: strikes_each_side must be at most 31 and strike_step positive")]
    Chain(String),
}

/// The shape of an `--instruments` file (TOML: `[[instruments]]`, `[[futures]]` and
/// `[[option_chains]]` tables and `holidays = [...]`; JSON: `{"instruments": [...], "futures":
/// [...], "option_chains": [...], "holidays": [...]}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentFile {
    /// Instruments to add; one with an existing `con_id` replaces the built-in.
    #[serde(default)]
    pub instruments: Vec<Instrument>,
    /// Futures roots whose quarterly contracts are listed around the gateway's today; one with
    /// an existing root symbol replaces the built-in.
    #[serde(default)]
    pub futures: Vec<FuturesRoot>,
    /// Option chains listed around the gateway's today; one on an existing underlying replaces
    /// the built-in.
    #[serde(default)]
    pub option_chains: Vec<OptionChain>,
    /// Extra exchange closures, `YYYYMMDD`.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// The built-in instruments (an instrument file; a test checks that it loads whole).
const BUILTIN_INSTRUMENTS: &str = include_str!("../data/instruments.toml");

/// The instrument set and trading calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct Market {
    instruments: Vec<Instrument>,
    futures: Vec<FuturesRoot>,
    option_chains: Vec<OptionChain>,
    extra_holidays: BTreeSet<i64>,
}

impl Default for Market {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Market {
    /// An empty market (no instruments).
    pub fn empty() -> Self {
        Self {
            instruments: Vec::new(),
            futures: Vec::new(),
            option_chains: Vec::new(),
            extra_holidays: BTreeSet::new(),
        }
    }

    /// The built-in set: `sim/data/instruments.toml` (stocks, forex, indices, the ES and NQ
    /// futures roots, AAPL and SPY option chains), compiled in and read through the same path
    /// as an `--instruments` file.
    pub fn builtin() -> Self {
        let mut market = Self::empty();
        match toml::from_str::<InstrumentFile>(BUILTIN_INSTRUMENTS) {
            Ok(file) => {
                if let Err(e) = market.extend(file) {
                    tracing::error!(%e, "the built-in instrument file is invalid");
                }
            }
            Err(e) => tracing::error!(%e, "the built-in instrument file does not parse"),
        }
        market
    }

    /// The file's instruments, in a stable order (listed derivatives: [`Market::listed`]).
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// The futures roots.
    pub fn futures_roots(&self) -> &[FuturesRoot] {
        &self.futures
    }

    /// The option chains.
    pub fn option_chains(&self) -> &[OptionChain] {
        &self.option_chains
    }

    /// Add an instrument, replacing one with the same con id.
    pub fn insert(&mut self, inst: Instrument) {
        match self
            .instruments
            .iter_mut()
            .find(|i| i.con_id == inst.con_id)
        {
            Some(slot) => *slot = inst,
            None => self.instruments.push(inst),
        }
    }

    /// Add a closure day (besides the NYSE rules).
    pub fn add_holiday(&mut self, date: Date) {
        self.extra_holidays.insert(date.days());
    }

    /// Merge an instrument file's contents.
    pub fn extend(&mut self, file: InstrumentFile) -> Result<(), MarketError> {
        for h in &file.holidays {
            let bad = || MarketError::Holiday(h.clone());
            let end = calendar::parse_end_date(h, Zone::Utc).map_err(|_| bad())?;
            if h.len() != 8 {
                return Err(bad());
            }
            self.extra_holidays.insert(end.div_euclid(SECS_PER_DAY) - 1);
        }
        for chain in &file.option_chains {
            chain.check()?;
        }
        for inst in file.instruments {
            self.insert(inst);
        }
        for root in file.futures {
            self.futures.retain(|r| r.symbol != root.symbol);
            self.futures.push(root);
        }
        for chain in file.option_chains {
            self.option_chains
                .retain(|c| c.underlying != chain.underlying);
            self.option_chains.push(chain);
        }
        Ok(())
    }

    /// Built-ins plus a TOML (`.toml`) or JSON (anything else) file.
    pub fn builtin_with_file(path: &Path) -> Result<Self, MarketError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MarketError::Io {
            path: name.clone(),
            source,
        })?;
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let file: InstrumentFile = if is_toml {
            toml::from_str(&text).map_err(|e| MarketError::Parse {
                path: name.clone(),
                reason: e.to_string(),
            })?
        } else {
            serde_json::from_str(&text).map_err(|e| MarketError::Parse {
                path: name.clone(),
                reason: e.to_string(),
            })?
        };
        let mut market = Self::builtin();
        market.extend(file)?;
        Ok(market)
    }

    /// Every instrument `c` describes at `now` (Unix seconds; contract-details semantics):
    /// the file's, then the derivatives listed then.
    pub fn find_all(&self, c: &Contract, now: i64) -> Vec<Instrument> {
        let mut found: Vec<Instrument> = self
            .instruments
            .iter()
            .filter(|i| i.matches(c))
            .cloned()
            .collect();
        found.extend(
            self.listed_for(c, now, false)
                .into_iter()
                .filter(|i| i.matches(c)),
        );
        found
    }

    /// Resolve `c` to one instrument at `now` (historical-data semantics).
    pub fn resolve(&self, c: &Contract, now: i64) -> Lookup {
        let mut found = self.find_all(c, now);
        match found.len() {
            0 => Lookup::NotFound,
            1 => Lookup::Found(Box::new(found.remove(0))),
            _ => Lookup::Ambiguous,
        }
    }

    /// The instrument with contract id `con_id` at `now`, listed derivatives included.
    pub fn by_con_id(&self, con_id: i32, now: i64) -> Option<Instrument> {
        // The listed instruments first: a stream looks its instrument up at every emission, and
        // listing every derivative to find a stock cost more than serving the stream.
        if let Some(i) = self.instruments.iter().find(|i| i.con_id == con_id) {
            return Some(i.clone());
        }
        let c = Contract {
            con_id,
            ..Contract::default()
        };
        self.find_all(&c, now).into_iter().next()
    }

    /// Symbol search: symbols starting with `pattern` first, then long names containing it
    /// (case-insensitive), at most 16 like IB.
    pub fn matching_symbols(&self, pattern: &str) -> Vec<ContractDescription> {
        let p = pattern.trim().to_ascii_uppercase();
        if p.is_empty() {
            return Vec::new();
        }
        let by_symbol = self
            .instruments
            .iter()
            .filter(|i| i.symbol.to_ascii_uppercase().starts_with(&p));
        let by_name = self.instruments.iter().filter(|i| {
            !i.symbol.to_ascii_uppercase().starts_with(&p)
                && i.long_name.to_ascii_uppercase().contains(&p)
        });
        let mut seen = BTreeSet::new();
        by_symbol
            .chain(by_name)
            .filter(|i| i.sec_type != "FUT" && seen.insert((i.symbol.clone(), i.sec_type.clone())))
            .take(16)
            .map(|i| ContractDescription {
                contract: Contract {
                    con_id: i.con_id,
                    symbol: i.symbol.clone(),
                    sec_type: i.sec_type.clone(),
                    primary_exchange: i.primary_exchange.clone(),
                    currency: i.currency.clone(),
                    description: i.long_name.clone(),
                    ..Contract::default()
                },
                derivative_sec_types: i.derivative_sec_types.clone(),
            })
            .collect()
    }

    /// Whether `day` (a New York date as a day number) is a NYSE or configured holiday.
    pub fn is_holiday(&self, day: i64) -> bool {
        calendar::is_nyse_holiday(day) || self.extra_holidays.contains(&day)
    }

    /// Whether the instrument trades on `day` (a New York date as a day number).
    pub fn is_trading_day(&self, inst: &Instrument, day: i64) -> bool {
        let holiday = inst.hours.observes_holidays() && self.is_holiday(day);
        !calendar::is_weekend(day) && !holiday
    }

    /// The sessions of `day` (New York date) as UTC `[start, end)` pairs; empty if closed.
    pub fn sessions(&self, inst: &Instrument, day: i64, regular_only: bool) -> Vec<(i64, i64)> {
        if !self.is_trading_day(inst, day) {
            return Vec::new();
        }
        let ny = Zone::Us(NEW_YORK);
        inst.hours
            .sessions(regular_only)
            .iter()
            .map(|&(a, b)| {
                let base = day * SECS_PER_DAY;
                (
                    ny.to_utc(base + i64::from(a) * 60),
                    ny.to_utc(base + i64::from(b) * 60),
                )
            })
            .collect()
    }

    /// Contract details as the gateway answers `reqContractDetails`; trading and liquid hours
    /// cover the week starting at `now` (Unix seconds).
    pub fn contract_details(&self, inst: &Instrument, now: i64) -> (Contract, ContractDetails) {
        let contract = inst.contract();
        let details = ContractDetails {
            market_name: contract.trading_class.clone(),
            min_tick: inst.min_tick,
            order_types: "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,GTC,LIT,LMT,MIT,MKT,MTL,REL,STP,STPLMT,TRAIL,TRAILLIMIT".into(),
            valid_exchanges: inst.valid_exchanges().join(","),
            price_magnifier: 1,
            long_name: inst.long_name.clone(),
            contract_month: if inst.is_dated() {
                inst.last_trade_date_or_contract_month.chars().take(6).collect()
            } else {
                String::new()
            },
            industry: inst.industry.clone(),
            time_zone_id: "US/Eastern".into(),
            trading_hours: self.hours_text(inst, now, false),
            liquid_hours: self.hours_text(inst, now, true),
            market_rule_ids: "26".into(),
            stock_type: if inst.sec_type == "STK" { "COMMON".into() } else { String::new() },
            min_size: "1".into(),
            size_increment: "1".into(),
            suggested_size_increment: "1".into(),
            under_con_id: inst.under_con_id,
            under_symbol: if inst.under_con_id != 0 { inst.symbol.clone() } else { String::new() },
            under_sec_type: if inst.under_con_id != 0 { "STK".into() } else { String::new() },
            real_expiration_date: if inst.is_dated() {
                inst.last_trade_date_or_contract_month.clone()
            } else {
                String::new()
            },
            ..ContractDetails::default()
        };
        (contract, details)
    }

    /// IB's `YYYYMMDD:HHMM-YYYYMMDD:HHMM;YYYYMMDD:CLOSED` list for seven days from `now`, in New
    /// York wall time (written by core's [`TradingHours`], which clients parse it with).
    fn hours_text(&self, inst: &Instrument, now: i64, regular_only: bool) -> String {
        let ny = Zone::Us(NEW_YORK);
        let today = ny.to_local(now).div_euclid(SECS_PER_DAY);
        let wall = |t: i64| {
            let local = ny.to_local(t);
            WallTime {
                date: Date::from_days(local.div_euclid(SECS_PER_DAY)),
                minute: u16::try_from(local.rem_euclid(SECS_PER_DAY) / 60).unwrap_or(0),
            }
        };
        let mut entries = Vec::new();
        for day in today..today + 7 {
            let sessions = self.sessions(inst, day, regular_only);
            // A closed day on which the next day's session opens (Sunday evening for futures
            // and FX) is not listed as closed, as IB lists it.
            let next_opens_today = self
                .sessions(inst, day + 1, regular_only)
                .first()
                .is_some_and(|&(open, _)| wall(open).date == Date::from_days(day));
            if sessions.is_empty() && !next_opens_today {
                entries.push(HoursEntry::Closed(Date::from_days(day)));
            }
            for (a, b) in sessions {
                entries.push(HoursEntry::Session {
                    start: wall(a),
                    end: wall(b),
                });
            }
        }
        TradingHours { entries }.to_string()
    }
}

#[cfg(test)]
mod tests;
