//! The virtual-time network both harnesses ([`World`](crate::World) and
//! [`PoolWorld`](crate::PoolWorld)) run on: one clock that jumps from event to event, links that
//! deliver after a latency plus a seeded jitter and in order per direction, the queue of
//! deliveries in flight, and the step budget that stops a livelock.
//!
//! Written once so that both worlds draw link jitter, order arrivals and count steps the same
//! way: a seed replays identically in either, and a fix to the timing lands in both.

use std::time::{Duration, Instant};

use crate::rng::SplitMix64;
use crate::schedule::Schedule;

/// The last arrival scheduled each way on one link, so a later send never arrives before an
/// earlier one (TCP's in-order delivery despite per-trip jitter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lanes {
    /// Toward the gateway.
    up: Instant,
    /// Toward the client or pool.
    down: Instant,
}

impl Lanes {
    /// A link opened at `now`: nothing in flight either way.
    pub(crate) fn new(now: Instant) -> Self {
        Self { up: now, down: now }
    }

    /// The last arrival of one direction (`up`: toward the gateway).
    fn last(&mut self, up: bool) -> &mut Instant {
        if up {
            &mut self.up
        } else {
            &mut self.down
        }
    }
}

/// Virtual time, links and the delivery queue of one world, generic over what is delivered
/// (`D`). See the [module docs](self).
#[derive(Debug)]
pub(crate) struct VirtualNet<D> {
    /// Virtual `+0`, captured once at the start.
    epoch: Instant,
    /// The current virtual instant; never moves back.
    now: Instant,
    /// One-way link latency.
    latency: Duration,
    /// Extra one-way delay bound: each trip adds a seeded draw in `0..=jitter`.
    jitter: Duration,
    /// The stream link jitter is drawn from (one draw per trip, in send order).
    link_rng: SplitMix64,
    /// Steps taken so far.
    steps: u64,
    /// Bound on steps over the world's life.
    max_steps: u64,
    /// Deliveries in flight: earliest first, ties in send order.
    queue: Schedule<D>,
}

impl<D> VirtualNet<D> {
    /// A network whose epoch (virtual `+0`) is captured here, the one clock read of a world;
    /// jitter comes from `link_rng`.
    #[allow(clippy::disallowed_methods)] // the one origin instant; everything after is virtual
    pub(crate) fn start(
        link_rng: SplitMix64,
        latency: Duration,
        jitter: Duration,
        max_steps: u64,
    ) -> Self {
        let epoch = Instant::now();
        Self {
            epoch,
            now: epoch,
            latency,
            jitter,
            link_rng,
            steps: 0,
            max_steps,
            queue: Schedule::new(),
        }
    }

    /// Virtual `+0`.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The current virtual instant.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the epoch.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// The instant `at` after the epoch.
    pub(crate) fn at(&self, at: Duration) -> Instant {
        self.epoch + at
    }

    /// How long after the epoch `t` is (zero for an instant before it).
    pub(crate) fn since_epoch(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    /// Steps taken so far.
    pub(crate) fn steps(&self) -> u64 {
        self.steps
    }

    /// Deliveries in flight, for leak checks.
    pub(crate) fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Move the clock to `t` if that is later (a run ending at a fixed instant).
    pub(crate) fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// One trip's delay: latency plus a seeded jitter (one draw from the link stream).
    fn trip(&mut self) -> Duration {
        let jitter_ns = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        self.latency + Duration::from_nanos(self.link_rng.below_or_eq(jitter_ns))
    }

    /// When something sent now arrives: one [`trip`](Self::trip) (drawn first, whatever the
    /// link), then no earlier than the last arrival of that direction of `lanes` (`up`: toward
    /// the gateway), which it becomes. Without lanes (a link already forgotten) it is the trip.
    fn arrival(&mut self, lanes: Option<&mut Lanes>, up: bool) -> Instant {
        let at = self.now + self.trip();
        let Some(lanes) = lanes else {
            return at;
        };
        let last = lanes.last(up);
        *last = (*last).max(at);
        *last
    }

    /// Send `what` over a link: queue it for its [`arrival`](Self::arrival).
    pub(crate) fn carry(&mut self, lanes: Option<&mut Lanes>, up: bool, what: D) {
        let at = self.arrival(lanes, up);
        self.queue.push(at, what);
    }

    /// The next instant anything happens: the earliest of the next delivery and `timers`, never
    /// before now. `None`: nothing is scheduled.
    pub(crate) fn next_instant(
        &self,
        timers: impl IntoIterator<Item = Instant>,
    ) -> Option<Instant> {
        self.queue
            .next_at()
            .into_iter()
            .chain(timers)
            .min()
            .map(|t| t.max(self.now))
    }

    /// Start a step at `t`: count it, and move the clock there (never back). Returns the new
    /// now, or `Err(max_steps)` once the budget is spent (a livelock, or a far too long run).
    pub(crate) fn begin_step(&mut self, t: Instant) -> Result<Instant, u64> {
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(self.max_steps);
        }
        self.now = self.now.max(t);
        Ok(self.now)
    }

    /// The next delivery due by now, if any (same-instant deliveries in send order).
    pub(crate) fn pop_due(&mut self) -> Option<D> {
        self.queue.pop_due(self.now)
    }
}
