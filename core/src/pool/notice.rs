//! What runtime users may observe of a pool ([`PoolNotice`]), and the runtime-agnostic
//! bookkeeping that fans notices out to bounded subscriber queues ([`NoticeFanout`]).
//!
//! The pool decides which [`PoolEvent`]s are user-visible ([`PoolNotice::from_event`]); a runtime
//! only owns the channels and calls [`NoticeFanout::publish`] with a non-blocking send.

use crate::classify::Connectivity;
use crate::client_id::ClientId;
use crate::connection::ConnectionError;

use super::types::{AcquireError, LeaseId, PoolEvent};

/// Default queue length of one notice subscriber.
pub const NOTICE_BUFFER: usize = 64;

/// A session-level change a pool user may need to act on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PoolNotice {
    /// A session became ready.
    Connected {
        /// Its client id.
        client_id: ClientId,
        /// Index of its gateway in [`PoolConfig::gateways`](super::PoolConfig::gateways).
        gateway: usize,
    },
    /// A ready session ended (the pool redials if it still has users).
    Disconnected {
        /// Its client id.
        client_id: ClientId,
        /// Why.
        reason: ConnectionError,
    },
    /// The gateway's link to IB changed (1100/1101/1102/2110).
    Connectivity {
        /// The session that reported it.
        client_id: ClientId,
        /// The change.
        change: Connectivity,
    },
    /// After 1101 (data lost): streams opened through these leases must be requested again.
    Resubscribe {
        /// The session.
        client_id: ClientId,
        /// Leases on it.
        leases: Vec<LeaseId>,
    },
    /// A lease is gone: its connection had no client id left (see
    /// [`PoolEvent::LeaseLost`]). Its open requests ended with
    /// [`CallError::LeaseLost`](super::CallError::LeaseLost); acquire a new lease.
    LeaseLost {
        /// The lease.
        lease: LeaseId,
        /// The last client id its connection had.
        client_id: ClientId,
        /// Why no id was left.
        error: AcquireError,
    },
    /// The gateway's pacing store failed (`error`: its requests wait, none is sent unpaced) or
    /// answers again (`None`).
    PacingStore {
        /// Index of the gateway in [`PoolConfig::gateways`](super::PoolConfig::gateways).
        gateway: usize,
        /// What failed, or `None` once a step succeeded again.
        error: Option<String>,
    },
    /// A request waits for its pacing slot (once per request; see
    /// [`PoolEvent::RequestDelayed`]).
    PacingWait {
        /// Index of the gateway in [`PoolConfig::gateways`](super::PoolConfig::gateways).
        gateway: usize,
        /// When it will be sent.
        until: std::time::Instant,
        /// The rule that holds it back.
        held_by: Option<crate::pacer::Hold>,
    },
    /// This subscriber's queue was full and `count` notices were dropped (the newest ones, at the
    /// time). Delivered before the next notice that fits.
    Missed {
        /// Notices dropped since the last one delivered.
        count: u64,
    },
}

impl PoolNotice {
    /// The user-visible part of a pool event (`None` for request plumbing: acquires, tickets).
    pub fn from_event(event: &PoolEvent) -> Option<Self> {
        Some(match event {
            PoolEvent::Connected { client_id, gateway } => Self::Connected {
                client_id: *client_id,
                gateway: *gateway,
            },
            PoolEvent::Disconnected { client_id, reason } => Self::Disconnected {
                client_id: *client_id,
                reason: reason.clone(),
            },
            PoolEvent::Connectivity { client_id, change } => Self::Connectivity {
                client_id: *client_id,
                change: *change,
            },
            PoolEvent::Resubscribe { client_id, leases } => Self::Resubscribe {
                client_id: *client_id,
                leases: leases.clone(),
            },
            PoolEvent::RequestDelayed {
                gateway,
                until,
                held_by,
                ..
            } => Self::PacingWait {
                gateway: *gateway,
                until: *until,
                held_by: *held_by,
            },
            PoolEvent::PacingStore { gateway, error } => Self::PacingStore {
                gateway: *gateway,
                error: error.clone(),
            },
            PoolEvent::LeaseLost {
                lease,
                client_id,
                error,
            } => Self::LeaseLost {
                lease: *lease,
                client_id: *client_id,
                error: error.clone(),
            },
            _ => return None,
        })
    }
}

/// The outcome of a non-blocking send into one subscriber's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Sent,
    /// The queue is full; the notice was not queued.
    Full,
    /// The receiver is gone; the subscriber is dropped.
    Closed,
}

/// Subscribers of [`PoolNotice`]s, each behind a bounded queue of the runtime's choosing (`S` is
/// its sender). Publishing never blocks: a full queue loses the new notice, and the subscriber
/// gets one [`PoolNotice::Missed`] with the count before the next notice that fits.
#[derive(Debug)]
pub struct NoticeFanout<S> {
    subscribers: Vec<(S, u64)>,
}

impl<S> Default for NoticeFanout<S> {
    fn default() -> Self {
        Self {
            subscribers: Vec::new(),
        }
    }
}

impl<S> NoticeFanout<S> {
    /// No subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a subscriber; it sees notices published from now on.
    pub fn subscribe(&mut self, sink: S) {
        self.subscribers.push((sink, 0));
    }

    /// Live subscribers (closed ones are dropped on the next publish).
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Whether there is no subscriber.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Offer `notice` to every subscriber through `try_send`, which must not block.
    pub fn publish(
        &mut self,
        notice: &PoolNotice,
        mut try_send: impl FnMut(&S, PoolNotice) -> Offer,
    ) {
        self.subscribers.retain_mut(|(sink, missed)| {
            if *missed > 0 {
                match try_send(sink, PoolNotice::Missed { count: *missed }) {
                    Offer::Sent => *missed = 0,
                    Offer::Full => {
                        *missed += 1;
                        return true;
                    }
                    Offer::Closed => return false,
                }
            }
            match try_send(sink, notice.clone()) {
                Offer::Sent => true,
                Offer::Full => {
                    *missed += 1;
                    true
                }
                Offer::Closed => false,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    /// A bounded queue standing in for a runtime channel.
    #[derive(Debug)]
    struct Queue {
        cap: usize,
        items: RefCell<VecDeque<PoolNotice>>,
        closed: bool,
    }

    fn queue(cap: usize) -> Queue {
        Queue {
            cap,
            items: RefCell::new(VecDeque::new()),
            closed: false,
        }
    }

    fn try_send(q: &Queue, n: PoolNotice) -> Offer {
        let mut items = q.items.borrow_mut();
        if q.closed {
            Offer::Closed
        } else if items.len() >= q.cap {
            Offer::Full
        } else {
            items.push_back(n);
            Offer::Sent
        }
    }

    fn connected(client_id: ClientId) -> PoolNotice {
        PoolNotice::Connected {
            client_id,
            gateway: 0,
        }
    }

    #[test]
    fn only_session_events_are_notices() {
        let event = PoolEvent::Resubscribe {
            client_id: 7,
            leases: vec![LeaseId(3)],
        };
        assert_eq!(
            PoolNotice::from_event(&event),
            Some(PoolNotice::Resubscribe {
                client_id: 7,
                leases: vec![LeaseId(3)]
            })
        );
        assert_eq!(PoolNotice::from_event(&PoolEvent::ShutDown), None);
        let lost = PoolEvent::LeaseLost {
            lease: LeaseId(4),
            client_id: 2000,
            error: AcquireError::ShuttingDown,
        };
        assert!(matches!(
            PoolNotice::from_event(&lost),
            Some(PoolNotice::LeaseLost {
                lease: LeaseId(4),
                client_id: 2000,
                ..
            })
        ));
    }

    #[test]
    fn a_full_queue_drops_the_newest_and_reports_the_count_later() {
        let mut fan = NoticeFanout::new();
        fan.subscribe(queue(2));
        for id in 1..=5 {
            fan.publish(&connected(id), try_send);
        }
        let drain = |fan: &NoticeFanout<Queue>| -> Vec<PoolNotice> {
            fan.subscribers[0].0.items.borrow_mut().drain(..).collect()
        };
        assert_eq!(drain(&fan), [connected(1), connected(2)]);
        fan.publish(&connected(6), try_send);
        assert_eq!(drain(&fan), [PoolNotice::Missed { count: 3 }, connected(6)]);
    }

    #[test]
    fn closed_subscribers_are_dropped() {
        let mut fan = NoticeFanout::new();
        fan.subscribe(queue(4));
        let mut gone = queue(4);
        gone.closed = true;
        fan.subscribe(gone);
        fan.publish(&connected(1), try_send);
        assert_eq!(fan.len(), 1);
    }
}
