//! The pacing schedule as plain data: every reserved send slot, the open requests and the adaptive
//! pause, with times in [`PaceTime`] — so one book can live in a process ([`super::Pacer`]), or in
//! a file or Redis shared by every process that talks to one gateway ([`super::PaceLedger`]).
//!
//! The book is rule-agnostic: every call takes the [`PacingRules`]. Slots may name an *owner* (a
//! process's ledger handle); an owner that stops renewing itself ([`PaceBook::touch`]) is gone, and
//! its slots that were still in the future (never sent) and its open requests are dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rules::{HeadTimestampKey, HistoricalRequestKey, PacedRequest, PacingRules};
use super::rules::{RequestClass, TickByTickKey, WindowLimit};
use super::{Hold, PacerError, PacerSnapshot, ReservationId};
use crate::what_to_show::WhatToShow;

/// A point in a ledger's time: nanoseconds since the ledger's epoch (the Unix epoch for shared
/// ledgers, whose processes compare times; any fixed instant for a private [`super::Pacer`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct PaceTime(pub u64);

impl PaceTime {
    /// `self + d`, saturating.
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Whole milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
}

/// Per-contract burst scope: contract + exchange + `whatToShow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BurstKey {
    contract: String,
    exchange: String,
    what_to_show: WhatToShow,
}

/// Identity for the identical-request rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Identity {
    Historical(HistoricalRequestKey),
    HeadTimestamp(HeadTimestampKey),
    TickByTick(TickByTickKey),
}

/// Everything the rules need to know about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Slot {
    id: ReservationId,
    at: PaceTime,
    profile: Profile,
    /// After this the slot can no longer constrain any new reservation.
    relevant_until: PaceTime,
    /// The ledger handle that reserved it (`None`: a private pacer's, never expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// An open request: reserved and not yet completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Open {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// A slot the book granted: send at `at` (ledger time), then complete or cancel `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookReservation {
    /// Handle for [`PaceBook::complete`] / [`PaceBook::cancel`].
    pub id: ReservationId,
    /// Earliest rule-abiding send time, already recorded.
    pub at: PaceTime,
    /// The rule set that was applied.
    pub class: RequestClass,
    /// The rule that set `at`, when later than `max(now, not_before)`.
    pub held_by: Option<Hold>,
}

/// What one owner holds in a shared book, for status views ("what other processes reserved").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerView {
    /// The owner's name (host, pid, …; see the ledger).
    pub owner: String,
    /// Its open requests.
    pub open_requests: u32,
    /// Its slots still in the future.
    pub scheduled_ahead: u32,
    /// Historical weight it sent in the window ending now.
    pub historical_weight_in_window: u32,
    /// Milliseconds until its lease on the book lapses (0: lapsed).
    pub alive_for_ms: u64,
}

/// The schedule. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaceBook {
    /// Changes when a book is created from nothing: a process that sees another generation than
    /// it last saw knows the store lost the book (e.g. a Redis restart) and merges its copy back.
    #[serde(default)]
    pub generation: u64,
    next_id: u64,
    slots: Vec<Slot>,
    open: BTreeMap<ReservationId, Open>,
    /// Owner → the time its claim on its slots lapses unless renewed.
    #[serde(default)]
    owners: BTreeMap<String, PaceTime>,
    pause_until: Option<PaceTime>,
    /// Made by a store after losing a book; not stepped on yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    lost_predecessor: bool,
    /// The earliest time the store can have lost that book (e.g. when Redis started); unknown
    /// means "just now".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lost_since: Option<PaceTime>,
    /// A lost book is being put back: no reservation before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settle_until: Option<PaceTime>,
    rate_pause_until: Option<PaceTime>,
    last_violation: Option<PaceTime>,
    violation_streak: u32,
    violations_total: u64,
}

impl PaceBook {
    /// An empty book of the given generation. Its reservation ids start in a range of their
    /// own (the generation's low 32 bits, shifted up), so ids it hands out never collide with
    /// the ids of an earlier generation that processes still hold and merge back.
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            next_id: (generation & 0xFFFF_FFFF) << 32,
            ..Self::default()
        }
    }

    /// [`PaceBook::new`] for a store that may have lost the book before (a Redis without the
    /// key, a file kept aside as corrupt): processes that sent on the lost book put it back as
    /// they step, so its first step makes it settle before it grants anything.
    pub fn after_loss(generation: u64) -> Self {
        Self {
            lost_predecessor: true,
            ..Self::new(generation)
        }
    }

    /// [`PaceBook::after_loss`] for a store that knows the loss cannot be older than `since`
    /// (a Redis that started then): processes have been able to put the book back from then on,
    /// so the settle ends sooner — at once for a store up longer than the settle (a first use).
    pub fn after_loss_since(generation: u64, since: PaceTime) -> Self {
        Self {
            lost_since: Some(since),
            ..Self::after_loss(generation)
        }
    }

    /// Reserves the earliest rule-abiding slot `≥ max(now, not_before)` for `request` and records
    /// it (see [`super::Pacer::reserve`]). `owner` names the ledger handle that will send it.
    pub fn reserve(
        &mut self,
        rules: &PacingRules,
        now: PaceTime,
        not_before: PaceTime,
        request: &PacedRequest,
        owner: Option<&str>,
    ) -> Result<BookReservation, PacerError> {
        self.prune(now);
        let profile = profile(rules, request);
        check_satisfiable(rules, &profile)?;
        if profile.open_slot {
            let open = u32::try_from(self.open.len()).unwrap_or(u32::MAX);
            if open >= rules.open_max {
                return Err(PacerError::OpenRequestsFull {
                    open,
                    max: rules.open_max,
                });
            }
        }
        let (at, held_by) = self.earliest(rules, now.max(not_before), &profile);
        let id = ReservationId(self.next_id);
        self.next_id += 1;
        let owner = owner.map(str::to_owned);
        if profile.open_slot {
            self.open.insert(
                id,
                Open {
                    owner: owner.clone(),
                },
            );
        }
        let class = profile.class;
        let relevant_until = at.plus(relevance(rules, &profile));
        self.slots.push(Slot {
            id,
            at,
            profile,
            relevant_until,
            owner,
        });
        Ok(BookReservation {
            id,
            at,
            class,
            held_by,
        })
    }

    /// The request was sent and has finished: free its open slot (its send slot stays).
    pub fn complete(&mut self, id: ReservationId) -> Result<(), PacerError> {
        if self.open.remove(&id).is_some()
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

    /// The request was never sent: free its slot and open slot.
    pub fn cancel(&mut self, id: ReservationId) -> Result<(), PacerError> {
        let before = self.slots.len();
        self.slots.retain(|s| s.id != id);
        let was_open = self.open.remove(&id).is_some();
        if was_open || self.slots.len() != before {
            Ok(())
        } else {
            Err(PacerError::UnknownReservation(id))
        }
    }

    /// Whether `id` is still in the book (as a slot or an open request).
    pub fn holds(&self, id: ReservationId) -> bool {
        self.open.contains_key(&id) || self.slots.iter().any(|s| s.id == id)
    }

    /// A 162 pacing violation: pausable classes get no slot before the returned time; also the
    /// pausable slots after `now` that fall inside the pause (see [`super::Pacer::on_violation`]).
    pub fn on_violation(
        &mut self,
        rules: &PacingRules,
        now: PaceTime,
    ) -> (PaceTime, Vec<ReservationId>) {
        let pause_rules = rules.pause;
        let new_streak = self
            .last_violation
            .is_none_or(|last| now.since(last) >= pause_rules.reset_after);
        if new_streak {
            self.violation_streak = 0;
        }
        let mut pause = pause_rules.initial.min(pause_rules.max);
        for _ in 0..self.violation_streak {
            pause = pause
                .saturating_mul(pause_rules.factor.max(1))
                .min(pause_rules.max);
        }
        self.violation_streak = self.violation_streak.saturating_add(1);
        self.violations_total += 1;
        self.last_violation = Some(now);
        let resume_at = self
            .pause_until
            .map_or(now.plus(pause), |until| until.max(now.plus(pause)));
        self.pause_until = Some(resume_at);
        let displaced = self
            .slots
            .iter()
            .filter(|s| s.profile.pausable && s.at > now && s.at < resume_at)
            .map(|s| s.id)
            .collect();
        (resume_at, displaced)
    }

    /// Error 100: no slot of any class before one message-rate window has passed.
    pub fn on_rate_exceeded(&mut self, rules: &PacingRules, now: PaceTime) -> PaceTime {
        let resume_at = now.plus(rules.message_rate.window);
        self.rate_pause_until = Some(
            self.rate_pause_until
                .map_or(resume_at, |until| until.max(resume_at)),
        );
        resume_at
    }

    /// Renews `owner`'s claim on its slots until `until` (never shortens it).
    pub fn touch(&mut self, owner: &str, until: PaceTime) {
        let entry = self.owners.entry(owner.to_owned()).or_default();
        *entry = (*entry).max(until);
    }

    /// Merges `other` (the copy of a lost earlier generation that `owner` last stepped on) into
    /// this one: after a store lost its book, the processes that still remember what was sent
    /// put it back. Every slot of the copy comes back (conservative: nothing sent is forgotten),
    /// but only `owner`'s own open requests — another owner's may have finished since; that
    /// owner puts back its own when it steps. This book keeps handing out ids from its own
    /// range (see [`PaceBook::new`]).
    pub fn merge(&mut self, other: &Self, owner: &str) {
        for slot in &other.slots {
            if !self.slots.iter().any(|s| s.id == slot.id) {
                self.slots.push(slot.clone());
            }
        }
        self.slots.sort_by_key(|s| (s.at, s.id));
        for (id, open) in &other.open {
            if open.owner.as_deref() == Some(owner) {
                self.open.entry(*id).or_insert_with(|| open.clone());
            }
        }
        for (owner, until) in &other.owners {
            self.touch(owner, *until);
        }
        self.pause_until = self.pause_until.max(other.pause_until);
        self.settle_until = self.settle_until.max(other.settle_until);
        self.rate_pause_until = self.rate_pause_until.max(other.rate_pause_until);
        self.last_violation = self.last_violation.max(other.last_violation);
        self.violation_streak = self.violation_streak.max(other.violation_streak);
        self.violations_total = self.violations_total.max(other.violations_total);
    }

    /// Whether `owner` has slots that still constrain reservations at or after `now`: then its
    /// claim must be kept fresh even when it holds nothing, so that a store restart gets them back.
    pub fn has_slots_of(&self, owner: &str, now: PaceTime) -> bool {
        self.slots
            .iter()
            .any(|s| s.owner.as_deref() == Some(owner) && s.relevant_until > now)
    }

    /// No reservation before `until`: the processes put a lost book back meanwhile.
    pub fn settle_until_at_least(&mut self, until: PaceTime) {
        self.settle_until = self.settle_until.max(Some(until));
    }

    /// Until when the book still settles (see [`PaceBook::settle_until_at_least`]).
    pub fn settling(&self, now: PaceTime) -> Option<PaceTime> {
        self.settle_until.filter(|until| *until > now)
    }

    /// If the store made this book after losing an earlier one and nobody has stepped on it
    /// since: from when processes could put the lost book back (`now` when the store does not
    /// know). The first step clears it (and settles the book: see the shared pacer).
    pub fn take_lost_predecessor(&mut self, now: PaceTime) -> Option<PaceTime> {
        let since = self.lost_since.take();
        std::mem::take(&mut self.lost_predecessor).then(|| since.map_or(now, |s| s.min(now)))
    }

    /// Drops what can no longer matter at or after `now`: slots past their relevance, and the
    /// unsent slots and open requests of owners whose claim lapsed.
    pub fn prune(&mut self, now: PaceTime) {
        let lapsed = |owner: &Option<String>, owners: &BTreeMap<String, PaceTime>| {
            owner
                .as_ref()
                .is_some_and(|o| owners.get(o).is_none_or(|until| *until <= now))
        };
        let owners = &self.owners;
        self.slots
            .retain(|s| s.relevant_until > now && !(s.at > now && lapsed(&s.owner, owners)));
        self.open.retain(|_, o| !lapsed(&o.owner, owners));
        let slots = &self.slots;
        let open = &self.open;
        self.owners.retain(|name, until| {
            *until > now
                || slots.iter().any(|s| s.owner.as_deref() == Some(name))
                || open.values().any(|o| o.owner.as_deref() == Some(name))
        });
    }

    /// Status as of `now`.
    pub fn snapshot(&self, rules: &PacingRules, now: PaceTime) -> PacerSnapshot {
        let ahead: Vec<&Slot> = self.slots.iter().filter(|s| s.at > now).collect();
        let horizon = ahead
            .iter()
            .map(|s| s.at.since(now))
            .max()
            .unwrap_or_default();
        let paused = [self.pause_until, self.rate_pause_until]
            .into_iter()
            .flatten()
            .map(|until| until.since(now))
            .max()
            .unwrap_or_default();
        PacerSnapshot {
            open_requests: count(self.open.len()),
            open_max: rules.open_max,
            historical_weight_in_window: self.historical_weight(rules, now, |_| true),
            historical_weight_max: rules.historical.max_weight,
            messages_in_window: count(
                self.slots
                    .iter()
                    .filter(|s| in_window(s.at, now, rules.message_rate.window))
                    .count(),
            ),
            scheduled_ahead: count(ahead.len()),
            horizon_ms: millis(horizon),
            paused_for_ms: millis(paused),
            violations_total: self.violations_total,
            violation_streak: self.violation_streak,
            // Ids start at the book's generation in the high half (so a restarted book never
            // reuses one): the count is the low half.
            reservations_total: self.next_id & 0xFFFF_FFFF,
        }
    }

    /// What each named owner holds, as of `now` (a shared book's status view).
    pub fn owners(&self, rules: &PacingRules, now: PaceTime) -> Vec<OwnerView> {
        self.owners
            .iter()
            .map(|(owner, until)| {
                let mine = |o: &Option<String>| o.as_deref() == Some(owner.as_str());
                OwnerView {
                    owner: owner.clone(),
                    open_requests: count(self.open.values().filter(|o| mine(&o.owner)).count()),
                    scheduled_ahead: count(
                        self.slots
                            .iter()
                            .filter(|s| s.at > now && mine(&s.owner))
                            .count(),
                    ),
                    historical_weight_in_window: self
                        .historical_weight(rules, now, |s| mine(&s.owner)),
                    alive_for_ms: millis(until.since(now)),
                }
            })
            .collect()
    }

    fn historical_weight(
        &self,
        rules: &PacingRules,
        now: PaceTime,
        pick: impl Fn(&Slot) -> bool,
    ) -> u32 {
        self.slots
            .iter()
            .filter(|s| s.profile.historical && pick(s))
            .filter(|s| in_window(s.at, now, rules.historical.window))
            .map(|s| s.profile.weight)
            .sum()
    }

    /// The earliest time `≥ t` (and after any applicable pause) at which `profile` breaks no rule.
    ///
    /// Every rule forbids a set of times whose complement can only begin at `e + window` (or
    /// `e + gap`) for some reserved slot `e`. So when some rules are broken at `t`, no time before
    /// the latest of their next such boundaries can satisfy them all; jump there and re-check.
    fn earliest(
        &self,
        rules: &PacingRules,
        mut t: PaceTime,
        profile: &Profile,
    ) -> (PaceTime, Option<Hold>) {
        let mut held = None;
        let mut pause = |t: &mut PaceTime, until: Option<PaceTime>, why: Hold| {
            if let Some(until) = until.filter(|u| *u > *t) {
                *t = until;
                held = Some(why);
            }
        };
        if profile.pausable {
            pause(&mut t, self.pause_until, Hold::ViolationPause);
        }
        pause(&mut t, self.rate_pause_until, Hold::RatePause);
        loop {
            // The latest boundary among the rules broken at `t`, and the rule (first on a tie).
            let mut next: Option<(PaceTime, Hold)> = None;
            let mut bump = |candidate: Option<PaceTime>, why: Hold| {
                if let Some(c) = candidate {
                    if next.is_none_or(|(n, _)| c > n) {
                        next = Some((c, why));
                    }
                }
            };
            if profile.historical {
                let events = self
                    .slots
                    .iter()
                    .filter(|s| s.profile.historical)
                    .map(|s| (s.at, s.profile.weight));
                bump(
                    window_block(t, events, profile.weight, rules.historical),
                    Hold::HistoricalWindow,
                );
            }
            if let Some(key) = &profile.burst {
                let events = self
                    .slots
                    .iter()
                    .filter(|s| s.profile.burst.as_ref() == Some(key))
                    .map(|s| (s.at, s.profile.weight));
                bump(
                    window_block(t, events, profile.weight, rules.burst),
                    Hold::Burst,
                );
            }
            if let Some(identity) = &profile.identity {
                let events = self
                    .slots
                    .iter()
                    .filter(|s| s.profile.identity.as_ref() == Some(identity))
                    .map(|s| s.at);
                bump(gap_block(t, events, rules.identical_gap), Hold::Identical);
            }
            if profile.min_interval > Duration::ZERO {
                let events = self
                    .slots
                    .iter()
                    .filter(|s| s.profile.class == profile.class)
                    .map(|s| s.at);
                bump(
                    gap_block(t, events, profile.min_interval),
                    Hold::MinInterval,
                );
            }
            bump(
                window_block(
                    t,
                    self.slots.iter().map(|s| (s.at, 1)),
                    1,
                    rules.message_rate,
                ),
                Hold::MessageRate,
            );
            match next {
                None => return (t, held),
                Some((n, why)) => {
                    t = n;
                    held = Some(why);
                }
            }
        }
    }
}

fn profile(rules: &PacingRules, request: &PacedRequest) -> Profile {
    let class = rules.class_of(request);
    let class_rules = rules.class_rules(class);
    let (burst, identity) = match request {
        PacedRequest::Historical(key) => (
            BurstKey {
                contract: key.contract.clone(),
                exchange: key.exchange.clone(),
                what_to_show: key.what_to_show,
            },
            Identity::Historical(key.clone()),
        ),
        PacedRequest::HeadTimestamp(key) => (
            BurstKey {
                contract: key.contract.clone(),
                exchange: key.exchange.clone(),
                what_to_show: key.what_to_show,
            },
            Identity::HeadTimestamp(key.clone()),
        ),
        PacedRequest::TickByTick(key) => {
            return Profile {
                class,
                weight: 1,
                historical: class_rules.historical_window,
                burst: None,
                identity: class_rules
                    .identical
                    .then(|| Identity::TickByTick(key.clone())),
                open_slot: class_rules.open_slot,
                pausable: class_rules.pausable,
                min_interval: class_rules.min_interval,
            };
        }
        PacedRequest::ContractDetails | PacedRequest::Message => {
            return Profile {
                class,
                weight: 1,
                historical: class_rules.historical_window,
                burst: None,
                identity: None,
                open_slot: class_rules.open_slot,
                pausable: class_rules.pausable,
                min_interval: class_rules.min_interval,
            };
        }
    };
    Profile {
        class,
        weight: rules.weight_of(request),
        historical: class_rules.historical_window,
        burst: class_rules.burst.then_some(burst),
        identity: class_rules.identical.then_some(identity),
        open_slot: class_rules.open_slot,
        pausable: class_rules.pausable,
        min_interval: class_rules.min_interval,
    }
}

fn check_satisfiable(rules: &PacingRules, profile: &Profile) -> Result<(), PacerError> {
    let mut limits = vec![(1, rules.message_rate.max_weight)];
    if profile.historical {
        limits.push((profile.weight, rules.historical.max_weight));
    }
    if profile.burst.is_some() {
        limits.push((profile.weight, rules.burst.max_weight));
    }
    match limits.into_iter().find(|(weight, max)| weight > max) {
        Some((weight, max)) => Err(PacerError::Unsatisfiable { weight, max }),
        None => Ok(()),
    }
}

/// How long after its send time a slot can still constrain another request.
fn relevance(rules: &PacingRules, profile: &Profile) -> Duration {
    let mut d = rules.message_rate.window;
    if profile.historical {
        d = d.max(rules.historical.window);
    }
    if profile.burst.is_some() {
        d = d.max(rules.burst.window);
    }
    if profile.identity.is_some() {
        d = d.max(rules.identical_gap);
    }
    d.max(profile.min_interval)
}

/// If adding weight `weight` at `t` overfills some window `[s, s + W)` containing `t`, the next time
/// at which a slot leaves the windows around `t` (`min { e + W : e + W > t }`); else `None`.
///
/// The fullest window containing `t` starts either at `t` or at a slot `e ∈ (t − W, t]`: shifting any
/// other window right until its start meets a slot (or `t`) loses nothing.
fn window_block(
    t: PaceTime,
    events: impl Iterator<Item = (PaceTime, u32)>,
    weight: u32,
    limit: WindowLimit,
) -> Option<PaceTime> {
    let w = limit.window;
    let mut near: Vec<(PaceTime, u32)> = Vec::new();
    let mut next_exit: Option<PaceTime> = None;
    for (at, wt) in events {
        let exit = at.plus(w);
        if exit > t {
            next_exit = Some(next_exit.map_or(exit, |n| n.min(exit)));
            if at < t.plus(w) {
                near.push((at, wt));
            }
        }
    }
    near.sort_unstable_by_key(|(at, _)| *at);
    let starts = std::iter::once(t).chain(near.iter().map(|(at, _)| *at).filter(|at| *at <= t));
    let capacity = u64::from(limit.max_weight);
    for start in starts {
        let end = start.plus(w);
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

/// If some slot lies within `gap` of `t` (`|t − e| < gap`), the next time at which a slot's
/// exclusion zone ends (`min { e + gap : e + gap > t }`); else `None`.
fn gap_block(
    t: PaceTime,
    events: impl Iterator<Item = PaceTime>,
    gap: Duration,
) -> Option<PaceTime> {
    let mut blocked = false;
    let mut next_exit: Option<PaceTime> = None;
    for at in events {
        let exit = at.plus(gap);
        if exit > t {
            next_exit = Some(next_exit.map_or(exit, |n| n.min(exit)));
            if at < t.plus(gap) {
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

fn in_window(at: PaceTime, now: PaceTime, window: Duration) -> bool {
    at <= now && now.since(at) < window
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacer::rules::small_bars;

    const S: u64 = 1_000_000_000;

    /// `owner` reserves the one request the tests repeat (identical each time), at `now` seconds.
    fn reserve(book: &mut PaceBook, now: u64, owner: &str) -> Result<BookReservation, PacerError> {
        let rules = PacingRules::default();
        let request = small_bars("X", "1", WhatToShow::Trades);
        book.reserve(
            &rules,
            PaceTime(now * S),
            PaceTime(0),
            &request,
            Some(owner),
        )
    }

    #[test]
    fn a_lapsed_owner_loses_its_unsent_slots_and_open_requests() -> Result<(), PacerError> {
        let rules = PacingRules::default();
        let mut book = PaceBook::new(1);
        book.touch("a", PaceTime(10 * S));
        book.touch("b", PaceTime(100 * S));
        let sent = reserve(&mut book, 0, "a")?;
        let later = reserve(&mut book, 0, "a")?;
        assert_eq!(later.at, PaceTime(15 * S));
        // b's identical request waits for both of a's.
        let b = reserve(&mut book, 0, "b")?;
        assert_eq!(b.at, PaceTime(30 * S));
        // Who holds what, as status pages show it.
        let view = |owner: &str, open, ahead, weight, alive| OwnerView {
            owner: owner.to_owned(),
            open_requests: open,
            scheduled_ahead: ahead,
            historical_weight_in_window: weight,
            alive_for_ms: alive,
        };
        assert_eq!(
            book.owners(&rules, PaceTime(S)),
            [view("a", 2, 1, 1, 9_000), view("b", 1, 1, 0, 99_000)]
        );
        book.cancel(b.id)?;
        // a stops renewing at 10 s: its unsent slot at 15 s goes, its sent one stays.
        book.prune(PaceTime(11 * S));
        assert!(book.holds(sent.id) && !book.holds(later.id));
        assert_eq!(book.snapshot(&rules, PaceTime(11 * S)).open_requests, 0);
        let b = reserve(&mut book, 11, "b")?;
        assert_eq!(b.at, PaceTime(15 * S));
        Ok(())
    }

    #[test]
    fn merge_puts_back_what_a_lost_store_forgot() -> Result<(), PacerError> {
        let mut kept = PaceBook::new(1);
        kept.touch("a", PaceTime(60 * S));
        let first = reserve(&mut kept, 0, "a")?;
        let mut fresh = PaceBook::new(2);
        fresh.merge(&kept, "a");
        assert!(fresh.holds(first.id));
        let again = reserve(&mut fresh, 1, "b")?;
        assert_eq!(
            again.at,
            PaceTime(15 * S),
            "the identical-request gap survives"
        );
        assert_ne!(again.id, first.id, "ids stay unique after a merge");
        assert_eq!(fresh.generation, 2);
        Ok(())
    }

    #[test]
    fn the_book_round_trips_through_json() -> Result<(), Box<dyn std::error::Error>> {
        let rules = PacingRules::default();
        let mut book = PaceBook::new(7);
        book.touch("a", PaceTime(60 * S));
        let _ = reserve(&mut book, 0, "a")?;
        let _ = book.on_violation(&rules, PaceTime(S));
        let json = serde_json::to_string(&book)?;
        let back: PaceBook = serde_json::from_str(&json)?;
        assert_eq!(back, book);
        Ok(())
    }
}
