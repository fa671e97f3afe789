//! A classified IB error in a user's words: what happened, what ibconn does about it, what you
//! can do. No internal names: these texts are printed by `ibconn explain` and meant for someone
//! who knows IB's products, not this crate.

use serde::Serialize;

use super::{Advice, Classification, Connectivity, ErrorClass, Farm, FarmState};

/// An error explained in three parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// What happened, in IB's terms a user knows (subscriptions, sessions, TWS).
    pub what_happened: String,
    /// What ibconn does about it (its pool, `fetch`, `validate`).
    pub what_ibconn_does: String,
    /// What the user can do; "Nothing" when nothing is needed.
    pub what_you_can_do: String,
}

/// Explain `verdict`, the classification of IB's `code` and `message`.
pub fn explain(code: i32, message: &str, verdict: Classification) -> Explanation {
    let (happened, does, you) = texts(code, message, verdict);
    Explanation {
        what_happened: happened.to_owned(),
        what_ibconn_does: does.to_owned(),
        what_you_can_do: you.to_owned(),
    }
}

/// What a request that failed for good leads to, for the classes that end it.
const FAILS: &str = "It ends that request with an error instead of asking again: the answer \
     would be the same. A fetch keeps every other bar, exits 3 (partial), and asks for the \
     missing part when you run it again (once the cause is fixed).";

/// The three parts for `verdict` of `code` and `message`: what happened, what ibconn does, what
/// you can do.
fn texts(
    code: i32,
    message: &str,
    verdict: Classification,
) -> (&'static str, &'static str, &'static str) {
    use ErrorClass as E;
    let lower = message.to_ascii_lowercase();
    match verdict.class {
        E::Pacing => (
            "IB refused a historical-data request because too many were sent too quickly. Its \
             limits: 60 requests in any 10 minutes, at most 5 for the same contract within 2 \
             seconds, and the same request again only after 15 seconds.",
            "It pauses historical requests (one minute at first, longer if it happens again) \
             and then sends the same request again; nothing is lost. Its own pacing keeps to \
             IB's limits, so this usually means another program shares the IB login.",
            "Usually nothing. If it keeps happening, let the other programs that use this \
             gateway share ibconn's pacing (the [coordination] section of ibconn.toml, or Redis \
             for several hosts), or raise pacing.margin_secs.",
        ),
        E::RateExceeded => (
            "More than 50 messages per second reached TWS / IB Gateway from one connection; \
             IB may close a connection that keeps doing it.",
            "It holds every message on that connection for one second, then sends the request \
             again.",
            "Nothing, usually. If it repeats, lower pacing.message_rate_max in ibconn.toml.",
        ),
        E::NoData => (
            "The request was valid, but IB has no bars in that range: a weekend, a holiday, a \
             closed session, or no trades at all.",
            "It records the range as empty and goes on. A range that came back empty is asked \
             once more on the next run before it is taken as empty for good, since IB sometimes \
             answers \"no data\" by mistake.",
            "Nothing. If you expected bars, check the dates, --rth, and --what (forex has no \
             TRADES: use MIDPOINT, BID or ASK).",
        ),
        E::BeforeHeadTimestamp => (
            "The range starts before the earliest data IB has for this contract.",
            "It moves the start to IB's earliest data point and asks once more; the part before \
             it is recorded as empty.",
            "Nothing. `ibconn head SYMBOL` shows where IB's data starts.",
        ),
        E::FutureEndDate => (
            "The end of the range lies in the future, where IB has no bars yet.",
            "It does not send the request.",
            "End the range now or earlier: leave out --to (it means now), or use --last.",
        ),
        E::QueryCancelled => (
            "The request was cancelled, by ibconn itself (it took longer than allowed, or you \
             stopped the run), not refused by IB.",
            "It reports the request as cancelled, not as an IB error; a fetch asks it again \
             (a few times) before it gives up on that part.",
            "Nothing, unless every request ends this way: then raise \
             fetch.request_timeout_secs, or check that the gateway answers (`ibconn health`).",
        ),
        E::DuplicateId => (
            "TWS / IB Gateway still holds an earlier request under the same request number \
             (for instance one it never answered).",
            "It sends the same request again under a new number.",
            "Nothing.",
        ),
        E::StreamLimit => (
            "All the streams IB allows at once are open: market-data lines (101; 100 by \
             default, shared by every session of the account, TWS included) or tick-by-tick \
             subscriptions (10190; about 5).",
            "It ends that stream with the error; the others go on. The pool refuses a stream over \
             its configured caps (streams.* in ibconn.toml) before IB would.",
            "Cancel streams you no longer need, close market-data windows in TWS (they take \
             lines too), or buy quote booster packs for more lines and raise the cap to match.",
        ),
        E::CompetingSession => (
            "Another session logged in with the same IB username holds the market data: TWS, \
             IBKR Mobile or the Client Portal, possibly on another computer (\"connected from a \
             different IP address\"). IB sends data to one session per username at a time.",
            "It ends the request with an error; a fetch keeps every other bar, exits 3 \
             (partial), and asks for what is missing when you run it again.",
            "It clears when the other session ends: log out of the other TWS or app (or let it \
             disconnect), then run the same command again. To avoid it, give the API its own \
             IB username (an account can have a second user).",
        ),
        E::NoPermission if code == 354 || code == 10186 || lower.contains("delayed") => (
            "Your IB account has no market-data subscription for this instrument's exchange, \
             and delayed data is not turned on for the request.",
            FAILS,
            "Ask for delayed data: in your own API code call reqMarketDataType(3) before \
             requesting market data (free, 15–20 minutes late). Or subscribe to the exchange's \
             data in the Client Portal (Settings → Market Data Subscriptions) — the subscription \
             is what historical bars of most exchanges need.",
        ),
        E::NoPermission => (
            "Your IB account has no market-data subscription that covers this instrument and \
             exchange (IB names the exchange in the message).",
            FAILS,
            "Subscribe to that exchange's market data in the Client Portal (Settings → Market \
             Data Subscriptions). A paper account uses the live account's subscriptions once \
             market-data sharing is turned on in the Client Portal.",
        ),
        E::InvalidRequest => (
            "IB refused the request itself: a bar size and range IB does not combine, a price \
             series the instrument does not have (TRADES for forex, MIDPOINT for an index), an \
             expired contract, or a malformed query.",
            FAILS,
            "Change the request: `ibconn plan` shows what a fetch would ask; --what MIDPOINT for \
             forex; IB keeps no bars of futures that expired more than two years ago.",
        ),
        E::ClientIdInUse => (
            "Another program is connected to TWS / IB Gateway with the same client id.",
            "It connects again with the next free client id of its range and avoids this one \
             for a while.",
            "Nothing. `ibconn ids` shows the ids ibconn holds; keep your other programs' client \
             ids outside ibconn's ranges (client_ids.ranges in ibconn.toml).",
        ),
        E::NoSecurityDefinition if lower.contains("ambiguous") => (
            "The description matches several contracts at IB.",
            "It does not guess: nothing is fetched for it; `ibconn validate` lists the \
             candidates.",
            "Name one: add the type, exchange, currency or expiry (ES:FUT:202612, SPX:IND, \
             EUR.USD), a local symbol such as ESZ6, or a contract id such as @265598.",
        ),
        E::NoSecurityDefinition => (
            "IB found no contract that matches the description (symbol, type, exchange, \
             currency, expiry).",
            "It fetches nothing for it (a fetch exits 4); `ibconn validate` remembers the answer \
             for an hour.",
            "Check the symbol with `ibconn validate SYMBOL`. Name the type when it is not a US \
             stock: EUR.USD (forex), SPX:IND (index), ES:FUT:202612 or ESZ6 (future), \
             AAPL:OPT:20261218:200:C (option).",
        ),
        E::Connectivity(c) => connectivity(c),
        E::FarmStatus(farm, state) => farm_status(farm, state),
        E::Informational if matches!(verdict.advice, Advice::Resubscribe) => (
            "IB deactivated a real-time subscription (a bust event) and asks for it to be \
             requested again.",
            "It asks the subscriber to subscribe again; historical requests are not affected.",
            "Nothing in ibconn; in your own programs, request the real-time bars again.",
        ),
        E::Informational => (
            "A notice from IB that affects no request.",
            "Nothing: it logs it and goes on.",
            "Nothing.",
        ),
        _ => (
            "ibconn does not recognise this code or text: a message IB has not documented, or \
             one translated by a TWS running in another language.",
            "It ends the request with an error and never takes an unknown text for pacing; a \
             fetch asks for what is missing when you run it again.",
            "Look the code up in IB's list of API error codes. If TWS / IB Gateway runs in \
             another language, switching it to English lets ibconn recognise IB's messages.",
        ),
    }
}

/// The three parts for a connectivity change.
fn connectivity(c: Connectivity) -> (&'static str, &'static str, &'static str) {
    use Connectivity as C;
    match c {
        C::Lost => (
            "TWS / IB Gateway lost its connection to IB's servers; the connection between \
             ibconn and TWS is still up.",
            "It keeps the connection and waits for TWS to report the link restored; requests \
             that time out meanwhile are asked again.",
            "Nothing, usually. If it lasts, check the network of the machine running TWS and \
             IB's system status page.",
        ),
        C::RestoredDataLost => (
            "The link to IB's servers is back, but market-data subscriptions were lost.",
            "It asks its subscribers to subscribe again; historical requests go on.",
            "Nothing in ibconn; in your own programs, request market data again.",
        ),
        C::RestoredDataKept => (
            "The link to IB's servers is back, and subscriptions were kept.",
            "It goes on.",
            "Nothing.",
        ),
        C::SocketPortReset => (
            "TWS changed its API port and closed this connection (the message names the new \
             port).",
            "It reconnects, with growing pauses between tries.",
            "Point ibconn at the new port: --gateway HOST:PORT, or gateway in ibconn.toml.",
        ),
        C::ServerLinkBroken => (
            "The link between TWS and IB's server broke; IB restores it by itself.",
            "It keeps the connection and waits for the link to come back.",
            "Nothing, usually.",
        ),
        C::NotConnected => (
            "ibconn could not connect to TWS / IB Gateway, or was not connected.",
            "It tries again, with growing pauses between tries; a fetch stops after \
             fetch.gateway_down_secs (5 minutes) with what it has written.",
            "Check that TWS / IB Gateway runs, that its API is enabled (\"Enable ActiveX and \
             Socket Clients\"), that this host is trusted, and the port: 4001/4002 for IB \
             Gateway (live/paper), 7496/7497 for TWS. `ibconn health --gateway HOST:PORT` \
             checks.",
        ),
        C::SocketBroken => (
            "The connection to TWS / IB Gateway broke (unreadable data or a socket error).",
            "It drops the connection and connects again, with growing pauses; requests in \
             flight are asked again.",
            "Nothing, usually. If it repeats, check that nothing else listens on that port and \
             that TWS / IB Gateway is up to date.",
        ),
    }
}

/// The three parts for a farm-status notice.
fn farm_status(farm: Farm, state: FarmState) -> (&'static str, &'static str, &'static str) {
    let broken = matches!(state, FarmState::Broken);
    let happened = match (farm, state) {
        (Farm::Historical, FarmState::Ok) => "IB's historical-data farm reports its connection OK.",
        (Farm::Historical, FarmState::Broken) => {
            "IB's historical-data farm reports its connection broken; IB usually restores it \
             within minutes."
        }
        (Farm::Historical, _) => {
            "IB's historical-data farm is idle and connects again when a request needs it."
        }
        (Farm::MarketData, FarmState::Ok) => "IB's market-data farm reports its connection OK.",
        (Farm::MarketData, FarmState::Broken) => {
            "IB's market-data farm reports its connection broken; IB usually restores it within \
             minutes."
        }
        (Farm::MarketData, FarmState::Connecting) => "IB's market-data farm is connecting.",
        (Farm::MarketData, _) => {
            "IB's market-data farm is idle and connects again when a request needs it."
        }
        (_, FarmState::Broken) => {
            "IB's contract-definition farm reports its connection broken; IB usually restores \
             it within minutes."
        }
        _ => "IB's contract-definition farm reports its state (informational).",
    };
    (
        happened,
        "Nothing: status notices like this affect no request.",
        if broken {
            "Nothing, usually. Requests that fail meanwhile are asked again when you run the \
             command again."
        } else {
            "Nothing."
        },
    )
}
