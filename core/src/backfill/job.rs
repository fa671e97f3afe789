//! One backfill as a sans-IO state machine: the plan's chunks out as queries, their outcomes in,
//! merged bars and a typed account of what happened.
//!
//! The job performs no I/O and reads no clock. The driver asks [`BackfillJob::poll_query`] for the
//! next chunk (it bounds concurrency itself), sends the query through the pool — whose pacer
//! decides *when* — and reports the outcome with [`BackfillJob::on_result`]. The job is done when
//! [`BackfillJob::is_finished`]; nothing already fetched is lost when a chunk fails.
//!
//! # Policy
//!
//! | outcome                                     | verdict                                         |
//! |---------------------------------------------|-------------------------------------------------|
//! | bars                                        | merged (de-duplicated, trimmed to the range)    |
//! | no bars, 162 "no data" ([`ErrorClass::NoData`]) | chunk recorded empty, not an error; tentative the first time ([below](#empty-chunks)) |
//! | [`ErrorClass::BeforeHeadTimestamp`]         | clamp the range to the head timestamp, once     |
//! | pacing (162 pacing, 100, 420 pacing)        | re-queued; the pool's pacer decides the timing  |
//! | timeout, connection closed, local cancel, 322 duplicate id | re-queued up to [`JobConfig::max_retries`] |
//! | anything else                               | the chunk fails with a typed [`ChunkError`]     |
//!
//! # Empty chunks
//!
//! IB sometimes answers "no data" spuriously, so one empty answer is *tentative*: it is reported by
//! [`BackfillJob::tentative_empty_spans`], not by [`BackfillJob::covered_spans`], and the chunk is
//! asked again next run. It becomes final (covered) when a later run, told of it through
//! [`BackfillJob::note_empty_before`], gets an empty answer again. Chunks emptied by the head
//! timestamp (clamp or [`ErrorClass::BeforeHeadTimestamp`] for the whole chunk) are final at once.

use std::collections::VecDeque;

use serde::Serialize;

use super::lookup::{Lookup, LookupError, Verdict};
use super::merge::BarSet;
use super::plan::{duration_string, plan_chunks, Chunk, PlanError};
use super::BackfillSpec;
use crate::classify::{Advice, ErrorClass};
use crate::connection::{Answer, Query, RequestError};
use crate::message::Bar;
use crate::pool::CallError;

/// A chunk of a [`BackfillJob`]: its position in the plan, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ChunkId(pub usize);

/// Retry bounds and resume policy of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobConfig {
    /// Re-sends of one chunk after a timeout, a closed connection or a cancel before it fails.
    pub max_retries: u32,
    /// Re-queues of one chunk after IB reported pacing before it fails (the pool already waits
    /// for the pacer; this only stops a gateway that paces forever).
    pub max_pacing_requeues: u32,
    /// Presume a chunk fetched when the held bars suggest it (see [`BackfillJob::new`]). Turn off
    /// when the exact coverage is known (a verified sidecar): then only
    /// [`BackfillJob::skip_covered`] marks chunks done, and held bars are merged but prove nothing.
    pub infer_coverage_from_bars: bool,
    /// Look the contract up before any chunk (see [`super::lookup`]): an unknown symbol ends the
    /// job after one request ([`BackfillJob::lookup_error`]), and the head timestamp clamps the
    /// range first. Off by default: a caller that already knows the contract saves two requests.
    pub lookup: bool,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            max_pacing_requeues: 20,
            infer_coverage_from_bars: true,
            lookup: false,
        }
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    InFlight,
    Done,
    Empty(EmptyBy),
    Resumed,
    Failed,
}

/// What made a chunk empty: how final that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmptyBy {
    /// IB answered without bars: final only if it did so in an earlier run too.
    Answer,
    /// The whole chunk lies before the head timestamp: final.
    HeadTimestamp,
}

#[derive(Debug, Clone)]
struct Entry {
    chunk: Chunk,
    state: State,
    attempts: u32,
    requeues: u32,
    /// An earlier run got an empty answer for this chunk ([`BackfillJob::note_empty_before`]).
    empty_before: bool,
    /// The chunk's start as planned: the head-timestamp clamp moves `chunk.start_unix` later, but
    /// what lies before the head has no data, so spans are reported from here.
    planned_start: i64,
}

impl Entry {
    /// Answered (or skipped) for good: what [`BackfillJob::covered_spans`] reports.
    fn is_covered(&self) -> bool {
        match self.state {
            State::Done | State::Resumed | State::Empty(EmptyBy::HeadTimestamp) => true,
            State::Empty(EmptyBy::Answer) => self.empty_before,
            State::Queued | State::InFlight | State::Failed => false,
        }
    }

    /// Empty for the first time: to be asked again next run.
    fn is_tentative_empty(&self) -> bool {
        self.state == State::Empty(EmptyBy::Answer) && !self.empty_before
    }
}

/// `[start, end)` spans of `entries`, oldest first, adjacent or overlapping ones merged.
fn merged_spans<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<(i64, i64)> {
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for e in entries {
        let (s, end) = (e.planned_start, e.chunk.end_unix);
        match spans.last_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(end),
            _ => spans.push((s, end)),
        }
    }
    spans
}

/// Counters of a job so far ([`BackfillJob::progress`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Chunks in the plan.
    pub chunks_total: usize,
    /// Chunks finished: fetched, empty, skipped on resume or failed.
    pub chunks_done: usize,
    /// Chunks skipped on resume: held bars or an earlier run's coverage showed them fetched.
    pub chunks_resumed: usize,
    /// Chunks IB answered with "no data" (weekends, holidays, before the head timestamp),
    /// tentative ones included.
    pub chunks_empty: usize,
    /// Of `chunks_empty`, those answered empty for the first time: not final, so not covered
    /// ([`BackfillJob::tentative_empty_spans`]).
    pub chunks_empty_tentative: usize,
    /// Chunks that failed for good.
    pub chunks_failed: usize,
    /// Chunks sent and not answered yet.
    pub in_flight: usize,
    /// Historical queries handed out, retries included.
    pub requests: u64,
    /// Lookup queries handed out before the chunks (contract details, head timestamp).
    pub lookups: u64,
    /// Re-sends after a timeout, closed connection or cancel.
    pub retries: u64,
    /// Re-queues after IB reported pacing.
    pub pacing_requeues: u64,
    /// Bars held now (resumed ones included).
    pub bars: usize,
    /// Bars this job added.
    pub bars_added: usize,
    /// Bars received that were already held.
    pub duplicates: usize,
}

/// One failed chunk in a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureSummary {
    /// The chunk's position in the plan.
    pub chunk: usize,
    /// Its span start, unix seconds.
    pub start_unix: i64,
    /// Its span end (exclusive), unix seconds.
    pub end_unix: i64,
    /// The error, as text.
    pub error: String,
}

/// The serializable account of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The instrument's symbol.
    pub symbol: String,
    /// Bar size, IB spelling.
    pub bar_size: String,
    /// `whatToShow`.
    pub what_to_show: String,
    /// Regular trading hours only.
    pub use_rth: bool,
    /// Range start (aligned), unix seconds.
    pub from_unix: i64,
    /// Range end (aligned, exclusive), unix seconds.
    pub to_unix: i64,
    /// The head timestamp the range was clamped to, if it was.
    pub clamped_to_unix: Option<i64>,
    /// Counters.
    pub progress: Progress,
    /// Whether every chunk finished without failure.
    pub complete: bool,
    /// The failed chunks.
    pub failures: Vec<FailureSummary>,
    /// Why the job ended before its first chunk, if it did (see [`JobConfig::lookup`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_error: Option<LookupError>,
}

/// A backfill in progress. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct BackfillJob {
    spec: BackfillSpec,
    cfg: JobConfig,
    from_unix: i64,
    to_unix: i64,
    entries: Vec<Entry>,
    queue: VecDeque<usize>,
    bars: BarSet,
    clamped_to: Option<i64>,
    failures: Vec<ChunkFailure>,
    lookup: Option<Lookup>,
    lookup_error: Option<LookupError>,
    lookups: u64,
    requests: u64,
    retries: u64,
    pacing_requeues: u64,
    bars_added: usize,
    duplicates: usize,
}

impl BackfillJob {
    /// Plan `[from, to)` for `spec`. `held` are bars already fetched (e.g. loaded from the output
    /// file): they are kept and merged. With [`JobConfig::infer_coverage_from_bars`] (the
    /// default) a chunk is also skipped when it holds one of them and lies strictly between the
    /// oldest and the newest: a chunk's answer arrives whole and every run's interior chunks are
    /// whole grid cells, so such a chunk was fetched. The chunks holding the oldest and the newest
    /// bar are fetched again (an earlier run may have asked for only part of them; the merge drops
    /// the duplicates), and chunks without held bars are fetched: a gap left by a failed chunk is
    /// never mistaken for "no data". Bars alone cannot tell a cell cut by an earlier run's range
    /// edge; when the exact coverage is known, turn the inference off and pass it to
    /// [`BackfillJob::skip_covered`].
    pub fn new(
        spec: BackfillSpec,
        from_unix: i64,
        to_unix: i64,
        held: impl IntoIterator<Item = Bar>,
        cfg: JobConfig,
    ) -> Result<Self, PlanError> {
        let chunks = plan_chunks(spec.bar_size, from_unix, to_unix)?;
        let (from, to) = (
            chunks.first().map_or(from_unix, |c| c.start_unix),
            chunks.last().map_or(to_unix, |c| c.end_unix),
        );
        let mut bars = BarSet::new(from, to);
        bars.insert(held);
        let starts: Vec<i64> = bars.iter().map(|(t, _)| t).collect();
        let (oldest, newest) = (starts.first().copied(), starts.last().copied());
        let holds_a_bar = |c: &Chunk| {
            let i = starts.partition_point(|&t| t < c.start_unix);
            starts.get(i).is_some_and(|&t| t < c.end_unix)
        };
        let mut queue = VecDeque::new();
        let entries = chunks
            .into_iter()
            .map(|chunk| {
                let fetched = cfg.infer_coverage_from_bars
                    && oldest.is_some_and(|t| t < chunk.start_unix)
                    && newest.is_some_and(|t| chunk.end_unix <= t)
                    && holds_a_bar(&chunk);
                let state = if fetched {
                    State::Resumed
                } else {
                    queue.push_back(chunk.index);
                    State::Queued
                };
                Entry {
                    planned_start: chunk.start_unix,
                    chunk,
                    state,
                    attempts: 0,
                    requeues: 0,
                    empty_before: false,
                }
            })
            .collect();
        Ok(Self {
            spec,
            cfg,
            from_unix: from,
            to_unix: to,
            entries,
            queue,
            bars,
            clamped_to: None,
            failures: Vec::new(),
            lookup: cfg.lookup.then(|| Lookup::new(cfg.max_retries)),
            lookup_error: None,
            lookups: 0,
            requests: 0,
            retries: 0,
            pacing_requeues: 0,
            bars_added: 0,
            duplicates: 0,
        })
    }

    /// What every chunk shares.
    pub fn spec(&self) -> &BackfillSpec {
        &self.spec
    }

    /// The aligned range, `[from, to)` unix seconds.
    pub fn range(&self) -> (i64, i64) {
        (self.from_unix, self.to_unix)
    }

    /// The chunk behind `id`, if it exists.
    pub fn chunk(&self, id: ChunkId) -> Option<&Chunk> {
        self.entries.get(id.0).map(|e| &e.chunk)
    }

    /// The chunks still to send, oldest first (what `ibconn plan` counts on a resume).
    pub fn pending_chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.queue
            .iter()
            .filter_map(|&i| self.entries.get(i).map(|e| &e.chunk))
    }

    /// Skip the queued chunks lying wholly inside one of `spans` (`[start, end)` unix seconds, as
    /// an earlier run's [`BackfillJob::covered_spans`] reported them): resume without asking again
    /// for chunks that were answered, empty ones included.
    pub fn skip_covered(&mut self, spans: &[(i64, i64)]) {
        for entry in &mut self.entries {
            let c = &entry.chunk;
            if entry.state == State::Queued
                && spans
                    .iter()
                    .any(|&(s, e)| s <= c.start_unix && c.end_unix <= e)
            {
                entry.state = State::Resumed;
            }
        }
        let entries = &self.entries;
        self.queue
            .retain(|&i| entries.get(i).is_some_and(|e| e.state == State::Queued));
    }

    /// Tell the job which spans an earlier run got an empty answer for, as its
    /// [`BackfillJob::tentative_empty_spans`] reported them: a chunk lying wholly inside one that
    /// is answered empty again is final (covered). The chunks are still asked; call in any order.
    pub fn note_empty_before(&mut self, spans: &[(i64, i64)]) {
        for entry in &mut self.entries {
            let (start, end) = (entry.planned_start, entry.chunk.end_unix);
            if spans.iter().any(|&(s, e)| s <= start && end <= e) {
                entry.empty_before = true;
            }
        }
    }

    /// The spans answered for good so far, merged, oldest first: fetched, skipped on resume, and
    /// empty ones that are final (empty in an earlier run too, or before the head timestamp). What
    /// to persist beside the bars for an exact resume.
    pub fn covered_spans(&self) -> Vec<(i64, i64)> {
        merged_spans(self.entries.iter().filter(|e| e.is_covered()))
    }

    /// The spans answered empty for the first time, merged, oldest first: not covered, since IB
    /// sometimes answers "no data" spuriously. Persist them and pass them to the next run's
    /// [`BackfillJob::note_empty_before`]; a second empty answer makes them final.
    pub fn tentative_empty_spans(&self) -> Vec<(i64, i64)> {
        merged_spans(self.entries.iter().filter(|e| e.is_tentative_empty()))
    }

    /// The next chunk to send and its query, or `None` if nothing is queued (all sent or done).
    /// The caller decides how many are in flight at once.
    pub fn poll_query(&mut self) -> Option<(ChunkId, Query)> {
        if self.lookup_error.is_some() || self.queue.is_empty() {
            return None;
        }
        if let Some(lookup) = &mut self.lookup {
            let s = &self.spec;
            if let Some(q) = lookup.poll(&s.contract, &s.what_to_show, s.use_rth) {
                self.lookups += 1;
                return Some(q);
            }
            if !lookup.is_done() {
                return None;
            }
        }
        let i = self.queue.pop_front()?;
        let entry = self.entries.get_mut(i)?;
        entry.state = State::InFlight;
        entry.attempts += 1;
        self.requests += 1;
        let query = Query::HistoricalData(self.spec.request(&entry.chunk));
        Some((ChunkId(i), query))
    }

    /// Known head timestamp of the contract (unix seconds): clamps the range once — chunks ending
    /// at or before it are recorded empty (final: covered) without a request, the one straddling
    /// it starts at it. Later calls (and later head-timestamp verdicts) are ignored.
    pub fn clamp_to_head_timestamp(&mut self, head_unix: i64) {
        if self.clamped_to.is_some() || head_unix <= self.from_unix {
            return;
        }
        self.clamped_to = Some(head_unix);
        for entry in &mut self.entries {
            if entry.state != State::Queued {
                continue;
            }
            if entry.chunk.end_unix <= head_unix {
                entry.state = State::Empty(EmptyBy::HeadTimestamp);
            } else if entry.chunk.start_unix < head_unix {
                entry.chunk.start_unix = head_unix;
                entry.chunk.duration = duration_string(entry.chunk.end_unix - head_unix);
            }
        }
        let entries = &self.entries;
        self.queue
            .retain(|&i| entries.get(i).is_some_and(|e| e.state == State::Queued));
    }

    /// The outcome of chunk `id`'s query. Outcomes for unknown chunks or chunks not in flight are
    /// ignored.
    pub fn on_result(&mut self, id: ChunkId, result: Result<Answer, CallError>) {
        if id == Lookup::CONTRACT || id == Lookup::HEAD {
            let Some(lookup) = &mut self.lookup else {
                return;
            };
            match lookup.on_result(id, result) {
                Verdict::Continue => {}
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

    /// Whether every chunk is finished (fetched, empty, skipped or failed).
    pub fn is_finished(&self) -> bool {
        self.lookup_error.is_some()
            || self
                .entries
                .iter()
                .all(|e| !matches!(e.state, State::Queued | State::InFlight))
    }

    /// Whether every chunk finished and none failed.
    pub fn is_complete(&self) -> bool {
        self.is_finished() && self.failures.is_empty() && self.lookup_error.is_none()
    }

    /// Why the job ended before its first chunk: the contract does not exist, or could not be
    /// looked up (see [`JobConfig::lookup`]).
    pub fn lookup_error(&self) -> Option<&LookupError> {
        self.lookup_error.as_ref()
    }

    /// The counters so far.
    pub fn progress(&self) -> Progress {
        let count = |s: State| self.entries.iter().filter(|e| e.state == s).count();
        let in_flight = count(State::InFlight);
        Progress {
            chunks_total: self.entries.len(),
            chunks_done: self.entries.len() - in_flight - count(State::Queued),
            chunks_resumed: count(State::Resumed),
            chunks_empty: self
                .entries
                .iter()
                .filter(|e| matches!(e.state, State::Empty(_)))
                .count(),
            chunks_empty_tentative: self
                .entries
                .iter()
                .filter(|e| e.is_tentative_empty())
                .count(),
            chunks_failed: count(State::Failed),
            in_flight,
            requests: self.requests,
            lookups: self.lookups,
            retries: self.retries,
            pacing_requeues: self.pacing_requeues,
            bars: self.bars.len(),
            bars_added: self.bars_added,
            duplicates: self.duplicates,
        }
    }

    /// The failed chunks so far.
    pub fn failures(&self) -> &[ChunkFailure] {
        &self.failures
    }

    /// The bars so far (held ones included), unique and oldest first.
    pub fn bars(&self) -> &BarSet {
        &self.bars
    }

    /// The bars, consuming the job.
    pub fn into_bars(self) -> BarSet {
        self.bars
    }

    /// The serializable account.
    pub fn summary(&self) -> Summary {
        Summary {
            symbol: self.spec.contract.symbol.clone(),
            bar_size: self.spec.bar_size.as_str().to_owned(),
            what_to_show: self.spec.what_to_show.clone(),
            use_rth: self.spec.use_rth,
            from_unix: self.from_unix,
            to_unix: self.to_unix,
            clamped_to_unix: self.clamped_to,
            progress: self.progress(),
            complete: self.is_complete(),
            failures: self
                .failures
                .iter()
                .map(|f| FailureSummary {
                    chunk: f.chunk.0,
                    start_unix: f.start_unix,
                    end_unix: f.end_unix,
                    error: f.error.to_string(),
                })
                .collect(),
            lookup_error: self.lookup_error.clone(),
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

    fn set(&mut self, id: ChunkId, state: State) {
        if let Some(e) = self.entries.get_mut(id.0) {
            e.state = state;
        }
    }

    fn requeue(&mut self, id: ChunkId) {
        self.set(id, State::Queued);
        self.queue.push_back(id.0);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bar_size::BarSize;
    use crate::classify::{classify, RequestContext};
    use crate::connection::ConnectionError;
    use crate::message::{BarTime, Contract};

    const T0: i64 = 1_767_225_600; // 2026-01-01 00:00 UTC

    fn spec(bar_size: BarSize) -> BackfillSpec {
        BackfillSpec {
            contract: Contract::stock("AAPL"),
            bar_size,
            what_to_show: "TRADES".into(),
            use_rth: false,
        }
    }

    fn bar(t: i64) -> Bar {
        Bar {
            date: BarTime::Epoch(t),
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
            wap: 1.0,
            count: 1,
        }
    }

    /// Every bar of a chunk, one per `step` seconds.
    fn bars_of(chunk: &Chunk, step: i64) -> Answer {
        Answer::Bars {
            bars: (chunk.start_unix..chunk.end_unix)
                .step_by(usize::try_from(step).unwrap())
                .map(bar)
                .collect(),
            start: String::new(),
            end: String::new(),
        }
    }

    fn ib(code: i32, message: &str) -> CallError {
        let c = classify(code, message, &RequestContext::default());
        CallError::Request(RequestError::Api {
            code,
            message: message.into(),
            class: c.class,
            advice: c.advice,
        })
    }

    fn no_data_error() -> CallError {
        ib(
            162,
            "Historical Market Data Service error message:HMDS query returned no data: AAPL",
        )
    }

    /// `[from, to)` hours after `T0` of 1-minute bars (one per minute).
    fn held(from_h: i64, to_h: i64) -> Vec<Bar> {
        (T0 + from_h * 3_600..T0 + to_h * 3_600)
            .step_by(60)
            .map(bar)
            .collect()
    }

    fn pending(j: &BackfillJob) -> Vec<usize> {
        j.pending_chunks().map(|c| c.index).collect()
    }

    fn job(hours: i64, held: Vec<Bar>) -> BackfillJob {
        BackfillJob::new(
            spec(BarSize::Min1),
            T0,
            T0 + hours * 3_600,
            held,
            JobConfig::default(),
        )
        .unwrap()
    }

    /// Answer every query with all its bars.
    fn run_all(job: &mut BackfillJob) {
        while let Some((id, _)) = job.poll_query() {
            let answer = bars_of(job.chunk(id).unwrap(), 60);
            job.on_result(id, Ok(answer));
        }
    }

    #[test]
    fn a_clean_backfill_merges_every_chunk() {
        let mut j = job(72, Vec::new());
        assert_eq!(j.progress().chunks_total, 3);
        run_all(&mut j);
        assert!(j.is_complete());
        let p = j.progress();
        assert_eq!((p.bars, p.requests, p.chunks_done), (72 * 60, 3, 3));
        let s = j.summary();
        assert!(s.complete);
        assert_eq!(s.bar_size, "1 min");
    }

    #[test]
    fn queries_carry_the_chunk_window_and_concurrency_is_the_callers() {
        let mut j = job(72, Vec::new());
        let a = j.poll_query().unwrap();
        let b = j.poll_query().unwrap();
        assert_eq!((a.0, b.0), (ChunkId(0), ChunkId(1)));
        let Query::HistoricalData(r) = &a.1 else {
            panic!("not historical")
        };
        assert_eq!(r.end_date_time, "20260102-00:00:00");
        assert_eq!(j.progress().in_flight, 2);
        assert!(!j.is_finished());
    }

    #[test]
    fn no_data_is_an_empty_chunk_not_an_error() {
        let mut j = job(48, Vec::new());
        let (a, _) = j.poll_query().unwrap();
        j.on_result(
            a,
            Err(ib(
                162,
                "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades",
            )),
        );
        run_all(&mut j);
        assert!(j.is_complete());
        let p = j.progress();
        assert_eq!((p.chunks_empty, p.chunks_failed, p.bars), (1, 0, 24 * 60));
    }

    #[test]
    fn pacing_requeues_the_chunk() {
        let mut j = job(24, Vec::new());
        let (a, _) = j.poll_query().unwrap();
        j.on_result(
            a,
            Err(ib(
                162,
                "Historical Market Data Service error message:Historical data request pacing violation",
            )),
        );
        assert!(!j.is_finished());
        run_all(&mut j);
        let p = j.progress();
        assert!(j.is_complete());
        assert_eq!((p.pacing_requeues, p.requests, p.bars), (1, 2, 1440));
    }

    #[test]
    fn a_localized_162_fails_the_chunk_and_keeps_the_rest() {
        let mut j = job(48, Vec::new());
        let (a, _) = j.poll_query().unwrap();
        let (b, _) = j.poll_query().unwrap();
        j.on_result(a, Ok(bars_of(j.chunk(a).unwrap(), 60)));
        j.on_result(
            b,
            Err(ib(
                162,
                "Error del servicio de datos históricos:violación del ritmo",
            )),
        );
        assert!(j.is_finished() && !j.is_complete());
        assert_eq!(j.progress().bars, 1440);
        assert!(matches!(
            j.failures()[0].error,
            ChunkError::Rejected {
                class: ErrorClass::Unknown,
                ..
            }
        ));
        assert_eq!(j.summary().failures.len(), 1);
    }

    #[test]
    fn timeouts_and_closed_connections_are_retried_then_fail() {
        let mut j = job(24, Vec::new());
        let closed = CallError::Request(RequestError::ConnectionClosed(
            ConnectionError::Transport("reset".into()),
        ));
        let timeout = CallError::Request(RequestError::Timeout {
            after: Duration::from_secs(60),
        });
        for n in 0..3 {
            let (a, _) = j.poll_query().unwrap();
            j.on_result(
                a,
                Err(if n % 2 == 0 {
                    closed.clone()
                } else {
                    timeout.clone()
                }),
            );
        }
        assert_eq!(j.progress().retries, 3);
        assert!(!j.is_finished());
        let (a, _) = j.poll_query().unwrap();
        j.on_result(a, Err(timeout));
        assert!(j.is_finished() && !j.is_complete());
        assert!(matches!(
            j.failures()[0].error,
            ChunkError::RetriesExhausted { attempts: 4, .. }
        ));
    }

    #[test]
    fn pool_errors_and_odd_answers_fail_typed() {
        let mut j = job(48, Vec::new());
        let (a, _) = j.poll_query().unwrap();
        let (b, _) = j.poll_query().unwrap();
        j.on_result(a, Err(CallError::Released));
        j.on_result(b, Ok(Answer::CurrentTime(1)));
        assert!(matches!(j.failures()[0].error, ChunkError::Pool(_)));
        assert!(matches!(
            j.failures()[1].error,
            ChunkError::UnexpectedAnswer
        ));
        // A late or repeated outcome changes nothing.
        j.on_result(a, Ok(bars_of(&j.chunk(a).unwrap().clone(), 60)));
        assert_eq!(j.progress().bars, 0);
    }

    #[test]
    fn the_head_timestamp_clamps_once() {
        let mut j = job(72, Vec::new());
        let head = T0 + 30 * 3_600;
        j.clamp_to_head_timestamp(head);
        j.clamp_to_head_timestamp(T0 + 60 * 3_600); // ignored
        let (a, q) = j.poll_query().unwrap();
        assert_eq!(a, ChunkId(1));
        let Query::HistoricalData(r) = q else {
            panic!("not historical")
        };
        assert_eq!(r.duration, "64800 S");
        j.on_result(a, Ok(bars_of(j.chunk(a).unwrap(), 60)));
        run_all(&mut j);
        let s = j.summary();
        assert_eq!(s.clamped_to_unix, Some(head));
        assert_eq!(s.progress.chunks_empty, 1);
        assert_eq!(s.progress.bars, 42 * 60);
    }

    #[test]
    fn a_before_head_verdict_clamps_and_retries_the_chunk() {
        let mut j = job(48, Vec::new());
        let head = T0 + 6 * 3_600;
        let context = RequestContext {
            start_unix: Some(T0),
            head_timestamp_unix: Some(head),
            ..RequestContext::default()
        };
        let text = "Historical Market Data Service error message:HMDS query returned no data: AAPL";
        let c = classify(162, text, &context);
        let (a, _) = j.poll_query().unwrap();
        let err = CallError::Request(RequestError::Api {
            code: 162,
            message: text.into(),
            class: c.class,
            advice: c.advice,
        });
        j.on_result(a, Err(err.clone()));
        assert_eq!(j.chunk(a).unwrap().start_unix, head);
        run_all(&mut j);
        assert!(j.is_complete());
        assert_eq!(j.progress().bars, 42 * 60);
    }

    #[test]
    fn a_gap_left_by_a_failed_chunk_is_fetched_on_resume() {
        let mut first = job(72, Vec::new());
        let ids: Vec<ChunkId> = std::iter::from_fn(|| first.poll_query().map(|q| q.0)).collect();
        let no_data = ib(
            162,
            "Historical Market Data Service error message:HMDS query returned no data: AAPL",
        );
        first.on_result(ids[0], Err(no_data));
        first.on_result(ids[1], Err(CallError::Released));
        first.on_result(ids[2], Ok(bars_of(first.chunk(ids[2]).unwrap(), 60)));
        // The empty day is tentative (asked again), the failed day is neither.
        assert_eq!(
            first.covered_spans(),
            vec![(T0 + 2 * 86_400, T0 + 3 * 86_400)]
        );
        assert_eq!(first.tentative_empty_spans(), vec![(T0, T0 + 86_400)]);
        let held: Vec<Bar> = first.bars().iter().map(|(_, b)| b.clone()).collect();

        // From the bars alone: the empty day and the failed day are both asked again.
        let mut resumed = job(72, held.clone());
        assert_eq!(resumed.pending_chunks().count(), 3);
        // With the first run's coverage: the failed day, and the empty day once more.
        resumed.skip_covered(&first.covered_spans());
        resumed.note_empty_before(&first.tentative_empty_spans());
        let pending: Vec<usize> = resumed.pending_chunks().map(|c| c.index).collect();
        assert_eq!(pending, vec![0, 1]);
        let (a, _) = resumed.poll_query().unwrap();
        resumed.on_result(a, Err(no_data_error()));
        run_all(&mut resumed);
        assert!(resumed.is_complete());
        assert_eq!(resumed.progress().bars, 2 * 24 * 60);
        assert_eq!(resumed.covered_spans(), vec![(T0, T0 + 3 * 86_400)]);
        assert!(resumed.tentative_empty_spans().is_empty());
    }

    #[test]
    fn a_resume_skips_covered_chunks_and_adds_no_duplicates() {
        let mut first = job(72, Vec::new());
        // Fetch only the first chunk and a half, as an interrupted run would have.
        let (a, _) = first.poll_query().unwrap();
        first.on_result(a, Ok(bars_of(first.chunk(a).unwrap(), 60)));
        let held: Vec<Bar> = first
            .bars()
            .iter()
            .map(|(_, b)| b.clone())
            .take(200)
            .collect();
        let mut resumed = job(72, held);
        let p = resumed.progress();
        assert_eq!((p.chunks_resumed, p.bars), (0, 200));
        run_all(&mut resumed);
        let p = resumed.progress();
        assert_eq!((p.bars, p.duplicates, p.requests), (72 * 60, 200, 3));

        let all: Vec<Bar> = resumed.bars().iter().map(|(_, b)| b.clone()).collect();
        let mut again = job(72, all);
        // Only the middle day: the ones holding the oldest and the newest bar are asked again.
        assert_eq!(again.progress().chunks_resumed, 1);
        run_all(&mut again);
        assert_eq!(again.progress().bars, 72 * 60);
        assert_eq!(again.progress().bars_added, 0);
    }

    #[test]
    fn an_earlier_run_with_another_from_leaves_no_hole() {
        // An earlier run from T0+12h: its chunks are [12h, 24h), then whole days; day 2 failed.
        let mut first = BackfillJob::new(
            spec(BarSize::Min1),
            T0 + 12 * 3_600,
            T0 + 96 * 3_600,
            Vec::new(),
            JobConfig::default(),
        )
        .unwrap();
        let spans: Vec<(i64, i64)> = (0..4)
            .map(|i| {
                let c = first.chunk(ChunkId(i)).unwrap();
                (c.start_unix, c.end_unix)
            })
            .collect();
        assert_eq!(spans[0], (T0 + 12 * 3_600, T0 + 86_400));
        assert_eq!(spans[1], (T0 + 86_400, T0 + 2 * 86_400));
        while let Some((id, _)) = first.poll_query() {
            let result = if id == ChunkId(2) {
                Err(CallError::Released)
            } else {
                Ok(bars_of(first.chunk(id).unwrap(), 60))
            };
            first.on_result(id, result);
        }
        let held: Vec<Bar> = first.bars().iter().map(|(_, b)| b.clone()).collect();

        // From T0, bars only: day 0 (cut by the earlier range) and day 2 (failed) are asked;
        // day 1 was fetched whole; day 3 holds the newest bar.
        let mut resumed = job(96, held);
        assert_eq!(pending(&resumed), vec![0, 2, 3]);
        assert_eq!(resumed.progress().chunks_resumed, 1);
        run_all(&mut resumed);
        assert!(resumed.is_complete());
        assert_eq!(resumed.progress().bars, 96 * 60, "no hole left");
    }

    #[test]
    fn one_empty_answer_is_tentative_and_a_second_makes_it_final() {
        let mut first = job(72, Vec::new());
        let (a, _) = first.poll_query().unwrap();
        let (b, _) = first.poll_query().unwrap();
        first.on_result(a, Err(no_data_error()));
        first.on_result(
            b,
            Ok(Answer::Bars {
                bars: Vec::new(),
                start: String::new(),
                end: String::new(),
            }),
        );
        run_all(&mut first);
        assert!(first.is_complete());
        let p = first.progress();
        assert_eq!((p.chunks_empty, p.chunks_empty_tentative), (2, 2));
        assert_eq!(
            first.covered_spans(),
            vec![(T0 + 2 * 86_400, T0 + 3 * 86_400)]
        );
        assert_eq!(first.tentative_empty_spans(), vec![(T0, T0 + 2 * 86_400)]);

        // Next run: both days are asked again; day 0 is empty again (final), day 1 had bars
        // after all (the first answer was spurious).
        let mut second = job(72, Vec::new());
        second.skip_covered(&first.covered_spans());
        second.note_empty_before(&first.tentative_empty_spans());
        assert_eq!(pending(&second), vec![0, 1]);
        let (a, _) = second.poll_query().unwrap();
        second.on_result(a, Err(no_data_error()));
        run_all(&mut second);
        let p = second.progress();
        assert_eq!((p.chunks_empty, p.chunks_empty_tentative), (1, 0));
        assert_eq!((p.chunks_resumed, p.bars), (1, 24 * 60));
        assert_eq!(second.covered_spans(), vec![(T0, T0 + 3 * 86_400)]);
        assert!(second.tentative_empty_spans().is_empty());

        // A third run skips everything.
        let mut third = job(72, Vec::new());
        third.skip_covered(&second.covered_spans());
        assert!(third.is_finished());
    }

    #[test]
    fn empties_noted_after_the_answer_are_final_too() {
        let mut j = job(24, Vec::new());
        let (a, _) = j.poll_query().unwrap();
        j.on_result(a, Err(no_data_error()));
        assert!(j.covered_spans().is_empty());
        j.note_empty_before(&[(T0 - 86_400, T0 + 86_400)]);
        assert_eq!(j.covered_spans(), vec![(T0, T0 + 86_400)]);
        assert_eq!(j.progress().chunks_empty_tentative, 0);
    }

    #[test]
    fn a_wider_chunk_than_the_earlier_empty_one_stays_tentative() {
        // The earlier run's empty answer covered only the afternoon of day 0.
        let mut j = job(24, Vec::new());
        j.note_empty_before(&[(T0 + 12 * 3_600, T0 + 86_400)]);
        let (a, _) = j.poll_query().unwrap();
        j.on_result(a, Err(no_data_error()));
        assert!(j.covered_spans().is_empty());
        assert_eq!(j.tentative_empty_spans(), vec![(T0, T0 + 86_400)]);
    }

    #[test]
    fn head_timestamp_empties_are_final_at_once() {
        let mut j = job(96, Vec::new());
        j.clamp_to_head_timestamp(T0 + 30 * 3_600);
        assert_eq!(j.covered_spans(), vec![(T0, T0 + 86_400)]);
        // A later verdict naming a head at T0+50h: final for the chunk that ends before it,
        // tentative for the one reaching past it (its tail may have data).
        let later_head = |start: i64| {
            let context = RequestContext {
                start_unix: Some(start),
                head_timestamp_unix: Some(T0 + 50 * 3_600),
                ..RequestContext::default()
            };
            let text = "Historical Market Data Service error message:HMDS query returned no data";
            let c = classify(162, text, &context);
            assert_eq!(c.class, ErrorClass::BeforeHeadTimestamp);
            CallError::Request(RequestError::Api {
                code: 162,
                message: text.into(),
                class: c.class,
                advice: c.advice,
            })
        };
        let (a, _) = j.poll_query().unwrap();
        let (b, _) = j.poll_query().unwrap();
        let (c, _) = j.poll_query().unwrap();
        assert_eq!((a, b, c), (ChunkId(1), ChunkId(2), ChunkId(3)));
        j.on_result(a, Err(later_head(T0 + 30 * 3_600)));
        j.on_result(b, Err(later_head(T0 + 48 * 3_600)));
        j.on_result(c, Ok(bars_of(j.chunk(c).unwrap(), 60)));
        assert!(j.is_complete());
        assert_eq!(
            j.covered_spans(),
            vec![(T0, T0 + 2 * 86_400), (T0 + 3 * 86_400, T0 + 4 * 86_400)]
        );
        assert_eq!(
            j.tentative_empty_spans(),
            vec![(T0 + 2 * 86_400, T0 + 3 * 86_400)]
        );
        let p = j.progress();
        assert_eq!((p.chunks_empty, p.chunks_empty_tentative), (3, 1));
    }

    #[test]
    fn no_data_for_a_chunk_in_flight_before_the_clamp_is_final() {
        let mut j = job(48, Vec::new());
        let (a, _) = j.poll_query().unwrap();
        j.clamp_to_head_timestamp(T0 + 30 * 3_600);
        j.on_result(a, Err(no_data_error()));
        assert_eq!(j.covered_spans(), vec![(T0, T0 + 86_400)]);
        assert!(j.tentative_empty_spans().is_empty());
    }

    #[test]
    fn exact_coverage_overrides_the_bar_heuristic() {
        // Three earlier runs left [0, 12h), [24h, 36h) and [60h, 72h): day 1 is half covered.
        let spans = [
            (T0, T0 + 12 * 3_600),
            (T0 + 24 * 3_600, T0 + 36 * 3_600),
            (T0 + 60 * 3_600, T0 + 72 * 3_600),
        ];
        let bars: Vec<Bar> = spans
            .iter()
            .flat_map(|&(s, e)| held((s - T0) / 3_600, (e - T0) / 3_600))
            .collect();
        // The heuristic takes day 1 (holding bars, neither oldest nor newest) as fetched.
        assert_eq!(pending(&job(72, bars.clone())), vec![0, 2]);

        let exact = JobConfig {
            infer_coverage_from_bars: false,
            ..JobConfig::default()
        };
        let mut j = BackfillJob::new(
            spec(BarSize::Min1),
            T0,
            T0 + 72 * 3_600,
            bars.clone(),
            exact,
        )
        .unwrap();
        assert_eq!(j.progress().bars, 36 * 60, "held bars are kept");
        j.skip_covered(&spans);
        assert_eq!(pending(&j), vec![0, 1, 2], "no chunk is wholly covered");
        run_all(&mut j);
        let p = j.progress();
        assert_eq!(
            (p.bars, p.bars_added, p.duplicates),
            (72 * 60, 36 * 60, 36 * 60)
        );

        // Chunks wholly inside the exact coverage are skipped.
        let mut k =
            BackfillJob::new(spec(BarSize::Min1), T0, T0 + 72 * 3_600, bars, exact).unwrap();
        k.skip_covered(&[(T0, T0 + 48 * 3_600)]);
        assert_eq!(pending(&k), vec![2]);
        assert_eq!(k.progress().chunks_resumed, 2);
    }
}
