//! Requests on a lease: queued in the pool while the connection (re)connects, paced, sent,
//! answered (retried on pacing or a dropped session, kept open as a stream) or cancelled.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::pacing::paced;
use super::{
    CallError, LeaseId, Link, Pool, PoolEvent, Req, ReqState, SlotId, SubmitError, Ticket,
    LEDGER_RETRY,
};
use crate::classify::ErrorClass;
use crate::connection::{Answer, Query, RequestError, RequestId, SendError};
use crate::deadline::after;
use crate::pacer::{PacerError, SharedError, SharedHold};

impl Pool {
    /// Submit `query` on a lease. It waits in the pool while the connection is (re)connecting or
    /// until its pacing slot, then goes out; its outcome arrives as one [`PoolEvent::Completed`].
    /// `timeout` (default: the connection's request timeout) bounds the whole wait.
    pub fn send(
        &mut self,
        now: Instant,
        lease: LeaseId,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<Ticket, SubmitError> {
        self.advance(now);
        if self.shutting_down {
            return Err(SubmitError::ShuttingDown);
        }
        if !self.leases.contains_key(&lease) {
            return Err(if self.lost.contains(&lease) {
                SubmitError::LeaseLost(lease)
            } else {
                SubmitError::UnknownLease(lease)
            });
        }
        self.check_stream_limit(&query)?;
        let ticket = Ticket(self.fresh());
        let deadline = after(now, timeout.unwrap_or(self.cfg.connection.request_timeout));
        tracing::debug!(
            ticket = ticket.0,
            query = query.name(),
            "pool request queued"
        );
        self.stats.requests += 1;
        self.requests.insert(
            ticket,
            Req {
                lease,
                submitted: now,
                deadline,
                stream: matches!(query, Query::Stream(_)).then(Default::default),
                query,
                state: ReqState::Queued,
                delayed: false,
                held_by: None,
            },
        );
        self.update(now);
        Ok(ticket)
    }

    /// Cancel a request or stream; unknown tickets are ignored.
    pub fn cancel(&mut self, now: Instant, ticket: Ticket) {
        self.advance(now);
        let Some(req) = self.requests.get(&ticket) else {
            return;
        };
        match req.state {
            ReqState::Queued | ReqState::Paced { .. } => {
                let answered = req.stream.as_ref().is_some_and(|s| s.answered);
                self.unreserve(ticket);
                self.release_stream_hold(now, ticket);
                if answered {
                    // A stream waiting to be requested again: its answer went out long ago.
                    self.requests.remove(&ticket);
                } else {
                    self.finish(ticket, Err(CallError::Released));
                }
            }
            ReqState::Sent { .. } => {
                let Some(slot_id) = self.leases.get(&req.lease).copied() else {
                    return;
                };
                let id = self.slots.get(&slot_id).and_then(|s| {
                    s.sent
                        .iter()
                        .find(|(_, t)| **t == ticket)
                        .map(|(id, _)| *id)
                });
                if let (Some(id), Some(Link::Open { conn, .. })) =
                    (id, self.slots.get_mut(&slot_id).map(|s| &mut s.link))
                {
                    conn.cancel(now, id);
                }
                self.drive(now, slot_id);
            }
            ReqState::Streaming { slot, id } => {
                self.release_stream_hold(now, ticket);
                self.requests.remove(&ticket);
                if let Some(s) = self.slots.get_mut(&slot) {
                    s.sent.remove(&id);
                    if let Link::Open { conn, .. } = &mut s.link {
                        conn.cancel(now, id);
                    }
                }
                self.drive(now, slot);
            }
        }
    }

    /// Reserve and send queued requests on ready connections.
    pub(super) fn pump(&mut self, now: Instant) {
        // A claim that may have lapsed (the store was out of reach, the process stopped) is
        // renewed before a reserved request goes out on it: its slot may be someone else's now.
        let stale: BTreeSet<usize> = self
            .requests
            .values()
            .filter_map(|r| match r.state {
                ReqState::Paced { gateway, res, at } if at <= now && res.shared().is_some() => {
                    Some(gateway)
                }
                _ => None,
            })
            .filter(|g| {
                self.gateways
                    .get(*g)
                    .is_some_and(|g| g.pacer.claim_stale(now))
            })
            .collect();
        for gateway in stale {
            if !self.renew_gateway_pacing(now, gateway, true) {
                self.ledger_retry = Some(now + LEDGER_RETRY);
            }
        }
        let tickets: Vec<Ticket> = self
            .requests
            .iter()
            .filter(|(_, r)| matches!(r.state, ReqState::Queued | ReqState::Paced { .. }))
            .map(|(t, _)| *t)
            .collect();
        let mut touched = BTreeSet::new();
        for ticket in tickets {
            if let Some(slot_id) = self.pump_one(now, ticket) {
                touched.insert(slot_id);
            }
        }
        for slot_id in touched {
            self.drive(now, slot_id);
        }
    }

    /// Advance one request; returns the slot it was sent on.
    fn pump_one(&mut self, now: Instant, ticket: Ticket) -> Option<SlotId> {
        let req = self.requests.get_mut(&ticket)?;
        let slot_id = *self.leases.get(&req.lease)?;
        let slot = self.slots.get_mut(&slot_id)?;
        let gateway = slot.gateway;
        let conn = slot.ready_conn()?;
        if req.state == ReqState::Queued && self.ledger_retry.is_some_and(|r| now < r) {
            return None;
        }
        if req.state == ReqState::Queued {
            let pacer = &mut self.gateways.get_mut(gateway)?.pacer;
            match pacer.reserve(&mut *self.ledger, now, &paced(&req.query)) {
                Ok(grant) => {
                    req.state = ReqState::Paced {
                        gateway,
                        res: grant.hold,
                        at: grant.at,
                    };
                    req.held_by = grant.held_by;
                }
                Err(SharedError::Pacer(PacerError::OpenRequestsFull { .. })) => return None,
                Err(SharedError::Ledger(e)) => {
                    // Never unpaced: wait for the store, within the request's deadline.
                    self.ledger_wait(now, gateway, &e);
                    return None;
                }
                Err(SharedError::Pacer(e)) => {
                    self.finish(ticket, Err(CallError::Pacing(e)));
                    return None;
                }
            }
        }
        let ReqState::Paced {
            gateway: g,
            res,
            at,
        } = req.state
        else {
            return None;
        };
        if at > now {
            if !req.delayed {
                req.delayed = true;
                self.stats.pacing_waits += 1;
                self.stats.pacing_wait_ms += (at - now).as_millis() as u64;
                tracing::debug!(ticket = ticket.0, wait = ?(at - now), "request waits for pacing");
                self.events.push_back(PoolEvent::RequestDelayed {
                    ticket,
                    gateway: g,
                    until: at,
                    held_by: req.held_by,
                });
            }
            return None;
        }
        if res.shared().is_some()
            && self
                .gateways
                .get(g)
                .is_some_and(|gw| gw.pacer.claim_stale(now))
        {
            // The renewal above failed: wait for the store rather than send on a lapsed claim.
            return None;
        }
        let timeout = req.deadline.saturating_duration_since(now);
        match conn.send(now, req.query.clone(), Some(timeout)) {
            Ok(id) => {
                req.state = ReqState::Sent { gateway: g, res };
                slot.sent.insert(id, ticket);
                Some(slot_id)
            }
            Err(SendError::Closed) => {
                self.unreserve(ticket);
                None
            }
            Err(SendError::Unsupported(e)) => {
                self.unreserve(ticket);
                self.finish(ticket, Err(RequestError::Unsupported(e).into()));
                None
            }
        }
    }

    /// Give back a request's unsent reservation; it is `Queued` again.
    pub(super) fn unreserve(&mut self, ticket: Ticket) {
        let now = self.last_now;
        let Some(req) = self.requests.get_mut(&ticket) else {
            return;
        };
        if let ReqState::Paced { gateway, res, .. } = req.state {
            if let Some(g) = self.gateways.get_mut(gateway) {
                g.pacer.cancel(&mut *self.ledger, now, res);
            }
        }
        req.state = ReqState::Queued;
    }

    /// End every request of a lease whose connection is gone for good.
    pub(super) fn abandon_lease(&mut self, lease: LeaseId) {
        let tickets: Vec<(Ticket, ReqState)> = self
            .requests
            .iter()
            .filter(|(_, r)| r.lease == lease)
            .map(|(t, r)| (*t, r.state))
            .collect();
        for (ticket, state) in tickets {
            match state {
                ReqState::Sent { gateway, res } => {
                    if let Some(g) = self.gateways.get_mut(gateway) {
                        g.pacer.complete(&mut *self.ledger, self.last_now, res);
                    }
                    self.finish(ticket, Err(CallError::LeaseLost));
                }
                // A stream already answered: its subscriber hears why it stops.
                ReqState::Streaming { .. } => {
                    self.end_stream(self.last_now, ticket, Some(CallError::LeaseLost));
                }
                ReqState::Queued | ReqState::Paced { .. } => {
                    self.unreserve(ticket);
                    self.finish(ticket, Err(CallError::LeaseLost));
                }
            }
        }
    }

    /// A sent request was answered: give its pacer reservation back — unless `keep` (a stream
    /// that holds an open-request slot for its life: the reservation is returned) — and report
    /// a pacing violation to the pacer.
    pub(super) fn settle_reservation(
        &mut self,
        now: Instant,
        ticket: Ticket,
        result: &Result<Answer, RequestError>,
        keep: bool,
    ) -> Option<(usize, SharedHold)> {
        let ReqState::Sent { gateway, res } = self.requests.get(&ticket)?.state else {
            return None;
        };
        let g = self.gateways.get_mut(gateway)?;
        if !keep {
            g.pacer.complete(&mut *self.ledger, now, res);
        }
        if matches!(
            result,
            Err(RequestError::Api {
                class: ErrorClass::Pacing,
                ..
            })
        ) {
            g.pacer.on_violation(&mut *self.ledger, now);
            self.stats.pacing_violations += 1;
        }
        keep.then_some((gateway, res))
    }

    pub(super) fn finish(&mut self, ticket: Ticket, result: Result<Answer, CallError>) {
        if self.requests.remove(&ticket).is_some() {
            self.events
                .push_back(PoolEvent::Completed { ticket, result });
        }
    }

    pub(super) fn on_completed(
        &mut self,
        now: Instant,
        slot_id: SlotId,
        id: RequestId,
        ticket: Ticket,
        result: Result<Answer, RequestError>,
    ) {
        let Some(req) = self.requests.get_mut(&ticket) else {
            return;
        };
        if req.stream.is_some() {
            return self.stream_completed(now, slot_id, id, ticket, result);
        }
        self.settle_reservation(now, ticket, &result, false);
        let retry = match &result {
            Err(RequestError::Api { class, .. }) => {
                let class = *class;
                self.count(class);
                class == ErrorClass::Pacing
            }
            Err(RequestError::ConnectionClosed(_)) => true,
            _ => false,
        };
        let Some(req) = self.requests.get_mut(&ticket) else {
            return;
        };
        if retry && now < req.deadline && !self.shutting_down {
            tracing::warn!(ticket = ticket.0, error = ?result.err(), "request will be retried");
            self.stats.requests_retried += 1;
            req.state = ReqState::Queued;
            req.delayed = false;
            return;
        }
        let result = result.map_err(|e| match e {
            RequestError::Timeout { .. } => RequestError::Timeout {
                after: req.deadline.saturating_duration_since(req.submitted),
            },
            other => other,
        });
        let stream = matches!(&req.query, Query::HistoricalData(r) if r.keep_up_to_date);
        if stream && result.is_ok() {
            req.state = ReqState::Streaming { slot: slot_id, id };
            if let Some(slot) = self.slots.get_mut(&slot_id) {
                slot.sent.insert(id, ticket);
            }
            self.events.push_back(PoolEvent::Completed {
                ticket,
                result: result.map_err(CallError::from),
            });
        } else {
            self.finish(ticket, result.map_err(CallError::from));
        }
    }
}
