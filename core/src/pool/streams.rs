//! Streams on a lease: first-class subscriptions that outlive their session. A stream owns its
//! query; when its session drops, IB reports 1101 ("data lost") or a bust (10225), the pool
//! takes it back to the queue ([`StreamItem::Interrupted`]) and sends it again on the next ready
//! session — paced, under a fresh request id — and reports [`StreamItem::Gap`] once it flows.
//! After 1102 ("data maintained") nothing is re-requested. Keep-up-to-date bars fill the gap
//! from the re-request's history.

use std::time::{Duration, Instant};

use super::{CallError, Pool, PoolEvent, ReqState, SlotId, SubmitError, Ticket};
use crate::classify::{Advice, ErrorClass};
use crate::client_id::UnixMillis;
use crate::connection::{Answer, Query, RequestError, RequestId};
use crate::deadline::after;
use crate::message::BarTime;
use crate::pacer::SharedHold;
use crate::stream::{StreamData, StreamItem, StreamKind, StreamLimits, StreamQuery};

/// How long an answered stream waits in the queue for a session: as long as its lease lives.
const STREAM_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What the pool keeps about a stream beyond its request.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// Its first answer went to the subscriber; later ones are re-requests.
    pub(super) answered: bool,
    /// Interrupted at (wall clock), until it flows again.
    interrupted: Option<UnixMillis>,
    /// Time of the last keep-up-to-date bar delivered (epoch seconds).
    last_bar: Option<i64>,
    /// A keep-up-to-date stream's pacer reservation: an open historical request for its life.
    hold: Option<(usize, SharedHold)>,
}

impl Pool {
    /// Refuse a stream that would go over one of IB's caps ([`StreamLimits`]).
    pub(super) fn check_stream_limit(&self, query: &Query) -> Result<(), SubmitError> {
        let Query::Stream(q) = query else {
            return Ok(());
        };
        if q.is_snapshot() {
            return Ok(());
        }
        let kind = q.kind();
        let limit = self.cfg.streams.cap(kind);
        let open: usize = self
            .open_streams()
            .iter()
            .filter(|(k, _)| StreamLimits::same_cap(**k, kind))
            .map(|(_, n)| n)
            .sum();
        if open >= limit {
            return Err(SubmitError::StreamLimit { kind, limit });
        }
        Ok(())
    }

    /// Streams open now by kind (answered, or queued to be requested again).
    pub(super) fn open_streams(&self) -> std::collections::BTreeMap<StreamKind, usize> {
        let mut open = std::collections::BTreeMap::new();
        for kind in self.requests.values().filter_map(|r| r.stream_kind()) {
            *open.entry(kind).or_insert(0) += 1;
        }
        open
    }

    /// A stream's request was answered (`Ok`: sent, or a keep-up-to-date stream's first bars)
    /// or refused.
    pub(super) fn stream_completed(
        &mut self,
        now: Instant,
        slot_id: SlotId,
        id: RequestId,
        ticket: Ticket,
        result: Result<Answer, RequestError>,
    ) {
        let wall = self.wall_at(now);
        let Some(req) = self.requests.get(&ticket) else {
            return;
        };
        // A keep-up-to-date stream holds its open-request slot for its life.
        let keep_open =
            result.is_ok() && matches!(req.query, Query::Stream(StreamQuery::BarUpdates(_)));
        let hold = self.settle_reservation(now, ticket, &result, keep_open);
        if let Some(state) = self
            .requests
            .get_mut(&ticket)
            .and_then(|r| r.stream.as_mut())
        {
            if hold.is_some() {
                state.hold = hold;
            }
        }
        let answer = match result {
            Ok(answer) => answer,
            Err(error) => return self.stream_failed(now, ticket, error),
        };
        let Some(req) = self.requests.get_mut(&ticket) else {
            return;
        };
        let state = req.stream.get_or_insert_with(Default::default);
        let mut items = Vec::new();
        if let Some(from) = state.interrupted.take() {
            items.push(StreamItem::Gap { from, to: wall });
            self.stats.streams.resubscribed += 1;
        }
        if let Answer::Bars { bars, .. } = answer {
            for bar in bars {
                let t = match bar.date {
                    BarTime::Epoch(t) => Some(t),
                    _ => None,
                };
                // On a re-request only the bars after the last one delivered fill the gap.
                if state.answered && t.is_some_and(|t| state.last_bar.is_some_and(|l| t < l)) {
                    continue;
                }
                state.last_bar = t.or(state.last_bar);
                items.push(StreamItem::Data(StreamData::Bar(bar)));
            }
        }
        let first = !std::mem::replace(&mut state.answered, true);
        req.state = ReqState::Streaming { slot: slot_id, id };
        if let Some(slot) = self.slots.get_mut(&slot_id) {
            slot.sent.insert(id, ticket);
        }
        if first {
            tracing::debug!(ticket = ticket.0, "stream open");
            self.events.push_back(PoolEvent::Completed {
                ticket,
                result: Ok(Answer::Subscribed),
            });
        } else {
            tracing::info!(ticket = ticket.0, "stream requested again");
        }
        for item in items {
            self.emit(ticket, item);
        }
    }

    /// Data on an open stream.
    pub(super) fn stream_data(&mut self, slot_id: SlotId, id: RequestId, data: StreamData) {
        let Some(&ticket) = self.slots.get(&slot_id).and_then(|s| s.sent.get(&id)) else {
            return;
        };
        if let (StreamData::Bar(bar), Some(req)) = (&data, self.requests.get_mut(&ticket)) {
            if let (BarTime::Epoch(t), Some(state)) = (&bar.date, req.stream.as_mut()) {
                state.last_bar = Some(*t);
            }
        }
        self.emit(ticket, StreamItem::Data(data));
    }

    /// An open stream ended at the session: finished, to be requested again, or failed.
    pub(super) fn stream_ended(
        &mut self,
        now: Instant,
        slot_id: SlotId,
        id: RequestId,
        error: Option<RequestError>,
    ) {
        let Some(ticket) = self
            .slots
            .get_mut(&slot_id)
            .and_then(|s| s.sent.remove(&id))
        else {
            return;
        };
        match error {
            None => self.end_stream(now, ticket, None),
            Some(error) => self.stream_failed(now, ticket, error),
        }
    }

    /// After 1101 ("data lost") on a session: the gateway dropped its streams; request each
    /// again (IB's advice), without a cancel the gateway would not recognise.
    pub(super) fn resubscribe_slot(&mut self, now: Instant, slot_id: SlotId) {
        let Some(slot) = self.slots.get(&slot_id) else {
            return;
        };
        let streams: Vec<(RequestId, Ticket)> = slot
            .sent
            .iter()
            .filter(|(_, t)| {
                self.requests.get(t).is_some_and(|r| {
                    r.stream.is_some() && matches!(r.state, ReqState::Streaming { .. })
                })
            })
            .map(|(id, t)| (*id, *t))
            .collect();
        for (id, ticket) in streams {
            if let Some(slot) = self.slots.get_mut(&slot_id) {
                slot.sent.remove(&id);
                if let super::Link::Open { conn, .. } = &mut slot.link {
                    conn.forget(now, id);
                }
            }
            self.requeue_stream(
                now,
                ticket,
                "1101: the gateway's link to IB was restored, data lost",
            );
        }
    }

    /// Whether `error` only interrupts a stream (it is requested again) rather than ending it.
    fn interrupts(error: &RequestError) -> bool {
        match error {
            RequestError::ConnectionClosed(_) => true,
            RequestError::Api { class, advice, .. } => {
                matches!(class, ErrorClass::Pacing | ErrorClass::DuplicateId)
                    || *advice == Advice::Resubscribe
            }
            _ => false,
        }
    }

    fn stream_failed(&mut self, now: Instant, ticket: Ticket, error: RequestError) {
        if let RequestError::Api { class, .. } = &error {
            self.count(*class);
        }
        let Some(req) = self.requests.get(&ticket) else {
            return;
        };
        let answered = req.stream.as_ref().is_some_and(|s| s.answered);
        let in_time = answered || now < req.deadline;
        if Self::interrupts(&error) && in_time && !self.shutting_down {
            let reason = match &error {
                RequestError::ConnectionClosed(why) => format!("session lost: {why}"),
                other => other.to_string(),
            };
            return self.requeue_stream(now, ticket, &reason);
        }
        if answered {
            self.end_stream(now, ticket, Some(CallError::from(error)));
        } else {
            self.release_stream_hold(now, ticket);
            self.finish(ticket, Err(CallError::from(error)));
        }
    }

    /// Back to the queue, to be sent again on the next ready session of its lease.
    fn requeue_stream(&mut self, now: Instant, ticket: Ticket, reason: &str) {
        self.release_stream_hold(now, ticket);
        let wall = self.wall_at(now);
        let Some(req) = self.requests.get_mut(&ticket) else {
            return;
        };
        req.state = ReqState::Queued;
        req.delayed = false;
        let state = req.stream.get_or_insert_with(Default::default);
        if !state.answered {
            // Not answered yet: an ordinary retry within the subscribe call's deadline.
            self.stats.requests_retried += 1;
            return;
        }
        req.deadline = after(now, STREAM_WAIT);
        if state.interrupted.is_none() {
            state.interrupted = Some(wall);
            self.stats.streams.interrupted += 1;
            tracing::warn!(
                ticket = ticket.0,
                reason,
                "stream interrupted; requesting it again"
            );
            self.emit(
                ticket,
                StreamItem::Interrupted {
                    at: wall,
                    reason: reason.to_owned(),
                },
            );
        }
    }

    /// The stream is over: its subscriber hears why (`None`: it finished).
    pub(super) fn end_stream(&mut self, now: Instant, ticket: Ticket, error: Option<CallError>) {
        self.release_stream_hold(now, ticket);
        if self.requests.remove(&ticket).is_some() {
            self.events
                .push_back(PoolEvent::StreamEnded { ticket, error });
        }
    }

    /// Give a keep-up-to-date stream's open-request slot back to the pacer.
    pub(super) fn release_stream_hold(&mut self, now: Instant, ticket: Ticket) {
        let hold = self
            .requests
            .get_mut(&ticket)
            .and_then(|r| r.stream.as_mut())
            .and_then(|s| s.hold.take());
        if let Some((gateway, res)) = hold {
            if let Some(g) = self.gateways.get_mut(gateway) {
                g.pacer.complete(&mut *self.ledger, now, res);
            }
        }
    }

    fn emit(&mut self, ticket: Ticket, item: StreamItem) {
        self.stats.streams.items += 1;
        self.events.push_back(PoolEvent::Stream { ticket, item });
    }
}
