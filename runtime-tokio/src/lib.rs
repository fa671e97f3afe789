//! # ibconn-tokio
//!
//! The Tokio runtime for ibconn. All protocol and policy live in `ibconn-core`'s sans-IO
//! [`Pool`](ibconn_core::pool::Pool); this crate only moves bytes and timers: one driver task owns
//! the core state machine, one task per socket reads and writes, and callers talk to the driver
//! over channels. Every wait is bounded by a deadline the core enforces (acquire timeout, request
//! timeout), so every call ends with an answer or a typed error.
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
//! # async fn demo() -> Result<(), ibconn_tokio::Error> {
//! use ibconn_tokio::{MemoryRegistry, Pool, PoolConfig, Purpose};
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
use std::ops::Deref;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ibconn_core::client_id::{ClientId, Holder, UnixMillis};
use ibconn_core::connection::{Answer, Config, Query};
use ibconn_core::message::{Contract, ContractDescription, ContractDetails};
use ibconn_core::message::{HeadTimestampRequest, HistoricalDataRequest};
use ibconn_core::pool::{Channels, Command, Flow, Io, Offer, PoolEvent, Router, SocketId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

pub use ibconn_core::client_id::Purpose;
/// Why a call failed (the core's [`PoolError`](ibconn_core::pool::PoolError)).
pub use ibconn_core::pool::PoolError as Error;
pub use ibconn_core::pool::{
    AcquireError, Bars, CallError, FileRegistry, IdRegistry, LeaseId, MemoryRegistry, PoolConfig,
    PoolNotice, PoolStats, PurposeConfig, Sharing, SubmitError, NOTICE_BUFFER,
};

/// Tokio's channels for the core's [`Router`].
#[derive(Debug)]
struct Tokio;

impl Channels for Tokio {
    type Reply<T> = oneshot::Sender<T>;
    type Notices = mpsc::Sender<PoolNotice>;

    fn reply<T>(tx: oneshot::Sender<T>, value: T) -> bool {
        tx.send(value).is_ok()
    }

    fn offer(tx: &mpsc::Sender<PoolNotice>, notice: PoolNotice) -> Offer {
        match tx.try_send(notice) {
            Ok(()) => Offer::Sent,
            Err(TrySendError::Full(_)) => Offer::Full,
            Err(TrySendError::Closed(_)) => Offer::Closed,
        }
    }
}

type Cmd = Command<Tokio>;

#[derive(Debug)]
enum Net {
    Dialed(SocketId),
    DialFailed(SocketId, String),
    Data(SocketId, Bytes),
    Eof(SocketId, Option<String>),
}

/// A pool of TWS sessions driven on Tokio. Cheap to clone; all clones share one driver.
#[derive(Debug, Clone)]
pub struct Pool {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl Pool {
    /// Start the driver task (call inside a Tokio runtime). Nothing is dialed before the first
    /// `acquire`.
    pub fn start(config: PoolConfig, registry: Box<dyn IdRegistry + Send>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = ibconn_core::pool::Pool::new(config, registry, Instant::now(), wall());
        tokio::spawn(run(pool, rx));
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
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Acquire(purpose, timeout, reply))?;
        let (lease, client_id) = rx.await.map_err(|_| Error::Closed)??;
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
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let _ = self.cmd(Cmd::Subscribe(tx));
        Events { rx }
    }

    /// The pool's metrics.
    pub async fn stats(&self) -> Result<PoolStats, Error> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Stats(reply))?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Fail waiters, close every socket, release every client id and stop every task.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.cmd(Cmd::Shutdown(reply)).is_ok() {
            let _ = rx.await;
        }
    }

    fn cmd(&self, cmd: Cmd) -> Result<(), Error> {
        self.tx.send(cmd).map_err(|_| Error::Closed)
    }
}

/// A stream of [`PoolNotice`]s ([`Pool::events`]).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<PoolNotice>,
}

impl Events {
    /// The next notice; `None` once the pool has shut down and every queued notice was read.
    pub async fn recv(&mut self) -> Option<PoolNotice> {
        self.rx.recv().await
    }
}

/// A leased connection; the lease goes back to the pool on drop.
#[derive(Debug)]
pub struct PooledConnection {
    lease: LeaseId,
    client_id: ClientId,
    tx: mpsc::UnboundedSender<Cmd>,
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
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Call(self.lease, Box::new(query), timeout, reply))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn typed<T>(&self, query: Query, f: fn(Answer) -> Option<T>) -> Result<T, Error> {
        f(self.request(query, None).await?).ok_or(Error::UnexpectedAnswer)
    }

    /// Server time, epoch seconds.
    pub async fn current_time(&self) -> Result<i64, Error> {
        self.typed(Query::CurrentTime, Answer::into_current_time)
            .await
    }

    /// Historical bars.
    pub async fn historical_data(&self, request: HistoricalDataRequest) -> Result<Bars, Error> {
        self.typed(Query::HistoricalData(request), Answer::into_bars)
            .await
    }

    /// Earliest available data point.
    pub async fn head_timestamp(&self, request: HeadTimestampRequest) -> Result<String, Error> {
        self.typed(Query::HeadTimestamp(request), Answer::into_head_timestamp)
            .await
    }

    /// Contract details.
    pub async fn contract_details(
        &self,
        contract: Contract,
    ) -> Result<Vec<(Contract, ContractDetails)>, Error> {
        self.typed(
            Query::ContractDetails(contract),
            Answer::into_contract_details,
        )
        .await
    }

    /// Symbol search.
    pub async fn matching_symbols(&self, pattern: &str) -> Result<Vec<ContractDescription>, Error> {
        self.typed(
            Query::MatchingSymbols(pattern.to_owned()),
            Answer::into_symbols,
        )
        .await
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Release(self.lease));
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
        let pool = Pool::start(config, Box::new(registry));
        let conn = pool.acquire(PoolConfig::single_session_purpose()).await?;
        Ok(Self { conn, pool })
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
    UnixMillis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
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
    pool: ibconn_core::pool::Pool,
    router: Router<Tokio>,
    writers: HashMap<SocketId, mpsc::UnboundedSender<Option<Bytes>>>,
    tasks: JoinSet<()>,
    net: mpsc::UnboundedSender<Net>,
}

async fn run(pool: ibconn_core::pool::Pool, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let (net, mut net_rx) = mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(pool.config().clock_interval);
    let mut d = Driver {
        pool,
        router: Router::new(),
        writers: HashMap::new(),
        tasks: JoinSet::new(),
        net,
    };
    let mut done = None;
    while done.is_none() {
        d.flush();
        let deadline = d.pool.poll_timeout();
        if deadline.is_some_and(|t| t <= Instant::now()) {
            d.pool.handle_timeout(Instant::now());
            continue;
        }
        let timer = async move {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = cmds.recv() => done = d.command(cmd),
            Some(n) = net_rx.recv() => d.input(n),
            () = timer => d.pool.handle_timeout(Instant::now()),
            _ = tick.tick() => d.pool.observe_clocks(Instant::now(), boottime(), wall()),
        }
    }
    d.flush();
    d.writers.clear();
    d.tasks.shutdown().await;
    if let Some(Some(reply)) = done {
        let _ = reply.send(());
    }
}

impl Driver {
    /// Handle a command; `Some` ends the driver (shutdown, or every handle dropped).
    fn command(&mut self, cmd: Option<Cmd>) -> Option<Option<oneshot::Sender<()>>> {
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
        }
    }

    /// Drain socket commands and events (the core's run-loop rule).
    fn flush(&mut self) {
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
                let (tx, rx) = mpsc::unbounded_channel();
                self.writers.insert(socket, tx);
                let keepalive = self.pool.config().tcp_keepalive;
                self.tasks
                    .spawn(run_socket(socket, addr, keepalive, self.net.clone(), rx));
            }
            Io::Write { socket, bytes } => {
                if let Some(w) = self.writers.get(&socket) {
                    let _ = w.send(Some(bytes));
                }
            }
            Io::Close { socket } => {
                if let Some(w) = self.writers.remove(&socket) {
                    let _ = w.send(None);
                }
            }
        }
    }

    fn event(&mut self, event: PoolEvent) {
        self.router.event(&mut self.pool, Instant::now(), event);
    }
}

/// One socket: connect, then pump reads to the driver and writes from it. Ends on EOF, error
/// or `None` from the driver (which also abandons a connect in progress).
async fn run_socket(
    id: SocketId,
    addr: String,
    keepalive: Option<Duration>,
    net: mpsc::UnboundedSender<Net>,
    mut writes: mpsc::UnboundedReceiver<Option<Bytes>>,
) {
    let stream = tokio::select! {
        s = TcpStream::connect(&addr) => match s {
            Ok(s) => s,
            Err(e) => return drop(net.send(Net::DialFailed(id, e.to_string()))),
        },
        _ = writes.recv() => return,
    };
    let _ = stream.set_nodelay(true);
    if let Some(idle) = keepalive {
        let ka = socket2::TcpKeepalive::new().with_time(idle);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
    }
    let _ = net.send(Net::Dialed(id));
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = rd.read(&mut buf) => {
                let msg = match read {
                    Ok(0) => Net::Eof(id, None),
                    Ok(n) => Net::Data(id, Bytes::copy_from_slice(&buf[..n])),
                    Err(e) => Net::Eof(id, Some(e.to_string())),
                };
                let end = matches!(msg, Net::Eof(..));
                if net.send(msg).is_err() || end {
                    return;
                }
            }
            cmd = writes.recv() => match cmd {
                Some(Some(bytes)) => {
                    if let Err(e) = wr.write_all(&bytes).await {
                        return drop(net.send(Net::Eof(id, Some(e.to_string()))));
                    }
                }
                _ => return drop(wr.shutdown().await),
            },
        }
    }
}
