//! The account of a job: its counters ([`Progress`]) and the serializable [`Summary`] a caller
//! prints or stores beside the bars.

use serde::Serialize;

use super::{BackfillJob, State};
use crate::backfill::lookup::LookupError;
use crate::backfill::sessions::SessionUse;
use crate::bar_size::BarSize;
use crate::what_to_show::WhatToShow;

/// Counters of a job so far ([`BackfillJob::progress`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Chunks in the plan.
    pub chunks_total: usize,
    /// Chunks finished: fetched, empty, closed, skipped on resume or failed.
    pub chunks_done: usize,
    /// Chunks skipped on resume: held bars or an earlier run's coverage showed them fetched.
    pub chunks_resumed: usize,
    /// Chunks not asked because no open session of the contract meets them (nights, weekends,
    /// holidays IB listed): covered without a request.
    pub chunks_closed: usize,
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
    /// Bar size (serialized in IB's spelling).
    pub bar_size: BarSize,
    /// `whatToShow` (serialized in IB's spelling).
    pub what_to_show: WhatToShow,
    /// Regular trading hours only.
    pub use_rth: bool,
    /// Range start (aligned), unix seconds.
    pub from_unix: i64,
    /// Range end (aligned, exclusive), unix seconds.
    pub to_unix: i64,
    /// The head timestamp the range was clamped to, if it was.
    pub clamped_to_unix: Option<i64>,
    /// Whether chunks of closed sessions were skipped, and if not, why.
    pub sessions: SessionUse,
    /// Counters.
    pub progress: Progress,
    /// Whether every chunk finished without failure.
    pub complete: bool,
    /// The failed chunks.
    pub failures: Vec<FailureSummary>,
    /// Why the job ended before its first chunk, if it did (see [`JobConfig::lookup`]).
    ///
    /// [`JobConfig::lookup`]: super::JobConfig::lookup
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_error: Option<LookupError>,
}

impl BackfillJob {
    /// The counters so far.
    pub fn progress(&self) -> Progress {
        let count = |s: State| self.entries.iter().filter(|e| e.state == s).count();
        let in_flight = count(State::InFlight);
        Progress {
            chunks_total: self.entries.len(),
            chunks_done: self.entries.len() - in_flight - count(State::Queued),
            chunks_resumed: count(State::Resumed),
            chunks_closed: count(State::Closed),
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

    /// The serializable account.
    pub fn summary(&self) -> Summary {
        Summary {
            symbol: self.spec.contract.symbol.clone(),
            bar_size: self.spec.bar_size,
            what_to_show: self.spec.what_to_show,
            use_rth: self.spec.use_rth,
            from_unix: self.from_unix,
            to_unix: self.to_unix,
            clamped_to_unix: self.clamped_to,
            sessions: self.sessions.clone(),
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
}
