//! IB error classification: `(code, message, request context) → class + retry advice`.
//!
//! IB reports very different situations under one code — 162 alone means "pacing violation", "no data",
//! "our own cancel", "no permissions" and more — and the text is localized when TWS runs in another
//! language. Earlier designs classified by code first (so a real 162 pacing violation became "no data")
//! or guessed "pacing" for anything unrecognised. This classifier:
//!
//! - decides 162 **by message first**, matching IB's English detail texts
//!   (docs/ib-facts.md#error-texts);
//! - never assumes pacing for an unrecognised or localized 162 — it becomes [`ErrorClass::Unknown`]
//!   (or [`ErrorClass::QueryCancelled`] when we cancelled the request ourselves);
//! - refines "no data" into "before head timestamp" only with the head timestamp cached for *that*
//!   request, passed in [`RequestContext`] — never from a global "last request" slot;
//! - keeps informational codes (farm status 21xx, 165, 2188, 10167) out of the error path.
//!
//! Times are unix seconds (`i64`), because head timestamps and end dates are wall-clock data.

use serde::{Deserialize, Serialize};

mod words;

pub use self::words::{explain, Explanation};

/// What the caller knows about the request an error refers to (correlated by request id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    /// We cancelled this request ourselves (explicit cancel or client-side timeout).
    pub cancelled_locally: bool,
    /// Start of the requested range (end − duration), unix seconds, if known.
    pub start_unix: Option<i64>,
    /// Head timestamp cached for this request's contract and `whatToShow`, unix seconds, if known.
    pub head_timestamp_unix: Option<i64>,
    /// This request is already the one retry made after clamping its start to the head timestamp.
    pub clamped_once: bool,
}

/// Which data farm a farm-status notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Farm {
    /// Market data farm (e.g. `usfarm`).
    MarketData,
    /// Historical data farm (HMDS, e.g. `ushmds`).
    Historical,
    /// Security-definition farm (e.g. `secdefnj`).
    SecDef,
}

/// A farm's reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FarmState {
    /// Connection broken (2103, 2105, 2157).
    Broken,
    /// Connection OK (2104, 2106, 2158).
    Ok,
    /// Inactive but available on demand (2107, 2108) — harmless.
    Inactive,
    /// Connecting (2119).
    Connecting,
}

/// Connectivity events between us, TWS / Gateway and IB's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Connectivity {
    /// 1100: TWS lost its link to IB; the socket stays up.
    Lost,
    /// 1101: link restored, market-data subscriptions lost.
    RestoredDataLost,
    /// 1102: link restored, subscriptions kept.
    RestoredDataKept,
    /// 1300: TWS reset its socket port; this connection is being dropped.
    SocketPortReset,
    /// 2110: link between TWS and IB's server broken; restored automatically.
    ServerLinkBroken,
    /// 502 / 504: could not connect, or not connected.
    NotConnected,
    /// 505 / 507 / 509: the socket or stream is broken.
    SocketBroken,
}

/// The class of an IB error or notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorClass {
    /// 162 "Historical data request pacing violation".
    Pacing,
    /// 100 "Max rate of messages per second has been exceeded".
    RateExceeded,
    /// 162 "HMDS query returned no data" — a terminal, empty result.
    NoData,
    /// No data because the requested start precedes the head timestamp of this request.
    BeforeHeadTimestamp,
    /// The end date lies in the future (found before sending).
    FutureEndDate,
    /// 162 "API historical data query cancelled" — our own cancel or timeout, not a server error.
    QueryCancelled,
    /// 322 "… Duplicate ticker id": the gateway still holds a request under that id (e.g. one it
    /// never answered). The same request under a fresh id can succeed.
    DuplicateId,
    /// Missing market-data permissions (no subscription for the exchange).
    NoPermission,
    /// IB's cap on open streams is reached: 101 market-data lines, 10190 tick-by-tick (the pool
    /// refuses before IB would).
    StreamLimit,
    /// Another session of the same IB username holds the market data (10197, 162 "connected
    /// from a different IP address"); clears when that session ends.
    CompetingSession,
    /// The request itself is invalid (bar size / step, "Time length exceed max", bad `whatToShow`).
    InvalidRequest,
    /// 326: client id already in use.
    ClientIdInUse,
    /// 200: no security definition found.
    NoSecurityDefinition,
    /// Connectivity change (1100/1101/1102/1300/2110, client-side 50x).
    Connectivity(Connectivity),
    /// Farm status notice (2103–2108, 2119, 2157, 2158) — informational.
    FarmStatus(Farm, FarmState),
    /// Other informational notices (165, 2188, 10167, 21xx, …).
    Informational,
    /// Anything not recognised (including localized 162 texts). Never treated as pacing.
    Unknown,
}

/// What the caller should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Advice {
    /// Nothing; the notice does not affect any request.
    Ignore,
    /// Report it to the pacer (`on_violation` / `on_rate_exceeded`), then reserve a new slot and
    /// send the request again.
    RetryWhenPacerAllows,
    /// End the request successfully with no rows.
    ReturnEmpty,
    /// Retry once with the start clamped to the head timestamp.
    ClampStartAndRetry {
        /// The new start, unix seconds (the head timestamp).
        start_unix: i64,
    },
    /// Do not send; report the request as invalid.
    RejectBeforeSending,
    /// Report the request as cancelled by us (timeout or explicit cancel), not as a server error.
    ReportCancelled,
    /// Terminal error for this request: sending it again now gets the same answer (a later run,
    /// once the cause is fixed, may succeed).
    Fail,
    /// Mark this client id foreign and connect with the next one from the registry.
    UseNextClientId,
    /// Keep the socket; wait for 1101 / 1102 before expecting data.
    AwaitRestore,
    /// Re-submit market-data subscriptions.
    Resubscribe,
    /// Carry on; subscriptions are intact.
    Resume,
    /// Drop the connection and reconnect (with backoff).
    Reconnect,
}

/// The result of [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Classification {
    /// What happened.
    pub class: ErrorClass,
    /// What to do.
    pub advice: Advice,
}

const fn c(class: ErrorClass, advice: Advice) -> Classification {
    Classification { class, advice }
}

/// Prefix IB puts before the detail of every English 162 message.
const HMDS_PREFIX: &str = "historical market data service error message";

/// Classifies an IB error (`code`, `message`) for the request described by `context`.
///
/// For 162 the message decides; the context only refines "no data" (head timestamp) and unrecognised
/// texts of requests we cancelled ourselves. An unrecognised or localized 162 is [`ErrorClass::Unknown`].
pub fn classify(code: i32, message: &str, context: &RequestContext) -> Classification {
    use Advice as A;
    use ErrorClass as E;
    match code {
        162 => classify_162(message, context),
        420 if contains(message, "pacing") => c(E::Pacing, A::RetryWhenPacerAllows),
        100 => c(E::RateExceeded, A::RetryWhenPacerAllows),
        200 => c(E::NoSecurityDefinition, A::Fail),
        326 => c(E::ClientIdInUse, A::UseNextClientId),
        322 if contains(message, "duplicate ticker id") => {
            c(E::DuplicateId, A::RetryWhenPacerAllows)
        }
        // Over IB's 50 open historical requests: a slot frees when one ends, so wait as for
        // pacing (another process on the gateway may hold them; this pool never exceeds 50).
        322 if contains(message, "simultaneous") => c(E::Pacing, A::RetryWhenPacerAllows),
        101 | 10190 => c(E::StreamLimit, A::Fail),
        166 | 321 | 420 | 10189 => c(E::InvalidRequest, A::Fail),
        354 | 10168 | 10186 | 10187 => c(E::NoPermission, A::Fail),
        10197 => c(E::CompetingSession, A::Fail),
        165 | 300 | 366 | 10089 | 10090 | 10091 | 10167 => c(E::Informational, A::Ignore),
        10225 => c(E::Informational, A::Resubscribe),
        1100 => c(E::Connectivity(Connectivity::Lost), A::AwaitRestore),
        1101 => c(
            E::Connectivity(Connectivity::RestoredDataLost),
            A::Resubscribe,
        ),
        1102 => c(E::Connectivity(Connectivity::RestoredDataKept), A::Resume),
        1300 => c(E::Connectivity(Connectivity::SocketPortReset), A::Reconnect),
        2110 => c(
            E::Connectivity(Connectivity::ServerLinkBroken),
            A::AwaitRestore,
        ),
        502 | 504 => c(E::Connectivity(Connectivity::NotConnected), A::Reconnect),
        505 | 507 | 509 => c(E::Connectivity(Connectivity::SocketBroken), A::Reconnect),
        2103 => c(
            E::FarmStatus(Farm::MarketData, FarmState::Broken),
            A::Ignore,
        ),
        2104 => c(E::FarmStatus(Farm::MarketData, FarmState::Ok), A::Ignore),
        2105 => c(
            E::FarmStatus(Farm::Historical, FarmState::Broken),
            A::Ignore,
        ),
        2106 => c(E::FarmStatus(Farm::Historical, FarmState::Ok), A::Ignore),
        2107 => c(
            E::FarmStatus(Farm::Historical, FarmState::Inactive),
            A::Ignore,
        ),
        2108 => c(
            E::FarmStatus(Farm::MarketData, FarmState::Inactive),
            A::Ignore,
        ),
        2119 => c(
            E::FarmStatus(Farm::MarketData, FarmState::Connecting),
            A::Ignore,
        ),
        2157 => c(E::FarmStatus(Farm::SecDef, FarmState::Broken), A::Ignore),
        2158 => c(E::FarmStatus(Farm::SecDef, FarmState::Ok), A::Ignore),
        2100..=2199 => c(E::Informational, A::Ignore),
        _ => c(E::Unknown, A::Fail),
    }
}

fn classify_162(message: &str, context: &RequestContext) -> Classification {
    use Advice as A;
    use ErrorClass as E;
    let detail = detail_of(message);
    let has = |needle: &str| contains(detail, needle);
    if has("pacing violation") {
        c(E::Pacing, A::RetryWhenPacerAllows)
    } else if has("query cancelled") || has("query canceled") {
        c(E::QueryCancelled, A::ReportCancelled)
    } else if has("returned no data") {
        no_data(context)
    } else if has("connected from a different ip address") || has("competing") {
        c(E::CompetingSession, A::Fail)
    } else if has("no market data permissions") {
        c(E::NoPermission, A::Fail)
    } else if has("no historical market data for")
        || has("invalid step")
        || has("time length exceed")
        || has("bar size")
        || has("invalid duration")
    {
        c(E::InvalidRequest, A::Fail)
    } else if context.cancelled_locally {
        c(E::QueryCancelled, A::ReportCancelled)
    } else {
        c(E::Unknown, A::Fail)
    }
}

/// "No data" refined with the head timestamp cached for this very request.
fn no_data(context: &RequestContext) -> Classification {
    match (context.start_unix, context.head_timestamp_unix) {
        (Some(start), Some(head)) if start < head && !context.clamped_once => c(
            ErrorClass::BeforeHeadTimestamp,
            Advice::ClampStartAndRetry { start_unix: head },
        ),
        (Some(start), Some(head)) if start < head => {
            c(ErrorClass::BeforeHeadTimestamp, Advice::ReturnEmpty)
        }
        _ => c(ErrorClass::NoData, Advice::ReturnEmpty),
    }
}

/// Rejects a historical request whose end lies in the future, before it is sent (IB's answer would be
/// an ambiguous error or silence). `end_unix = None` means "up to now" and is always fine.
pub fn check_end_date(end_unix: Option<i64>, now_unix: i64) -> Result<(), Classification> {
    match end_unix {
        Some(end) if end > now_unix => {
            Err(c(ErrorClass::FutureEndDate, Advice::RejectBeforeSending))
        }
        _ => Ok(()),
    }
}

/// The part of a 162 message after IB's English prefix, or the whole message if there is none.
fn detail_of(message: &str) -> &str {
    let trimmed = message.trim();
    match trimmed.get(..HMDS_PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(HMDS_PREFIX) => trimmed
            .get(HMDS_PREFIX.len()..)
            .unwrap_or_default()
            .trim_start_matches(['.', ':', ' ']),
        _ => trimmed,
    }
}

/// ASCII case-insensitive substring test (IB's texts vary in capitalisation, never in accents).
fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_ascii_lowercase().contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_strips_the_english_prefix_only() {
        assert_eq!(
            detail_of("Historical Market Data Service error message:Historical data request pacing violation"),
            "Historical data request pacing violation"
        );
        assert_eq!(
            detail_of("Historical Market Data Service error message."),
            ""
        );
        assert_eq!(detail_of("Mensaje de error"), "Mensaje de error");
        assert_eq!(
            detail_of("ñ"),
            "ñ",
            "non-ASCII input does not panic on a char boundary"
        );
    }

    #[test]
    fn future_end_is_rejected_before_sending() {
        assert_eq!(check_end_date(None, 100), Ok(()));
        assert_eq!(check_end_date(Some(100), 100), Ok(()));
        assert_eq!(
            check_end_date(Some(101), 100).map_err(|c| c.class),
            Err(ErrorClass::FutureEndDate)
        );
    }
}
