//! `ibconn explain CODE "MESSAGE"`: the classifier's verdict in words.

use ibconn_core::classify::{classify, Advice, Classification, ErrorClass, RequestContext};
use serde::Serialize;

/// The verdict as printed.
#[derive(Debug, Serialize)]
pub(crate) struct Explanation<'a> {
    code: i32,
    message: &'a str,
    class: ErrorClass,
    advice: Advice,
    meaning: &'static str,
    what_to_do: &'static str,
}

/// Classify `code` and `message` (no request context: as if IB's text arrived on its own).
pub(crate) fn explain(code: i32, message: &str) -> Explanation<'_> {
    let Classification { class, advice } = classify(code, message, &RequestContext::default());
    Explanation {
        code,
        message,
        class,
        advice,
        meaning: meaning(class),
        what_to_do: what_to_do(advice),
    }
}

impl Explanation<'_> {
    /// Human-readable lines.
    pub(crate) fn text(&self) -> String {
        format!(
            "code:    {}\nclass:   {:?}\nmeaning: {}\nadvice:  {:?}\ndo:      {}\n",
            self.code, self.class, self.meaning, self.advice, self.what_to_do
        )
    }
}

fn meaning(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Pacing => "IB refused a historical request for breaking its pacing rules",
        ErrorClass::RateExceeded => "more than 50 messages per second were sent",
        ErrorClass::NoData => {
            "the query is valid but IB has no bars for it (weekend, holiday, no trades)"
        }
        ErrorClass::BeforeHeadTimestamp => "the range starts before the earliest data IB has",
        ErrorClass::FutureEndDate => "the end date lies in the future",
        ErrorClass::QueryCancelled => "the request was cancelled by us (explicitly or on timeout)",
        ErrorClass::DuplicateId => {
            "the gateway still holds a request under this id; the same request under a new id can succeed"
        }
        ErrorClass::NoPermission => "no market-data permission, or a competing session",
        ErrorClass::InvalidRequest => {
            "the request itself is invalid (bar size, duration, whatToShow, …)"
        }
        ErrorClass::ClientIdInUse => "another session already uses this client id",
        ErrorClass::NoSecurityDefinition => "no contract matches the description",
        ErrorClass::Connectivity(_) => "the link between the API, TWS / Gateway and IB changed",
        ErrorClass::FarmStatus(..) => "a data farm's status changed (informational)",
        ErrorClass::Informational => "a notice that affects no request",
        ErrorClass::Unknown => "not recognised (e.g. a localized text); never treated as pacing",
        _ => "not described yet",
    }
}

fn what_to_do(advice: Advice) -> &'static str {
    match advice {
        Advice::Ignore => "nothing",
        Advice::RetryWhenPacerAllows => "tell the pacer, then retry when it allows",
        Advice::ReturnEmpty => "treat the request as finished with no rows",
        Advice::ClampStartAndRetry { .. } => {
            "retry once with the start clamped to the head timestamp"
        }
        Advice::RejectBeforeSending => "do not send; fix the request",
        Advice::ReportCancelled => "report the request as cancelled, not as a server error",
        Advice::Fail => "fail the request; retrying will not help",
        Advice::UseNextClientId => "connect with the next client id",
        Advice::AwaitRestore => "keep the socket and wait for 1101 / 1102",
        Advice::Resubscribe => "re-submit market-data subscriptions",
        Advice::Resume => "carry on; subscriptions are intact",
        Advice::Reconnect => "drop the connection and reconnect with backoff",
        _ => "see the classifier docs",
    }
}
