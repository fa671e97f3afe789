//! The IB error codes and texts the sim sends, in one table (texts as live gateways send them,
//! docs/ib-facts.md#error-texts). Each constructor returns an [`IbError`]; the gateway wraps it in
//! an `ErrorMessage` with the request id and the time.

/// One of the gateway's data farms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Farm {
    /// `usfarm` (2103 broken / 2104 OK).
    MarketData,
    /// `ushmds` (2105 broken / 2106 OK); while it is down historical replies wait.
    Historical,
    /// `secdefnj` (2157 broken / 2158 OK).
    SecDef,
}

/// The language of the gateway's 162 texts (TWS and the Gateway localise them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    /// IB's English texts (the default).
    #[default]
    English,
    /// Spanish: "Mensaje de error de los servicios de datos de mercado históricos:…".
    Spanish,
}

/// An IB error code with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IbError {
    /// IB's code.
    pub code: i32,
    /// IB's text.
    pub text: String,
}

impl IbError {
    fn new(code: i32, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

/// Prefix of every error-162 text.
pub const HMDS_PREFIX: &str = "Historical Market Data Service error message:";

/// 100: more than 50 messages in a second.
pub fn max_rate() -> IbError {
    IbError::new(100, "Max rate of messages per second has been exceeded.")
}

/// 162: historical pacing violation.
pub fn pacing_violation() -> IbError {
    IbError::new(
        162,
        format!("{HMDS_PREFIX}Historical data request pacing violation"),
    )
}

/// 162: no data in the window (or before the head timestamp).
pub fn no_data(symbol: &str, exchange: &str, what_title: &str) -> IbError {
    IbError::new(
        162,
        format!("{HMDS_PREFIX}HMDS query returned no data: {symbol}@{exchange} {what_title}"),
    )
}

/// 162 for small bars (≤ 30 s) whose end is older than about six months. IB's documentation says
/// such data is unavailable but not which text it sends (docs/ib-facts.md#data-availability), so
/// this is the one attested 162 detail for data IB does not have: IB's "HMDS query returned no
/// data" ([`no_data`]).
pub fn small_bars_too_old(symbol: &str, exchange: &str, what_title: &str) -> IbError {
    no_data(symbol, exchange, what_title)
}

/// 162 for a request whose end date lies in the future. No text for it is attested: IB answers
/// such a request with a 162 (docs/ib-facts.md#data-availability), and the attested 162 for a
/// window without bars is "HMDS query returned no data" ([`no_data`]), so no bars come back.
pub fn end_in_future(symbol: &str, exchange: &str, what_title: &str) -> IbError {
    no_data(symbol, exchange, what_title)
}

/// 162: a series IB does not keep for the security type (TRADES on forex, quotes on an index;
/// docs/ib-facts.md#contracts), e.g. `No historical market data for EUR/CASH@FXSUBPIP Last 1d`:
/// TRADES is titled `Last`; `bar` is the bar size as IB writes it there (`60`, `1d`), absent for
/// a head timestamp. Forex is named on IB's `FXSUBPIP` venue.
pub fn no_historical_data(
    symbol: &str,
    sec_type: &str,
    exchange: &str,
    title: &str,
    bar: Option<&str>,
) -> IbError {
    let venue = if sec_type == "CASH" {
        "FXSUBPIP"
    } else {
        exchange
    };
    let bar = bar.map(|b| format!(" {b}")).unwrap_or_default();
    IbError::new(
        162,
        format!(
            "{HMDS_PREFIX}No historical market data for {symbol}/{sec_type}@{venue} {title}{bar}"
        ),
    )
}

/// 162: no market data permissions, e.g. scope `NYSE STK`.
pub fn no_permissions(scope: &str) -> IbError {
    IbError::new(
        162,
        format!("{HMDS_PREFIX}No market data permissions for {scope}"),
    )
}

/// 162: the duration is too long for the bar size.
pub fn time_length_exceeded() -> IbError {
    IbError::new(162, format!("{HMDS_PREFIX}Time length exceed max"))
}

/// 162: a pending query was cancelled by the client.
pub fn query_cancelled(req_id: i32) -> IbError {
    IbError::new(
        162,
        format!("{HMDS_PREFIX}API historical data query cancelled: {req_id}"),
    )
}

/// 200: unknown contract.
pub fn no_security_definition() -> IbError {
    IbError::new(
        200,
        "No security definition has been found for the request.",
    )
}

/// 200: several contracts match.
pub fn ambiguous(symbol: &str) -> IbError {
    IbError::new(
        200,
        format!("The contract description specified for {symbol} is ambiguous"),
    )
}

/// 320: a message that could not be decoded.
pub fn read_error() -> IbError {
    IbError::new(320, "Server error when reading an API client request.")
}

/// 321: a request that fails validation (`tag` names the field in IB's style).
pub fn validation(tag: &str, cause: &str) -> IbError {
    IbError::new(
        321,
        format!("Error validating request:-'{tag}' : cause - {cause}"),
    )
}

/// 322: a request reuses the id of a request still open on the session (IB's live text, from
/// stoqey/ib#240).
pub fn duplicate_ticker_id() -> IbError {
    IbError::new(
        322,
        "Error processing request.-'bO' : cause - Duplicate ticker id",
    )
}

/// 322 for the 51st open historical request (keep-up-to-date streams included), IB's live text
/// (erdewit/ib_insync#241, #293).
pub fn too_many_open_historical() -> IbError {
    IbError::new(
        322,
        "Error processing request:-'wd' : cause - Only 50 simultaneous API historical data requests allowed.",
    )
}

/// 101: a market-data line over the gateway's budget (`reqMktData`, `reqRealTimeBars`).
pub fn max_tickers() -> IbError {
    IbError::new(101, "Max number of tickers has been reached.")
}

/// 10190: a tick-by-tick request over the gateway's budget.
pub fn max_tick_by_tick() -> IbError {
    IbError::new(
        10190,
        "Max number of tick-by-tick requests has been reached.",
    )
}

/// 300: a cancel of a market-data, real-time-bars or tick-by-tick request that is not live (never
/// was, already cancelled, a finished snapshot).
pub fn no_ticker_id(req_id: i32) -> IbError {
    IbError::new(300, format!("Can't find EId with tickerId:{req_id}"))
}

/// 321: a snapshot with generic ticks (IB's live text).
pub fn snapshot_generic_ticks() -> IbError {
    IbError::new(
        321,
        "Error validating request.-'bO' : cause - Snapshot market data subscription is not applicable to generic ticks",
    )
}

/// 321: `reqRealTimeBars` with a `whatToShow` other than TRADES, MIDPOINT, BID or ASK (IB's live
/// text, atreyuxtrading/atreyu-backtrader-api#5).
pub fn real_time_what_to_show() -> IbError {
    IbError::new(
        321,
        "Error validating request.-'bY' : cause - What to show field is missing or incorrect.",
    )
}

/// 354: market data for an instrument without permissions, live or frozen requested.
pub fn not_subscribed() -> IbError {
    IbError::new(
        354,
        "Requested market data is not subscribed. Check API status by selecting the Account menu then under Management choose Market Data Subscription Manager and/or availability of delayed data.",
    )
}

/// 10167: no permissions, delayed data requested: delayed ticks follow.
pub fn delayed_displayed() -> IbError {
    IbError::new(
        10167,
        "Requested market data is not subscribed. Displaying delayed market data.",
    )
}

/// 420 for a real-time-bars request past the historical pacing window (live text).
pub fn real_time_pacing() -> IbError {
    IbError::new(
        420,
        "Invalid Real-time Query:Historical data request pacing violation",
    )
}

/// 420: real-time bars of an instrument without permissions (live text), or of a series IB does
/// not keep for it (TRADES on forex: no text attested, the sim's choice).
pub fn real_time_refused(cause: &str) -> IbError {
    IbError::new(420, format!("Invalid Real-time Query:{cause}"))
}

/// 10189: tick-by-tick data refused, e.g. an unknown tick type or no permissions; the cause after
/// IB's prefix is the sim's wording.
pub fn tick_by_tick_failed(cause: &str) -> IbError {
    IbError::new(
        10189,
        format!("Failed to request tick-by-tick data.{cause}"),
    )
}

/// 326: the client id is taken.
pub fn client_id_in_use() -> IbError {
    IbError::new(
        326,
        "Unable to connect as the client id is already in use. Retry with a unique client id.",
    )
}

/// 366: cancel of an unknown or finished historical query.
pub fn no_query_found(req_id: i32) -> IbError {
    IbError::new(
        366,
        format!("No historical data query found for ticker id:{req_id}"),
    )
}

/// 1100: the gateway lost its link to IB (live text).
pub fn link_lost() -> IbError {
    IbError::new(
        1100,
        "Connectivity between IBKR and Trader Workstation has been lost.",
    )
}

/// 1101 (`data_lost`) or 1102: the link is back (live texts).
pub fn link_restored(data_lost: bool) -> IbError {
    if data_lost {
        IbError::new(
            1101,
            "Connectivity between IBKR and Trader Workstation has been restored - data lost.",
        )
    } else {
        IbError::new(
            1102,
            "Connectivity between IBKR and Trader Workstation has been restored - data maintained.",
        )
    }
}

/// A farm's status notice: 2103/2104 (`usfarm`), 2105/2106 (`ushmds`), 2157/2158 (`secdefnj`).
pub fn farm_status(farm: Farm, ok: bool) -> IbError {
    let state = if ok { "OK" } else { "broken" };
    match farm {
        Farm::MarketData => IbError::new(
            if ok { 2104 } else { 2103 },
            format!("Market data farm connection is {state}:usfarm"),
        ),
        Farm::Historical => IbError::new(
            if ok { 2106 } else { 2105 },
            format!("HMDS data farm connection is {state}:ushmds"),
        ),
        Farm::SecDef => IbError::new(
            if ok { 2158 } else { 2157 },
            format!("Sec-def data farm connection is {state}:secdefnj"),
        ),
    }
}

/// Prefix of a Spanish gateway's 162 texts (docs/ib-facts.md#error-texts).
pub const HMDS_PREFIX_ES: &str =
    "Mensaje de error de los servicios de datos de mercado históricos:";

/// `err` as a gateway set to `locale` sends it. Only 162 texts are localised: the prefix is IB's
/// attested Spanish one; the details are our translations of the English details.
pub fn localize(err: IbError, locale: Locale) -> IbError {
    if err.code != 162 || locale == Locale::English {
        return err;
    }
    let Some(detail) = err.text.strip_prefix(HMDS_PREFIX) else {
        return err;
    };
    const DETAILS: [(&str, &str); 5] = [
        (
            "Historical data request pacing violation",
            "Infracción del ritmo de solicitudes de datos históricos",
        ),
        (
            "HMDS query returned no data",
            "La consulta HMDS no ha devuelto datos",
        ),
        (
            "No market data permissions for",
            "No hay permisos de datos de mercado para",
        ),
        ("Time length exceed max", "La duración supera el máximo"),
        (
            "API historical data query cancelled",
            "Consulta de datos históricos de la API cancelada",
        ),
    ];
    let detail = DETAILS
        .iter()
        .find_map(|(en, es)| detail.strip_prefix(en).map(|rest| format!("{es}{rest}")))
        .unwrap_or_else(|| detail.to_owned());
    IbError::new(162, format!("{HMDS_PREFIX_ES}{detail}"))
}

/// The request-less farm notices a gateway sends after START_API.
pub fn farm_notices() -> [IbError; 3] {
    [
        IbError::new(2104, "Market data farm connection is OK:usfarm"),
        IbError::new(2106, "HMDS data farm connection is OK:ushmds"),
        IbError::new(2158, "Sec-def data farm connection is OK:secdefnj"),
    ]
}
