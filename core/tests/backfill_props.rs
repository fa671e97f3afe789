//! Backfill planning properties: for any range and bar size the chunks tile the aligned range
//! exactly, each is IB-legal, and merging is idempotent and order-independent.
#![allow(clippy::unwrap_used, missing_docs)]

use ibconn_core::backfill::{aligned_range, plan_chunks, BarSet};
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
            // Only the request cap may refuse a non-empty range.
            prop_assert!(i64::from(bar.max_request_secs()) * 200_000 < len);
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
