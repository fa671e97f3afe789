//! The outcome policy (the table in the [job docs](super)): what each answer or error does to its
//! chunk — merged, empty (tentative or final), clamped, re-queued, retried or failed for good.

use super::{BackfillJob, ChunkId, EmptyBy, State};
use crate::backfill::lookup::{Lookup, Verdict};
use crate::classify::{Advice, ErrorClass};
use crate::connection::{Answer, RequestError};
use crate::pool::CallError;

/// Why one chunk failed for good.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// IB refused the request for a reason retrying cannot fix (permissions, invalid request, no
    /// security definition, an unrecognised message, …).
    #[error("IB error {code} ({class:?}): {message}")]
    Rejected {
        /// IB's code.
        code: i32,
        /// IB's text.
        message: String,
        /// The classifier's verdict.
        class: ErrorClass,
    },
    /// Timeouts, closed connections or cancels exhausted the retries.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: CallError,
    },
    /// IB kept reporting pacing violations.
    #[error("still paced after {requeues} re-queues")]
    PacedTooOften {
        /// Re-queues made.
        requeues: u32,
    },
    /// The pool ended the request (pacer can never admit it, lease released, shutdown, …).
    #[error("pool: {0}")]
    Pool(CallError),
    /// The answer was not bars.
    #[error("unexpected answer to a historical request")]
    UnexpectedAnswer,
}

/// A failed chunk and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkFailure {
    /// The chunk.
    pub chunk: ChunkId,
    /// Its span, `[start, end)` unix seconds.
    pub start_unix: i64,
    /// End of its span (exclusive).
    pub end_unix: i64,
    /// Why it failed.
    pub error: ChunkError,
}

impl BackfillJob {
    /// The outcome of chunk `id`'s query. Outcomes for unknown chunks or chunks not in flight are
    /// ignored.
    pub fn on_result(&mut self, id: ChunkId, result: Result<Answer, CallError>) {
        if id == Lookup::CONTRACT || id == Lookup::HEAD {
            let Some(lookup) = &mut self.lookup else {
                return;
            };
            match lookup.on_result(id, result) {
                Verdict::Continue => {}
                Verdict::Details(found) => self.use_sessions_of(&found),
                Verdict::Head(head) => self.clamp_to_head_timestamp(head),
                Verdict::Fatal(e) => self.lookup_error = Some(e),
            }
            return;
        }
        let Some(entry) = self.entries.get(id.0) else {
            return;
        };
        if entry.state != State::InFlight {
            return;
        }
        match result {
            Ok(Answer::Bars { bars, .. }) => {
                let state = if bars.is_empty() {
                    State::Empty(self.empty_by(id, None))
                } else {
                    State::Done
                };
                let merged = self.bars.insert(bars);
                self.bars_added += merged.added;
                self.duplicates += merged.duplicates;
                self.set(id, state);
            }
            Ok(_) => self.fail(id, ChunkError::UnexpectedAnswer),
            Err(CallError::Request(RequestError::Api {
                code,
                message,
                class,
                advice,
            })) => match class {
                ErrorClass::NoData => self.set(id, State::Empty(self.empty_by(id, None))),
                ErrorClass::BeforeHeadTimestamp => {
                    let head = match advice {
                        Advice::ClampStartAndRetry { start_unix } => {
                            if self.clamped_to.is_none() {
                                // Re-queue first so the clamp rewrites this chunk too.
                                self.requeue(id);
                                self.clamp_to_head_timestamp(start_unix);
                                return;
                            }
                            Some(start_unix)
                        }
                        _ => self.clamped_to,
                    };
                    self.set(id, State::Empty(self.empty_by(id, head)));
                }
                ErrorClass::Pacing | ErrorClass::RateExceeded => {
                    let requeues = self.entries.get(id.0).map_or(0, |e| e.requeues);
                    if requeues >= self.cfg.max_pacing_requeues {
                        self.fail(id, ChunkError::PacedTooOften { requeues });
                    } else {
                        if let Some(e) = self.entries.get_mut(id.0) {
                            e.requeues += 1;
                        }
                        self.pacing_requeues += 1;
                        self.requeue(id);
                    }
                }
                // A fresh request id (every send gets one) can succeed where the gateway still
                // held the old one; bounded by the retries.
                ErrorClass::QueryCancelled | ErrorClass::DuplicateId => self.retry(
                    id,
                    CallError::Request(RequestError::Api {
                        code,
                        message,
                        class,
                        advice,
                    }),
                ),
                _ => self.fail(
                    id,
                    ChunkError::Rejected {
                        code,
                        message,
                        class,
                    },
                ),
            },
            Err(
                e @ CallError::Request(
                    RequestError::Timeout { .. }
                    | RequestError::ConnectionClosed(_)
                    | RequestError::Cancelled,
                ),
            ) => self.retry(id, e),
            Err(e) => self.fail(id, ChunkError::Pool(e)),
        }
    }

    /// How final an empty answer for chunk `id` is: final only if the whole chunk precedes a
    /// head timestamp (`head`, or the one the range was clamped to); otherwise an ordinary "no
    /// data", tentative until an earlier run saw it too.
    fn empty_by(&self, id: ChunkId, head: Option<i64>) -> EmptyBy {
        let end = self
            .entries
            .get(id.0)
            .map_or(i64::MAX, |e| e.chunk.end_unix);
        if [head, self.clamped_to]
            .into_iter()
            .flatten()
            .any(|h| end <= h)
        {
            EmptyBy::HeadTimestamp
        } else {
            EmptyBy::Answer
        }
    }

    fn retry(&mut self, id: ChunkId, error: CallError) {
        let attempts = self.entries.get(id.0).map_or(0, |e| e.attempts);
        if attempts > self.cfg.max_retries {
            self.fail(
                id,
                ChunkError::RetriesExhausted {
                    attempts,
                    last: error,
                },
            );
        } else {
            self.retries += 1;
            self.requeue(id);
        }
    }

    fn fail(&mut self, id: ChunkId, error: ChunkError) {
        let Some(e) = self.entries.get_mut(id.0) else {
            return;
        };
        e.state = State::Failed;
        tracing::warn!(chunk = id.0, %error, "backfill chunk failed");
        self.failures.push(ChunkFailure {
            chunk: id,
            start_unix: e.chunk.start_unix,
            end_unix: e.chunk.end_unix,
            error,
        });
    }
}
