//! The vocabulary of a [`Pool`](super::Pool): configuration, handles, I/O commands, events, errors
//! and the serde [`PoolStats`] snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::backoff::BackoffConfig;
use crate::breaker::{BreakerConfig, BreakerSnapshot};
use crate::classify::Connectivity;
use crate::client_id::{ClientId, IdRange, Purpose, RegistryConfig};
use crate::connection::{self, Answer, Config, ConnectionError, RequestError};
use crate::message::{Bar, Contract, ContractDescription, ContractDetails};
use crate::pacer::{PacerError, PacerSnapshot, PacingRules, SharedPacerStatus};
use crate::stream::{StreamItem, StreamKind, StreamLimits};

use super::registry::IdRegistryError;

/// How connections of one purpose are shared between leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Sharing {
    /// One lease per connection.
    Exclusive,
    /// Up to `max_in_flight` concurrent leases per connection, their requests multiplexed by
    /// request id.
    Shared {
        /// Concurrent leases (≈ requests in flight) per connection.
        max_in_flight: usize,
    },
}

impl Sharing {
    /// Leases one connection admits.
    pub fn capacity(self) -> usize {
        match self {
            Self::Exclusive => 1,
            Self::Shared { max_in_flight } => max_in_flight.max(1),
        }
    }
}

/// Limits of one purpose. Its client ids come from the registry's range for the purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PurposeConfig {
    /// Connections of this purpose open (or opening) at once.
    pub max_connections: usize,
    /// Exclusive or shared connections.
    pub sharing: Sharing,
}

/// How much the pool's default pacing widens IB's windows: network jitter can land a request sent
/// exactly one window later just inside the window at the gateway (the simulator with seeded link
/// jitter showed it). 250 ms costs well under 0.1 % of a pacing-bound backfill's makespan.
pub const PACING_MARGIN: Duration = Duration::from_millis(250);

/// Pool settings. Defaults: one gateway at `127.0.0.1:4002`, backfill (4 exclusive) and api
/// (1 shared, 16 in flight) purposes.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Gateway addresses (`host:port`) in order of preference; later ones are failover targets.
    pub gateways: Vec<String>,
    /// Purposes the pool serves and their limits.
    pub purposes: BTreeMap<Purpose, PurposeConfig>,
    /// Template for every connection (`client_id` is replaced by the registry's grant).
    pub connection: Config,
    /// IB's pacing rules (one pacer per gateway). The default widens every window by
    /// [`PACING_MARGIN`].
    pub pacing: PacingRules,
    /// Delay between redials of one connection.
    pub backoff: BackoffConfig,
    /// Per-gateway circuit breaker.
    pub breaker: BreakerConfig,
    /// Seed of the backoff jitter.
    pub rng_seed: u64,
    /// Default wait of `acquire` for a connection.
    pub acquire_timeout: Duration,
    /// A TCP connect not reported within this is a failed dial.
    pub dial_timeout: Duration,
    /// A connection without leases or requests for this long is closed and its id released.
    pub idle_timeout: Duration,
    /// Interval of registry lease heartbeats (keep it below a third of the lease TTL); pacing
    /// claims are renewed at the same time.
    pub heartbeat_interval: Duration,
    /// How long this pool's claims in a shared pacing book outlive its last renewal: a process
    /// killed mid-run frees its unsent slots and open requests after this (default 60 s; keep
    /// it above three heartbeat intervals).
    pub pacing_claim_ttl: Duration,
    /// The pacing-book key per gateway address, where one gateway is reached under several
    /// names (e.g. `localhost:4002` and `127.0.0.1:4002`); other addresses are their own key.
    pub gateway_ids: BTreeMap<String, String>,
    /// How often the runtime should call `observe_clocks` (sleep detection, wall clock).
    pub clock_interval: Duration,
    /// TCP keepalive idle time the runtime sets on every socket (`None` = off).
    pub tcp_keepalive: Option<Duration>,
    /// How many streams may be open at once (IB's market-data lines and the rest).
    pub streams: StreamLimits,
}

impl Default for PoolConfig {
    fn default() -> Self {
        let purposes = [
            (
                Purpose::Backfill,
                PurposeConfig {
                    max_connections: 4,
                    sharing: Sharing::Exclusive,
                },
            ),
            (
                Purpose::Api,
                PurposeConfig {
                    max_connections: 1,
                    sharing: Sharing::Shared { max_in_flight: 16 },
                },
            ),
            (
                // One session carries every stream (IB's 100 lines fit on one connection).
                Purpose::Streaming,
                PurposeConfig {
                    max_connections: 1,
                    sharing: Sharing::Shared { max_in_flight: 128 },
                },
            ),
        ]
        .into_iter()
        .collect();
        Self {
            gateways: vec!["127.0.0.1:4002".to_owned()],
            purposes,
            connection: Config::new(0),
            pacing: PacingRules::default().with_margin(PACING_MARGIN),
            backoff: BackoffConfig::default(),
            breaker: BreakerConfig::default(),
            rng_seed: 0x1b_c0_99,
            acquire_timeout: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(15),
            pacing_claim_ttl: Duration::from_secs(60),
            gateway_ids: BTreeMap::new(),
            clock_interval: Duration::from_secs(1),
            tcp_keepalive: Some(Duration::from_secs(30)),
            streams: StreamLimits::default(),
        }
    }
}

impl PoolConfig {
    /// The key of `addr`'s pacing book: its entry in [`PoolConfig::gateway_ids`], else the address.
    pub fn pacing_key(&self, addr: &str) -> String {
        self.gateway_ids
            .get(addr)
            .cloned()
            .unwrap_or_else(|| addr.to_owned())
    }

    /// The purpose of the single session built by [`PoolConfig::single_session`].
    pub fn single_session_purpose() -> Purpose {
        Purpose::Custom("client".to_owned())
    }

    /// One gateway, one fixed client id, one connection shared by every lease (no cap on requests
    /// in flight): the pool behind a runtime's single-session `Client`. The registry config maps
    /// [`PoolConfig::single_session_purpose`] to exactly `client_id` and gives up on the first 326.
    pub fn single_session(
        addr: &str,
        client_id: ClientId,
        connection: Config,
    ) -> (Self, RegistryConfig) {
        let purpose = Self::single_session_purpose();
        let shared = PurposeConfig {
            max_connections: 1,
            sharing: Sharing::Shared {
                max_in_flight: usize::MAX,
            },
        };
        let config = Self {
            gateways: vec![addr.to_owned()],
            purposes: [(purpose.clone(), shared)].into_iter().collect(),
            connection,
            ..Self::default()
        };
        let ids = RegistryConfig {
            ranges: [(purpose, IdRange::new(client_id, client_id))]
                .into_iter()
                .collect(),
            max_conflict_attempts: 1,
            ..RegistryConfig::default()
        };
        (config, ids)
    }
}

/// One socket the runtime opened for the pool (a new id per dial; never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SocketId(pub u64);

/// A pending [`Pool::acquire`](super::Pool::acquire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct AcquireId(pub u64);

/// A granted lease on a connection; give it back with [`Pool::release`](super::Pool::release).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LeaseId(pub u64);

/// A request submitted through the pool ([`Pool::send`](super::Pool::send)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Ticket(pub u64);

/// What the runtime must do with sockets, in order ([`Pool::poll_io`](super::Pool::poll_io)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Io {
    /// Open a TCP connection to `addr`; report [`Pool::handle_dialed`](super::Pool::handle_dialed)
    /// or [`Pool::handle_dial_failed`](super::Pool::handle_dial_failed).
    Dial {
        /// The new socket.
        socket: SocketId,
        /// `host:port`.
        addr: String,
        /// The client id the session will claim (for logs).
        client_id: ClientId,
    },
    /// Write these bytes.
    Write {
        /// The socket.
        socket: SocketId,
        /// Framed bytes.
        bytes: Bytes,
    },
    /// Close the socket (or abandon the dial); later input from it is ignored.
    Close {
        /// The socket.
        socket: SocketId,
    },
}

/// Why an acquire ended without a lease.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// No connection became available in time.
    #[error("no {purpose} connection within {after:?}")]
    Timeout {
        /// The purpose asked for.
        purpose: Purpose,
        /// How long the caller waited.
        after: Duration,
    },
    /// The purpose is not configured in [`PoolConfig::purposes`].
    #[error("purpose {0} is not configured")]
    UnknownPurpose(Purpose),
    /// No client id could be obtained (range exhausted, too many 326 conflicts, store failure).
    #[error("no client id: {0}")]
    ClientId(#[from] IdRegistryError),
    /// The pool is shutting down.
    #[error("the pool is shutting down")]
    ShuttingDown,
}

/// Why [`Pool::send`](super::Pool::send) refused a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The lease was released (or never granted).
    #[error("unknown or released lease {0:?}")]
    UnknownLease(LeaseId),
    /// The lease's connection lost its client id for good ([`PoolEvent::LeaseLost`]); release it
    /// and acquire another.
    #[error("lease {0:?} was lost with its client id; acquire a new connection")]
    LeaseLost(LeaseId),
    /// The pool is shutting down.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// Opening this stream would go over one of IB's caps ([`PoolConfig::streams`]); IB would
    /// refuse it (101 "Max number of tickers has been reached", 10190 for tick-by-tick).
    #[error("{kind:?} streams: all {limit} allowed are open (IB's cap; cancel one or raise the limit if your account has more)")]
    StreamLimit {
        /// Which cap.
        kind: StreamKind,
        /// The cap.
        limit: usize,
    },
}

/// Why a pooled request ended without an answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The connection's verdict (IB error, timeout, cancel, …).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The pacer can never admit this request.
    #[error("pacing: {0}")]
    Pacing(PacerError),
    /// The lease was released while the request was open.
    #[error("lease released")]
    Released,
    /// The pool shut down.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// The lease's connection could not be re-established with any client id (see
    /// [`PoolEvent::LeaseLost`]); acquire a new lease.
    #[error("lease lost: no client id left for its connection")]
    LeaseLost,
    /// The stream's consumer stopped reading: `queued` bars and notices were waiting (bars are
    /// never dropped, so the stream ended instead of growing without bound).
    #[error("stream ended: its consumer fell {queued} items behind")]
    ConsumerTooSlow {
        /// Items waiting.
        queued: usize,
    },
}

/// Why a call on a runtime's pool failed: the `Error` of `ibconn-tokio` and `ibconn-smol`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No connection could be leased (typed timeout, unknown purpose, no client id, shutdown).
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    /// The pool refused the request.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The request ended without an answer (IB error, typed timeout, connection closed, …).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The answer had an unexpected shape.
    #[error("unexpected answer")]
    UnexpectedAnswer,
    /// The runtime's pool driver has stopped.
    #[error("the pool has shut down")]
    Closed,
}

/// What the pool reports, in order ([`Pool::poll_event`](super::Pool::poll_event)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// An acquire got its lease.
    Acquired {
        /// The acquire.
        acquire: AcquireId,
        /// The lease.
        lease: LeaseId,
        /// The connection's client id.
        client_id: ClientId,
        /// Index of the gateway in [`PoolConfig::gateways`].
        gateway: usize,
    },
    /// An acquire ended without a lease.
    AcquireFailed {
        /// The acquire.
        acquire: AcquireId,
        /// Why.
        error: AcquireError,
    },
    /// A request waits for its pacing slot (reported once per request).
    RequestDelayed {
        /// The request.
        ticket: Ticket,
        /// Index of its gateway in [`PoolConfig::gateways`].
        gateway: usize,
        /// When it will be sent.
        until: std::time::Instant,
        /// The rule that holds it back (`None`: not known, e.g. a slot another pacer granted).
        held_by: Option<crate::pacer::Hold>,
    },
    /// A request ended: exactly once per [`Ticket`].
    Completed {
        /// The request.
        ticket: Ticket,
        /// Its outcome.
        result: Result<Answer, CallError>,
    },
    /// An open stream's item: data, or an interruption and the gap after it.
    Stream {
        /// The stream (the ticket its subscription was answered under).
        ticket: Ticket,
        /// The item.
        item: StreamItem,
    },
    /// A stream ended after it was answered: `None` when it finished by itself (a snapshot),
    /// else why (an IB error for it, its lease gone). A cancelled stream ends silently.
    StreamEnded {
        /// The stream.
        ticket: Ticket,
        /// Why, if not finished.
        error: Option<CallError>,
    },
    /// The gateway's pacing store failed (`error`: requests wait for it, none is sent unpaced)
    /// or works again (`None`).
    PacingStore {
        /// Index of the gateway.
        gateway: usize,
        /// What failed, or `None` once a step succeeded again.
        error: Option<String>,
    },
    /// A session became ready.
    Connected {
        /// Its client id.
        client_id: ClientId,
        /// Index of its gateway.
        gateway: usize,
    },
    /// A session ended (the pool redials if it still has users).
    Disconnected {
        /// Its client id.
        client_id: ClientId,
        /// Why.
        reason: ConnectionError,
    },
    /// The gateway's link to IB changed (1100/1101/1102/2110).
    Connectivity {
        /// The session that reported it.
        client_id: ClientId,
        /// The change.
        change: Connectivity,
    },
    /// After 1101: streams of these leases must be requested again.
    Resubscribe {
        /// The session.
        client_id: ClientId,
        /// Leases on it.
        leases: Vec<LeaseId>,
    },
    /// A lease is gone: its connection needed a new client id and the registry had none to
    /// offer — it hit 326 on every id offered, or its registry lease lapsed (host sleep) and the
    /// id was taken by someone else meanwhile with no other id free.
    /// Its open requests ended with [`CallError::LeaseLost`]; the holder must acquire again.
    LeaseLost {
        /// The lease.
        lease: LeaseId,
        /// The last client id the connection had (refused, or taken by someone else).
        client_id: ClientId,
        /// Why no id was left.
        error: AcquireError,
    },
    /// Shutdown finished: every lease released and every socket closed.
    ShutDown,
}

impl PoolEvent {
    /// The answer to acquire `id` if this event carries it, else the event back — for a runtime
    /// that waits on one acquire inline (its `Client::connect` fast path) rather than through a
    /// [`Router`](super::Router).
    pub fn answer_to(self, id: AcquireId) -> Result<super::Leased, Self> {
        match self {
            Self::Acquired {
                acquire,
                lease,
                client_id,
                ..
            } if acquire == id => Ok(Ok((lease, client_id))),
            Self::AcquireFailed { acquire, error } if acquire == id => Ok(Err(error.into())),
            other => Err(other),
        }
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencyUs {
    /// Samples.
    pub count: u64,
    /// Last sample.
    pub last: u64,
    /// Smallest sample.
    pub min: u64,
    /// Largest sample.
    pub max: u64,
    /// Sum of samples (mean = total / count).
    pub total: u64,
}

impl LatencyUs {
    pub(crate) fn record(&mut self, us: u64) {
        self.min = if self.count == 0 {
            us
        } else {
            self.min.min(us)
        };
        self.count += 1;
        self.last = us;
        self.max = self.max.max(us);
        self.total = self.total.saturating_add(us);
    }
}

/// One gateway's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayStats {
    /// `host:port`.
    pub addr: String,
    /// Sessions established.
    pub established: u64,
    /// Dials or handshakes that failed.
    pub failed: u64,
    /// Whether new sessions here offer the wide range v100..226: under the default
    /// [`VersionPolicy::Auto`](crate::connection::VersionPolicy::Auto) the gateway turned out
    /// older than the modern offer v213..226 (until a session reports a modern version again).
    pub wide_offer: bool,
    /// Sessions redialed at once with the wide offer after the gateway answered below the modern
    /// one or closed before its hello (not counted in `failed`).
    pub version_fallbacks: u64,
    /// Its circuit breaker.
    pub breaker: BreakerSnapshot,
    /// Its pacer: the shared book's view (every process on the gateway) with this process's
    /// message rate.
    pub pacer: PacerSnapshot,
    /// Where its pacing book lives and who holds what in it.
    pub pacing: SharedPacerStatus,
}

/// One pooled connection's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionStats {
    /// Client id.
    pub client_id: ClientId,
    /// Purpose.
    pub purpose: Purpose,
    /// Gateway index.
    pub gateway: usize,
    /// `"dialing"`, `"handshaking"`, `"ready"` or `"waiting"` (backoff).
    pub state: &'static str,
    /// Leases held on it.
    pub leases: usize,
    /// The session's counters (probe RTT included), if a session exists.
    pub session: Option<connection::Stats>,
}

/// Serializable pool metrics ([`Pool::stats`](super::Pool::stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Sessions established (handshake finished).
    pub established: u64,
    /// Dials or handshakes that failed.
    pub failed: u64,
    /// Established sessions that later dropped.
    pub disconnects: u64,
    /// Redials after a drop.
    pub reconnects: u64,
    /// 326 answers (id moved on).
    pub client_id_conflicts: u64,
    /// Dial → ready latency.
    pub handshake_latency: LatencyUs,
    /// Health-probe round trips observed.
    pub probe_rtt: LatencyUs,
    /// IB errors and notices by class.
    pub errors_by_class: BTreeMap<String, u64>,
    /// Requests that waited for a pacing slot.
    pub pacing_waits: u64,
    /// Total pacing wait, milliseconds.
    pub pacing_wait_ms: u64,
    /// 162 pacing violations reported to the pacer.
    pub pacing_violations: u64,
    /// Error-100 rate limits reported to the pacer.
    pub rate_limited: u64,
    /// Reservations that waited because the pacing store failed.
    pub pacing_store_errors: u64,
    /// Acquires granted.
    pub acquired: u64,
    /// Acquires that timed out.
    pub acquire_timeouts: u64,
    /// Requests submitted.
    pub requests: u64,
    /// Requests sent again after their connection dropped or IB paced them.
    pub requests_retried: u64,
    /// Leases held now.
    pub leases: usize,
    /// Acquires waiting now.
    pub waiters: usize,
    /// Per gateway.
    pub gateways: Vec<GatewayStats>,
    /// Per connection.
    pub connections: Vec<ConnectionStats>,
    /// Streams.
    pub streams: StreamStats,
}

/// Stream counters ([`PoolStats::streams`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// Streams open now (answered, or waiting to be requested again), by kind.
    pub open: BTreeMap<StreamKind, usize>,
    /// Streams interrupted (connection lost, 1101, bust) and queued to be requested again.
    pub interrupted: u64,
    /// Streams requested again after an interruption.
    pub resubscribed: u64,
    /// Stream items handed to consumers.
    pub items: u64,
}

/// Historical bars with the window IB reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// Oldest first.
    pub bars: Vec<Bar>,
    /// Window start as IB reports it.
    pub start: String,
    /// Window end as IB reports it.
    pub end: String,
}

/// Typed views of an [`Answer`], for runtimes' typed calls.
impl Answer {
    /// Server time in epoch seconds.
    pub fn into_current_time(self) -> Option<i64> {
        match self {
            Self::CurrentTime(t) => Some(t),
            Self::CurrentTimeMillis(ms) => Some(ms / 1000),
            _ => None,
        }
    }

    /// Historical bars.
    pub fn into_bars(self) -> Option<Bars> {
        match self {
            Self::Bars { bars, start, end } => Some(Bars { bars, start, end }),
            _ => None,
        }
    }

    /// Head timestamp text.
    pub fn into_head_timestamp(self) -> Option<String> {
        match self {
            Self::HeadTimestamp(t) => Some(t),
            _ => None,
        }
    }

    /// Contract details.
    pub fn into_contract_details(self) -> Option<Vec<(Contract, ContractDetails)>> {
        match self {
            Self::ContractDetails(d) => Some(d),
            _ => None,
        }
    }

    /// Matching symbols.
    pub fn into_symbols(self) -> Option<Vec<ContractDescription>> {
        match self {
            Self::Symbols(s) => Some(s),
            _ => None,
        }
    }
}
