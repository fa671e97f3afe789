//! The de-duplicating merge of a backfill's chunks: bars keyed by their start, trimmed to the
//! requested range, so overlapping or repeated chunks (resume, retries, IB's reach-back on `D`
//! durations) never duplicate or reorder a bar.

use std::collections::BTreeMap;

use super::plan::DAY_SECS;
use crate::civil::Date;
use crate::message::{Bar, BarTime};

/// The start of a bar in unix seconds: epoch times as they are, days at 00:00 UTC. `None` for
/// text times (we always request `formatDate=2`, so IB never sends them in a backfill).
pub fn bar_start_unix(time: &BarTime) -> Option<i64> {
    match time {
        BarTime::Epoch(t) => Some(*t),
        BarTime::Day(d) => {
            let date = Date::new(i32::try_from(d / 10_000).ok()?, d / 100 % 100, d % 100);
            date.is_valid().then(|| date.days() * DAY_SECS)
        }
        BarTime::Text(_) => None,
    }
}

/// What one chunk added to the merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Bars new to the set.
    pub added: usize,
    /// Bars already present (same start); the first copy is kept.
    pub duplicates: usize,
    /// Bars outside `[from, to)`, dropped.
    pub outside: usize,
    /// Bars whose time could not be placed (text form), dropped.
    pub unplaced: usize,
}

/// Bars of one backfill, unique by start time, inside `[from, to)`.
#[derive(Debug, Clone, Default)]
pub struct BarSet {
    from_unix: i64,
    to_unix: i64,
    bars: BTreeMap<i64, Bar>,
}

impl BarSet {
    /// An empty set for `[from, to)`.
    pub fn new(from_unix: i64, to_unix: i64) -> Self {
        Self {
            from_unix,
            to_unix,
            bars: BTreeMap::new(),
        }
    }

    /// Merge one chunk's bars (or bars loaded from an existing file).
    pub fn insert(&mut self, bars: impl IntoIterator<Item = Bar>) -> MergeOutcome {
        let mut out = MergeOutcome::default();
        for bar in bars {
            let Some(start) = bar_start_unix(&bar.date) else {
                out.unplaced += 1;
                continue;
            };
            if start < self.from_unix || start >= self.to_unix {
                out.outside += 1;
                continue;
            }
            match self.bars.entry(start) {
                std::collections::btree_map::Entry::Occupied(_) => out.duplicates += 1,
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(bar);
                    out.added += 1;
                }
            }
        }
        out
    }

    /// Number of bars.
    pub fn len(&self) -> usize {
        self.bars.len()
    }

    /// Whether there are no bars.
    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    /// Start of the newest bar, unix seconds.
    pub fn last_start(&self) -> Option<i64> {
        self.bars.keys().next_back().copied()
    }

    /// The bars, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Bar)> {
        self.bars.iter().map(|(t, b)| (*t, b))
    }

    /// The bars, oldest first, consuming the set.
    pub fn into_bars(self) -> Vec<Bar> {
        self.bars.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(t: BarTime, close: f64) -> Bar {
        Bar {
            date: t,
            close,
            ..Bar::default()
        }
    }

    #[test]
    fn merge_dedups_trims_and_orders() {
        let mut set = BarSet::new(1_000, 2_000);
        let first = set.insert([
            bar(BarTime::Epoch(1_500), 1.0),
            bar(BarTime::Epoch(1_000), 2.0),
            bar(BarTime::Epoch(999), 3.0),
            bar(BarTime::Epoch(2_000), 4.0),
            bar(BarTime::Text("20260101 10:00:00 UTC".into()), 5.0),
        ]);
        assert_eq!(
            first,
            MergeOutcome {
                added: 2,
                duplicates: 0,
                outside: 2,
                unplaced: 1
            }
        );
        let again = set.insert([
            bar(BarTime::Epoch(1_500), 9.0),
            bar(BarTime::Epoch(1_200), 6.0),
        ]);
        assert_eq!((again.added, again.duplicates), (1, 1));
        let closes: Vec<f64> = set.into_bars().iter().map(|b| b.close).collect();
        assert_eq!(
            closes,
            vec![2.0, 6.0, 1.0],
            "oldest first; the first copy wins"
        );
    }

    #[test]
    fn days_are_placed_at_utc_midnight() {
        assert_eq!(bar_start_unix(&BarTime::Day(20260101)), Some(1_767_225_600));
        assert_eq!(bar_start_unix(&BarTime::Day(20261399)), None);
        assert_eq!(bar_start_unix(&BarTime::Text("x".into())), None);
    }
}
