//! The pool's recent past for `GET /api/ib/pool/history`: two fixed-size rings of [`Sample`]s,
//! one per sampling interval (default 10 s) for an hour and one per 6 intervals (1 min) for a
//! day. Both are allocated once at start and never grow, so memory is bounded whatever the
//! uptime: (360 + 1440) × `size_of::<Sample>()` (64 bytes) = 115,200 bytes ≈ 113 KiB.
//!
//! [`History::push`] is pure (the caller passes the time), so the bounds are tested with made-up
//! clocks.

use std::collections::VecDeque;
use std::time::Duration;

use ibconn_core::pool::PoolStats;
use serde::Serialize;

/// Samples kept by the fine tier: one per interval for an hour (at the default 10 s).
pub(crate) const FINE_SAMPLES: usize = 360;
/// Samples kept by the coarse tier: one per [`COARSE_FACTOR`] intervals for a day (1 min each at
/// the default).
pub(crate) const COARSE_SAMPLES: usize = 1440;
/// Intervals per coarse sample.
pub(crate) const COARSE_FACTOR: u32 = 6;
/// The default sampling interval.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The pool at one moment, small enough that a day of them is cheap. Gauges are the fullest
/// gateway's (the one that will make requests wait first); counters are cumulative since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When (Unix ms): the latest sample merged into this slot.
    pub(crate) at_ms: u64,
    /// Historical weight in the 10-minute window (shared book: every process on the gateway).
    pub(crate) historical: u32,
    /// Open requests (shared book).
    pub(crate) open: u32,
    /// Messages in the last 1 s window (this process; IB counts per connection).
    pub(crate) messages: u32,
    /// Connections ready.
    pub(crate) ready: u32,
    /// Requests submitted.
    pub(crate) requests: u64,
    /// Requests that waited for a pacing slot.
    pub(crate) pacing_waits: u64,
    /// Pacing violations (162) and rate limits (100).
    pub(crate) violations: u64,
    /// IB errors and notices of every class.
    pub(crate) errors: u64,
    /// The slowest connection's last probe round trip, µs.
    pub(crate) probe_rtt_us: Option<u32>,
}

impl Sample {
    /// The sample of `stats` taken at `at_ms`.
    pub(crate) fn of(stats: &PoolStats, at_ms: u64) -> Self {
        let fullest = |pick: fn(&ibconn_core::pacer::PacerSnapshot) -> u32| {
            stats
                .gateways
                .iter()
                .map(|g| pick(&g.pacer))
                .max()
                .unwrap_or(0)
        };
        let ready = stats
            .connections
            .iter()
            .filter(|c| c.state == "ready")
            .count();
        Self {
            at_ms,
            historical: fullest(|p| p.historical_weight_in_window),
            open: fullest(|p| p.open_requests),
            messages: fullest(|p| p.messages_in_window),
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
            requests: stats.requests,
            pacing_waits: stats.pacing_waits,
            violations: stats.pacing_violations.saturating_add(stats.rate_limited),
            errors: stats.errors_by_class.values().sum(),
            probe_rtt_us: stats
                .connections
                .iter()
                .filter_map(|c| c.session.as_ref()?.last_probe_rtt_us)
                .max()
                .map(|us| u32::try_from(us).unwrap_or(u32::MAX)),
        }
    }

    /// Fold a later sample of the same slot in: gauges keep their peak (a chart must not hide a
    /// full window), counters and the time the latest value.
    fn merge(&mut self, later: &Self) {
        *self = Self {
            at_ms: self.at_ms.max(later.at_ms),
            historical: self.historical.max(later.historical),
            open: self.open.max(later.open),
            messages: self.messages.max(later.messages),
            ready: later.ready,
            requests: later.requests,
            pacing_waits: later.pacing_waits,
            violations: later.violations,
            errors: later.errors,
            probe_rtt_us: later.probe_rtt_us.or(self.probe_rtt_us),
        };
    }
}

/// One ring: a slot per `period_ms`, at most `capacity` slots, none older than
/// `capacity × period_ms` before the latest push.
#[derive(Debug, Clone)]
pub(crate) struct Tier {
    name: &'static str,
    period_ms: u64,
    capacity: usize,
    samples: VecDeque<Sample>,
}

impl Tier {
    /// An empty ring, its memory allocated now.
    fn new(name: &'static str, period: Duration, capacity: usize) -> Self {
        Self {
            name,
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1),
            capacity,
            samples: VecDeque::with_capacity(capacity),
        }
    }

    /// Record `sample` taken at `now_ms`: into the last slot when it is the same period (or the
    /// clock stepped back), else into a new slot, dropping the oldest beyond the bounds.
    fn push(&mut self, now_ms: u64, sample: Sample) {
        let slot = now_ms / self.period_ms;
        let sample = Sample {
            at_ms: now_ms,
            ..sample
        };
        if let Some(last) = self.samples.back_mut() {
            if slot <= last.at_ms / self.period_ms {
                last.merge(&sample);
                return;
            }
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        let horizon = self.capacity as u64;
        while self
            .samples
            .front()
            .is_some_and(|s| s.at_ms / self.period_ms + horizon <= slot)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes the ring holds for samples (fixed at creation).
    fn memory_bytes(&self) -> usize {
        self.samples.capacity() * size_of::<Sample>()
    }

    /// The ring as JSON columns (one array per field, oldest first): compact for a chart.
    fn view(&self) -> TierView {
        let col = |f: fn(&Sample) -> u64| self.samples.iter().map(f).collect();
        TierView {
            name: self.name,
            interval_ms: self.period_ms,
            capacity: self.capacity,
            span_ms: self.period_ms.saturating_mul(self.capacity as u64),
            len: self.samples.len(),
            at_ms: col(|s| s.at_ms),
            historical: col(|s| u64::from(s.historical)),
            open: col(|s| u64::from(s.open)),
            messages: col(|s| u64::from(s.messages)),
            ready: col(|s| u64::from(s.ready)),
            requests: col(|s| s.requests),
            pacing_waits: col(|s| s.pacing_waits),
            violations: col(|s| s.violations),
            errors: col(|s| s.errors),
            probe_rtt_us: self
                .samples
                .iter()
                .map(|s| s.probe_rtt_us.map(u64::from))
                .collect(),
        }
    }
}

/// One tier as the route sends it.
#[derive(Debug, Serialize)]
pub(crate) struct TierView {
    name: &'static str,
    interval_ms: u64,
    capacity: usize,
    span_ms: u64,
    len: usize,
    at_ms: Vec<u64>,
    historical: Vec<u64>,
    open: Vec<u64>,
    messages: Vec<u64>,
    ready: Vec<u64>,
    requests: Vec<u64>,
    pacing_waits: Vec<u64>,
    violations: Vec<u64>,
    errors: Vec<u64>,
    probe_rtt_us: Vec<Option<u64>>,
}

/// The fine and coarse rings.
#[derive(Debug, Clone)]
pub(crate) struct History {
    tiers: [Tier; 2],
}

impl History {
    /// Rings for a sample every `interval`: [`FINE_SAMPLES`] of one interval ("hour") and
    /// [`COARSE_SAMPLES`] of [`COARSE_FACTOR`] intervals ("day").
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            tiers: [
                Tier::new("hour", interval, FINE_SAMPLES),
                Tier::new(
                    "day",
                    interval.saturating_mul(COARSE_FACTOR),
                    COARSE_SAMPLES,
                ),
            ],
        }
    }

    /// Record `sample`, taken at `now_ms`, in every tier.
    pub(crate) fn push(&mut self, now_ms: u64, sample: Sample) {
        for t in &mut self.tiers {
            t.push(now_ms, sample);
        }
    }

    /// Bytes held for samples by every tier together: the bound, allocated at start.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.tiers.iter().map(Tier::memory_bytes).sum()
    }

    /// The tiers (only `name`'s when given; `None` if no tier has that name).
    pub(crate) fn view(&self, name: Option<&str>) -> Option<Vec<TierView>> {
        let tiers: Vec<TierView> = self
            .tiers
            .iter()
            .filter(|t| name.is_none_or(|n| n == t.name))
            .map(Tier::view)
            .collect();
        (!tiers.is_empty()).then_some(tiers)
    }

    /// The tier names.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.tiers.iter().map(|t| t.name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_765_324_800_000; // 2025-12-10T00:00:00Z

    fn sample(historical: u32, requests: u64) -> Sample {
        Sample {
            historical,
            requests,
            ..Sample::default()
        }
    }

    #[test]
    fn a_sample_is_64_bytes_so_the_stated_bound_holds() {
        assert_eq!(size_of::<Sample>(), 64);
        let h = History::new(DEFAULT_INTERVAL);
        assert_eq!(h.memory_bytes(), (360 + 1440) * 64);
        assert_eq!(h.memory_bytes(), 115_200);
    }

    #[test]
    fn a_day_of_samples_every_10_s_keeps_an_hour_and_a_day_and_never_grows() {
        let mut h = History::new(DEFAULT_INTERVAL);
        let before = h.memory_bytes();
        // Two days of samples, one every 10 s.
        for i in 0..(2 * 8_640) {
            h.push(T0 + i * 10_000, sample(1, i));
        }
        assert_eq!(h.memory_bytes(), before, "the rings never reallocate");
        let v = h.view(None).unwrap();
        let (hour, day) = (&v[0], &v[1]);
        assert_eq!((hour.name, hour.len, hour.capacity), ("hour", 360, 360));
        assert_eq!(hour.interval_ms, 10_000);
        assert_eq!(hour.span_ms, 3_600_000);
        assert_eq!((day.name, day.len, day.capacity), ("day", 1440, 1440));
        assert_eq!(day.interval_ms, 60_000);
        assert_eq!(day.span_ms, 86_400_000);
        let last = T0 + (2 * 8_640 - 1) * 10_000;
        // The hour: the last 360 samples, 10 s apart, ending at the latest push.
        assert_eq!(*hour.at_ms.last().unwrap(), last);
        assert_eq!(hour.at_ms[0], last - 359 * 10_000);
        assert!(hour.at_ms.windows(2).all(|w| w[1] - w[0] == 10_000));
        // The day: one slot per minute, each holding the latest sample of its minute.
        assert_eq!(*day.at_ms.last().unwrap(), last);
        assert!(day.at_ms.windows(2).all(|w| w[1] - w[0] == 60_000));
        assert!(last - day.at_ms[0] < 86_400_000);
        assert_eq!(*day.requests.last().unwrap(), 2 * 8_640 - 1);
    }

    #[test]
    fn samples_of_one_minute_merge_with_gauge_peaks_and_latest_counters() {
        let mut h = History::new(DEFAULT_INTERVAL);
        h.push(T0, sample(3, 10));
        h.push(T0 + 10_000, sample(9, 11));
        h.push(T0 + 20_000, sample(4, 12));
        let v = h.view(Some("day")).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].len, 1);
        assert_eq!(v[0].historical, [9]);
        assert_eq!(v[0].requests, [12]);
        assert_eq!(v[0].at_ms, [T0 + 20_000]);
        let v = h.view(Some("hour")).unwrap();
        assert_eq!(v[0].historical, [3, 9, 4]);
    }

    #[test]
    fn a_gap_longer_than_the_span_empties_the_ring_but_the_latest() {
        let mut h = History::new(DEFAULT_INTERVAL);
        for i in 0..100 {
            h.push(T0 + i * 10_000, sample(1, i));
        }
        // The host slept two hours.
        let later = T0 + 99 * 10_000 + 2 * 3_600_000;
        h.push(later, sample(2, 100));
        let v = h.view(Some("hour")).unwrap();
        assert_eq!(v[0].at_ms, [later]);
        // The day still holds the minutes before the gap.
        let v = h.view(Some("day")).unwrap();
        assert_eq!(v[0].len, 17 + 1);
    }

    #[test]
    fn a_clock_stepping_back_merges_instead_of_reordering() {
        let mut h = History::new(DEFAULT_INTERVAL);
        h.push(T0 + 60_000, sample(1, 1));
        h.push(T0, sample(5, 2));
        let v = h.view(Some("hour")).unwrap();
        assert_eq!(v[0].at_ms, [T0 + 60_000]);
        assert_eq!(v[0].historical, [5]);
        assert_eq!(v[0].requests, [2]);
    }

    #[test]
    fn an_unknown_tier_is_none() {
        let h = History::new(DEFAULT_INTERVAL);
        assert!(h.view(Some("week")).is_none());
        assert_eq!(h.names(), ["hour", "day"]);
    }
}
