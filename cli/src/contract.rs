//! The contract every command takes (`fetch`, `plan`, `validate`, `head`): core's contract
//! syntax ([`ContractSpec`]) plus the `--sec-type/--exchange/--currency/--primary-exchange`
//! overrides, and the checks that keep a request IB would refuse from costing a pacing slot.

use clap::Args;
use ibconn_core::contract_spec::{
    selecting_fields, ContractOverrides, ContractSpec, ContractSpecError,
};
use ibconn_core::message::{Contract, ContractDescription, ContractDetails};
use ibconn_core::what_to_show::WhatToShow;
use serde::Serialize;

/// The override flags, applied after the contract text is parsed.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ContractArgs {
    /// Security type: STK, CASH, IND, FUT or OPT (re-reads a plain symbol: `SPX --sec-type
    /// IND` is `SPX:IND`).
    #[arg(long, value_name = "TYPE")]
    pub(crate) sec_type: Option<String>,
    /// Exchange instead of the type's default (SMART, IDEALPRO, CME, …); "" leaves it open.
    #[arg(long, value_name = "EXCHANGE")]
    pub(crate) exchange: Option<String>,
    /// Currency instead of the default (USD; a forex pair's quote currency).
    #[arg(long, value_name = "CCY")]
    pub(crate) currency: Option<String>,
    /// Primary listing exchange, to tell same-symbol stocks apart (e.g. NASDAQ).
    #[arg(long, value_name = "EXCHANGE")]
    pub(crate) primary_exchange: Option<String>,
}

impl ContractArgs {
    /// The flags as core's overrides.
    fn overrides(&self) -> ContractOverrides {
        ContractOverrides {
            sec_type: self.sec_type.clone(),
            exchange: self.exchange.clone(),
            currency: self.currency.clone(),
            primary_exchange: self.primary_exchange.clone(),
        }
    }
}

/// Why a contract cannot be asked for (exit 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ContractError {
    /// The text or an override is malformed.
    #[error(transparent)]
    Spec(#[from] ContractSpecError),
    /// The contract names several (a future without expiry, an option without strike …).
    #[error(
        "{0} names several contracts, and bars are fetched for one: add what tells them apart \
         (ES:FUT:202612 or ESZ6 for a future, SYMBOL:OPT:YYYYMMDD:STRIKE:C|P for an option); \
         `ibconn validate {0}` lists them"
    )]
    Partial(String),
    /// IB keeps no bars of that series for the type.
    #[error("IB has no {what} bars for {spec} ({sec_type}); {hint}")]
    Series {
        /// The contract as given.
        spec: String,
        /// The security type.
        sec_type: String,
        /// The series asked for.
        what: WhatToShow,
        /// What to use instead.
        hint: &'static str,
    },
}

/// Parse a SYMBOL argument (clap's value parser: a bad one is a usage error, exit 2).
pub(crate) fn parse_spec(s: &str) -> Result<ContractSpec, String> {
    ContractSpec::parse(s).map_err(|e| e.to_string())
}

/// The request contract for `spec` with the overrides applied.
pub(crate) fn resolve(spec: &ContractSpec, args: &ContractArgs) -> Result<Contract, ContractError> {
    Ok(spec.resolve(&args.overrides())?)
}

/// The contract and series for a bars or head-timestamp request: one contract (not a family),
/// and a series IB keeps for its type (`what` defaults to MIDPOINT for forex, else TRADES).
pub(crate) fn for_bars(
    spec: &ContractSpec,
    args: &ContractArgs,
    what: Option<WhatToShow>,
) -> Result<(Contract, WhatToShow), ContractError> {
    let contract = resolve(spec, args)?;
    if is_partial(&contract) {
        return Err(ContractError::Partial(spec.to_string()));
    }
    let what = what.unwrap_or_else(|| WhatToShow::default_for(&contract.sec_type));
    if !what.is_served_for(&contract.sec_type) {
        let hint = match contract.sec_type.as_str() {
            "CASH" => "use --what MIDPOINT (the default for forex), BID, ASK or BID_ASK",
            "IND" => "use --what TRADES (the default) or a volatility series",
            _ => "use --what TRADES (the default), MIDPOINT, BID, ASK or BID_ASK",
        };
        return Err(ContractError::Series {
            spec: spec.to_string(),
            sec_type: contract.sec_type,
            what,
            hint,
        });
    }
    Ok((contract, what))
}

/// Whether a request contract leaves open which of several contracts it means: a future
/// without an expiry, an option without expiry, strike or right (unless a contract id or local
/// symbol names it).
pub(crate) fn is_partial(c: &Contract) -> bool {
    if c.con_id != 0 || !c.local_symbol.is_empty() {
        return false;
    }
    match c.sec_type.as_str() {
        "FUT" => c.last_trade_date_or_contract_month.is_empty(),
        "OPT" => {
            c.last_trade_date_or_contract_month.is_empty()
                || c.strike.is_none()
                || c.right.is_empty()
        }
        _ => false,
    }
}

/// The contract as an output file's identity records it: `SYMBOL TYPE EXCHANGE CURRENCY` (the
/// form files of stocks always had) and every other selecting field as `key=value`, so two
/// futures months or two strikes never share a file.
pub(crate) fn describe(c: &Contract) -> String {
    let mut parts: Vec<String> = [&c.symbol, &c.sec_type, &c.exchange, &c.currency]
        .into_iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect();
    parts.extend(
        selecting_fields(c)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    parts.join(" ")
}

/// One of several contracts a request matched (`validate`'s candidates table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Candidate {
    /// IB's contract id (`@ID` names it).
    pub(crate) con_id: i32,
    /// Security type.
    pub(crate) sec_type: String,
    /// Local symbol, e.g. `ESZ6`.
    pub(crate) local_symbol: String,
    /// Last trade date or contract month.
    pub(crate) expiry: String,
    /// Strike (options).
    pub(crate) strike: Option<f64>,
    /// Right (options).
    pub(crate) right: String,
    /// Exchange.
    pub(crate) exchange: String,
    /// Currency.
    pub(crate) currency: String,
    /// Descriptive name.
    pub(crate) long_name: String,
}

impl Candidate {
    /// A contract-details row.
    pub(crate) fn from_details(c: &Contract, d: &ContractDetails) -> Self {
        Self {
            con_id: c.con_id,
            sec_type: c.sec_type.clone(),
            local_symbol: c.local_symbol.clone(),
            expiry: c.last_trade_date_or_contract_month.clone(),
            strike: c.strike,
            right: c.right.clone(),
            exchange: c.exchange.clone(),
            currency: c.currency.clone(),
            long_name: d.long_name.clone(),
        }
    }

    /// `20261218 200 C`, `20261218` or `-`.
    fn terms(&self) -> String {
        let t: Vec<String> = [
            self.expiry.clone(),
            self.strike.map(|s| s.to_string()).unwrap_or_default(),
            self.right.clone(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
        if t.is_empty() {
            "-".to_owned()
        } else {
            t.join(" ")
        }
    }
}

/// The candidates as a table (con id, local symbol, expiry/strike/right, exchange, currency,
/// long name).
pub(crate) fn candidates_table(found: &[Candidate]) -> String {
    let mut rows = vec![[
        "CON_ID".to_owned(),
        "LOCAL SYMBOL".to_owned(),
        "EXPIRY/STRIKE/RIGHT".to_owned(),
        "EXCHANGE".to_owned(),
        "CURRENCY".to_owned(),
        "NAME".to_owned(),
    ]];
    for c in found {
        rows.push([
            format!("@{}", c.con_id),
            c.local_symbol.clone(),
            c.terms(),
            c.exchange.clone(),
            c.currency.clone(),
            c.long_name.clone(),
        ]);
    }
    crate::util::table(&rows)
}

/// For a bare symbol IB has no stock of (error 200): the specs its symbol search suggests, e.g.
/// `SPX:IND`, `EUR.USD` — so `validate SPX` says what to type instead of only
/// "no security definition". Only for a plain stock spec; never a guess at what was meant.
pub(crate) fn alternatives(asked: &Contract, found: &[ContractDescription]) -> Vec<String> {
    let bare = asked.sec_type == "STK"
        && asked.con_id == 0
        && asked.last_trade_date_or_contract_month.is_empty();
    if !bare {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    let mut add = |spec: String| {
        if !out.contains(&spec) {
            out.push(spec);
        }
    };
    for d in found {
        let c = &d.contract;
        if !c.symbol.eq_ignore_ascii_case(&asked.symbol) {
            continue;
        }
        let sym = c.symbol.to_ascii_uppercase();
        match c.sec_type.as_str() {
            "IND" => add(format!("{sym}:IND")),
            "CASH" if !c.currency.is_empty() => add(format!("{sym}.{}", c.currency)),
            "STK" if !c.currency.is_empty() && c.currency != asked.currency => {
                add(format!("{sym} --currency {}", c.currency));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ContractSpec {
        ContractSpec::parse(s).unwrap()
    }

    #[test]
    fn identities_keep_the_stock_form_and_tell_derivatives_apart() {
        let none = ContractArgs::default();
        let d = |s: &str| describe(&resolve(&spec(s), &none).unwrap());
        assert_eq!(d("aapl"), "AAPL STK SMART USD");
        assert_eq!(d("ES:FUT:202612"), "ES FUT CME USD expiry=202612");
        assert_ne!(d("ES:FUT:202612"), d("ES:FUT:202703"));
        assert_eq!(
            d("AAPL:OPT:20261218:200:C"),
            "AAPL OPT SMART USD expiry=20261218 strike=200 right=C multiplier=100"
        );
        assert_eq!(d("@265598"), "con_id=265598");
        let nasdaq = ContractArgs {
            primary_exchange: Some("nasdaq".into()),
            ..ContractArgs::default()
        };
        assert_eq!(
            describe(&resolve(&spec("AAPL"), &nasdaq).unwrap()),
            "AAPL STK SMART USD primary=NASDAQ"
        );
    }

    #[test]
    fn bars_need_one_contract_and_a_series_its_type_has() {
        let none = ContractArgs::default();
        let bars = |s: &str, w| for_bars(&spec(s), &none, w);
        assert!(matches!(
            bars("ES:FUT", None),
            Err(ContractError::Partial(_))
        ));
        assert!(matches!(
            bars("AAPL:OPT:20261218", None),
            Err(ContractError::Partial(_))
        ));
        assert!(bars("ESZ6", None).is_ok());
        assert!(bars("@495002612", None).is_ok());
        let (_, what) = bars("EUR.USD", None).unwrap();
        assert_eq!(what, WhatToShow::Midpoint);
        let err = bars("EUR.USD", Some(WhatToShow::Trades)).unwrap_err();
        assert!(err.to_string().contains("MIDPOINT"), "{err}");
        assert!(bars("SPX:IND", Some(WhatToShow::Midpoint)).is_err());
        let fut = ContractArgs {
            sec_type: Some("FUT".into()),
            ..ContractArgs::default()
        };
        assert!(matches!(
            for_bars(&spec("ES"), &fut, None),
            Err(ContractError::Partial(_))
        ));
    }
}
