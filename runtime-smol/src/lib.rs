//! # ibconn-smol
//!
//! The smol / async-io runtime for ibconn, with the same public API as `ibconn-tokio`. All protocol and policy live in `ibconn-core`'s sans-IO
//! [`Pool`](ibconn_core::pool::Pool); this crate only moves bytes and timers: one driver task owns
//! the core state machine, one task per socket reads and writes, and callers talk to the driver
//! over channels. Every wait is bounded by a deadline the core enforces (acquire timeout, request
//! timeout), so every call ends with an answer or a typed error. [`Client::connect`] is the one
//! exception to the task split: it runs its session's handshake in the caller's task (no task or
//! channel hop between the caller and the socket) and hands pool and socket to the driver once the
//! session is ready.
//!
//! No socket write blocks the driver or goes on forever: the driver hands writes to the socket's
//! task through a bounded queue it never waits on, and every write has a deadline
//! ([`Config::write_timeout`]). A gateway that stops reading ends its connection with
//! [`ConnectionError::WriteTimeout`] (or [`ConnectionError::WriteQueueFull`]); the pool redials
//! as for any other loss. Channel bounds and their policies are at [`NET_QUEUE`] and
//! [`WRITE_QUEUE`]; commands from handles stay unbounded (see [`Pool`]).
//!
//! With a [`FileRegistry`] the driver does short, locked file operations (lease allocate, release,
//! heartbeat) inline; they are small and rare, but they block the driver while they run.
//!
//! Session changes (connected, disconnected, 1100/1101/1102, resubscribe after data loss) reach
//! users as [`PoolNotice`]s through [`Pool::events`]: a bounded queue per subscriber that the driver
//! never waits for (a full queue drops the newest notice and reports the count later as
//! [`PoolNotice::Missed`]). Which events become notices is the core's decision.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ibconn_smol::Error> {
//! use ibconn_smol::{MemoryRegistry, Pool, PoolConfig, Purpose};
//! use ibconn_core::client_id::{Holder, RegistryConfig};
//! let registry = MemoryRegistry::new(RegistryConfig::default(), Holder::from_pid(std::process::id()));
//! let pool = Pool::start(PoolConfig::default(), Box::new(registry));
//! let conn = pool.acquire(Purpose::Backfill).await?;
//! let server_time = conn.current_time().await?;
//! drop(conn); // the lease goes back to the pool
//! pool.shutdown().await;
//! # let _ = server_time; Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ibconn_core::client_id::{ClientId, Holder, UnixMillis};
use ibconn_core::connection::{Answer, Config, ConnectionError, Query};
use ibconn_core::pool::Pool as CorePool;
use ibconn_core::pool::{
    AcquireId, Channels, Command, Flow, Io, Offer, PoolEvent, Router, SocketId,
};
use smol::channel::{bounded, unbounded, Receiver, Sender, TrySendError};
use smol::future::or;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::{Async, Task, Timer};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

pub use ibconn_core::client_id::Purpose;
pub use ibconn_core::pacer::{MemoryLedger, PaceLedger};
/// Why a call failed (the core's [`PoolError`](ibconn_core::pool::PoolError)).
pub use ibconn_core::pool::PoolError as Error;
pub use ibconn_core::pool::{
    AcquireError, Bars, CallError, FileRegistry, IdRegistry, LeaseId, MemoryRegistry, PoolConfig,
    PoolNotice, PoolStats, PurposeConfig, Sharing, SubmitError, NOTICE_BUFFER,
};

/// async-channel's channels for the core's [`Router`] (replies on bounded(1) channels).
#[derive(Debug)]
struct Smol;

impl Channels for Smol {
    type Reply<T> = Sender<T>;
    type Notices = Sender<PoolNotice>;

    fn reply<T>(tx: Sender<T>, value: T) -> bool {
        tx.try_send(value).is_ok()
    }

    fn offer(tx: &Sender<PoolNotice>, notice: PoolNotice) -> Offer {
        match tx.try_send(notice) {
            Ok(()) => Offer::Sent,
            Err(TrySendError::Full(_)) => Offer::Full,
            Err(TrySendError::Closed(_)) => Offer::Closed,
        }
    }
}

type Cmd = Command<Smol>;

/// Socket events (connects, reads, EOFs) queued from the socket tasks to the driver, at most one
/// 64 KiB read each. Policy: a socket task that is this far ahead waits for the driver, and its
/// socket goes unread meanwhile — backpressure that TCP's flow control passes on to the gateway —
/// instead of buffering without bound. Nothing is dropped.
pub const NET_QUEUE: usize = 64;

/// Writes (coalesced transmits) queued for one socket's writer. Policy: the driver never waits
/// for a writer; a full queue means the socket stopped taking bytes (the gateway is not reading),
/// so the connection closes with [`ConnectionError::WriteQueueFull`], as when a write passes its
/// deadline — never bytes dropped from the stream. A writer whose peer reads drains each write
/// at once, so a healthy session stays far below it.
pub const WRITE_QUEUE: usize = 1024;

/// What a socket task reports to the driver.
#[derive(Debug)]
enum Net {
    Dialed(SocketId),
    DialFailed(SocketId, String),
    Data(SocketId, Bytes),
    Eof(SocketId, Option<String>),
    /// The task closed the socket for a typed reason (a write past its deadline).
    Failed(SocketId, ConnectionError),
}

/// A pool of TWS sessions driven on smol's global executor. Cheap to clone; all clones share one driver.
///
/// Commands from handles to the driver travel on an unbounded queue, bounded by its callers:
/// every command but two is sent by a call that then waits for its reply, so the queue holds at
/// most one command per pending call; the other two are a lease's release (once per lease, sent
/// from `Drop`, which cannot wait) and [`Pool::events`]' subscription (once per [`Events`]).
#[derive(Debug, Clone)]
pub struct Pool {
    tx: Sender<Cmd>,
}

impl Pool {
    /// Start the driver task on smol's global executor. Nothing is dialed before the first
    /// `acquire`.
    pub fn start(config: PoolConfig, registry: Box<dyn IdRegistry + Send>) -> Self {
        let pool = CorePool::new(config, registry, Instant::now(), wall());
        Self::spawn(pool, None)
    }

    /// [`Pool::start`] pacing through `ledger`: processes (or hosts) whose pools share a ledger
    /// share IB's per-gateway pacing budget (e.g. `ibconn_core::pacer::FileLedger`).
    pub fn start_with_ledger(
        config: PoolConfig,
        registry: Box<dyn IdRegistry + Send>,
        ledger: Box<dyn PaceLedger>,
    ) -> Self {
        let pool = CorePool::with_ledger(config, registry, ledger, Instant::now(), wall());
        Self::spawn(pool, None)
    }

    /// Start the driver for `pool`, adopting a socket already open for it.
    fn spawn(pool: CorePool, open: Option<(SocketId, TcpStream)>) -> Self {
        let (tx, rx) = unbounded();
        smol::spawn(run(pool, rx, open)).detach();
        Self { tx }
    }

    /// Lease a connection of `purpose`, waiting up to the configured acquire timeout.
    pub async fn acquire(&self, purpose: Purpose) -> Result<PooledConnection, Error> {
        self.acquire_within(purpose, None).await
    }

    /// Lease a connection of `purpose`, waiting up to `timeout` (default: the configured one).
    pub async fn acquire_within(
        &self,
        purpose: Purpose,
        timeout: Option<Duration>,
    ) -> Result<PooledConnection, Error> {
        let (reply, rx) = bounded(1);
        self.cmd(Cmd::Acquire(purpose, timeout, reply))?;
        let (lease, client_id) = rx.recv().await.map_err(|_| Error::Closed)??;
        Ok(PooledConnection {
            lease,
            client_id,
            tx: self.tx.clone(),
        })
    }

    /// Observe session notices (connected, disconnected, 1100/1101/1102, resubscribe) from now
    /// on, through a queue of [`NOTICE_BUFFER`] notices. See [`Pool::events_with_capacity`].
    pub fn events(&self) -> Events {
        self.events_with_capacity(NOTICE_BUFFER)
    }

    /// Like [`Pool::events`] with a queue of `capacity` (at least 1) notices. The driver never
    /// waits for a subscriber: when the queue is full the newest notice is dropped, and the next
    /// one that fits is preceded by [`PoolNotice::Missed`] with the count. Notices caused by
    /// commands sent after this call (e.g. an `acquire`) are never missed for lack of a
    /// subscription. The stream ends when the pool shuts down.
    pub fn events_with_capacity(&self, capacity: usize) -> Events {
        let (tx, rx) = bounded(capacity.max(1));
        let _ = self.cmd(Cmd::Subscribe(tx));
        Events { rx }
    }

    /// The pool's metrics.
    pub async fn stats(&self) -> Result<PoolStats, Error> {
        let (reply, rx) = bounded(1);
        self.cmd(Cmd::Stats(reply))?;
        rx.recv().await.map_err(|_| Error::Closed)
    }

    /// Fail waiters, close every socket, release every client id and stop every task.
    pub async fn shutdown(&self) {
        let (reply, rx) = bounded(1);
        if self.cmd(Cmd::Shutdown(reply)).is_ok() {
            let _ = rx.recv().await;
        }
    }

    fn cmd(&self, cmd: Cmd) -> Result<(), Error> {
        self.tx.try_send(cmd).map_err(|_| Error::Closed)
    }
}

/// A stream of [`PoolNotice`]s ([`Pool::events`]).
#[derive(Debug)]
pub struct Events {
    rx: Receiver<PoolNotice>,
}

impl Events {
    /// The next notice; `None` once the pool has shut down and every queued notice was read.
    pub async fn recv(&mut self) -> Option<PoolNotice> {
        self.rx.recv().await.ok()
    }
}

/// A leased connection; the lease goes back to the pool on drop.
#[derive(Debug)]
pub struct PooledConnection {
    lease: LeaseId,
    client_id: ClientId,
    tx: Sender<Cmd>,
}

impl PooledConnection {
    /// The session's client id.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// The lease (as named in [`PoolNotice::Resubscribe`]).
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Any query; `timeout` defaults to the connection's request timeout.
    pub async fn request(&self, query: Query, timeout: Option<Duration>) -> Result<Answer, Error> {
        let (reply, rx) = bounded(1);
        self.tx
            .try_send(Cmd::Call(self.lease, Box::new(query), timeout, reply))
            .map_err(|_| Error::Closed)?;
        rx.recv().await.map_err(|_| Error::Closed)?
    }

    ibconn_core::typed_calls!();
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let _ = self.tx.try_send(Cmd::Release(self.lease));
    }
}

/// One TWS session with a fixed client id: a pool of one shared connection, redialed with
/// backoff when it drops. Derefs to [`PooledConnection`] for the typed calls.
#[derive(Debug)]
pub struct Client {
    conn: PooledConnection,
    pool: Pool,
}

impl Client {
    /// Connect to `addr` as `client_id` with default settings; waits until the session is ready.
    ///
    /// The default offer is v213..226 (as `ibapi` offers), with START_API sent with the hello:
    /// one round trip. A gateway older than server version 213 answers below that offer (or
    /// closes before its hello, or stays silent until the handshake timeout); the session then
    /// redials it at once offering v100..226 (text
    /// era included) and keeps that offer for the gateway
    /// ([`VersionPolicy::Auto`](ibconn_core::connection::VersionPolicy::Auto)): one extra
    /// connect, no backoff. [`Client::connect_with`] with a pinned `versions` offers exactly
    /// that range and never falls back.
    pub async fn connect(addr: &str, client_id: ClientId) -> Result<Self, Error> {
        Self::connect_with(addr, client_id, Config::new(client_id)).await
    }

    /// Connect with explicit connection settings.
    pub async fn connect_with(
        addr: &str,
        client_id: ClientId,
        connection: Config,
    ) -> Result<Self, Error> {
        let (config, ids) = PoolConfig::single_session(addr, client_id, connection);
        let registry = MemoryRegistry::new(ids, Holder::from_pid(std::process::id()));
        let mut core = CorePool::new(config, Box::new(registry), Instant::now(), wall());
        let purpose = PoolConfig::single_session_purpose();
        let acquire = core.acquire(Instant::now(), purpose, None);
        match handshake_inline(&mut core, acquire).await {
            (Ok((lease, client_id)), open) => {
                let pool = Pool::spawn(core, open);
                let tx = pool.tx.clone();
                let conn = PooledConnection {
                    lease,
                    client_id,
                    tx,
                };
                Ok(Self { conn, pool })
            }
            (Err(e), _) => {
                core.shutdown(Instant::now());
                Err(e)
            }
        }
    }

    /// The session's notices ([`Pool::events`]).
    pub fn events(&self) -> Events {
        self.pool.events()
    }

    /// The session's metrics.
    pub async fn stats(&self) -> Result<PoolStats, Error> {
        self.pool.stats().await
    }

    /// Close the session and stop its tasks.
    pub async fn shutdown(self) {
        drop(self.conn);
        self.pool.shutdown().await;
    }
}

impl Deref for Client {
    type Target = PooledConnection;

    fn deref(&self) -> &PooledConnection {
        &self.conn
    }
}

// The two clock readers below are the only code both runtimes repeat on purpose: the core must
// not read clocks, and a shared crate for two small functions is not worth a workspace member.

/// Wall clock for registry leases.
fn wall() -> UnixMillis {
    UnixMillis::from_system_time(SystemTime::now())
}

/// The suspend-including clock (`CLOCK_BOOTTIME`) for sleep detection.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn boottime() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Elsewhere there is no suspend-including clock; sleep detection stays off.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn boottime() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The driver: owns the core pool and routes its outputs.
struct Driver {
    pool: CorePool,
    router: Router<Smol>,
    /// Each open socket's write queue ([`WRITE_QUEUE`]); dropping one closes its socket once the
    /// writes queued before are out.
    writers: HashMap<SocketId, Sender<Bytes>>,
    tasks: Vec<Task<()>>,
    net: Sender<Net>,
}

/// What woke the driver.
enum Wake {
    Cmd(Option<Cmd>),
    Net(Option<Net>),
    Timer,
}

type Dialing = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// What the inline handshake waited for.
enum Step {
    Dialed(SocketId, io::Result<TcpStream>),
    Read(SocketId, io::Result<usize>),
    Timer,
}

/// `Client::connect`'s fast path: drive the core pool in the caller's task until `acquire` is
/// answered — dial, write and read right here, with no task or channel between the caller and the
/// socket (the driver task then takes over the pool and the open socket). Moves bytes and timers
/// only, like the driver; nobody has subscribed to notices yet.
async fn handshake_inline(
    pool: &mut CorePool,
    acquire: AcquireId,
) -> (
    Result<(LeaseId, ClientId), Error>,
    Option<(SocketId, TcpStream)>,
) {
    let mut open: Option<(SocketId, TcpStream)> = None;
    let mut dialing: Option<(SocketId, Dialing)> = None;
    let mut buf = vec![0u8; 16 * 1024];
    // One timer, re-armed only when the deadline moves.
    let (mut armed, mut timer) = (None, Timer::never());
    let write_timeout = pool.config().connection.write_timeout;
    loop {
        while let Some(io) = pool.poll_io() {
            match io {
                Io::Dial { socket, addr, .. } => dialing = Some((socket, Box::pin(dial(addr)))),
                Io::Write { socket, bytes } => match open.as_mut() {
                    // async-io tries the write before waiting: a fresh socket takes a hello whole.
                    Some((s, stream)) if *s == socket => {
                        let wrote = within(write_timeout, stream.write_all(&bytes)).await;
                        if let Some(lost) = write_failed(socket, write_timeout, wrote) {
                            open = None;
                            lost.report(pool);
                        }
                    }
                    _ => {}
                },
                Io::Close { socket } => {
                    dialing = dialing.filter(|(s, _)| *s != socket);
                    open = open.filter(|(s, _)| *s != socket);
                }
            }
        }
        if let Some(event) = pool.poll_event() {
            match event.answer_to(acquire) {
                Ok(Ok(leased)) => return (Ok(leased), open),
                Ok(Err(error)) => return (Err(error), None),
                Err(other) => tracing::trace!(?other, "pool event"),
            }
            continue;
        }
        let deadline = pool.poll_timeout();
        if deadline != armed {
            armed = deadline;
            timer = deadline.map_or_else(Timer::never, Timer::at);
        }
        let dial = async {
            match dialing.as_mut() {
                Some((s, d)) => Step::Dialed(*s, d.await),
                None => std::future::pending().await,
            }
        };
        let read = async {
            match open.as_mut() {
                Some((s, stream)) => Step::Read(*s, stream.read(&mut buf).await),
                None => std::future::pending().await,
            }
        };
        let fired = async {
            (&mut timer).await;
            Step::Timer
        };
        match or(dial, or(read, fired)).await {
            Step::Dialed(socket, Ok(stream)) => {
                dialing = None;
                configure(SockRef::from(&stream), pool.config().tcp_keepalive);
                open = Some((socket, stream));
                pool.handle_dialed(Instant::now(), socket);
            }
            Step::Dialed(socket, Err(e)) => {
                dialing = None;
                pool.handle_dial_failed(Instant::now(), socket, e.to_string());
            }
            Step::Read(socket, Ok(n)) if n > 0 => {
                pool.handle_input(Instant::now(), socket, &buf[..n]);
            }
            Step::Read(socket, end) => {
                open = None;
                pool.handle_eof(Instant::now(), socket, end.err().map(|e| e.to_string()));
            }
            Step::Timer => {
                armed = None;
                pool.handle_timeout(Instant::now());
            }
        }
    }
}

/// Connect to `addr`. A numeric address is dialed by hand: a loopback (often a LAN) connect is
/// complete when connect(2) returns, and is then used at once instead of after the reactor has
/// reported the socket writable. Host names go through smol's resolver.
async fn dial(addr: String) -> io::Result<TcpStream> {
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        return TcpStream::connect(addr.as_str()).await;
    };
    let socket = Socket::new(Domain::for_address(sa), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&sa.into()) {
        // In progress: EINPROGRESS on Unix, "would block" elsewhere.
        Err(e)
            if e.kind() != io::ErrorKind::WouldBlock
                && e.raw_os_error() != Some(rustix::io::Errno::INPROGRESS.raw_os_error()) =>
        {
            return Err(e)
        }
        _ => {}
    }
    let stream = Async::new(std::net::TcpStream::from(socket))?;
    if stream.get_ref().peer_addr().is_err() {
        stream.writable().await?;
        if let Some(e) = stream.get_ref().take_error()? {
            return Err(e);
        }
        stream.get_ref().peer_addr()?;
    }
    Ok(stream.into())
}

/// `f`, or `Err(())` once `limit` has passed.
async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Result<T, ()> {
    or(async { Ok(f.await) }, async {
        Timer::after(limit).await;
        Err(())
    })
    .await
}

/// Why a socket write failed, for the pool.
#[derive(Debug)]
enum WriteLost {
    /// The socket failed.
    Error(SocketId, String),
    /// The write passed its deadline.
    Timeout(SocketId, Duration),
}

impl WriteLost {
    /// Report the loss to `pool`.
    fn report(self, pool: &mut CorePool) {
        match self {
            Self::Error(socket, why) => pool.handle_eof(Instant::now(), socket, Some(why)),
            Self::Timeout(socket, after) => {
                let reason = ConnectionError::WriteTimeout(after);
                pool.handle_socket_error(Instant::now(), socket, reason);
            }
        }
    }

    /// The same loss as a socket event.
    fn into_net(self) -> Net {
        match self {
            Self::Error(socket, why) => Net::Eof(socket, Some(why)),
            Self::Timeout(socket, after) => {
                Net::Failed(socket, ConnectionError::WriteTimeout(after))
            }
        }
    }
}

/// Classify the outcome of a write bounded by `limit` (`Err(_)`: the deadline passed); `None` when
/// it went out. A deadline that passed is logged: the gateway stopped reading.
fn write_failed<E>(
    socket: SocketId,
    limit: Duration,
    wrote: Result<io::Result<()>, E>,
) -> Option<WriteLost> {
    match wrote {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(WriteLost::Error(socket, e.to_string())),
        Err(_) => {
            tracing::warn!(
                socket = socket.0,
                ?limit,
                "socket write timed out (the gateway stopped reading); closing the connection"
            );
            Some(WriteLost::Timeout(socket, limit))
        }
    }
}

async fn run(pool: CorePool, cmds: Receiver<Cmd>, open: Option<(SocketId, TcpStream)>) {
    let (net, net_rx) = bounded(NET_QUEUE);
    let write_timeout = pool.config().connection.write_timeout;
    let interval = pool.config().clock_interval;
    let mut next_tick = Instant::now();
    let mut d = Driver {
        pool,
        router: Router::new(),
        writers: HashMap::new(),
        tasks: Vec::new(),
        net,
    };
    if let Some((socket, stream)) = open {
        let (tx, rx) = bounded(WRITE_QUEUE);
        d.writers.insert(socket, tx);
        let net = d.net.clone();
        d.tasks
            .push(smol::spawn(pump(socket, stream, net, rx, write_timeout)));
    }
    let mut done = None;
    while done.is_none() {
        d.flush();
        let now = Instant::now();
        if now >= next_tick {
            next_tick = ibconn_core::deadline::after(now, interval);
            d.pool.observe_clocks(now, boottime(), wall());
            continue;
        }
        let wake_at = d
            .pool
            .poll_timeout()
            .map_or(next_tick, |t| t.min(next_tick));
        if wake_at <= now {
            d.pool.handle_timeout(now);
            continue;
        }
        let wake = or(
            async { Wake::Cmd(cmds.recv().await.ok()) },
            or(async { Wake::Net(net_rx.recv().await.ok()) }, async {
                Timer::at(wake_at).await;
                Wake::Timer
            }),
        )
        .await;
        match wake {
            Wake::Cmd(cmd) => done = d.command(cmd),
            Wake::Net(Some(n)) => d.input(n),
            Wake::Net(None) | Wake::Timer => d.pool.handle_timeout(Instant::now()),
        }
    }
    // Refuse later commands and drop queued ones, so that their callers see `Closed`: an
    // async-channel keeps queued messages (and their reply senders) while any sender lives.
    cmds.close();
    while cmds.try_recv().is_ok() {}
    d.flush();
    d.writers.clear();
    for task in d.tasks.drain(..) {
        task.cancel().await;
    }
    if let Some(Some(reply)) = done {
        let _ = reply.try_send(());
    }
}

impl Driver {
    /// Handle a command; `Some` ends the driver (shutdown, or every handle dropped).
    fn command(&mut self, cmd: Option<Cmd>) -> Option<Option<Sender<()>>> {
        match self.router.command(&mut self.pool, Instant::now(), cmd) {
            Flow::Running => None,
            Flow::Stop(reply) => Some(reply),
        }
    }

    fn input(&mut self, net: Net) {
        let now = Instant::now();
        match net {
            Net::Dialed(s) => self.pool.handle_dialed(now, s),
            Net::DialFailed(s, why) => self.pool.handle_dial_failed(now, s, why),
            Net::Data(s, bytes) => self.pool.handle_input(now, s, &bytes),
            Net::Eof(s, cause) => {
                self.writers.remove(&s);
                self.pool.handle_eof(now, s, cause);
            }
            Net::Failed(s, reason) => {
                self.writers.remove(&s);
                self.pool.handle_socket_error(now, s, reason);
            }
        }
    }

    /// Drain socket commands and events (the core's run-loop rule).
    fn flush(&mut self) {
        self.tasks.retain(|t| !t.is_finished());
        loop {
            while let Some(io) = self.pool.poll_io() {
                self.io(io);
            }
            let Some(event) = self.pool.poll_event() else {
                return;
            };
            self.event(event);
        }
    }

    fn io(&mut self, io: Io) {
        match io {
            Io::Dial { socket, addr, .. } => {
                let (tx, rx) = bounded(WRITE_QUEUE);
                self.writers.insert(socket, tx);
                let config = self.pool.config();
                let (keepalive, limit) = (config.tcp_keepalive, config.connection.write_timeout);
                let net = self.net.clone();
                let task = smol::spawn(run_socket(socket, addr, keepalive, limit, net, rx));
                self.tasks.push(task);
            }
            Io::Write { socket, bytes } => {
                let Some(w) = self.writers.get(&socket) else {
                    return;
                };
                match w.try_send(bytes) {
                    // Closed: the socket task ended; its EOF is on the way to the driver.
                    Ok(()) | Err(TrySendError::Closed(_)) => {}
                    Err(TrySendError::Full(_)) => self.write_queue_full(socket),
                }
            }
            // Dropping the queue ends the socket task once the writes before are out (each within
            // its deadline); a connect in progress is abandoned.
            Io::Close { socket } => drop(self.writers.remove(&socket)),
        }
    }

    /// `socket`'s write queue is full: the gateway stopped reading. Close the connection rather
    /// than wait or drop bytes from the stream.
    fn write_queue_full(&mut self, socket: SocketId) {
        tracing::warn!(
            socket = socket.0,
            queued = WRITE_QUEUE,
            "socket write queue full (the gateway stopped reading); closing the connection"
        );
        self.writers.remove(&socket);
        let reason = ConnectionError::WriteQueueFull(WRITE_QUEUE);
        self.pool
            .handle_socket_error(Instant::now(), socket, reason);
    }

    fn event(&mut self, event: PoolEvent) {
        self.router.event(&mut self.pool, Instant::now(), event);
    }
}

/// One socket: connect, then pump reads to the driver and writes from it. Ends on EOF, error,
/// a write past `write_timeout`, or the driver dropping the write queue (which also abandons a
/// connect in progress).
async fn run_socket(
    id: SocketId,
    addr: String,
    keepalive: Option<Duration>,
    write_timeout: Duration,
    net: Sender<Net>,
    writes: Receiver<Bytes>,
) {
    let connect = async { Some(dial(addr).await) };
    // Nothing is written before the connect is reported: the queue ending is the driver's close.
    let stream = match or(connect, async { writes.recv().await.ok().and(None) }).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => return drop(net.send(Net::DialFailed(id, e.to_string())).await),
        None => return,
    };
    configure(SockRef::from(&stream), keepalive);
    if net.send(Net::Dialed(id)).await.is_ok() {
        pump(id, stream, net, writes, write_timeout).await;
    }
}

/// Nodelay (set before the first write) and keepalive.
fn configure(socket: SockRef<'_>, keepalive: Option<Duration>) {
    let _ = socket.set_tcp_nodelay(true);
    if let Some(idle) = keepalive {
        let _ = socket.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle));
    }
}

/// Pump a connected socket: reads to the driver and writes from it, independently (a stuck
/// write does not stop reads, a reader waiting for the driver does not stop writes). Ends when
/// either side ends.
async fn pump(
    id: SocketId,
    stream: TcpStream,
    net: Sender<Net>,
    writes: Receiver<Bytes>,
    write_timeout: Duration,
) {
    let rd = stream.clone();
    or(
        read_half(id, rd, &net),
        write_half(id, stream, &net, writes, write_timeout),
    )
    .await;
}

/// Read until EOF or error, each read sent to the driver; a full [`NET_QUEUE`] parks this reader.
async fn read_half(id: SocketId, mut rd: TcpStream, net: &Sender<Net>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let msg = match rd.read(&mut buf).await {
            Ok(0) => Net::Eof(id, None),
            Ok(n) => Net::Data(id, Bytes::copy_from_slice(&buf[..n])),
            Err(e) => Net::Eof(id, Some(e.to_string())),
        };
        let end = matches!(msg, Net::Eof(..));
        if net.send(msg).await.is_err() || end {
            return;
        }
    }
}

/// Write what the driver queues, each write within `limit`; when the driver drops the queue, shut
/// the write side down. A failed or timed-out write is reported and ends the socket.
async fn write_half(
    id: SocketId,
    mut wr: TcpStream,
    net: &Sender<Net>,
    writes: Receiver<Bytes>,
    limit: Duration,
) {
    while let Ok(bytes) = writes.recv().await {
        let wrote = within(limit, wr.write_all(&bytes)).await;
        if let Some(lost) = write_failed(id, limit, wrote) {
            let _ = net.send(lost.into_net()).await;
            return;
        }
    }
    let _ = wr.close().await;
}
