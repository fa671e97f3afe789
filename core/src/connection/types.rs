//! The vocabulary of a [`Connection`](super::Connection): its configuration, what callers ask
//! ([`Query`]), what they get back ([`Answer`], [`Event`]) and every way it can fail.

use std::time::Duration;

use serde::Serialize;

use crate::classify::{Advice, Connectivity, ErrorClass};
use crate::message::{Bar, Contract, ContractDescription, ContractDetails};
use crate::query::{HeadTimestampQuery, HistoricalQuery};
use crate::stream::{StreamData, StreamQuery};
use crate::wire::{
    DecodeError, EncodeError, FrameError, HandshakeError, VersionRange, MAX_REPEATED,
};

/// Which protocol versions a connection offers in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VersionPolicy {
    /// The default. Offer [`VersionRange::modern`] (v213..226, as `ibapi` does): START_API then
    /// travels with the hello, one round trip sooner. A gateway older than that answers a version
    /// below the offer ([`ConnectionError::VersionBelowOffer`]), closes the socket before its
    /// hello ([`ConnectionError::ClosedBeforeHello`]) or stays silent until the handshake times
    /// out ([`ConnectionError::HandshakeTimeout`]); a [`Pool`](crate::pool::Pool) (and so every
    /// runtime `Client`) then redials it at once offering [`VersionRange::supported`]
    /// (v100..226) and keeps offering that range to this gateway until a session there reports a
    /// protobuf-era version again (the gateway was upgraded). A bare
    /// [`Connection`](super::Connection) cannot redial: it only reports the typed reason.
    #[default]
    Auto,
    /// Offer exactly this range; never fall back.
    Pinned(VersionRange),
}

impl VersionPolicy {
    /// The range offered by a connection that knows nothing about its gateway yet.
    pub fn offer(self) -> VersionRange {
        match self {
            Self::Auto => VersionRange::modern(),
            Self::Pinned(range) => range,
        }
    }
}

impl From<VersionRange> for VersionPolicy {
    /// An explicit range is pinned.
    fn from(range: VersionRange) -> Self {
        Self::Pinned(range)
    }
}

/// Connection settings. Defaults are conservative values for a real IB Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The API client id this connection claims (one live session per id per gateway).
    pub client_id: i32,
    /// Protocol versions offered in the hello: [`VersionPolicy::Auto`] (v213..226 with a fallback
    /// to v100..226 for older gateways) unless pinned.
    pub versions: VersionPolicy,
    /// Connect options appended to the hello (e.g. `+PACEAPI`); empty for none.
    pub connect_options: String,
    /// From `new` until the session is ready (hello, START_API, startup burst).
    pub handshake_timeout: Duration,
    /// Deadline of a request submitted without its own timeout.
    pub request_timeout: Duration,
    /// Send a `reqCurrentTime` probe after this long without inbound bytes.
    pub probe_idle: Duration,
    /// A probe unanswered for this long declares the connection dead (half-open socket).
    pub probe_timeout: Duration,
    /// Minimum spacing of `reqCurrentTime` sends: IB never answers a second one within 1 s.
    pub current_time_spacing: Duration,
    /// A jump of the suspend-including clock over the monotonic one beyond this is a sleep.
    pub sleep_threshold: Duration,
    /// First request id handed out.
    pub first_request_id: i32,
    /// Most bars or contract-details matches one request may buffer before its end marker; past
    /// it the request is cancelled at the gateway and ends with [`RequestError::AnswerTooLarge`],
    /// instead of a misbehaving gateway growing it without bound. Default [`MAX_REPEATED`]
    /// (200,000): what one frame may carry, far above any answer IB gives (a month of 1-minute
    /// bars is about 43,000).
    pub max_answer_items: usize,
    /// Deadline of one socket write, enforced by the runtime: a write not finished within it (the
    /// gateway stopped reading and the socket buffers are full) closes the connection with
    /// [`ConnectionError::WriteTimeout`], and the pool redials as for any loss. Default 30 s:
    /// IB's requests are small, so a healthy gateway takes one in milliseconds even on a slow link.
    pub write_timeout: Duration,
}

impl Config {
    /// Defaults for `client_id`.
    pub fn new(client_id: i32) -> Self {
        Self {
            client_id,
            versions: VersionPolicy::Auto,
            connect_options: String::new(),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            probe_idle: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(10),
            current_time_spacing: Duration::from_secs(1),
            sleep_threshold: Duration::from_secs(5),
            first_request_id: 1,
            max_answer_items: MAX_REPEATED,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// IB's request id, as echoed in replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RequestId(pub i32);

/// What a caller can ask a connection, typed: the connection assigns the request id and turns
/// the query into IB's wire text when it sends it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Query {
    /// Server time in seconds.
    CurrentTime,
    /// Server time in milliseconds (server version 197+).
    CurrentTimeMillis,
    /// Historical bars; with `keep_up_to_date` the request stays open and yields
    /// [`Event::Stream`] bars after it completes, until [`Connection::cancel`](super::Connection::cancel).
    HistoricalData(HistoricalQuery),
    /// Earliest available data point.
    HeadTimestamp(HeadTimestampQuery),
    /// Contract details for a (possibly partial) contract.
    ContractDetails(Contract),
    /// Symbol search.
    MatchingSymbols(String),
    /// A stream: completes with [`Answer::Subscribed`] once sent (keep-up-to-date bars: with
    /// the initial [`Answer::Bars`]), then yields [`Event::Stream`] until cancelled or
    /// [`Event::StreamEnded`].
    Stream(StreamQuery),
}

impl Query {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CurrentTime => "current_time",
            Self::CurrentTimeMillis => "current_time_millis",
            Self::HistoricalData(_) => "historical_data",
            Self::HeadTimestamp(_) => "head_timestamp",
            Self::ContractDetails(_) => "contract_details",
            Self::MatchingSymbols(_) => "matching_symbols",
            Self::Stream(q) => q.name(),
        }
    }
}

/// The successful result of a [`Query`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Answer {
    /// Server time, epoch seconds.
    CurrentTime(i64),
    /// Server time, epoch milliseconds.
    CurrentTimeMillis(i64),
    /// Historical bars with the window IB reports.
    Bars {
        /// The bars, oldest first.
        bars: Vec<Bar>,
        /// Window start as IB reports it.
        start: String,
        /// Window end as IB reports it.
        end: String,
    },
    /// Head timestamp as sent (epoch seconds for `formatDate=2`).
    HeadTimestamp(String),
    /// Every matching contract with its details.
    ContractDetails(Vec<(Contract, ContractDetails)>),
    /// Matching symbols.
    Symbols(Vec<ContractDescription>),
    /// A stream was requested; its data follows as events.
    Subscribed,
}

/// Why a request ended without an answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// IB answered with an error for this request; `class` and `advice` come from the classifier.
    #[error("IB error {code} ({class:?}): {message}")]
    Api {
        /// IB's code.
        code: i32,
        /// IB's text.
        message: String,
        /// What it means.
        class: ErrorClass,
        /// What to do about it.
        advice: Advice,
    },
    /// No answer before the deadline; a cancel was sent where IB has one.
    #[error("no answer within {after:?}")]
    Timeout {
        /// The deadline that passed, measured from submission.
        after: Duration,
    },
    /// Cancelled by the caller.
    #[error("cancelled by the caller")]
    Cancelled,
    /// The answer outgrew [`Config::max_answer_items`] before its end marker; the request was
    /// cancelled at the gateway (where IB has a cancel) and what arrived was dropped.
    #[error("answer too large: over {max} bars or matches for one request (cancelled)")]
    AnswerTooLarge {
        /// The cap in force.
        max: usize,
    },
    /// The negotiated server version cannot carry this query (found once the session was ready).
    #[error(transparent)]
    Unsupported(#[from] EncodeError),
    /// The connection closed before the answer arrived; the request may be retried elsewhere.
    #[error("connection closed before the answer: {0}")]
    ConnectionClosed(ConnectionError),
}

/// Why [`Connection::send`](super::Connection::send) refused a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed; open a new one.
    #[error("connection is closed")]
    Closed,
    /// The negotiated server version cannot carry this query.
    #[error(transparent)]
    Unsupported(#[from] EncodeError),
}

/// Who is to blame for a closed connection, so callers pick a retry policy without string matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Fault {
    /// We closed it, or our machine slept.
    Local,
    /// The gateway refused or misbehaved.
    Gateway,
    /// The network or socket failed.
    Transport,
}

/// Why a connection closed. Reported once, in [`Event::Disconnected`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The hello/START_API/startup exchange did not finish in time.
    #[error("handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The gateway answered 326: another session holds this client id.
    #[error("client id {client_id} is already in use")]
    ClientIdInUse {
        /// The refused id.
        client_id: i32,
    },
    /// The byte stream could not be framed.
    #[error("bad framing from the gateway: {0}")]
    Framing(#[from] FrameError),
    /// A frame could not be decoded.
    #[error("undecodable message from the gateway: {0}")]
    Decode(#[from] DecodeError),
    /// The health probe went unanswered: the socket is half-open or the gateway hangs.
    #[error("health probe unanswered for {0:?}")]
    ProbeTimeout(Duration),
    /// The machine slept; the socket cannot be trusted.
    #[error("machine slept for about {0:?}")]
    SleepDetected(Duration),
    /// IB reset its socket port (1300).
    #[error("gateway reset its socket port (1300)")]
    SocketPortReset,
    /// The gateway answered a server version below the lowest one offered: it is older than the
    /// offer (a pre-protobuf gateway answers v213..226 with its own maximum). Under
    /// [`VersionPolicy::Auto`] the pool redials such a gateway with the wide offer.
    #[error("gateway speaks server version {server}, below the offered minimum {offered_min}")]
    VersionBelowOffer {
        /// The lowest version offered.
        offered_min: i32,
        /// The version the gateway answered.
        server: i32,
    },
    /// The socket ended (EOF, `cause = None`, or an error) before the gateway's hello: it may not
    /// accept the offered versions, or it rejects this host. Under [`VersionPolicy::Auto`] the
    /// pool redials once with the wide offer.
    #[error("gateway closed the connection before its hello{}", colon(.cause))]
    ClosedBeforeHello {
        /// The socket error, if it was not a clean EOF.
        cause: Option<String>,
    },
    /// The gateway closed the socket.
    #[error("gateway closed the connection")]
    PeerClosed,
    /// The socket failed (reported by the runtime).
    #[error("transport failed: {0}")]
    Transport(String),
    /// The gateway stopped reading: one socket write did not finish within
    /// [`Config::write_timeout`] (reported by the runtime, which closes the socket).
    #[error("gateway stopped reading: a socket write did not finish within {0:?}")]
    WriteTimeout(Duration),
    /// The gateway stopped reading: the runtime's bounded queue of writes to the socket filled up
    /// (this many writes) behind a stuck one, before its deadline passed. Reported by the runtime,
    /// which closes the socket rather than drop bytes from the stream or wait.
    #[error("gateway stopped reading: {0} writes queued behind a stuck one")]
    WriteQueueFull(usize),
    /// Closed by [`Connection::close`](super::Connection::close).
    #[error("closed locally")]
    LocallyClosed,
}

/// `": cause"`, or nothing.
fn colon(cause: &Option<String>) -> String {
    cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default()
}

impl ConnectionError {
    /// Who is to blame.
    pub fn fault(&self) -> Fault {
        match self {
            Self::LocallyClosed | Self::SleepDetected(_) => Fault::Local,
            Self::Transport(_)
            | Self::PeerClosed
            | Self::ProbeTimeout(_)
            | Self::WriteTimeout(_)
            | Self::WriteQueueFull(_) => Fault::Transport,
            Self::HandshakeTimeout(_)
            | Self::Handshake(_)
            | Self::ClientIdInUse { .. }
            | Self::VersionBelowOffer { .. }
            | Self::ClosedBeforeHello { .. }
            | Self::Framing(_)
            | Self::Decode(_)
            | Self::SocketPortReset => Fault::Gateway,
        }
    }
}

/// What a connection reports, in order, through [`Connection::poll_event`](super::Connection::poll_event).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The session is usable.
    Connected {
        /// Negotiated protocol version.
        server_version: i32,
        /// The gateway's connection time text.
        connection_time: String,
        /// First valid order id.
        next_valid_id: i32,
        /// Managed accounts.
        accounts: Vec<String>,
    },
    /// A request ended: exactly once per [`RequestId`] handed out by `send`.
    Completed {
        /// The request.
        id: RequestId,
        /// Its outcome.
        result: Result<Answer, RequestError>,
    },
    /// An open stream's data (after its `Completed`).
    Stream {
        /// The stream.
        id: RequestId,
        /// What arrived.
        data: StreamData,
    },
    /// An open stream ended without a cancel: `None` when it finished (a snapshot's end), else
    /// why (an IB error for it, the connection closing).
    StreamEnded {
        /// The stream.
        id: RequestId,
        /// Why, if not finished.
        error: Option<RequestError>,
    },
    /// An informational message (farm status, warnings); never an error.
    Notice {
        /// The request it mentions, if any.
        id: Option<RequestId>,
        /// IB's code.
        code: i32,
        /// IB's text.
        message: String,
        /// Its class.
        class: ErrorClass,
    },
    /// The link between the gateway and IB changed (1100, 1101, 1102, 2110).
    Connectivity(Connectivity),
    /// After 1101 ("data lost"): open streams must be requested again.
    Resubscribe,
    /// IB limited our message rate (error 100): the pacer should slow down.
    RateLimited,
    /// The connection closed; no events follow.
    Disconnected {
        /// Why.
        reason: ConnectionError,
    },
}

/// Counters for status pages and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Requests submitted.
    pub requests: u64,
    /// Requests answered successfully.
    pub answered: u64,
    /// Requests ended by an IB error.
    pub failed: u64,
    /// Requests ended by their deadline.
    pub timed_out: u64,
    /// Health probes sent.
    pub probes: u64,
    /// Last probe round trip, microseconds.
    pub last_probe_rtt_us: Option<u64>,
    /// Handshake duration, microseconds (from `new` to ready).
    pub handshake_us: Option<u64>,
}
