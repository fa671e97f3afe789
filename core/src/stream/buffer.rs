//! The bounded queue between the pool and one stream's consumer, with the overflow policy:
//!
//! - below `capacity` everything is queued;
//! - when full, a level-1 tick **conflates**: it replaces the queued tick of the same field (its
//!   latest value is all that matters), else the oldest queued tick or tick-by-tick tick is
//!   dropped to make room;
//! - a tick-by-tick tick, when full, drops the oldest queued tick (of either kind);
//! - bars and the stream's own items (gaps, interruptions, notices) are **never dropped**: they
//!   may exceed `capacity` up to four times it; past that the consumer is hopelessly behind and
//!   [`Push::Overflow`] tells the owner to end the stream with an error instead of growing.
//!
//! Every conflated or dropped tick is counted; the consumer's next item is then
//! [`StreamItem::Lagged`] with the count, so lag is never silent.

use std::collections::VecDeque;

use super::{StreamData, StreamItem};

/// Items a stream's queue holds before its overflow policy applies.
pub const STREAM_BUFFER: usize = 1024;

/// What [`StreamBuffer::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Push {
    /// Queued.
    Queued,
    /// Replaced the queued tick of the same field.
    Conflated,
    /// Queued after dropping an older tick, or not queued (a tick with nothing to make room).
    Dropped,
    /// Not queued: bars or control items past the hard cap. End the stream.
    Overflow,
}

/// One stream's bounded queue (see the [module docs](self) for the policy).
#[derive(Debug, Clone)]
pub struct StreamBuffer {
    queue: VecDeque<StreamItem>,
    capacity: usize,
    dropped: u64,
}

impl Default for StreamBuffer {
    fn default() -> Self {
        Self::new(STREAM_BUFFER)
    }
}

impl StreamBuffer {
    /// A queue that applies its policy from `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Items queued (a pending [`StreamItem::Lagged`] not counted).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Nothing to pop.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.dropped == 0
    }

    /// The most items it ever holds: four times the capacity.
    pub fn hard_cap(&self) -> usize {
        self.capacity.saturating_mul(4)
    }

    /// Queue `item` under the policy.
    pub fn push(&mut self, item: StreamItem) -> Push {
        if self.queue.len() < self.capacity {
            self.queue.push_back(item);
            return Push::Queued;
        }
        let droppable = match &item {
            StreamItem::Data(StreamData::Tick(tick)) => {
                let field = tick.field();
                let same = self.queue.iter_mut().rev().find(
                    |q| matches!(q, StreamItem::Data(StreamData::Tick(t)) if t.field() == field),
                );
                if let Some(slot) = same {
                    *slot = item;
                    self.dropped += 1;
                    return Push::Conflated;
                }
                true
            }
            StreamItem::Data(StreamData::TickByTick(_)) => true,
            _ => false,
        };
        if !droppable {
            if self.queue.len() >= self.hard_cap() {
                return Push::Overflow;
            }
            self.queue.push_back(item);
            return Push::Queued;
        }
        self.dropped += 1;
        let oldest = self.queue.iter().position(|q| {
            matches!(
                q,
                StreamItem::Data(StreamData::Tick(_) | StreamData::TickByTick(_))
            )
        });
        if let Some(i) = oldest {
            self.queue.remove(i);
            self.queue.push_back(item);
        }
        Push::Dropped
    }

    /// The next item: [`StreamItem::Lagged`] first if anything was conflated or dropped since
    /// the last one.
    pub fn pop(&mut self) -> Option<StreamItem> {
        if self.dropped > 0 {
            let dropped = std::mem::take(&mut self.dropped);
            return Some(StreamItem::Lagged { dropped });
        }
        self.queue.pop_front()
    }
}
