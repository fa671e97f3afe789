//! Pool behaviour in virtual time against scripted gateways built from the codec's server side.
//! (Half-open sockets, 1100/1101 and sleep are covered here because the TCP sim cannot fake them
//! yet.)

// One arbitrary origin per test; every later instant is derived from it (virtual time).
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use super::*;
use crate::breaker::BreakerConfig;
use crate::client_id::{Holder, RegistryConfig, RegistryState};
use crate::message::{BarTime, ErrorMessage, HistoricalDataRequest, Request, Response};
use crate::wire::{ClientHello, FrameDecoder, ServerHello, VersionRange};

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

fn small_bars(end: &str) -> HistoricalDataRequest {
    HistoricalDataRequest {
        contract: Contract::stock("AAPL"),
        end_date_time: end.into(),
        bar_size: "5 secs".into(),
        duration: "1800 S".into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        ..HistoricalDataRequest::default()
    }
}

#[test]
fn acquire_release_reuse() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    assert_eq!(id, 2000);
    let t = w.send(lease, Query::CurrentTime);
    assert_eq!(
        w.completed(t),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    w.pool.release(w.now, lease);
    w.settle();
    let (_, again) = w.lease(Purpose::Backfill);
    assert_eq!(again, 2000, "the idle connection is reused");
    assert_eq!(w.pool.stats(w.now).established, 1);
    assert_eq!(w.registry.state().leases.len(), 1);
}

#[test]
fn caps_fifo_and_typed_acquire_timeout() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (a, _) = w.lease(Purpose::Backfill);
    let (_b, _) = w.lease(Purpose::Backfill);
    let third = w.acquire(Purpose::Backfill);
    let fourth = w.acquire(Purpose::Backfill);
    assert_eq!(w.peers.len(), 2, "capped at two connections");
    assert!(w.acquired(third).is_none());
    w.advance(SECS(1));
    w.pool.release(w.now, a);
    w.settle();
    assert!(
        w.acquired(third).is_some(),
        "FIFO: the first waiter gets it"
    );
    assert!(w.acquired(fourth).is_none());
    w.advance(SECS(5));
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::AcquireFailed { acquire, error: AcquireError::Timeout { after, .. } }
            if *acquire == fourth && *after == SECS(5))));
    assert_eq!(w.pool.stats(w.now).acquire_timeouts, 1);
}

#[test]
fn shared_connections_admit_max_in_flight_leases() {
    let mut cfg = config(&["gw1:4002"]);
    cfg.purposes.insert(
        Purpose::Api,
        PurposeConfig {
            max_connections: 1,
            sharing: Sharing::Shared { max_in_flight: 3 },
        },
    );
    let mut w = World::new(cfg);
    let ids: Vec<i32> = (0..3).map(|_| w.lease(Purpose::Api).1).collect();
    assert_eq!(ids, [1000, 1000, 1000]);
    let fourth = w.acquire(Purpose::Api);
    assert!(w.acquired(fourth).is_none());
    assert_eq!(w.peers.len(), 1);
}

#[test]
fn single_session_shares_one_connection_with_its_fixed_id() {
    let (cfg, ids) = PoolConfig::single_session("gw1:4002", 42, Config::new(0));
    let purpose = PoolConfig::single_session_purpose();
    let mut w = World::with_ids(cfg.clone(), ids.clone());
    let got: Vec<i32> = (0..3).map(|_| w.lease(purpose.clone()).1).collect();
    assert_eq!(got, [42, 42, 42]);
    assert_eq!(w.peers.len(), 1);
    // The id is the user's: a 326 fails the acquire instead of moving on.
    let mut w = World::with_ids(cfg, ids);
    w.taken.insert(42);
    let acquire = w.acquire(purpose);
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::AcquireFailed { acquire: a, error: AcquireError::ClientId(_) } if *a == acquire)));
}

#[test]
fn client_id_in_use_moves_to_the_next_id_and_marks_it_foreign() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.taken.insert(2000);
    let (_, id) = w.lease(Purpose::Backfill);
    assert_eq!(id, 2001);
    let state = w.registry.state();
    assert!(state.foreign.contains_key(&2000));
    assert!(state.leases.contains_key(&2001) && !state.leases.contains_key(&2000));
    assert_eq!(w.pool.stats(w.now).client_id_conflicts, 1);
    // The foreign id is avoided by the next connection too.
    let (_, second) = w.lease(Purpose::Backfill);
    assert_eq!(second, 2002);
}

#[test]
fn gateway_restart_redials_with_backoff_and_retries_the_request() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.mute.insert("gw1:4002".into());
    let (lease, id) = w.lease(Purpose::Backfill);
    let t = w.send(lease, Query::CurrentTime);
    w.mute.clear();
    w.drop_all();
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Disconnected { client_id, reason: ConnectionError::PeerClosed } if *client_id == id)));
    assert!(
        w.completed(t).is_none(),
        "the request waits for the next session"
    );
    assert!(w.peers.is_empty(), "no redial before the backoff");
    // A caller arriving while reconnecting waits for Ready instead of failing.
    let other = w.acquire(Purpose::Backfill);
    w.advance(SECS(1));
    assert_eq!(
        w.completed(t),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    assert!(w.acquired(other).is_some());
    let stats = w.pool.stats(w.now);
    assert_eq!((stats.reconnects, stats.requests_retried), (1, 1));
}

#[test]
fn failover_to_the_second_gateway_and_back() {
    let mut w = World::new(config(&["gw1:4002", "gw2:4002"]));
    w.down.insert("gw1:4002".into());
    let first = w.acquire(Purpose::Backfill);
    w.advance(SECS(1));
    let (lease, _, gw) = w.acquired(first).expect("served by the second gateway");
    assert_eq!(gw, 1);
    w.pool.release(w.now, lease);
    // The first gateway returns; after its breaker's open period new connections go back to it.
    w.down.clear();
    w.advance(SECS(11));
    let (_busy, _) = w.lease(Purpose::Backfill);
    let back = w.acquire(Purpose::Backfill);
    w.advance(SECS(1));
    assert_eq!(w.acquired(back).map(|a| a.2), Some(0));
    let stats = w.pool.stats(w.now);
    assert_eq!(stats.gateways[0].failed, 1);
    assert!(serde_json::to_string(&stats)
        .unwrap()
        .contains("handshake_latency"));
}

#[test]
fn half_open_socket_is_detected_by_the_probe_and_redialed() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (_lease, id) = w.lease(Purpose::Backfill);
    w.mute.insert("gw1:4002".into());
    // probe_idle 30 s + probe_timeout 10 s.
    w.advance(SECS(41));
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Disconnected { client_id, reason: ConnectionError::ProbeTimeout(_) } if *client_id == id)));
    w.mute.clear();
    w.advance(SECS(1));
    assert_eq!(
        w.pool.stats(w.now).established,
        2,
        "redialed with the same id"
    );
    assert_eq!(w.socket_of(id), *w.peers.keys().next().unwrap());
}

#[test]
fn lost_link_then_data_lost_emits_resubscribe_for_the_leases() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    w.push(
        id,
        err(-1, 1100, "Connectivity between IB and TWS has been lost."),
    );
    w.push(
        id,
        err(
            -1,
            1101,
            "Connectivity between IB and TWS has been restored- data lost.",
        ),
    );
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Resubscribe { client_id, leases } if *client_id == id && leases == &vec![lease])));
}

#[test]
fn sleep_detected_redials() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (_lease, id) = w.lease(Purpose::Backfill);
    let wall = UnixMillis(1_767_225_600_000);
    w.pool.observe_clocks(w.now, SECS(100), wall);
    w.advance(SECS(1));
    w.pool
        .observe_clocks(w.now, SECS(200), wall.plus(SECS(100)));
    w.settle();
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Disconnected { client_id, reason: ConnectionError::SleepDetected(_) } if *client_id == id)));
    w.advance(SECS(1));
    assert_eq!(w.pool.stats(w.now).established, 2);
}

#[test]
fn pacing_delays_identical_requests_and_retries_after_a_violation() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    let first = w.send(
        lease,
        Query::HistoricalData(small_bars("20251231-21:00:00")),
    );
    let second = w.send(
        lease,
        Query::HistoricalData(small_bars("20251231-21:00:00")),
    );
    let until = w.events.iter().find_map(|e| match e {
        PoolEvent::RequestDelayed { ticket, until } if *ticket == second => Some(*until),
        _ => None,
    });
    assert_eq!(
        until,
        Some(w.now + SECS(15) + PACING_MARGIN),
        "identical request waits 15 s plus the default margin"
    );
    assert!(w
        .events
        .iter()
        .all(|e| !matches!(e, PoolEvent::RequestDelayed { ticket, .. } if *ticket == first)));
    // IB answers the first with a pacing violation: the pacer pauses and the request is retried.
    let req_id = match w.peers.values().next().unwrap().got.last() {
        Some(Request::ReqHistoricalData(r)) => r.req_id,
        other => panic!("{other:?}"),
    };
    w.push(
        id,
        err(
            req_id,
            162,
            "Historical Market Data Service error message:Historical data request pacing violation",
        ),
    );
    assert!(w.completed(first).is_none());
    let stats = w.pool.stats(w.now);
    assert_eq!(
        (stats.pacing_violations, stats.pacing_waits),
        (1, 2),
        "the retry waits out the pause"
    );
    assert_eq!(stats.errors_by_class.get("Pacing"), Some(&1));
    w.advance(SECS(20));
    let sent = w
        .peers
        .values()
        .next()
        .unwrap()
        .got
        .iter()
        .filter(|r| matches!(r, Request::ReqHistoricalData(_)))
        .count();
    assert!(sent >= 2, "retried / delayed requests went out: {sent}");
}

#[test]
fn idle_connections_expire_and_release_their_id() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, _) = w.lease(Purpose::Backfill);
    w.pool.release(w.now, lease);
    w.advance(SECS(301));
    assert!(w.peers.is_empty());
    assert!(w.registry.state().leases.is_empty());
}

#[test]
fn shutdown_releases_every_lease_and_closes_every_socket() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (a, _) = w.lease(Purpose::Backfill);
    let _ = w.lease(Purpose::Backfill);
    let waiting = w.acquire(Purpose::Backfill);
    w.mute.insert("gw1:4002".into());
    let t = w.send(a, Query::CurrentTime);
    w.pool.shutdown(w.now);
    w.settle();
    assert!(w.peers.is_empty() && w.closed.len() == 2);
    assert!(w.registry.state().leases.is_empty());
    assert!(matches!(w.completed(t), Some(Err(_))));
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::AcquireFailed { acquire, error: AcquireError::ShuttingDown } if *acquire == waiting)));
    assert_eq!(w.events.last(), Some(&PoolEvent::ShutDown));
    assert_eq!(w.pool.poll_timeout(), None);
    let _ = BarTime::Epoch(0);
}

#[test]
fn a_lapsed_lease_is_taken_again_and_the_session_kept() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    let socket = w.socket_of(id);
    let before = w.registry.state().leases[&id].generation;
    w.oversleep(Oversleep::Stall, |_, _| {});
    let wall = WALL0.plus(w.now - w.origin);
    assert_eq!(
        w.registry.holder(id, wall),
        Some((1, true)),
        "the lapsed lease is live again"
    );
    assert_ne!(w.registry.state().leases[&id].generation, before);
    assert_eq!(w.pool.lease_client_id(lease), Some(id));
    assert_eq!(w.socket_of(id), socket, "the same session carries on");
    assert!(!w.closed.contains(&socket));
    let t = w.send(lease, Query::CurrentTime);
    // (The connection's own probe just asked for the time: IB allows one a second.)
    w.advance(SECS(2));
    assert_eq!(
        w.completed(t),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    assert_eq!(w.pool.stats(w.now).established, 1);
    assert!(!w.events.iter().any(|e| matches!(
        e,
        PoolEvent::Disconnected { .. } | PoolEvent::LeaseLost { .. }
    )));
    // And it stays renewed: the regular heartbeats hold it from here on.
    w.advance(SECS(200));
    let wall = WALL0.plus(w.now - w.origin);
    assert_eq!(w.registry.holder(id, wall), Some((1, true)));
}

#[test]
fn a_suspend_past_the_lease_ttl_renews_before_the_redial() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    w.oversleep(Oversleep::Suspend, |_, _| {});
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Disconnected { client_id, reason: ConnectionError::SleepDetected(_) } if *client_id == id)));
    // A second connection wanted right after waking must not get the first one's id.
    let other = w.acquire(Purpose::Backfill);
    w.advance(SECS(6));
    let (_, second, _) = w.acquired(other).expect("a second connection");
    assert_ne!(second, id);
    assert_eq!(
        w.pool.lease_client_id(lease),
        Some(id),
        "redialed with its own id"
    );
    let wall = WALL0.plus(w.now - w.origin);
    assert_eq!(w.registry.holder(id, wall), Some((1, true)));
    assert_eq!(w.registry.holder(second, wall), Some((1, true)));
    assert_eq!(w.pool.stats(w.now).client_id_conflicts, 0);
}

#[test]
fn a_lapsed_id_taken_by_another_process_moves_the_connection_to_a_fresh_id() {
    for how in [Oversleep::Stall, Oversleep::Suspend] {
        let mut w = World::new(config(&["gw1:4002"]));
        let (lease, id) = w.lease(Purpose::Backfill);
        assert_eq!(id, 2000);
        let socket = w.socket_of(id);
        // A request in flight when the host stops (the gateway has it, no answer yet).
        w.mute.insert("gw1:4002".into());
        let t = w
            .pool
            .send(w.now, lease, Query::CurrentTime, Some(SECS(600)))
            .unwrap();
        w.settle();
        w.mute.clear();
        w.oversleep(how, |w, wall| {
            // Meanwhile another process leases the lapsed id and connects with it.
            assert_eq!(w.registry.take(&Purpose::Backfill, wall), Some(id));
            w.taken.insert(id);
        });
        // The pool let go of the id at once: its session on it is closed, and no session of the
        // pool uses an id another process holds.
        assert!(w.closed.contains(&socket), "{how:?}");
        assert!(
            w.peers.values().all(|p| p.client_id != id),
            "{how:?}: still a session on {id}"
        );
        assert!(w.events.iter().any(|e| matches!(e,
            PoolEvent::Disconnected { client_id, .. } if *client_id == id)));
        let wall = WALL0.plus(w.now - w.origin);
        assert_eq!(w.registry.holder(id, wall), Some((2, true)), "{how:?}");
        let fresh = w.pool.lease_client_id(lease).unwrap();
        assert_eq!(fresh, 2001, "{how:?}");
        assert_eq!(w.registry.holder(fresh, wall), Some((1, true)), "{how:?}");
        assert!(
            w.completed(t).is_none(),
            "{how:?}: the request waits for the redial"
        );
        // The redial uses the fresh id; the request is sent again and answered there.
        w.advance(SECS(6));
        assert_eq!(
            w.completed(t),
            Some(&Ok(Answer::CurrentTime(1_767_225_600))),
            "{how:?}"
        );
        let _ = w.socket_of(fresh);
        assert_eq!(
            w.dialed.iter().filter(|d| **d == id).count(),
            1,
            "{how:?}: {id} dialed again: {:?}",
            w.dialed
        );
        let stats = w.pool.stats(w.now);
        assert_eq!(
            stats.client_id_conflicts, 0,
            "{how:?}: a 326 means an id used twice"
        );
        assert_eq!(stats.leases, 1);
        assert!(!w
            .events
            .iter()
            .any(|e| matches!(e, PoolEvent::LeaseLost { .. })));
        let held: Vec<i32> = w
            .registry
            .state()
            .leases
            .iter()
            .filter(|(_, l)| l.holder == ME)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            held,
            [fresh],
            "{how:?}: the registry holds exactly the pool's ids"
        );
    }
}

#[test]
fn a_fixed_id_taken_by_another_process_loses_the_lease_with_typed_errors() {
    let (cfg, ids) = PoolConfig::single_session("gw1:4002", 42, Config::new(0));
    let purpose = PoolConfig::single_session_purpose();
    let mut w = World::with_ids(cfg, ids);
    let (lease, id) = w.lease(purpose.clone());
    assert_eq!(id, 42);
    w.mute.insert("gw1:4002".into());
    let t = w
        .pool
        .send(w.now, lease, Query::CurrentTime, Some(SECS(600)))
        .unwrap();
    w.settle();
    w.mute.clear();
    w.oversleep(Oversleep::Stall, |w, wall| {
        assert_eq!(w.registry.take(&purpose, wall), Some(42));
    });
    let lost = w.events.iter().find_map(|e| match e {
        PoolEvent::LeaseLost {
            lease: l,
            client_id,
            error: AcquireError::ClientId(_),
        } => Some((*l, *client_id)),
        _ => None,
    });
    assert_eq!(lost, Some((lease, 42)));
    assert_eq!(w.completed(t), Some(&Err(CallError::LeaseLost)));
    assert!(w.peers.is_empty(), "the session on 42 is closed");
    assert_eq!(w.pool.lease_client_id(lease), None);
    assert_eq!(
        w.pool.send(w.now, lease, Query::CurrentTime, None),
        Err(SubmitError::LeaseLost(lease)),
        "a call on a lost lease says so"
    );
    w.pool.release(w.now, lease);
    assert_eq!(
        w.pool.send(w.now, lease, Query::CurrentTime, None),
        Err(SubmitError::UnknownLease(lease)),
        "once released, the lease is forgotten"
    );
    assert!(w.events.iter().any(|e| matches!(
        PoolNotice::from_event(e),
        Some(PoolNotice::LeaseLost { client_id: 42, .. })
    )));
    let wall = WALL0.plus(w.now - w.origin);
    assert_eq!(w.registry.holder(42, wall), Some((2, true)));
    assert_eq!(w.pool.stats(w.now).connections.len(), 0);
}

const MODERN: VersionRange = VersionRange::modern();
const WIDE: VersionRange = VersionRange::supported();

#[test]
fn an_old_gateway_gets_the_wide_offer_after_one_immediate_fallback() {
    for (max, closes) in [(176, false), (200, false), (212, false), (176, true)] {
        let what = format!("v{max}, closes on newer: {closes}");
        let mut w = World::new(config(&["gw1:4002"]));
        w.max_version.insert("gw1:4002".into(), max);
        if closes {
            w.closes_on_newer.insert("gw1:4002".into());
        }
        let t0 = w.now;
        let (lease, id) = w.lease(Purpose::Backfill);
        assert_eq!(w.now, t0, "{what}: granted without waiting for a timer");
        assert_eq!(w.offers("gw1:4002"), [MODERN, WIDE], "{what}");
        assert_eq!(w.dialed, [id, id], "{what}: the same client id redialed");
        let t = w.send(lease, Query::CurrentTime);
        assert_eq!(
            w.completed(t),
            Some(&Ok(Answer::CurrentTime(1_767_225_600))),
            "{what}"
        );
        // Not a failure: no failed count, and the breaker (open after one failure here) closed.
        let stats = w.pool.stats(w.now);
        let g = &stats.gateways[0];
        assert_eq!(
            (g.failed, g.version_fallbacks, g.wide_offer, g.established),
            (0, 1, true, 1),
            "{what}"
        );
        assert_eq!(
            (g.breaker.state.as_str(), g.breaker.consecutive_failures),
            ("closed", 0),
            "{what}"
        );
        assert_eq!((stats.failed, stats.reconnects), (0, 0), "{what}");
        assert!(
            !w.events
                .iter()
                .any(|e| matches!(e, PoolEvent::Disconnected { .. })),
            "{what}: the fallback is no session loss"
        );
        // The next connection to this gateway offers the wide range right away; so does a
        // redial of the first.
        let (_, second) = w.lease(Purpose::Backfill);
        assert_ne!(second, id);
        w.drop_all();
        w.advance(SECS(1));
        assert_eq!(
            w.offers("gw1:4002"),
            [MODERN, WIDE, WIDE, WIDE, WIDE],
            "{what}"
        );
        assert_eq!(w.pool.stats(w.now).gateways[0].version_fallbacks, 1);
    }
}

#[test]
fn an_old_gateway_silent_on_the_modern_offer_gets_the_wide_one_after_the_handshake_timeout() {
    let mut cfg = config(&["gw1:4002"]);
    cfg.connection.handshake_timeout = SECS(2);
    let mut w = World::new(cfg);
    w.max_version.insert("gw1:4002".into(), 176);
    w.silent_on_newer.insert("gw1:4002".into());
    let acquire = w.acquire(Purpose::Backfill);
    w.advance(SECS(1));
    assert_eq!(w.offers("gw1:4002"), [MODERN], "still waiting for a hello");
    assert!(w.acquired(acquire).is_none());
    w.advance(SECS(2));
    assert_eq!(
        w.offers("gw1:4002"),
        [MODERN, WIDE],
        "redialed wide at the timeout"
    );
    let (lease, _, _) = w.acquired(acquire).expect("granted on the wide session");
    let t = w.send(lease, Query::CurrentTime);
    assert_eq!(
        w.completed(t),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    let g = &w.pool.stats(w.now).gateways[0];
    assert_eq!(
        (g.failed, g.version_fallbacks, g.wide_offer, g.established),
        (0, 1, true, 1)
    );
}

#[test]
fn a_pinned_range_is_offered_as_is_and_never_falls_back() {
    for (pinned, max) in [(MODERN, 176), (VersionRange::new(100, 178), 226)] {
        let mut cfg = config(&["gw1:4002"]);
        cfg.connection.versions = VersionPolicy::Pinned(pinned);
        let mut w = World::new(cfg);
        w.max_version.insert("gw1:4002".into(), max);
        let acquire = w.acquire(Purpose::Backfill);
        w.advance(SECS(6));
        let g = &w.pool.stats(w.now).gateways[0];
        assert_eq!((g.version_fallbacks, g.wide_offer), (0, false), "{pinned}");
        assert!(
            w.offers("gw1:4002").iter().all(|o| *o == pinned),
            "{pinned}"
        );
        if max >= pinned.min {
            assert!(w.acquired(acquire).is_some(), "{pinned}");
        } else {
            // A gateway below a pinned range is a plain handshake failure: backoff, breaker,
            // and in the end the acquire's typed timeout.
            assert!(g.failed >= 1, "{pinned}: {g:?}");
            assert!(w.events.iter().any(|e| matches!(e,
                PoolEvent::AcquireFailed { acquire: a, error: AcquireError::Timeout { .. } }
                    if *a == acquire)));
        }
    }
}

#[test]
fn an_upgraded_gateway_gets_the_modern_offer_again() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.max_version.insert("gw1:4002".into(), 176);
    let (_lease, _) = w.lease(Purpose::Backfill);
    assert!(w.pool.stats(w.now).gateways[0].wide_offer);
    // The gateway restarts as a newer version: the session's redial (still wide) reports 226.
    w.max_version.insert("gw1:4002".into(), 226);
    w.drop_all();
    w.advance(SECS(1));
    assert_eq!(w.offers("gw1:4002"), [MODERN, WIDE, WIDE]);
    assert!(!w.pool.stats(w.now).gateways[0].wide_offer);
    let (_, _) = w.lease(Purpose::Backfill);
    assert_eq!(w.offers("gw1:4002"), [MODERN, WIDE, WIDE, MODERN]);
    assert_eq!(w.pool.stats(w.now).gateways[0].version_fallbacks, 1);
}

#[test]
fn the_fallback_redial_uses_the_half_open_breakers_admission() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.down.insert("gw1:4002".into());
    let acquire = w.pool.acquire(w.now, Purpose::Backfill, Some(SECS(60)));
    w.settle();
    assert_eq!(
        w.pool.stats(w.now).gateways[0].breaker.state,
        "open",
        "one refused dial opens it here"
    );
    // It comes back as an old gateway; the one probe the half-open breaker admits is the modern
    // offer, and the fallback redial goes through on the same admission.
    w.down.clear();
    w.max_version.insert("gw1:4002".into(), 176);
    w.closes_on_newer.insert("gw1:4002".into());
    w.advance(SECS(11));
    assert!(w.acquired(acquire).is_some(), "{:?}", w.events);
    assert_eq!(w.offers("gw1:4002"), [MODERN, WIDE]);
    let g = &w.pool.stats(w.now).gateways[0];
    assert_eq!((g.failed, g.version_fallbacks), (1, 1), "{g:?}");
    assert_eq!(g.breaker.state, "closed");
}

#[test]
fn a_fallback_whose_wide_dial_fails_counts_one_failure_and_backs_off() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.max_version.insert("gw1:4002".into(), 176);
    w.closes_on_newer.insert("gw1:4002".into());
    // The gateway accepts the first connect, closes it at the modern hello, then refuses.
    w.pool.acquire(w.now, Purpose::Backfill, None);
    let Some(Io::Dial { socket, addr, .. }) = w.pool.poll_io() else {
        panic!("no dial")
    };
    w.peers.insert(
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
    w.pool.handle_dialed(w.now, socket);
    w.down.insert("gw1:4002".into());
    w.settle();
    assert_eq!(w.offers("gw1:4002"), [MODERN]);
    let stats = w.pool.stats(w.now);
    let g = &stats.gateways[0];
    assert_eq!((g.failed, g.version_fallbacks, g.wide_offer), (1, 1, true));
    assert_eq!(g.breaker.state, "open");
    assert_eq!(
        w.dialed.len(),
        1,
        "the wide dial was refused; {:?}",
        w.dialed
    );
}

/// The request id the gateway of session `client_id` last received a historical request under.
fn last_historical_id(w: &World, client_id: i32) -> i32 {
    let peer = &w.peers[&w.socket_of(client_id)];
    match peer
        .got
        .iter()
        .rev()
        .find(|r| matches!(r, Request::ReqHistoricalData(_)))
    {
        Some(Request::ReqHistoricalData(r)) => r.req_id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn duration_max_timeouts_wait_without_panicking_and_still_complete() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (a, _) = w.lease(Purpose::Backfill);
    let (_b, _) = w.lease(Purpose::Backfill);
    // Both connections are leased: this acquire waits, far past the configured 5 s.
    let waiting = w
        .pool
        .acquire(w.now, Purpose::Backfill, Some(Duration::MAX));
    w.settle();
    w.advance(SECS(3600));
    assert!(w
        .events
        .iter()
        .all(|e| !matches!(e, PoolEvent::AcquireFailed { acquire, .. } if *acquire == waiting)));
    w.pool.release(w.now, a);
    w.settle();
    let (lease, id, _) = w
        .acquired(waiting)
        .expect("granted once a connection is free");
    let time = w
        .pool
        .send(w.now, lease, Query::CurrentTime, Some(Duration::MAX))
        .unwrap();
    // (IB's one-second spacing after the last health probe.)
    w.advance(SECS(2));
    assert_eq!(
        w.completed(time),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    // A historical request waits an hour for its answer, then gets it.
    let bars = w
        .pool
        .send(
            w.now,
            lease,
            Query::HistoricalData(small_bars("20251231-21:00:00")),
            Some(Duration::MAX),
        )
        .unwrap();
    w.settle();
    w.advance(SECS(3600));
    assert!(w.completed(bars).is_none());
    let req_id = last_historical_id(&w, id);
    w.push(
        id,
        Response::HistoricalData {
            req_id,
            start: String::new(),
            end: String::new(),
            bars: vec![crate::message::Bar::default()],
        },
    );
    w.push(
        id,
        Response::HistoricalDataEnd {
            req_id,
            start: "s".into(),
            end: "e".into(),
        },
    );
    assert!(
        matches!(w.completed(bars), Some(Ok(Answer::Bars { bars, .. })) if bars.len() == 1),
        "{:?}",
        w.completed(bars)
    );
}

#[test]
fn an_answer_past_the_item_cap_fails_the_call_without_a_retry() {
    let mut cfg = config(&["gw1:4002"]);
    cfg.connection.max_answer_items = 3;
    let mut w = World::new(cfg);
    let (lease, id) = w.lease(Purpose::Backfill);
    let t = w.send(
        lease,
        Query::HistoricalData(small_bars("20251231-21:00:00")),
    );
    let req_id = last_historical_id(&w, id);
    w.push(
        id,
        Response::HistoricalData {
            req_id,
            start: String::new(),
            end: String::new(),
            bars: vec![crate::message::Bar::default(); 4],
        },
    );
    assert_eq!(
        w.completed(t),
        Some(&Err(CallError::Request(RequestError::AnswerTooLarge {
            max: 3
        })))
    );
    assert_eq!(w.pool.stats(w.now).requests_retried, 0);
    assert!(w.peers[&w.socket_of(id)]
        .got
        .contains(&Request::CancelHistoricalData { req_id }));
}
