//! Historical backfill planning, pure: which requests cover a range ([`plan`]), which of them can
//! hold bars at all ([`sessions`]), how their bars merge ([`merge`]), and how long IB's pacing will
//! make them take ([`estimate`]) — decided here so `ibconn plan` and `ibconn fetch` agree, and so
//! both are testable without a gateway.

pub mod job;
pub mod lookup;
pub mod merge;
pub mod plan;
pub mod sessions;
pub mod spans;

use std::time::{Duration, Instant};

pub use self::job::{
    BackfillJob, ChunkError, ChunkFailure, ChunkId, FailureSummary, JobConfig, Progress, Summary,
};
pub use self::lookup::{parse_head_timestamp, LookupError};
pub use self::merge::{bar_start_unix, BarSet, MergeOutcome};
pub use self::plan::{aligned_range, plan_chunks, remaining, Chunk, PlanError};
pub use self::sessions::{HoursList, NoSessions, SessionCalendar, SessionUse};
use crate::bar_size::BarSize;
use crate::date_format::DateFormat;
use crate::message::Contract;
use crate::pacer::{HistoricalRequestKey, Hold, PacedRequest, Pacer, PacerError, PacingRules};
use crate::query::HistoricalQuery;
use crate::what_to_show::WhatToShow;

/// What every chunk of one backfill shares.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillSpec {
    /// The instrument.
    pub contract: Contract,
    /// Bar size.
    pub bar_size: BarSize,
    /// The price series.
    pub what_to_show: WhatToShow,
    /// Regular trading hours only.
    pub use_rth: bool,
}

impl BackfillSpec {
    /// The query for one chunk: its window, epoch-second bar times, no streaming.
    pub fn request(&self, chunk: &Chunk) -> HistoricalQuery {
        HistoricalQuery {
            contract: self.contract.clone(),
            end: chunk.end(),
            duration: chunk.duration(),
            bar_size: self.bar_size,
            what_to_show: self.what_to_show,
            use_rth: self.use_rth,
            format_date: DateFormat::Epoch,
            keep_up_to_date: false,
        }
    }

    /// The pacer's view of one chunk's request.
    pub fn pacing_key(&self, chunk: &Chunk) -> PacedRequest {
        let c = &self.contract;
        PacedRequest::Historical(HistoricalRequestKey {
            contract: if c.con_id != 0 {
                c.con_id.to_string()
            } else {
                format!("{}/{}/{}", c.symbol, c.sec_type, c.currency)
            },
            exchange: c.exchange.clone(),
            end: chunk.end().to_string(),
            duration: chunk.duration().to_string(),
            bar_size: self.bar_size,
            what_to_show: self.what_to_show,
            use_rth: self.use_rth,
        })
    }
}

/// How long a plan takes under IB's pacing, computed by running the real pacer in virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Requests in the plan.
    pub requests: usize,
    /// Requests the pacer had to hold back.
    pub delayed: usize,
    /// Those, by the rule that held each.
    pub held_by: HeldCounts,
    /// From the first send to the last answer.
    pub makespan: Duration,
}

/// Requests held back, by the rule that set their send time ([`Hold`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldCounts {
    /// By the historical window (IB: 60 requests per 10 minutes).
    pub historical_window: usize,
    /// By the per-contract burst rule (IB: 5 requests per 2 seconds per contract).
    pub burst: usize,
    /// By the identical-request gap (IB: 15 seconds).
    pub identical: usize,
    /// By anything else: the message rate, a pause after a violation, other processes' slots.
    pub other: usize,
}

impl HeldCounts {
    /// Count one request held by `hold`.
    pub fn add(&mut self, hold: Option<Hold>) {
        match hold {
            Some(Hold::HistoricalWindow) => self.historical_window += 1,
            Some(Hold::Burst) => self.burst += 1,
            Some(Hold::Identical) => self.identical += 1,
            _ => self.other += 1,
        }
    }
}

/// Run `chunks` through a fresh [`Pacer`] with `rules`, assuming each answer takes `latency`.
pub fn estimate(
    spec: &BackfillSpec,
    chunks: &[Chunk],
    rules: PacingRules,
    latency: Duration,
    origin: Instant,
) -> Result<Estimate, PacerError> {
    estimate_behind(spec, chunks, Pacer::new(rules), latency, origin)
}

/// [`estimate`] on `pacer` as it is at `origin` — e.g. [`Pacer::from_book`] on a shared book, so
/// the estimate waits behind what other processes reserved.
pub fn estimate_behind(
    spec: &BackfillSpec,
    chunks: &[Chunk],
    pacer: Pacer,
    latency: Duration,
    origin: Instant,
) -> Result<Estimate, PacerError> {
    let keys: Vec<PacedRequest> = chunks.iter().map(|c| spec.pacing_key(c)).collect();
    estimate_requests(&keys, pacer, latency, origin)
}

/// [`estimate_behind`] for requests of any kind, sent in the order given (e.g. several
/// backfills' chunks interleaved, as one pool sends them).
pub fn estimate_requests(
    requests: &[PacedRequest],
    mut pacer: Pacer,
    latency: Duration,
    origin: Instant,
) -> Result<Estimate, PacerError> {
    let mut open: Vec<(Instant, crate::pacer::ReservationId)> = Vec::new();
    let (mut now, mut last_answer, mut delayed) = (origin, origin, 0);
    let mut held_by = HeldCounts::default();
    for key in requests {
        let reservation = loop {
            // Answers that arrived by `now` free their open slots.
            let (answered, pending): (Vec<_>, Vec<_>) =
                open.into_iter().partition(|(done, _)| *done <= now);
            open = pending;
            for (_, id) in answered {
                pacer.complete(id)?;
            }
            match pacer.reserve(now, key) {
                Ok(r) => break r,
                // All open slots held: the driver waits for the next answer.
                Err(full @ PacerError::OpenRequestsFull { .. }) => {
                    now = now.max(open.iter().map(|o| o.0).min().ok_or(full)?);
                }
                Err(e) => return Err(e),
            }
        };
        if reservation.at > now {
            delayed += 1;
            held_by.add(reservation.held_by);
        }
        let done = reservation.at + latency;
        last_answer = last_answer.max(done);
        open.push((done, reservation.id));
    }
    Ok(Estimate {
        requests: requests.len(),
        delayed,
        held_by,
        makespan: last_answer.saturating_duration_since(origin),
    })
}

#[cfg(test)]
mod tests {
    // One arbitrary origin; every later instant is derived from it (virtual time).
    #![allow(clippy::disallowed_methods)]

    use super::*;

    fn spec(bar_size: BarSize) -> BackfillSpec {
        BackfillSpec {
            contract: Contract::stock("AAPL"),
            bar_size,
            what_to_show: WhatToShow::Trades,
            use_rth: true,
        }
    }

    /// The estimate for `[0, to)` under IB's default rules, answers after 1 s.
    fn estimate_range(bar: BarSize, to: i64) -> Estimate {
        let chunks = plan_chunks(bar, 0, to).unwrap();
        let rules = PacingRules::default();
        estimate(
            &spec(bar),
            &chunks,
            rules,
            Duration::from_secs(1),
            Instant::now(),
        )
        .unwrap()
    }

    #[test]
    fn requests_carry_the_chunk_window() {
        let chunks = plan_chunks(BarSize::Min5, 1_767_225_600, 1_767_225_600 + 86_400).unwrap();
        let r = spec(BarSize::Min5).request(&chunks[0]).to_wire(0);
        assert_eq!(r.end_date_time, "20260102-00:00:00");
        assert_eq!(r.duration, "86400 S");
        assert_eq!(r.bar_size, "5 mins");
        assert_eq!(r.format_date, 2);
    }

    #[test]
    fn a_small_bar_backfill_is_paced_to_sixty_per_ten_minutes() {
        // 121 hours of 5-second bars = 121 requests: 60 + 60 + 1 → two full windows.
        let e = estimate_range(BarSize::Sec5, 121 * 3_600);
        assert_eq!(e.requests, 121);
        assert!(e.delayed > 0);
        assert!(
            e.makespan >= Duration::from_secs(1_200) && e.makespan < Duration::from_secs(1_300),
            "{:?}",
            e.makespan
        );
    }

    #[test]
    fn waits_are_blamed_on_the_rule_that_set_them() {
        // Six chunks of one contract: the sixth waits 2 s for the per-contract burst rule.
        let e = estimate_range(BarSize::Sec5, 6 * 3_600);
        assert_eq!(
            e.held_by,
            HeldCounts {
                burst: 1,
                ..HeldCounts::default()
            }
        );
        // 121: the first 60 go 5 per 2 s (55 held by the burst rule), the rest wait for the
        // 10-minute window.
        let e = estimate_range(BarSize::Sec5, 121 * 3_600);
        assert_eq!(e.held_by.burst, 55, "{:?}", e.held_by);
        assert_eq!(e.held_by.historical_window, 61, "{:?}", e.held_by);
        assert_eq!(e.delayed, 116);
    }

    #[test]
    fn large_bars_are_not_held_to_the_small_bar_rules() {
        let e = estimate_range(BarSize::Hour1, 400 * 86_400);
        assert_eq!(e.requests, 14);
        assert_eq!(e.makespan, Duration::from_secs(1));
    }

    #[test]
    fn an_estimate_waits_behind_what_a_shared_book_already_holds() {
        use crate::pacer::{PaceBook, PaceTime};
        // Another process sent 60 small-bar requests in the last seconds: the window is full.
        let rules = PacingRules::default();
        let t0 = PaceTime(1_000_000_000_000);
        let mut book = PaceBook::new(1);
        book.touch("other", t0.plus(Duration::from_secs(3_600)));
        let theirs = plan_chunks(BarSize::Sec5, 0, 60 * 3_600).unwrap();
        let other = BackfillSpec {
            contract: Contract::stock("MSFT"),
            ..spec(BarSize::Sec5)
        };
        for c in &theirs {
            let sent = book.reserve(&rules, t0, t0, &other.pacing_key(c), Some("other"));
            // Answered since: only the window still counts them.
            book.complete(sent.unwrap().id).unwrap();
        }
        let ours = plan_chunks(BarSize::Sec5, 0, 3_600).unwrap();
        let origin = Instant::now();
        let fresh = estimate(
            &spec(BarSize::Sec5),
            &ours,
            rules.clone(),
            Duration::from_secs(1),
            origin,
        )
        .unwrap();
        assert_eq!(fresh.makespan, Duration::from_secs(1));
        let seen_at = t0.plus(Duration::from_secs(30));
        let pacer = Pacer::from_book(rules, book, origin, seen_at);
        let behind = estimate_behind(
            &spec(BarSize::Sec5),
            &ours,
            pacer,
            Duration::from_secs(1),
            origin,
        )
        .unwrap();
        assert_eq!(behind.delayed, 1);
        assert!(
            behind.makespan >= Duration::from_secs(560),
            "{:?}: the 61st request of the window waits for its first to leave it",
            behind.makespan
        );
    }
}
