//! A stream's consumer side: [`Subscription`], a `futures::Stream` of [`StreamItem`]s behind a
//! bounded [`StreamBuffer`] the driver fills without ever waiting (ticks conflate, bars never
//! drop; see the buffer's policy), cancelled at the gateway when dropped.

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use async_channel::Sender;
use futures_core::Stream;
use ibconn_core::pool::{CallError, Offer, Ticket};
use ibconn_core::stream::{Push, StreamBuffer, StreamItem};

use crate::handles::{Cmd, PooledConnection};
use crate::Error;

/// What the driver and the consumer share.
#[derive(Debug)]
pub(crate) struct Shared {
    buffer: StreamBuffer,
    /// Set once the stream ended: `None` finished, else why.
    end: Option<Option<Error>>,
    waker: Option<Waker>,
    /// The consumer dropped its [`Subscription`].
    gone: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A consumer that panicked while holding the lock left the queue consistent (every
    // operation on it is a single push or pop).
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The driver's end of a stream's queue. Dropping it without [`ItemSender::close`] (the driver
/// stopped) ends the stream with [`Error::Closed`].
#[derive(Debug)]
pub(crate) struct ItemSender(Arc<Mutex<Shared>>);

impl ItemSender {
    pub(crate) fn push(&self, item: StreamItem) -> Offer {
        let mut s = lock(&self.0);
        if s.gone {
            return Offer::Closed;
        }
        let offer = match s.buffer.push(item) {
            Push::Overflow => {
                let queued = s.buffer.len();
                s.end
                    .get_or_insert(Some(Error::Call(CallError::ConsumerTooSlow { queued })));
                Offer::Full
            }
            Push::Queued | Push::Conflated | Push::Dropped => Offer::Sent,
        };
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        offer
    }

    pub(crate) fn close(self, error: Option<Error>) {
        let mut s = lock(&self.0);
        s.end.get_or_insert(error);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl Drop for ItemSender {
    fn drop(&mut self) {
        let mut s = lock(&self.0);
        if s.end.is_none() {
            s.end = Some(Some(Error::Closed));
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }
}

/// The consumer's side of a stream queue, before it becomes a [`Subscription`].
pub(crate) type SharedQueue = Arc<Mutex<Shared>>;

/// A new stream queue: the driver's sender and the shared state for the [`Subscription`].
pub(crate) fn queue(capacity: usize) -> (ItemSender, SharedQueue) {
    let shared = Arc::new(Mutex::new(Shared {
        buffer: StreamBuffer::new(capacity),
        end: None,
        waker: None,
        gone: false,
    }));
    (ItemSender(Arc::clone(&shared)), shared)
}

/// An open stream ([`PooledConnection::subscribe`], [`Pool::subscribe`](crate::Pool::subscribe)).
///
/// Yields `Ok(item)` until the stream ends: then `Err(error)` once if it failed (IB refused it,
/// its lease was lost, the pool shut down), and `None`. A stream the pool requests again after a
/// lost session yields [`StreamItem::Interrupted`] and then [`StreamItem::Gap`] — it does not
/// end. Dropping the subscription cancels the stream at the gateway.
pub struct Subscription {
    ticket: Ticket,
    shared: Arc<Mutex<Shared>>,
    tx: Sender<Cmd>,
    finished: bool,
    /// The lease [`Pool::subscribe`](crate::Pool::subscribe) took for this stream alone.
    _lease: Option<PooledConnection>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("ticket", &self.ticket)
            .field("queued", &lock(&self.shared).buffer.len())
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(
        ticket: Ticket,
        shared: Arc<Mutex<Shared>>,
        tx: Sender<Cmd>,
        lease: Option<PooledConnection>,
    ) -> Self {
        Self {
            ticket,
            shared,
            tx,
            finished: false,
            _lease: lease,
        }
    }

    /// The stream's ticket (as in the pool's events).
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// The next item (see the type's docs); `None` once the stream is over.
    pub async fn next(&mut self) -> Option<Result<StreamItem, Error>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for Subscription {
    type Item = Result<StreamItem, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let mut s = lock(&self.shared);
        if let Some(item) = s.buffer.pop() {
            return Poll::Ready(Some(Ok(item)));
        }
        match s.end.as_mut().map(Option::take) {
            Some(error) => {
                drop(s);
                self.finished = true;
                Poll::Ready(error.map(Err))
            }
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.shared).gone = true;
        if !self.finished {
            let _ = self.tx.try_send(Cmd::Unsubscribe(self.ticket));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ibconn_core::message::{Bar, BarTime};
    use ibconn_core::stream::StreamData;

    use super::*;

    fn bar(t: i64) -> StreamItem {
        StreamItem::Data(StreamData::Bar(Bar {
            date: BarTime::Epoch(t),
            ..Bar::default()
        }))
    }

    #[test]
    fn an_overflowing_queue_ends_itself_with_the_count_that_waits() {
        let (tx, shared) = queue(2);
        for t in 0..8 {
            assert_eq!(tx.push(bar(t)), Offer::Sent, "bar {t}");
        }
        assert_eq!(tx.push(bar(8)), Offer::Full);
        drop(tx);
        let mut s = lock(&shared);
        assert_eq!(s.buffer.len(), 8, "every bar kept");
        let end = s.end.take();
        assert!(
            matches!(
                end,
                Some(Some(Error::Call(CallError::ConsumerTooSlow { queued: 8 })))
            ),
            "{end:?}"
        );
    }
}
