//! Requests: ids, sending (or queueing until ready), cancels, deadlines, and assembling each
//! request's replies into one answer.

use std::time::{Duration, Instant};

use super::{
    Answer, Connection, Event, Kind, Pending, Query, RequestError, RequestId, SendError, State,
    TimeWaiter, CANCELLED_MEMORY,
};
use crate::deadline::after;
use crate::message::{Request, Response};
use crate::stream::{StreamData, StreamQuery};
use crate::wire::version;

impl Connection {
    /// Submit a query; its outcome arrives as exactly one [`Event::Completed`] with the returned id.
    /// `timeout` defaults to [`Config::request_timeout`]. Queries sent before the session is ready
    /// wait for it (their deadline keeps running).
    ///
    /// [`Config::request_timeout`]: super::Config::request_timeout
    pub fn send(
        &mut self,
        now: Instant,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<RequestId, SendError> {
        self.advance(now);
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if self.is_ready() {
            // Refuse up front what this server version cannot carry.
            self.to_request(RequestId(0), &query)
                .form(self.server_version)?;
        }
        let id = RequestId(self.next_req_id);
        self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
        self.stats.requests += 1;
        let deadline = after(now, timeout.unwrap_or(self.cfg.request_timeout));
        tracing::debug!(id = id.0, query = query.name(), "request submitted");
        if self.is_ready() {
            self.dispatch(now, id, query, deadline);
        } else {
            self.queued.push_back((id, query, now, deadline));
        }
        self.pump(now);
        Ok(id)
    }

    /// Cancel a request or an open stream. Sends IB's cancel where one exists; the request ends with
    /// [`RequestError::Cancelled`] unless it had already completed. Unknown ids are ignored.
    pub fn cancel(&mut self, now: Instant, id: RequestId) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        if let Some(pos) = self.queued.iter().position(|(q, ..)| *q == id) {
            self.queued.remove(pos);
            return self.complete(id, Err(RequestError::Cancelled));
        }
        if let Some(pos) = self.time_waiters.iter().position(|w| w.id == id) {
            self.time_waiters.remove(pos);
            return self.complete(id, Err(RequestError::Cancelled));
        }
        if let Some(p) = self.pending.remove(&id.0) {
            self.send_cancel(id, p.kind);
            if !p.streaming {
                self.complete(id, Err(RequestError::Cancelled));
            }
        }
    }

    pub(super) fn handle_response(&mut self, now: Instant, resp: Response) {
        match resp {
            Response::NextValidId { order_id } => {
                if let State::ExpectStartup { next_valid_id, .. } = &mut self.state {
                    *next_valid_id = Some(order_id);
                }
                self.maybe_ready(now);
            }
            Response::ManagedAccounts { accounts: list } => {
                if let State::ExpectStartup { accounts, .. } = &mut self.state {
                    *accounts = Some(list);
                }
                self.maybe_ready(now);
            }
            Response::Error(e) => self.handle_error(now, e),
            Response::CurrentTime { time } => self.answer_time(now, false, time),
            Response::CurrentTimeInMillis { millis } => self.answer_time(now, true, millis),
            Response::HistoricalData {
                req_id,
                start,
                end,
                bars,
            } => {
                let inline_end = self.server_version < version::HISTORICAL_DATA_END;
                // A stream that already answered buffers no more bars: updates carry it on.
                let Some(p) = self.pending.get_mut(&req_id).filter(|p| !p.streaming) else {
                    return;
                };
                if p.bars.len().saturating_add(bars.len()) > self.cfg.max_answer_items {
                    return self.answer_too_large(req_id);
                }
                p.bars.extend(bars);
                if inline_end {
                    p.window = (start, end);
                    self.finish_bars(req_id);
                }
            }
            Response::HistoricalDataEnd { req_id, start, end } => {
                if let Some(p) = self.pending.get_mut(&req_id).filter(|p| !p.streaming) {
                    p.window = (start, end);
                    self.finish_bars(req_id);
                }
            }
            Response::HistoricalDataUpdate { req_id, bar } => {
                if self.pending.get(&req_id).is_some_and(|p| p.streaming) {
                    self.events.push_back(Event::Stream {
                        id: RequestId(req_id),
                        data: StreamData::Bar(bar),
                    });
                }
            }
            Response::Market(reply) => {
                let req_id = reply.req_id();
                if !self.pending.get(&req_id).is_some_and(|p| p.streaming) {
                    return;
                }
                let id = RequestId(req_id);
                match StreamData::from_reply(reply) {
                    Some(data) => self.events.push_back(Event::Stream { id, data }),
                    // The snapshot is complete: the stream ends by itself (nothing to cancel).
                    None => {
                        self.pending.remove(&req_id);
                        self.events
                            .push_back(Event::StreamEnded { id, error: None });
                    }
                }
            }
            Response::HeadTimestamp { req_id, timestamp } => {
                if self.pending.remove(&req_id).is_some() {
                    self.succeed(RequestId(req_id), Answer::HeadTimestamp(timestamp));
                }
            }
            Response::ContractData {
                req_id,
                contract,
                details,
            } => {
                if let Some(p) = self.pending.get_mut(&req_id) {
                    if p.details.len() >= self.cfg.max_answer_items {
                        return self.answer_too_large(req_id);
                    }
                    p.details.push((*contract, *details));
                }
            }
            Response::ContractDataEnd { req_id } => {
                if let Some(p) = self.pending.remove(&req_id) {
                    self.succeed(RequestId(req_id), Answer::ContractDetails(p.details));
                }
            }
            Response::SymbolSamples {
                req_id,
                descriptions,
            } => {
                if self.pending.remove(&req_id).is_some() {
                    self.succeed(RequestId(req_id), Answer::Symbols(descriptions));
                }
            }
            other => tracing::debug!(msg = other.name(), id = other.id(), "ignored message"),
        }
    }

    fn finish_bars(&mut self, req_id: i32) {
        let Some(p) = self.pending.get_mut(&req_id) else {
            return;
        };
        let answer = Answer::Bars {
            bars: std::mem::take(&mut p.bars),
            start: std::mem::take(&mut p.window.0),
            end: std::mem::take(&mut p.window.1),
        };
        if matches!(p.kind, Kind::Historical { stream: true }) {
            p.streaming = true;
        } else {
            self.pending.remove(&req_id);
        }
        self.succeed(RequestId(req_id), answer);
    }

    /// End a request whose answer outgrew [`Config::max_answer_items`]: cancel it at the gateway
    /// (its later frames are then ignored as a cancelled request's) and fail it.
    ///
    /// [`Config::max_answer_items`]: super::Config::max_answer_items
    fn answer_too_large(&mut self, req_id: i32) {
        let Some(p) = self.pending.remove(&req_id) else {
            return;
        };
        let max = self.cfg.max_answer_items;
        tracing::warn!(id = req_id, max, "answer too large; cancelling the request");
        self.send_cancel(RequestId(req_id), p.kind);
        self.stats.failed += 1;
        self.complete(RequestId(req_id), Err(RequestError::AnswerTooLarge { max }));
    }

    pub(super) fn expire_requests(&mut self, now: Instant) {
        let expired: Vec<i32> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.streaming && now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                tracing::debug!(id, "request timed out; cancelling");
                self.send_cancel(RequestId(id), p.kind);
                self.time_out(RequestId(id), p.deadline - p.submitted);
            }
        }
        let mut i = 0;
        while i < self.queued.len() {
            if now >= self.queued[i].3 {
                if let Some((id, _, submitted, deadline)) = self.queued.remove(i) {
                    self.time_out(id, deadline - submitted);
                }
            } else {
                i += 1;
            }
        }
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.time_waiters)
            .into_iter()
            .partition(|w| now >= w.deadline);
        self.time_waiters = keep;
        for w in late {
            self.time_out(w.id, w.deadline - w.submitted);
        }
    }

    fn time_out(&mut self, id: RequestId, after: Duration) {
        self.stats.timed_out += 1;
        self.complete(id, Err(RequestError::Timeout { after }));
    }

    pub(super) fn dispatch(
        &mut self,
        now: Instant,
        id: RequestId,
        query: Query,
        deadline: Instant,
    ) {
        let kind = match &query {
            Query::CurrentTime | Query::CurrentTimeMillis => {
                self.time_waiters.push(TimeWaiter {
                    id,
                    millis: matches!(query, Query::CurrentTimeMillis),
                    submitted: now,
                    deadline,
                });
                return;
            }
            Query::HistoricalData(r) => Kind::Historical {
                stream: r.keep_up_to_date,
            },
            Query::HeadTimestamp(_) => Kind::HeadTimestamp,
            Query::ContractDetails(_) => Kind::ContractDetails,
            Query::MatchingSymbols(_) => Kind::MatchingSymbols,
            Query::Stream(StreamQuery::BarUpdates(_)) => Kind::Historical { stream: true },
            Query::Stream(q) => Kind::Stream(q.kind()),
        };
        if let Some(data_type) = match &query {
            Query::Stream(q) => q.data_type_request(),
            _ => None,
        } {
            // Session-wide at IB: it applies to the requests that follow, so it goes with each.
            self.write(now, &data_type);
        }
        let request = self.to_request(id, &query);
        self.write(now, &request);
        // IB acknowledges no subscription: it streams from the moment it is sent.
        let streaming = matches!(kind, Kind::Stream(_));
        self.pending.insert(
            id.0,
            Pending {
                kind,
                submitted: now,
                deadline,
                streaming,
                bars: Vec::new(),
                window: (String::new(), String::new()),
                details: Vec::new(),
            },
        );
        if streaming {
            self.succeed(id, Answer::Subscribed);
        }
    }

    /// Drop an open stream without cancelling it at the gateway, which no longer holds it
    /// (after 1101 "data lost"); its late frames are ignored. Unknown ids are ignored.
    pub fn forget(&mut self, now: Instant, id: RequestId) {
        self.advance(now);
        if self.pending.get(&id.0).is_some_and(|p| p.streaming) {
            self.pending.remove(&id.0);
            self.remember_cancelled(id);
        }
    }

    pub(super) fn to_request(&self, id: RequestId, query: &Query) -> Request {
        match query {
            Query::CurrentTime => Request::ReqCurrentTime,
            Query::CurrentTimeMillis => Request::ReqCurrentTimeInMillis,
            Query::HistoricalData(q) => Request::ReqHistoricalData(q.to_wire(id.0)),
            Query::HeadTimestamp(q) => Request::ReqHeadTimestamp(q.to_wire(id.0)),
            Query::ContractDetails(c) => Request::ReqContractDetails {
                req_id: id.0,
                contract: c.clone(),
            },
            Query::MatchingSymbols(p) => Request::ReqMatchingSymbols {
                req_id: id.0,
                pattern: p.clone(),
            },
            Query::Stream(q) => q.to_wire(id.0),
        }
    }

    fn send_cancel(&mut self, id: RequestId, kind: Kind) {
        let cancel = match kind {
            Kind::Historical { .. } => Some(Request::CancelHistoricalData { req_id: id.0 }),
            Kind::HeadTimestamp => Some(Request::CancelHeadTimestamp { req_id: id.0 }),
            Kind::ContractDetails if self.server_version >= version::CANCEL_CONTRACT_DATA => {
                Some(Request::CancelContractData { req_id: id.0 })
            }
            Kind::Stream(kind) => Some(kind.cancel(id.0)),
            _ => None,
        };
        if let Some(cancel) = cancel {
            let now = self.last_now;
            self.write(now, &cancel);
        }
        self.remember_cancelled(id);
    }

    /// Recognise `id`'s late replies (and IB's answer to our cancel) as a cancelled request's.
    fn remember_cancelled(&mut self, id: RequestId) {
        if self.cancelled.len() == CANCELLED_MEMORY {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(id.0);
    }

    pub(super) fn succeed(&mut self, id: RequestId, answer: Answer) {
        self.stats.answered += 1;
        self.complete(id, Ok(answer));
    }

    pub(super) fn complete(&mut self, id: RequestId, result: Result<Answer, RequestError>) {
        self.events.push_back(Event::Completed { id, result });
    }
}
