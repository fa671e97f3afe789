//! One TWS API session as a sans-IO state machine.
//!
//! A [`Connection`] owns the protocol for one socket: the hello, START_API, the startup burst,
//! request ids and their deadlines, reply assembly, error routing through the classifier, the
//! `reqCurrentTime` health probe and sleep detection. It performs no I/O and reads no clock.
//!
//! # Run loop
//!
//! The runtime feeds it input and drains its output, in this order, after **every** input or
//! command:
//!
//! 1. `poll_transmit()` until `None` — write the bytes to the socket;
//! 2. `poll_event()` until `None` — deliver events;
//! 3. `poll_timeout()` — arm one timer; when it fires call `handle_timeout(now)`.
//!
//! Inputs are `handle_input(now, bytes)` (any chunking), `handle_eof(now, cause)`,
//! `handle_timeout(now)` and `observe_clocks(now, boottime)`; commands are `send`, `cancel` and
//! `close`. `now` must never go backwards.
//!
//! ```no_run
//! # use std::time::Instant;
//! # use ibconn_core::connection::{Config, Connection, Query};
//! let now = Instant::now();
//! let mut conn = Connection::new(Config::new(1001), now);
//! let id = conn.send(now, Query::CurrentTime, None).expect("open connection");
//! while let Some(bytes) = conn.poll_transmit() { /* socket.write_all(&bytes) */ }
//! // … on readable: conn.handle_input(Instant::now(), &buf[..n]);
//! while let Some(event) = conn.poll_event() { /* route Completed { id, .. } */ }
//! let _deadline = conn.poll_timeout();
//! # let _ = id;
//! ```

mod types;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use self::types::{
    Answer, Config, ConnectionError, Event, Fault, Query, RequestError, RequestId, SendError,
    Stats, VersionPolicy,
};
use crate::classify::{classify, Connectivity, ErrorClass, RequestContext};
use crate::deadline::after;
use crate::message::{Bar, Contract, ContractDetails, ErrorMessage, Request, Response};
use crate::wire::{
    check_server_choice, version, ClientHello, FrameDecoder, ServerHello, VersionRange,
};

/// Recently cancelled or timed-out request ids remembered to recognise their late replies.
const CANCELLED_MEMORY: usize = 256;

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Hello sent; waiting for the server's version and time.
    ExpectServerHello,
    /// START_API sent; waiting for both NextValidId and ManagedAccounts.
    ExpectStartup {
        next_valid_id: Option<i32>,
        accounts: Option<String>,
        connection_time: String,
    },
    /// Usable.
    Ready,
    /// Finished; no more events.
    Closed,
}

/// What kind of reply a pending request expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Historical { stream: bool },
    HeadTimestamp,
    ContractDetails,
    MatchingSymbols,
}

/// A request sent and not yet finished.
#[derive(Debug)]
struct Pending {
    kind: Kind,
    submitted: Instant,
    deadline: Instant,
    /// For streams: `Completed` was delivered and updates follow until cancelled.
    streaming: bool,
    bars: Vec<Bar>,
    window: (String, String),
    details: Vec<(Contract, ContractDetails)>,
}

/// A `reqCurrentTime` / `reqCurrentTimeInMillis` caller (these replies carry no request id).
#[derive(Debug)]
struct TimeWaiter {
    id: RequestId,
    millis: bool,
    submitted: Instant,
    deadline: Instant,
}

/// Send bookkeeping for one of the two current-time requests.
#[derive(Debug, Default)]
struct TimeChannel {
    /// When the outstanding request went out.
    outstanding: Option<Instant>,
    /// When the last request went out (IB ignores a second one within the spacing).
    last_sent: Option<Instant>,
}

/// One TWS API session. See the [module docs](self) for the run loop.
#[derive(Debug)]
pub struct Connection {
    cfg: Config,
    /// The range the hello offered (from [`Config::versions`]).
    offered: VersionRange,
    state: State,
    /// START_API went out (with the hello when pipelined, else after the server's hello).
    start_api_sent: bool,
    started: Instant,
    last_now: Instant,
    decoder: FrameDecoder,
    out: BytesMut,
    events: VecDeque<Event>,
    server_version: i32,
    next_req_id: i32,
    pending: BTreeMap<i32, Pending>,
    /// Submitted before the session was ready; sent once it is.
    queued: VecDeque<(RequestId, Query, Instant, Instant)>,
    time_waiters: Vec<TimeWaiter>,
    secs: TimeChannel,
    millis: TimeChannel,
    /// When the outstanding health probe was sent.
    probe_sent: Option<Instant>,
    last_rx: Instant,
    cancelled: VecDeque<i32>,
    degraded: bool,
    clock_base: Option<(Instant, Duration)>,
    stats: Stats,
}

impl Connection {
    /// A new session that will claim `cfg.client_id`; the hello is queued for `poll_transmit`.
    pub fn new(cfg: Config, now: Instant) -> Self {
        let mut out = BytesMut::new();
        let offered = cfg.versions.offer();
        let mut hello = ClientHello::new(offered);
        hello.options.clone_from(&cfg.connect_options);
        hello.encode(&mut out);
        tracing::debug!(client_id = cfg.client_id, hello = %hello.version_string(), "connecting");
        // When every version we offer carries START_API in the same (protobuf) form, it goes out
        // right behind the hello instead of one round trip later.
        let start_api_sent = offered.min >= version::PROTOBUF_REST_MESSAGES_3
            && Request::StartApi {
                client_id: cfg.client_id,
                optional_capabilities: String::new(),
            }
            .encode(offered.min, &mut out)
            .is_ok();
        Self {
            offered,
            start_api_sent,
            next_req_id: cfg.first_request_id,
            cfg,
            state: State::ExpectServerHello,
            started: now,
            last_now: now,
            decoder: FrameDecoder::new(),
            out,
            events: VecDeque::new(),
            server_version: 0,
            pending: BTreeMap::new(),
            queued: VecDeque::new(),
            time_waiters: Vec::new(),
            secs: TimeChannel::default(),
            millis: TimeChannel::default(),
            probe_sent: None,
            last_rx: now,
            cancelled: VecDeque::new(),
            degraded: false,
            clock_base: None,
            stats: Stats::default(),
        }
    }

    // ----- getters -----

    /// The client id this session claims.
    pub fn client_id(&self) -> i32 {
        self.cfg.client_id
    }

    /// The version range the hello offered.
    pub fn offered(&self) -> VersionRange {
        self.offered
    }

    /// The negotiated server version (0 before the server's hello).
    pub fn server_version(&self) -> i32 {
        self.server_version
    }

    /// Whether the session is usable.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether TWS reported its link to IB lost (1100) and not yet restored.
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// Requests submitted and not yet completed (streams count while open).
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.queued.len() + self.time_waiters.len()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ----- inputs -----

    /// Bytes read from the socket, in any chunking.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        self.stats.bytes_in += bytes.len() as u64;
        self.last_rx = now;
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(body)) => {
                    self.stats.frames_in += 1;
                    self.handle_frame(now, body);
                    if self.is_closed() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => return self.fail(ConnectionError::Framing(e)),
            }
        }
        self.pump(now);
    }

    /// The runtime saw EOF (`cause = None`) or a socket error. Before the server's hello this
    /// ends the session with [`ConnectionError::ClosedBeforeHello`], later with
    /// [`ConnectionError::PeerClosed`] or [`ConnectionError::Transport`].
    pub fn handle_eof(&mut self, now: Instant, cause: Option<String>) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        self.fail(match cause {
            _ if self.state == State::ExpectServerHello => {
                ConnectionError::ClosedBeforeHello { cause }
            }
            None => ConnectionError::PeerClosed,
            Some(msg) => ConnectionError::Transport(msg),
        });
    }

    /// The runtime gave up on the socket for a typed reason of its own
    /// ([`ConnectionError::WriteTimeout`], [`ConnectionError::WriteQueueFull`]): the session ends
    /// with `reason`.
    pub fn handle_socket_error(&mut self, now: Instant, reason: ConnectionError) {
        self.advance(now);
        self.fail(reason);
    }

    /// Time passed; idempotent, spurious calls are fine.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        if self.state != State::Ready && now >= after(self.started, self.cfg.handshake_timeout) {
            return self.fail(ConnectionError::HandshakeTimeout(
                self.cfg.handshake_timeout,
            ));
        }
        if let Some(sent) = self.probe_sent {
            if now >= after(sent, self.cfg.probe_timeout) {
                tracing::warn!(
                    client_id = self.cfg.client_id,
                    "health probe unanswered; declaring the connection dead"
                );
                return self.fail(ConnectionError::ProbeTimeout(self.cfg.probe_timeout));
            }
        }
        self.expire_requests(now);
        if self.state == State::Ready
            && self.probe_sent.is_none()
            && now >= after(self.last_rx, self.cfg.probe_idle)
        {
            tracing::debug!(client_id = self.cfg.client_id, "idle; sending health probe");
            self.probe_sent = Some(now);
            self.stats.probes += 1;
        }
        self.pump(now);
    }

    /// Report both clocks: `now` (monotonic, stops while suspended — Linux `CLOCK_MONOTONIC`) and
    /// `boottime` (keeps counting through suspend — `CLOCK_BOOTTIME`). When `boottime` advanced more
    /// than `now` by the sleep threshold since the last call, the machine slept: the socket cannot be
    /// trusted and the connection closes with [`ConnectionError::SleepDetected`].
    pub fn observe_clocks(&mut self, now: Instant, boottime: Duration) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        if let Some((mono0, boot0)) = self.clock_base {
            let mono = now.saturating_duration_since(mono0);
            let boot = boottime.saturating_sub(boot0);
            if boot > mono.saturating_add(self.cfg.sleep_threshold) {
                let gap = boot - mono;
                tracing::info!(
                    client_id = self.cfg.client_id,
                    ?gap,
                    "machine slept; redialing"
                );
                return self.fail(ConnectionError::SleepDetected(gap));
            }
        }
        self.clock_base = Some((now, boottime));
    }

    // ----- commands -----

    /// Submit a query; its outcome arrives as exactly one [`Event::Completed`] with the returned id.
    /// `timeout` defaults to [`Config::request_timeout`]. Queries sent before the session is ready
    /// wait for it (their deadline keeps running).
    pub fn send(
        &mut self,
        now: Instant,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<RequestId, SendError> {
        self.advance(now);
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if self.is_ready() {
            // Refuse up front what this server version cannot carry.
            self.to_request(RequestId(0), &query)
                .form(self.server_version)?;
        }
        let id = RequestId(self.next_req_id);
        self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
        self.stats.requests += 1;
        let deadline = after(now, timeout.unwrap_or(self.cfg.request_timeout));
        tracing::debug!(id = id.0, query = query.name(), "request submitted");
        if self.is_ready() {
            self.dispatch(now, id, query, deadline);
        } else {
            self.queued.push_back((id, query, now, deadline));
        }
        self.pump(now);
        Ok(id)
    }

    /// Cancel a request or an open stream. Sends IB's cancel where one exists; the request ends with
    /// [`RequestError::Cancelled`] unless it had already completed. Unknown ids are ignored.
    pub fn cancel(&mut self, now: Instant, id: RequestId) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        if let Some(pos) = self.queued.iter().position(|(q, ..)| *q == id) {
            self.queued.remove(pos);
            return self.complete(id, Err(RequestError::Cancelled));
        }
        if let Some(pos) = self.time_waiters.iter().position(|w| w.id == id) {
            self.time_waiters.remove(pos);
            return self.complete(id, Err(RequestError::Cancelled));
        }
        if let Some(p) = self.pending.remove(&id.0) {
            self.send_cancel(id, p.kind);
            if !p.streaming {
                self.complete(id, Err(RequestError::Cancelled));
            }
        }
    }

    /// Close the session; every open request ends with [`RequestError::ConnectionClosed`].
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        if !self.is_closed() {
            self.fail(ConnectionError::LocallyClosed);
        }
    }

    // ----- outputs -----

    /// Bytes to write, coalesced. Poll after every input and command until `None`.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        self.stats.bytes_out += self.out.len() as u64;
        Some(self.out.split().freeze())
    }

    /// The next event. Poll after every input and command until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called; `None` when nothing is scheduled (closed).
    /// Poll last, after transmits and events.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state != State::Ready {
            at(after(self.started, self.cfg.handshake_timeout));
        }
        for p in self.pending.values().filter(|p| !p.streaming) {
            at(p.deadline);
        }
        for (.., deadline) in &self.queued {
            at(*deadline);
        }
        for w in &self.time_waiters {
            at(w.deadline);
        }
        if self.state == State::Ready {
            match self.probe_sent {
                Some(sent) => at(after(sent, self.cfg.probe_timeout)),
                None => at(after(self.last_rx, self.cfg.probe_idle)),
            }
            for (chan, wanted) in [
                (&self.secs, self.wants_time(false)),
                (&self.millis, self.wants_time(true)),
            ] {
                if let Some(t) = self.time_send_due(chan, wanted) {
                    at(t);
                }
            }
        }
        next
    }

    // ----- internals -----

    fn advance(&mut self, now: Instant) {
        debug_assert!(now >= self.last_now, "`now` went backwards");
        self.last_now = self.last_now.max(now);
    }

    fn handle_frame(&mut self, now: Instant, body: Bytes) {
        if self.state == State::ExpectServerHello {
            return self.handle_server_hello(now, &body);
        }
        match Response::decode_payload(body, self.server_version) {
            Ok(resp) => self.handle_response(now, resp),
            Err(e) => self.fail(ConnectionError::Decode(e)),
        }
    }

    fn handle_server_hello(&mut self, now: Instant, body: &Bytes) {
        let hello = match ServerHello::decode(body) {
            Ok(h) => h,
            Err(e) => return self.fail(e.into()),
        };
        if hello.server_version < self.offered.min {
            return self.fail(ConnectionError::VersionBelowOffer {
                offered_min: self.offered.min,
                server: hello.server_version,
            });
        }
        match check_server_choice(self.offered, hello.server_version) {
            Ok(v) => self.server_version = v,
            Err(e) => return self.fail(e.into()),
        }
        tracing::debug!(
            server_version = self.server_version,
            time = %hello.connection_time,
            "server hello; starting API"
        );
        if !self.start_api_sent {
            self.start_api_sent = true;
            let start = Request::StartApi {
                client_id: self.cfg.client_id,
                optional_capabilities: String::new(),
            };
            self.write(now, &start);
        }
        self.state = State::ExpectStartup {
            next_valid_id: None,
            accounts: None,
            connection_time: hello.connection_time,
        };
    }

    fn handle_response(&mut self, now: Instant, resp: Response) {
        match resp {
            Response::NextValidId { order_id } => {
                if let State::ExpectStartup { next_valid_id, .. } = &mut self.state {
                    *next_valid_id = Some(order_id);
                }
                self.maybe_ready(now);
            }
            Response::ManagedAccounts { accounts: list } => {
                if let State::ExpectStartup { accounts, .. } = &mut self.state {
                    *accounts = Some(list);
                }
                self.maybe_ready(now);
            }
            Response::Error(e) => self.handle_error(now, e),
            Response::CurrentTime { time } => self.answer_time(now, false, time),
            Response::CurrentTimeInMillis { millis } => self.answer_time(now, true, millis),
            Response::HistoricalData {
                req_id,
                start,
                end,
                bars,
            } => {
                let inline_end = self.server_version < version::HISTORICAL_DATA_END;
                // A stream that already answered buffers no more bars: updates carry it on.
                let Some(p) = self.pending.get_mut(&req_id).filter(|p| !p.streaming) else {
                    return;
                };
                if p.bars.len().saturating_add(bars.len()) > self.cfg.max_answer_items {
                    return self.answer_too_large(req_id);
                }
                p.bars.extend(bars);
                if inline_end {
                    p.window = (start, end);
                    self.finish_bars(req_id);
                }
            }
            Response::HistoricalDataEnd { req_id, start, end } => {
                if let Some(p) = self.pending.get_mut(&req_id).filter(|p| !p.streaming) {
                    p.window = (start, end);
                    self.finish_bars(req_id);
                }
            }
            Response::HistoricalDataUpdate { req_id, bar } => {
                if self.pending.get(&req_id).is_some_and(|p| p.streaming) {
                    self.events.push_back(Event::BarUpdate {
                        id: RequestId(req_id),
                        bar,
                    });
                }
            }
            Response::HeadTimestamp { req_id, timestamp } => {
                if self.pending.remove(&req_id).is_some() {
                    self.succeed(RequestId(req_id), Answer::HeadTimestamp(timestamp));
                }
            }
            Response::ContractData {
                req_id,
                contract,
                details,
            } => {
                if let Some(p) = self.pending.get_mut(&req_id) {
                    if p.details.len() >= self.cfg.max_answer_items {
                        return self.answer_too_large(req_id);
                    }
                    p.details.push((*contract, *details));
                }
            }
            Response::ContractDataEnd { req_id } => {
                if let Some(p) = self.pending.remove(&req_id) {
                    self.succeed(RequestId(req_id), Answer::ContractDetails(p.details));
                }
            }
            Response::SymbolSamples {
                req_id,
                descriptions,
            } => {
                if self.pending.remove(&req_id).is_some() {
                    self.succeed(RequestId(req_id), Answer::Symbols(descriptions));
                }
            }
            other => tracing::debug!(msg = other.name(), id = other.id(), "ignored message"),
        }
    }

    fn maybe_ready(&mut self, now: Instant) {
        let State::ExpectStartup {
            next_valid_id: Some(next_valid_id),
            accounts: Some(accounts),
            connection_time,
        } = &self.state
        else {
            return;
        };
        let event = Event::Connected {
            server_version: self.server_version,
            connection_time: connection_time.clone(),
            next_valid_id: *next_valid_id,
            accounts: accounts
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        self.state = State::Ready;
        self.stats.handshake_us =
            Some(now.saturating_duration_since(self.started).as_micros() as u64);
        tracing::info!(
            client_id = self.cfg.client_id,
            server_version = self.server_version,
            "connected"
        );
        self.events.push_back(event);
        while let Some((id, query, _, deadline)) = self.queued.pop_front() {
            match self.to_request(id, &query).form(self.server_version) {
                Ok(_) => self.dispatch(now, id, query, deadline),
                Err(e) => self.complete(id, Err(RequestError::Unsupported(e))),
            }
        }
    }

    fn handle_error(&mut self, _now: Instant, e: ErrorMessage) {
        if e.code == 326 && self.state != State::Ready {
            tracing::warn!(client_id = self.cfg.client_id, "client id in use (326)");
            return self.fail(ConnectionError::ClientIdInUse {
                client_id: self.cfg.client_id,
            });
        }
        let locally_cancelled = self.cancelled.contains(&e.req_id);
        let context = RequestContext {
            cancelled_locally: locally_cancelled,
            ..RequestContext::default()
        };
        let c = classify(e.code, &e.message, &context);
        let informational = matches!(
            c.class,
            ErrorClass::Informational | ErrorClass::FarmStatus(..)
        );
        if e.req_id >= 0 && !informational {
            if let Some(p) = self.pending.remove(&e.req_id) {
                tracing::debug!(id = e.req_id, code = e.code, class = ?c.class, "request failed");
                let err = RequestError::Api {
                    code: e.code,
                    message: e.message,
                    class: c.class,
                    advice: c.advice,
                };
                if !p.streaming {
                    self.stats.failed += 1;
                    self.complete(RequestId(e.req_id), Err(err));
                }
                return;
            }
            if locally_cancelled {
                tracing::debug!(id = e.req_id, code = e.code, "reply to our own cancel");
                return;
            }
        }
        match c.class {
            ErrorClass::Connectivity(conn) => self.connectivity(conn),
            ErrorClass::RateExceeded => {
                tracing::warn!(code = e.code, "gateway limited our message rate");
                self.events.push_back(Event::RateLimited);
            }
            _ => {
                tracing::debug!(code = e.code, id = e.req_id, message = %e.message, "notice");
                self.events.push_back(Event::Notice {
                    id: (e.req_id >= 0).then_some(RequestId(e.req_id)),
                    code: e.code,
                    message: e.message,
                    class: c.class,
                });
            }
        }
    }

    fn connectivity(&mut self, change: Connectivity) {
        match change {
            Connectivity::Lost | Connectivity::ServerLinkBroken => {
                tracing::warn!(?change, "gateway lost its link to IB");
                self.degraded = true;
            }
            Connectivity::RestoredDataLost => {
                tracing::info!("gateway link restored, data lost: resubscribing");
                self.degraded = false;
                self.events.push_back(Event::Connectivity(change));
                return self.events.push_back(Event::Resubscribe);
            }
            Connectivity::RestoredDataKept => {
                tracing::info!("gateway link restored, data kept");
                self.degraded = false;
            }
            Connectivity::SocketPortReset => return self.fail(ConnectionError::SocketPortReset),
            _ => {}
        }
        self.events.push_back(Event::Connectivity(change));
    }

    fn finish_bars(&mut self, req_id: i32) {
        let Some(p) = self.pending.get_mut(&req_id) else {
            return;
        };
        let answer = Answer::Bars {
            bars: std::mem::take(&mut p.bars),
            start: std::mem::take(&mut p.window.0),
            end: std::mem::take(&mut p.window.1),
        };
        if matches!(p.kind, Kind::Historical { stream: true }) {
            p.streaming = true;
        } else {
            self.pending.remove(&req_id);
        }
        self.succeed(RequestId(req_id), answer);
    }

    /// End a request whose answer outgrew [`Config::max_answer_items`]: cancel it at the gateway
    /// (its later frames are then ignored as a cancelled request's) and fail it.
    fn answer_too_large(&mut self, req_id: i32) {
        let Some(p) = self.pending.remove(&req_id) else {
            return;
        };
        let max = self.cfg.max_answer_items;
        tracing::warn!(id = req_id, max, "answer too large; cancelling the request");
        self.send_cancel(RequestId(req_id), p.kind);
        self.stats.failed += 1;
        self.complete(RequestId(req_id), Err(RequestError::AnswerTooLarge { max }));
    }

    fn answer_time(&mut self, now: Instant, millis: bool, value: i64) {
        let chan = if millis {
            &mut self.millis
        } else {
            &mut self.secs
        };
        chan.outstanding = None;
        if !millis {
            if let Some(sent) = self.probe_sent.take() {
                let rtt = now.saturating_duration_since(sent);
                self.stats.last_probe_rtt_us = Some(rtt.as_micros() as u64);
                tracing::debug!(?rtt, "health probe answered");
            }
        }
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.time_waiters)
            .into_iter()
            .partition(|w| w.millis == millis);
        self.time_waiters = keep;
        for w in done {
            let answer = if millis {
                Answer::CurrentTimeMillis(value)
            } else {
                Answer::CurrentTime(value)
            };
            self.succeed(w.id, answer);
        }
    }

    fn expire_requests(&mut self, now: Instant) {
        let expired: Vec<i32> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.streaming && now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                tracing::debug!(id, "request timed out; cancelling");
                self.send_cancel(RequestId(id), p.kind);
                self.time_out(RequestId(id), p.deadline - p.submitted);
            }
        }
        let mut i = 0;
        while i < self.queued.len() {
            if now >= self.queued[i].3 {
                if let Some((id, _, submitted, deadline)) = self.queued.remove(i) {
                    self.time_out(id, deadline - submitted);
                }
            } else {
                i += 1;
            }
        }
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.time_waiters)
            .into_iter()
            .partition(|w| now >= w.deadline);
        self.time_waiters = keep;
        for w in late {
            self.time_out(w.id, w.deadline - w.submitted);
        }
    }

    fn time_out(&mut self, id: RequestId, after: Duration) {
        self.stats.timed_out += 1;
        self.complete(id, Err(RequestError::Timeout { after }));
    }

    /// Send what is due: current-time requests (respecting IB's spacing) and nothing else — other
    /// requests go out as soon as they are submitted.
    fn pump(&mut self, now: Instant) {
        if self.state != State::Ready {
            return;
        }
        for millis in [false, true] {
            let wanted = self.wants_time(millis);
            let chan = if millis { &self.millis } else { &self.secs };
            if self
                .time_send_due(chan, wanted)
                .is_some_and(|due| due <= now)
            {
                let req = if millis {
                    Request::ReqCurrentTimeInMillis
                } else {
                    Request::ReqCurrentTime
                };
                self.write(now, &req);
                let chan = if millis {
                    &mut self.millis
                } else {
                    &mut self.secs
                };
                chan.outstanding = Some(now);
                chan.last_sent = Some(now);
            }
        }
    }

    /// Whether anyone waits for a current-time answer of this kind (the probe counts for seconds).
    fn wants_time(&self, millis: bool) -> bool {
        self.time_waiters.iter().any(|w| w.millis == millis)
            || (!millis && self.probe_sent.is_some())
    }

    /// When the next current-time request of a channel may go out, if one is wanted. An outstanding
    /// request counts as lost after the probe timeout (IB silently drops some).
    fn time_send_due(&self, chan: &TimeChannel, wanted: bool) -> Option<Instant> {
        if !wanted {
            return None;
        }
        let spacing_ok = chan
            .last_sent
            .map_or(self.last_now, |t| after(t, self.cfg.current_time_spacing));
        match chan.outstanding {
            Some(sent) => Some(after(sent, self.cfg.probe_timeout).max(spacing_ok)),
            None => Some(spacing_ok),
        }
    }

    fn dispatch(&mut self, now: Instant, id: RequestId, query: Query, deadline: Instant) {
        let kind = match &query {
            Query::CurrentTime | Query::CurrentTimeMillis => {
                self.time_waiters.push(TimeWaiter {
                    id,
                    millis: matches!(query, Query::CurrentTimeMillis),
                    submitted: now,
                    deadline,
                });
                return;
            }
            Query::HistoricalData(r) => Kind::Historical {
                stream: r.keep_up_to_date,
            },
            Query::HeadTimestamp(_) => Kind::HeadTimestamp,
            Query::ContractDetails(_) => Kind::ContractDetails,
            Query::MatchingSymbols(_) => Kind::MatchingSymbols,
        };
        let request = self.to_request(id, &query);
        self.write(now, &request);
        self.pending.insert(
            id.0,
            Pending {
                kind,
                submitted: now,
                deadline,
                streaming: false,
                bars: Vec::new(),
                window: (String::new(), String::new()),
                details: Vec::new(),
            },
        );
    }

    fn to_request(&self, id: RequestId, query: &Query) -> Request {
        match query {
            Query::CurrentTime => Request::ReqCurrentTime,
            Query::CurrentTimeMillis => Request::ReqCurrentTimeInMillis,
            Query::HistoricalData(r) => {
                Request::ReqHistoricalData(crate::message::HistoricalDataRequest {
                    req_id: id.0,
                    ..r.clone()
                })
            }
            Query::HeadTimestamp(r) => {
                Request::ReqHeadTimestamp(crate::message::HeadTimestampRequest {
                    req_id: id.0,
                    ..r.clone()
                })
            }
            Query::ContractDetails(c) => Request::ReqContractDetails {
                req_id: id.0,
                contract: c.clone(),
            },
            Query::MatchingSymbols(p) => Request::ReqMatchingSymbols {
                req_id: id.0,
                pattern: p.clone(),
            },
        }
    }

    fn send_cancel(&mut self, id: RequestId, kind: Kind) {
        let cancel = match kind {
            Kind::Historical { .. } => Some(Request::CancelHistoricalData { req_id: id.0 }),
            Kind::HeadTimestamp => Some(Request::CancelHeadTimestamp { req_id: id.0 }),
            Kind::ContractDetails if self.server_version >= version::CANCEL_CONTRACT_DATA => {
                Some(Request::CancelContractData { req_id: id.0 })
            }
            _ => None,
        };
        if let Some(cancel) = cancel {
            let now = self.last_now;
            self.write(now, &cancel);
        }
        if self.cancelled.len() == CANCELLED_MEMORY {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(id.0);
    }

    fn write(&mut self, _now: Instant, request: &Request) {
        match request.encode(self.server_version, &mut self.out) {
            Ok(()) => self.stats.frames_out += 1,
            // `send` checked the form; an encode failure here is a NUL inside a caller's string.
            Err(e) => tracing::warn!(msg = request.name(), error = %e, "request not encodable"),
        }
    }

    fn succeed(&mut self, id: RequestId, answer: Answer) {
        self.stats.answered += 1;
        self.complete(id, Ok(answer));
    }

    fn complete(&mut self, id: RequestId, result: Result<Answer, RequestError>) {
        self.events.push_back(Event::Completed { id, result });
    }

    /// Close with `reason`: every open request ends, then `Disconnected` is the last event.
    fn fail(&mut self, reason: ConnectionError) {
        if self.is_closed() {
            return;
        }
        match reason.fault() {
            Fault::Local => tracing::info!(client_id = self.cfg.client_id, %reason, "closed"),
            _ => tracing::info!(client_id = self.cfg.client_id, %reason, "connection lost"),
        }
        self.state = State::Closed;
        let closed = || Err(RequestError::ConnectionClosed(reason.clone()));
        let pending: Vec<(i32, bool)> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(id, p)| (id, p.streaming))
            .collect();
        for (id, streaming) in pending {
            if !streaming {
                self.complete(RequestId(id), closed());
            }
        }
        for (id, ..) in std::mem::take(&mut self.queued) {
            self.complete(id, closed());
        }
        for w in std::mem::take(&mut self.time_waiters) {
            self.complete(w.id, closed());
        }
        self.events.push_back(Event::Disconnected { reason });
    }
}

#[cfg(test)]
mod tests;
