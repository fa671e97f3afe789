//! The deterministic event queue under the shared virtual network (`virtual_net`) both
//! harnesses ([`World`](crate::World) and [`PoolWorld`](crate::PoolWorld)) run on: earliest
//! instant first, ties in insertion order.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

/// One queued item; ordered by `(at, seq)` only.
#[derive(Debug)]
struct Entry<T> {
    at: Instant,
    seq: u64,
    what: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A min-heap of deliveries with a sequence-number tie-break, so same-instant items come out in
/// the order they went in (no dependence on heap internals).
#[derive(Debug)]
pub(crate) struct Schedule<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
}

impl<T> Schedule<T> {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Queue `what` for `at`.
    pub(crate) fn push(&mut self, at: Instant, what: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            what,
        }));
    }

    /// When the next item is due.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// The next item due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_at()? <= now {
            self.heap.pop().map(|Reverse(e)| e.what)
        } else {
            None
        }
    }

    /// Items queued.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
