//! Contracts and contract details: the domain types, their protobuf form and their text layouts.
//!
//! Empty strings and zero ids mean "unset" (IB's convention); optional doubles are `Option<f64>`.

use super::convert::{decimal, opt_nz, opt_str, opt_true, str_or_empty};
use super::proto;
use crate::wire::fields::format_f64;
use crate::wire::{version, DecodeError, FieldReader, FieldWriter};

/// An instrument as IB identifies it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contract {
    /// IB's contract id; 0 = unknown.
    pub con_id: i32,
    /// Underlying symbol, e.g. `AAPL`.
    pub symbol: String,
    /// Security type: `STK`, `FUT`, `CASH`, `IND`, `OPT`, …
    pub sec_type: String,
    /// Expiry `YYYYMMDD` or contract month `YYYYMM` for derivatives.
    pub last_trade_date_or_contract_month: String,
    /// Option strike; `None` = unset.
    pub strike: Option<f64>,
    /// Option right `C`/`P`.
    pub right: String,
    /// Contract multiplier; `None` = unset.
    pub multiplier: Option<f64>,
    /// Routing exchange, e.g. `SMART`.
    pub exchange: String,
    /// Primary listing exchange, e.g. `NASDAQ`.
    pub primary_exchange: String,
    /// Currency, e.g. `USD`.
    pub currency: String,
    /// Local symbol, e.g. `ESZ6`.
    pub local_symbol: String,
    /// Trading class.
    pub trading_class: String,
    /// Whether expired contracts are included (futures history).
    pub include_expired: bool,
    /// Security id type (`ISIN`, `CUSIP`, …).
    pub sec_id_type: String,
    /// Security id.
    pub sec_id: String,
    /// Description (symbol samples).
    pub description: String,
    /// Issuer id (bonds, symbol samples).
    pub issuer_id: String,
    /// Last trade date (contract data from server version 182).
    pub last_trade_date: String,
}

impl Contract {
    /// A SMART-routed USD stock, the commonest request.
    pub fn stock(symbol: &str) -> Self {
        Self {
            symbol: symbol.to_owned(),
            sec_type: "STK".into(),
            exchange: "SMART".into(),
            currency: "USD".into(),
            ..Self::default()
        }
    }

    /// The protobuf form: only set fields are present (as ibapi and IB's clients encode).
    pub fn to_proto(&self) -> proto::Contract {
        proto::Contract {
            con_id: opt_nz(self.con_id),
            symbol: opt_str(&self.symbol),
            sec_type: opt_str(&self.sec_type),
            last_trade_date_or_contract_month: opt_str(&self.last_trade_date_or_contract_month),
            strike: self.strike,
            right: opt_str(&self.right),
            multiplier: self.multiplier,
            exchange: opt_str(&self.exchange),
            primary_exch: opt_str(&self.primary_exchange),
            currency: opt_str(&self.currency),
            local_symbol: opt_str(&self.local_symbol),
            trading_class: opt_str(&self.trading_class),
            sec_id_type: opt_str(&self.sec_id_type),
            sec_id: opt_str(&self.sec_id),
            description: opt_str(&self.description),
            issuer_id: opt_str(&self.issuer_id),
            include_expired: opt_true(self.include_expired),
            last_trade_date: opt_str(&self.last_trade_date),
        }
    }

    /// From the protobuf form; absent fields are unset.
    pub fn from_proto(p: proto::Contract) -> Self {
        Self {
            con_id: p.con_id.unwrap_or(0),
            symbol: str_or_empty(p.symbol),
            sec_type: str_or_empty(p.sec_type),
            last_trade_date_or_contract_month: str_or_empty(p.last_trade_date_or_contract_month),
            strike: p.strike,
            right: str_or_empty(p.right),
            multiplier: p.multiplier,
            exchange: str_or_empty(p.exchange),
            primary_exchange: str_or_empty(p.primary_exch),
            currency: str_or_empty(p.currency),
            local_symbol: str_or_empty(p.local_symbol),
            trading_class: str_or_empty(p.trading_class),
            include_expired: p.include_expired.unwrap_or(false),
            sec_id_type: str_or_empty(p.sec_id_type),
            sec_id: str_or_empty(p.sec_id),
            description: str_or_empty(p.description),
            issuer_id: str_or_empty(p.issuer_id),
            last_trade_date: str_or_empty(p.last_trade_date),
        }
    }

    /// The 12 contract fields every text request starts with (conId … tradingClass).
    pub(crate) fn write_request_fields(&self, w: &mut FieldWriter<'_>) {
        w.i32("con_id", self.con_id)
            .str("symbol", &self.symbol)
            .str("sec_type", &self.sec_type)
            .str(
                "last_trade_date_or_contract_month",
                &self.last_trade_date_or_contract_month,
            )
            .opt_f64("strike", self.strike)
            .str("right", &self.right)
            .opt_f64("multiplier", self.multiplier)
            .str("exchange", &self.exchange)
            .str("primary_exchange", &self.primary_exchange)
            .str("currency", &self.currency)
            .str("local_symbol", &self.local_symbol)
            .str("trading_class", &self.trading_class);
    }

    /// Read the 12 request contract fields (server side of [`Self::write_request_fields`]).
    pub(crate) fn read_request_fields(r: &mut FieldReader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            con_id: r.i32("con_id")?,
            symbol: r.string("symbol")?,
            sec_type: r.string("sec_type")?,
            last_trade_date_or_contract_month: r.string("last_trade_date_or_contract_month")?,
            strike: r.opt_f64("strike")?,
            right: r.string("right")?,
            multiplier: r.opt_f64("multiplier")?,
            exchange: r.string("exchange")?,
            primary_exchange: r.string("primary_exchange")?,
            currency: r.string("currency")?,
            local_symbol: r.string("local_symbol")?,
            trading_class: r.string("trading_class")?,
            ..Self::default()
        })
    }
}

/// What `reqContractDetails` returns per match, beyond the contract itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContractDetails {
    /// Market name.
    pub market_name: String,
    /// Minimum price increment.
    pub min_tick: f64,
    /// Comma-separated order types.
    pub order_types: String,
    /// Comma-separated exchanges.
    pub valid_exchanges: String,
    /// Price magnifier.
    pub price_magnifier: i32,
    /// Underlying contract id.
    pub under_con_id: i32,
    /// Descriptive name, e.g. `APPLE INC`.
    pub long_name: String,
    /// Contract month (derivatives).
    pub contract_month: String,
    /// Industry.
    pub industry: String,
    /// Category.
    pub category: String,
    /// Subcategory.
    pub subcategory: String,
    /// Exchange time zone, e.g. `US/Eastern`.
    pub time_zone_id: String,
    /// Trading hours, `;`-separated sessions.
    pub trading_hours: String,
    /// Liquid (regular) hours, `;`-separated sessions.
    pub liquid_hours: String,
    /// Economic value rule.
    pub ev_rule: String,
    /// Economic value multiplier.
    pub ev_multiplier: f64,
    /// Security ids, e.g. `("ISIN", "US0378331005")`.
    pub sec_id_list: Vec<(String, String)>,
    /// Aggregated group.
    pub agg_group: i32,
    /// Underlying symbol.
    pub under_symbol: String,
    /// Underlying security type.
    pub under_sec_type: String,
    /// Comma-separated market rule ids.
    pub market_rule_ids: String,
    /// Real expiration date.
    pub real_expiration_date: String,
    /// Stock type, e.g. `COMMON`.
    pub stock_type: String,
    /// Minimum order size (decimal text).
    pub min_size: String,
    /// Order size increment (decimal text).
    pub size_increment: String,
    /// Suggested size increment (decimal text).
    pub suggested_size_increment: String,
    /// Why the contract cannot be traded: `(id, description)`.
    pub ineligibility_reasons: Vec<(String, String)>,
}

impl ContractDetails {
    /// The protobuf form.
    pub fn to_proto(&self) -> proto::ContractDetails {
        proto::ContractDetails {
            market_name: opt_str(&self.market_name),
            min_tick: Some(format_f64(self.min_tick)),
            order_types: opt_str(&self.order_types),
            valid_exchanges: opt_str(&self.valid_exchanges),
            price_magnifier: opt_nz(self.price_magnifier),
            under_con_id: opt_nz(self.under_con_id),
            long_name: opt_str(&self.long_name),
            contract_month: opt_str(&self.contract_month),
            industry: opt_str(&self.industry),
            category: opt_str(&self.category),
            subcategory: opt_str(&self.subcategory),
            time_zone_id: opt_str(&self.time_zone_id),
            trading_hours: opt_str(&self.trading_hours),
            liquid_hours: opt_str(&self.liquid_hours),
            ev_rule: opt_str(&self.ev_rule),
            ev_multiplier: (self.ev_multiplier != 0.0).then_some(self.ev_multiplier),
            sec_id_list: self.sec_id_list.iter().cloned().collect(),
            agg_group: opt_nz(self.agg_group),
            under_symbol: opt_str(&self.under_symbol),
            under_sec_type: opt_str(&self.under_sec_type),
            market_rule_ids: opt_str(&self.market_rule_ids),
            real_expiration_date: opt_str(&self.real_expiration_date),
            stock_type: opt_str(&self.stock_type),
            min_size: opt_str(&self.min_size),
            size_increment: opt_str(&self.size_increment),
            suggested_size_increment: opt_str(&self.suggested_size_increment),
            ineligibility_reason_list: self
                .ineligibility_reasons
                .iter()
                .map(|(id, description)| proto::IneligibilityReason {
                    id: Some(id.clone()),
                    description: Some(description.clone()),
                })
                .collect(),
        }
    }

    /// From the protobuf form. The security-id map arrives sorted by key (protobuf maps have no
    /// order).
    pub fn from_proto(p: proto::ContractDetails, msg: &'static str) -> Result<Self, DecodeError> {
        Ok(Self {
            market_name: str_or_empty(p.market_name),
            min_tick: decimal(p.min_tick.as_deref(), 0.0, msg, "min_tick")?,
            order_types: str_or_empty(p.order_types),
            valid_exchanges: str_or_empty(p.valid_exchanges),
            price_magnifier: p.price_magnifier.unwrap_or(0),
            under_con_id: p.under_con_id.unwrap_or(0),
            long_name: str_or_empty(p.long_name),
            contract_month: str_or_empty(p.contract_month),
            industry: str_or_empty(p.industry),
            category: str_or_empty(p.category),
            subcategory: str_or_empty(p.subcategory),
            time_zone_id: str_or_empty(p.time_zone_id),
            trading_hours: str_or_empty(p.trading_hours),
            liquid_hours: str_or_empty(p.liquid_hours),
            ev_rule: str_or_empty(p.ev_rule),
            ev_multiplier: p.ev_multiplier.unwrap_or(0.0),
            sec_id_list: p.sec_id_list.into_iter().collect(),
            agg_group: p.agg_group.unwrap_or(0),
            under_symbol: str_or_empty(p.under_symbol),
            under_sec_type: str_or_empty(p.under_sec_type),
            market_rule_ids: str_or_empty(p.market_rule_ids),
            real_expiration_date: str_or_empty(p.real_expiration_date),
            stock_type: str_or_empty(p.stock_type),
            min_size: str_or_empty(p.min_size),
            size_increment: str_or_empty(p.size_increment),
            suggested_size_increment: str_or_empty(p.suggested_size_increment),
            ineligibility_reasons: p
                .ineligibility_reason_list
                .into_iter()
                .map(|r| (str_or_empty(r.id), str_or_empty(r.description)))
                .collect(),
        })
    }
}

/// Number of fund fields a FUND contract carries in text contract data from version 179. We do not
/// model them: they are written empty and skipped on read.
const FUND_FIELDS: usize = 17;

/// Text layout of `contractData` (msg 10) after the message id, gated by server version exactly as
/// IB's decoder reads it (`processContractDataMsg`).
pub(crate) fn write_contract_data(
    w: &mut FieldWriter<'_>,
    sv: i32,
    req_id: i32,
    c: &Contract,
    d: &ContractDetails,
) {
    if sv < version::SIZE_RULES {
        w.i32("version", 8);
    }
    w.i32("req_id", req_id)
        .str("symbol", &c.symbol)
        .str("sec_type", &c.sec_type)
        .str(
            "last_trade_date_or_contract_month",
            &c.last_trade_date_or_contract_month,
        );
    if sv >= version::LAST_TRADE_DATE {
        w.str("last_trade_date", &c.last_trade_date);
    }
    w.opt_f64("strike", c.strike)
        .str("right", &c.right)
        .str("exchange", &c.exchange)
        .str("currency", &c.currency)
        .str("local_symbol", &c.local_symbol)
        .str("market_name", &d.market_name)
        .str("trading_class", &c.trading_class)
        .i32("con_id", c.con_id)
        .f64("min_tick", d.min_tick);
    if (version::MD_SIZE_MULTIPLIER..version::SIZE_RULES).contains(&sv) {
        w.i32("md_size_multiplier", 1);
    }
    w.opt_f64("multiplier", c.multiplier)
        .str("order_types", &d.order_types)
        .str("valid_exchanges", &d.valid_exchanges)
        .i32("price_magnifier", d.price_magnifier)
        .i32("under_con_id", d.under_con_id)
        .str("long_name", &d.long_name)
        .str("primary_exchange", &c.primary_exchange)
        .str("contract_month", &d.contract_month)
        .str("industry", &d.industry)
        .str("category", &d.category)
        .str("subcategory", &d.subcategory)
        .str("time_zone_id", &d.time_zone_id)
        .str("trading_hours", &d.trading_hours)
        .str("liquid_hours", &d.liquid_hours)
        .str("ev_rule", &d.ev_rule)
        .f64("ev_multiplier", d.ev_multiplier);
    write_pairs(w, "sec_id_list", &d.sec_id_list);
    if sv >= version::AGG_GROUP {
        w.i32("agg_group", d.agg_group);
    }
    if sv >= version::UNDERLYING_INFO {
        w.str("under_symbol", &d.under_symbol)
            .str("under_sec_type", &d.under_sec_type);
    }
    if sv >= version::MARKET_RULES {
        w.str("market_rule_ids", &d.market_rule_ids);
    }
    if sv >= version::REAL_EXPIRATION_DATE {
        w.str("real_expiration_date", &d.real_expiration_date);
    }
    if sv >= version::STOCK_TYPE {
        w.str("stock_type", &d.stock_type);
    }
    if (version::FRACTIONAL_SIZE_SUPPORT..version::SIZE_RULES).contains(&sv) {
        w.str("size_min_tick", "");
    }
    if sv >= version::SIZE_RULES {
        w.str("min_size", &d.min_size)
            .str("size_increment", &d.size_increment)
            .str("suggested_size_increment", &d.suggested_size_increment);
    }
    if sv >= version::FUND_DATA_FIELDS && c.sec_type == "FUND" {
        for _ in 0..FUND_FIELDS {
            w.str("fund_field", "");
        }
    }
    if sv >= version::INELIGIBILITY_REASONS {
        write_pairs(w, "ineligibility_reasons", &d.ineligibility_reasons);
    }
}

/// Inverse of [`write_contract_data`].
pub(crate) fn read_contract_data(
    r: &mut FieldReader<'_>,
    sv: i32,
) -> Result<(i32, Contract, ContractDetails), DecodeError> {
    let msg_version = if sv < version::SIZE_RULES {
        r.i32("version")?
    } else {
        8
    };
    let req_id = if msg_version >= 3 {
        r.i32("req_id")?
    } else {
        -1
    };
    let mut c = Contract {
        symbol: r.string("symbol")?,
        sec_type: r.string("sec_type")?,
        last_trade_date_or_contract_month: r.string("last_trade_date_or_contract_month")?,
        ..Contract::default()
    };
    if sv >= version::LAST_TRADE_DATE {
        c.last_trade_date = r.string("last_trade_date")?;
    }
    c.strike = r.opt_f64("strike")?;
    c.right = r.string("right")?;
    c.exchange = r.string("exchange")?;
    c.currency = r.string("currency")?;
    c.local_symbol = r.string("local_symbol")?;
    let mut d = ContractDetails {
        market_name: r.string("market_name")?,
        ..ContractDetails::default()
    };
    c.trading_class = r.string("trading_class")?;
    c.con_id = r.i32("con_id")?;
    d.min_tick = r.f64("min_tick")?;
    if (version::MD_SIZE_MULTIPLIER..version::SIZE_RULES).contains(&sv) {
        r.i32("md_size_multiplier")?;
    }
    c.multiplier = r.opt_f64("multiplier")?;
    d.order_types = r.string("order_types")?;
    d.valid_exchanges = r.string("valid_exchanges")?;
    d.price_magnifier = r.i32("price_magnifier")?;
    if msg_version >= 4 {
        d.under_con_id = r.i32("under_con_id")?;
    }
    if msg_version >= 5 {
        d.long_name = r.string("long_name")?;
        c.primary_exchange = r.string("primary_exchange")?;
    }
    if msg_version >= 6 {
        d.contract_month = r.string("contract_month")?;
        d.industry = r.string("industry")?;
        d.category = r.string("category")?;
        d.subcategory = r.string("subcategory")?;
        d.time_zone_id = r.string("time_zone_id")?;
        d.trading_hours = r.string("trading_hours")?;
        d.liquid_hours = r.string("liquid_hours")?;
    }
    if msg_version >= 8 {
        d.ev_rule = r.string("ev_rule")?;
        d.ev_multiplier = r.f64("ev_multiplier")?;
    }
    if msg_version >= 7 {
        d.sec_id_list = read_pairs(r, "sec_id_list")?;
    }
    if sv >= version::AGG_GROUP {
        d.agg_group = r.i32("agg_group")?;
    }
    if sv >= version::UNDERLYING_INFO {
        d.under_symbol = r.string("under_symbol")?;
        d.under_sec_type = r.string("under_sec_type")?;
    }
    if sv >= version::MARKET_RULES {
        d.market_rule_ids = r.string("market_rule_ids")?;
    }
    if sv >= version::REAL_EXPIRATION_DATE {
        d.real_expiration_date = r.string("real_expiration_date")?;
    }
    if sv >= version::STOCK_TYPE {
        d.stock_type = r.string("stock_type")?;
    }
    if (version::FRACTIONAL_SIZE_SUPPORT..version::SIZE_RULES).contains(&sv) {
        r.str("size_min_tick")?;
    }
    if sv >= version::SIZE_RULES {
        d.min_size = r.string("min_size")?;
        d.size_increment = r.string("size_increment")?;
        d.suggested_size_increment = r.string("suggested_size_increment")?;
    }
    if sv >= version::FUND_DATA_FIELDS && c.sec_type == "FUND" {
        for _ in 0..FUND_FIELDS {
            r.str("fund_field")?;
        }
    }
    if sv >= version::INELIGIBILITY_REASONS {
        d.ineligibility_reasons = read_pairs(r, "ineligibility_reasons")?;
    }
    Ok((req_id, c, d))
}

/// A count followed by that many `(a, b)` field pairs.
fn write_pairs(w: &mut FieldWriter<'_>, field: &'static str, pairs: &[(String, String)]) {
    w.i32(field, i32::try_from(pairs.len()).unwrap_or(i32::MAX));
    for (a, b) in pairs {
        w.str(field, a).str(field, b);
    }
}

fn read_pairs(
    r: &mut FieldReader<'_>,
    field: &'static str,
) -> Result<Vec<(String, String)>, DecodeError> {
    let n = r.count(field, 2)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push((r.string(field)?, r.string(field)?));
    }
    Ok(out)
}

/// One match of `reqMatchingSymbols`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContractDescription {
    /// The contract (con id, symbol, sec type, primary exchange, currency, description, issuer id).
    pub contract: Contract,
    /// Security types of derivatives available on it.
    pub derivative_sec_types: Vec<String>,
}

impl ContractDescription {
    /// The protobuf form.
    pub fn to_proto(&self) -> proto::ContractDescription {
        proto::ContractDescription {
            contract: Some(self.contract.to_proto()),
            derivative_sec_types: self.derivative_sec_types.clone(),
        }
    }

    /// From the protobuf form (a missing contract reads as the default, as ibapi does).
    pub fn from_proto(p: proto::ContractDescription) -> Self {
        Self {
            contract: p.contract.map(Contract::from_proto).unwrap_or_default(),
            derivative_sec_types: p.derivative_sec_types,
        }
    }

    pub(crate) fn write_text(&self, w: &mut FieldWriter<'_>, sv: i32) {
        let c = &self.contract;
        w.i32("con_id", c.con_id)
            .str("symbol", &c.symbol)
            .str("sec_type", &c.sec_type)
            .str("primary_exchange", &c.primary_exchange)
            .str("currency", &c.currency)
            .i32(
                "derivative_sec_types",
                i32::try_from(self.derivative_sec_types.len()).unwrap_or(i32::MAX),
            );
        for t in &self.derivative_sec_types {
            w.str("derivative_sec_type", t);
        }
        if sv >= version::BOND_ISSUERID {
            w.str("description", &c.description)
                .str("issuer_id", &c.issuer_id);
        }
    }

    pub(crate) fn read_text(r: &mut FieldReader<'_>, sv: i32) -> Result<Self, DecodeError> {
        let mut c = Contract {
            con_id: r.i32("con_id")?,
            symbol: r.string("symbol")?,
            sec_type: r.string("sec_type")?,
            primary_exchange: r.string("primary_exchange")?,
            currency: r.string("currency")?,
            ..Contract::default()
        };
        let n = r.count("derivative_sec_types", 1)?;
        let mut derivative_sec_types = Vec::with_capacity(n);
        for _ in 0..n {
            derivative_sec_types.push(r.string("derivative_sec_type")?);
        }
        if sv >= version::BOND_ISSUERID {
            c.description = r.string("description")?;
            c.issuer_id = r.string("issuer_id")?;
        }
        Ok(Self {
            contract: c,
            derivative_sec_types,
        })
    }
}
