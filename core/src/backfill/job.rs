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
//! | contract details: the chunk meets no open session | recorded covered-closed, never asked ([below](#closed-sessions)) |
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
//!
//! # Closed sessions
//!
//! With [`JobConfig::skip_closed_sessions`] the contract details of the lookup (or those a caller
//! passes to [`BackfillJob::use_sessions_of`]) give the contract's sessions
//! ([`super::sessions`]); a chunk of the grid that meets none of them — a night, a weekend, a
//! holiday IB listed — is not asked and counts as covered (so a resume skips it too). A chunk that
//! meets a session is asked whole: the grid, and so the tiling and resume, stay as they are.
//!
//! # Layout
//!
//! This file holds the job's plan entries and their state bookkeeping; `outcome` holds the policy
//! above ([`BackfillJob::on_result`]), `sessions` the closed-session filter and `report` the
//! counters and the summary.
//!
//! [`ErrorClass::NoData`]: crate::classify::ErrorClass::NoData
//! [`ErrorClass::BeforeHeadTimestamp`]: crate::classify::ErrorClass::BeforeHeadTimestamp

mod outcome;
mod report;
mod sessions;

use std::collections::VecDeque;

use serde::Serialize;

pub use self::outcome::{ChunkError, ChunkFailure};
pub use self::report::{FailureSummary, Progress, Summary};
use super::lookup::{Lookup, LookupError};
use super::merge::BarSet;
use super::plan::{plan_chunks, Chunk, PlanError};
use super::sessions::{NoSessions, SessionUse};
use super::BackfillSpec;
use crate::connection::Query;
use crate::message::Bar;

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
    /// Ask no chunk that meets none of the contract's open sessions (see the
    /// [module docs](self#closed-sessions)); needs the contract details, from the lookup or
    /// [`BackfillJob::use_sessions_of`]. On by default; off asks every chunk of the grid.
    pub skip_closed_sessions: bool,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            max_pacing_requeues: 20,
            infer_coverage_from_bars: true,
            lookup: false,
            skip_closed_sessions: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    InFlight,
    Done,
    Empty(EmptyBy),
    Resumed,
    /// No open session meets the chunk: covered without a request.
    Closed,
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
            State::Done | State::Resumed | State::Closed | State::Empty(EmptyBy::HeadTimestamp) => {
                true
            }
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
    super::spans::merge(
        entries
            .map(|e| (e.planned_start, e.chunk.end_unix))
            .collect(),
    )
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
    sessions: SessionUse,
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
        let sessions = if !cfg.skip_closed_sessions {
            SessionUse::Off(NoSessions::Disabled)
        } else if spec.bar_size.is_daily_or_longer() {
            SessionUse::Off(NoSessions::DailyBars)
        } else if cfg.lookup {
            SessionUse::Pending
        } else {
            SessionUse::Off(NoSessions::NoDetails)
        };
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
            sessions,
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
            if let Some(q) = lookup.poll(&s.contract, s.what_to_show, s.use_rth) {
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
                // The chunk's duration follows its start.
                entry.chunk.start_unix = head_unix;
            }
        }
        let entries = &self.entries;
        self.queue
            .retain(|&i| entries.get(i).is_some_and(|e| e.state == State::Queued));
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

    fn set(&mut self, id: ChunkId, state: State) {
        if let Some(e) = self.entries.get_mut(id.0) {
            e.state = state;
        }
    }

    fn requeue(&mut self, id: ChunkId) {
        self.set(id, State::Queued);
        self.queue.push_back(id.0);
    }
}
#[cfg(test)]
mod tests;
