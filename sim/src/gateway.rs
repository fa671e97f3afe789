//! The sans-IO gateway: client bytes and `now` in, gateway bytes, close requests and deadlines out.
//!
//! # Run loop
//!
//! ```text
//! let conn = gw.accept(now);                 // a socket was accepted
//! gw.handle_input(conn, now, &bytes);        // bytes arrived
//! gw.handle_eof(conn, now);                  // the client closed (or handle_reset: it vanished)
//! gw.handle_timeout(now);                    // when now >= gw.poll_timeout()
//! while let Some(b) = gw.poll_transmit(conn) { write(b) }   // after every handle_* call
//! if gw.poll_close(conn) { close the socket }               // after draining poll_transmit
//! ```
//!
//! The gateway never reads a clock: `now` must not go backwards. Wall time (for `currentTime`,
//! bars and error times) is `start_unix_ms` plus the time since the first `now` it saw, or since
//! the anchor given to [`Gateway::set_clock`].
//!
//! # Behaviour
//!
//! - Handshake: the answer is the highest version common to the client's range and
//!   [`GatewayConfig::versions`]. A client whose maximum is below the gateway's minimum is refused
//!   (socket closed without a reply); a client whose minimum is above the gateway's maximum gets the
//!   gateway's maximum, which it will refuse itself (as ibapi does with an old gateway).
//! - START_API: a client id in use (or still held after an abrupt close) gets error 326 and the
//!   socket closes; beyond `max_clients` sessions the socket is closed without a reply. Otherwise the
//!   startup burst: `ManagedAccounts`, `NextValidId`, then 2104/2106/2158 with id −1.
//! - Requests are answered in the form the negotiated version implies (the core's
//!   `Response::encode`). Historical, head-timestamp, contract and symbol replies wait
//!   `reply_latency` plus a seeded jitter; while they wait, historical and head-timestamp
//!   requests count as open HMDS requests (IB's 50).
//! - Limits: [`crate::rules`], for historical and head-timestamp requests alike. A second
//!   `reqCurrentTime` within `ignore_current_time_within` (1 s) of the last answered one is never
//!   answered, as at IB.
//! - Historical data as IB has it: bars of 30 seconds or less ending more than about six months
//!   ago ([`GatewayConfig::small_bar_history`]) and requests ending in the future get a 162
//!   without bars ([`errors::small_bars_too_old`], [`errors::end_in_future`]).
//! - A historical or head-timestamp request reusing the id of one still open on the session gets
//!   322 "Duplicate ticker id"; the open one carries on.
//! - A text client's (server version < 201) startup sync — reqPositions, reqOpenOrders,
//!   reqCompletedOrders, reqAccountUpdates(Multi), reqExecutions — is answered with the matching
//!   end message of an empty paper account, as ib_async and ib_insync wait for them.
//!
//! # Faults
//!
//! [`Gateway::inject`] applies a [`Fault`] now, [`Gateway::schedule_fault`] later, and
//! [`GatewayConfig::chaos`] draws them at random from the seed. Request faults (a spurious "no
//! data", a request never answered, a spurious 322) hit a connection's next few HMDS requests;
//! [`Gateway::counters`] tells how many did. While the gateway restarts
//! ([`Fault::Restart`], [`Fault::Crash`]) its port refuses: drivers ask [`Gateway::port`] (or
//! [`Gateway::is_refusing`]) before accepting, and [`Gateway::poll_timeout`] includes the reopening
//! instant.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ibconn_core::message::request::HistoricalDataRequest;
use ibconn_core::message::{Bar, ErrorMessage, HeadTimestampRequest, Request, Response};
use ibconn_core::wire::{negotiate, ClientHello, Form, FrameDecoder, ServerHello, VersionRange};

use crate::bars::{self, BarSpec, WhatToShow};
use crate::calendar::{self, BarSpan, IbDuration, Zone, NEW_YORK};
use crate::errors::{self, IbError};
use crate::fault::{Chaos, Farm, Fault, Locale, Target};
use crate::market::{Instrument, Lookup, Market};
use crate::rng::SplitMix64;
use crate::rules::{
    HistoricalPacer, HistoricalRules, MessageRate, PacedKind, PacedRequest, RateRules, RateVerdict,
    SMALL_BAR_SECS,
};

/// Everything that shapes a simulated gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Versions the gateway speaks (default 100..=226).
    pub versions: VersionRange,
    /// The managed-accounts list (default `DU1234567,`).
    pub accounts: String,
    /// The first `NextValidId` of each session (default 1).
    pub next_valid_id: i32,
    /// Simultaneous API sessions (IB: 32).
    pub max_clients: usize,
    /// How long a client id stays in use after an abrupt close ([`Gateway::handle_reset`]).
    pub client_id_hold: Duration,
    /// Wall-clock time (Unix milliseconds) at the clock anchor. Default: Tuesday 2026-01-06 15:00 UTC
    /// (10:00 in New York, market open).
    pub start_unix_ms: i64,
    /// The 50 msg/s rule.
    pub rate: RateRules,
    /// The historical pacing rules (IB's documented scope by default, for every driver alike).
    pub historical: HistoricalRules,
    /// How far back bars of at most 30 seconds reach from the gateway's wall time (IB: about six
    /// months, protocol.md §5): a request for them ending earlier is refused with a 162
    /// ([`errors::small_bars_too_old`]). `None`: forever. Default 183 days.
    pub small_bar_history: Option<Duration>,
    /// A `reqCurrentTime` this soon after the last answered one is never answered (IB: 1 s;
    /// zero disables).
    pub ignore_current_time_within: Duration,
    /// Base delay of historical-data, head-timestamp, contract-details and symbol replies.
    pub reply_latency: Duration,
    /// Extra seeded random delay, uniform in `0..=reply_jitter`.
    pub reply_jitter: Duration,
    /// Interval between keep-up-to-date bar updates.
    pub update_interval: Duration,
    /// Send 2104/2106/2158 after START_API.
    pub farm_notices: bool,
    /// Instruments and calendar.
    pub market: Market,
    /// Language of 162 texts (see [`Fault::Locale`]).
    pub locale: Locale,
    /// Random faults drawn from the seed (`None`: only injected or scheduled faults).
    pub chaos: Option<Chaos>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            versions: VersionRange::new(100, 226),
            accounts: "DU1234567,".into(),
            next_valid_id: 1,
            max_clients: 32,
            client_id_hold: Duration::from_secs(5),
            start_unix_ms: calendar::utc(2026, 1, 6, 15, 0, 0) * 1000,
            rate: RateRules::default(),
            historical: HistoricalRules::default(),
            small_bar_history: Some(SMALL_BAR_HISTORY),
            ignore_current_time_within: Duration::from_secs(1),
            reply_latency: Duration::ZERO,
            reply_jitter: Duration::ZERO,
            update_interval: Duration::from_secs(5),
            farm_notices: true,
            market: Market::builtin(),
            locale: Locale::English,
            chaos: None,
        }
    }
}

/// IB keeps bars of 30 seconds or less for about six months (protocol.md §5): 183 days.
pub const SMALL_BAR_HISTORY: Duration = Duration::from_secs(183 * 24 * 3600);

/// One accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ExpectHello,
    ExpectStartApi { sv: i32 },
    Ready { sv: i32, client_id: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Historical,
    HeadTimestamp,
    Other,
}

impl ReplyKind {
    /// Served by the HMDS farm, so it waits while data is paused.
    fn is_hmds(self) -> bool {
        matches!(self, Self::Historical | Self::HeadTimestamp)
    }
}

/// Whether the gateway's API port accepts connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// Accepting.
    Open,
    /// Restarting or crashed: connections are refused until `until` (`None`: until
    /// [`Fault::Bounce`]).
    Refusing {
        /// When the port reopens, if known.
        until: Option<Instant>,
    },
}

/// The parameters of a keep-up-to-date subscription.
#[derive(Debug, Clone)]
struct Stream {
    con_id: i32,
    span: BarSpan,
    use_rth: bool,
    what: WhatToShow,
    format_date: i32,
}

#[derive(Debug)]
struct Scheduled {
    req_id: i32,
    kind: ReplyKind,
    responses: Vec<Response>,
    then_stream: Option<Stream>,
}

#[derive(Debug)]
enum HistState {
    Pending,
    Streaming {
        stream: Stream,
        next_update: Instant,
    },
}

#[derive(Debug)]
struct Conn {
    phase: Phase,
    decoder: FrameDecoder,
    out: BytesMut,
    closing: bool,
    rate: MessageRate,
    last_current_time: Option<Instant>,
    next_order_id: i32,
    scheduled: BTreeMap<(Instant, u64), Scheduled>,
    /// Open historical requests (pending, swallowed by a fault, or streaming), by id.
    hist: BTreeMap<i32, HistState>,
    /// Open head-timestamp requests (answer scheduled, or swallowed by a fault), by id.
    heads: BTreeSet<i32>,
    /// Request faults in force: how many of the next requests each still hits.
    faults: RequestFaults,
    /// Writes committed for sending, each with the instant it may go.
    outbox: VecDeque<(Instant, Bytes)>,
    last_due: Option<Instant>,
    /// Fault state: half-open (input buffered in `inbox`), delayed, held, split.
    paused: bool,
    inbox: Vec<u8>,
    delay: Duration,
    held: bool,
    split: bool,
}

/// Request faults in force on one connection ([`Fault::SpuriousNoData`], [`Fault::NeverAnswer`],
/// [`Fault::DuplicateTickerId`]): how many of its next HMDS requests each still hits.
#[derive(Debug, Default, Clone, Copy)]
struct RequestFaults {
    spurious_no_data: u32,
    never_answer: u32,
    duplicate_ids: u32,
}

impl Conn {
    fn sv(&self) -> i32 {
        match self.phase {
            Phase::ExpectHello => 0,
            Phase::ExpectStartApi { sv } | Phase::Ready { sv, .. } => sv,
        }
    }

    fn client_id(&self) -> Option<i32> {
        match self.phase {
            Phase::Ready { client_id, .. } => Some(client_id),
            _ => None,
        }
    }

    fn push(&mut self, msg: &Response) {
        if let Err(err) = msg.encode(self.sv(), &mut self.out) {
            tracing::debug!(%err, msg = msg.name(), "reply not sendable at this version");
        }
    }
}

/// The simulated gateway: many connections, one set of rules, one seed.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    clock: Option<(Instant, i64)>,
    latency_rng: SplitMix64,
    market_salt: u64,
    next_conn: u64,
    seq: u64,
    conns: BTreeMap<ConnId, Conn>,
    held_ids: BTreeMap<i32, Instant>,
    pacer: HistoricalPacer,
    now: Option<Instant>,
    fault_rng: SplitMix64,
    faults: BTreeMap<(Instant, u64), Fault>,
    port: PortState,
    data_paused_until: Option<Instant>,
    next_chaos: Option<Instant>,
    pacing_violations: u64,
    counters: GatewayCounters,
}

impl Gateway {
    /// A gateway with `config`; `seed` drives every random choice (latency jitter, bar paths).
    pub fn new(config: GatewayConfig, seed: u64) -> Self {
        let root = SplitMix64::new(seed);
        let pacer = HistoricalPacer::new(config.historical.clone());
        Self {
            latency_rng: root.child("latency"),
            fault_rng: root.child("faults"),
            market_salt: root.child("market").next_u64(),
            config,
            clock: None,
            next_conn: 1,
            seq: 0,
            conns: BTreeMap::new(),
            held_ids: BTreeMap::new(),
            pacer,
            now: None,
            faults: BTreeMap::new(),
            port: PortState::Open,
            data_paused_until: None,
            next_chaos: None,
            pacing_violations: 0,
            counters: GatewayCounters::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Pin wall time: `anchor` corresponds to `unix_ms`. Without it the first `now` passed in is
    /// taken as [`GatewayConfig::start_unix_ms`].
    pub fn set_clock(&mut self, anchor: Instant, unix_ms: i64) {
        self.clock = Some((anchor, unix_ms));
    }

    /// Wall time at `now`, Unix milliseconds.
    pub fn unix_ms(&mut self, now: Instant) -> i64 {
        let (anchor, ms) = *self.clock.get_or_insert((now, self.config.start_unix_ms));
        match now.checked_duration_since(anchor) {
            Some(d) => ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            None => ms.saturating_sub(
                i64::try_from(anchor.duration_since(now).as_millis()).unwrap_or(i64::MAX),
            ),
        }
    }

    /// A new connection (a socket was accepted). While the port refuses ([`Gateway::port`]) the
    /// connection is closed at once without a byte: [`Gateway::poll_close`] returns `true`.
    pub fn accept(&mut self, now: Instant) -> ConnId {
        self.touch(now);
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let refusing = self.is_refusing(now);
        self.conns.insert(
            id,
            Conn {
                phase: Phase::ExpectHello,
                decoder: FrameDecoder::server(),
                out: BytesMut::new(),
                closing: refusing,
                rate: MessageRate::new(self.config.rate.clone()),
                last_current_time: None,
                next_order_id: self.config.next_valid_id,
                scheduled: BTreeMap::new(),
                hist: BTreeMap::new(),
                heads: BTreeSet::new(),
                faults: RequestFaults::default(),
                outbox: VecDeque::new(),
                last_due: None,
                paused: false,
                inbox: Vec::new(),
                delay: Duration::ZERO,
                held: false,
                split: false,
            },
        );
        id
    }

    /// Bytes received from the client of `conn`, in any chunking. Unknown or closed connections
    /// are ignored; a paused connection ([`Fault::Pause`]) buffers them.
    pub fn handle_input(&mut self, conn: ConnId, now: Instant, data: &[u8]) {
        self.touch(now);
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        if c.paused {
            if !c.closing {
                c.inbox.extend_from_slice(data);
            }
        } else {
            self.process_input(&mut c, now, data);
        }
        self.commit(&mut c, now);
        self.conns.insert(conn, c);
    }

    fn process_input(&mut self, c: &mut Conn, now: Instant, data: &[u8]) {
        if c.closing {
            return;
        }
        c.decoder.push(data);
        loop {
            match c.decoder.next_frame() {
                Ok(Some(frame)) => self.handle_frame(c, now, frame),
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%err, "unframeable input; closing");
                    c.closing = true;
                }
            }
            if c.closing {
                break;
            }
        }
        self.flush_due(c, now);
    }

    /// The client closed its side cleanly: the session ends and its client id is free at once.
    pub fn handle_eof(&mut self, conn: ConnId, now: Instant) {
        self.touch(now);
        self.conns.remove(&conn);
    }

    /// The connection broke abruptly (reset, timeout): the session ends and its client id stays held
    /// for [`GatewayConfig::client_id_hold`], as a real gateway keeps a dead socket's id.
    pub fn handle_reset(&mut self, conn: ConnId, now: Instant) {
        self.touch(now);
        if let Some(client_id) = self.conns.remove(&conn).and_then(|c| c.client_id()) {
            self.held_ids
                .insert(client_id, now + self.config.client_id_hold);
        }
    }

    /// Time passed: apply due faults, reopen the port, send due replies and keep-up-to-date
    /// updates.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        if let PortState::Refusing { until: Some(t) } = self.port {
            if t <= now {
                tracing::debug!("gateway back: port open");
                self.port = PortState::Open;
            }
        }
        if self.data_paused_until.is_some_and(|t| t <= now) {
            self.data_paused_until = None;
        }
        while let Some(entry) = self.faults.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let fault = entry.remove();
            self.apply(now, fault);
        }
        if self.next_chaos.is_some_and(|t| t <= now) {
            self.chaos(now);
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(mut c) = self.conns.remove(&id) {
                if !c.closing && !c.paused {
                    self.flush_due(&mut c, now);
                }
                self.commit(&mut c, now);
                self.conns.insert(id, c);
            }
        }
        self.held_ids.retain(|_, until| *until > now);
    }

    /// The next instant [`Gateway::handle_timeout`] has work to do, if any. Poll after every
    /// `handle_*`, `inject` and `schedule_fault` call.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hmds = |t: Instant| self.data_paused_until.map_or(t, |p| t.max(p));
        let conns = self
            .conns
            .values()
            .filter(|c| !c.closing && !c.paused)
            .flat_map(|c| {
                let replies = c
                    .scheduled
                    .iter()
                    .map(|((t, _), s)| if s.kind.is_hmds() { hmds(*t) } else { *t })
                    .min();
                let updates = c.hist.values().filter_map(|h| match h {
                    HistState::Streaming { next_update, .. } => Some(hmds(*next_update)),
                    HistState::Pending => None,
                });
                // Bytes already due are the caller's to take with `poll_transmit`.
                let send = (!c.held)
                    .then(|| c.outbox.front().map(|(t, _)| *t))
                    .flatten()
                    .filter(|&t| self.now.is_none_or(|now| t > now));
                replies.into_iter().chain(updates).chain(send)
            });
        let port = match self.port {
            PortState::Refusing { until } => until,
            PortState::Open => None,
        };
        conns
            .chain(self.faults.keys().next().map(|(t, _)| *t))
            .chain(port)
            .chain(self.data_paused_until)
            .chain(self.next_chaos)
            .min()
    }

    /// Bytes to send on `conn`, if any: one write per call (a [`Fault::Split`] write comes in
    /// pieces). Poll after every `handle_*` and `inject` call until `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Bytes> {
        let now = self.now?;
        let c = self.conns.get_mut(&conn)?;
        if c.held || c.paused {
            return None;
        }
        match c.outbox.front() {
            Some((due, _)) if *due <= now => c.outbox.pop_front().map(|(_, b)| b),
            _ => None,
        }
    }

    /// Whether the gateway wants `conn` closed now (after all its bytes were taken; a paused or
    /// held connection drops what it buffered). Returns `true` once; the connection is then
    /// forgotten and its client id freed.
    #[must_use]
    pub fn poll_close(&mut self, conn: ConnId) -> bool {
        let ready = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.closing && (c.outbox.is_empty() || c.paused || c.held));
        if ready {
            self.conns.remove(&conn);
        }
        ready
    }

    /// Fault: close `conn` from the gateway side (its client id is freed when it closes).
    pub fn drop_connection(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
        }
    }

    /// Fault: close every connection from the gateway side.
    pub fn drop_all(&mut self) {
        for c in self.conns.values_mut() {
            c.closing = true;
        }
    }

    /// Whether the API port accepts connections, and if not, until when.
    pub fn port(&self) -> PortState {
        self.port
    }

    /// Whether a connection arriving at `now` is refused.
    pub fn is_refusing(&self, now: Instant) -> bool {
        match self.port {
            PortState::Open => false,
            PortState::Refusing { until } => until.is_none_or(|t| now < t),
        }
    }

    /// Whether historical (HMDS) replies are held back at `now` (link loss, HMDS farm down,
    /// nightly reset).
    pub fn is_data_paused(&self, now: Instant) -> bool {
        self.data_paused_until.is_some_and(|t| now < t)
    }

    /// Apply `fault` now. See [`Fault`].
    pub fn inject(&mut self, now: Instant, fault: Fault) {
        self.touch(now);
        self.apply(now, fault);
    }

    /// Apply `fault` at `at` (from [`Gateway::handle_timeout`]); faults due at the same instant
    /// apply in the order they were scheduled.
    pub fn schedule_fault(&mut self, at: Instant, fault: Fault) {
        self.seq += 1;
        self.faults.insert((at, self.seq), fault);
    }

    /// Open connections, in accept order.
    pub fn connections(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// Client ids of the live API sessions, sorted.
    pub fn client_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.conns.values().filter_map(Conn::client_id).collect();
        ids.sort_unstable();
        ids
    }

    /// Another session squats `client_id` until `until`: a START_API with it gets 326, as for an
    /// id still held after an abrupt close (a restart forgets it).
    pub fn occupy_client_id(&mut self, client_id: i32, until: Instant) {
        let t = self.held_ids.entry(client_id).or_insert(until);
        *t = (*t).max(until);
    }

    /// Client ids held without a live session (squatted or after an abrupt close), for leak checks.
    pub fn held_client_id_count(&self) -> usize {
        self.held_ids.len()
    }

    /// `by` passed for IB's servers that this gateway's clock skipped: the simulated host slept
    /// (its monotonic clock, which the world runs on, stopped) while IB's historical-data service
    /// kept counting, so every historical pacing window ages by `by` ([`HistoricalPacer::age`]).
    /// Sessions and held ids are not touched (inject faults for what the gateway did meanwhile).
    pub fn age_pacing(&mut self, by: Duration) {
        self.pacer.age(by);
    }

    /// Historical requests refused with a 162 pacing violation so far (every connection).
    pub fn pacing_violations(&self) -> u64 {
        self.pacing_violations
    }

    /// The version negotiated on `conn` (after its hello).
    pub fn server_version(&self, conn: ConnId) -> Option<i32> {
        self.conns.get(&conn).map(Conn::sv).filter(|&sv| sv > 0)
    }

    fn handle_frame(&mut self, c: &mut Conn, now: Instant, frame: Bytes) {
        if c.phase == Phase::ExpectHello {
            self.handle_hello(c, now, &frame);
            return;
        }
        match c.rate.check(now) {
            RateVerdict::Accept => {}
            RateVerdict::Reject { notify, disconnect } => {
                if notify {
                    self.send_error(c, now, -1, errors::max_rate());
                }
                c.closing |= disconnect;
                return;
            }
        }
        let request = match Request::decode_payload(frame, c.sv()) {
            Ok(r) => r,
            Err(err) => {
                tracing::debug!(%err, "undecodable request");
                self.send_error(c, now, -1, errors::read_error());
                return;
            }
        };
        match (c.phase, request) {
            (Phase::ExpectStartApi { .. }, Request::StartApi { client_id, .. }) => {
                self.start_api(c, now, client_id);
            }
            (Phase::Ready { .. }, request) => self.serve(c, now, request),
            (_, other) => tracing::debug!(msg = other.name(), "ignored before START_API"),
        }
    }

    fn handle_hello(&mut self, c: &mut Conn, now: Instant, frame: &[u8]) {
        let hello = match ClientHello::decode(frame) {
            Ok(h) => h,
            Err(err) => {
                tracing::debug!(%err, "bad client hello; closing");
                c.closing = true;
                return;
            }
        };
        let server = self.config.versions;
        let sv = match negotiate(hello.versions, server) {
            Ok(v) => v,
            Err(_) if hello.versions.min > server.max => server.max,
            Err(err) => {
                tracing::debug!(%err, "refusing client");
                c.closing = true;
                return;
            }
        };
        let local = Zone::Us(NEW_YORK).to_local(self.unix_ms(now).div_euclid(1000));
        let reply = ServerHello {
            server_version: sv,
            connection_time: format!("{} America/New_York", calendar::format_local(local)),
        };
        if reply.encode(&mut c.out).is_err() {
            c.closing = true;
            return;
        }
        c.phase = Phase::ExpectStartApi { sv };
    }

    fn start_api(&mut self, c: &mut Conn, now: Instant, client_id: i32) {
        let held = self.held_ids.get(&client_id).is_some_and(|&t| t > now);
        if held || self.client_ids().contains(&client_id) {
            self.send_error(c, now, -1, errors::client_id_in_use());
            c.closing = true;
            return;
        }
        if self.client_ids().len() >= self.config.max_clients {
            tracing::debug!(client_id, "too many API clients; closing");
            c.closing = true;
            return;
        }
        c.phase = Phase::Ready {
            sv: c.sv(),
            client_id,
        };
        c.push(&Response::ManagedAccounts {
            accounts: self.config.accounts.clone(),
        });
        c.push(&Response::NextValidId {
            order_id: c.next_order_id,
        });
        if self.config.farm_notices {
            for notice in errors::farm_notices() {
                self.send_error(c, now, -1, notice);
            }
        }
    }

    fn serve(&mut self, c: &mut Conn, now: Instant, request: Request) {
        match request {
            Request::ReqCurrentTime => {
                let within = self.config.ignore_current_time_within;
                if c.last_current_time
                    .is_some_and(|t| now.saturating_duration_since(t) < within)
                {
                    return;
                }
                c.last_current_time = Some(now);
                let time = self.unix_ms(now).div_euclid(1000);
                c.push(&Response::CurrentTime { time });
            }
            Request::ReqCurrentTimeInMillis => {
                let millis = self.unix_ms(now);
                c.push(&Response::CurrentTimeInMillis { millis });
            }
            Request::ReqIds { .. } => c.push(&Response::NextValidId {
                order_id: c.next_order_id,
            }),
            Request::ReqManagedAccts => c.push(&Response::ManagedAccounts {
                accounts: self.config.accounts.clone(),
            }),
            Request::ReqHistoricalData(r) => self.historical(c, now, r),
            Request::CancelHistoricalData { req_id } => self.cancel_historical(c, now, req_id),
            Request::ReqHeadTimestamp(r) => self.head_timestamp(c, now, r),
            Request::CancelHeadTimestamp { req_id } => {
                c.heads.remove(&req_id);
                c.scheduled
                    .retain(|_, s| !(s.req_id == req_id && s.kind == ReplyKind::HeadTimestamp));
            }
            Request::ReqContractDetails { req_id, contract } => {
                let (found, wall) = (
                    self.config.market.find_all(&contract).len(),
                    self.unix_ms(now).div_euclid(1000),
                );
                if found == 0 {
                    self.send_error(c, now, req_id, errors::no_security_definition());
                    return;
                }
                let market = &self.config.market;
                let mut replies: Vec<Response> = market
                    .find_all(&contract)
                    .into_iter()
                    .map(|inst| {
                        let (contract, details) = market.contract_details(inst, wall);
                        Response::ContractData {
                            req_id,
                            contract: Box::new(contract),
                            details: Box::new(details),
                        }
                    })
                    .collect();
                replies.push(Response::ContractDataEnd { req_id });
                self.schedule(c, now, req_id, ReplyKind::Other, replies, None);
            }
            Request::ReqMatchingSymbols { req_id, pattern } => {
                let descriptions = self.config.market.matching_symbols(&pattern);
                let reply = Response::SymbolSamples {
                    req_id,
                    descriptions,
                };
                self.schedule(c, now, req_id, ReplyKind::Other, vec![reply], None);
            }
            // Accepted and ignored, as IB does once the data has been sent.
            Request::CancelContractData { .. } | Request::StartApi { .. } => {}
            Request::Unknown {
                id,
                form: Form::Text,
                payload,
            } if c.sv() < ibconn_core::wire::version::PROTOBUF => {
                self.startup_sync(c, id, &payload);
            }
            other => tracing::debug!(msg = other.name(), "ignored request"),
        }
    }

    fn send_error(&mut self, c: &mut Conn, now: Instant, req_id: i32, err: IbError) {
        let err = errors::localize(err, self.config.locale);
        let error_time_ms = Some(self.unix_ms(now));
        c.push(&Response::Error(ErrorMessage {
            req_id,
            code: err.code,
            message: err.text,
            advanced_order_reject_json: String::new(),
            error_time_ms,
        }));
    }

    fn schedule(
        &mut self,
        c: &mut Conn,
        now: Instant,
        req_id: i32,
        kind: ReplyKind,
        responses: Vec<Response>,
        then_stream: Option<Stream>,
    ) {
        let jitter_ns = u64::try_from(self.config.reply_jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(self.latency_rng.below_or_eq(jitter_ns));
        let due = now + self.config.reply_latency + jitter;
        self.seq += 1;
        c.scheduled.insert(
            (due, self.seq),
            Scheduled {
                req_id,
                kind,
                responses,
                then_stream,
            },
        );
        match kind {
            ReplyKind::Historical => {
                c.hist.insert(req_id, HistState::Pending);
            }
            ReplyKind::HeadTimestamp => {
                c.heads.insert(req_id);
            }
            ReplyKind::Other => {}
        }
    }

    fn flush_due(&mut self, c: &mut Conn, now: Instant) {
        let hmds_paused = self.is_data_paused(now);
        let due: Vec<(Instant, u64)> = c
            .scheduled
            .iter()
            .take_while(|((t, _), _)| *t <= now)
            .filter(|(_, s)| !(hmds_paused && s.kind.is_hmds()))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(s) = c.scheduled.remove(&key) else {
                continue;
            };
            for r in &s.responses {
                c.push(r);
            }
            if s.kind == ReplyKind::HeadTimestamp {
                c.heads.remove(&s.req_id);
            }
            if s.kind == ReplyKind::Historical {
                match s.then_stream {
                    Some(stream) => {
                        let next_update = now + self.config.update_interval;
                        c.hist.insert(
                            s.req_id,
                            HistState::Streaming {
                                stream,
                                next_update,
                            },
                        );
                    }
                    None => {
                        c.hist.remove(&s.req_id);
                    }
                }
            }
        }
        if hmds_paused {
            return;
        }
        let wall = self.unix_ms(now).div_euclid(1000);
        let interval = self.config.update_interval.max(Duration::from_millis(1));
        let mut updates = Vec::new();
        for (&req_id, h) in c.hist.iter_mut() {
            if let HistState::Streaming {
                stream,
                next_update,
            } = h
            {
                if *next_update > now {
                    continue;
                }
                while *next_update <= now {
                    *next_update += interval;
                }
                let inst = self
                    .config
                    .market
                    .instruments()
                    .iter()
                    .find(|i| i.con_id == stream.con_id);
                let Some(inst) = inst else { continue };
                let spec = self.spec(inst, stream.span, stream.use_rth, stream.what, wall);
                let spec = BarSpec {
                    format_date: stream.format_date,
                    ..spec
                };
                if let Some(bar) = bars::forming_bar(&spec) {
                    updates.push(Response::HistoricalDataUpdate { req_id, bar });
                }
            }
        }
        for u in &updates {
            c.push(u);
        }
    }

    fn spec<'a>(
        &'a self,
        inst: &'a Instrument,
        span: BarSpan,
        use_rth: bool,
        what: WhatToShow,
        now_secs: i64,
    ) -> BarSpec<'a> {
        BarSpec {
            market: &self.config.market,
            inst,
            salt: self.market_salt,
            span,
            use_rth,
            what,
            format_date: 2,
            now: now_secs,
        }
    }

    /// Open HMDS requests over every session: historical (pending or streaming) and head
    /// timestamps, as IB counts both against its 50 (peers.md §4 item 2).
    fn open_historical(&self, current: &Conn) -> usize {
        self.conns
            .values()
            .chain(std::iter::once(current))
            .map(|c| c.hist.len() + c.heads.len())
            .sum()
    }

    /// Resolve a request contract or answer the lookup error; checks data permissions too.
    fn instrument_for(
        &mut self,
        c: &mut Conn,
        now: Instant,
        req_id: i32,
        contract: &ibconn_core::message::Contract,
    ) -> Option<Instrument> {
        let inst = match self.config.market.resolve(contract) {
            Lookup::Found(i) => i.clone(),
            Lookup::NotFound => {
                self.send_error(c, now, req_id, errors::no_security_definition());
                return None;
            }
            Lookup::Ambiguous => {
                self.send_error(c, now, req_id, errors::ambiguous(&contract.symbol));
                return None;
            }
        };
        if !inst.data_permitted {
            self.send_error(
                c,
                now,
                req_id,
                errors::no_permissions(&inst.permission_scope()),
            );
            return None;
        }
        Some(inst)
    }

    /// Refuse `req_id` with 322 if it is still open on `c` (a pending or streaming historical
    /// request, a pending head timestamp) or a [`Fault::DuplicateTickerId`] is in force; the open
    /// request carries on. Checked before anything else, so a refused request is not paced.
    fn refuse_duplicate(&mut self, c: &mut Conn, now: Instant, req_id: i32) -> bool {
        let open = c.hist.contains_key(&req_id) || c.heads.contains(&req_id);
        if !open && !take_one(&mut c.faults.duplicate_ids) {
            return false;
        }
        tracing::debug!(req_id, open, "duplicate ticker id");
        self.counters.duplicate_ids += 1;
        self.send_error(c, now, req_id, errors::duplicate_ticker_id());
        true
    }

    fn historical(&mut self, c: &mut Conn, now: Instant, r: HistoricalDataRequest) {
        let req_id = r.req_id;
        if self.refuse_duplicate(c, now, req_id) {
            return;
        }
        let Some(inst) = self.instrument_for(c, now, req_id, &r.contract) else {
            return;
        };
        let Ok(span) = BarSpan::parse(&r.bar_size) else {
            let cause = format!("Invalid bar size setting: {}", r.bar_size);
            return self.send_error(c, now, req_id, errors::validation("bS", &cause));
        };
        let Some(what) = WhatToShow::parse(&r.what_to_show) else {
            let cause = format!("Invalid what to show: {}", r.what_to_show);
            return self.send_error(c, now, req_id, errors::validation("bT", &cause));
        };
        let paced = PacedRequest {
            identity: format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}",
                inst.con_id,
                r.contract.exchange,
                r.end_date_time,
                r.bar_size,
                r.duration,
                r.use_rth,
                r.what_to_show,
                r.format_date,
                r.keep_up_to_date
            ),
            contract_tick: contract_tick(inst.con_id, &r.contract.exchange, &format!("{what:?}")),
            bid_ask: what == WhatToShow::BidAsk,
            kind: PacedKind::Bars {
                secs: span.nominal_secs(),
            },
        };
        if !self.paced(c, now, req_id, &paced) {
            return;
        }
        let wall = self.unix_ms(now).div_euclid(1000);
        let window = match self.window(&inst, span, what, &r, wall) {
            Ok(w) => Ok(w),
            // Refused by TWS's validation: answered at once, whatever the faults.
            Err((Refusal::Invalid, e)) => return self.send_error(c, now, req_id, e),
            Err((why, e)) => {
                match why {
                    Refusal::TooOld => self.counters.small_bars_too_old += 1,
                    Refusal::Future => self.counters.end_in_future += 1,
                    _ => {}
                }
                Err(e)
            }
        };
        if take_one(&mut c.faults.never_answer) {
            tracing::debug!(req_id, "never answered (fault)");
            self.counters.never_answered += 1;
            c.hist.insert(req_id, HistState::Pending);
            return;
        }
        let w = match window {
            Ok(w) => w,
            Err(e) => return self.send_error(c, now, req_id, e),
        };
        if take_one(&mut c.faults.spurious_no_data) {
            tracing::debug!(req_id, "spurious no data (fault)");
            self.counters.spurious_no_data += 1;
            let err = errors::no_data(&inst.symbol, &exchange_of(&inst, &r), what.title());
            return self.send_error(c, now, req_id, err);
        }
        let fmt = |t: i64| {
            if r.format_date == 1 {
                calendar::format_new_york(t)
            } else {
                calendar::format_utc_dash(t)
            }
        };
        let (start_s, end_s) = (fmt(w.start), fmt(w.end));
        let replies = if c.sv() >= ibconn_core::wire::version::HISTORICAL_DATA_END {
            vec![
                Response::HistoricalData {
                    req_id,
                    start: String::new(),
                    end: String::new(),
                    bars: w.bars,
                },
                Response::HistoricalDataEnd {
                    req_id,
                    start: start_s,
                    end: end_s,
                },
            ]
        } else {
            vec![Response::HistoricalData {
                req_id,
                start: start_s,
                end: end_s,
                bars: w.bars,
            }]
        };
        let stream = r.keep_up_to_date.then_some(Stream {
            con_id: inst.con_id,
            span,
            use_rth: r.use_rth,
            what,
            format_date: r.format_date,
        });
        self.schedule(c, now, req_id, ReplyKind::Historical, replies, stream);
    }

    /// Judge `paced` by the historical pacing rules with every open HMDS request counted;
    /// refuse it with a 162 pacing violation (and `false`) if it breaks one.
    fn paced(&mut self, c: &mut Conn, now: Instant, req_id: i32, paced: &PacedRequest) -> bool {
        let open = self.open_historical(c);
        match self.pacer.check(now, paced, open) {
            Ok(()) => true,
            Err(rule) => {
                tracing::debug!(?rule, req_id, "historical pacing violation");
                self.pacing_violations += 1;
                self.send_error(c, now, req_id, errors::pacing_violation());
                false
            }
        }
    }

    /// The bars `r` asks for at wall time `wall` (Unix seconds), or why IB refuses and its error:
    /// 321 for an invalid duration or end date, 162 for a too long duration, an end in the
    /// future, small bars older than [`GatewayConfig::small_bar_history`], or a window without
    /// bars.
    fn window(
        &self,
        inst: &Instrument,
        span: BarSpan,
        what: WhatToShow,
        r: &HistoricalDataRequest,
        wall: i64,
    ) -> Result<Window, (Refusal, IbError)> {
        let invalid = |tag: &str, cause: &str| (Refusal::Invalid, errors::validation(tag, cause));
        let Ok(duration) = IbDuration::parse(&r.duration) else {
            let cause = format!("Historical data query duration {:?} is invalid", r.duration);
            return Err(invalid("bD", &cause));
        };
        if duration.nominal_secs() > span.max_duration_secs() {
            return Err((Refusal::TooLong, errors::time_length_exceeded()));
        }
        let no_bars = || (inst.symbol.as_str(), exchange_of(inst, r), what.title());
        let end = if r.end_date_time.trim().is_empty() {
            wall
        } else if r.keep_up_to_date {
            return Err(invalid("bP", "End date not supported with live updates"));
        } else {
            let Ok(end) = calendar::parse_end_date(&r.end_date_time, Zone::Us(NEW_YORK)) else {
                let cause = format!(
                    "Historical data query end date/time string [{}] is invalid.  Format is 'YYYYMMDD{{SPACE}}hh:mm:ss[{{SPACE}}TMZ]'.",
                    r.end_date_time
                );
                return Err(invalid("bW", &cause));
            };
            if end > wall {
                let (symbol, exchange, title) = no_bars();
                let err = errors::end_in_future(symbol, &exchange, title);
                return Err((Refusal::Future, err));
            }
            end
        };
        let history = self
            .config
            .small_bar_history
            .map(|d| wall.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
        if span.nominal_secs() <= SMALL_BAR_SECS && history.is_some_and(|oldest| end < oldest) {
            let (symbol, exchange, title) = no_bars();
            let err = errors::small_bars_too_old(symbol, &exchange, title);
            return Err((Refusal::TooOld, err));
        }
        let spec = BarSpec {
            format_date: r.format_date,
            ..self.spec(inst, span, r.use_rth, what, wall)
        };
        let start = bars::window_start(&spec, end, duration);
        let found = bars::bars(&spec, start, end);
        if found.is_empty() {
            let (symbol, exchange, title) = no_bars();
            return Err((Refusal::NoData, errors::no_data(symbol, &exchange, title)));
        }
        Ok(Window {
            start,
            end,
            bars: found,
        })
    }

    fn cancel_historical(&mut self, c: &mut Conn, now: Instant, req_id: i32) {
        match c.hist.remove(&req_id) {
            Some(HistState::Pending) => {
                c.scheduled
                    .retain(|_, s| !(s.req_id == req_id && s.kind == ReplyKind::Historical));
                self.send_error(c, now, req_id, errors::query_cancelled(req_id));
            }
            Some(HistState::Streaming { .. }) => {}
            None => self.send_error(c, now, req_id, errors::no_query_found(req_id)),
        }
    }

    fn head_timestamp(&mut self, c: &mut Conn, now: Instant, r: HeadTimestampRequest) {
        if self.refuse_duplicate(c, now, r.req_id) {
            return;
        }
        let Some(inst) = self.instrument_for(c, now, r.req_id, &r.contract) else {
            return;
        };
        // Bars and head timestamps of one contract and tick type share the same-contract rule.
        let tick = WhatToShow::parse(&r.what_to_show)
            .map_or_else(|| r.what_to_show.to_uppercase(), |w| format!("{w:?}"));
        let paced = PacedRequest {
            identity: format!(
                "head|{}|{}|{}|{}|{}",
                inst.con_id, r.contract.exchange, r.what_to_show, r.use_rth, r.format_date
            ),
            contract_tick: contract_tick(inst.con_id, &r.contract.exchange, &tick),
            bid_ask: r.what_to_show.eq_ignore_ascii_case("BID_ASK"),
            kind: PacedKind::HeadTimestamp,
        };
        self.counters.head_timestamps += 1;
        if !self.paced(c, now, r.req_id, &paced) {
            return;
        }
        if take_one(&mut c.faults.never_answer) {
            tracing::debug!(req_id = r.req_id, "never answered (fault)");
            self.counters.never_answered += 1;
            c.heads.insert(r.req_id);
            return;
        }
        let head = inst.head_timestamp;
        let timestamp = if r.format_date == 1 {
            calendar::format_new_york(head)
        } else {
            head.to_string()
        };
        let reply = Response::HeadTimestamp {
            req_id: r.req_id,
            timestamp,
        };
        self.schedule(
            c,
            now,
            r.req_id,
            ReplyKind::HeadTimestamp,
            vec![reply],
            None,
        );
    }

    /// The bars a historical request would get now, by IB's rules but outside any session: no
    /// pacing, no faults, nothing recorded — the ground truth a test compares a client's result
    /// with. The error is the one IB would answer instead (200, 321, 162).
    pub fn reference_bars(
        &mut self,
        now: Instant,
        r: &HistoricalDataRequest,
    ) -> Result<Vec<Bar>, IbError> {
        let inst = match self.config.market.resolve(&r.contract) {
            Lookup::Found(i) => i.clone(),
            Lookup::NotFound => return Err(errors::no_security_definition()),
            Lookup::Ambiguous => return Err(errors::ambiguous(&r.contract.symbol)),
        };
        if !inst.data_permitted {
            return Err(errors::no_permissions(&inst.permission_scope()));
        }
        let Ok(span) = BarSpan::parse(&r.bar_size) else {
            let cause = format!("Invalid bar size setting: {}", r.bar_size);
            return Err(errors::validation("bS", &cause));
        };
        let Some(what) = WhatToShow::parse(&r.what_to_show) else {
            let cause = format!("Invalid what to show: {}", r.what_to_show);
            return Err(errors::validation("bT", &cause));
        };
        let wall = self.unix_ms(now).div_euclid(1000);
        self.window(&inst, span, what, r, wall)
            .map(|w| w.bars)
            .map_err(|(_, e)| e)
    }

    /// What the fault and rule paths above have done so far (every connection).
    pub fn counters(&self) -> GatewayCounters {
        GatewayCounters {
            pacing_violations: self.pacing_violations,
            ..self.counters
        }
    }
}

/// Why IB answers a historical request without bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// TWS's validation (321): answered at once.
    Invalid,
    /// The duration is too long for the bar size.
    TooLong,
    /// The end date lies in the future.
    Future,
    /// Small bars older than IB keeps them.
    TooOld,
    /// No bars in the window.
    NoData,
}

/// The bars of one answered historical request.
#[derive(Debug)]
struct Window {
    start: i64,
    end: i64,
    bars: Vec<Bar>,
}

/// Counts of the gateway's refusals and request faults, over every connection
/// ([`Gateway::counters`]): what a scenario actually exercised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayCounters {
    /// Requests refused with a 162 pacing violation ([`Gateway::pacing_violations`]).
    pub pacing_violations: u64,
    /// Requests refused with 322, for a reused open id or a [`Fault::DuplicateTickerId`].
    pub duplicate_ids: u64,
    /// Requests swallowed by [`Fault::NeverAnswer`].
    pub never_answered: u64,
    /// Requests answered "no data" by [`Fault::SpuriousNoData`] although they had bars.
    pub spurious_no_data: u64,
    /// Requests for small bars older than [`GatewayConfig::small_bar_history`], refused.
    pub small_bars_too_old: u64,
    /// Requests ending in the future, refused.
    pub end_in_future: u64,
    /// Head-timestamp requests judged by the pacing rules (each then counted open until
    /// answered), refused or not.
    pub head_timestamps: u64,
}

/// Use up one of `n` (a fault's remaining requests); whether there was one.
fn take_one(n: &mut u32) -> bool {
    let had = *n > 0;
    *n = n.saturating_sub(1);
    had
}

/// The pacer's same-contract key: contract, exchange, tick type.
fn contract_tick(con_id: i32, exchange: &str, tick: &str) -> String {
    format!("{con_id}|{exchange}|{tick}")
}

/// The exchange IB names in a "no data" text: the request's, else the instrument's.
fn exchange_of(inst: &Instrument, r: &HistoricalDataRequest) -> String {
    if r.contract.exchange.is_empty() {
        inst.exchange.clone()
    } else {
        r.contract.exchange.clone()
    }
}

/// Fault mechanics and the output path.
impl Gateway {
    /// Record `now` (monotonic) and start the chaos timer on first use.
    fn touch(&mut self, now: Instant) {
        self.unix_ms(now);
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        if self.next_chaos.is_none() {
            if let Some(chaos) = self.config.chaos.as_ref().filter(|c| !c.kinds.is_empty()) {
                self.next_chaos = Some(now + chaos.next_gap(&mut self.fault_rng));
            }
        }
    }

    /// Move what `c` encoded into its outbox, applying delay and splitting.
    fn commit(&mut self, c: &mut Conn, now: Instant) {
        if c.out.is_empty() {
            return;
        }
        let mut bytes = c.out.split().freeze();
        let due = c.last_due.map_or(now + c.delay, |d| d.max(now + c.delay));
        c.last_due = Some(due);
        if !c.split {
            c.outbox.push_back((due, bytes));
            return;
        }
        while bytes.len() > 1 {
            let cap = u64::try_from(bytes.len().min(32) - 1).unwrap_or(0);
            let n = 1 + usize::try_from(self.fault_rng.below_or_eq(cap)).unwrap_or(0);
            c.outbox.push_back((due, bytes.split_to(n)));
        }
        if !bytes.is_empty() {
            c.outbox.push_back((due, bytes));
        }
    }

    /// Run `f` on every connection `target` hits (in accept order), then commit its output.
    fn each(&mut self, now: Instant, target: Target, mut f: impl FnMut(&mut Self, &mut Conn)) {
        let ids: Vec<ConnId> = self
            .conns
            .keys()
            .copied()
            .filter(|&id| target.hits(id))
            .collect();
        for id in ids {
            if let Some(mut c) = self.conns.remove(&id) {
                f(self, &mut c);
                self.commit(&mut c, now);
                self.conns.insert(id, c);
            }
        }
    }

    /// Send a request-less error to the ready, unpaused sessions `target` hits.
    fn emit(&mut self, now: Instant, target: Target, err: &IbError) {
        self.each(now, target, |gw, c| {
            if matches!(c.phase, Phase::Ready { .. }) && !c.closing && !c.paused {
                gw.send_error(c, now, -1, err.clone());
            }
        });
    }

    /// Hold HMDS replies until `until` (extending any pause in force).
    fn pause_data(&mut self, until: Instant) {
        self.data_paused_until = Some(self.data_paused_until.map_or(until, |t| t.max(until)));
    }

    fn apply(&mut self, now: Instant, fault: Fault) {
        tracing::debug!(?fault, "fault");
        match fault {
            Fault::Close(t) => self.each(now, t, |_, c| c.closing = true),
            Fault::Pause(t) => self.each(now, t, |_, c| c.paused = true),
            Fault::Resume(t) => self.each(now, t, |gw, c| {
                if c.paused {
                    c.paused = false;
                    let inbox = std::mem::take(&mut c.inbox);
                    gw.process_input(c, now, &inbox);
                }
            }),
            Fault::Delay { target, by } => self.each(now, target, |_, c| c.delay = by),
            Fault::Hold(t) => self.each(now, t, |_, c| c.held = true),
            Fault::Release(t) => self.each(now, t, |_, c| c.held = false),
            Fault::Split { target, on } => self.each(now, target, |_, c| c.split = on),
            Fault::Garbage { target, len } => self.each(now, target, |gw, c| {
                if c.closing {
                    return;
                }
                let first = 1 + (gw.fault_rng.next_u64() % 255) as u8;
                c.out.extend_from_slice(&[first]);
                for _ in 1..len.max(4) {
                    c.out.extend_from_slice(&[gw.fault_rng.next_u64() as u8]);
                }
            }),
            Fault::EmitError { target, code, text } => {
                self.emit(now, target, &IbError { code, text });
            }
            Fault::LinkLoss { outage, data_lost } => {
                self.emit(now, Target::All, &errors::link_lost());
                self.pause_data(now + outage);
                let back = errors::link_restored(data_lost);
                self.schedule_error(now + outage, back);
            }
            Fault::FarmFlap { farm, outage } => {
                self.emit(now, Target::All, &errors::farm_status(farm, false));
                if farm == Farm::Historical {
                    self.pause_data(now + outage);
                }
                self.schedule_error(now + outage, errors::farm_status(farm, true));
            }
            Fault::NightlyReset { pause } => {
                let pause = pause.unwrap_or_else(|| {
                    Duration::from_millis(60_000 + self.fault_rng.below_or_eq(120_000))
                });
                for farm in [Farm::MarketData, Farm::Historical] {
                    self.emit(now, Target::All, &errors::farm_status(farm, false));
                }
                self.pause_data(now + pause);
                for farm in [Farm::MarketData, Farm::Historical] {
                    self.schedule_error(now + pause, errors::farm_status(farm, true));
                }
            }
            Fault::Restart { down_for } => self.crash(Some(now + down_for)),
            Fault::Crash => self.crash(None),
            Fault::Bounce => self.port = PortState::Open,
            Fault::Locale(locale) => self.config.locale = locale,
            Fault::SpuriousNoData { target, requests } => {
                self.each(now, target, |_, c| c.faults.spurious_no_data = requests);
            }
            Fault::NeverAnswer { target, requests } => {
                self.each(now, target, |_, c| c.faults.never_answer = requests);
            }
            Fault::DuplicateTickerId { target, requests } => {
                self.each(now, target, |_, c| c.faults.duplicate_ids = requests);
            }
        }
    }

    fn schedule_error(&mut self, at: Instant, err: IbError) {
        let fault = Fault::EmitError {
            target: Target::All,
            code: err.code,
            text: err.text,
        };
        self.schedule_fault(at, fault);
    }

    /// The process dies: every socket closes now with nothing more sent, state is forgotten, and
    /// the port refuses until `until` (`None`: until [`Fault::Bounce`]).
    fn crash(&mut self, until: Option<Instant>) {
        tracing::debug!(?until, "gateway crash");
        for c in self.conns.values_mut() {
            c.out.clear();
            c.outbox.clear();
            c.closing = true;
            c.paused = false;
            c.held = false;
        }
        self.port = PortState::Refusing { until };
        self.held_ids.clear();
        self.pacer = HistoricalPacer::new(self.config.historical.clone());
        self.data_paused_until = None;
    }

    /// Draw and apply a random fault; schedule the next draw.
    fn chaos(&mut self, now: Instant) {
        let Some(chaos) = self.config.chaos.clone() else {
            self.next_chaos = None;
            return;
        };
        let ready: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Ready { .. }) && !c.closing)
            .map(|(id, _)| *id)
            .collect();
        if let Some((fault, end)) = chaos.draw(&mut self.fault_rng, &ready) {
            if let Some((after, end)) = end {
                self.schedule_fault(now + after, end);
            }
            self.apply(now, fault);
        }
        self.next_chaos = Some(now + chaos.next_gap(&mut self.fault_rng));
    }

    /// Answer a text client's startup sync with the end message of an empty paper account.
    fn startup_sync(&mut self, c: &mut Conn, id: i32, payload: &[u8]) {
        let fields: Vec<&[u8]> = payload.split(|&b| b == 0).collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        let reply: Option<(i32, Vec<&[u8]>)> = match id {
            61 => Some((62, vec![b"1"])), // reqPositions → positionEnd
            5 => Some((53, vec![b"1"])),  // reqOpenOrders → openOrderEnd
            99 => Some((102, vec![])),    // reqCompletedOrders → completedOrdersEnd
            6 if field(1) == b"1" => Some((54, vec![b"1", field(2)])), // → accountDownloadEnd
            76 => Some((74, vec![b"1", field(1)])), // → accountUpdateMultiEnd
            7 => Some((55, vec![b"1", field(1)])), // reqExecutions → execDetailsEnd
            _ => None,
        };
        let Some((id, values)) = reply else {
            return tracing::debug!(id, "ignored request");
        };
        let mut body = BytesMut::new();
        for v in values {
            body.extend_from_slice(v);
            body.extend_from_slice(&[0]);
        }
        c.push(&Response::Unknown {
            id,
            form: Form::Text,
            payload: body.freeze(),
        });
    }
}
