//! IB's `error` messages routed through the classifier: a request's failure, a reply to our own
//! cancel, a connectivity change (1100/1101/1102), a rate-limit warning or a plain notice.

use std::time::Instant;

use super::{Connection, ConnectionError, Event, RequestError, RequestId, State};
use crate::classify::{classify, Advice, Connectivity, ErrorClass, RequestContext};
use crate::message::ErrorMessage;
use crate::stream::StreamData;

impl Connection {
    pub(super) fn handle_error(&mut self, _now: Instant, e: ErrorMessage) {
        if e.code == 326 && self.state != State::Ready {
            tracing::warn!(client_id = self.cfg.client_id, "client id in use (326)");
            return self.fail(ConnectionError::ClientIdInUse {
                client_id: self.cfg.client_id,
            });
        }
        let locally_cancelled = self.cancelled.contains(&e.req_id);
        let context = RequestContext {
            cancelled_locally: locally_cancelled,
            ..RequestContext::default()
        };
        let c = classify(e.code, &e.message, &context);
        let informational = matches!(
            c.class,
            ErrorClass::Informational | ErrorClass::FarmStatus(..)
        );
        let streaming = self.pending.get(&e.req_id).is_some_and(|p| p.streaming);
        if streaming && informational && c.advice != Advice::Resubscribe {
            // An advisory about an open stream (10167 delayed data, 10090 partly subscribed):
            // the stream goes on, and its consumer is told.
            tracing::info!(id = e.req_id, code = e.code, message = %e.message, "stream notice");
            return self.events.push_back(Event::Stream {
                id: RequestId(e.req_id),
                data: StreamData::Notice {
                    code: e.code,
                    message: e.message,
                },
            });
        }
        if e.req_id >= 0 && (!informational || streaming) {
            if let Some(p) = self.pending.remove(&e.req_id) {
                tracing::debug!(id = e.req_id, code = e.code, class = ?c.class, "request failed");
                let err = RequestError::Api {
                    code: e.code,
                    message: e.message,
                    class: c.class,
                    advice: c.advice,
                };
                let id = RequestId(e.req_id);
                if p.streaming {
                    self.events.push_back(Event::StreamEnded {
                        id,
                        error: Some(err),
                    });
                } else {
                    self.stats.failed += 1;
                    self.complete(id, Err(err));
                }
                return;
            }
            if locally_cancelled {
                tracing::debug!(id = e.req_id, code = e.code, "reply to our own cancel");
                return;
            }
        }
        match c.class {
            ErrorClass::Connectivity(conn) => self.connectivity(conn),
            ErrorClass::RateExceeded => {
                tracing::warn!(code = e.code, "gateway limited our message rate");
                self.events.push_back(Event::RateLimited);
            }
            _ => {
                tracing::debug!(code = e.code, id = e.req_id, message = %e.message, "notice");
                self.events.push_back(Event::Notice {
                    id: (e.req_id >= 0).then_some(RequestId(e.req_id)),
                    code: e.code,
                    message: e.message,
                    class: c.class,
                });
            }
        }
    }

    fn connectivity(&mut self, change: Connectivity) {
        match change {
            Connectivity::Lost | Connectivity::ServerLinkBroken => {
                tracing::warn!(?change, "gateway lost its link to IB");
                self.degraded = true;
            }
            Connectivity::RestoredDataLost => {
                tracing::info!("gateway link restored, data lost: resubscribing");
                self.degraded = false;
                self.events.push_back(Event::Connectivity(change));
                return self.events.push_back(Event::Resubscribe);
            }
            Connectivity::RestoredDataKept => {
                tracing::info!("gateway link restored, data kept");
                self.degraded = false;
            }
            Connectivity::SocketPortReset => return self.fail(ConnectionError::SocketPortReset),
            _ => {}
        }
        self.events.push_back(Event::Connectivity(change));
    }
}
