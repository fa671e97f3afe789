//! An in-memory world: client [`Connection`]s (ibconn-core's client side) wired to one [`Gateway`]
//! through simulated TCP links, under virtual time.
//!
//! Nothing here sleeps or reads a clock after [`World::new`] captures its epoch: time jumps from
//! event to event (madsim's `advance_to_next_event`), so 24 h of virtual time take milliseconds.
//!
//! # The loop
//!
//! Each [`World::step`] moves `now` to the earliest of: the next delivery in the event queue (a
//! min-heap ordered by instant, then by a sequence number: deterministic tie-breaks), the gateway's
//! [`Gateway::poll_timeout`] and every connection's `poll_timeout`. It then delivers everything
//! due, runs due timers (gateway first, then clients in id order) and drains every output into new
//! deliveries.
//!
//! # Links
//!
//! A link delivers bytes in order after `latency` plus a seeded jitter in `0..=jitter`. Dialing
//! takes one trip to the gateway: if the gateway's port refuses ([`Gateway::is_refusing`]), the
//! client gets a "connection refused" transport error one trip later; otherwise the gateway accepts
//! and the client may write one trip later. A close travels like data (a FIN after the bytes).
//!
//! # Trace
//!
//! Every frame, dial, close, client event and injected fault is one line of [`World::trace`], e.g.
//! `+12.345s C1→G ReqHistoricalData #3`; times are relative to the epoch. [`World::trace_hash`]
//! digests the lines and every byte delivered, so two runs from one seed can be compared.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ibconn_core::connection::{
    Answer, Config, Connection, Event, Query, RequestError, RequestId, SendError,
};

use crate::fault::Fault;
use crate::gateway::{ConnId, Gateway, GatewayConfig};
use crate::rng::SplitMix64;
use crate::tap::LinkTaps;
use crate::trace_log::TraceLog;
use crate::virtual_net::{Lanes, VirtualNet};

/// A finished request: when (since the epoch) and its outcome.
pub type Completion = (Duration, Result<Answer, RequestError>);

/// A client of the world (`C1`, `C2`, … in the trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}", self.0)
    }
}

/// What shapes a world.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// The one seed: gateway randomness, link jitter.
    pub seed: u64,
    /// The gateway.
    pub gateway: GatewayConfig,
    /// One-way link latency.
    pub latency: Duration,
    /// Extra one-way delay, uniform in `0..=jitter`, drawn from the seed.
    pub jitter: Duration,
    /// Bound on [`World::step`] calls over the world's life.
    pub max_steps: u64,
}

impl WorldConfig {
    /// Defaults with `seed`: the default gateway, 1 ms latency, 1 ms jitter, 10 M steps.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            gateway: GatewayConfig::default(),
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            max_steps: 10_000_000,
        }
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorldError {
    /// [`WorldConfig::max_steps`] was reached (a livelock, or a far too long run).
    #[error("step limit of {0} reached")]
    StepLimit(u64),
    /// Nothing is scheduled any more, but the awaited event did not happen.
    #[error("deadlock at +{0:?}: nothing is scheduled")]
    Deadlock(Duration),
    /// The awaited event did not happen by the deadline.
    #[error("no matching event by +{0:?}")]
    Timeout(Duration),
    /// No such client.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
}

/// Something in flight.
#[derive(Debug)]
enum Delivery {
    /// A connect attempt reaches the gateway.
    Syn {
        client: usize,
        generation: u64,
    },
    /// The accept reaches the client.
    SynAck {
        client: usize,
        generation: u64,
    },
    /// The refusal reaches the client.
    Refused {
        client: usize,
        generation: u64,
    },
    ToGateway {
        client: usize,
        conn: ConnId,
        bytes: Bytes,
    },
    ToClient {
        client: usize,
        generation: u64,
        bytes: Bytes,
    },
    FinToGateway {
        client: usize,
        conn: ConnId,
    },
    FinToClient {
        client: usize,
        generation: u64,
    },
}

#[derive(Debug)]
struct Slot {
    config: Config,
    conn: Option<Connection>,
    generation: u64,
    /// The gateway side of the current link, while the gateway has it open.
    gw_conn: Option<ConnId>,
    /// The client side may write (the accept arrived).
    established: bool,
    /// In-order arrival per direction.
    lanes: Lanes,
    /// Frame decoders for the trace, fresh on every dial.
    taps: LinkTaps,
    events: Vec<(Duration, Event)>,
}

/// The simulated world. See the [module docs](self).
#[derive(Debug)]
pub struct World {
    /// Virtual time, the links' timing and the deliveries in flight.
    net: VirtualNet<Delivery>,
    gateway: Gateway,
    slots: Vec<Slot>,
    trace: TraceLog,
}

impl World {
    /// A world with no clients yet. Its epoch (virtual `+0.000s`) is captured here once.
    pub fn new(config: WorldConfig) -> Self {
        let root = SplitMix64::new(config.seed);
        Self {
            net: VirtualNet::start(
                root.child("links"),
                config.latency,
                config.jitter,
                config.max_steps,
            ),
            gateway: Gateway::new(config.gateway, config.seed),
            slots: Vec::new(),
            trace: TraceLog::new(),
        }
    }

    // ----- getters -----

    /// Virtual time since the epoch.
    pub fn elapsed(&self) -> Duration {
        self.net.elapsed()
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// The instant `at` after the epoch.
    pub fn at(&self, at: Duration) -> Instant {
        self.net.at(at)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.net.steps()
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The gateway, mutable (call [`World::inject`] rather than its `inject`, so the trace shows
    /// the fault and its output is drained).
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gateway
    }

    /// Every trace line so far.
    pub fn trace(&self) -> &[String] {
        self.trace.lines()
    }

    /// A digest of every trace line and every byte delivered.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// Every event of `client`'s connections so far, with its time.
    pub fn events(&self, client: ClientId) -> &[(Duration, Event)] {
        self.slot(client).map_or(&[], |s| &s.events)
    }

    /// The client's current connection.
    pub fn connection(&self, client: ClientId) -> Option<&Connection> {
        self.slot(client).and_then(|s| s.conn.as_ref())
    }

    /// The gateway side of the client's current link, while open.
    pub fn conn_of(&self, client: ClientId) -> Option<ConnId> {
        self.slot(client).and_then(|s| s.gw_conn)
    }

    // ----- commands -----

    /// Add a client and dial the gateway now.
    pub fn add_client(&mut self, config: Config) -> ClientId {
        let id = ClientId(u32::try_from(self.slots.len() + 1).unwrap_or(u32::MAX));
        let now = self.net.now();
        let conn = Connection::new(config.clone(), now);
        self.slots.push(Slot {
            config,
            conn: Some(conn),
            generation: 0,
            gw_conn: None,
            established: false,
            lanes: Lanes::new(now),
            taps: LinkTaps::new(),
            events: Vec::new(),
        });
        self.dial_slot(self.slots.len() - 1, false);
        id
    }

    /// Dial again with a fresh connection (closing the current one first, if open).
    pub fn dial(&mut self, client: ClientId) -> Result<(), WorldError> {
        let i = self.index(client)?;
        self.dial_slot(i, true);
        Ok(())
    }

    /// Submit a query on the client's connection (default timeout).
    pub fn send(&mut self, client: ClientId, query: Query) -> Result<RequestId, SendError> {
        self.send_with_timeout(client, query, None)
    }

    /// Submit a query with its own timeout.
    pub fn send_with_timeout(
        &mut self,
        client: ClientId,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<RequestId, SendError> {
        let i = self.index(client).map_err(|_| SendError::Closed)?;
        let now = self.net.now();
        let conn = self.slots[i].conn.as_mut().ok_or(SendError::Closed)?;
        let result = conn.send(now, query, timeout);
        self.drain_client(i);
        result
    }

    /// Cancel a request.
    pub fn cancel(&mut self, client: ClientId, id: RequestId) {
        let Ok(i) = self.index(client) else { return };
        let now = self.net.now();
        if let Some(conn) = self.slots[i].conn.as_mut() {
            conn.cancel(now, id);
        }
        self.drain_client(i);
    }

    /// Close the client's connection.
    pub fn close(&mut self, client: ClientId) {
        let Ok(i) = self.index(client) else { return };
        let now = self.net.now();
        if let Some(conn) = self.slots[i].conn.as_mut() {
            conn.close(now);
        }
        self.drain_client(i);
    }

    /// Apply a fault to the gateway now.
    pub fn inject(&mut self, fault: Fault) {
        self.log(format_args!("G fault {fault:?}"));
        self.gateway.inject(self.net.now(), fault);
        self.drain_gateway();
    }

    /// Apply a fault to the gateway at `at` after the epoch.
    pub fn schedule_fault(&mut self, at: Duration, fault: Fault) {
        self.gateway.schedule_fault(self.net.at(at), fault);
    }

    // ----- running -----

    /// Advance to the next instant anything happens and process it. `Ok(false)`: nothing is
    /// scheduled.
    pub fn step(&mut self) -> Result<bool, WorldError> {
        match self.next_instant() {
            Some(t) => self.process(t).map(|()| true),
            None => Ok(false),
        }
    }

    /// Run until `at` after the epoch (or until nothing is scheduled); `now` ends at `at`.
    pub fn run_until(&mut self, at: Duration) -> Result<(), WorldError> {
        let target = self.net.at(at);
        while let Some(t) = self.next_instant().filter(|&t| t <= target) {
            self.process(t)?;
        }
        self.net.advance_to(target);
        Ok(())
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) -> Result<(), WorldError> {
        self.run_until(self.elapsed() + d)
    }

    /// Run until `client` reports an event matching `pred` (events already recorded don't count),
    /// at most `within` of virtual time. Returns the event and its time.
    pub fn run_until_event(
        &mut self,
        client: ClientId,
        within: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Result<(Duration, Event), WorldError> {
        let i = self.index(client)?;
        let deadline = self.net.now() + within;
        let mut seen = self.slots[i].events.len();
        loop {
            if let Some(hit) = self.slots[i].events[seen..].iter().find(|(_, e)| pred(e)) {
                return Ok(hit.clone());
            }
            seen = self.slots[i].events.len();
            match self.next_instant() {
                None => return Err(WorldError::Deadlock(self.elapsed())),
                Some(t) if t > deadline => {
                    self.net.advance_to(deadline);
                    return Err(WorldError::Timeout(self.elapsed()));
                }
                Some(t) => self.process(t)?,
            }
        }
    }

    /// Run until the client's request `id` completes (or return at once if it already has);
    /// returns its outcome and the time.
    pub fn run_until_completed(
        &mut self,
        client: ClientId,
        id: RequestId,
        within: Duration,
    ) -> Result<Completion, WorldError> {
        let i = self.index(client)?;
        let done = self.slots[i].events.iter().find_map(|(t, e)| match e {
            Event::Completed { id: d, result } if *d == id => Some((*t, result.clone())),
            _ => None,
        });
        if let Some(done) = done {
            return Ok(done);
        }
        let (t, e) = self.run_until_event(
            client,
            within,
            |e| matches!(e, Event::Completed { id: done, .. } if *done == id),
        )?;
        match e {
            Event::Completed { result, .. } => Ok((t, result)),
            _ => Err(WorldError::Timeout(t)),
        }
    }

    // ----- internals -----

    fn slot(&self, client: ClientId) -> Option<&Slot> {
        usize::try_from(client.0)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.slots.get(i))
    }

    fn index(&self, client: ClientId) -> Result<usize, WorldError> {
        usize::try_from(client.0)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < self.slots.len())
            .ok_or(WorldError::UnknownClient(client))
    }

    fn name(i: usize) -> ClientId {
        ClientId(u32::try_from(i + 1).unwrap_or(u32::MAX))
    }

    fn log(&mut self, line: fmt::Arguments<'_>) {
        self.trace.line(self.net.elapsed(), line);
    }

    fn next_instant(&self) -> Option<Instant> {
        let clients = self
            .slots
            .iter()
            .filter_map(|s| s.conn.as_ref().and_then(Connection::poll_timeout));
        self.net
            .next_instant(self.gateway.poll_timeout().into_iter().chain(clients))
    }

    fn process(&mut self, t: Instant) -> Result<(), WorldError> {
        let now = self.net.begin_step(t).map_err(WorldError::StepLimit)?;
        while let Some(what) = self.net.pop_due() {
            self.deliver(what);
        }
        if self.gateway.poll_timeout().is_some_and(|g| g <= now) {
            self.gateway.handle_timeout(now);
            self.drain_gateway();
        }
        for i in 0..self.slots.len() {
            let due = self.slots[i]
                .conn
                .as_ref()
                .and_then(Connection::poll_timeout)
                .is_some_and(|c| c <= now);
            if due {
                if let Some(conn) = self.slots[i].conn.as_mut() {
                    conn.handle_timeout(now);
                }
                self.drain_client(i);
            }
        }
        Ok(())
    }

    /// Send `what` over client `i`'s link (`up`: toward the gateway), in order per direction.
    fn carry(&mut self, i: usize, up: bool, what: Delivery) {
        self.net.carry(Some(&mut self.slots[i].lanes), up, what);
    }

    fn dial_slot(&mut self, i: usize, fresh: bool) {
        let now = self.net.now();
        if fresh {
            if let Some(conn) = self.slots[i].conn.as_mut() {
                conn.close(now);
            }
            self.drain_client(i);
            let config = self.slots[i].config.clone();
            self.slots[i].conn = Some(Connection::new(config, now));
        }
        let slot = &mut self.slots[i];
        slot.generation += 1;
        slot.established = false;
        slot.gw_conn = None;
        slot.taps = LinkTaps::new();
        let generation = slot.generation;
        self.log(format_args!("{} dial", Self::name(i)));
        self.carry(
            i,
            true,
            Delivery::Syn {
                client: i,
                generation,
            },
        );
    }

    fn current(&self, i: usize, generation: u64) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.generation == generation)
    }

    fn deliver(&mut self, what: Delivery) {
        let now = self.net.now();
        match what {
            Delivery::Syn { client, generation } => {
                if !self.current(client, generation) {
                    return;
                }
                if self.gateway.is_refusing(now) {
                    self.log(format_args!("G refuses {}", Self::name(client)));
                    self.carry(client, false, Delivery::Refused { client, generation });
                    return;
                }
                let conn = self.gateway.accept(now);
                self.slots[client].gw_conn = Some(conn);
                self.log(format_args!("G accepts {} as {conn}", Self::name(client)));
                self.carry(client, false, Delivery::SynAck { client, generation });
                self.drain_gateway();
            }
            Delivery::SynAck { client, generation } => {
                if self.current(client, generation) {
                    self.slots[client].established = true;
                    self.drain_client(client);
                }
            }
            Delivery::Refused { client, generation } => {
                if !self.current(client, generation) {
                    return;
                }
                if let Some(conn) = self.slots[client].conn.as_mut() {
                    conn.handle_eof(now, Some("connection refused".into()));
                }
                self.drain_client(client);
            }
            Delivery::ToGateway {
                client,
                conn,
                bytes,
            } => {
                self.trace.absorb(b"up");
                self.trace.absorb(&bytes);
                self.tap(client, true, &bytes);
                self.gateway.handle_input(conn, now, &bytes);
                self.drain_gateway();
            }
            Delivery::ToClient {
                client,
                generation,
                bytes,
            } => {
                if !self.current(client, generation) {
                    return;
                }
                self.trace.absorb(b"down");
                self.trace.absorb(&bytes);
                self.tap(client, false, &bytes);
                if let Some(c) = self.slots[client].conn.as_mut() {
                    c.handle_input(now, &bytes);
                }
                self.drain_client(client);
            }
            Delivery::FinToGateway { client, conn } => {
                self.log(format_args!("{}→G close", Self::name(client)));
                self.gateway.handle_eof(conn, now);
                self.drain_gateway();
            }
            Delivery::FinToClient { client, generation } => {
                if !self.current(client, generation) {
                    return;
                }
                self.log(format_args!("G→{} close", Self::name(client)));
                if let Some(c) = self.slots[client].conn.as_mut() {
                    c.handle_eof(now, None);
                }
                self.drain_client(client);
            }
        }
    }

    /// Move every gateway output into deliveries.
    fn drain_gateway(&mut self) {
        for i in 0..self.slots.len() {
            let Some(conn) = self.slots[i].gw_conn else {
                continue;
            };
            let generation = self.slots[i].generation;
            while let Some(bytes) = self.gateway.poll_transmit(conn) {
                self.carry(
                    i,
                    false,
                    Delivery::ToClient {
                        client: i,
                        generation,
                        bytes,
                    },
                );
            }
            if self.gateway.poll_close(conn) {
                self.slots[i].gw_conn = None;
                self.carry(
                    i,
                    false,
                    Delivery::FinToClient {
                        client: i,
                        generation,
                    },
                );
            }
        }
    }

    /// Move a client's output into deliveries and record its events.
    fn drain_client(&mut self, i: usize) {
        let Some(mut conn) = self.slots[i].conn.take() else {
            return;
        };
        if self.slots[i].established {
            while let Some(bytes) = conn.poll_transmit() {
                if let Some(gw) = self.slots[i].gw_conn {
                    self.carry(
                        i,
                        true,
                        Delivery::ToGateway {
                            client: i,
                            conn: gw,
                            bytes,
                        },
                    );
                }
            }
        }
        while let Some(event) = conn.poll_event() {
            self.log(format_args!("{} {}", Self::name(i), describe_event(&event)));
            if matches!(event, Event::Disconnected { .. }) {
                self.slots[i].established = false;
                if let Some(gw) = self.slots[i].gw_conn.take() {
                    self.carry(
                        i,
                        true,
                        Delivery::FinToGateway {
                            client: i,
                            conn: gw,
                        },
                    );
                }
            }
            let t = self.net.elapsed();
            self.slots[i].events.push((t, event));
        }
        self.slots[i].conn = Some(conn);
    }

    /// Decode one direction for the trace.
    fn tap(&mut self, i: usize, up: bool, bytes: &[u8]) {
        let who = Self::name(i);
        for text in self.slots[i].taps.frames(up, bytes) {
            if up {
                self.log(format_args!("{who}→G {text}"));
            } else {
                self.log(format_args!("G→{who} {text}"));
            }
        }
    }
}

fn describe_event(e: &Event) -> String {
    match e {
        Event::Connected { server_version, .. } => format!("Connected v{server_version}"),
        Event::Completed { id, result } => match result {
            Ok(Answer::Bars { bars, .. }) => format!("Completed #{} {} bars", id.0, bars.len()),
            Ok(Answer::HeadTimestamp(t)) => format!("Completed #{} head {t}", id.0),
            Ok(Answer::CurrentTime(t)) => format!("Completed #{} time {t}", id.0),
            Ok(Answer::ContractDetails(d)) => format!("Completed #{} {} details", id.0, d.len()),
            Ok(other) => format!("Completed #{} {other:?}", id.0),
            Err(err) => format!("Failed #{} {err}", id.0),
        },
        Event::Stream { id, .. } => format!("Stream #{}", id.0),
        Event::Notice { code, message, .. } => format!("Notice {code} {message}"),
        Event::Connectivity(c) => format!("Connectivity {c:?}"),
        Event::Resubscribe => "Resubscribe".to_owned(),
        Event::RateLimited => "RateLimited".to_owned(),
        Event::Disconnected { reason } => format!("Disconnected: {reason}"),
        other => format!("{other:?}"),
    }
}
