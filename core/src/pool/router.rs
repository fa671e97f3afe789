//! Users' [`Command`]s applied to the [`Pool`], and its [`PoolEvent`]s routed back to the reply
//! channel each command came with — part of the [`Driver`](super::Driver).
//!
//! The channel types are named once ([`Channels`]; `ibconn-runtime` uses executor-free ones), so
//! the bookkeeping (acquire and call tables, notice fan-out, "a lease granted to a caller who
//! left goes straight back") exists once for every runtime.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::client_id::{ClientId, Purpose};
use crate::connection::{Answer, Query};

use super::notice::{NoticeFanout, Offer, PoolNotice};
use super::types::{AcquireId, LeaseId, PoolError, PoolEvent, PoolStats, Ticket};
use super::Pool;
use crate::stream::{StreamItem, StreamQuery};

/// A runtime's channel types: a one-shot reply of any `T`, a bounded notice queue and a stream's
/// queue.
pub trait Channels {
    /// Sender half of a one-shot reply.
    type Reply<T>;
    /// Sender half of a bounded notice queue.
    type Notices;
    /// Sender half of one stream's queue (a [`StreamBuffer`](crate::stream::StreamBuffer) and
    /// its consumer's wake-up).
    type Items;

    /// Deliver `value`; `false` if the receiver is gone.
    fn reply<T>(tx: Self::Reply<T>, value: T) -> bool;

    /// Queue `notice` without waiting.
    fn offer(tx: &Self::Notices, notice: PoolNotice) -> Offer;

    /// Queue a stream item without waiting, under the buffer's policy: [`Offer::Full`] means
    /// the consumer is hopelessly behind ([`Push::Overflow`](crate::stream::Push::Overflow)) and
    /// the queue has ended itself with
    /// [`CallError::ConsumerTooSlow`](super::CallError::ConsumerTooSlow) (it knows how many items
    /// wait); [`Offer::Closed`] that the consumer is gone.
    fn push(tx: &Self::Items, item: StreamItem) -> Offer;

    /// End the stream: after its queued items the consumer sees `error`, or the end (`None`).
    fn close(tx: Self::Items, error: Option<PoolError>);
}

/// What an acquire answers: the lease and the client id of its session.
pub type Leased = Result<(LeaseId, ClientId), PoolError>;

/// A user's request to the driver, carrying the channel its answer goes back on.
pub enum Command<C: Channels> {
    /// Lease a connection of a purpose within an optional timeout.
    Acquire(Purpose, Option<Duration>, C::Reply<Leased>),
    /// Give a lease back.
    Release(LeaseId),
    /// Send a query on a lease within an optional timeout.
    Call(
        LeaseId,
        Box<Query>,
        Option<Duration>,
        C::Reply<Result<Answer, PoolError>>,
    ),
    /// A metrics snapshot.
    Stats(C::Reply<PoolStats>),
    /// Subscribe to [`PoolNotice`]s.
    Subscribe(C::Notices),
    /// Open a stream on a lease within an optional timeout for its first answer; its items go
    /// to the queue, the reply carries its ticket.
    Stream(
        LeaseId,
        Box<StreamQuery>,
        Option<Duration>,
        C::Reply<Result<Ticket, PoolError>>,
        C::Items,
    ),
    /// Cancel a stream (its consumer is gone).
    Unsubscribe(Ticket),
    /// Shut the pool down; the reply is sent once the runtime's tasks are gone.
    Shutdown(C::Reply<()>),
}

impl<C: Channels> fmt::Debug for Command<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Acquire(purpose, timeout, _) => f
                .debug_tuple("Acquire")
                .field(purpose)
                .field(timeout)
                .finish(),
            Self::Release(lease) => f.debug_tuple("Release").field(lease).finish(),
            Self::Call(lease, query, timeout, _) => f
                .debug_tuple("Call")
                .field(lease)
                .field(query)
                .field(timeout)
                .finish(),
            Self::Stats(_) => f.write_str("Stats"),
            Self::Subscribe(_) => f.write_str("Subscribe"),
            Self::Stream(lease, query, timeout, ..) => f
                .debug_tuple("Stream")
                .field(lease)
                .field(query)
                .field(timeout)
                .finish(),
            Self::Unsubscribe(ticket) => f.debug_tuple("Unsubscribe").field(ticket).finish(),
            Self::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

/// Whether the driver goes on after a command.
#[must_use]
pub enum Flow<C: Channels> {
    /// Keep running.
    Running,
    /// The pool is shut down: stop the runtime's tasks, then answer the shutdown call (if any —
    /// `None` when every handle was dropped).
    Stop(Option<C::Reply<()>>),
}

/// Pending replies and notice subscribers of one driver.
pub struct Router<C: Channels> {
    acquires: HashMap<AcquireId, C::Reply<Leased>>,
    calls: HashMap<Ticket, C::Reply<Result<Answer, PoolError>>>,
    /// Streams waiting for their first answer.
    opening: HashMap<Ticket, Opening<C>>,
    /// Open streams' queues.
    streams: HashMap<Ticket, C::Items>,
    notices: NoticeFanout<C::Notices>,
}

/// A stream's subscribe call, until its first answer.
type Opening<C> = (
    <C as Channels>::Reply<Result<Ticket, PoolError>>,
    <C as Channels>::Items,
);

impl<C: Channels> fmt::Debug for Router<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("acquires", &self.acquires.len())
            .field("calls", &self.calls.len())
            .field("streams", &self.streams.len())
            .field("subscribers", &self.notices.len())
            .finish()
    }
}

impl<C: Channels> Default for Router<C> {
    fn default() -> Self {
        Self {
            acquires: HashMap::new(),
            calls: HashMap::new(),
            opening: HashMap::new(),
            streams: HashMap::new(),
            notices: NoticeFanout::new(),
        }
    }
}

impl<C: Channels> Router<C> {
    /// Nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Acquires, calls and stream subscriptions still waiting for their answer.
    pub fn pending(&self) -> usize {
        self.acquires.len() + self.calls.len() + self.opening.len()
    }

    /// Streams open (answered, with a consumer).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Apply `cmd` (`None`: every user handle is gone, which shuts the pool down too).
    pub fn command(&mut self, pool: &mut Pool, now: Instant, cmd: Option<Command<C>>) -> Flow<C> {
        match cmd {
            Some(Command::Acquire(purpose, timeout, reply)) => {
                let id = pool.acquire(now, purpose, timeout);
                self.acquires.insert(id, reply);
            }
            Some(Command::Release(lease)) => pool.release(now, lease),
            Some(Command::Call(lease, query, timeout, reply)) => {
                match pool.send(now, lease, *query, timeout) {
                    Ok(ticket) => drop(self.calls.insert(ticket, reply)),
                    Err(e) => drop(C::reply(reply, Err(e.into()))),
                }
            }
            Some(Command::Stats(reply)) => drop(C::reply(reply, pool.stats(now))),
            Some(Command::Subscribe(tx)) => self.notices.subscribe(tx),
            Some(Command::Stream(lease, query, timeout, reply, items)) => {
                match pool.send(now, lease, Query::Stream(*query), timeout) {
                    Ok(ticket) => drop(self.opening.insert(ticket, (reply, items))),
                    Err(e) => drop(C::reply(reply, Err(e.into()))),
                }
            }
            Some(Command::Unsubscribe(ticket)) => {
                self.opening.remove(&ticket);
                self.streams.remove(&ticket);
                pool.cancel(now, ticket);
            }
            Some(Command::Shutdown(reply)) => {
                pool.shutdown(now);
                return Flow::Stop(Some(reply));
            }
            None => {
                pool.shutdown(now);
                return Flow::Stop(None);
            }
        }
        Flow::Running
    }

    /// Route one event from [`Pool::poll_event`]: notices to subscribers, answers to callers.
    /// A lease granted to a caller who stopped waiting is released at once.
    pub fn event(&mut self, pool: &mut Pool, now: Instant, event: PoolEvent) {
        if let Some(notice) = PoolNotice::from_event(&event) {
            self.notices.publish(&notice, C::offer);
        }
        match event {
            PoolEvent::Acquired {
                acquire,
                lease,
                client_id,
                ..
            } => {
                let delivered = self
                    .acquires
                    .remove(&acquire)
                    .is_some_and(|r| C::reply(r, Ok((lease, client_id))));
                if !delivered {
                    pool.release(now, lease);
                }
            }
            PoolEvent::AcquireFailed { acquire, error } => {
                if let Some(r) = self.acquires.remove(&acquire) {
                    C::reply(r, Err(error.into()));
                }
            }
            PoolEvent::Completed { ticket, result } => {
                if let Some(r) = self.calls.remove(&ticket) {
                    C::reply(r, result.map_err(PoolError::from));
                } else if let Some((reply, items)) = self.opening.remove(&ticket) {
                    match result {
                        Ok(_) => {
                            if C::reply(reply, Ok(ticket)) {
                                self.streams.insert(ticket, items);
                            } else {
                                // The subscriber left before the answer: cancel at the gateway.
                                pool.cancel(now, ticket);
                            }
                        }
                        Err(e) => drop(C::reply(reply, Err(e.into()))),
                    }
                }
            }
            PoolEvent::Stream { ticket, item } => {
                let Some(tx) = self.streams.get(&ticket) else {
                    return;
                };
                match C::push(tx, item) {
                    Offer::Sent => {}
                    Offer::Full => {
                        tracing::warn!(ticket = ticket.0, "stream consumer too slow; ending it");
                        self.streams.remove(&ticket);
                        pool.cancel(now, ticket);
                    }
                    Offer::Closed => {
                        self.streams.remove(&ticket);
                        pool.cancel(now, ticket);
                    }
                }
            }
            PoolEvent::StreamEnded { ticket, error } => {
                if let Some(tx) = self.streams.remove(&ticket) {
                    C::close(tx, error.map(PoolError::from));
                }
            }
            other => tracing::trace!(?other, "pool event"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

    use std::sync::mpsc;

    use super::*;
    use crate::client_id::{Holder, RegistryConfig, UnixMillis};
    use crate::pool::tests::Std;
    use crate::pool::{MemoryRegistry, PoolConfig};

    fn pool(now: Instant) -> Pool {
        let registry = MemoryRegistry::new(RegistryConfig::default(), Holder::from_pid(1));
        Pool::new(
            PoolConfig::default(),
            Box::new(registry),
            now,
            UnixMillis(1_700_000_000_000),
        )
    }

    /// Drain the pool's events through the router (socket commands are ignored: nothing dials).
    fn drain(router: &mut Router<Std>, pool: &mut Pool, now: Instant) {
        while pool.poll_io().is_some() {}
        while let Some(e) = pool.poll_event() {
            router.event(pool, now, e);
        }
    }

    #[test]
    fn an_acquire_that_times_out_gets_its_typed_error_on_its_own_channel() {
        let t0 = Instant::now();
        let mut pool = pool(t0);
        let mut router = Router::<Std>::new();
        let (tx, rx) = mpsc::sync_channel(1);
        let timeout = Duration::from_millis(50);
        let flow = router.command(
            &mut pool,
            t0,
            Some(Command::Acquire(Purpose::Backfill, Some(timeout), tx)),
        );
        assert!(matches!(flow, Flow::Running));
        drain(&mut router, &mut pool, t0);
        assert_eq!(router.pending(), 1);
        assert!(rx.try_recv().is_err(), "no answer before the deadline");

        let later = t0 + timeout;
        pool.handle_timeout(later);
        drain(&mut router, &mut pool, later);
        let answer = rx.try_recv().expect("answered at the deadline");
        assert!(
            matches!(answer, Err(PoolError::Acquire(_))),
            "got {answer:?}"
        );
        assert_eq!(router.pending(), 0);
    }

    #[test]
    fn an_event_answers_only_its_own_acquire() {
        let t0 = Instant::now();
        let mut pool = pool(t0);
        let timeout = Duration::from_millis(50);
        let mine = pool.acquire(t0, Purpose::Backfill, Some(timeout));
        let other = pool.acquire(t0, Purpose::Backfill, Some(timeout * 4));
        while pool.poll_io().is_some() {}
        while pool.poll_event().is_some() {}
        pool.handle_timeout(t0 + timeout);
        let event = pool.poll_event().expect("the first acquire times out");
        let event = event
            .answer_to(other)
            .expect_err("not the other acquire's answer");
        let answer = event.answer_to(mine).expect("this acquire's answer");
        assert!(
            matches!(answer, Err(PoolError::Acquire(_))),
            "got {answer:?}"
        );
    }

    #[test]
    fn a_call_on_an_unknown_lease_is_refused_at_once() {
        let t0 = Instant::now();
        let mut pool = pool(t0);
        let mut router = Router::<Std>::new();
        let (tx, rx) = mpsc::sync_channel(1);
        let cmd = Command::Call(LeaseId(99), Box::new(Query::CurrentTime), None, tx);
        assert!(matches!(
            router.command(&mut pool, t0, Some(cmd)),
            Flow::Running
        ));
        let answer = rx.try_recv().expect("refused synchronously");
        assert!(
            matches!(answer, Err(PoolError::Submit(_))),
            "got {answer:?}"
        );
        assert_eq!(router.pending(), 0);
    }

    #[test]
    fn shutdown_stops_with_the_reply_and_a_dropped_handle_stops_without() {
        let t0 = Instant::now();
        let mut pool = pool(t0);
        let mut router = Router::<Std>::new();
        let (tx, rx) = mpsc::sync_channel(1);
        match router.command(&mut pool, t0, Some(Command::Shutdown(tx))) {
            Flow::Stop(Some(reply)) => assert!(Std::reply(reply, ())),
            Flow::Stop(None) | Flow::Running => panic!("shutdown must stop with its reply"),
        }
        assert!(rx.try_recv().is_ok());
        assert!(pool.is_shut_down());

        let mut other = self::pool(t0);
        assert!(matches!(
            router.command(&mut other, t0, None),
            Flow::Stop(None)
        ));
        assert!(other.is_shut_down());
    }
}
