//! Splitting `[from, to)` into IB-legal historical requests that tile the range exactly.
//!
//! Every chunk is anchored on its end (`endDateTime` in UTC, `YYYYMMDD-HH:MM:SS`, with
//! `formatDate=2` replies) and covers `[start, end)`; consecutive chunks share their boundary, so
//! the union is the whole range with no gap and no overlap. Chunk length is the bar size's largest
//! legal span ([`BarSize::max_request_secs`]); spans up to a day are requested in seconds (exact),
//! longer ones in whole days (IB's `D` may reach further back — the merge trims to the range).

use crate::bar_size::BarSize;
pub use crate::civil::format_utc;

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
    /// `endDateTime` as sent: UTC, `YYYYMMDD-HH:MM:SS`.
    pub end_date_time: String,
    /// `durationStr` as sent, e.g. `3600 S` or `30 D`.
    pub duration: String,
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
    (
        from_unix.div_euclid(step) * step,
        to_unix.div_euclid(step) * step
            + if to_unix.rem_euclid(step) == 0 {
                0
            } else {
                step
            },
    )
}

/// Split `[from, to)` into requests for `bar`, oldest first.
pub fn plan_chunks(bar: BarSize, from_unix: i64, to_unix: i64) -> Result<Vec<Chunk>, PlanError> {
    let (from, to) = aligned_range(bar, from_unix, to_unix);
    if from >= to {
        return Err(PlanError::EmptyRange { from, to });
    }
    let span = i64::from(bar.max_request_secs());
    let needed = (to - from + span - 1) / span;
    if needed > MAX_CHUNKS as i64 {
        return Err(PlanError::TooManyChunks {
            chunks: u64::try_from(needed).unwrap_or(u64::MAX),
            bar,
            max: MAX_CHUNKS,
        });
    }
    let mut chunks = Vec::with_capacity(usize::try_from(needed).unwrap_or(0));
    let mut start = from;
    while start < to {
        let end = (start + span).min(to);
        chunks.push(Chunk {
            index: chunks.len(),
            start_unix: start,
            end_unix: end,
            end_date_time: format_utc(end),
            duration: duration_string(end - start),
        });
        start = end;
    }
    Ok(chunks)
}

/// IB duration text for a span: exact seconds up to a day, whole days (rounded up) beyond.
pub fn duration_string(secs: i64) -> String {
    if secs <= DAY_SECS {
        format!("{secs} S")
    } else {
        format!("{} D", (secs + DAY_SECS - 1) / DAY_SECS)
    }
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
    fn durations_are_exact_up_to_a_day() {
        assert_eq!(duration_string(3_600), "3600 S");
        assert_eq!(duration_string(86_400), "86400 S");
        assert_eq!(duration_string(86_401), "2 D");
        assert_eq!(duration_string(30 * 86_400), "30 D");
        let chunks = plan_chunks(BarSize::Sec5, 0, 7_200).unwrap();
        assert_eq!(
            chunks
                .iter()
                .map(|c| (c.end_date_time.as_str(), c.duration.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("19700101-01:00:00", "3600 S"),
                ("19700101-02:00:00", "3600 S")
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
