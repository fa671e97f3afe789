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
//!   `reply_latency` plus a seeded jitter; while they wait they count as open historical requests.
//! - Limits: [`crate::rules`]. A second `reqCurrentTime` within `ignore_current_time_within` (1 s)
//!   of the last answered one is never answered, as at IB.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ibconn_core::message::request::HistoricalDataRequest;
use ibconn_core::message::{ErrorMessage, HeadTimestampRequest, Request, Response};
use ibconn_core::wire::{negotiate, ClientHello, FrameDecoder, ServerHello, VersionRange};

use crate::bars::{self, BarSpec, WhatToShow};
use crate::calendar::{self, BarSpan, IbDuration, Zone, NEW_YORK};
use crate::errors::{self, IbError};
use crate::market::{Instrument, Lookup, Market};
use crate::rng::SplitMix64;
use crate::rules::{
    HistoricalPacer, HistoricalRules, MessageRate, PacedRequest, RateRules, RateVerdict,
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
    /// The historical pacing rules.
    pub historical: HistoricalRules,
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
            ignore_current_time_within: Duration::from_secs(1),
            reply_latency: Duration::ZERO,
            reply_jitter: Duration::ZERO,
            update_interval: Duration::from_secs(5),
            farm_notices: true,
            market: Market::builtin(),
        }
    }
}

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
    hist: BTreeMap<i32, HistState>,
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
}

impl Gateway {
    /// A gateway with `config`; `seed` drives every random choice (latency jitter, bar paths).
    pub fn new(config: GatewayConfig, seed: u64) -> Self {
        let root = SplitMix64::new(seed);
        let pacer = HistoricalPacer::new(config.historical.clone());
        Self {
            latency_rng: root.child("latency"),
            market_salt: root.child("market").next_u64(),
            config,
            clock: None,
            next_conn: 1,
            seq: 0,
            conns: BTreeMap::new(),
            held_ids: BTreeMap::new(),
            pacer,
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

    /// A new connection (a socket was accepted).
    pub fn accept(&mut self, now: Instant) -> ConnId {
        self.unix_ms(now);
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                phase: Phase::ExpectHello,
                decoder: FrameDecoder::server(),
                out: BytesMut::new(),
                closing: false,
                rate: MessageRate::new(self.config.rate.clone()),
                last_current_time: None,
                next_order_id: self.config.next_valid_id,
                scheduled: BTreeMap::new(),
                hist: BTreeMap::new(),
            },
        );
        id
    }

    /// Bytes received from the client of `conn`, in any chunking. Unknown or closed connections
    /// are ignored.
    pub fn handle_input(&mut self, conn: ConnId, now: Instant, data: &[u8]) {
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        if !c.closing {
            c.decoder.push(data);
            loop {
                match c.decoder.next_frame() {
                    Ok(Some(frame)) => self.handle_frame(&mut c, now, frame),
                    Ok(None) => break,
                    Err(err) => {
                        tracing::debug!(%conn, %err, "unframeable input; closing");
                        c.closing = true;
                    }
                }
                if c.closing {
                    break;
                }
            }
            self.flush_due(&mut c, now);
        }
        self.conns.insert(conn, c);
    }

    /// The client closed its side cleanly: the session ends and its client id is free at once.
    pub fn handle_eof(&mut self, conn: ConnId, _now: Instant) {
        self.conns.remove(&conn);
    }

    /// The connection broke abruptly (reset, timeout): the session ends and its client id stays held
    /// for [`GatewayConfig::client_id_hold`], as a real gateway keeps a dead socket's id.
    pub fn handle_reset(&mut self, conn: ConnId, now: Instant) {
        if let Some(client_id) = self.conns.remove(&conn).and_then(|c| c.client_id()) {
            self.held_ids
                .insert(client_id, now + self.config.client_id_hold);
        }
    }

    /// Time passed: send due replies and keep-up-to-date updates.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(mut c) = self.conns.remove(&id) {
                if !c.closing {
                    self.flush_due(&mut c, now);
                }
                self.conns.insert(id, c);
            }
        }
        self.held_ids.retain(|_, until| *until > now);
    }

    /// The next instant [`Gateway::handle_timeout`] has work to do, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter(|c| !c.closing)
            .flat_map(|c| {
                let reply = c.scheduled.keys().next().map(|(t, _)| *t);
                let updates = c.hist.values().filter_map(|h| match h {
                    HistState::Streaming { next_update, .. } => Some(*next_update),
                    HistState::Pending => None,
                });
                reply.into_iter().chain(updates)
            })
            .min()
    }

    /// Bytes to send on `conn`, if any. Poll after every `handle_*` call until `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Bytes> {
        let c = self.conns.get_mut(&conn)?;
        (!c.out.is_empty()).then(|| c.out.split().freeze())
    }

    /// Whether the gateway wants `conn` closed now (after all its bytes were taken). Returns `true`
    /// once; the connection is then forgotten and its client id freed.
    #[must_use]
    pub fn poll_close(&mut self, conn: ConnId) -> bool {
        let ready = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.closing && c.out.is_empty());
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
            Request::CancelHeadTimestamp { req_id } => c
                .scheduled
                .retain(|_, s| !(s.req_id == req_id && s.kind == ReplyKind::HeadTimestamp)),
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
            other => tracing::debug!(msg = other.name(), "ignored request"),
        }
    }

    fn send_error(&mut self, c: &mut Conn, now: Instant, req_id: i32, err: IbError) {
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
        if kind == ReplyKind::Historical {
            c.hist.insert(req_id, HistState::Pending);
        }
    }

    fn flush_due(&mut self, c: &mut Conn, now: Instant) {
        while let Some(entry) = c.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let s = entry.remove();
            for r in &s.responses {
                c.push(r);
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

    fn open_historical(&self, current: &Conn) -> usize {
        self.conns
            .values()
            .chain(std::iter::once(current))
            .map(|c| c.hist.len())
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

    fn historical(&mut self, c: &mut Conn, now: Instant, r: HistoricalDataRequest) {
        let req_id = r.req_id;
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
            contract_tick: format!("{}|{}|{:?}", inst.con_id, r.contract.exchange, what),
            bid_ask: what == WhatToShow::BidAsk,
            bar_secs: span.nominal_secs(),
        };
        let open = self.open_historical(c);
        if let Err(rule) = self.pacer.check(now, &paced, open) {
            tracing::debug!(?rule, req_id, "historical pacing violation");
            return self.send_error(c, now, req_id, errors::pacing_violation());
        }
        let Ok(duration) = IbDuration::parse(&r.duration) else {
            let cause = format!("Historical data query duration {:?} is invalid", r.duration);
            return self.send_error(c, now, req_id, errors::validation("bD", &cause));
        };
        if duration.nominal_secs() > span.max_duration_secs() {
            return self.send_error(c, now, req_id, errors::time_length_exceeded());
        }
        let wall = self.unix_ms(now).div_euclid(1000);
        let end = if r.end_date_time.trim().is_empty() {
            wall
        } else if r.keep_up_to_date {
            let cause = "End date not supported with live updates";
            return self.send_error(c, now, req_id, errors::validation("bP", cause));
        } else {
            match calendar::parse_end_date(&r.end_date_time, Zone::Us(NEW_YORK)) {
                Ok(t) => t,
                Err(_) => {
                    let cause = format!(
                        "Historical data query end date/time string [{}] is invalid.  Format is 'YYYYMMDD{{SPACE}}hh:mm:ss[{{SPACE}}TMZ]'.",
                        r.end_date_time
                    );
                    return self.send_error(c, now, req_id, errors::validation("bW", &cause));
                }
            }
        };
        let spec = BarSpec {
            format_date: r.format_date,
            ..self.spec(&inst, span, r.use_rth, what, wall)
        };
        let start = bars::window_start(&spec, end, duration);
        let found = bars::bars(&spec, start, end);
        if found.is_empty() {
            let exchange = if r.contract.exchange.is_empty() {
                inst.exchange.as_str()
            } else {
                r.contract.exchange.as_str()
            };
            let err = errors::no_data(&inst.symbol, exchange, what.title());
            return self.send_error(c, now, req_id, err);
        }
        let fmt = |t: i64| {
            if r.format_date == 1 {
                calendar::format_new_york(t)
            } else {
                calendar::format_utc_dash(t)
            }
        };
        let (start_s, end_s) = (fmt(start), fmt(end));
        let replies = if c.sv() >= ibconn_core::wire::version::HISTORICAL_DATA_END {
            vec![
                Response::HistoricalData {
                    req_id,
                    start: String::new(),
                    end: String::new(),
                    bars: found,
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
                bars: found,
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
        let Some(inst) = self.instrument_for(c, now, r.req_id, &r.contract) else {
            return;
        };
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
}
