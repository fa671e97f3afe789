//! One contract syntax for every command (`fetch`, `plan`, `validate`, `head`): a short text
//! parsed into a [`ContractSpec`] and turned into the core's [`Contract`] with IB's defaults per
//! security type (docs/ib-facts.md#contracts).
//!
//! | text | meaning |
//! |---|---|
//! | `AAPL`, `BRK B` | stock, SMART, USD (a space belongs to the symbol) |
//! | `EUR.USD` | forex: base `EUR`, quote currency `USD`, IDEALPRO |
//! | `SPX:IND` | index on its home exchange (CBOE for SPX and VIX) |
//! | `ES:FUT`, `ES:FUT:202612`, `ES:FUT:20261218` | future (CME for ES and NQ), by month or last trade date |
//! | `ESZ6` | future by IB's local symbol: root, month code, one-digit year |
//! | `AAPL:OPT:20261218:200:C` | option (SMART, USD, multiplier 100); fields may be left out |
//! | `AAPL  261218C00200000` | option by IB's (OCC) local symbol |
//! | `@265598` | contract id |
//!
//! Input is case-insensitive and upper-cased. [`ContractSpec`]'s `Display` writes the canonical
//! text, which parses back to the same spec. [`ContractOverrides`] (the `--sec-type`,
//! `--exchange`, `--currency`, `--primary-exchange` flags) apply after parsing.

use std::fmt;
use std::str::FromStr;

use crate::civil::Date;
use crate::message::Contract;

/// Longest symbol accepted (IB's are far shorter; a bound keeps error texts short).
const MAX_SYMBOL: usize = 32;

/// IB's futures month codes, January to December.
const MONTH_CODES: [char; 12] = ['F', 'G', 'H', 'J', 'K', 'M', 'N', 'Q', 'U', 'V', 'X', 'Z'];

/// Security types the syntax names, for error texts.
const SEC_TYPES: &str = "STK, CASH, IND, FUT, OPT";

/// Why a contract text (or an override) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContractSpecError {
    /// Nothing was given.
    #[error(
        "empty contract: give a symbol such as AAPL, EUR.USD, SPX:IND, ES:FUT:202612 or @265598"
    )]
    Empty,
    /// The symbol has a character or shape IB symbols never have.
    #[error("bad symbol {symbol:?}: {reason}")]
    BadSymbol {
        /// The symbol as given.
        symbol: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `@` not followed by a positive contract id.
    #[error("bad contract id {0:?}: expected @ and a positive number, e.g. @265598")]
    BadConId(String),
    /// The second field names no security type the syntax knows.
    #[error("unknown security type {0:?}: expected one of {SEC_TYPES}")]
    UnknownSecType(String),
    /// Not a forex pair.
    #[error(
        "bad forex pair {0:?}: expected BASE.QUOTE with three-letter currencies, e.g. EUR.USD"
    )]
    BadForex(String),
    /// A date that is not a contract month or last trade date.
    #[error("bad expiry {0:?}: expected a contract month YYYYMM or a date YYYYMMDD, e.g. 202612")]
    BadExpiry(String),
    /// A strike that is not a positive decimal number.
    #[error("bad strike {0:?}: expected a positive number such as 200 or 202.5")]
    BadStrike(String),
    /// An option right other than call or put.
    #[error("bad option right {0:?}: expected C or P")]
    BadRight(String),
    /// More fields than the security type takes.
    #[error("{spec:?} has too many fields: {sec_type} takes {expected}")]
    TooManyFields {
        /// The text as given.
        spec: String,
        /// The security type.
        sec_type: &'static str,
        /// The fields it takes.
        expected: &'static str,
    },
    /// `--sec-type` contradicts the text (e.g. `EUR.USD --sec-type STK`).
    #[error("--sec-type {wanted} contradicts {spec}, which is {found}")]
    ConflictingSecType {
        /// The canonical spec.
        spec: String,
        /// Its security type.
        found: &'static str,
        /// The override.
        wanted: String,
    },
    /// An override value with characters IB never uses there.
    #[error("bad --{flag} {value:?}: expected letters, digits, '.', '-' or '_'")]
    BadOverride {
        /// The flag, e.g. `exchange`.
        flag: &'static str,
        /// The value as given.
        value: String,
    },
}

/// An option right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// `C`.
    Call,
    /// `P`.
    Put,
}

impl Right {
    /// IB's letter.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Call => "C",
            Self::Put => "P",
        }
    }

    /// `C`/`CALL` or `P`/`PUT` (already upper-cased).
    fn parse(s: &str) -> Result<Self, ContractSpecError> {
        match s {
            "C" | "CALL" => Ok(Self::Call),
            "P" | "PUT" => Ok(Self::Put),
            _ => Err(ContractSpecError::BadRight(s.to_owned())),
        }
    }
}

/// A contract month (`YYYYMM`) or a last trade date (`YYYYMMDD`), as IB's
/// `lastTradeDateOrContractMonth` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry {
    /// Year, 1900–2199.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month, if a date.
    pub day: Option<u8>,
}

impl Expiry {
    /// `YYYYMM` or `YYYYMMDD`, a real month or date of 1900–2199.
    fn parse(s: &str) -> Result<Self, ContractSpecError> {
        let bad = || ContractSpecError::BadExpiry(s.to_owned());
        if !(s.len() == 6 || s.len() == 8) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| s[r].parse::<u16>().map_err(|_| bad());
        let (year, month) = (num(0..4)?, u8::try_from(num(4..6)?).map_err(|_| bad())?);
        let day = if s.len() == 8 {
            Some(u8::try_from(num(6..8)?).map_err(|_| bad())?)
        } else {
            None
        };
        let e = Self { year, month, day };
        let date = Date::new(
            i32::from(year),
            u32::from(month),
            u32::from(day.unwrap_or(1)),
        );
        if !(1900..=2199).contains(&year) || !date.is_valid() {
            return Err(bad());
        }
        Ok(e)
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}", self.year, self.month)?;
        match self.day {
            Some(d) => write!(f, "{d:02}"),
            None => Ok(()),
        }
    }
}

/// A parsed contract text; [`ContractSpec::to_contract`] gives the request's [`Contract`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ContractSpec {
    /// `AAPL`, `BRK B`, `ESZ6:STK`: a stock routed SMART in USD.
    Stock {
        /// Symbol.
        symbol: String,
    },
    /// `EUR.USD`: a currency pair on IDEALPRO.
    Forex {
        /// Base currency (IB's symbol).
        base: String,
        /// Quote currency (IB's currency).
        quote: String,
    },
    /// `SPX:IND`: an index on its home exchange.
    Index {
        /// Symbol.
        symbol: String,
    },
    /// `ES:FUT[:YYYYMM[DD]]`: a future; without an expiry every listed month matches.
    Future {
        /// Symbol (root), e.g. `ES`.
        symbol: String,
        /// Contract month or last trade date.
        expiry: Option<Expiry>,
    },
    /// `ESZ6`: a future by its local symbol.
    FutureLocal {
        /// Root, e.g. `ES`.
        root: String,
        /// Month code, e.g. `Z` (December).
        month_code: char,
        /// Last digit of the year.
        year_digit: u8,
    },
    /// `AAPL:OPT[:YYYYMM[DD][:STRIKE[:C|P]]]`: an option; left-out (or empty) fields match any.
    Option {
        /// Underlying symbol.
        symbol: String,
        /// Expiry.
        expiry: Option<Expiry>,
        /// Strike.
        strike: Option<f64>,
        /// Call or put.
        right: Option<Right>,
    },
    /// `AAPL  261218C00200000`: an option by its OCC local symbol (root padded to six).
    OptionLocal {
        /// The local symbol, 21 characters.
        local_symbol: String,
    },
    /// `@265598`: a contract id.
    ConId(i32),
}

impl ContractSpec {
    /// Parse the contract syntax (see the module docs).
    pub fn parse(text: &str) -> Result<Self, ContractSpecError> {
        let s = text.trim().to_ascii_uppercase();
        if s.is_empty() {
            return Err(ContractSpecError::Empty);
        }
        if let Some(id) = s.strip_prefix('@') {
            return match id.parse::<i32>() {
                Ok(n) if n > 0 && id.bytes().all(|b| b.is_ascii_digit()) => Ok(Self::ConId(n)),
                _ => Err(ContractSpecError::BadConId(text.trim().to_owned())),
            };
        }
        if !s.contains(':') {
            return Self::parse_bare(&s);
        }
        let fields: Vec<&str> = s.split(':').collect();
        let (symbol, sec_type, rest) = (fields[0], fields[1], &fields[2..]);
        let too_many = |sec_type, expected| ContractSpecError::TooManyFields {
            spec: s.clone(),
            sec_type,
            expected,
        };
        match sec_type {
            "STK" if rest.is_empty() => Ok(Self::Stock {
                symbol: check_symbol(symbol)?,
            }),
            "STK" => Err(too_many("STK", "none: SYMBOL:STK")),
            "IND" if rest.is_empty() => Ok(Self::Index {
                symbol: check_symbol(symbol)?,
            }),
            "IND" => Err(too_many("IND", "none: SYMBOL:IND")),
            "CASH" => match rest {
                [] => forex_pair(symbol).ok_or_else(|| ContractSpecError::BadForex(s.clone())),
                [quote] => forex_pair(&format!("{symbol}.{quote}"))
                    .ok_or_else(|| ContractSpecError::BadForex(s.clone())),
                _ => Err(too_many("CASH", "BASE.QUOTE:CASH or BASE:CASH:QUOTE")),
            },
            "FUT" => match rest {
                [] | [""] => Ok(Self::Future {
                    symbol: check_symbol(symbol)?,
                    expiry: None,
                }),
                [e] => Ok(Self::Future {
                    symbol: check_symbol(symbol)?,
                    expiry: Some(Expiry::parse(e)?),
                }),
                _ => Err(too_many("FUT", "an expiry: SYMBOL:FUT:YYYYMM[DD]")),
            },
            "OPT" if rest.len() <= 3 => {
                let field = |i: usize| rest.get(i).copied().filter(|f| !f.is_empty());
                Ok(Self::Option {
                    symbol: check_symbol(symbol)?,
                    expiry: field(0).map(Expiry::parse).transpose()?,
                    strike: field(1).map(parse_strike).transpose()?,
                    right: field(2).map(Right::parse).transpose()?,
                })
            }
            "OPT" => Err(too_many("OPT", "SYMBOL:OPT:YYYYMM[DD]:STRIKE:C|P")),
            other => Err(ContractSpecError::UnknownSecType(other.to_owned())),
        }
    }

    /// A text without `:`: forex pair, futures or OCC local symbol, else a stock.
    fn parse_bare(s: &str) -> Result<Self, ContractSpecError> {
        if let Some(fx) = forex_pair(s) {
            return Ok(fx);
        }
        if let Some(fut) = future_local(s) {
            return Ok(fut);
        }
        if is_occ(s) {
            return Ok(Self::OptionLocal {
                local_symbol: s.to_owned(),
            });
        }
        Ok(Self::Stock {
            symbol: check_symbol(s)?,
        })
    }

    /// IB's security type of the spec (`None` for a bare contract id).
    pub fn sec_type(&self) -> Option<&'static str> {
        match self {
            Self::Stock { .. } => Some("STK"),
            Self::Forex { .. } => Some("CASH"),
            Self::Index { .. } => Some("IND"),
            Self::Future { .. } | Self::FutureLocal { .. } => Some("FUT"),
            Self::Option { .. } | Self::OptionLocal { .. } => Some("OPT"),
            Self::ConId(_) => None,
        }
    }

    /// Whether the spec leaves out what tells one contract from its siblings (a future without
    /// an expiry, an option without expiry, strike or right): IB answers several contracts.
    pub fn is_partial(&self) -> bool {
        match self {
            Self::Future { expiry, .. } => expiry.is_none(),
            Self::Option {
                expiry,
                strike,
                right,
                ..
            } => expiry.is_none() || strike.is_none() || right.is_none(),
            _ => false,
        }
    }

    /// The request contract with IB's defaults for the type (docs/ib-facts.md#contracts).
    pub fn to_contract(&self) -> Contract {
        let usd = || "USD".to_owned();
        match self {
            Self::Stock { symbol } => Contract::stock(symbol),
            Self::Forex { base, quote } => Contract {
                symbol: base.clone(),
                sec_type: "CASH".into(),
                exchange: "IDEALPRO".into(),
                currency: quote.clone(),
                ..Contract::default()
            },
            Self::Index { symbol } => Contract {
                symbol: symbol.clone(),
                sec_type: "IND".into(),
                exchange: index_exchange(symbol).unwrap_or_default().to_owned(),
                currency: usd(),
                ..Contract::default()
            },
            Self::Future { symbol, expiry } => Contract {
                symbol: symbol.clone(),
                sec_type: "FUT".into(),
                last_trade_date_or_contract_month: expiry
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                exchange: futures_exchange(symbol).unwrap_or_default().to_owned(),
                currency: usd(),
                ..Contract::default()
            },
            Self::FutureLocal { root, .. } => Contract {
                // A root whose exchange we know is also IB's symbol (ES, NQ, …); others (6E
                // is EUR's) are left to the local symbol.
                symbol: match futures_exchange(root) {
                    Some(_) => root.clone(),
                    None => String::new(),
                },
                sec_type: "FUT".into(),
                local_symbol: self.to_string(),
                exchange: futures_exchange(root).unwrap_or_default().to_owned(),
                currency: usd(),
                ..Contract::default()
            },
            Self::Option {
                symbol,
                expiry,
                strike,
                right,
            } => Contract {
                symbol: symbol.clone(),
                sec_type: "OPT".into(),
                last_trade_date_or_contract_month: expiry
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                strike: *strike,
                right: right.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                multiplier: Some(100.0),
                exchange: "SMART".into(),
                currency: usd(),
                ..Contract::default()
            },
            Self::OptionLocal { local_symbol } => Contract {
                sec_type: "OPT".into(),
                local_symbol: local_symbol.clone(),
                // The OCC root is IB's trading class (SPXW for SPX weeklies).
                trading_class: local_symbol
                    .get(..6)
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned(),
                multiplier: Some(100.0),
                exchange: "SMART".into(),
                currency: usd(),
                ..Contract::default()
            },
            Self::ConId(id) => Contract {
                con_id: *id,
                ..Contract::default()
            },
        }
    }

    /// The request contract with `overrides` applied: `--sec-type` re-reads a plain symbol as
    /// that type (so `SPX --sec-type IND` is `SPX:IND`, home exchange included) and must agree
    /// with any other spec; exchange, currency and primary exchange then replace the defaults.
    pub fn resolve(&self, overrides: &ContractOverrides) -> Result<Contract, ContractSpecError> {
        let spec = match &overrides.sec_type {
            Some(t) => self.with_sec_type(t, overrides.currency.as_deref())?,
            None => self.clone(),
        };
        let mut c = spec.to_contract();
        if let (ContractSpec::ConId(_), Some(t)) = (&spec, &overrides.sec_type) {
            c.sec_type = check_override("sec-type", t)?;
        }
        if let Some(e) = &overrides.exchange {
            c.exchange = check_override("exchange", e)?;
        }
        if let Some(cur) = &overrides.currency {
            c.currency = check_override("currency", cur)?;
        }
        if let Some(p) = &overrides.primary_exchange {
            c.primary_exchange = check_override("primary-exchange", p)?;
        }
        Ok(c)
    }

    /// The spec read as security type `wanted` (see [`ContractSpec::resolve`]).
    fn with_sec_type(
        &self,
        wanted: &str,
        currency: Option<&str>,
    ) -> Result<Self, ContractSpecError> {
        let t = wanted.trim().to_ascii_uppercase();
        if !["STK", "CASH", "IND", "FUT", "OPT"].contains(&t.as_str()) {
            return Err(ContractSpecError::UnknownSecType(t));
        }
        match (self, self.sec_type()) {
            (Self::ConId(_), _) => Ok(self.clone()),
            (_, Some(found)) if found == t => Ok(self.clone()),
            (Self::Stock { symbol }, _) => match t.as_str() {
                "CASH" if symbol.contains('.') => ContractSpec::parse(&format!("{symbol}:CASH")),
                "CASH" => {
                    let quote = currency.unwrap_or_default();
                    ContractSpec::parse(&format!("{symbol}:CASH:{quote}"))
                }
                _ => ContractSpec::parse(&format!("{symbol}:{t}")),
            },
            (_, found) => Err(ContractSpecError::ConflictingSecType {
                spec: self.to_string(),
                found: found.unwrap_or("a contract id"),
                wanted: t,
            }),
        }
    }
}

/// The fields beyond `symbol type exchange currency` that select one contract, as `(key, value)`
/// pairs in a fixed order, empty ones left out: what keeps two futures months or two strikes
/// apart wherever a contract is a key (the validator's cache, an output file's identity).
pub fn selecting_fields(c: &Contract) -> Vec<(&'static str, String)> {
    let fields = [
        ("expiry", c.last_trade_date_or_contract_month.clone()),
        (
            "strike",
            c.strike.map(|k| k.to_string()).unwrap_or_default(),
        ),
        ("right", c.right.clone()),
        (
            "multiplier",
            c.multiplier.map(|m| m.to_string()).unwrap_or_default(),
        ),
        ("local", c.local_symbol.clone()),
        ("primary", c.primary_exchange.clone()),
        (
            "con_id",
            if c.con_id == 0 {
                String::new()
            } else {
                c.con_id.to_string()
            },
        ),
    ];
    fields.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

impl FromStr for ContractSpec {
    type Err = ContractSpecError;

    /// [`ContractSpec::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ContractSpec {
    /// The canonical text, which [`ContractSpec::parse`] reads back as the same spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stock { symbol } => {
                let plain = matches!(Self::parse_bare(symbol), Ok(Self::Stock { .. }));
                if plain {
                    f.write_str(symbol)
                } else {
                    write!(f, "{symbol}:STK")
                }
            }
            Self::Forex { base, quote } => write!(f, "{base}.{quote}"),
            Self::Index { symbol } => write!(f, "{symbol}:IND"),
            Self::Future { symbol, expiry } => match expiry {
                Some(e) => write!(f, "{symbol}:FUT:{e}"),
                None => write!(f, "{symbol}:FUT"),
            },
            Self::FutureLocal {
                root,
                month_code,
                year_digit,
            } => write!(f, "{root}{month_code}{year_digit}"),
            Self::Option {
                symbol,
                expiry,
                strike,
                right,
            } => {
                let mut fields = vec![
                    expiry.map(|e| e.to_string()).unwrap_or_default(),
                    strike.map(|s| s.to_string()).unwrap_or_default(),
                    right.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                ];
                while fields.last().is_some_and(String::is_empty) {
                    fields.pop();
                }
                write!(f, "{symbol}:OPT")?;
                fields.iter().try_for_each(|x| write!(f, ":{x}"))
            }
            Self::OptionLocal { local_symbol } => f.write_str(local_symbol),
            Self::ConId(id) => write!(f, "@{id}"),
        }
    }
}

/// The `--sec-type`, `--exchange`, `--currency` and `--primary-exchange` flags: applied after
/// parsing by [`ContractSpec::resolve`]. `Some("")` clears a default (IB then matches any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContractOverrides {
    /// Security type: STK, CASH, IND, FUT or OPT.
    pub sec_type: Option<String>,
    /// Routing exchange, e.g. `SMART`, `CME`.
    pub exchange: Option<String>,
    /// Currency, e.g. `USD`.
    pub currency: Option<String>,
    /// Primary listing exchange, e.g. `NASDAQ` (tells same-symbol stocks apart).
    pub primary_exchange: Option<String>,
}

/// The home exchange of a few well-known indices (docs/ib-facts.md#contracts); `None`: unknown,
/// left empty for IB (or `--exchange`) to settle.
pub fn index_exchange(symbol: &str) -> Option<&'static str> {
    match symbol {
        "SPX" | "VIX" => Some("CBOE"),
        "NDX" => Some("NASDAQ"),
        _ => None,
    }
}

/// The exchange of a few well-known futures roots (docs/ib-facts.md#contracts): CME for the
/// E-mini equity index futures (ES, NQ, RTY and their micros), CBOT for the Dow's (YM, MYM).
pub fn futures_exchange(root: &str) -> Option<&'static str> {
    match root {
        "ES" | "NQ" | "RTY" | "MES" | "MNQ" | "M2K" => Some("CME"),
        "YM" | "MYM" => Some("CBOT"),
        _ => None,
    }
}

/// A futures month code's month (1–12).
pub fn month_of_code(code: char) -> Option<u8> {
    let i = MONTH_CODES.iter().position(|&c| c == code)?;
    u8::try_from(i + 1).ok()
}

/// A month's (1–12) futures month code.
pub fn code_of_month(month: u8) -> Option<char> {
    MONTH_CODES.get(usize::from(month).checked_sub(1)?).copied()
}

/// IB's (OCC) option local symbol: root padded to six, `YYMMDD`, `C`/`P`, strike × 1000 in eight
/// digits, e.g. `AAPL  261218C00200000` (docs/ib-facts.md#contracts).
pub fn occ_local_symbol(root: &str, yymmdd: &str, right: Right, strike: f64) -> String {
    let milli = (strike * 1000.0).round().clamp(0.0, 99_999_999.0) as u64;
    format!("{root:<6}{yymmdd}{}{milli:08}", right.as_str())
}

/// `BASE.QUOTE` with three-letter currencies.
fn forex_pair(s: &str) -> Option<ContractSpec> {
    let (base, quote) = s.split_once('.')?;
    let ccy = |c: &str| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase());
    (ccy(base) && ccy(quote)).then(|| ContractSpec::Forex {
        base: base.to_owned(),
        quote: quote.to_owned(),
    })
}

/// A futures local symbol: a root of one to four letters or digits (at least one letter), a
/// month code and a one-digit year, e.g. `ESZ6`, `6EH7`.
fn future_local(s: &str) -> Option<ContractSpec> {
    let b = s.as_bytes();
    if !s.is_ascii() || !(3..=6).contains(&b.len()) {
        return None;
    }
    let (root, tail) = s.split_at(b.len() - 2);
    let mut tail = tail.chars();
    let (month_code, year) = (tail.next()?, tail.next()?);
    let root_ok = root
        .bytes()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && root.bytes().any(|c| c.is_ascii_uppercase());
    (root_ok && month_of_code(month_code).is_some() && year.is_ascii_digit()).then(|| {
        ContractSpec::FutureLocal {
            root: root.to_owned(),
            month_code,
            year_digit: year as u8 - b'0',
        }
    })
}

/// Whether `s` has the shape of an OCC option symbol (see [`occ_local_symbol`]).
fn is_occ(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 21 || !s.is_ascii() {
        return false;
    }
    let root = s[..6].trim_end_matches(' ');
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let date_ok = digits(6..12) && {
        let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
        Date::new(2000 + n(6..8) as i32, n(8..10), n(10..12)).is_valid()
    };
    !root.is_empty()
        && root
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && date_ok
        && matches!(b[12], b'C' | b'P')
        && digits(13..21)
}

/// A positive decimal strike (digits and at most one point).
fn parse_strike(s: &str) -> Result<f64, ContractSpecError> {
    let bad = || ContractSpecError::BadStrike(s.to_owned());
    let shape_ok = s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|&b| b == b'.').count() <= 1
        && s.bytes().any(|b| b.is_ascii_digit());
    let v: f64 = if shape_ok {
        s.parse().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(bad())
    }
}

/// A symbol: letters, digits, `.`, `-`, `/`, `&`, and single inner spaces (`BRK B`).
fn check_symbol(s: &str) -> Result<String, ContractSpecError> {
    let bad = |reason: &str| ContractSpecError::BadSymbol {
        symbol: s.to_owned(),
        reason: reason.to_owned(),
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.chars().count() > MAX_SYMBOL {
        return Err(bad(&format!("longer than {MAX_SYMBOL} characters")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '/' | '&')))
    {
        return Err(bad(&format!(
            "{c:?} is not allowed (letters, digits, '.', '-', '/', '&' and single spaces)"
        )));
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.contains("  ") {
        return Err(bad("only single spaces between words, as in \"BRK B\""));
    }
    Ok(s.to_owned())
}

/// An override value: upper-cased; letters, digits, `.`, `-`, `_` (or empty: cleared).
fn check_override(flag: &'static str, v: &str) -> Result<String, ContractSpecError> {
    let v2 = v.trim().to_ascii_uppercase();
    if v2
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        Ok(v2)
    } else {
        Err(ContractSpecError::BadOverride {
            flag,
            value: v.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
