//! A pool of TWS sessions as a sans-IO state machine — the quinn `Endpoint` analogue that owns
//! several [`Connection`]s.
//!
//! The pool maps purposes to client ids through an injected [`IdRegistry`], caps connections per
//! purpose, hands out leases (exclusive or shared) to FIFO waiters with deadlines, paces every
//! request before it is sent (one [`Pacer`] per gateway), redials dropped sessions with backoff,
//! fails over between gateways behind per-gateway circuit breakers, falls back from the modern
//! version offer to the wide one for gateways older than server version 213
//! ([`VersionPolicy::Auto`]), expires idle connections and shuts down gracefully. It performs no
//! I/O: sockets are commands ([`Io`]) for the runtime.
//!
//! # Run loop
//!
//! After **every** input or command, drain `poll_io()` (dial, write, close — in order), then
//! `poll_event()`, then arm one timer from `poll_timeout()` and call `handle_timeout(now)` when it
//! fires. Call `observe_clocks(now, boottime, wall)` every [`PoolConfig::clock_interval`].
//!
//! Inputs: `handle_dialed`, `handle_dial_failed`, `handle_input`, `handle_eof`, `handle_timeout`,
//! `observe_clocks`. Commands: `acquire`, `release`, `send`, `cancel`, `shutdown`. `now` must never
//! go backwards. Input for a socket the pool no longer knows is ignored.
//!
//! Of the events, the session-level ones are for the pool's users; [`PoolNotice::from_event`]
//! picks them, and [`NoticeFanout`] is the runtime-agnostic bookkeeping a runtime uses to hand them
//! to bounded subscriber queues.

mod notice;
mod registry;
mod router;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

pub use self::notice::{NoticeFanout, Offer, PoolNotice, NOTICE_BUFFER};
#[cfg(feature = "file-store")]
pub use self::registry::FileRegistry;
pub use self::registry::{IdRegistry, IdRegistryError, MemoryRegistry};
pub use self::router::{Channels, Command, Flow, Leased, Router};
pub use self::types::{
    AcquireError, AcquireId, Bars, CallError, ConnectionStats, GatewayStats, Io, LatencyUs,
    LeaseId, PoolConfig, PoolError, PoolEvent, PoolStats, PurposeConfig, Sharing, SocketId,
    SubmitError, Ticket, PACING_MARGIN,
};
use crate::backoff::{Backoff, SplitMix64};
use crate::bar_size::BarSize;
use crate::breaker::{BreakerRejection, CircuitBreaker};
use crate::classify::ErrorClass;
use crate::client_id::{Grant, Purpose, UnixMillis};
use crate::connection::{
    Answer, Config, Connection, ConnectionError, Event, Query, RequestError, RequestId, SendError,
    VersionPolicy,
};
use crate::deadline::after;
use crate::message::Contract;
use crate::pacer::{
    HeadTimestampKey, HistoricalRequestKey, LedgerError, MemoryLedger, PaceLedger, PacedRequest,
    PacerError, ReservationId, SharedError, SharedHold, SharedPacer,
};
use crate::wire::{version, VersionRange};

type SlotId = u64;

/// How long queued requests wait before trying an unreachable pacing store again.
const LEDGER_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Gateway {
    addr: String,
    breaker: CircuitBreaker,
    pacer: SharedPacer,
    established: u64,
    failed: u64,
    /// Under [`VersionPolicy::Auto`]: this gateway turned out older than the modern offer, so new
    /// sessions offer the wide range. Cleared when a session there reports a modern version.
    wide_offer: bool,
    /// Times a session here fell back from the modern offer to the wide one.
    version_fallbacks: u64,
}

/// The range a session offered, as far as the version fallback is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offered {
    /// The user pinned the range: no fallback.
    Pinned,
    /// [`VersionPolicy::Auto`]'s modern range; a gateway older than it makes the pool fall back.
    Modern,
    /// [`VersionPolicy::Auto`]'s wide range, for a gateway known to be older than the modern one.
    Wide,
}

#[derive(Debug)]
struct Waiter {
    id: AcquireId,
    purpose: Purpose,
    since: Instant,
    deadline: Instant,
}

/// The socket side of a pooled connection.
#[derive(Debug)]
enum Link {
    /// Dial issued; waiting for `handle_dialed`.
    Dialing { socket: SocketId, deadline: Instant },
    /// Socket open; the session handshakes or is ready.
    Open {
        socket: SocketId,
        conn: Box<Connection>,
    },
    /// Backing off (or all breakers open) until `until`.
    Waiting { until: Instant },
}

/// One logical connection: a client id that survives redials.
#[derive(Debug)]
struct Slot {
    purpose: Purpose,
    capacity: usize,
    grant: Grant,
    conflicts: u32,
    gateway: usize,
    link: Link,
    backoff: Backoff,
    leases: BTreeSet<LeaseId>,
    idle_since: Instant,
    dialed_at: Instant,
    /// What the current (or last) session offered.
    offer: Offered,
    ever_ready: bool,
    session_ready: bool,
    sent: BTreeMap<RequestId, Ticket>,
    seen_probe: (u64, Option<u64>),
}

impl Slot {
    fn ready_conn(&mut self) -> Option<&mut Connection> {
        match &mut self.link {
            Link::Open { conn, .. } if conn.is_ready() => Some(conn),
            _ => None,
        }
    }

    fn is_ready(&self) -> bool {
        matches!(&self.link, Link::Open { conn, .. } if conn.is_ready())
    }

    fn socket(&self) -> Option<SocketId> {
        match self.link {
            Link::Dialing { socket, .. } | Link::Open { socket, .. } => Some(socket),
            Link::Waiting { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    Queued,
    Paced {
        gateway: usize,
        res: SharedHold,
        at: Instant,
    },
    Sent {
        gateway: usize,
        res: SharedHold,
    },
    Streaming {
        slot: SlotId,
        id: RequestId,
    },
}

#[derive(Debug)]
struct Req {
    lease: LeaseId,
    query: Query,
    submitted: Instant,
    deadline: Instant,
    state: ReqState,
    delayed: bool,
}

/// A pool of TWS sessions. See the [module docs](self) for the run loop.
#[derive(Debug)]
pub struct Pool {
    cfg: PoolConfig,
    registry: Box<dyn IdRegistry + Send>,
    ledger: Box<dyn PaceLedger>,
    /// A pacing-ledger step failed: try the queued requests again at this instant.
    ledger_retry: Option<Instant>,
    /// Gateways whose pacing store failed last time ([`PoolEvent::PacingStore`] said so).
    ledger_down: BTreeSet<usize>,
    last_now: Instant,
    wall: (Instant, UnixMillis),
    rng: SplitMix64,
    next_id: u64,
    gateways: Vec<Gateway>,
    slots: BTreeMap<SlotId, Slot>,
    sockets: BTreeMap<SocketId, SlotId>,
    waiters: VecDeque<Waiter>,
    leases: BTreeMap<LeaseId, SlotId>,
    /// Leases that ended with [`PoolEvent::LeaseLost`] and were not released yet: a call on one
    /// is refused as [`SubmitError::LeaseLost`], not as unknown.
    lost: BTreeSet<LeaseId>,
    requests: BTreeMap<Ticket, Req>,
    io: VecDeque<Io>,
    events: VecDeque<PoolEvent>,
    stats: PoolStats,
    next_heartbeat: Instant,
    shutting_down: bool,
}

impl Pool {
    /// A pool with no connections yet, pacing in a ledger private to it. `wall` is the wall
    /// clock at `now` (for registry leases).
    pub fn new(
        cfg: PoolConfig,
        registry: Box<dyn IdRegistry + Send>,
        now: Instant,
        wall: UnixMillis,
    ) -> Self {
        let ledger = Box::new(MemoryLedger::new(format!("pool-{:x}", cfg.rng_seed)));
        Self::with_ledger(cfg, registry, ledger, now, wall)
    }

    /// A pool pacing through `ledger`: every process (or host) whose pools share the ledger
    /// shares one pacing budget per gateway key ([`PoolConfig::pacing_key`]), as IB counts it.
    pub fn with_ledger(
        cfg: PoolConfig,
        registry: Box<dyn IdRegistry + Send>,
        ledger: Box<dyn PaceLedger>,
        now: Instant,
        wall: UnixMillis,
    ) -> Self {
        let gateways = cfg
            .gateways
            .iter()
            .map(|addr| Gateway {
                addr: addr.clone(),
                breaker: CircuitBreaker::new(cfg.breaker),
                pacer: SharedPacer::new(
                    cfg.pacing.clone(),
                    cfg.pacing_key(addr),
                    cfg.pacing_claim_ttl,
                    now,
                ),
                established: 0,
                failed: 0,
                wide_offer: false,
                version_fallbacks: 0,
            })
            .collect();
        Self {
            rng: SplitMix64::new(cfg.rng_seed),
            next_heartbeat: after(now, cfg.heartbeat_interval),
            cfg,
            registry,
            ledger,
            ledger_retry: None,
            ledger_down: BTreeSet::new(),
            last_now: now,
            wall: (now, wall),
            next_id: 1,
            gateways,
            slots: BTreeMap::new(),
            sockets: BTreeMap::new(),
            waiters: VecDeque::new(),
            leases: BTreeMap::new(),
            lost: BTreeSet::new(),
            requests: BTreeMap::new(),
            io: VecDeque::new(),
            events: VecDeque::new(),
            stats: PoolStats::default(),
            shutting_down: false,
        }
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// The injected registry.
    pub fn registry(&self) -> &(dyn IdRegistry + Send) {
        self.registry.as_ref()
    }

    /// Whether `shutdown` was called (then every lease is released and every socket closed).
    pub fn is_shut_down(&self) -> bool {
        self.shutting_down
    }

    /// The client id behind a lease.
    pub fn lease_client_id(&self, lease: LeaseId) -> Option<i32> {
        let slot = self.leases.get(&lease)?;
        self.slots.get(slot).map(|s| s.grant.id)
    }

    /// Metrics as of `now` (reads each gateway's shared pacing book once).
    pub fn stats(&mut self, now: Instant) -> PoolStats {
        let mut stats = self.stats.clone();
        stats.leases = self.leases.len();
        stats.waiters = self.waiters.len();
        let ledger = &mut *self.ledger;
        stats.gateways = self
            .gateways
            .iter_mut()
            .map(|g| {
                let (pacer, pacing) = g.pacer.snapshot(ledger, now);
                GatewayStats {
                    addr: g.addr.clone(),
                    established: g.established,
                    failed: g.failed,
                    wide_offer: g.wide_offer,
                    version_fallbacks: g.version_fallbacks,
                    breaker: g.breaker.snapshot(now),
                    pacer,
                    pacing,
                }
            })
            .collect();
        stats.connections = self
            .slots
            .values()
            .map(|s| {
                let (state, session) = match &s.link {
                    Link::Dialing { .. } => ("dialing", None),
                    Link::Open { conn, .. } if conn.is_ready() => {
                        ("ready", Some(conn.stats().clone()))
                    }
                    Link::Open { conn, .. } => ("handshaking", Some(conn.stats().clone())),
                    Link::Waiting { .. } => ("waiting", None),
                };
                ConnectionStats {
                    client_id: s.grant.id,
                    purpose: s.purpose.clone(),
                    gateway: s.gateway,
                    state,
                    leases: s.leases.len(),
                    session,
                }
            })
            .collect();
        stats
    }

    // ----- commands -----

    /// Ask for a lease on a connection of `purpose`, waiting up to `timeout` (default
    /// [`PoolConfig::acquire_timeout`]). The outcome arrives as exactly one
    /// [`PoolEvent::Acquired`] or [`PoolEvent::AcquireFailed`] with the returned id.
    pub fn acquire(
        &mut self,
        now: Instant,
        purpose: Purpose,
        timeout: Option<Duration>,
    ) -> AcquireId {
        self.advance(now);
        let id = AcquireId(self.fresh());
        let error = if self.shutting_down {
            Some(AcquireError::ShuttingDown)
        } else if !self.cfg.purposes.contains_key(&purpose) {
            Some(AcquireError::UnknownPurpose(purpose.clone()))
        } else {
            None
        };
        if let Some(error) = error {
            self.events
                .push_back(PoolEvent::AcquireFailed { acquire: id, error });
            return id;
        }
        let deadline = after(now, timeout.unwrap_or(self.cfg.acquire_timeout));
        tracing::debug!(acquire = id.0, %purpose, "acquire queued");
        self.waiters.push_back(Waiter {
            id,
            purpose,
            since: now,
            deadline,
        });
        self.update(now);
        id
    }

    /// Give a lease back. Its open requests end ([`CallError::Released`] or a cancel).
    pub fn release(&mut self, now: Instant, lease: LeaseId) {
        self.advance(now);
        let Some(slot_id) = self.leases.get(&lease).copied() else {
            self.lost.remove(&lease);
            return;
        };
        let tickets: Vec<Ticket> = self
            .requests
            .iter()
            .filter(|(_, r)| r.lease == lease)
            .map(|(t, _)| *t)
            .collect();
        // Cancelled while the lease still names its connection: requests already sent are
        // cancelled at the gateway too (IB would otherwise keep them open).
        for ticket in tickets {
            self.cancel(now, ticket);
        }
        self.leases.remove(&lease);
        if let Some(slot) = self.slots.get_mut(&slot_id) {
            slot.leases.remove(&lease);
            if slot.leases.is_empty() {
                slot.idle_since = now;
            }
            tracing::debug!(lease = lease.0, client_id = slot.grant.id, "lease released");
        }
        self.update(now);
    }

    /// Submit `query` on a lease. It waits in the pool while the connection is (re)connecting or
    /// until its pacing slot, then goes out; its outcome arrives as one [`PoolEvent::Completed`].
    /// `timeout` (default: the connection's request timeout) bounds the whole wait.
    pub fn send(
        &mut self,
        now: Instant,
        lease: LeaseId,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<Ticket, SubmitError> {
        self.advance(now);
        if self.shutting_down {
            return Err(SubmitError::ShuttingDown);
        }
        if !self.leases.contains_key(&lease) {
            return Err(if self.lost.contains(&lease) {
                SubmitError::LeaseLost(lease)
            } else {
                SubmitError::UnknownLease(lease)
            });
        }
        let ticket = Ticket(self.fresh());
        let deadline = after(now, timeout.unwrap_or(self.cfg.connection.request_timeout));
        tracing::debug!(
            ticket = ticket.0,
            query = query.name(),
            "pool request queued"
        );
        self.stats.requests += 1;
        self.requests.insert(
            ticket,
            Req {
                lease,
                query,
                submitted: now,
                deadline,
                state: ReqState::Queued,
                delayed: false,
            },
        );
        self.update(now);
        Ok(ticket)
    }

    /// Cancel a request or stream; unknown tickets are ignored.
    pub fn cancel(&mut self, now: Instant, ticket: Ticket) {
        self.advance(now);
        let Some(req) = self.requests.get(&ticket) else {
            return;
        };
        match req.state {
            ReqState::Queued | ReqState::Paced { .. } => {
                self.unreserve(ticket);
                self.finish(ticket, Err(CallError::Released));
            }
            ReqState::Sent { .. } => {
                let Some(slot_id) = self.leases.get(&req.lease).copied() else {
                    return;
                };
                let id = self.slots.get(&slot_id).and_then(|s| {
                    s.sent
                        .iter()
                        .find(|(_, t)| **t == ticket)
                        .map(|(id, _)| *id)
                });
                if let (Some(id), Some(Link::Open { conn, .. })) =
                    (id, self.slots.get_mut(&slot_id).map(|s| &mut s.link))
                {
                    conn.cancel(now, id);
                }
                self.drive(now, slot_id);
            }
            ReqState::Streaming { slot, id } => {
                self.requests.remove(&ticket);
                if let Some(s) = self.slots.get_mut(&slot) {
                    s.sent.remove(&id);
                    if let Link::Open { conn, .. } = &mut s.link {
                        conn.cancel(now, id);
                    }
                }
                self.drive(now, slot);
            }
        }
    }

    /// Fail every waiter and queued request, close every connection and release every id.
    /// Ends with [`PoolEvent::ShutDown`]; later commands are refused.
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        if self.shutting_down {
            return;
        }
        tracing::info!("pool shutting down");
        self.shutting_down = true;
        for w in std::mem::take(&mut self.waiters) {
            self.events.push_back(PoolEvent::AcquireFailed {
                acquire: w.id,
                error: AcquireError::ShuttingDown,
            });
        }
        let waiting: Vec<Ticket> = self
            .requests
            .iter()
            .filter(|(_, r)| matches!(r.state, ReqState::Queued | ReqState::Paced { .. }))
            .map(|(t, _)| *t)
            .collect();
        for ticket in waiting {
            self.unreserve(ticket);
            self.finish(ticket, Err(CallError::ShuttingDown));
        }
        let slots: Vec<SlotId> = self.slots.keys().copied().collect();
        for slot in slots {
            self.retire(now, slot);
        }
        self.leases.clear();
        self.lost.clear();
        self.requests.clear();
        self.events.push_back(PoolEvent::ShutDown);
    }

    // ----- inputs -----

    /// The runtime connected `socket`.
    pub fn handle_dialed(&mut self, now: Instant, socket: SocketId) {
        self.advance(now);
        let Some(&slot_id) = self.sockets.get(&socket) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        if !matches!(slot.link, Link::Dialing { socket: s, .. } if s == socket) {
            return;
        }
        let wide = self
            .gateways
            .get(slot.gateway)
            .is_some_and(|g| g.wide_offer);
        let (offer, versions) = match self.cfg.connection.versions {
            VersionPolicy::Pinned(range) => (Offered::Pinned, VersionPolicy::Pinned(range)),
            VersionPolicy::Auto if wide => (
                Offered::Wide,
                VersionPolicy::Pinned(VersionRange::supported()),
            ),
            VersionPolicy::Auto => (Offered::Modern, VersionPolicy::Auto),
        };
        slot.offer = offer;
        let cfg = Config {
            client_id: slot.grant.id,
            versions,
            ..self.cfg.connection.clone()
        };
        tracing::debug!(client_id = slot.grant.id, "socket open; handshaking");
        slot.link = Link::Open {
            socket,
            conn: Box::new(Connection::new(cfg, now)),
        };
        self.drive(now, slot_id);
        self.update(now);
    }

    /// The runtime could not connect `socket`.
    pub fn handle_dial_failed(&mut self, now: Instant, socket: SocketId, reason: String) {
        self.advance(now);
        if let Some(&slot_id) = self.sockets.get(&socket) {
            self.link_failed(now, slot_id, ConnectionError::Transport(reason));
        }
        self.update(now);
    }

    /// Bytes read from `socket`.
    pub fn handle_input(&mut self, now: Instant, socket: SocketId, bytes: &[u8]) {
        self.advance(now);
        if let Some(slot_id) = self.open_conn(socket, |conn| conn.handle_input(now, bytes)) {
            self.drive(now, slot_id);
        }
        self.update(now);
    }

    /// `socket` saw EOF (`cause = None`) or an error.
    pub fn handle_eof(&mut self, now: Instant, socket: SocketId, cause: Option<String>) {
        self.advance(now);
        if let Some(slot_id) = self.open_conn(socket, |conn| conn.handle_eof(now, cause)) {
            self.drive(now, slot_id);
        }
        self.update(now);
    }

    /// The runtime closed `socket` for a typed reason (e.g. [`ConnectionError::WriteTimeout`]):
    /// a loss like [`Pool::handle_eof`], with that reason.
    pub fn handle_socket_error(&mut self, now: Instant, socket: SocketId, reason: ConnectionError) {
        self.advance(now);
        let failed = self.open_conn(socket, |conn| conn.handle_socket_error(now, reason));
        if let Some(slot_id) = failed {
            self.drive(now, slot_id);
        }
        self.update(now);
    }

    /// Report both clocks (see [`Connection::observe_clocks`]) and the wall clock for leases.
    ///
    /// A wall clock ahead of the last report by more than the sleep threshold (the host slept:
    /// the monotonic clock stopped, the wall clock did not) renews every registry lease at once,
    /// before anything can allocate an id: the leases may have lapsed meanwhile.
    pub fn observe_clocks(&mut self, now: Instant, boottime: Duration, wall: UnixMillis) {
        self.advance(now);
        let expected = self.wall_at(now);
        self.wall = (now, wall);
        let jump = Duration::from_millis(wall.0.saturating_sub(expected.0));
        if jump > self.cfg.connection.sleep_threshold && !self.shutting_down {
            tracing::debug!(
                ?jump,
                "wall clock jumped ahead; renewing client-id leases now"
            );
            self.renew_leases(now);
        }
        let ids: Vec<SlotId> = self.slots.keys().copied().collect();
        for slot_id in ids {
            if let Some(Link::Open { conn, .. }) = self.slots.get_mut(&slot_id).map(|s| &mut s.link)
            {
                conn.observe_clocks(now, boottime);
                self.drive(now, slot_id);
            }
        }
        self.update(now);
    }

    /// Time passed; idempotent, spurious calls are fine.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.shutting_down {
            return;
        }
        let ids: Vec<SlotId> = self.slots.keys().copied().collect();
        for slot_id in ids {
            self.slot_timeout(now, slot_id);
        }
        self.expire(now);
        self.update(now);
    }

    // ----- outputs -----

    /// The next socket command. Poll after every input and command until `None`.
    pub fn poll_io(&mut self) -> Option<Io> {
        self.io.pop_front()
    }

    /// The next event. Poll after every input and command until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        if self.events.is_empty() {
            // A store failure seen outside `update` (a completion) is reported all the same.
            self.report_ledger_changes();
        }
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called; poll last.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.shutting_down {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        self.waiters.iter().for_each(|w| at(w.deadline));
        for r in self.requests.values() {
            match r.state {
                ReqState::Queued => at(r.deadline),
                ReqState::Paced {
                    at: send_at,
                    gateway,
                    res,
                } => {
                    // Due on a claim that may have lapsed, with the store out of reach: the
                    // send waits for the next try of the store, not for the past instant.
                    let stale = res.shared().is_some()
                        && self
                            .gateways
                            .get(gateway)
                            .is_some_and(|g| g.pacer.claim_stale(send_at.max(self.last_now)));
                    let send_at = match self.ledger_retry {
                        Some(retry) if stale => send_at.max(retry),
                        _ => send_at,
                    };
                    at(r.deadline.min(send_at));
                }
                _ => {}
            }
        }
        if let Some(retry) = self.ledger_retry {
            at(retry);
        }
        for s in self.slots.values() {
            match &s.link {
                Link::Dialing { deadline, .. } => at(*deadline),
                Link::Waiting { until } => at(*until),
                Link::Open { conn, .. } => {
                    if let Some(t) = conn.poll_timeout() {
                        at(t);
                    }
                    if conn.is_ready() && s.leases.is_empty() {
                        at(after(s.idle_since, self.cfg.idle_timeout));
                    }
                }
            }
        }
        if !self.slots.is_empty() {
            at(self.next_heartbeat);
        }
        next
    }

    // ----- internals -----

    fn advance(&mut self, now: Instant) {
        debug_assert!(now >= self.last_now, "`now` went backwards");
        self.last_now = self.last_now.max(now);
    }

    fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn wall_at(&self, now: Instant) -> UnixMillis {
        self.wall.1.plus(now.saturating_duration_since(self.wall.0))
    }

    fn open_conn(&mut self, socket: SocketId, f: impl FnOnce(&mut Connection)) -> Option<SlotId> {
        let slot_id = *self.sockets.get(&socket)?;
        match &mut self.slots.get_mut(&slot_id)?.link {
            Link::Open { socket: s, conn } if *s == socket => f(conn),
            _ => return None,
        }
        Some(slot_id)
    }

    /// Grant waiters, open connections for the rest, send what is due.
    fn update(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        // Before granting: an overdue heartbeat may find lapsed leases, and nothing may allocate
        // an id while this pool's own lapsed leases look free.
        if now >= self.next_heartbeat {
            self.renew_leases(now);
            self.renew_pacing(now);
        }
        if self.ledger_retry.is_some_and(|r| now >= r) {
            self.ledger_retry = None;
            // Completions the store missed free their open slots as soon as it answers.
            for g in &mut self.gateways {
                if g.pacer.owes() && !g.pacer.pay(&mut *self.ledger, now) {
                    self.ledger_retry = Some(now + LEDGER_RETRY);
                }
            }
        }
        self.grant_waiters(now);
        self.pump(now);
        if self.ledger_retry.is_none() && self.gateways.iter().any(|g| g.pacer.owes()) {
            self.ledger_retry = Some(now + LEDGER_RETRY);
        }
        self.report_ledger_changes();
    }

    fn grant_waiters(&mut self, now: Instant) {
        let mut blocked: BTreeSet<Purpose> = BTreeSet::new();
        let mut i = 0;
        while i < self.waiters.len() {
            let purpose = self.waiters[i].purpose.clone();
            if !blocked.contains(&purpose) {
                let free = self
                    .slots
                    .iter()
                    .filter(|(_, s)| {
                        s.purpose == purpose && s.is_ready() && s.leases.len() < s.capacity
                    })
                    .min_by_key(|(_, s)| (s.leases.len(), s.gateway))
                    .map(|(id, _)| *id);
                if let Some(slot_id) = free {
                    if let Some(w) = self.waiters.remove(i) {
                        self.grant(now, w, slot_id);
                    }
                    continue;
                }
                blocked.insert(purpose);
            }
            i += 1;
        }
        for purpose in blocked {
            self.open_for(now, &purpose);
        }
    }

    fn grant(&mut self, now: Instant, w: Waiter, slot_id: SlotId) {
        let lease = LeaseId(self.fresh());
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        slot.leases.insert(lease);
        self.leases.insert(lease, slot_id);
        self.stats.acquired += 1;
        tracing::debug!(
            acquire = w.id.0,
            lease = lease.0,
            client_id = slot.grant.id,
            waited = ?now.saturating_duration_since(w.since),
            "lease granted"
        );
        self.events.push_back(PoolEvent::Acquired {
            acquire: w.id,
            lease,
            client_id: slot.grant.id,
            gateway: slot.gateway,
        });
    }

    /// Open connections for `purpose`'s unserved waiters, within its cap.
    fn open_for(&mut self, now: Instant, purpose: &Purpose) {
        let Some(pc) = self.cfg.purposes.get(purpose).copied() else {
            return;
        };
        let unmet = self
            .waiters
            .iter()
            .filter(|w| &w.purpose == purpose)
            .count();
        let mine = || self.slots.values().filter(|s| &s.purpose == purpose);
        let mut total = mine().count();
        let mut coming: usize = mine()
            .filter(|s| !s.is_ready())
            .map(|s| s.capacity.saturating_sub(s.leases.len()))
            .fold(0, usize::saturating_add);
        while coming < unmet && total < pc.max_connections {
            let wall = self.wall_at(now);
            match self.registry.allocate(purpose, wall) {
                Ok(grant) => {
                    let slot_id = self.fresh();
                    tracing::debug!(client_id = grant.id, %purpose, "opening a connection");
                    self.slots.insert(
                        slot_id,
                        Slot {
                            purpose: purpose.clone(),
                            capacity: pc.sharing.capacity(),
                            grant,
                            conflicts: 0,
                            gateway: 0,
                            link: Link::Waiting { until: now },
                            backoff: Backoff::new(self.cfg.backoff),
                            leases: BTreeSet::new(),
                            idle_since: now,
                            dialed_at: now,
                            offer: Offered::Pinned,
                            ever_ready: false,
                            session_ready: false,
                            sent: BTreeMap::new(),
                            seen_probe: (0, None),
                        },
                    );
                    self.dial(now, slot_id);
                    total += 1;
                    coming = coming.saturating_add(pc.sharing.capacity());
                }
                Err(error) => {
                    tracing::warn!(%purpose, %error, "no client id");
                    if total == 0 {
                        self.fail_waiters(purpose, &AcquireError::ClientId(error));
                    }
                    return;
                }
            }
        }
    }

    fn fail_waiters(&mut self, purpose: &Purpose, error: &AcquireError) {
        let (failed, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| &w.purpose == purpose);
        self.waiters = keep.into();
        for w in failed {
            self.events.push_back(PoolEvent::AcquireFailed {
                acquire: w.id,
                error: error.clone(),
            });
        }
    }

    /// Dial the first gateway whose breaker admits a connect; if none does, wait for the earliest.
    fn dial(&mut self, now: Instant, slot_id: SlotId) {
        let mut retry_at = after(now, self.cfg.backoff.base);
        let mut chosen = None;
        for (i, g) in self.gateways.iter_mut().enumerate() {
            match g.breaker.try_acquire(now) {
                Ok(()) => {
                    chosen = Some(i);
                    break;
                }
                Err(BreakerRejection::Open { retry_at: t }) => retry_at = retry_at.min(t),
                Err(_) => {}
            }
        }
        let Some(gateway) = chosen else {
            if let Some(slot) = self.slots.get_mut(&slot_id) {
                tracing::debug!(client_id = slot.grant.id, "every gateway's breaker is open");
                slot.link = Link::Waiting { until: retry_at };
            }
            return;
        };
        self.dial_gateway(now, slot_id, gateway);
    }

    /// Dial `gateway`, whose breaker has admitted the attempt.
    fn dial_gateway(&mut self, now: Instant, slot_id: SlotId, gateway: usize) {
        let socket = SocketId(self.fresh());
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let Some(addr) = self.gateways.get(gateway).map(|g| g.addr.clone()) else {
            return;
        };
        if slot.ever_ready {
            self.stats.reconnects += 1;
        }
        tracing::debug!(client_id = slot.grant.id, %addr, "dialing");
        slot.gateway = gateway;
        slot.dialed_at = now;
        slot.session_ready = false;
        slot.link = Link::Dialing {
            socket,
            deadline: after(now, self.cfg.dial_timeout),
        };
        self.sockets.insert(socket, slot_id);
        self.io.push_back(Io::Dial {
            socket,
            addr,
            client_id: slot.grant.id,
        });
    }

    fn slot_timeout(&mut self, now: Instant, slot_id: SlotId) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        match &mut slot.link {
            Link::Dialing { deadline, .. } if now >= *deadline => {
                let after = self.cfg.dial_timeout;
                self.link_failed(
                    now,
                    slot_id,
                    ConnectionError::Transport(format!("connect timed out after {after:?}")),
                );
            }
            Link::Waiting { until } if now >= *until => self.dial(now, slot_id),
            Link::Open { conn, .. } => {
                if conn.is_ready()
                    && slot.leases.is_empty()
                    && now >= after(slot.idle_since, self.cfg.idle_timeout)
                {
                    tracing::debug!(client_id = slot.grant.id, "idle; closing");
                    return self.retire(now, slot_id);
                }
                conn.handle_timeout(now);
                self.drive(now, slot_id);
            }
            _ => {}
        }
    }

    /// Fail waiters and pool-held requests whose deadline passed.
    fn expire(&mut self, now: Instant) {
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| now >= w.deadline);
        self.waiters = keep.into();
        for w in late {
            self.stats.acquire_timeouts += 1;
            tracing::debug!(acquire = w.id.0, purpose = %w.purpose, "acquire timed out");
            self.events.push_back(PoolEvent::AcquireFailed {
                acquire: w.id,
                error: AcquireError::Timeout {
                    purpose: w.purpose,
                    after: w.deadline.saturating_duration_since(w.since),
                },
            });
        }
        let late: Vec<(Ticket, Duration)> = self
            .requests
            .iter()
            .filter(|(_, r)| matches!(r.state, ReqState::Queued | ReqState::Paced { .. }))
            .filter(|(_, r)| now >= r.deadline)
            .map(|(t, r)| (*t, r.deadline.saturating_duration_since(r.submitted)))
            .collect();
        for (ticket, after) in late {
            self.unreserve(ticket);
            self.finish(ticket, Err(RequestError::Timeout { after }.into()));
        }
    }

    /// Reserve and send queued requests on ready connections.
    fn pump(&mut self, now: Instant) {
        // A claim that may have lapsed (the store was out of reach, the process stopped) is
        // renewed before a reserved request goes out on it: its slot may be someone else's now.
        let stale: BTreeSet<usize> = self
            .requests
            .values()
            .filter_map(|r| match r.state {
                ReqState::Paced { gateway, res, at } if at <= now && res.shared().is_some() => {
                    Some(gateway)
                }
                _ => None,
            })
            .filter(|g| {
                self.gateways
                    .get(*g)
                    .is_some_and(|g| g.pacer.claim_stale(now))
            })
            .collect();
        for gateway in stale {
            if !self.renew_gateway_pacing(now, gateway, true) {
                self.ledger_retry = Some(now + LEDGER_RETRY);
            }
        }
        let tickets: Vec<Ticket> = self
            .requests
            .iter()
            .filter(|(_, r)| matches!(r.state, ReqState::Queued | ReqState::Paced { .. }))
            .map(|(t, _)| *t)
            .collect();
        let mut touched = BTreeSet::new();
        for ticket in tickets {
            if let Some(slot_id) = self.pump_one(now, ticket) {
                touched.insert(slot_id);
            }
        }
        for slot_id in touched {
            self.drive(now, slot_id);
        }
    }

    /// Advance one request; returns the slot it was sent on.
    fn pump_one(&mut self, now: Instant, ticket: Ticket) -> Option<SlotId> {
        let req = self.requests.get_mut(&ticket)?;
        let slot_id = *self.leases.get(&req.lease)?;
        let slot = self.slots.get_mut(&slot_id)?;
        let gateway = slot.gateway;
        let conn = slot.ready_conn()?;
        if req.state == ReqState::Queued && self.ledger_retry.is_some_and(|r| now < r) {
            return None;
        }
        if req.state == ReqState::Queued {
            let pacer = &mut self.gateways.get_mut(gateway)?.pacer;
            match pacer.reserve(&mut *self.ledger, now, &paced(&req.query)) {
                Ok((res, at, _)) => {
                    req.state = ReqState::Paced { gateway, res, at };
                }
                Err(SharedError::Pacer(PacerError::OpenRequestsFull { .. })) => return None,
                Err(SharedError::Ledger(e)) => {
                    // Never unpaced: wait for the store, within the request's deadline.
                    self.ledger_wait(now, gateway, &e);
                    return None;
                }
                Err(SharedError::Pacer(e)) => {
                    self.finish(ticket, Err(CallError::Pacing(e)));
                    return None;
                }
            }
        }
        let ReqState::Paced {
            gateway: g,
            res,
            at,
        } = req.state
        else {
            return None;
        };
        if at > now {
            if !req.delayed {
                req.delayed = true;
                self.stats.pacing_waits += 1;
                self.stats.pacing_wait_ms += (at - now).as_millis() as u64;
                tracing::debug!(ticket = ticket.0, wait = ?(at - now), "request waits for pacing");
                self.events
                    .push_back(PoolEvent::RequestDelayed { ticket, until: at });
            }
            return None;
        }
        if res.shared().is_some()
            && self
                .gateways
                .get(g)
                .is_some_and(|gw| gw.pacer.claim_stale(now))
        {
            // The renewal above failed: wait for the store rather than send on a lapsed claim.
            return None;
        }
        let timeout = req.deadline.saturating_duration_since(now);
        match conn.send(now, req.query.clone(), Some(timeout)) {
            Ok(id) => {
                req.state = ReqState::Sent { gateway: g, res };
                slot.sent.insert(id, ticket);
                Some(slot_id)
            }
            Err(SendError::Closed) => {
                self.unreserve(ticket);
                None
            }
            Err(SendError::Unsupported(e)) => {
                self.unreserve(ticket);
                self.finish(ticket, Err(RequestError::Unsupported(e).into()));
                None
            }
        }
    }

    /// Give back a request's unsent reservation; it is `Queued` again.
    fn unreserve(&mut self, ticket: Ticket) {
        let now = self.last_now;
        let Some(req) = self.requests.get_mut(&ticket) else {
            return;
        };
        if let ReqState::Paced { gateway, res, .. } = req.state {
            if let Some(g) = self.gateways.get_mut(gateway) {
                g.pacer.cancel(&mut *self.ledger, now, res);
            }
        }
        req.state = ReqState::Queued;
    }

    /// End every request of a lease whose connection is gone for good.
    fn abandon_lease(&mut self, lease: LeaseId) {
        let tickets: Vec<(Ticket, ReqState)> = self
            .requests
            .iter()
            .filter(|(_, r)| r.lease == lease)
            .map(|(t, r)| (*t, r.state))
            .collect();
        for (ticket, state) in tickets {
            match state {
                ReqState::Sent { gateway, res } => {
                    if let Some(g) = self.gateways.get_mut(gateway) {
                        g.pacer.complete(&mut *self.ledger, self.last_now, res);
                    }
                    self.finish(ticket, Err(CallError::LeaseLost));
                }
                // A stream already completed once; it just stops.
                ReqState::Streaming { .. } => {
                    self.requests.remove(&ticket);
                }
                ReqState::Queued | ReqState::Paced { .. } => {
                    self.unreserve(ticket);
                    self.finish(ticket, Err(CallError::LeaseLost));
                }
            }
        }
    }

    fn finish(&mut self, ticket: Ticket, result: Result<Answer, CallError>) {
        if self.requests.remove(&ticket).is_some() {
            self.events
                .push_back(PoolEvent::Completed { ticket, result });
        }
    }

    /// Drain a connection's output into the pool's.
    fn drive(&mut self, now: Instant, slot_id: SlotId) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let Link::Open { socket, conn } = &mut slot.link else {
            return;
        };
        while let Some(bytes) = conn.poll_transmit() {
            self.io.push_back(Io::Write {
                socket: *socket,
                bytes,
            });
        }
        let probe = (conn.stats().probes, conn.stats().last_probe_rtt_us);
        if probe.1.is_some() && probe != slot.seen_probe {
            slot.seen_probe = probe;
            self.stats.probe_rtt.record(probe.1.unwrap_or(0));
        }
        let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
        for event in events {
            self.on_event(now, slot_id, event);
        }
    }

    fn on_event(&mut self, now: Instant, slot_id: SlotId, event: Event) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let client_id = slot.grant.id;
        match event {
            Event::Connected { server_version, .. } => {
                if slot.offer == Offered::Wide
                    && server_version >= version::PROTOBUF_REST_MESSAGES_3
                {
                    if let Some(g) = self.gateways.get_mut(slot.gateway) {
                        if g.wide_offer {
                            g.wide_offer = false;
                            tracing::debug!(
                                gateway = %g.addr,
                                server_version,
                                "gateway speaks a modern version again; back to the modern offer"
                            );
                        }
                    }
                }
                slot.ever_ready = true;
                slot.session_ready = true;
                slot.conflicts = 0;
                slot.backoff.reset();
                slot.idle_since = now;
                let latency = now.saturating_duration_since(slot.dialed_at);
                let gateway = slot.gateway;
                if let Some(g) = self.gateways.get_mut(gateway) {
                    g.breaker.on_success(now);
                    g.established += 1;
                }
                self.stats.established += 1;
                self.stats
                    .handshake_latency
                    .record(latency.as_micros() as u64);
                self.events
                    .push_back(PoolEvent::Connected { client_id, gateway });
            }
            Event::Completed { id, result } => {
                if let Some(ticket) = slot.sent.remove(&id) {
                    self.on_completed(now, slot_id, id, ticket, result);
                }
            }
            Event::BarUpdate { id, bar } => {
                if let Some(&ticket) = slot.sent.get(&id) {
                    self.events.push_back(PoolEvent::BarUpdate { ticket, bar });
                }
            }
            Event::Notice { class, .. } => self.count(class),
            Event::Connectivity(change) => self
                .events
                .push_back(PoolEvent::Connectivity { client_id, change }),
            Event::Resubscribe => {
                let leases = slot.leases.iter().copied().collect();
                self.events
                    .push_back(PoolEvent::Resubscribe { client_id, leases });
            }
            Event::RateLimited => {
                self.stats.rate_limited += 1;
                if let Some(g) = self.gateways.get_mut(slot.gateway) {
                    g.pacer.on_rate_exceeded(now);
                }
            }
            Event::Disconnected { reason } => {
                if matches!(reason, ConnectionError::SleepDetected(_)) {
                    // The leases may have lapsed while the host slept: renew them now.
                    self.next_heartbeat = self.next_heartbeat.min(now);
                }
                self.link_failed(now, slot_id, reason);
            }
        }
    }

    fn count(&mut self, class: ErrorClass) {
        *self
            .stats
            .errors_by_class
            .entry(format!("{class:?}"))
            .or_default() += 1;
    }

    fn on_completed(
        &mut self,
        now: Instant,
        slot_id: SlotId,
        id: RequestId,
        ticket: Ticket,
        result: Result<Answer, RequestError>,
    ) {
        let Some(req) = self.requests.get_mut(&ticket) else {
            return;
        };
        if let ReqState::Sent { gateway, res } = req.state {
            if let Some(g) = self.gateways.get_mut(gateway) {
                g.pacer.complete(&mut *self.ledger, now, res);
                if matches!(
                    &result,
                    Err(RequestError::Api {
                        class: ErrorClass::Pacing,
                        ..
                    })
                ) {
                    g.pacer.on_violation(&mut *self.ledger, now);
                    self.stats.pacing_violations += 1;
                }
            }
        }
        let retry = match &result {
            Err(RequestError::Api { class, .. }) => {
                let class = *class;
                self.count(class);
                class == ErrorClass::Pacing
            }
            Err(RequestError::ConnectionClosed(_)) => true,
            _ => false,
        };
        let Some(req) = self.requests.get_mut(&ticket) else {
            return;
        };
        if retry && now < req.deadline && !self.shutting_down {
            tracing::warn!(ticket = ticket.0, error = ?result.err(), "request will be retried");
            self.stats.requests_retried += 1;
            req.state = ReqState::Queued;
            req.delayed = false;
            return;
        }
        let result = result.map_err(|e| match e {
            RequestError::Timeout { .. } => RequestError::Timeout {
                after: req.deadline.saturating_duration_since(req.submitted),
            },
            other => other,
        });
        let stream = matches!(&req.query, Query::HistoricalData(r) if r.keep_up_to_date);
        if stream && result.is_ok() {
            req.state = ReqState::Streaming { slot: slot_id, id };
            if let Some(slot) = self.slots.get_mut(&slot_id) {
                slot.sent.insert(id, ticket);
            }
            self.events.push_back(PoolEvent::Completed {
                ticket,
                result: result.map_err(CallError::from),
            });
        } else {
            self.finish(ticket, result.map_err(CallError::from));
        }
    }

    /// A dial or session ended: move on to the next id (326), redial with backoff, or retire.
    fn link_failed(&mut self, now: Instant, slot_id: SlotId, reason: ConnectionError) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        if let Some(socket) = slot.socket() {
            self.sockets.remove(&socket);
            self.io.push_back(Io::Close { socket });
        }
        let gateway = slot.gateway;
        let was_ready = std::mem::take(&mut slot.session_ready);
        slot.link = Link::Waiting { until: now };
        // Requests paced for this session go back to the queue (the next session may use
        // another gateway and so another pacer).
        let leases = slot.leases.clone();
        let client_id = slot.grant.id;
        let paced: Vec<Ticket> = self
            .requests
            .iter()
            .filter(|(_, r)| leases.contains(&r.lease) && matches!(r.state, ReqState::Paced { .. }))
            .map(|(t, _)| *t)
            .collect();
        paced.into_iter().for_each(|t| self.unreserve(t));
        if self.version_fallback(now, slot_id, &reason) {
            return;
        }
        if let Some(g) = self.gateways.get_mut(gateway) {
            if was_ready {
                self.stats.disconnects += 1;
            } else if matches!(reason, ConnectionError::ClientIdInUse { .. }) {
                g.breaker.on_success(now);
            } else {
                self.stats.failed += 1;
                g.failed += 1;
                g.breaker.on_failure(now);
            }
        }
        if was_ready {
            self.events.push_back(PoolEvent::Disconnected {
                client_id,
                reason: reason.clone(),
            });
        }
        if self.shutting_down {
            return self.retire(now, slot_id);
        }
        if let ConnectionError::ClientIdInUse { .. } = reason {
            return self.next_client_id(now, slot_id);
        }
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let purpose = slot.purpose.clone();
        if slot.leases.is_empty() && !self.waiters.iter().any(|w| w.purpose == purpose) {
            return self.retire(now, slot_id);
        }
        let delay = slot
            .backoff
            .next_delay(&mut self.rng)
            .unwrap_or_else(|| slot.backoff.ceiling());
        tracing::warn!(client_id, %reason, ?delay, "redialing after backoff");
        slot.link = Link::Waiting {
            until: after(now, delay),
        };
    }

    /// Under [`VersionPolicy::Auto`], a session that offered the modern range and ended before
    /// its hello could be used — the gateway answered a version below the offer, closed the
    /// socket first, or never finished the handshake (a gateway that stays silent on an offer it
    /// does not know; a slow modern one merely costs one wide session, after which a reported
    /// version ≥ 213 restores the modern offer) — marks its gateway as needing the wide offer and
    /// redials it at once: no
    /// backoff, no failure counted, and the breaker admission of the first attempt carries over
    /// (the wide attempt reports the outcome). Returns whether it did.
    fn version_fallback(
        &mut self,
        now: Instant,
        slot_id: SlotId,
        reason: &ConnectionError,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return false;
        };
        let older = matches!(
            reason,
            ConnectionError::VersionBelowOffer { .. }
                | ConnectionError::ClosedBeforeHello { .. }
                | ConnectionError::HandshakeTimeout(_)
        );
        if slot.offer != Offered::Modern || !older {
            return false;
        }
        slot.offer = Offered::Wide;
        let (gateway, client_id) = (slot.gateway, slot.grant.id);
        let Some(g) = self.gateways.get_mut(gateway) else {
            return false;
        };
        g.wide_offer = true;
        tracing::debug!(
            client_id,
            gateway = %g.addr,
            %reason,
            offer = %VersionRange::supported(),
            "gateway older than the modern offer; redialing at once with the wide offer"
        );
        let users =
            !slot.leases.is_empty() || self.waiters.iter().any(|w| w.purpose == slot.purpose);
        if users && !self.shutting_down {
            // The handshake latency keeps counting from the first dial: the fallback is part of
            // what the caller waits for.
            let dialed_at = slot.dialed_at;
            g.version_fallbacks += 1;
            self.dial_gateway(now, slot_id, gateway);
            if let Some(slot) = self.slots.get_mut(&slot_id) {
                slot.dialed_at = dialed_at;
            }
            return true;
        }
        // Nobody waits for this session; the gateway stays marked for the next one. A gateway
        // that answered is alive; an unexplained close stays a failure (no wide retry shows
        // otherwise) and takes the usual path.
        if !matches!(reason, ConnectionError::VersionBelowOffer { .. }) {
            return false;
        }
        g.breaker.on_success(now);
        self.retire(now, slot_id);
        true
    }

    /// After a 326: the registry marks the id foreign and leases the next one; dial right away.
    fn next_client_id(&mut self, now: Instant, slot_id: SlotId) {
        self.stats.client_id_conflicts += 1;
        let wall = self.wall_at(now);
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        match self
            .registry
            .on_client_id_in_use(&slot.grant, slot.conflicts, wall)
        {
            Ok(grant) => {
                tracing::warn!(
                    refused = slot.grant.id,
                    next = grant.id,
                    "client id in use (326); trying the next id"
                );
                slot.grant = grant;
                slot.conflicts += 1;
                self.dial(now, slot_id);
            }
            Err(error) => {
                tracing::warn!(%error, "no client id left after 326");
                self.lose_slot(slot_id, error);
            }
        }
    }

    /// Remove a slot that has no client id left: its leases are gone (their requests end with
    /// [`CallError::LeaseLost`] and their holders get [`PoolEvent::LeaseLost`]), and so are the
    /// purpose's waiters if no connection of the purpose remains. The id is not released: the
    /// slot no longer holds it.
    fn lose_slot(&mut self, slot_id: SlotId, error: IdRegistryError) {
        let Some(slot) = self.slots.remove(&slot_id) else {
            return;
        };
        if let Some(socket) = slot.socket() {
            self.sockets.remove(&socket);
            self.io.push_back(Io::Close { socket });
        }
        let purpose = slot.purpose.clone();
        let client_id = slot.grant.id;
        for lease in slot.leases {
            self.leases.remove(&lease);
            self.lost.insert(lease);
            self.abandon_lease(lease);
            self.events.push_back(PoolEvent::LeaseLost {
                lease,
                client_id,
                error: AcquireError::ClientId(error.clone()),
            });
        }
        if !self.slots.values().any(|s| s.purpose == purpose) {
            self.fail_waiters(&purpose, &AcquireError::ClientId(error));
        }
    }

    /// Heartbeat every connection's registry lease. A lease that lapsed (no heartbeat within the
    /// TTL: the host slept, or the process stalled) is taken again if its id is still free, and
    /// the session carries on. A connection whose id someone else holds now must not use it
    /// another moment: its session closes and it moves to a fresh id ([`Pool::move_to_fresh_id`]).
    /// Store failures (I/O) are only logged; the next heartbeat tries again.
    fn renew_leases(&mut self, now: Instant) {
        self.next_heartbeat = after(now, self.cfg.heartbeat_interval);
        let wall = self.wall_at(now);
        let mut taken = Vec::new();
        // First renew everything, so that no id this pool still uses looks free when the
        // connections that lost theirs allocate new ones.
        for (&slot_id, slot) in &mut self.slots {
            let client_id = slot.grant.id;
            match self.registry.heartbeat(&slot.grant, wall) {
                Ok(()) => continue,
                Err(error @ IdRegistryError::Store(_)) => {
                    tracing::warn!(client_id, %error, "lease heartbeat failed; retrying at the next");
                    continue;
                }
                Err(error) => {
                    tracing::debug!(client_id, %error, "lease lapsed; taking the id again");
                }
            }
            match self.registry.reacquire(&slot.grant, wall) {
                Ok(grant) => {
                    tracing::warn!(
                        client_id,
                        "client-id lease had lapsed; took the same id again"
                    );
                    slot.grant = grant;
                }
                Err(error @ IdRegistryError::Store(_)) => {
                    tracing::warn!(client_id, %error, "lease renewal failed; retrying at the next");
                }
                Err(error) => {
                    tracing::warn!(
                        client_id,
                        %error,
                        "client-id lease lapsed and the id is someone else's now; moving to a fresh id"
                    );
                    taken.push(slot_id);
                }
            }
        }
        for slot_id in taken {
            self.move_to_fresh_id(now, slot_id);
        }
    }

    /// A pacing-ledger step failed: queued requests wait (never unpaced, each within its own
    /// deadline) and are tried again after [`LEDGER_RETRY`].
    fn ledger_wait(&mut self, now: Instant, gateway: usize, error: &LedgerError) {
        self.stats.pacing_store_errors += 1;
        tracing::debug!(gateway, %error, "request waits for the pacing store");
        self.ledger_retry = Some(now + LEDGER_RETRY);
    }

    /// Report each gateway's pacing store going down or coming back, whichever step saw it
    /// (a reservation, a renewal at the heartbeat, a completion): [`PoolEvent::PacingStore`].
    fn report_ledger_changes(&mut self) {
        for (gateway, g) in self.gateways.iter().enumerate() {
            let failing = g.pacer.failing();
            let was_down = self.ledger_down.contains(&gateway);
            match failing {
                Some(error) if !was_down => {
                    self.ledger_down.insert(gateway);
                    self.events.push_back(PoolEvent::PacingStore {
                        gateway,
                        error: Some(error.to_string()),
                    });
                }
                None if was_down => {
                    self.ledger_down.remove(&gateway);
                    self.events.push_back(PoolEvent::PacingStore {
                        gateway,
                        error: None,
                    });
                }
                _ => {}
            }
        }
    }

    /// Renew this pool's claims in every gateway's pacing book, and take back to the queue the
    /// paced requests whose slot the book dropped (this process's claim lapsed: it was stopped,
    /// or the host slept, longer than [`PoolConfig::pacing_claim_ttl`]).
    fn renew_pacing(&mut self, now: Instant) {
        for gateway in 0..self.gateways.len() {
            let _ = self.renew_gateway_pacing(now, gateway, false);
        }
    }

    /// [`Pool::renew_pacing`] for one gateway. `overdue`: the claim may have lapsed and
    /// reserved requests are due (or past due): renew even if nothing else needs it, and reserve
    /// those again, since a request sent later than its slot counts later at IB than in the book.
    /// `false` when the store could not be reached.
    fn renew_gateway_pacing(&mut self, now: Instant, gateway: usize, overdue: bool) -> bool {
        let held: Vec<ReservationId> = self
            .requests
            .values()
            .filter_map(|r| match r.state {
                ReqState::Paced {
                    gateway: g, res, ..
                }
                | ReqState::Sent { gateway: g, res }
                    if g == gateway =>
                {
                    res.shared()
                }
                _ => None,
            })
            .collect();
        let owner = self.ledger.owner().to_owned();
        let Some(g) = self.gateways.get_mut(gateway) else {
            return true;
        };
        // With nothing held and nothing of ours left in the window, there is nothing to keep.
        if !overdue && held.is_empty() && !g.pacer.needs_renewal(&owner, now) {
            return true;
        }
        let Ok(lost) = g.pacer.renew(&mut *self.ledger, now, &held) else {
            return false;
        };
        for req in self.requests.values_mut() {
            if let ReqState::Paced {
                gateway: g2,
                res,
                at,
            } = req.state
            {
                let lost = res.shared().is_some_and(|id| lost.contains(&id));
                if g2 == gateway && (lost || (overdue && at < now)) {
                    tracing::warn!(
                        lost,
                        "pacing claim lapsed or slot missed; reserving the request again"
                    );
                    if let Some(g) = self.gateways.get_mut(gateway) {
                        g.pacer.cancel(&mut *self.ledger, now, res);
                    }
                    req.state = ReqState::Queued;
                    req.delayed = false;
                }
            }
        }
        true
    }

    /// The slot's id belongs to someone else now: end its session (its requests go back to the
    /// queue, as after any drop; [`PoolEvent::Disconnected`] if it was ready), lease a fresh id
    /// for the redial, or — none left — lose the slot ([`Pool::lose_slot`]).
    fn move_to_fresh_id(&mut self, now: Instant, slot_id: SlotId) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        match &mut slot.link {
            Link::Open { conn, .. } => {
                conn.close(now);
                self.drive(now, slot_id);
            }
            Link::Dialing { .. } => self.link_failed(now, slot_id, ConnectionError::LocallyClosed),
            Link::Waiting { .. } => {}
        }
        // With no user left the slot was retired by the close.
        let Some(purpose) = self.slots.get(&slot_id).map(|s| s.purpose.clone()) else {
            return;
        };
        let wall = self.wall_at(now);
        match self.registry.allocate(&purpose, wall) {
            Ok(grant) => {
                if let Some(slot) = self.slots.get_mut(&slot_id) {
                    tracing::debug!(
                        lost = slot.grant.id,
                        next = grant.id,
                        "redialing with a fresh client id"
                    );
                    slot.grant = grant;
                    slot.conflicts = 0;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "no client id left for a connection whose id was taken");
                self.lose_slot(slot_id, error);
            }
        }
    }

    /// Remove a slot: close its session and socket, release its id.
    fn retire(&mut self, now: Instant, slot_id: SlotId) {
        let Some(mut slot) = self.slots.remove(&slot_id) else {
            return;
        };
        if let Link::Open { conn, .. } = &mut slot.link {
            conn.close(now);
            let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
            for event in events {
                if let Event::Completed { id, result } = event {
                    if let Some(ticket) = slot.sent.remove(&id) {
                        // A request still in flight (one IB never answered, say) gives its
                        // pacing slot back as it ends here, as in `on_completed`; `unreserve`
                        // only covers slots not yet used.
                        let state = self.requests.get(&ticket).map(|r| r.state);
                        if let Some(ReqState::Sent { gateway, res }) = state {
                            if let Some(g) = self.gateways.get_mut(gateway) {
                                g.pacer.complete(&mut *self.ledger, now, res);
                            }
                        }
                        self.unreserve(ticket);
                        self.finish(ticket, result.map_err(CallError::from));
                    }
                }
            }
        }
        if let Some(socket) = slot.socket() {
            self.sockets.remove(&socket);
            self.io.push_back(Io::Close { socket });
        }
        for lease in &slot.leases {
            self.leases.remove(lease);
        }
        let wall = self.wall_at(now);
        match self.registry.release(&slot.grant, wall) {
            Ok(()) => tracing::debug!(client_id = slot.grant.id, "client id released"),
            Err(e) => tracing::warn!(client_id = slot.grant.id, error = %e, "release failed"),
        }
    }
}

/// What the pacer needs to know about a query.
fn paced(query: &Query) -> PacedRequest {
    match query {
        Query::HistoricalData(r) => match r.bar_size.parse::<BarSize>() {
            Ok(bar_size) => PacedRequest::Historical(HistoricalRequestKey {
                contract: contract_key(&r.contract),
                exchange: r.contract.exchange.clone(),
                end: r.end_date_time.clone(),
                duration: r.duration.clone(),
                bar_size,
                what_to_show: r.what_to_show.clone(),
                use_rth: r.use_rth,
            }),
            Err(_) => PacedRequest::Message,
        },
        Query::HeadTimestamp(r) => PacedRequest::HeadTimestamp(HeadTimestampKey {
            contract: contract_key(&r.contract),
            exchange: r.contract.exchange.clone(),
            what_to_show: r.what_to_show.clone(),
            use_rth: r.use_rth,
        }),
        Query::ContractDetails(_) => PacedRequest::ContractDetails,
        _ => PacedRequest::Message,
    }
}

fn contract_key(c: &Contract) -> String {
    if c.con_id != 0 {
        c.con_id.to_string()
    } else {
        format!("{}:{}:{}", c.symbol, c.sec_type, c.currency)
    }
}

#[cfg(test)]
mod tests;
