//! The driver in virtual time against a scripted gateway: the inline acquire, write deadlines,
//! the write-queue bound, closes that wait for queued writes, and the clock cadence.

// One arbitrary origin per test; every later instant is derived from it (virtual time).
#![allow(clippy::disallowed_methods)]

use std::cell::Cell;
use std::sync::mpsc;

use bytes::BytesMut;

use super::*;
use crate::client_id::{Holder, RegistryConfig};
use crate::connection::Query;
use crate::message::{Contract, Request, Response};
use crate::pool::tests::Std;
use crate::pool::{
    LeaseId, MemoryRegistry, PoolConfig, PoolError, PoolNotice, PurposeConfig, Sharing,
};
use crate::wire::{ClientHello, FrameDecoder, ServerHello};

const WALL0: UnixMillis = UnixMillis(1_767_225_600_000);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const V: i32 = 226;

/// A driver, its clock, and the gateway end of its one socket.
struct Rig {
    driver: Driver<Std>,
    now: Instant,
    socket: Option<SocketId>,
    gateway: FrameDecoder,
    /// Requests the gateway received (after the hello).
    got: Vec<Request>,
    closed: Vec<SocketId>,
    dials: usize,
    clock_reads: Cell<usize>,
}

impl Rig {
    fn new() -> Self {
        Self::with_write_queue(WRITE_QUEUE)
    }

    fn with_write_queue(queue: usize) -> Self {
        let now = Instant::now();
        let mut cfg = PoolConfig {
            gateways: vec!["gw:4002".into()],
            ..PoolConfig::default()
        };
        cfg.connection.write_timeout = WRITE_TIMEOUT;
        cfg.purposes.insert(
            Purpose::Api,
            PurposeConfig {
                max_connections: 1,
                sharing: Sharing::Exclusive,
            },
        );
        let registry = MemoryRegistry::new(RegistryConfig::default(), Holder::from_pid(1));
        let pool = Pool::new(cfg, Box::new(registry), now, WALL0);
        Self {
            driver: Driver::new(pool, now).with_write_queue(queue),
            now,
            socket: None,
            gateway: FrameDecoder::server(),
            got: Vec::new(),
            closed: Vec::new(),
            dials: 0,
            clock_reads: Cell::new(0),
        }
    }

    /// Carry out the driver's actions: dials connect at once, closes are recorded.
    fn act(&mut self) {
        while let Some(action) = self.driver.poll_action() {
            match action {
                Action::Dial {
                    socket, keepalive, ..
                } => {
                    assert_eq!(keepalive, Some(Duration::from_secs(30)));
                    self.dials += 1;
                    self.socket = Some(socket);
                    self.gateway = FrameDecoder::server();
                    self.driver.handle_dialed(self.now, socket);
                }
                Action::Close { socket } => {
                    self.closed.push(socket);
                    if self.socket == Some(socket) {
                        self.socket = None;
                    }
                }
            }
        }
    }

    fn socket(&self) -> SocketId {
        self.socket.expect("a connected socket")
    }

    /// The gateway reads everything queued (or only `limit` bytes of the front transmit) and
    /// answers the handshake.
    fn gateway_reads(&mut self, limit: Option<usize>) {
        let socket = self.socket();
        loop {
            let out = self.driver.outgoing(socket);
            if out.is_empty() {
                break;
            }
            let n = limit.map_or(out.len(), |l| l.min(out.len()));
            self.gateway.push(&out[..n]);
            self.driver.handle_written(self.now, socket, n);
            if limit.is_some() {
                break;
            }
        }
        let mut answer = BytesMut::new();
        while let Some(body) = self.gateway.next_frame().unwrap() {
            if ClientHello::decode(&body).is_ok() && self.got.is_empty() {
                ServerHello {
                    server_version: V,
                    connection_time: "20260101 12:00:00 America/New_York".into(),
                }
                .encode(&mut answer)
                .unwrap();
                continue;
            }
            let req = Request::decode_payload(body, V).unwrap();
            if matches!(req, Request::StartApi { .. }) {
                for r in [
                    Response::ManagedAccounts {
                        accounts: "DU1,".into(),
                    },
                    Response::NextValidId { order_id: 1 },
                ] {
                    r.encode(V, &mut answer).unwrap();
                }
            }
            self.got.push(req);
        }
        if !answer.is_empty() {
            self.driver.handle_input(self.now, socket, &answer);
        }
        self.act();
    }

    fn timeout_at(&mut self, at: Instant) {
        self.now = at;
        let reads = &self.clock_reads;
        self.driver.handle_timeout(at, || {
            reads.set(reads.get() + 1);
            (Duration::from_secs(100), WALL0)
        });
        self.act();
    }

    /// Connect inline and return the lease.
    fn connect(&mut self) -> LeaseId {
        self.driver.acquire_inline(self.now, Purpose::Api, None);
        self.act();
        self.gateway_reads(None);
        let (lease, client_id) = self.driver.take_inline().expect("answered").unwrap();
        assert!(client_id > 0);
        assert!(self.driver.take_inline().is_none(), "answered once");
        lease
    }

    fn call(
        &mut self,
        lease: LeaseId,
    ) -> mpsc::Receiver<Result<crate::connection::Answer, PoolError>> {
        let (tx, rx) = mpsc::sync_channel(1);
        let query = Query::ContractDetails(Contract::stock("AAPL"));
        let cmd = Command::Call(lease, Box::new(query), Some(Duration::from_secs(3600)), tx);
        assert!(matches!(
            self.driver.handle_command(self.now, Some(cmd)),
            Flow::Running
        ));
        self.act();
        rx
    }

    fn subscribe(&mut self) -> mpsc::Receiver<PoolNotice> {
        let (tx, rx) = mpsc::sync_channel(64);
        let _ = self
            .driver
            .handle_command(self.now, Some(Command::Subscribe(tx)));
        rx
    }
}

#[test]
fn the_inline_acquire_is_answered_by_the_driver_not_the_router() {
    let mut rig = Rig::new();
    let lease = rig.connect();
    assert_eq!(rig.dials, 1);
    assert!(matches!(rig.got.first(), Some(Request::StartApi { .. })));
    // The lease works like any other: a call goes out on the socket.
    let _answer = rig.call(lease);
    assert!(!rig.driver.outgoing(rig.socket()).is_empty());
}

#[test]
fn a_write_without_progress_ends_the_session_at_its_deadline_and_progress_moves_it() {
    let mut rig = Rig::new();
    let lease = rig.connect();
    let notices = rig.subscribe();
    let socket = rig.socket();
    let t0 = rig.now;
    let _answer = rig.call(lease);
    let deadline = t0 + WRITE_TIMEOUT;
    assert!(rig.driver.poll_timeout().is_some_and(|t| t <= deadline));
    let deadline = t0 + WRITE_TIMEOUT;
    // Part of the transmit goes out 2 s in: the deadline moves to 2 s + the write timeout.
    rig.now = t0 + Duration::from_secs(2);
    rig.gateway_reads(Some(1));
    rig.timeout_at(deadline);
    assert!(rig.closed.is_empty(), "progress moved the deadline");
    rig.timeout_at(t0 + Duration::from_secs(2) + WRITE_TIMEOUT);
    assert_eq!(rig.closed, vec![socket]);
    let reasons: Vec<_> = notices
        .try_iter()
        .filter_map(|n| match n {
            PoolNotice::Disconnected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![ConnectionError::WriteTimeout(WRITE_TIMEOUT)]);
}

#[test]
fn a_full_write_queue_ends_the_session_instead_of_growing() {
    const QUEUE: usize = 8;
    let mut rig = Rig::with_write_queue(QUEUE);
    let lease = rig.connect();
    let notices = rig.subscribe();
    let socket = rig.socket();
    // The gateway reads nothing more; calls queue transmits (paced at IB's message rate, so
    // virtual time moves, well within the write deadline).
    let _answers: Vec<_> = (0..QUEUE + 2).map(|_| rig.call(lease)).collect();
    let mut steps = 0;
    while rig.closed.is_empty() && steps < 1_000 {
        steps += 1;
        let next = rig.driver.poll_timeout().expect("a deadline");
        rig.timeout_at(next.max(rig.now));
    }
    assert_eq!(rig.closed, vec![socket], "after {steps} steps");
    let notices: Vec<_> = notices.try_iter().collect();
    let expected = ConnectionError::WriteQueueFull(QUEUE);
    let full = notices
        .iter()
        .any(|n| matches!(n, PoolNotice::Disconnected { reason, .. } if *reason == expected));
    assert!(full, "{notices:?}");
}

#[test]
fn a_close_waits_for_the_writes_queued_before_it() {
    let mut rig = Rig::new();
    let lease = rig.connect();
    let socket = rig.socket();
    let _answer = rig.call(lease);
    let (tx, _rx) = mpsc::sync_channel(1);
    assert!(matches!(
        rig.driver
            .handle_command(rig.now, Some(Command::Shutdown(tx))),
        Flow::Stop(Some(_))
    ));
    rig.act();
    assert!(rig.closed.is_empty(), "a transmit is still queued");
    rig.gateway_reads(None);
    assert_eq!(rig.closed, vec![socket]);
    assert!(
        matches!(rig.got.last(), Some(Request::ReqContractDetails { .. })),
        "{:?}",
        rig.got.last()
    );
    assert_eq!(rig.driver.poll_timeout(), None, "nothing left to wait for");
}

#[test]
fn the_clocks_are_read_once_per_interval_and_first_at_once() {
    let mut rig = Rig::new();
    let t0 = rig.now;
    assert!(rig.driver.poll_timeout().is_some_and(|t| t <= t0));
    rig.timeout_at(t0);
    assert_eq!(rig.clock_reads.get(), 1);
    rig.timeout_at(t0 + Duration::from_millis(500));
    assert_eq!(rig.clock_reads.get(), 1, "not due yet");
    rig.timeout_at(t0 + Duration::from_secs(1));
    assert_eq!(rig.clock_reads.get(), 2);
    // After a stall of a minute, one read (no catch-up burst), then the cadence resumes.
    rig.timeout_at(t0 + Duration::from_secs(61));
    rig.timeout_at(t0 + Duration::from_secs(61));
    assert_eq!(rig.clock_reads.get(), 3);
    assert_eq!(
        rig.driver.poll_timeout(),
        Some(t0 + Duration::from_secs(62))
    );
}
