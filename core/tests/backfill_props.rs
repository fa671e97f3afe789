//! Backfill planning properties: for any range and bar size the chunks tile the aligned range
//! exactly, each is IB-legal, the chunk grid does not depend on `from`, and merging is idempotent
//! and order-independent.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;

use ibconn_core::backfill::{aligned_range, plan_chunks, BarSet, Chunk};
use ibconn_core::bar_size::BarSize;
use ibconn_core::message::{Bar, BarTime};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunks_tile_any_range(
        bar in prop::sample::select(BarSize::ALL.to_vec()),
        from in 946_684_800i64..1_800_000_000,
        len in 1i64..(3 * 365 * 86_400),
    ) {
        let to = from + len;
        let Ok(chunks) = plan_chunks(bar, from, to) else {
            // Only the request cap may refuse a non-empty range (the grid cells it touches,
            // partial ones at both ends included).
            prop_assert!(i64::from(bar.max_request_secs()) * 199_996 < len);
            return Ok(());
        };
        let (a, b) = aligned_range(bar, from, to);
        prop_assert!(a <= from && to <= b);
        prop_assert_eq!(chunks[0].start_unix, a);
        prop_assert_eq!(chunks.last().unwrap().end_unix, b);
        for (i, c) in chunks.iter().enumerate() {
            prop_assert_eq!(c.index, i);
            prop_assert!(c.start_unix < c.end_unix);
            prop_assert!(c.end_unix - c.start_unix <= i64::from(bar.max_request_secs()));
            if i > 0 {
                prop_assert_eq!(chunks[i - 1].end_unix, c.start_unix);
            }
        }
    }

    #[test]
    fn the_chunk_grid_does_not_depend_on_from(
        bar in prop::sample::select(BarSize::ALL.to_vec()),
        from1 in 946_684_800i64..1_800_000_000,
        from2 in 946_684_800i64..1_800_000_000,
        len in 1i64..(3 * 365 * 86_400),
    ) {
        let to = from1.max(from2) + len;
        let (Ok(one), Ok(two)) = (plan_chunks(bar, from1, to), plan_chunks(bar, from2, to)) else {
            return Ok(()); // over the request cap
        };
        let bounds = |chunks: &[Chunk]| -> BTreeSet<i64> {
            chunks.iter().flat_map(|c| [c.start_unix, c.end_unix]).collect()
        };
        let two_bounds = bounds(&two);
        // Past both starts, every boundary of one plan is a boundary of the other. (At the
        // later start itself, its own plan begins a partial chunk the other need not split.)
        let start = from1.max(from2);
        for b in bounds(&one).range(start + 1..) {
            prop_assert!(
                two_bounds.contains(b),
                "{bar}: boundary {b} of plan({from1}) is not one of plan({from2}) (to {to})"
            );
        }
        // Interior boundaries lie on the epoch-anchored grid.
        let span = i64::from(bar.max_request_secs());
        for c in &one[1..] {
            prop_assert_eq!(c.start_unix.rem_euclid(span), 0);
        }
    }

    #[test]
    fn merging_is_idempotent_and_order_independent(
        times in prop::collection::vec(0i64..10_000, 0..200),
        split in 0usize..200,
    ) {
        let bars: Vec<Bar> = times
            .iter()
            .map(|t| Bar { date: BarTime::Epoch(*t), close: *t as f64, ..Bar::default() })
            .collect();
        let mut once = BarSet::new(1_000, 9_000);
        once.insert(bars.clone());
        let mut twice = BarSet::new(1_000, 9_000);
        let (a, b) = bars.split_at(split.min(bars.len()));
        twice.insert(b.to_vec());
        twice.insert(a.to_vec());
        twice.insert(bars.clone());
        let starts = |s: &BarSet| s.iter().map(|(t, _)| t).collect::<Vec<_>>();
        prop_assert_eq!(starts(&once), starts(&twice));
        let mut expected: Vec<i64> = times.iter().copied().filter(|t| (1_000..9_000).contains(t)).collect();
        expected.sort_unstable();
        expected.dedup();
        prop_assert_eq!(starts(&once), expected);
    }
}
