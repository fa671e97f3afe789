//! Splitting `[from, to)` into IB-legal historical requests that tile the range exactly.
//!
//! Every chunk is anchored on its end (`endDateTime` in UTC, `YYYYMMDD-HH:MM:SS`, with
//! `formatDate=2` replies) and covers `[start, end)`; consecutive chunks share their boundary, so
//! the union is the whole range with no gap and no overlap. Chunk length is the bar size's largest
//! legal span ([`BarSize::max_request_secs`]); spans up to a day are requested in seconds (exact),
//! longer ones in whole days (IB's `D` may reach further back — the merge trims to the range).
//!
//! Chunk boundaries lie on a fixed grid: the multiples of the span counted from the Unix epoch
//! (for spans of whole days, UTC midnights). Only the first and last chunk may be partial, so two
//! plans with different `from` share every boundary inside both, and a resume compares like with
//! like: a chunk of this run is a chunk of every earlier run, or the partial edge of one.

use std::num::NonZeroU32;

use crate::bar_size::BarSize;
pub use crate::civil::format_utc;
use crate::ib_duration::{DurationUnit, IbDuration};
use crate::query::EndTime;

/// Seconds per day.
pub const DAY_SECS: i64 = crate::civil::SECS_PER_DAY;

/// Refuse plans larger than this many requests (a 1-second backfill over years is a mistake:
/// at IB's 60 requests per 10 minutes it would take weeks).
pub const MAX_CHUNKS: usize = 200_000;

/// One historical request of a backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the plan, oldest first.
    pub index: usize,
    /// First second covered (inclusive), unix seconds.
    pub start_unix: i64,
    /// End of the span (exclusive), unix seconds; the request's `endDateTime`.
    pub end_unix: i64,
}

impl Chunk {
    /// The request's end time: [`Chunk::end_unix`], sent in UTC as `YYYYMMDD-HH:MM:SS`.
    pub fn end(&self) -> EndTime {
        EndTime::At(self.end_unix)
    }

    /// The request's duration, covering `[start_unix, end_unix)`: see [`span_duration`].
    pub fn duration(&self) -> IbDuration {
        span_duration(self.end_unix - self.start_unix)
    }
}

/// Why a range cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// `to` is not after `from` (after aligning both to the bar size).
    #[error("empty range: from {from} is not before to {to}")]
    EmptyRange {
        /// Aligned start.
        from: i64,
        /// Aligned end.
        to: i64,
    },
    /// The plan would need more requests than [`MAX_CHUNKS`].
    #[error("{chunks} requests needed at {bar}; the limit is {max} — use a larger bar size or a shorter range")]
    TooManyChunks {
        /// Requests needed.
        chunks: u64,
        /// The bar size.
        bar: BarSize,
        /// The limit.
        max: usize,
    },
}

/// The span a backfill covers once aligned to bar boundaries: `from` rounded down and `to` rounded
/// up to a multiple of the bar length (a day for daily and longer bars), so no bar is cut in two.
pub fn aligned_range(bar: BarSize, from_unix: i64, to_unix: i64) -> (i64, i64) {
    let step = if bar.is_daily_or_longer() {
        DAY_SECS
    } else {
        i64::from(bar.seconds())
    };
    // Saturating: a range at the edge of `i64` stays unaligned rather than overflowing.
    let up = if to_unix.rem_euclid(step) == 0 {
        0
    } else {
        step
    };
    (
        from_unix.div_euclid(step).saturating_mul(step),
        to_unix
            .div_euclid(step)
            .saturating_mul(step)
            .saturating_add(up),
    )
}

/// Split `[from, to)` into requests for `bar`, oldest first, on the epoch-anchored grid of the
/// bar size's span (see the [module docs](self)): the first and last chunk may be partial.
pub fn plan_chunks(bar: BarSize, from_unix: i64, to_unix: i64) -> Result<Vec<Chunk>, PlanError> {
    let (from, to) = aligned_range(bar, from_unix, to_unix);
    if from >= to {
        return Err(PlanError::EmptyRange { from, to });
    }
    let span = i64::from(bar.max_request_secs());
    // Grid cells touched by `[from, to)`; i128 so no range can overflow the count.
    let needed = i128::from((to - 1).div_euclid(span)) - i128::from(from.div_euclid(span)) + 1;
    if needed > MAX_CHUNKS as i128 {
        return Err(PlanError::TooManyChunks {
            chunks: u64::try_from(needed).unwrap_or(u64::MAX),
            bar,
            max: MAX_CHUNKS,
        });
    }
    let mut chunks = Vec::with_capacity(usize::try_from(needed).unwrap_or(0));
    let mut start = from;
    while start < to {
        // The next grid line after `start`, or `to` if that comes first (or the line overflows).
        let end = (start.div_euclid(span) + 1)
            .checked_mul(span)
            .map_or(to, |line| line.min(to));
        chunks.push(Chunk {
            index: chunks.len(),
            start_unix: start,
            end_unix: end,
        });
        start = end;
    }
    Ok(chunks)
}

/// IB duration for a span of `secs`: exact seconds up to a day, whole days (rounded up) beyond.
/// A chunk is never empty; were `secs` not positive, the shortest duration IB takes (`1 S`).
pub fn span_duration(secs: i64) -> IbDuration {
    let (count, unit) = if secs <= DAY_SECS {
        (secs, DurationUnit::Seconds)
    } else {
        (
            secs.div_euclid(DAY_SECS) + i64::from(secs % DAY_SECS != 0),
            DurationUnit::Days,
        )
    };
    let count = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    IbDuration::new(NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN), unit)
}

/// Drop the chunks already covered by data up to `covered_until` (exclusive): what a resumed
/// backfill still has to fetch. A chunk partly covered is kept whole (the merge de-duplicates).
pub fn remaining(chunks: &[Chunk], covered_until_unix: i64) -> Vec<Chunk> {
    chunks
        .iter()
        .filter(|c| c.end_unix > covered_until_unix)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_range_exactly() {
        for bar in BarSize::ALL {
            let from = 1_767_225_600 - 3 * 86_400 + 17; // unaligned on purpose
            let to = 1_767_225_600 + 40 * 86_400 + 5;
            let chunks = plan_chunks(bar, from, to).unwrap();
            let (a, b) = aligned_range(bar, from, to);
            assert!(
                a <= from && b >= to,
                "{bar}: alignment widens, never narrows"
            );
            assert_eq!(chunks.first().unwrap().start_unix, a, "{bar}");
            assert_eq!(chunks.last().unwrap().end_unix, b, "{bar}");
            for w in chunks.windows(2) {
                assert_eq!(w[0].end_unix, w[1].start_unix, "{bar}: no gap, no overlap");
            }
            for c in &chunks {
                let len = c.end_unix - c.start_unix;
                assert!(len > 0 && len <= i64::from(bar.max_request_secs()), "{bar}");
            }
        }
    }

    #[test]
    fn the_grid_is_anchored_at_the_epoch() {
        // 1-hour bars: 30-day chunks on multiples of 30 days since 1970-01-01 00:00 UTC.
        let span = |from: i64| -> Vec<(i64, i64)> {
            plan_chunks(BarSize::Hour1, from, 70 * DAY_SECS)
                .unwrap()
                .iter()
                .map(|c| (c.start_unix, c.end_unix))
                .collect()
        };
        let d = DAY_SECS;
        assert_eq!(
            span(10 * d),
            vec![(10 * d, 30 * d), (30 * d, 60 * d), (60 * d, 70 * d)]
        );
        assert_eq!(span(25 * d + 3_600)[1..], span(10 * d)[1..]);
        let first = &plan_chunks(BarSize::Hour1, 10 * d, 70 * d).unwrap()[0];
        assert_eq!(
            (first.end().to_string(), first.duration().to_string()),
            ("19700131-00:00:00".to_owned(), "20 D".to_owned())
        );
        // A partial chunk of a second-sized span is requested exactly.
        let c = plan_chunks(BarSize::Sec5, 1_800, 7_200).unwrap();
        assert_eq!(
            c.iter()
                .map(|c| c.duration().to_string())
                .collect::<Vec<_>>(),
            vec!["1800 S", "3600 S"]
        );
        // Before the epoch too.
        let c = plan_chunks(BarSize::Sec5, -5_400, 0).unwrap();
        assert_eq!(
            c.iter().map(|c| c.start_unix).collect::<Vec<_>>(),
            vec![-5_400, -3_600]
        );
    }

    #[test]
    fn the_request_cap_counts_grid_cells() {
        // 200,000 one-hour cells exactly, but starting mid-cell: one more is needed.
        let (s, h) = (3_600, 200_000 * 3_600);
        assert_eq!(plan_chunks(BarSize::Sec5, 0, h).unwrap().len(), MAX_CHUNKS);
        assert!(matches!(
            plan_chunks(BarSize::Sec5, s / 2, h + s / 2),
            Err(PlanError::TooManyChunks {
                chunks: 200_001,
                ..
            })
        ));
    }

    #[test]
    fn durations_are_exact_up_to_a_day() {
        let text = |secs| span_duration(secs).to_string();
        assert_eq!(text(3_600), "3600 S");
        assert_eq!(text(86_400), "86400 S");
        assert_eq!(text(86_401), "2 D");
        assert_eq!(text(30 * 86_400), "30 D");
        assert_eq!(text(0), "1 S", "never the empty duration IB refuses");
        let chunks = plan_chunks(BarSize::Sec5, 0, 7_200).unwrap();
        assert_eq!(
            chunks
                .iter()
                .map(|c| (c.end().to_string(), c.duration().to_string()))
                .collect::<Vec<_>>(),
            vec![
                ("19700101-01:00:00".to_owned(), "3600 S".to_owned()),
                ("19700101-02:00:00".to_owned(), "3600 S".to_owned())
            ]
        );
    }

    #[test]
    fn empty_and_oversized_plans_are_refused() {
        assert!(matches!(
            plan_chunks(BarSize::Hour1, 7_200, 7_200),
            Err(PlanError::EmptyRange { .. })
        ));
        assert!(matches!(
            plan_chunks(BarSize::Sec1, 0, 20 * 365 * 86_400),
            Err(PlanError::TooManyChunks { .. })
        ));
    }

    #[test]
    fn resuming_skips_covered_chunks() {
        let chunks = plan_chunks(BarSize::Hour1, 0, 90 * 86_400).unwrap();
        assert_eq!(chunks.len(), 3);
        let rest = remaining(&chunks, 40 * 86_400);
        assert_eq!(rest.iter().map(|c| c.index).collect::<Vec<_>>(), vec![1, 2]);
        assert!(remaining(&chunks, 90 * 86_400).is_empty());
    }
}
