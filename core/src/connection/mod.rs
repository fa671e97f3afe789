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
//!
//! # Layout
//!
//! This file holds the session's state, its inputs and outputs; the `impl Connection` blocks behind
//! it are split by concern: `handshake` (server hello, startup burst), `requests` (send, cancel,
//! deadlines, reply assembly), `keepalive` (sleep detection, health probe, current time) and
//! `errors` (IB's error messages through the classifier).

mod errors;
mod handshake;
mod keepalive;
mod requests;
mod types;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use self::types::{
    Answer, Config, ConnectionError, Event, Fault, Query, RequestError, RequestId, SendError,
    Stats, VersionPolicy,
};
use crate::deadline::after;
use crate::message::{Bar, Contract, ContractDetails, Request, Response};
use crate::stream::StreamKind;
use crate::wire::{version, ClientHello, FrameDecoder, VersionRange};

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
    Historical {
        stream: bool,
    },
    /// Market data, real-time bars or tick-by-tick: streaming from the moment it is sent.
    Stream(StreamKind),
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

/// When the session's own timers fire ([`Connection::timers`]); `None`: not running.
#[derive(Debug, Clone, Copy)]
struct Timers {
    /// The handshake must be done by then.
    handshake: Option<Instant>,
    /// The health probe sent must be answered by then.
    probe_unanswered: Option<Instant>,
    /// A probe goes out then, if nothing arrives before.
    probe_idle: Option<Instant>,
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

    /// The id the next request will get.
    pub fn next_request_id(&self) -> i32 {
        self.next_req_id
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
        let due = |t: Option<Instant>| t.is_some_and(|t| now >= t);
        let timers = self.timers();
        if due(timers.handshake) {
            return self.fail(ConnectionError::HandshakeTimeout(
                self.cfg.handshake_timeout,
            ));
        }
        if due(timers.probe_unanswered) {
            tracing::warn!(
                client_id = self.cfg.client_id,
                "health probe unanswered; declaring the connection dead"
            );
            return self.fail(ConnectionError::ProbeTimeout(self.cfg.probe_timeout));
        }
        self.expire_requests(now);
        if due(timers.probe_idle) {
            tracing::debug!(client_id = self.cfg.client_id, "idle; sending health probe");
            self.probe_sent = Some(now);
            self.stats.probes += 1;
        }
        self.pump(now);
    }

    /// The session's own timers, computed here once for both `poll_timeout` and
    /// `handle_timeout` (requests and current-time sends have theirs on each entry).
    fn timers(&self) -> Timers {
        let ready = self.state == State::Ready;
        Timers {
            handshake: (!ready).then(|| after(self.started, self.cfg.handshake_timeout)),
            probe_unanswered: self
                .probe_sent
                .filter(|_| ready)
                .map(|sent| after(sent, self.cfg.probe_timeout)),
            probe_idle: (ready && self.probe_sent.is_none())
                .then(|| after(self.last_rx, self.cfg.probe_idle)),
        }
    }

    // ----- commands -----

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
        let timers = self.timers();
        [timers.handshake, timers.probe_unanswered, timers.probe_idle]
            .into_iter()
            .flatten()
            .for_each(&mut at);
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

    fn write(&mut self, _now: Instant, request: &Request) {
        match request.encode(self.server_version, &mut self.out) {
            Ok(()) => self.stats.frames_out += 1,
            // `send` checked the form; an encode failure here is a NUL inside a caller's string.
            Err(e) => tracing::warn!(msg = request.name(), error = %e, "request not encodable"),
        }
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
            if streaming {
                // The owner decides: a pool re-requests it on the next session.
                self.events.push_back(Event::StreamEnded {
                    id: RequestId(id),
                    error: Some(RequestError::ConnectionClosed(reason.clone())),
                });
            } else {
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
