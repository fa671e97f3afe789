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
//! Runtimes drive the pool through [`Driver`], which keeps this contract for them (and routes
//! answers, queues writes with their deadlines and paces the clock reads). Driving a bare pool:
//! after **every** input or command, drain `poll_io()` (dial, write, close — in order), then
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
//!
//! # Layout
//!
//! This file holds the pool's state and its run loop; the `impl Pool` blocks behind it are split
//! by concern: `leases` (acquire, release, waiters), `requests` (send, cancel, pacing, answers),
//! `slots` (dialing, sessions, redials, version fallback), `client_ids` (registry glue),
//! `pacing` (shared pacing-ledger glue) and `stats`. Around the pool: `driver` (what runtimes
//! run: the pool, reply routing, write queues, the clock cadence), `router` (replies to
//! callers) and `notice` (session notices for users).
//!
//! [`VersionPolicy::Auto`]: crate::connection::VersionPolicy::Auto

mod client_ids;
mod driver;
mod leases;
mod notice;
mod pacing;
mod registry;
mod requests;
mod router;
mod slots;
mod stats;
mod streams;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

pub use self::driver::{Action, Driver, WRITE_QUEUE};
pub use self::notice::{NoticeFanout, Offer, PoolNotice, NOTICE_BUFFER};
pub use self::pacing::paced;
#[cfg(feature = "file-store")]
pub use self::registry::FileRegistry;
pub use self::registry::{IdRegistry, IdRegistryError, MemoryRegistry};
pub use self::router::{Channels, Command, Flow, Leased, Router};
pub use self::types::{
    AcquireError, AcquireId, Bars, CallError, ConnectionStats, GatewayStats, Io, LatencyUs,
    LeaseId, PoolConfig, PoolError, PoolEvent, PoolStats, PurposeConfig, Sharing, SocketId,
    StreamStats, SubmitError, Ticket, PACING_MARGIN,
};
use crate::backoff::{Backoff, SplitMix64};
use crate::breaker::CircuitBreaker;
use crate::client_id::{Grant, Purpose, UnixMillis};
use crate::connection::{Connection, Query, RequestError, RequestId};
use crate::deadline::after;
use crate::pacer::{MemoryLedger, PaceLedger, SharedHold, SharedPacer};

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
    ///
    /// [`VersionPolicy::Auto`]: crate::connection::VersionPolicy::Auto
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
    ///
    /// [`VersionPolicy::Auto`]: crate::connection::VersionPolicy::Auto
    Modern,
    /// [`VersionPolicy::Auto`]'s wide range, for a gateway known to be older than the modern one.
    ///
    /// [`VersionPolicy::Auto`]: crate::connection::VersionPolicy::Auto
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
    /// The next session's first request id: ids go on across sessions, so a stream requested
    /// again is never under an id the gateway saw from this client id before.
    next_req_id: i32,
}

impl Slot {
    /// When this slot's own timer fires — its dial times out, its redial wait ends, or (open,
    /// ready and unleased) it has idled out — for both `poll_timeout` and `handle_timeout`.
    fn deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        match &self.link {
            Link::Dialing { deadline, .. } => Some(*deadline),
            Link::Waiting { until } => Some(*until),
            Link::Open { conn, .. } => (conn.is_ready() && self.leases.is_empty())
                .then(|| after(self.idle_since, idle_timeout)),
        }
    }

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
    /// The pacing rule that set its slot, when it waits.
    held_by: Option<crate::pacer::Hold>,
    /// A stream's own state (`None` for every other query).
    stream: Option<Box<streams::StreamState>>,
}

impl Req {
    /// The cap a stream counts against (`None`: not a stream, or a snapshot).
    fn stream_kind(&self) -> Option<crate::stream::StreamKind> {
        match &self.query {
            Query::Stream(q) if !q.is_snapshot() => Some(q.kind()),
            _ => None,
        }
    }
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
    /// `poll_timeout`'s answer until the next input or command (every one starts with
    /// `advance`, which clears it): a runtime asks several times between inputs, and the
    /// answer scans every request and session.
    timeout_cache: std::cell::Cell<Option<Option<Instant>>>,
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
            timeout_cache: std::cell::Cell::new(None),
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

    // ----- commands -----

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
        if let Some(cached) = self.timeout_cache.get() {
            return cached;
        }
        let next = self.compute_timeout();
        self.timeout_cache.set(Some(next));
        next
    }

    fn compute_timeout(&self) -> Option<Instant> {
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
            s.deadline(self.cfg.idle_timeout)
                .into_iter()
                .for_each(&mut at);
            if let Link::Open { conn, .. } = &s.link {
                conn.poll_timeout().into_iter().for_each(&mut at);
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
        self.timeout_cache.set(None);
    }

    fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn wall_at(&self, now: Instant) -> UnixMillis {
        self.wall.1.plus(now.saturating_duration_since(self.wall.0))
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
}

#[cfg(test)]
mod tests;
