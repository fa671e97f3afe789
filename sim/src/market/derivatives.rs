//! Listed derivatives, generated from an instrument file's futures roots and option chains
//! relative to the gateway's "today": the quarterly futures (March, June, September, December)
//! not yet expired, and monthly options around the underlying's price. Contract ids are a pure
//! function of the contract (root or underlying, month, strike, right), so a contract keeps its
//! id whatever day it is listed on, and the same clock always lists the same contracts.

use ibconn_core::contract_spec::{code_of_month, occ_local_symbol, Right};
use ibconn_core::message::Contract;
use serde::{Deserialize, Serialize};

use super::{default_volatility, default_volume, yes, Hours, Instrument, Market, MarketError};
use crate::calendar::{self, Date, Zone, NEW_YORK, SECS_PER_DAY};

/// Serde default: the E-minis' tick.
fn quarter_tick() -> f64 {
    0.25
}
/// Serde default: quarterly contracts listed.
fn four() -> u32 {
    4
}
/// Serde default: monthly option expiries listed.
fn three() -> u32 {
    3
}
/// Serde default: strikes on each side of the money.
fn five() -> u32 {
    5
}
/// Serde default: options move more than their underlying.
fn option_volatility() -> f64 {
    0.6
}
/// Serde default: options trade thinly.
fn option_volume() -> f64 {
    20.0
}

/// Days of data before a future's last trade date (its head timestamp): about 15 months, the
/// span over which CME lists an equity index contract.
const FUTURE_HISTORY_DAYS: i64 = 456;

/// Days of data before an option's expiry (its head timestamp).
const OPTION_HISTORY_DAYS: i64 = 270;

/// A futures root of an instrument file (`[[futures]]`): the sim lists its next `listed`
/// quarterly contracts, each expiring on the third Friday of its month (the business day before
/// if that is a holiday), with local symbols like `ESZ6` and contract id
/// `con_id_base + (year % 100) * 100 + month`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuturesRoot {
    /// Root symbol, e.g. `ES`.
    pub symbol: String,
    /// Exchange, e.g. `CME`.
    pub exchange: String,
    /// Currency.
    pub currency: String,
    /// Contract multiplier, e.g. 50.
    pub multiplier: f64,
    /// Long name, e.g. `E-mini S&P 500`.
    pub long_name: String,
    /// Minimum price increment (default 0.25).
    #[serde(default = "quarter_tick")]
    pub min_tick: f64,
    /// Typical price level.
    pub price: f64,
    /// Annualised volatility of the synthetic path.
    #[serde(default = "default_volatility")]
    pub volatility: f64,
    /// Average traded volume per minute.
    #[serde(default = "default_volume")]
    pub volume_per_minute: f64,
    /// Base of the contract ids (see the type's docs).
    pub con_id_base: i32,
    /// Contracts listed at a time (default 4).
    #[serde(default = "four")]
    pub listed: u32,
    /// Whether the simulated account has market data permissions.
    #[serde(default = "yes")]
    pub data_permitted: bool,
}

/// An option chain of an instrument file (`[[option_chains]]`) on a stock of the file: monthly
/// expiries (third Fridays) from today, strikes every `strike_step` around the stock's price,
/// calls and puts, OCC local symbols (`AAPL  261218C00200000`), multiplier 100, SMART. Contract
/// id: `con_id_base + ((months since 2000-01) * 64 + strike index) * 2 + (0 call, 1 put)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionChain {
    /// The underlying stock's symbol (an instrument of the file).
    pub underlying: String,
    /// Monthly expiries listed (default 3).
    #[serde(default = "three")]
    pub expiries: u32,
    /// Strikes on each side of the at-the-money one (default 5, at most 31).
    #[serde(default = "five")]
    pub strikes_each_side: u32,
    /// Distance between strikes.
    pub strike_step: f64,
    /// Base of the contract ids (see the type's docs).
    pub con_id_base: i32,
    /// Annualised volatility of the options' synthetic paths (default 0.6).
    #[serde(default = "option_volatility")]
    pub volatility: f64,
    /// Average traded volume per minute (default 20).
    #[serde(default = "option_volume")]
    pub volume_per_minute: f64,
}

impl OptionChain {
    /// Refuse a chain whose strike grid the contract ids cannot number.
    pub(super) fn check(&self) -> Result<(), MarketError> {
        if self.strikes_each_side > 31 || self.strike_step.is_nan() || self.strike_step <= 0.0 {
            return Err(MarketError::Chain(self.underlying.clone()));
        }
        Ok(())
    }
}

/// The third Friday of a month, or the business day before it when that is a NYSE holiday
/// (as Good Friday can be): the expiry of quarterly equity index futures and monthly options.
fn expiry_day(market: &Market, year: i32, month: u32) -> i64 {
    let first = Date::new(year, month, 1).days();
    let mut day = first + (4 - i64::from(calendar::weekday(first))).rem_euclid(7) + 14;
    while calendar::is_weekend(day) || market.is_holiday(day) {
        day -= 1;
    }
    day
}

/// `(year, month)` from a month count since year 0.
fn year_month(months: i64) -> (i32, u32) {
    (
        i32::try_from(months.div_euclid(12)).unwrap_or(i32::MAX),
        u32::try_from(months.rem_euclid(12) + 1).unwrap_or(1),
    )
}

/// Unix seconds of New York midnight starting `day`.
fn ny_midnight(day: i64) -> i64 {
    Zone::Us(NEW_YORK).to_utc(day * SECS_PER_DAY)
}

impl Market {
    /// The derivatives listed at `now` (Unix seconds): every root's and chain's contracts.
    pub fn listed(&self, now: i64) -> Vec<Instrument> {
        self.listed_for(&Contract::default(), now, true)
    }

    /// The listed derivatives a request for `c` could mean (all of them with `all`): only the
    /// roots and chains whose symbol (or local symbol) it names are generated.
    pub(super) fn listed_for(&self, c: &Contract, now: i64, all: bool) -> Vec<Instrument> {
        let named = |symbol: &str| {
            all || c.con_id != 0
                || c.symbol.eq_ignore_ascii_case(symbol)
                || (c.symbol.is_empty()
                    && c.local_symbol
                        .to_ascii_uppercase()
                        .starts_with(&symbol.to_ascii_uppercase()))
        };
        let wants = |t: &str| all || c.con_id != 0 || c.sec_type.is_empty() || c.sec_type == t;
        let today = Zone::Us(NEW_YORK).to_local(now).div_euclid(SECS_PER_DAY);
        let mut out = Vec::new();
        if wants("FUT") {
            for root in self.futures.iter().filter(|r| named(&r.symbol)) {
                out.extend(self.futures_of(root, today));
            }
        }
        if wants("OPT") {
            for chain in self.option_chains.iter().filter(|ch| named(&ch.underlying)) {
                out.extend(self.options_of(chain, today));
            }
        }
        out
    }

    /// A root's next `listed` quarterly contracts not expired before `today` (a New York day).
    fn futures_of(&self, root: &FuturesRoot, today: i64) -> Vec<Instrument> {
        let d = Date::from_days(today);
        let mut months = i64::from(d.year) * 12 + i64::from(d.month) - 1;
        let mut out = Vec::new();
        while out.len() < root.listed as usize {
            let (year, month) = year_month(months);
            months += 1;
            if month % 3 != 0 {
                continue;
            }
            let expiry = expiry_day(self, year, month);
            if expiry < today {
                continue;
            }
            let (Some(code), Ok(m)) = (code_of_month(month as u8), i32::try_from(month)) else {
                break;
            };
            let yy = year.rem_euclid(100);
            out.push(Instrument {
                con_id: root.con_id_base.saturating_add(yy * 100 + m),
                symbol: root.symbol.clone(),
                sec_type: "FUT".into(),
                exchange: root.exchange.clone(),
                primary_exchange: String::new(),
                currency: root.currency.clone(),
                local_symbol: format!("{}{code}{}", root.symbol, year.rem_euclid(10)),
                trading_class: root.symbol.clone(),
                last_trade_date_or_contract_month: Date::from_days(expiry).yyyymmdd(),
                strike: None,
                right: String::new(),
                multiplier: Some(root.multiplier),
                long_name: root.long_name.clone(),
                min_tick: root.min_tick,
                head_timestamp: ny_midnight(expiry - FUTURE_HISTORY_DAYS),
                price: root.price,
                volatility: root.volatility,
                volume_per_minute: root.volume_per_minute,
                hours: Hours::Futures,
                data_permitted: root.data_permitted,
                derivative_sec_types: vec!["FOP".into()],
                industry: String::new(),
                under_con_id: 0,
            });
        }
        out
    }

    /// A chain's calls and puts for its next monthly expiries from `today`; empty when its
    /// underlying is not an instrument of the market.
    fn options_of(&self, chain: &OptionChain, today: i64) -> Vec<Instrument> {
        let Some(under) = self
            .instruments
            .iter()
            .find(|i| i.symbol.eq_ignore_ascii_case(&chain.underlying) && i.sec_type == "STK")
        else {
            return Vec::new();
        };
        let n = i64::from(chain.strikes_each_side.min(31));
        let center = (under.price / chain.strike_step).round() * chain.strike_step;
        let d = Date::from_days(today);
        let mut months = i64::from(d.year) * 12 + i64::from(d.month) - 1;
        let mut out = Vec::new();
        let mut expiries = 0;
        while expiries < chain.expiries {
            let (year, month) = year_month(months);
            months += 1;
            let expiry = expiry_day(self, year, month);
            if expiry < today {
                continue;
            }
            expiries += 1;
            let date = Date::from_days(expiry).yyyymmdd();
            let since_2000 = months - 1 - 2000 * 12;
            for k in 0..=2 * n {
                let strike = center + (k - n) as f64 * chain.strike_step;
                if strike <= 0.0 {
                    continue;
                }
                for (r, right) in [Right::Call, Right::Put].into_iter().enumerate() {
                    let offset = (since_2000 * 64 + k) * 2 + r as i64;
                    let intrinsic = match right {
                        Right::Call => under.price - strike,
                        Right::Put => strike - under.price,
                    };
                    // A fixed time value (about three months at the stock's volatility), so a
                    // contract's price level does not depend on the day it is asked for.
                    let price = intrinsic.max(0.0) + under.price * under.volatility * 0.2;
                    out.push(Instrument {
                        con_id: chain
                            .con_id_base
                            .saturating_add(i32::try_from(offset).unwrap_or(0)),
                        symbol: under.symbol.clone(),
                        sec_type: "OPT".into(),
                        exchange: "SMART".into(),
                        primary_exchange: String::new(),
                        currency: under.currency.clone(),
                        local_symbol: occ_local_symbol(&under.symbol, &date[2..], right, strike),
                        trading_class: under.symbol.clone(),
                        last_trade_date_or_contract_month: date.clone(),
                        strike: Some(strike),
                        right: right.as_str().to_owned(),
                        multiplier: Some(100.0),
                        long_name: under.long_name.clone(),
                        min_tick: 0.01,
                        head_timestamp: ny_midnight(expiry - OPTION_HISTORY_DAYS),
                        price: price.max(0.05),
                        volatility: chain.volatility,
                        volume_per_minute: chain.volume_per_minute,
                        hours: Hours::Options,
                        data_permitted: under.data_permitted,
                        derivative_sec_types: Vec::new(),
                        industry: under.industry.clone(),
                        under_con_id: under.con_id,
                    });
                }
            }
        }
        out
    }
}
