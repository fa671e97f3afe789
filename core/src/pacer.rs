//! Request pacing: IB's message-rate and historical-data limits as data, enforced by atomic reservation.
//!
//! IB punishes clients that send too fast: more than 50 messages per second yields error 100 (and, if
//! repeated, a dropped socket); historical requests that break the "small bar" rules yield error 162
//! "pacing violation". The [`Pacer`] knows those rules ([`PacingRules`], defaults = IB's documented
//! limits) and hands out send slots.
//!
//! # Atomic reservation
//! [`Pacer::reserve`] computes the earliest instant at which the request can be sent without breaking any
//! rule *and records it in the same call*, so two callers can never both be told "now" for the last free
//! slot (the check-then-act race of earlier designs). The caller waits until [`Reservation::at`] (or
//! later — see below), sends, and calls [`Pacer::complete`] when the request has finished (data end,
//! error or cancel) to free its open-request slot.
//!
//! The schedule is exact: windows are half-open (`[s, s + window)`), so two requests exactly one window
//! apart never share a window. Send at `at`; if your runtime can be late, add margin with
//! [`PacingRules::with_margin`] — a late send can otherwise crowd a later window.
//!
//! # Optimality
//! `reserve` returns the earliest instant `≥ now` at which adding the request keeps every rule satisfied
//! given all slots already reserved (past and future): it never makes a request wait when sending it at
//! that instant would break no rule. Only the adaptive pause ([`Pacer::on_violation`]) delays on purpose.
//!
//! Sans-IO: `now` is passed in on every call and must not go backwards.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bar_size::BarSize;

/// The canonical identity of a historical-bars request, as IB judges "identical" requests.
///
/// Two requests with equal keys sent within [`PacingRules::identical_gap`] break IB's rule. The key is
/// also the unit of the per-contract burst rule (contract + exchange + `what_to_show`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HistoricalRequestKey {
    /// conId (preferred) or symbol — whatever identifies the contract canonically for the caller.
    pub contract: String,
    /// Exchange the data is requested from (e.g. `"SMART"`).
    pub exchange: String,
    /// `endDateTime` exactly as sent (empty = now).
    pub end: String,
    /// `durationStr` exactly as sent (e.g. `"1800 S"`).
    pub duration: String,
    /// Bar size; decides whether the small-bar rules apply.
    pub bar_size: BarSize,
    /// `whatToShow` (e.g. `"TRADES"`, `"BID_ASK"`); `BID_ASK` weighs double.
    pub what_to_show: String,
    /// `useRTH`.
    pub use_rth: bool,
}

/// The identity of a head-timestamp request (`reqHeadTimeStamp`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeadTimestampKey {
    /// conId or symbol.
    pub contract: String,
    /// Exchange.
    pub exchange: String,
    /// `whatToShow`.
    pub what_to_show: String,
    /// `useRTH`.
    pub use_rth: bool,
}

/// A request to pace, described only by what the rules need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PacedRequest {
    /// `reqHistoricalData` (bars).
    Historical(HistoricalRequestKey),
    /// `reqHeadTimeStamp`.
    HeadTimestamp(HeadTimestampKey),
    /// `reqContractDetails`.
    ContractDetails,
    /// Any other outbound message (cancels, market data, orders, `reqCurrentTime`, …).
    Message,
}

/// Which rule set applies to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RequestClass {
    /// Historical bars no longer than [`PacingRules::small_bar_max`] (IB's hard pacing rules).
    SmallBars,
    /// Historical bars longer than that (IB: limits "lifted", soft throttling possible).
    LargeBars,
    /// Head-timestamp requests.
    HeadTimestamp,
    /// Contract-details requests.
    ContractDetails,
    /// Everything else; only the global message rate applies.
    Message,
}

/// "At most `max_weight` in any window of length `window`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowLimit {
    /// Window length.
    pub window: Duration,
    /// Maximum total weight inside any half-open window `[s, s + window)`.
    pub max_weight: u32,
}

/// Which historical rules a request class is subject to.
///
/// `burst` and `identical` need a request key, so they only take effect for historical and
/// head-timestamp requests; for contract details they are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRules {
    /// Counts against [`PacingRules::historical`] (60 per 10 min).
    pub historical_window: bool,
    /// Counts against [`PacingRules::burst`] per contract + exchange + `whatToShow`.
    pub burst: bool,
    /// Subject to [`PacingRules::identical_gap`].
    pub identical: bool,
    /// Holds one of [`PacingRules::open_max`] slots until [`Pacer::complete`].
    pub open_slot: bool,
    /// Delayed by the adaptive pause after a pacing violation.
    pub pausable: bool,
    /// Minimum spacing between two requests of this class (soft throttling; zero = none).
    pub min_interval: Duration,
}

impl ClassRules {
    /// All historical rules apply (IB's small-bar rules).
    pub const HARD: Self = Self {
        historical_window: true,
        burst: true,
        identical: true,
        open_slot: true,
        pausable: true,
        min_interval: Duration::ZERO,
    };

    /// Only the global message rate applies.
    pub const NONE: Self = Self {
        historical_window: false,
        burst: false,
        identical: false,
        open_slot: false,
        pausable: false,
        min_interval: Duration::ZERO,
    };
}

/// Adaptive pause after a pacing violation: `initial · factorⁿ` for the n-th violation in a streak,
/// capped; the streak resets after `reset_after` without violations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRules {
    /// Pause after the first violation of a streak.
    pub initial: Duration,
    /// Growth per further violation in the streak (≥ 1).
    pub factor: u32,
    /// Longest pause.
    pub max: Duration,
    /// A violation this long after the previous one starts a new streak.
    pub reset_after: Duration,
}

/// All pacing rules as data. [`Default`] = IB's documented limits (see `peers.md` §0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacingRules {
    /// Global outbound message rate, every class counted once: 50 per 1 s.
    pub message_rate: WindowLimit,
    /// Historical budget: 60 (weighted) per 10 min.
    pub historical: WindowLimit,
    /// Per contract + exchange + `whatToShow`: 5 (weighted) per 2 s ("6 or more within 2 s" violates).
    pub burst: WindowLimit,
    /// Identical requests (same canonical key) at least this far apart: 15 s.
    pub identical_gap: Duration,
    /// Simultaneously open requests (reserved and not completed): 50.
    pub open_max: u32,
    /// Weight of a `BID_ASK` request in the weighted windows: 2.
    pub bid_ask_weight: u32,
    /// Largest bar size covered by the hard small-bar rules: 30 secs.
    pub small_bar_max: BarSize,
    /// Rules for historical requests with bar size ≤ `small_bar_max`: all hard rules.
    pub small_bars: ClassRules,
    /// Rules for larger bars: only the open-request cap (IB: limits lifted).
    pub large_bars: ClassRules,
    /// Rules for head-timestamp requests: treated like small-bar requests (IB applies historical pacing).
    pub head_timestamp: ClassRules,
    /// Rules for contract-details requests: only the global message rate.
    pub contract_details: ClassRules,
    /// Adaptive pause after a 162 pacing violation: 60 s, doubling, ≤ 10 min, streak resets after 10 min.
    pub pause: PauseRules,
}

impl Default for PacingRules {
    fn default() -> Self {
        Self {
            message_rate: WindowLimit {
                window: Duration::from_secs(1),
                max_weight: 50,
            },
            historical: WindowLimit {
                window: Duration::from_secs(600),
                max_weight: 60,
            },
            burst: WindowLimit {
                window: Duration::from_secs(2),
                max_weight: 5,
            },
            identical_gap: Duration::from_secs(15),
            open_max: 50,
            bid_ask_weight: 2,
            small_bar_max: BarSize::Sec30,
            small_bars: ClassRules::HARD,
            large_bars: ClassRules {
                open_slot: true,
                pausable: true,
                ..ClassRules::NONE
            },
            head_timestamp: ClassRules::HARD,
            contract_details: ClassRules::NONE,
            pause: PauseRules {
                initial: Duration::from_secs(60),
                factor: 2,
                max: Duration::from_secs(600),
                reset_after: Duration::from_secs(600),
            },
        }
    }
}

impl PacingRules {
    /// The same rules with every window and gap lengthened by `margin`, to absorb send lateness and
    /// clock differences between this process and IB.
    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Self {
        for limit in [
            &mut self.message_rate,
            &mut self.historical,
            &mut self.burst,
        ] {
            limit.window += margin;
        }
        self.identical_gap += margin;
        for class in [
            &mut self.small_bars,
            &mut self.large_bars,
            &mut self.head_timestamp,
            &mut self.contract_details,
        ] {
            if class.min_interval > Duration::ZERO {
                class.min_interval += margin;
            }
        }
        self
    }

    /// The class a request falls into under these rules.
    pub fn class_of(&self, request: &PacedRequest) -> RequestClass {
        match request {
            PacedRequest::Historical(key) if key.bar_size <= self.small_bar_max => {
                RequestClass::SmallBars
            }
            PacedRequest::Historical(_) => RequestClass::LargeBars,
            PacedRequest::HeadTimestamp(_) => RequestClass::HeadTimestamp,
            PacedRequest::ContractDetails => RequestClass::ContractDetails,
            PacedRequest::Message => RequestClass::Message,
        }
    }

    /// The rules for a class (`Message` has none beyond the global rate).
    pub fn class_rules(&self, class: RequestClass) -> ClassRules {
        match class {
            RequestClass::SmallBars => self.small_bars,
            RequestClass::LargeBars => self.large_bars,
            RequestClass::HeadTimestamp => self.head_timestamp,
            RequestClass::ContractDetails => self.contract_details,
            RequestClass::Message => ClassRules::NONE,
        }
    }

    /// The weight a request carries in the weighted windows (`BID_ASK` counts [`Self::bid_ask_weight`]).
    pub fn weight_of(&self, request: &PacedRequest) -> u32 {
        let what = match request {
            PacedRequest::Historical(key) => key.what_to_show.as_str(),
            PacedRequest::HeadTimestamp(key) => key.what_to_show.as_str(),
            PacedRequest::ContractDetails | PacedRequest::Message => return 1,
        };
        if what.eq_ignore_ascii_case("BID_ASK") {
            self.bid_ask_weight.max(1)
        } else {
            1
        }
    }
}

/// Identifies one reservation for [`Pacer::complete`] and [`Pacer::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReservationId(pub u64);

/// A recorded send slot: send the request at `at` (not before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the request must be sent at `at`, and completed or cancelled afterwards"]
pub struct Reservation {
    /// Handle for [`Pacer::complete`] / [`Pacer::cancel`].
    pub id: ReservationId,
    /// Earliest rule-abiding send instant, already recorded in the schedule.
    pub at: Instant,
    /// The rule set that was applied.
    pub class: RequestClass,
}

/// Why a reservation or completion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacerError {
    /// All open-request slots are held; call `reserve` again after any [`Pacer::complete`].
    #[error("{open} of {max} open historical requests in use; complete one first")]
    OpenRequestsFull {
        /// Slots held.
        open: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The request's weight exceeds a window's capacity, so no instant can ever satisfy the rules.
    #[error("request weight {weight} exceeds the window capacity {max}")]
    Unsatisfiable {
        /// Weight of the request.
        weight: u32,
        /// Capacity of the smallest applicable window.
        max: u32,
    },
    /// No such reservation is outstanding (already completed or cancelled, or never issued).
    #[error("unknown or finished reservation {0:?}")]
    UnknownReservation(ReservationId),
}

/// What [`Pacer::on_violation`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseOutcome {
    /// Pausable classes get no slot before this instant.
    pub resume_at: Instant,
    /// Already-reserved pausable slots after `now` that fall inside the pause. They stay valid for the
    /// rules; a caller who wants them to honour the pause cancels and re-reserves them.
    pub displaced: Vec<ReservationId>,
}

/// Serializable status of the pacer (times relative to the `now` passed to [`Pacer::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacerSnapshot {
    /// Open-request slots held (reserved and not completed).
    pub open_requests: u32,
    /// Configured maximum of open requests.
    pub open_max: u32,
    /// Historical weight sent in the window ending now.
    pub historical_weight_in_window: u32,
    /// Historical window capacity.
    pub historical_weight_max: u32,
    /// Messages sent in the last message-rate window.
    pub messages_in_window: u32,
    /// Reservations whose slot is still in the future.
    pub scheduled_ahead: u32,
    /// Milliseconds until the last reserved slot (0 if none ahead).
    pub horizon_ms: u64,
    /// Milliseconds of adaptive pause left (0 if not paused).
    pub paused_for_ms: u64,
    /// Pacing violations reported so far.
    pub violations_total: u64,
    /// Violations in the current streak.
    pub violation_streak: u32,
    /// Reservations made so far.
    pub reservations_total: u64,
}

/// Per-contract burst scope: contract + exchange + `whatToShow`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BurstKey {
    contract: String,
    exchange: String,
    what_to_show: String,
}

/// Identity for the identical-request rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Historical(HistoricalRequestKey),
    HeadTimestamp(HeadTimestampKey),
}

/// Everything the rules need to know about one request.
#[derive(Debug, Clone)]
struct Profile {
    class: RequestClass,
    weight: u32,
    historical: bool,
    burst: Option<BurstKey>,
    identity: Option<Identity>,
    open_slot: bool,
    pausable: bool,
    min_interval: Duration,
}

/// One reserved slot in the schedule.
#[derive(Debug, Clone)]
struct Slot {
    id: ReservationId,
    at: Instant,
    profile: Profile,
    /// After this instant the slot can no longer constrain any new reservation.
    relevant_until: Instant,
}

/// The pacer: rules plus the schedule of reserved slots. See the module docs.
#[derive(Debug, Clone)]
pub struct Pacer {
    rules: PacingRules,
    slots: Vec<Slot>,
    open: BTreeSet<ReservationId>,
    next_id: u64,
    pause_until: Option<Instant>,
    rate_pause_until: Option<Instant>,
    last_violation: Option<Instant>,
    violation_streak: u32,
    violations_total: u64,
}

impl Pacer {
    /// A pacer with the given rules and an empty schedule.
    pub fn new(rules: PacingRules) -> Self {
        Self {
            rules,
            slots: Vec::new(),
            open: BTreeSet::new(),
            next_id: 0,
            pause_until: None,
            rate_pause_until: None,
            last_violation: None,
            violation_streak: 0,
            violations_total: 0,
        }
    }

    /// The rules in force.
    pub const fn rules(&self) -> &PacingRules {
        &self.rules
    }

    /// Reserves the earliest rule-abiding send slot `≥ now` for `request` and records it atomically.
    ///
    /// Fails with [`PacerError::OpenRequestsFull`] when the request needs an open-request slot and all
    /// are held (reserved slots count from reservation until [`Pacer::complete`]/[`Pacer::cancel`]).
    pub fn reserve(
        &mut self,
        now: Instant,
        request: &PacedRequest,
    ) -> Result<Reservation, PacerError> {
        self.prune(now);
        let profile = self.profile(request);
        self.check_satisfiable(&profile)?;
        if profile.open_slot {
            let open = u32::try_from(self.open.len()).unwrap_or(u32::MAX);
            if open >= self.rules.open_max {
                return Err(PacerError::OpenRequestsFull {
                    open,
                    max: self.rules.open_max,
                });
            }
        }
        let at = self.earliest(now, &profile);
        let id = ReservationId(self.next_id);
        self.next_id += 1;
        if profile.open_slot {
            self.open.insert(id);
        }
        let class = profile.class;
        let relevant_until = at + self.relevance(&profile);
        self.slots.push(Slot {
            id,
            at,
            profile,
            relevant_until,
        });
        Ok(Reservation { id, at, class })
    }

    /// Marks a sent request as finished (data end, error or cancel), freeing its open-request slot.
    /// Its send slot stays in the schedule: the request *was* sent and still counts in the windows.
    /// Classes without open slots need no completion (completing them while still scheduled is a no-op).
    pub fn complete(&mut self, id: ReservationId) -> Result<(), PacerError> {
        if self.open.remove(&id)
            || self
                .slots
                .iter()
                .any(|s| s.id == id && !s.profile.open_slot)
        {
            Ok(())
        } else {
            Err(PacerError::UnknownReservation(id))
        }
    }

    /// Withdraws a reservation whose request was **never sent**: its slot and open slot are freed.
    pub fn cancel(&mut self, id: ReservationId) -> Result<(), PacerError> {
        let before = self.slots.len();
        self.slots.retain(|s| s.id != id);
        let was_open = self.open.remove(&id);
        if was_open || self.slots.len() != before {
            Ok(())
        } else {
            Err(PacerError::UnknownReservation(id))
        }
    }

    /// Reports a 162 "pacing violation" from IB: pausable classes get no new slot until the returned
    /// instant. The pause grows geometrically with each violation in a streak (see [`PauseRules`]).
    pub fn on_violation(&mut self, now: Instant) -> PauseOutcome {
        let rules = self.rules.pause;
        let new_streak = self
            .last_violation
            .is_none_or(|last| now.saturating_duration_since(last) >= rules.reset_after);
        if new_streak {
            self.violation_streak = 0;
        }
        let mut pause = rules.initial.min(rules.max);
        for _ in 0..self.violation_streak {
            pause = pause.saturating_mul(rules.factor.max(1)).min(rules.max);
        }
        self.violation_streak = self.violation_streak.saturating_add(1);
        self.violations_total += 1;
        self.last_violation = Some(now);
        let resume_at = self
            .pause_until
            .map_or(now + pause, |until| until.max(now + pause));
        self.pause_until = Some(resume_at);
        let displaced = self
            .slots
            .iter()
            .filter(|s| s.profile.pausable && s.at > now && s.at < resume_at)
            .map(|s| s.id)
            .collect();
        PauseOutcome {
            resume_at,
            displaced,
        }
    }

    /// Reports error 100 "Max rate of messages per second has been exceeded": no slot of any class
    /// before one full message-rate window has passed. Returns the resume instant.
    pub fn on_rate_exceeded(&mut self, now: Instant) -> Instant {
        let resume_at = now + self.rules.message_rate.window;
        self.rate_pause_until = Some(
            self.rate_pause_until
                .map_or(resume_at, |until| until.max(resume_at)),
        );
        resume_at
    }

    /// Serializable status as of `now`.
    pub fn snapshot(&self, now: Instant) -> PacerSnapshot {
        let in_window = |limit: WindowLimit, weight: &dyn Fn(&Slot) -> u32| -> u32 {
            self.slots
                .iter()
                .filter(|s| s.at <= now && now.saturating_duration_since(s.at) < limit.window)
                .map(weight)
                .sum()
        };
        let ahead: Vec<&Slot> = self.slots.iter().filter(|s| s.at > now).collect();
        let horizon = ahead
            .iter()
            .map(|s| s.at.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        let paused = [self.pause_until, self.rate_pause_until]
            .into_iter()
            .flatten()
            .map(|until| until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        PacerSnapshot {
            open_requests: u32::try_from(self.open.len()).unwrap_or(u32::MAX),
            open_max: self.rules.open_max,
            historical_weight_in_window: in_window(self.rules.historical, &|s| {
                if s.profile.historical {
                    s.profile.weight
                } else {
                    0
                }
            }),
            historical_weight_max: self.rules.historical.max_weight,
            messages_in_window: in_window(self.rules.message_rate, &|_| 1),
            scheduled_ahead: u32::try_from(ahead.len()).unwrap_or(u32::MAX),
            horizon_ms: millis(horizon),
            paused_for_ms: millis(paused),
            violations_total: self.violations_total,
            violation_streak: self.violation_streak,
            reservations_total: self.next_id,
        }
    }

    fn profile(&self, request: &PacedRequest) -> Profile {
        let class = self.rules.class_of(request);
        let rules = self.rules.class_rules(class);
        let (burst, identity) = match request {
            PacedRequest::Historical(key) => (
                BurstKey {
                    contract: key.contract.clone(),
                    exchange: key.exchange.clone(),
                    what_to_show: key.what_to_show.clone(),
                },
                Identity::Historical(key.clone()),
            ),
            PacedRequest::HeadTimestamp(key) => (
                BurstKey {
                    contract: key.contract.clone(),
                    exchange: key.exchange.clone(),
                    what_to_show: key.what_to_show.clone(),
                },
                Identity::HeadTimestamp(key.clone()),
            ),
            PacedRequest::ContractDetails | PacedRequest::Message => {
                return Profile {
                    class,
                    weight: 1,
                    historical: rules.historical_window,
                    burst: None,
                    identity: None,
                    open_slot: rules.open_slot,
                    pausable: rules.pausable,
                    min_interval: rules.min_interval,
                };
            }
        };
        Profile {
            class,
            weight: self.rules.weight_of(request),
            historical: rules.historical_window,
            burst: rules.burst.then_some(burst),
            identity: rules.identical.then_some(identity),
            open_slot: rules.open_slot,
            pausable: rules.pausable,
            min_interval: rules.min_interval,
        }
    }

    fn check_satisfiable(&self, profile: &Profile) -> Result<(), PacerError> {
        let mut limits = vec![(1, self.rules.message_rate.max_weight)];
        if profile.historical {
            limits.push((profile.weight, self.rules.historical.max_weight));
        }
        if profile.burst.is_some() {
            limits.push((profile.weight, self.rules.burst.max_weight));
        }
        match limits.into_iter().find(|(weight, max)| weight > max) {
            Some((weight, max)) => Err(PacerError::Unsatisfiable { weight, max }),
            None => Ok(()),
        }
    }

    /// How long after its send instant a slot can still constrain another request.
    fn relevance(&self, profile: &Profile) -> Duration {
        let mut d = self.rules.message_rate.window;
        if profile.historical {
            d = d.max(self.rules.historical.window);
        }
        if profile.burst.is_some() {
            d = d.max(self.rules.burst.window);
        }
        if profile.identity.is_some() {
            d = d.max(self.rules.identical_gap);
        }
        d.max(profile.min_interval)
    }

    /// Drops slots that can no longer constrain any reservation at or after `now`.
    fn prune(&mut self, now: Instant) {
        self.slots.retain(|s| s.relevant_until > now);
    }

    /// The earliest instant `≥ now` (and after any applicable pause) at which `profile` breaks no rule.
    ///
    /// Every rule forbids a set of instants whose complement can only begin at `e + window` (or
    /// `e + gap`) for some reserved slot `e`. So when some rules are broken at `t`, no instant before
    /// the latest of their next such boundaries can satisfy them all; jump there and re-check.
    fn earliest(&self, now: Instant, profile: &Profile) -> Instant {
        let mut t = now;
        if profile.pausable {
            t = self.pause_until.map_or(t, |until| t.max(until));
        }
        t = self.rate_pause_until.map_or(t, |until| t.max(until));
        loop {
            let mut next: Option<Instant> = None;
            let mut bump = |candidate: Option<Instant>| {
                if let Some(c) = candidate {
                    next = Some(next.map_or(c, |n| n.max(c)));
                }
            };
            bump(window_block(
                t,
                self.slots.iter().map(|s| (s.at, 1)),
                1,
                self.rules.message_rate,
            ));
            if profile.historical {
                let events = self
                    .slots
                    .iter()
                    .filter(|s| s.profile.historical)
                    .map(|s| (s.at, s.profile.weight));
                bump(window_block(
                    t,
                    events,
                    profile.weight,
                    self.rules.historical,
                ));
            }
            if let Some(key) = &profile.burst {
                let events = self
                    .slots
                    .iter()
                    .filter(|s| s.profile.burst.as_ref() == Some(key))
                    .map(|s| (s.at, s.profile.weight));
                bump(window_block(t, events, profile.weight, self.rules.burst));
            }
            if let Some(identity) = &profile.identity {
                let events = self
                    .slots
                    .iter()
                    .filter(|s| s.profile.identity.as_ref() == Some(identity))
                    .map(|s| s.at);
                bump(gap_block(t, events, self.rules.identical_gap));
            }
            if profile.min_interval > Duration::ZERO {
                let events = self
                    .slots
                    .iter()
                    .filter(|s| s.profile.class == profile.class)
                    .map(|s| s.at);
                bump(gap_block(t, events, profile.min_interval));
            }
            match next {
                None => return t,
                Some(n) => t = n,
            }
        }
    }
}

/// If adding weight `weight` at `t` overfills some window `[s, s + W)` containing `t`, the next instant
/// at which a slot leaves the windows around `t` (`min { e + W : e + W > t }`); else `None`.
///
/// The fullest window containing `t` starts either at `t` or at a slot `e ∈ (t − W, t]`: shifting any
/// other window right until its start meets a slot (or `t`) loses nothing.
fn window_block(
    t: Instant,
    events: impl Iterator<Item = (Instant, u32)>,
    weight: u32,
    limit: WindowLimit,
) -> Option<Instant> {
    let w = limit.window;
    let mut near: Vec<(Instant, u32)> = Vec::new();
    let mut next_exit: Option<Instant> = None;
    for (at, wt) in events {
        let exit = at + w;
        if exit > t {
            next_exit = Some(next_exit.map_or(exit, |n| n.min(exit)));
            if at < t + w {
                near.push((at, wt));
            }
        }
    }
    near.sort_unstable_by_key(|(at, _)| *at);
    let starts = std::iter::once(t).chain(near.iter().map(|(at, _)| *at).filter(|at| *at <= t));
    let capacity = u64::from(limit.max_weight);
    for start in starts {
        let end = start + w;
        let load: u64 = near
            .iter()
            .filter(|(at, _)| *at >= start && *at < end)
            .map(|(_, wt)| u64::from(*wt))
            .sum();
        if load + u64::from(weight) > capacity {
            return next_exit;
        }
    }
    None
}

/// If some slot lies within `gap` of `t` (`|t − e| < gap`), the next instant at which a slot's
/// exclusion zone ends (`min { e + gap : e + gap > t }`); else `None`.
fn gap_block(t: Instant, events: impl Iterator<Item = Instant>, gap: Duration) -> Option<Instant> {
    let mut blocked = false;
    let mut next_exit: Option<Instant> = None;
    for at in events {
        let exit = at + gap;
        if exit > t {
            next_exit = Some(next_exit.map_or(exit, |n| n.min(exit)));
            if at < t + gap {
                blocked = true;
            }
        }
    }
    if blocked {
        next_exit
    } else {
        None
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One arbitrary base instant; every other time in the tests is an offset from it.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn small(contract: &str, end: &str, what: &str) -> PacedRequest {
        PacedRequest::Historical(HistoricalRequestKey {
            contract: contract.to_owned(),
            exchange: "SMART".to_owned(),
            end: end.to_owned(),
            duration: "1800 S".to_owned(),
            bar_size: BarSize::Sec5,
            what_to_show: what.to_owned(),
            use_rth: true,
        })
    }

    fn at_secs(t0: Instant, r: &Reservation) -> f64 {
        r.at.duration_since(t0).as_secs_f64()
    }

    #[test]
    fn identical_requests_are_fifteen_seconds_apart() -> Result<(), PacerError> {
        let t0 = base();
        let mut p = Pacer::new(PacingRules::default());
        let a = p.reserve(t0, &small("AAPL", "e1", "TRADES"))?;
        let b = p.reserve(t0, &small("AAPL", "e1", "TRADES"))?;
        assert_eq!((at_secs(t0, &a), at_secs(t0, &b)), (0.0, 15.0));
        Ok(())
    }

    #[test]
    fn sixth_request_per_contract_waits_for_the_burst_window() -> Result<(), PacerError> {
        let t0 = base();
        let mut p = Pacer::new(PacingRules::default());
        let mut ats = Vec::new();
        for i in 0..7 {
            ats.push(at_secs(
                t0,
                &p.reserve(t0, &small("AAPL", &format!("e{i}"), "TRADES"))?,
            ));
        }
        assert_eq!(ats, [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0]);
        // Another contract is not held up.
        assert_eq!(
            at_secs(t0, &p.reserve(t0, &small("MSFT", "e0", "TRADES"))?),
            0.0
        );
        Ok(())
    }

    #[test]
    fn bid_ask_counts_double_and_the_ten_minute_budget_holds() -> Result<(), PacerError> {
        let t0 = base();
        let mut p = Pacer::new(PacingRules::default());
        let mut last = 0.0;
        for i in 0..30 {
            let r = p.reserve(t0, &small(&format!("C{i}"), "e", "BID_ASK"))?;
            last = at_secs(t0, &r);
            p.complete(r.id)?;
        }
        assert_eq!(last, 0.0, "30 × weight 2 = 60 fits in the first window");
        let r = p.reserve(t0, &small("X", "e", "TRADES"))?;
        assert_eq!(at_secs(t0, &r), 600.0);
        Ok(())
    }

    #[test]
    fn open_cap_rejects_until_complete() -> Result<(), PacerError> {
        let t0 = base();
        let rules = PacingRules {
            open_max: 2,
            ..PacingRules::default()
        };
        let mut p = Pacer::new(rules);
        let a = p.reserve(t0, &small("A", "e", "TRADES"))?;
        let _b = p.reserve(t0, &small("B", "e", "TRADES"))?;
        assert_eq!(
            p.reserve(t0, &small("C", "e", "TRADES")),
            Err(PacerError::OpenRequestsFull { open: 2, max: 2 })
        );
        // Contract details do not take open slots by default.
        assert!(p.reserve(t0, &PacedRequest::ContractDetails).is_ok());
        p.complete(a.id)?;
        assert!(p.reserve(t0, &small("C", "e", "TRADES")).is_ok());
        assert_eq!(p.complete(a.id), Err(PacerError::UnknownReservation(a.id)));
        Ok(())
    }

    #[test]
    fn large_bars_and_messages_only_see_the_global_rate() -> Result<(), PacerError> {
        let t0 = base();
        let mut p = Pacer::new(PacingRules::default());
        let hourly = PacedRequest::Historical(HistoricalRequestKey {
            contract: "AAPL".to_owned(),
            exchange: "SMART".to_owned(),
            end: String::new(),
            duration: "1 D".to_owned(),
            bar_size: BarSize::Hour1,
            what_to_show: "TRADES".to_owned(),
            use_rth: true,
        });
        let mut ats = Vec::new();
        for _ in 0..25 {
            let r = p.reserve(t0, &hourly)?;
            p.complete(r.id)?;
            ats.push(at_secs(t0, &r));
            ats.push(at_secs(t0, &p.reserve(t0, &PacedRequest::Message)?));
        }
        assert!(ats.iter().all(|a| *a == 0.0));
        assert_eq!(
            at_secs(t0, &p.reserve(t0, &PacedRequest::Message)?),
            1.0,
            "51st message in a second"
        );
        Ok(())
    }

    #[test]
    fn a_free_earlier_slot_is_used_even_when_later_ones_are_booked() -> Result<(), PacerError> {
        let t0 = base();
        let mut p = Pacer::new(PacingRules::default());
        let a = p.reserve(t0, &small("A", "e", "TRADES"))?;
        let b = p.reserve(t0, &small("A", "e", "TRADES"))?; // booked for +15 s
        assert_eq!(at_secs(t0, &b), 15.0);
        p.complete(a.id)?;
        // A message can go right now even though a slot at +15 s exists.
        let m = p.reserve(t0 + Duration::from_secs(1), &PacedRequest::Message)?;
        assert_eq!(at_secs(t0, &m), 1.0);
        Ok(())
    }

    #[test]
    fn violation_pauses_adaptively() -> Result<(), PacerError> {
        let t0 = base();
        let mut p = Pacer::new(PacingRules::default());
        let booked = p.reserve(t0, &small("A", "e", "TRADES"))?;
        let later = p.reserve(t0, &small("A", "e", "TRADES"))?;
        let first = p.on_violation(t0);
        assert_eq!(first.resume_at, t0 + Duration::from_secs(60));
        assert_eq!(first.displaced, vec![later.id]);
        assert!(!first.displaced.contains(&booked.id));
        let r = p.reserve(t0, &small("B", "e", "TRADES"))?;
        assert_eq!(at_secs(t0, &r), 60.0);
        // Messages are not paused.
        assert_eq!(at_secs(t0, &p.reserve(t0, &PacedRequest::Message)?), 0.0);
        let second = p.on_violation(t0 + Duration::from_secs(61));
        assert_eq!(second.resume_at, t0 + Duration::from_secs(61 + 120));
        let snap = p.snapshot(t0 + Duration::from_secs(61));
        assert_eq!(
            (
                snap.violations_total,
                snap.violation_streak,
                snap.paused_for_ms
            ),
            (2, 2, 120_000)
        );
        Ok(())
    }

    #[test]
    fn snapshot_serializes() -> Result<(), PacerError> {
        let t0 = base();
        let mut p = Pacer::new(PacingRules::default());
        let _ = p.reserve(t0, &small("A", "e", "BID_ASK"))?;
        let _ = p.reserve(t0, &small("A", "e", "BID_ASK"))?;
        let snap = p.snapshot(t0);
        assert_eq!(
            (
                snap.open_requests,
                snap.historical_weight_in_window,
                snap.scheduled_ahead,
                snap.horizon_ms
            ),
            (2, 2, 1, 15_000)
        );
        assert!(serde_json::to_string(&snap).is_ok_and(|s| s.contains("\"open_requests\":2")));
        Ok(())
    }
}
