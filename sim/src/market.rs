//! The market model: a built-in instrument set (extendable from a TOML or JSON file), contract
//! lookup with IB's "not found" / "ambiguous" outcomes, contract details, symbol search, trading
//! calendars, and deterministic synthetic bars (see [`crate::bars`]).

use std::collections::BTreeSet;
use std::path::Path;

use ibconn_core::message::{Contract, ContractDescription, ContractDetails};
use serde::{Deserialize, Serialize};

use crate::calendar::{self, utc, Date, Zone, NEW_YORK, SECS_PER_DAY};

/// Which trading calendar and hours an instrument follows. Minutes are New York wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hours {
    /// US stocks and ETFs: regular 09:30–16:00, extended 04:00–20:00, NYSE holidays closed.
    #[default]
    UsEquity,
    /// Cash indices: 09:30–16:00 only, NYSE holidays closed.
    Index,
    /// CME equity futures: regular 09:30–16:00, extended 00:00–17:00 and 18:00–24:00, holidays closed.
    Futures,
    /// FX: all day on weekdays, holidays open.
    Fx,
}

impl Hours {
    /// Sessions of one trading day as `[start, end)` minutes after local midnight.
    pub fn sessions(self, regular_only: bool) -> &'static [(u32, u32)] {
        match (self, regular_only) {
            (Self::UsEquity, true) | (Self::Index, _) | (Self::Futures, true) => &[(570, 960)],
            (Self::UsEquity, false) => &[(240, 1200)],
            (Self::Futures, false) => &[(0, 1020), (1080, 1440)],
            (Self::Fx, _) => &[(0, 1440)],
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
}

impl Instrument {
    /// The contract as the gateway reports it.
    pub fn contract(&self) -> Contract {
        Contract {
            con_id: self.con_id,
            symbol: self.symbol.clone(),
            sec_type: self.sec_type.clone(),
            last_trade_date_or_contract_month: self.last_trade_date_or_contract_month.clone(),
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
            last_trade_date: if self.sec_type == "FUT" {
                self.last_trade_date_or_contract_month.clone()
            } else {
                String::new()
            },
            ..Contract::default()
        }
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
        !c.symbol.is_empty()
            && c.symbol.eq_ignore_ascii_case(&self.symbol)
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
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookup<'a> {
    /// Exactly one match.
    Found(&'a Instrument),
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
}

/// The shape of an `--instruments` file (TOML: `[[instruments]]` tables and `holidays = [...]`;
/// JSON: `{"instruments": [...], "holidays": [...]}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentFile {
    /// Instruments to add; one with an existing `con_id` replaces the built-in.
    #[serde(default)]
    pub instruments: Vec<Instrument>,
    /// Extra exchange closures, `YYYYMMDD`.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// The instrument set and trading calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct Market {
    instruments: Vec<Instrument>,
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
            extra_holidays: BTreeSet::new(),
        }
    }

    /// The built-in set of 22 instruments.
    pub fn builtin() -> Self {
        Self {
            instruments: builtin_instruments(),
            extra_holidays: BTreeSet::new(),
        }
    }

    /// All instruments, in a stable order.
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
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
        for inst in file.instruments {
            self.insert(inst);
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

    /// Every instrument `c` describes (contract-details semantics).
    pub fn find_all(&self, c: &Contract) -> Vec<&Instrument> {
        self.instruments.iter().filter(|i| i.matches(c)).collect()
    }

    /// Resolve `c` to one instrument (historical-data semantics).
    pub fn resolve(&self, c: &Contract) -> Lookup<'_> {
        let mut found = self.instruments.iter().filter(|i| i.matches(c));
        match (found.next(), found.next()) {
            (Some(i), None) => Lookup::Found(i),
            (None, _) => Lookup::NotFound,
            (Some(_), Some(_)) => Lookup::Ambiguous,
        }
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

    /// Whether the instrument trades on `day` (a New York date as a day number).
    pub fn is_trading_day(&self, inst: &Instrument, day: i64) -> bool {
        !calendar::is_weekend(day)
            && !(inst.hours.observes_holidays()
                && (calendar::is_nyse_holiday(day) || self.extra_holidays.contains(&day)))
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
            contract_month: if inst.sec_type == "FUT" {
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
            under_con_id: 0,
            ..ContractDetails::default()
        };
        (contract, details)
    }

    /// IB's `YYYYMMDD:HHMM-YYYYMMDD:HHMM;YYYYMMDD:CLOSED` list for seven days from `now`.
    fn hours_text(&self, inst: &Instrument, now: i64, regular_only: bool) -> String {
        let ny = Zone::Us(NEW_YORK);
        let today = ny.to_local(now).div_euclid(SECS_PER_DAY);
        let stamp = |t: i64| {
            let local = ny.to_local(t);
            let d = Date::from_days(local.div_euclid(SECS_PER_DAY));
            let s = local.rem_euclid(SECS_PER_DAY);
            format!("{}:{:02}{:02}", d.yyyymmdd(), s / 3600, (s / 60) % 60)
        };
        let mut parts = Vec::new();
        for day in today..today + 7 {
            let sessions = self.sessions(inst, day, regular_only);
            if sessions.is_empty() {
                parts.push(format!("{}:CLOSED", Date::from_days(day).yyyymmdd()));
            }
            for (a, b) in sessions {
                parts.push(format!("{}-{}", stamp(a), stamp(b)));
            }
        }
        parts.join(";")
    }
}

#[allow(clippy::too_many_arguments)]
fn inst(
    con_id: i32,
    symbol: &str,
    sec_type: &str,
    exchange: &str,
    primary: &str,
    currency: &str,
    long_name: &str,
    head: i64,
    price: f64,
) -> Instrument {
    let (hours, tick, derivs): (Hours, f64, &[&str]) = match sec_type {
        "CASH" => (Hours::Fx, 0.00005, &[]),
        "FUT" => (Hours::Futures, 0.25, &["FOP"]),
        "IND" => (Hours::Index, 0.01, &["OPT", "FUT"]),
        _ => (Hours::UsEquity, 0.01, &["OPT", "WAR", "CFD", "IOPT"]),
    };
    Instrument {
        con_id,
        symbol: symbol.into(),
        sec_type: sec_type.into(),
        exchange: exchange.into(),
        primary_exchange: primary.into(),
        currency: currency.into(),
        local_symbol: String::new(),
        trading_class: String::new(),
        last_trade_date_or_contract_month: String::new(),
        multiplier: None,
        long_name: long_name.into(),
        min_tick: tick,
        head_timestamp: head,
        price,
        volatility: 0.25,
        volume_per_minute: 50_000.0,
        hours,
        data_permitted: true,
        derivative_sec_types: derivs.iter().map(|s| (*s).to_owned()).collect(),
        industry: String::new(),
    }
}

/// 09:30 New York on a date, as IB's head timestamps for US stocks are.
fn ny_open(y: i32, m: u32, d: u32) -> i64 {
    Zone::Us(NEW_YORK).to_utc(Date::new(y, m, d).days() * SECS_PER_DAY + 34_200)
}

fn builtin_instruments() -> Vec<Instrument> {
    let stk = |con, sym, primary, name, head, price| {
        let mut i = inst(con, sym, "STK", "SMART", primary, "USD", name, head, price);
        i.industry = "Technology".into();
        i
    };
    let mut out = vec![
        stk(265_598, "AAPL", "NASDAQ", "APPLE INC", 345_479_400, 190.0),
        stk(
            272_093,
            "MSFT",
            "NASDAQ",
            "MICROSOFT CORP",
            ny_open(1986, 3, 13),
            420.0,
        ),
        stk(
            756_733,
            "SPY",
            "ARCA",
            "SPDR S&P 500 ETF TRUST",
            ny_open(1993, 1, 29),
            580.0,
        ),
        stk(
            320_227_571,
            "QQQ",
            "NASDAQ",
            "INVESCO QQQ TRUST SERIES 1",
            ny_open(1999, 3, 10),
            500.0,
        ),
        stk(
            3_691_937,
            "AMZN",
            "NASDAQ",
            "AMAZON.COM INC",
            ny_open(1997, 5, 15),
            200.0,
        ),
        stk(
            208_813_719,
            "GOOGL",
            "NASDAQ",
            "ALPHABET INC-CL A",
            ny_open(2004, 8, 19),
            170.0,
        ),
        stk(
            107_113_386,
            "META",
            "NASDAQ",
            "META PLATFORMS INC-CLASS A",
            ny_open(2012, 5, 18),
            560.0,
        ),
        stk(
            4_815_747,
            "NVDA",
            "NASDAQ",
            "NVIDIA CORP",
            ny_open(1999, 1, 22),
            130.0,
        ),
        stk(
            76_792_991,
            "TSLA",
            "NASDAQ",
            "TESLA INC",
            ny_open(2010, 6, 29),
            250.0,
        ),
        stk(
            1_520_593,
            "JPM",
            "NYSE",
            "JPMORGAN CHASE & CO",
            ny_open(1980, 3, 17),
            220.0,
        ),
        stk(
            9_579_970,
            "IWM",
            "ARCA",
            "ISHARES RUSSELL 2000 ETF",
            ny_open(2000, 5, 26),
            220.0,
        ),
        stk(
            15_547_841,
            "TLT",
            "NASDAQ",
            "ISHARES 20+ YEAR TREASURY BD",
            ny_open(2002, 7, 30),
            90.0,
        ),
    ];
    // No market data subscription for NYSE in the simulated account.
    let mut ko = stk(
        8_894,
        "KO",
        "NYSE",
        "COCA-COLA CO/THE",
        ny_open(1980, 1, 2),
        62.0,
    );
    ko.data_permitted = false;
    out.push(ko);

    let fx = |con, sym: &str, cur: &str, head, price| {
        let mut i = inst(con, sym, "CASH", "IDEALPRO", "", cur, "", head, price);
        i.local_symbol = format!("{sym}.{cur}");
        i.trading_class = format!("{sym}.{cur}");
        i.long_name = format!("{sym}.{cur}");
        i.volatility = 0.08;
        i
    };
    out.push(fx(12_087_792, "EUR", "USD", utc(2005, 3, 1, 0, 0, 0), 1.08));
    out.push(fx(12_087_797, "GBP", "USD", utc(2005, 3, 1, 0, 0, 0), 1.27));
    let mut jpy = fx(15_016_059, "USD", "JPY", utc(2005, 3, 1, 0, 0, 0), 150.0);
    jpy.min_tick = 0.005;
    out.push(jpy);

    // Two ES expiries: "ES FUT CME" without a month is ambiguous, as at IB.
    for (con, expiry, local) in [
        (637_533_641, "20270319", "ESH7"),
        (649_180_695, "20270618", "ESM7"),
    ] {
        let mut es = inst(
            con,
            "ES",
            "FUT",
            "CME",
            "",
            "USD",
            "E-mini S&P 500",
            0,
            5800.0,
        );
        es.head_timestamp = utc(2025, 6, 20, 13, 30, 0);
        es.last_trade_date_or_contract_month = expiry.into();
        es.local_symbol = local.into();
        es.trading_class = "ES".into();
        es.multiplier = Some(50.0);
        es.volatility = 0.18;
        es.volume_per_minute = 1_500.0;
        out.push(es);
    }
    let mut nq = inst(
        637_533_450,
        "NQ",
        "FUT",
        "CME",
        "",
        "USD",
        "E-mini NASDAQ 100",
        utc(2025, 6, 20, 13, 30, 0),
        20_500.0,
    );
    nq.last_trade_date_or_contract_month = "20270319".into();
    nq.local_symbol = "NQH7".into();
    nq.trading_class = "NQ".into();
    nq.multiplier = Some(20.0);
    out.push(nq);

    let idx = |con, sym, exch, name, head, price| {
        let mut i = inst(con, sym, "IND", exch, exch, "USD", name, head, price);
        i.volatility = 0.18;
        i
    };
    out.push(idx(
        416_904,
        "SPX",
        "CBOE",
        "S&P 500 Stock Index",
        ny_open(1980, 1, 2),
        5800.0,
    ));
    out.push(idx(
        13_455_763,
        "VIX",
        "CBOE",
        "CBOE Volatility Index",
        ny_open(1990, 1, 2),
        16.0,
    ));
    out.push(idx(
        416_843,
        "NDX",
        "NASDAQ",
        "NASDAQ 100 Stock Index",
        ny_open(1985, 2, 1),
        20_000.0,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_set_has_the_required_instruments() {
        let m = Market::builtin();
        assert!(m.instruments().len() >= 20);
        let find = |c: Contract| match m.resolve(&c) {
            Lookup::Found(i) => i.con_id,
            other => panic!("{c:?} → {other:?}"),
        };
        assert_eq!(find(Contract::stock("AAPL")), 265_598);
        assert_eq!(find(Contract::stock("msft")), 272_093);
        assert_eq!(find(Contract::stock("SPY")), 756_733);
        let eur = Contract {
            symbol: "EUR".into(),
            sec_type: "CASH".into(),
            exchange: "IDEALPRO".into(),
            currency: "USD".into(),
            ..Contract::default()
        };
        assert_eq!(find(eur), 12_087_792);
        let spx = Contract {
            symbol: "SPX".into(),
            sec_type: "IND".into(),
            exchange: "CBOE".into(),
            ..Contract::default()
        };
        assert_eq!(find(spx), 416_904);
        let mut es = Contract {
            symbol: "ES".into(),
            sec_type: "FUT".into(),
            exchange: "CME".into(),
            ..Contract::default()
        };
        assert_eq!(m.resolve(&es), Lookup::Ambiguous);
        assert_eq!(m.find_all(&es).len(), 2);
        es.last_trade_date_or_contract_month = "202703".into();
        assert_eq!(find(es), 637_533_641);
        assert_eq!(m.resolve(&Contract::stock("NOPE")), Lookup::NotFound);
        assert_eq!(
            find(Contract {
                con_id: 265_598,
                ..Contract::default()
            }),
            265_598
        );
        let ko = m.instruments().iter().find(|i| i.symbol == "KO").unwrap();
        assert!(!ko.data_permitted);
        assert_eq!(ko.permission_scope(), "NYSE STK");
    }

    #[test]
    fn matching_symbols_prefers_symbol_prefix() {
        let m = Market::builtin();
        let got: Vec<String> = m
            .matching_symbols("aa")
            .into_iter()
            .map(|d| d.contract.symbol)
            .collect();
        assert_eq!(got, ["AAPL"]);
        assert!(m.matching_symbols("").is_empty());
        let apple = m.matching_symbols("APPLE");
        assert_eq!(apple[0].contract.symbol, "AAPL");
    }

    #[test]
    fn files_extend_the_set() {
        let toml_text = r#"
            holidays = ["20260102"]
            [[instruments]]
            con_id = 1
            symbol = "ZZZ"
            sec_type = "STK"
            primary_exchange = "NYSE"
            currency = "USD"
            head_timestamp = 946_684_800
            price = 10.0
        "#;
        let file: InstrumentFile = toml::from_str(toml_text).unwrap();
        let mut m = Market::builtin();
        let before = m.instruments().len();
        m.extend(file).unwrap();
        assert_eq!(m.instruments().len(), before + 1);
        assert!(matches!(
            m.resolve(&Contract::stock("ZZZ")),
            Lookup::Found(_)
        ));
        let zzz = m.instruments().last().unwrap().clone();
        assert!(!m.is_trading_day(&zzz, Date::new(2026, 1, 2).days()));
        assert!(m.is_trading_day(&zzz, Date::new(2026, 1, 5).days()));

        let json = r#"{"instruments":[{"con_id":265598,"symbol":"AAPL","sec_type":"STK",
            "currency":"USD","head_timestamp":0,"price":1.0,"data_permitted":false}]}"#;
        let file: InstrumentFile = serde_json::from_str(json).unwrap();
        m.extend(file).unwrap();
        assert_eq!(m.instruments().len(), before + 1, "same con id replaces");
        let bad: Result<InstrumentFile, _> = serde_json::from_str(r#"{"instrumentz":[]}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn contract_details_hours() {
        let m = Market::builtin();
        let aapl = &m.instruments()[0];
        // Friday 2026-01-02 15:00 UTC: Fri open, Sat/Sun closed, Mon open.
        let (c, d) = m.contract_details(aapl, utc(2026, 1, 2, 15, 0, 0));
        assert_eq!(c.con_id, 265_598);
        assert!(d.liquid_hours.starts_with(
            "20260102:0930-20260102:1600;20260103:CLOSED;20260104:CLOSED;20260105:0930"
        ));
        assert!(d.trading_hours.starts_with("20260102:0400-20260102:2000"));
    }
}
