//! The handles users hold: a [`Pool`] (cheap to clone), the [`PooledConnection`] a lease gives,
//! the [`Events`] stream of notices and the single-session [`Client`]. They only send commands
//! to the driver's task and await its replies, over executor-free channels.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};
use futures_channel::oneshot;
use ibconn_core::client_id::{ClientId, Holder, Purpose};
use ibconn_core::connection::{Answer, Config, Query};
use ibconn_core::message::{Contract, ContractDescription, ContractDetails};
use ibconn_core::pacer::PaceLedger;
use ibconn_core::pool::{Channels, Command, Offer, Pool as CorePool, Ticket};
use ibconn_core::query::{HeadTimestampQuery, HistoricalQuery};
use ibconn_core::stream::{StreamItem, StreamQuery, STREAM_BUFFER};

use crate::clock::wall;
use crate::shell::Shell;
use crate::subscription::{queue, ItemSender, SharedQueue, Subscription};
use crate::{
    Bars, Error, IdRegistry, LeaseId, MemoryRegistry, PoolConfig, PoolNotice, PoolStats, Runtime,
    NOTICE_BUFFER,
};

/// The handles' channels: one-shot replies, bounded notice queues.
#[derive(Debug)]
pub(crate) struct Async;

impl Channels for Async {
    type Reply<T> = oneshot::Sender<T>;
    type Notices = Sender<PoolNotice>;
    type Items = ItemSender;

    fn reply<T>(tx: oneshot::Sender<T>, value: T) -> bool {
        tx.send(value).is_ok()
    }

    fn offer(tx: &Sender<PoolNotice>, notice: PoolNotice) -> Offer {
        match tx.try_send(notice) {
            Ok(()) => Offer::Sent,
            Err(TrySendError::Full(_)) => Offer::Full,
            Err(TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    fn push(tx: &ItemSender, item: StreamItem) -> Offer {
        tx.push(item)
    }

    fn close(tx: ItemSender, error: Option<Error>) {
        tx.close(error);
    }
}

pub(crate) type Cmd = Command<Async>;

/// A pool of TWS sessions driven by runtime `R`. Cheap to clone; all clones share one driver.
///
/// Commands from handles to the driver travel on an unbounded queue, bounded by its callers:
/// every command but two is sent by a call that then waits for its reply, so the queue holds at
/// most one command per pending call; the other two are a lease's release (once per lease, sent
/// from `Drop`, which cannot wait) and [`Pool::events`]' subscription (once per [`Events`]).
pub struct Pool<R> {
    tx: Sender<Cmd>,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for Pool<R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            runtime: PhantomData,
        }
    }
}

impl<R> fmt::Debug for Pool<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("closed", &self.tx.is_closed())
            .finish()
    }
}

impl<R: Runtime> Pool<R> {
    /// Start the driver task. Nothing is dialed before the first `acquire`.
    pub fn start(config: PoolConfig, registry: Box<dyn IdRegistry + Send>) -> Self {
        let pool = CorePool::new(config, registry, Instant::now(), wall());
        Self::spawn(Shell::new(pool))
    }

    /// [`Pool::start`] pacing through `ledger`: processes (or hosts) whose pools share a ledger
    /// share IB's per-gateway pacing budget (e.g. `ibconn_core::pacer::FileLedger`).
    pub fn start_with_ledger(
        config: PoolConfig,
        registry: Box<dyn IdRegistry + Send>,
        ledger: Box<dyn PaceLedger>,
    ) -> Self {
        let pool = CorePool::with_ledger(config, registry, ledger, Instant::now(), wall());
        Self::spawn(Shell::new(pool))
    }

    fn spawn(shell: Shell<R>) -> Self {
        let (tx, rx) = async_channel::unbounded();
        R::spawn(shell.run(rx));
        Self {
            tx,
            runtime: PhantomData,
        }
    }
}

impl<R> Pool<R> {
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
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        let _ = self.cmd(Cmd::Subscribe(tx));
        Events { rx }
    }

    /// Open a stream on a [`Purpose::Streaming`] connection leased for it alone (and given back
    /// when the subscription is dropped). See [`PooledConnection::subscribe`].
    pub async fn subscribe(&self, query: StreamQuery) -> Result<Subscription, Error> {
        self.subscribe_with_capacity(query, STREAM_BUFFER).await
    }

    /// [`Pool::subscribe`] with a queue of `capacity` items before its overflow policy applies
    /// (default [`STREAM_BUFFER`]).
    pub async fn subscribe_with_capacity(
        &self,
        query: StreamQuery,
        capacity: usize,
    ) -> Result<Subscription, Error> {
        let conn = self.acquire(Purpose::Streaming).await?;
        let (ticket, shared) = conn.open(query, capacity).await?;
        let tx = self.tx.clone();
        Ok(Subscription::new(ticket, shared, tx, Some(conn)))
    }

    /// The pool's metrics.
    pub async fn stats(&self) -> Result<PoolStats, Error> {
        let (reply, rx) = oneshot::channel();
        self.cmd(Cmd::Stats(reply))?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Fail waiters, close every socket, release every client id and stop the driver.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.cmd(Cmd::Shutdown(reply)).is_ok() {
            let _ = rx.await;
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
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Cmd::Call(self.lease, Box::new(query), timeout, reply))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn typed<T>(&self, query: Query, f: fn(Answer) -> Option<T>) -> Result<T, Error> {
        f(self.request(query, None).await?).ok_or(Error::UnexpectedAnswer)
    }

    /// Open a stream on this lease: market data, real-time bars, tick-by-tick or keep-up-to-date
    /// bars. Answers once the request went out (keep-up-to-date: with its first bars, which are
    /// the stream's first items); refused at once when it would go over IB's caps
    /// ([`SubmitError::StreamLimit`](crate::SubmitError::StreamLimit)). The stream outlives the
    /// session: after a lost session or 1101 the pool requests it again and the subscription
    /// yields an interruption and the gap. It holds this lease's connection: release the lease
    /// and the stream ends.
    pub async fn subscribe(&self, query: StreamQuery) -> Result<Subscription, Error> {
        self.subscribe_with_capacity(query, STREAM_BUFFER).await
    }

    /// [`PooledConnection::subscribe`] with a queue of `capacity` items before its overflow
    /// policy applies (default [`STREAM_BUFFER`]: a consumer that must see every tick of a burst
    /// wants more).
    pub async fn subscribe_with_capacity(
        &self,
        query: StreamQuery,
        capacity: usize,
    ) -> Result<Subscription, Error> {
        let (ticket, shared) = self.open(query, capacity).await?;
        Ok(Subscription::new(ticket, shared, self.tx.clone(), None))
    }

    async fn open(
        &self,
        query: StreamQuery,
        capacity: usize,
    ) -> Result<(Ticket, SharedQueue), Error> {
        let timeout: Option<Duration> = None;
        let (reply, rx) = oneshot::channel();
        let (items, shared) = queue(capacity);
        self.tx
            .try_send(Cmd::Stream(
                self.lease,
                Box::new(query),
                timeout,
                reply,
                items,
            ))
            .map_err(|_| Error::Closed)?;
        let ticket = rx.await.map_err(|_| Error::Closed)??;
        Ok((ticket, shared))
    }

    /// Server time, epoch seconds.
    pub async fn current_time(&self) -> Result<i64, Error> {
        self.typed(Query::CurrentTime, Answer::into_current_time)
            .await
    }

    /// Historical bars: typed bar size, whatToShow, duration, end and date format.
    pub async fn historical_data(&self, query: HistoricalQuery) -> Result<Bars, Error> {
        self.typed(Query::HistoricalData(query), Answer::into_bars)
            .await
    }

    /// Earliest available data point.
    pub async fn head_timestamp(&self, query: HeadTimestampQuery) -> Result<String, Error> {
        self.typed(Query::HeadTimestamp(query), Answer::into_head_timestamp)
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
        let query = Query::MatchingSymbols(pattern.to_owned());
        self.typed(query, Answer::into_symbols).await
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let _ = self.tx.try_send(Cmd::Release(self.lease));
    }
}

/// One TWS session with a fixed client id: a pool of one shared connection, redialed with
/// backoff when it drops. Derefs to [`PooledConnection`] for the typed calls.
pub struct Client<R> {
    conn: PooledConnection,
    pool: Pool<R>,
}

impl<R> fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("conn", &self.conn).finish()
    }
}

impl<R: Runtime> Client<R> {
    /// Connect to `addr` as `client_id` with default settings; waits until the session is ready.
    ///
    /// The default offer is v213..226 (as `ibapi` offers), with START_API sent with the hello:
    /// one round trip. A gateway older than server version 213 answers below that offer (or
    /// closes before its hello, or stays silent until the handshake timeout); the session then
    /// redials it at once offering v100..226 (text era included) and keeps that offer for the
    /// gateway ([`VersionPolicy::Auto`](ibconn_core::connection::VersionPolicy::Auto)): one extra
    /// connect, no backoff. [`Client::connect_with`] with a pinned `versions` offers exactly
    /// that range and never falls back.
    pub async fn connect(addr: &str, client_id: ClientId) -> Result<Self, Error> {
        Self::connect_with(addr, client_id, Config::new(client_id)).await
    }

    /// Connect with explicit connection settings. The handshake runs in the caller's task (no
    /// task or channel hop between the caller and the socket); the driver moves to its own task
    /// once the session is ready.
    pub async fn connect_with(
        addr: &str,
        client_id: ClientId,
        connection: Config,
    ) -> Result<Self, Error> {
        let (config, ids) = PoolConfig::single_session(addr, client_id, connection);
        let registry = MemoryRegistry::new(ids, Holder::from_pid(std::process::id()));
        let core = CorePool::new(config, Box::new(registry), Instant::now(), wall());
        let mut shell = Shell::<R>::new(core);
        match shell
            .acquire_inline(PoolConfig::single_session_purpose())
            .await
        {
            Ok((lease, client_id)) => {
                let pool = Pool::spawn(shell);
                let tx = pool.tx.clone();
                let conn = PooledConnection {
                    lease,
                    client_id,
                    tx,
                };
                Ok(Self { conn, pool })
            }
            Err(e) => {
                shell.abandon();
                Err(e)
            }
        }
    }
}

impl<R> Client<R> {
    /// The session's notices ([`Pool::events`]).
    pub fn events(&self) -> Events {
        self.pool.events()
    }

    /// The session's metrics.
    pub async fn stats(&self) -> Result<PoolStats, Error> {
        self.pool.stats().await
    }

    /// Close the session and stop the driver.
    pub async fn shutdown(self) {
        drop(self.conn);
        self.pool.shutdown().await;
    }
}

impl<R> Deref for Client<R> {
    type Target = PooledConnection;

    fn deref(&self) -> &PooledConnection {
        &self.conn
    }
}
