//! Pool behaviour in virtual time against scripted gateways built from the codec's server side.
//! (Half-open sockets, 1100/1101 and sleep are covered here because the TCP sim cannot fake them
//! yet.)
//!
//! This file is the harness (a registry the test can inspect, scripted gateways, a virtual-time
//! world); the scenarios live in the child modules, one per concern of the pool.

// One arbitrary origin per test; every later instant is derived from it (virtual time).
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use super::*;
use crate::breaker::BreakerConfig;
use crate::client_id::{Holder, RegistryConfig, RegistryState};
use crate::connection::{Answer, Config, ConnectionError, VersionPolicy};
use crate::message::{BarTime, Contract, ErrorMessage, Request, Response};
use crate::query::{EndTime, HistoricalQuery};
use crate::what_to_show::WhatToShow;
use crate::wire::{ClientHello, FrameDecoder, ServerHello, VersionRange};

mod client_ids;
mod leases;
mod requests;
mod slots;
mod streams;
mod version_fallback;

/// std's channels as a runtime's: replies on `SyncSender`s of capacity 1.
pub(super) struct Std;

impl Channels for Std {
    type Reply<T> = std::sync::mpsc::SyncSender<T>;
    type Notices = std::sync::mpsc::SyncSender<PoolNotice>;

    fn reply<T>(tx: Self::Reply<T>, value: T) -> bool {
        tx.try_send(value).is_ok()
    }

    fn offer(tx: &Self::Notices, notice: PoolNotice) -> Offer {
        match tx.try_send(notice) {
            Ok(()) => Offer::Sent,
            Err(std::sync::mpsc::TrySendError::Full(_)) => Offer::Full,
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Offer::Closed,
        }
    }

    type Items = StdItems;

    fn push(tx: &StdItems, item: crate::stream::StreamItem) -> Offer {
        let mut q = tx.lock().unwrap();
        match q.0.push(item) {
            crate::stream::Push::Overflow => {
                let queued = q.0.len();
                q.1 = Some(Some(CallError::ConsumerTooSlow { queued }.into()));
                Offer::Full
            }
            _ => Offer::Sent,
        }
    }

    fn close(tx: StdItems, error: Option<PoolError>) {
        tx.lock().unwrap().1 = Some(error);
    }
}

/// A stream's queue for tests: the buffer, and how it ended once it has.
pub(super) type StdItems = Arc<Mutex<(crate::stream::StreamBuffer, Option<Option<PoolError>>)>>;

/// A registry the test can inspect after handing it to the pool.
#[derive(Debug, Clone)]
struct Shared(Arc<Mutex<MemoryRegistry>>);

impl Shared {
    fn state(&self) -> RegistryState {
        self.0.lock().unwrap().state().clone()
    }

    /// Another process (pid 2) leases the lowest free id of `purpose` at `now` (an id whose
    /// lease lapsed counts as free).
    fn take(&self, purpose: &Purpose, now: UnixMillis) -> Option<i32> {
        let mut r = self.0.lock().unwrap();
        let config = r.config().clone();
        let grant = r
            .state_mut()
            .allocate(&config, purpose, &OTHER, now, &crate::client_id::ttl_only)
            .ok()?;
        Some(grant.id)
    }

    /// Who holds `id`'s lease, and whether it is live at `now`.
    fn holder(&self, id: i32, now: UnixMillis) -> Option<(u32, bool)> {
        let state = self.state();
        let lease = state.leases.get(&id)?;
        Some((lease.holder.pid, !lease.is_expired(now)))
    }
}

/// The pool's registry holder in these tests.
const ME: Holder = Holder::from_pid(1);
/// Another process on the host.
const OTHER: Holder = Holder::from_pid(2);
/// Wall time at the tests' origin.
const WALL0: UnixMillis = UnixMillis(1_767_225_600_000);

impl IdRegistry for Shared {
    fn allocate(&mut self, p: &Purpose, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        self.0.lock().unwrap().allocate(p, now)
    }
    fn on_client_id_in_use(
        &mut self,
        g: &Grant,
        n: u32,
        now: UnixMillis,
    ) -> Result<Grant, IdRegistryError> {
        self.0.lock().unwrap().on_client_id_in_use(g, n, now)
    }
    fn heartbeat(&mut self, g: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        self.0.lock().unwrap().heartbeat(g, now)
    }
    fn reacquire(&mut self, g: &Grant, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        self.0.lock().unwrap().reacquire(g, now)
    }
    fn release(&mut self, g: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        self.0.lock().unwrap().release(g, now)
    }
}

/// The gateway end of one socket.
struct Peer {
    addr: String,
    decoder: FrameDecoder,
    hello: bool,
    /// The version this session negotiated.
    version: i32,
    client_id: i32,
    got: Vec<Request>,
}

/// Pool + scripted gateways + virtual clock.
struct World {
    pool: Pool,
    registry: Shared,
    origin: Instant,
    now: Instant,
    peers: BTreeMap<SocketId, Peer>,
    dials: Vec<(SocketId, String, i32)>,
    /// Every client id dialed, in order.
    dialed: Vec<i32>,
    closed: BTreeSet<SocketId>,
    events: Vec<PoolEvent>,
    /// Ids a foreign session holds (326).
    taken: BTreeSet<i32>,
    /// Gateways refusing connections.
    down: BTreeSet<String>,
    /// Gateways that answer nothing after the handshake (half-open).
    mute: BTreeSet<String>,
    /// Highest server version per gateway (default [`V`]). A hello whose minimum is above it gets
    /// it anyway (as the simulator and, reportedly, TWS answer), unless the gateway is in
    /// `closes_on_newer`.
    max_version: BTreeMap<String, i32>,
    /// Old gateways that close the socket, without a hello, on an offer above their version.
    closes_on_newer: BTreeSet<String>,
    /// Old gateways that say nothing at all on an offer above their version.
    silent_on_newer: BTreeSet<String>,
    /// Every hello received: gateway and offer.
    hellos: Vec<(String, VersionRange)>,
}

const V: i32 = 226;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn config(gateways: &[&str]) -> PoolConfig {
    let mut cfg = PoolConfig {
        gateways: gateways.iter().map(|g| (*g).to_owned()).collect(),
        backoff: crate::backoff::BackoffConfig {
            base: Duration::from_millis(200),
            factor: 2,
            cap: SECS(5),
            max_attempts: None,
        },
        breaker: BreakerConfig {
            failure_threshold: 1,
            open_for: SECS(10),
            half_open_probes_max: 1,
            success_threshold: 1,
        },
        acquire_timeout: SECS(5),
        ..PoolConfig::default()
    };
    cfg.purposes.insert(
        Purpose::Backfill,
        PurposeConfig {
            max_connections: 2,
            sharing: Sharing::Exclusive,
        },
    );
    cfg
}

impl World {
    fn new(cfg: PoolConfig) -> Self {
        Self::with_ids(cfg, RegistryConfig::default())
    }

    fn with_ids(cfg: PoolConfig, ids: RegistryConfig) -> Self {
        let now = Instant::now();
        let registry = Shared(Arc::new(Mutex::new(MemoryRegistry::new(ids, ME))));
        Self {
            pool: Pool::new(cfg, Box::new(registry.clone()), now, WALL0),
            registry,
            origin: now,
            now,
            peers: BTreeMap::new(),
            dials: Vec::new(),
            dialed: Vec::new(),
            closed: BTreeSet::new(),
            events: Vec::new(),
            taken: BTreeSet::new(),
            down: BTreeSet::new(),
            mute: BTreeSet::new(),
            max_version: BTreeMap::new(),
            closes_on_newer: BTreeSet::new(),
            silent_on_newer: BTreeSet::new(),
            hellos: Vec::new(),
        }
    }

    /// The offers gateway `addr` received, in order.
    fn offers(&self, addr: &str) -> Vec<VersionRange> {
        self.hellos
            .iter()
            .filter(|(a, _)| a == addr)
            .map(|(_, r)| *r)
            .collect()
    }

    /// Run the I/O until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            while let Some(io) = self.pool.poll_io() {
                moved = true;
                match io {
                    Io::Dial {
                        socket,
                        addr,
                        client_id,
                    } => {
                        self.dialed.push(client_id);
                        self.dials.push((socket, addr, client_id));
                    }
                    Io::Write { socket, bytes } => {
                        if let Some(p) = self.peers.get_mut(&socket) {
                            p.decoder.push(&bytes);
                        }
                    }
                    Io::Close { socket } => {
                        self.closed.insert(socket);
                        self.peers.remove(&socket);
                    }
                }
            }
            self.events
                .extend(std::iter::from_fn(|| self.pool.poll_event()));
            for (socket, addr, _) in std::mem::take(&mut self.dials) {
                moved = true;
                if self.down.contains(&addr) {
                    self.pool
                        .handle_dial_failed(self.now, socket, "refused".into());
                } else {
                    self.peers.insert(
                        socket,
                        Peer {
                            addr,
                            decoder: FrameDecoder::server(),
                            hello: false,
                            version: 0,
                            client_id: 0,
                            got: Vec::new(),
                        },
                    );
                    self.pool.handle_dialed(self.now, socket);
                }
            }
            let sockets: Vec<SocketId> = self.peers.keys().copied().collect();
            for s in sockets {
                moved |= self.serve(s);
            }
            if !moved {
                return;
            }
        }
    }

    /// Answer what one peer received; true if it answered anything.
    fn serve(&mut self, socket: SocketId) -> bool {
        let Some(peer) = self.peers.get_mut(&socket) else {
            return false;
        };
        let mut out = BytesMut::new();
        while let Some(body) = peer.decoder.next_frame().unwrap() {
            if !peer.hello {
                let offer = ClientHello::decode(&body).unwrap().versions;
                self.hellos.push((peer.addr.clone(), offer));
                let max = self.max_version.get(&peer.addr).copied().unwrap_or(V);
                if offer.min > max && self.closes_on_newer.contains(&peer.addr) {
                    self.peers.remove(&socket);
                    self.pool.handle_eof(self.now, socket, None);
                    return true;
                }
                if offer.min > max && self.silent_on_newer.contains(&peer.addr) {
                    // No hello; what follows (START_API in protobuf) it cannot read either.
                    peer.hello = true;
                    peer.version = max;
                    continue;
                }
                peer.hello = true;
                peer.version = offer.max.min(max);
                ServerHello {
                    server_version: peer.version,
                    connection_time: "20260101 12:00:00 America/New_York".into(),
                }
                .encode(&mut out)
                .unwrap();
                continue;
            }
            if unreadable_at(&body, peer.version) {
                // START_API sent with a modern hello, in protobuf: an old gateway cannot read it.
                continue;
            }
            let req = Request::decode_payload(body, peer.version).unwrap();
            let mute = self.mute.contains(&peer.addr);
            let reply = match &req {
                Request::StartApi { client_id, .. } if self.taken.contains(client_id) => {
                    vec![err(-1, 326, "client id is already in use")]
                }
                Request::StartApi { client_id, .. } => {
                    peer.client_id = *client_id;
                    vec![
                        Response::ManagedAccounts {
                            accounts: "DU1,".into(),
                        },
                        Response::NextValidId { order_id: 1 },
                    ]
                }
                Request::ReqCurrentTime if !mute => vec![Response::CurrentTime {
                    time: 1_767_225_600,
                }],
                _ => vec![],
            };
            for r in reply {
                r.encode(peer.version, &mut out).unwrap();
            }
            peer.got.push(req);
        }
        if out.is_empty() {
            return false;
        }
        self.pool.handle_input(self.now, socket, &out);
        true
    }

    /// Advance virtual time by `d`, firing every timer on the way.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.pool.poll_timeout().filter(|t| *t <= target) {
            self.now = self.now.max(t);
            self.pool.handle_timeout(self.now);
            self.settle();
        }
        self.now = target;
        self.pool.handle_timeout(self.now);
        self.settle();
    }

    fn acquire(&mut self, purpose: Purpose) -> AcquireId {
        let id = self.pool.acquire(self.now, purpose, None);
        self.settle();
        id
    }

    fn acquired(&self, id: AcquireId) -> Option<(LeaseId, i32, usize)> {
        self.events.iter().find_map(|e| match e {
            PoolEvent::Acquired {
                acquire,
                lease,
                client_id,
                gateway,
            } if *acquire == id => Some((*lease, *client_id, *gateway)),
            _ => None,
        })
    }

    fn lease(&mut self, purpose: Purpose) -> (LeaseId, i32) {
        let id = self.acquire(purpose);
        let Some((lease, client_id, _)) = self.acquired(id) else {
            panic!("not granted: {:?}", self.events)
        };
        (lease, client_id)
    }

    fn completed(&self, ticket: Ticket) -> Option<&Result<Answer, CallError>> {
        self.events.iter().find_map(|e| match e {
            PoolEvent::Completed { ticket: t, result } if *t == ticket => Some(result),
            _ => None,
        })
    }

    fn send(&mut self, lease: LeaseId, q: Query) -> Ticket {
        let t = self.pool.send(self.now, lease, q, None).unwrap();
        self.settle();
        t
    }

    fn socket_of(&self, client_id: i32) -> SocketId {
        *self
            .peers
            .iter()
            .find(|(_, p)| p.client_id == client_id)
            .unwrap()
            .0
    }

    /// The gateway side drops every socket.
    fn drop_all(&mut self) {
        let sockets: Vec<SocketId> = self.peers.keys().copied().collect();
        for s in sockets {
            self.peers.remove(&s);
            self.pool.handle_eof(self.now, s, None);
        }
        self.settle();
    }

    /// The host oversleeps the registry's lease TTL (60 s) by `how`, `during` runs meanwhile
    /// (other processes act), then the pool notices.
    fn oversleep(&mut self, how: Oversleep, during: impl FnOnce(&mut Self, UnixMillis)) {
        let gap = SECS(120);
        match how {
            Oversleep::Stall => {
                // The process stood still (SIGSTOP, a stalled runtime): every clock moved on and
                // no timer fired; the pool hears of it at its next timeout.
                let wall = WALL0.plus(self.now + gap - self.origin);
                during(self, wall);
                self.now += gap;
                self.pool.handle_timeout(self.now);
            }
            Oversleep::Suspend => {
                // The host suspended: the monotonic clock stopped, boot time and wall time did not.
                let since = self.now - self.origin;
                self.pool.observe_clocks(self.now, since, WALL0.plus(since));
                let wall = WALL0.plus(since + gap);
                during(self, wall);
                self.pool.observe_clocks(self.now, since + gap, wall);
            }
        }
        self.settle();
    }

    /// Gateway pushes a message to one session.
    fn push(&mut self, client_id: i32, msg: Response) {
        let s = self.socket_of(client_id);
        let mut out = BytesMut::new();
        msg.encode(V, &mut out).unwrap();
        self.pool.handle_input(self.now, s, &out);
        self.settle();
    }
}

/// How the host outlives its registry leases in [`World::oversleep`].
#[derive(Debug, Clone, Copy)]
enum Oversleep {
    Stall,
    Suspend,
}

/// Whether a request frame is protobuf (a binary id above 200; text ids start with an ASCII
/// digit) sent to a gateway older than the protobuf START_API (213).
fn unreadable_at(body: &[u8], version: i32) -> bool {
    match body {
        [0, a, b, c, ..] => version < 213 && u32::from_be_bytes([0, *a, *b, *c]) > 200,
        _ => false,
    }
}

fn err(req_id: i32, code: i32, message: &str) -> Response {
    Response::Error(ErrorMessage {
        req_id,
        code,
        message: message.into(),
        ..ErrorMessage::default()
    })
}

/// Half an hour of AAPL 5-second bars ending at `end` (Unix seconds).
fn small_bars(end: i64) -> HistoricalQuery {
    HistoricalQuery {
        use_rth: true,
        ..HistoricalQuery::new(
            Contract::stock("AAPL"),
            EndTime::At(end),
            "1800 S".parse().unwrap(),
            crate::bar_size::BarSize::Sec5,
            WhatToShow::Trades,
        )
    }
}
