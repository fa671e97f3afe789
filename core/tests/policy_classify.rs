//! Table tests for the error classifier: every real IB text in docs/ib-facts.md#error-texts
//! (plus the texts quoted in the public issues it cites), with the expected class and advice, and an
//! insta snapshot of the whole table so any change in classification is reviewed.

use ibconn_core::classify::{
    check_end_date, classify, explain, Advice, Classification, Connectivity, ErrorClass, Farm,
    FarmState, RequestContext,
};

const NONE: RequestContext = RequestContext {
    cancelled_locally: false,
    start_unix: None,
    head_timestamp_unix: None,
    clamped_once: false,
};
const CANCELLED: RequestContext = RequestContext {
    cancelled_locally: true,
    ..NONE
};
/// Start 2019-01-01, head timestamp 2020-01-01 (the request reaches back before the listing).
const BEFORE_HEAD: RequestContext = RequestContext {
    start_unix: Some(1_546_300_800),
    head_timestamp_unix: Some(1_577_836_800),
    ..NONE
};
const BEFORE_HEAD_RETRIED: RequestContext = RequestContext {
    clamped_once: true,
    ..BEFORE_HEAD
};
/// Start after the head timestamp: a genuine gap / holiday.
const AFTER_HEAD: RequestContext = RequestContext {
    start_unix: Some(1_600_000_000),
    head_timestamp_unix: Some(1_577_836_800),
    ..NONE
};

struct Row {
    code: i32,
    text: &'static str,
    context: RequestContext,
    class: ErrorClass,
    advice: Advice,
    /// Where the text comes from.
    source: &'static str,
}

const fn row(
    code: i32,
    text: &'static str,
    context: RequestContext,
    class: ErrorClass,
    advice: Advice,
    source: &'static str,
) -> Row {
    Row {
        code,
        text,
        context,
        class,
        advice,
        source,
    }
}

const HMDS: &str = "Historical Market Data Service error message:";

fn table() -> Vec<Row> {
    use Advice as A;
    use ErrorClass as E;
    let hm =
        |detail: &str| -> &'static str { Box::leak(format!("{HMDS}{detail}").into_boxed_str()) };
    vec![
        // ---- 162, message first -------------------------------------------------------------
        row(162, hm("Historical data request pacing violation"), NONE, E::Pacing, A::RetryWhenPacerAllows, "docs/ib-facts.md#error-texts; Lean#607"),
        row(162, hm("Historical data request pacing violation"), BEFORE_HEAD, E::Pacing, A::RetryWhenPacerAllows, "pacing wins over an old start: the message decides"),
        row(162, hm("HMDS query returned no data: AAPL@SMART Trades"), NONE, E::NoData, A::ReturnEmpty, "docs/ib-facts.md#error-texts"),
        row(162, hm("HMDS query returned no data: DELL@SMART Trades"), NONE, E::NoData, A::ReturnEmpty, "swigibpy#11"),
        row(162, hm("HMDS query returned no data: EUR.USD@IDEALPRO Ask"), NONE, E::NoData, A::ReturnEmpty, "Lean#607"),
        row(162, hm("HMDS query returned no data: ESM3@CME Trades"), AFTER_HEAD, E::NoData, A::ReturnEmpty, "wrighter/ib-scripts#17 (gap after head)"),
        row(162, hm("HMDS query returned no data"), BEFORE_HEAD, E::BeforeHeadTimestamp, A::ClampStartAndRetry { start_unix: 1_577_836_800 }, "Lean#4344 (start before listing)"),
        row(162, hm("HMDS query returned no data"), BEFORE_HEAD_RETRIED, E::BeforeHeadTimestamp, A::ReturnEmpty, "Lean#4344, second time: retry only once"),
        row(162, hm("API historical data query cancelled: 28"), NONE, E::QueryCancelled, A::ReportCancelled, "docs/ib-facts.md#error-texts; ib_insync#268"),
        row(162, hm("API historical data query cancelled: 29"), CANCELLED, E::QueryCancelled, A::ReportCancelled, "ib_insync#268 (client timeout)"),
        row(162, hm("No market data permissions for NYSE STK"), NONE, E::NoPermission, A::Fail, "docs/ib-facts.md#error-texts; ib_insync#461"),
        row(162, hm("Trading TWS session is connected from a different IP address"), NONE, E::CompetingSession, A::Fail, "docs/ib-facts.md#error-texts"),
        row(162, hm("Time length exceed max"), NONE, E::InvalidRequest, A::Fail, "docs/ib-facts.md#error-texts"),
        row(162, hm("invalid step"), NONE, E::InvalidRequest, A::Fail, "docs/ib-facts.md#error-texts (\"invalid step\")"),
        row(162, hm("No historical market data for EUR/CASH@IDEALPRO Last 60"), NONE, E::InvalidRequest, A::Fail, "ib-ruby PR#50 (TRADES on forex)"),
        row(162, "Historical Market Data Service error message.", NONE, E::Unknown, A::Fail, "docs/ib-facts.md#error-texts (doc text, no detail)"),
        row(162, "Mensaje de error de los servicios de datos de mercado históricos", NONE, E::Unknown, A::Fail, "wrighter/ib-scripts#1 (localized, Spanish)"),
        row(162, "Mensaje de error de los servicios de datos de mercado históricos:Violación del ritmo de solicitudes", NONE, E::Unknown, A::Fail, "synthetic Spanish detail: never pacing"),
        row(162, "Mensaje de error de los servicios de datos de mercado históricos", CANCELLED, E::QueryCancelled, A::ReportCancelled, "localized, but we cancelled it"),
        // ---- other codes ----------------------------------------------------------------------
        row(100, "Max rate of messages per second has been exceeded.", NONE, E::RateExceeded, A::RetryWhenPacerAllows, "docs/ib-facts.md#error-texts"),
        row(100, "Max rate of messages per second has been exceeded:max=50 rec=108 (1)", NONE, E::RateExceeded, A::RetryWhenPacerAllows, "pilwon/node-ib#49 (\"max=50 rec=108\"); exact suffix synthetic"),
        row(165, "Historical Market Data Service query message:HMDS server connection was successful.", NONE, E::Informational, A::Ignore, "docs/ib-facts.md#error-texts"),
        row(166, "HMDS Expired Contract Violation.", NONE, E::InvalidRequest, A::Fail, "docs/ib-facts.md#error-texts"),
        row(200, "No security definition has been found for the request.", NONE, E::NoSecurityDefinition, A::Fail, "docs/ib-facts.md#error-texts"),
        row(200, "The contract description specified for XYZ is ambiguous", NONE, E::NoSecurityDefinition, A::Fail, "docs/ib-facts.md#error-texts"),
        row(300, "Can't find EId with ticker Id:", NONE, E::Informational, A::Ignore, "docs/ib-facts.md#error-texts"),
        row(321, "Error validating request:-'bW' : cause - Historical data bar size setting is invalid.", NONE, E::InvalidRequest, A::Fail, "docs/ib-facts.md#error-texts shape; detail synthetic"),
        row(322, "Server error when processing an API client request.", NONE, E::Unknown, A::Fail, "docs/ib-facts.md#error-texts"),
        row(322, "Error processing request.-'bO' : cause - Duplicate ticker id", NONE, E::DuplicateId, A::RetryWhenPacerAllows, "stoqey/ib#240"),
        row(326, "Unable to connect as the client id is already in use. Retry with a unique client id.", NONE, E::ClientIdInUse, A::UseNextClientId, "docs/ib-facts.md#error-texts"),
        row(354, "Requested market data is not subscribed. Check API status by selecting the Account menu then under Management choose Market Data Subscription Manager and/or availability of delayed data.", NONE, E::NoPermission, A::Fail, "docs/ib-facts.md#error-texts"),
        row(354, "Not subscribed to requested market data.", NONE, E::NoPermission, A::Fail, "docs/ib-facts.md#error-texts (older doc)"),
        row(366, "No historical data query found for ticker id:", NONE, E::Informational, A::Ignore, "docs/ib-facts.md#error-texts"),
        row(420, "Invalid real-time query.", NONE, E::InvalidRequest, A::Fail, "docs/ib-facts.md#error-texts"),
        row(420, "Invalid Real-time Query:Historical data request pacing violation", NONE, E::Pacing, A::RetryWhenPacerAllows, "synthetic: 420 carrying a pacing text"),
        row(501, "Already connected.", NONE, E::Unknown, A::Fail, "docs/ib-facts.md#error-texts"),
        row(502, "Couldn't connect to TWS. Confirm that \"Enable ActiveX and Socket Clients\" is enabled and connection port is the same as \"Socket Port\" on the TWS \"Edit->Global Configuration...->API->Settings\" menu. Live Trading ports: TWS: 7496; IB Gateway: 4001. Simulated Trading ports: TWS: 7497; IB Gateway: 4002.", NONE, E::Connectivity(Connectivity::NotConnected), A::Reconnect, "docs/ib-facts.md#error-texts"),
        row(503, "The TWS is out of date and must be upgraded.", NONE, E::Unknown, A::Fail, "docs/ib-facts.md#error-texts"),
        row(504, "Not connected", NONE, E::Connectivity(Connectivity::NotConnected), A::Reconnect, "docs/ib-facts.md#error-texts"),
        row(505, "Fatal Error: Unknown message id.", NONE, E::Connectivity(Connectivity::SocketBroken), A::Reconnect, "docs/ib-facts.md#error-texts"),
        row(507, "Bad message length", NONE, E::Connectivity(Connectivity::SocketBroken), A::Reconnect, "docs/ib-facts.md#error-texts"),
        row(509, "Exception caught while reading socket - ", NONE, E::Connectivity(Connectivity::SocketBroken), A::Reconnect, "docs/ib-facts.md#error-texts"),
        row(1100, "Connectivity between IB and the TWS has been lost.", NONE, E::Connectivity(Connectivity::Lost), A::AwaitRestore, "docs/ib-facts.md#error-texts (doc)"),
        row(1100, "Connectivity between IBKR and Trader Workstation has been lost.", NONE, E::Connectivity(Connectivity::Lost), A::AwaitRestore, "docs/ib-facts.md#error-texts (live)"),
        row(1101, "Connectivity between IB and TWS has been restored- data lost.*", NONE, E::Connectivity(Connectivity::RestoredDataLost), A::Resubscribe, "docs/ib-facts.md#error-texts (doc)"),
        row(1101, "Connectivity between IBKR and Trader Workstation has been restored - data lost.", NONE, E::Connectivity(Connectivity::RestoredDataLost), A::Resubscribe, "docs/ib-facts.md#error-texts (live)"),
        row(1102, "Connectivity between IB and TWS has been restored- data maintained.", NONE, E::Connectivity(Connectivity::RestoredDataKept), A::Resume, "docs/ib-facts.md#error-texts (doc)"),
        row(1102, "Connectivity between IBKR and Trader Workstation has been restored - data maintained.", NONE, E::Connectivity(Connectivity::RestoredDataKept), A::Resume, "docs/ib-facts.md#error-texts (live)"),
        row(1300, "TWS socket port has been reset and this connection is being dropped. Please reconnect on the new port – 4002", NONE, E::Connectivity(Connectivity::SocketPortReset), A::Reconnect, "docs/ib-facts.md#error-texts"),
        row(2103, "Market data farm connection is broken:usfarm", NONE, E::FarmStatus(Farm::MarketData, FarmState::Broken), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2104, "Market data farm connection is OK:usfarm", NONE, E::FarmStatus(Farm::MarketData, FarmState::Ok), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2105, "HMDS data farm connection is broken:ushmds", NONE, E::FarmStatus(Farm::Historical, FarmState::Broken), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2106, "HMDS data farm connection is OK:ushmds", NONE, E::FarmStatus(Farm::Historical, FarmState::Ok), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2107, "HMDS data farm connection is inactive but should be available upon demand.ushmds", NONE, E::FarmStatus(Farm::Historical, FarmState::Inactive), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2108, "Market data farm connection is inactive but should be available upon demand.usfarm", NONE, E::FarmStatus(Farm::MarketData, FarmState::Inactive), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2109, "Order Event Warning: Attribute \"Outside Regular Trading Hours\" is ignored based on the order type and destination. PlaceOrder is now processed.", NONE, E::Informational, A::Ignore, "docs/ib-facts.md#error-texts"),
        row(2110, "Connectivity between TWS and server is broken. It will be restored automatically.", NONE, E::Connectivity(Connectivity::ServerLinkBroken), A::AwaitRestore, "docs/ib-facts.md#error-texts"),
        row(2119, "Market data farm is connecting:usfarm", NONE, E::FarmStatus(Farm::MarketData, FarmState::Connecting), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2157, "Sec-def data farm connection is broken:secdefnj", NONE, E::FarmStatus(Farm::SecDef, FarmState::Broken), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2158, "Sec-def data farm connection is OK:secdefnj", NONE, E::FarmStatus(Farm::SecDef, FarmState::Ok), A::Ignore, "docs/ib-facts.md#error-texts (live)"),
        row(2188, "Up-to-the-second historical data requires additional subscription for the API.", NONE, E::Informational, A::Ignore, "rust-ibapi#764 (bars still arrive)"),
        row(10090, "Part of requested market data is not subscribed.", NONE, E::Informational, A::Ignore, "docs/ib-facts.md#error-texts"),
        row(10167, "Requested market data is not subscribed. Displaying delayed market data.", NONE, E::Informational, A::Ignore, "docs/ib-facts.md#error-texts"),
        row(10186, "Requested market data is not subscribed. Delayed market data is not enabled", NONE, E::NoPermission, A::Fail, "docs/ib-facts.md#error-texts"),
        row(10187, "Failed to request historical ticks:No market data permissions for ISLAND STK", NONE, E::NoPermission, A::Fail, "docs/ib-facts.md#error-texts (live)"),
        row(10189, "Failed to request tick-by-tick data. Invalid Real-time Query", NONE, E::InvalidRequest, A::Fail, "docs/ib-facts.md#error-texts"),
        row(10197, "No market data during competing session", NONE, E::CompetingSession, A::Fail, "docs/ib-facts.md#error-texts"),
        row(101, "Max number of tickers has been reached.", NONE, E::StreamLimit, A::Fail, "docs/ib-facts.md#streaming-limits"),
        row(10190, "Max number of tick-by-tick requests has been reached.", NONE, E::StreamLimit, A::Fail, "docs/ib-facts.md#streaming-limits"),
        row(322, "Error processing request.-'bO' : cause - Only 50 simultaneous API historical data requests allowed.", NONE, E::Pacing, A::RetryWhenPacerAllows, "ib_insync#293"),
        row(10168, "Requested market data is not subscribed. Delayed market data is not enabled.", NONE, E::NoPermission, A::Fail, "docs/ib-facts.md#streaming-limits"),
        row(10225, "Bust event occurred, current subscription is deactivated. Please resubscribe real-time bars immediately.", NONE, E::Informational, A::Resubscribe, "10225 bust; IB doc text"),
        row(99999, "Something IB has not documented", NONE, E::Unknown, A::Fail, "unknown code"),
    ]
}

#[test]
fn every_known_text_is_classified_as_expected() {
    let mut wrong = Vec::new();
    for r in table() {
        let got = classify(r.code, r.text, &r.context);
        let want = Classification {
            class: r.class,
            advice: r.advice,
        };
        if got != want {
            wrong.push(format!(
                "{} {:?} ({}): got {got:?}, want {want:?}",
                r.code, r.text, r.source
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_unrecognised_162_is_ever_pacing() {
    let odd = [
        "",
        "Historical Market Data Service error message:",
        "Historical Market Data Service error message:Something new",
        "Mensaje de error de los servicios de datos de mercado históricos:violación de ritmo",
        "Fehlermeldung des HMDS-Dienstes: Tempoverstoß bei historischen Datenanfragen",
        "pacing", // a fragment of a real text is not the real text
    ];
    for text in odd {
        for context in [NONE, CANCELLED, BEFORE_HEAD] {
            assert_ne!(
                classify(162, text, &context).class,
                ErrorClass::Pacing,
                "{text:?}"
            );
        }
    }
}

#[test]
fn future_end_is_rejected_before_sending() {
    let now = 1_700_000_000;
    assert_eq!(
        check_end_date(Some(now + 1), now).map_err(|c| c.advice),
        Err(Advice::RejectBeforeSending)
    );
    assert_eq!(check_end_date(Some(now), now), Ok(()));
    assert_eq!(check_end_date(None, now), Ok(()));
}

#[test]
fn snapshot_of_the_full_table() {
    let lines: Vec<String> = table()
        .iter()
        .map(|r| {
            let got = classify(r.code, r.text, &r.context);
            let ctx = match (
                r.context.cancelled_locally,
                r.context.start_unix,
                r.context.clamped_once,
            ) {
                (true, _, _) => "cancelled",
                (_, Some(s), true) if s < r.context.head_timestamp_unix.unwrap_or(i64::MIN) => {
                    "before-head, retried"
                }
                (_, Some(s), _) if s < r.context.head_timestamp_unix.unwrap_or(i64::MIN) => {
                    "before-head"
                }
                (_, Some(_), _) => "after-head",
                _ => "-",
            };
            format!(
                "{:>5} | {:<20} | {:?} -> {:?} | {}",
                r.code, ctx, got.class, got.advice, r.text
            )
        })
        .collect();
    insta::assert_snapshot!("classification_table", lines.join("\n"));
}

#[test]
fn every_explanation_is_in_a_users_words() {
    // The words `ibconn explain` prints: three parts, none empty, no internal names.
    let internal = [
        "ReturnEmpty",
        "RetryWhenPacerAllows",
        "ClampStartAndRetry",
        "pacer",
        "Advice",
        "ErrorClass",
        "on_violation",
        "retrying will not help",
    ];
    let mut lines = Vec::new();
    for r in table() {
        let verdict = classify(r.code, r.text, &r.context);
        let e = explain(r.code, r.text, verdict);
        for part in [&e.what_happened, &e.what_ibconn_does, &e.what_you_can_do] {
            assert!(!part.trim().is_empty(), "{} {:?}", r.code, r.text);
            for word in internal {
                assert!(
                    !part.contains(word),
                    "{} {:?}: {word:?} in {part:?}",
                    r.code,
                    r.text
                );
            }
        }
        lines.push(format!(
            "{} | {}\n  happened: {}\n  ibconn:   {}\n  you:      {}",
            r.code, r.text, e.what_happened, e.what_ibconn_does, e.what_you_can_do
        ));
    }
    // A competing session clears when the other session ends; a missing subscription points
    // at delayed data or a subscription.
    for (code, text) in [
        (10197, "No market data during competing session"),
        (
            162,
            "Historical Market Data Service error message:Trading TWS session is connected from a different IP address",
        ),
    ] {
        let e = explain(code, text, classify(code, text, &NONE));
        assert!(e.what_you_can_do.contains("clears when the other session ends"), "{e:?}");
    }
    let e = explain(
        354,
        "Requested market data is not subscribed.",
        classify(354, "Requested market data is not subscribed.", &NONE),
    );
    assert!(e.what_you_can_do.contains("reqMarketDataType(3)"), "{e:?}");
    assert!(e.what_you_can_do.contains("subscribe"), "{e:?}");
    insta::assert_snapshot!("explanations", lines.join("\n"));
}
