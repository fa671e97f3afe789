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
//!   without bars ([`errors::small_bars_too_old`](crate::errors::small_bars_too_old), [`errors::end_in_future`](crate::errors::end_in_future)).
//! - A historical or head-timestamp request reusing the id of one still open on the session gets
//!   322 "Duplicate ticker id"; the open one carries on.
//! - Streaming (`reqMktData`, `reqMarketDataType`, `reqRealTimeBars`, `reqTickByTickData` and
//!   their cancels) is served from the bars' own price path ([`crate::market::ticks`]) at
//!   wall-clock instants aligned to each stream's cadence, which [`Gateway::poll_timeout`]
//!   includes. IB's limits apply per gateway: [`GatewayConfig::max_market_data_lines`] (101),
//!   [`GatewayConfig::max_tick_by_tick`] (10190), open ids (322), unknown cancels (300); a 1101
//!   drops every subscription of the sessions it reaches, outages pause the data, and
//!   [`GatewayCounters`] reports lines in use and duplicate subscriptions.
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

mod faults;
mod historical;
mod serve;
mod streams;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ibconn_core::message::Response;
use ibconn_core::wire::{FrameDecoder, VersionRange};

use ibconn_core::bar_size::BarSize;
use ibconn_core::date_format::DateFormat;
use ibconn_core::what_to_show::WhatToShow;

use crate::calendar;
pub use crate::conn_id::ConnId;
use crate::errors::Locale;
use crate::fault::{Chaos, Fault};
use crate::market::Market;
use crate::rng::SplitMix64;
use crate::rules::{HistoricalPacer, HistoricalRules, MessageRate, RateRules};

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
    /// months, docs/ib-facts.md#data-availability): a request for them ending earlier is refused
    /// with a 162 ([`errors::small_bars_too_old`](crate::errors::small_bars_too_old)). `None`:
    /// forever. Default 183 days.
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
    /// Market-data lines (IB: 100 by default): live `reqMktData` subscriptions (snapshots do not
    /// hold one) and real-time bars, over every session of the gateway (IB counts TWS and API
    /// lines together per account). One more is refused with 101. Tick-by-tick and
    /// keep-up-to-date streams do not hold one (see [`GatewayConfig::max_tick_by_tick`] and
    /// [`HistoricalRules::max_open`]).
    pub max_market_data_lines: usize,
    /// Concurrent tick-by-tick subscriptions over every session (IB: 5 with 100 lines); one more
    /// is refused with 10190.
    pub max_tick_by_tick: usize,
    /// How often level-1 quotes (and tick-by-tick `BidAsk`/`MidPoint`) may change: one quote
    /// step per interval of wall time, aligned to it (default 250 ms). Trades come once a second
    /// and real-time bars every 5 s, as IB's; see [`crate::market::ticks`].
    pub quote_interval: Duration,
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
            max_market_data_lines: 100,
            max_tick_by_tick: 5,
            quote_interval: Duration::from_millis(250),
            farm_notices: true,
            market: Market::builtin(),
            locale: Locale::English,
            chaos: None,
        }
    }
}

/// IB keeps bars of 30 seconds or less for about six months
/// (docs/ib-facts.md#data-availability): 183 days.
pub const SMALL_BAR_HISTORY: Duration = Duration::from_secs(183 * 24 * 3600);

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
    bar_size: BarSize,
    use_rth: bool,
    what: WhatToShow,
    format_date: DateFormat,
}

impl Stream {
    /// What makes two keep-up-to-date streams the same subscription (the duplicate check).
    fn key(&self) -> String {
        format!(
            "hist|{}|{:?}|{:?}|{}",
            self.con_id, self.bar_size, self.what, self.use_rth
        )
    }
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
    /// Live market-data, real-time-bars and tick-by-tick subscriptions, by id.
    subs: BTreeMap<i32, streams::Sub>,
    /// The market-data type later `reqMktData` ask for (`reqMarketDataType`; 1 live by default).
    market_data_type: i32,
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
    md_paused_until: Option<Instant>,
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
            md_paused_until: None,
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
                subs: BTreeMap::new(),
                market_data_type: 1,
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

    /// Time passed: apply due faults, reopen the port, send due replies, keep-up-to-date updates
    /// and streaming data.
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
        if self.md_paused_until.is_some_and(|t| t <= now) {
            self.md_paused_until = None;
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
        let md = |t: Instant| self.md_paused_until.map_or(t, |p| t.max(p));
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
                let streams = c
                    .subs
                    .values()
                    .filter_map(|s| s.due_ms)
                    .min()
                    .and_then(|ms| self.instant_at(ms))
                    .map(md);
                // Bytes already due are the caller's to take with `poll_transmit`.
                let send = (!c.held)
                    .then(|| c.outbox.front().map(|(t, _)| *t))
                    .flatten()
                    .filter(|&t| self.now.is_none_or(|now| t > now));
                replies
                    .into_iter()
                    .chain(updates)
                    .chain(streams)
                    .chain(send)
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

    /// Whether streaming data (ticks, real-time bars, tick-by-tick) stops at `now` (link loss,
    /// market-data farm down, nightly reset). Subscriptions stay; they resume with the data of
    /// the moment the pause ends (nothing from the outage is replayed).
    pub fn is_market_data_paused(&self, now: Instant) -> bool {
        self.md_paused_until.is_some_and(|t| now < t)
    }

    /// The instant wall time reaches `unix_ms` (the inverse of [`Gateway::unix_ms`]); `None`
    /// before the clock is anchored.
    fn instant_at(&self, unix_ms: i64) -> Option<Instant> {
        let (anchor, ms) = self.clock?;
        let d = Duration::from_millis(unix_ms.abs_diff(ms));
        if unix_ms >= ms {
            anchor.checked_add(d)
        } else {
            anchor.checked_sub(d)
        }
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

    /// Requests refused by the pacing rules so far, every connection: 162 pacing violations, the
    /// 322 for a 51st open historical request, 420 for real-time bars past the 10-minute window.
    pub fn pacing_violations(&self) -> u64 {
        self.pacing_violations
    }

    /// The version negotiated on `conn` (after its hello).
    pub fn server_version(&self, conn: ConnId) -> Option<i32> {
        self.conns.get(&conn).map(Conn::sv).filter(|&sv| sv > 0)
    }

    /// What the fault and rule paths above have done so far (every connection), and the
    /// streaming lines in use now.
    pub fn counters(&self) -> GatewayCounters {
        let live = self.stream_usage(None);
        GatewayCounters {
            pacing_violations: self.pacing_violations,
            lines_in_use: live.lines,
            tick_by_tick_in_use: live.tick_by_tick,
            live_subscriptions: live.subscriptions,
            ..self.counters
        }
    }
}

/// Counts of the gateway's refusals and request faults, over every connection
/// ([`Gateway::counters`]): what a scenario actually exercised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayCounters {
    /// Requests refused by the pacing rules ([`Gateway::pacing_violations`]): 162 pacing
    /// violations, the 322 for a 51st open historical request, and 420 for real-time bars past
    /// the 10-minute window.
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
    /// Market-data lines in use now: live `reqMktData` subscriptions (not snapshots) and
    /// real-time bars over every open session ([`GatewayConfig::max_market_data_lines`]).
    pub lines_in_use: u64,
    /// The most lines ever in use at once.
    pub lines_in_use_max: u64,
    /// Tick-by-tick subscriptions live now, over every open session
    /// ([`GatewayConfig::max_tick_by_tick`]).
    pub tick_by_tick_in_use: u64,
    /// The most tick-by-tick subscriptions ever live at once.
    pub tick_by_tick_in_use_max: u64,
    /// Streaming subscriptions live now: lines, tick-by-tick and keep-up-to-date streams.
    pub live_subscriptions: u64,
    /// The most extra copies of one subscription — same kind (market data, real-time bars,
    /// tick-by-tick, keep-up-to-date bars), contract and parameters — ever live at once on one
    /// connection: 0 means no connection ever held the same subscription twice.
    pub duplicate_subscriptions: u64,
    /// The same over every connection of the gateway together (two connections streaming the
    /// same thing count as one extra copy).
    pub duplicate_subscriptions_across_connections: u64,
    /// Requests refused with 101 (no market-data line left).
    pub max_tickers_refused: u64,
    /// Requests refused with 10190 (no tick-by-tick slot left).
    pub tick_by_tick_refused: u64,
    /// Subscriptions the gateway dropped when it sent 1101 (connectivity restored, data lost):
    /// the client must subscribe again.
    pub subscriptions_dropped: u64,
    /// Streaming messages sent: ticks, real-time bars, tick-by-tick and keep-up-to-date updates
    /// (not the replies that open a subscription).
    pub stream_messages: u64,
}
