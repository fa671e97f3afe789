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
//! # Shared between processes
//! IB counts the historical rules per gateway session, across every API client. The schedule is a
//! plain serializable [`PaceBook`] in [`PaceTime`], so it can live in a [`PaceLedger`]: in memory
//! ([`MemoryLedger`], also shared between pools of one process or a simulation), in a file every
//! process on a host locks, or in Redis for many hosts. [`SharedPacer`] is what a pool uses per
//! gateway: gateway-wide classes through the ledger, the per-connection message rate locally.
//!
//! Sans-IO: `now` is passed in on every call and must not go backwards.

mod book;
#[cfg(feature = "file-store")]
mod file;
mod ledger;
mod rules;
mod shared;

pub use self::book::{BookReservation, OwnerView, PaceBook, PaceTime};
#[cfg(feature = "file-store")]
pub use self::file::{FileLedger, BOOK_SCHEMA_VERSION};
pub use self::ledger::{
    fresh_generation, LedgerError, LedgerNow, LedgerOp, MemoryLedger, PaceLedger,
};
pub use self::rules::{
    ClassRules, HeadTimestampKey, HistoricalRequestKey, PacedRequest, PacingRules, PauseRules,
    RequestClass, TickByTickKey, WindowLimit,
};
pub use self::shared::{SharedError, SharedGrant, SharedHold, SharedPacer, SharedPacerStatus};

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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
    /// The rule that set `at`, when it is later than `now` (`None`: sent at once).
    pub held_by: Option<Hold>,
}

/// The rule that holds a request back: the one whose limit set its send time (when several
/// end at the same instant, the first of this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Hold {
    /// [`PacingRules::historical`]: IB's 60 historical requests per 10 minutes.
    HistoricalWindow,
    /// [`PacingRules::burst`]: IB's 5 requests per 2 seconds for one contract, exchange and
    /// `whatToShow`.
    Burst,
    /// [`PacingRules::identical_gap`]: the same request again within 15 seconds.
    Identical,
    /// A class's [`ClassRules::min_interval`].
    MinInterval,
    /// [`PacingRules::message_rate`]: IB's 50 messages per second.
    MessageRate,
    /// The pause after a pacing violation (162) ([`PacingRules::pause`]).
    ViolationPause,
    /// The pause after a message-rate error (100).
    RatePause,
}

impl Hold {
    /// The rule in a user's words, with its limits from `rules` (e.g. "IB's limit of 60
    /// historical requests per 10 minutes").
    pub fn describe(self, rules: &PacingRules) -> String {
        let limit = |what: &str, w: &WindowLimit| {
            format!(
                "IB's limit of {} {what} per {}",
                w.max_weight,
                plain_duration(w.window)
            )
        };
        match self {
            Self::HistoricalWindow => limit("historical requests", &rules.historical),
            Self::Burst => format!("{} for one contract", limit("requests", &rules.burst)),
            Self::Identical => format!(
                "IB's rule that an identical request waits {}",
                plain_duration(rules.identical_gap)
            ),
            Self::MinInterval => "the configured spacing of these requests".to_owned(),
            Self::MessageRate => limit("messages", &rules.message_rate),
            Self::ViolationPause => "the pause after IB reported a pacing violation".to_owned(),
            Self::RatePause => {
                "the pause after IB reported too many messages per second".to_owned()
            }
        }
    }

    /// A short snake_case name (`historical_window`, `burst`, …), for JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::HistoricalWindow => "historical_window",
            Self::Burst => "burst",
            Self::Identical => "identical",
            Self::MinInterval => "min_interval",
            Self::MessageRate => "message_rate",
            Self::ViolationPause => "violation_pause",
            Self::RatePause => "rate_pause",
        }
    }
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

/// The pacer: rules plus a private [`PaceBook`] on this process's monotonic clock. See the
/// module docs. (The pool paces gateway-wide classes through a shared [`PaceLedger`] instead.)
#[derive(Debug, Clone)]
pub struct Pacer {
    rules: PacingRules,
    book: PaceBook,
    /// An instant and its book time (`PaceTime(0)` at the first `now` seen, unless resumed).
    epoch: Option<(Instant, PaceTime)>,
}

impl Pacer {
    /// A pacer with the given rules and an empty schedule.
    pub fn new(rules: PacingRules) -> Self {
        Self {
            rules,
            book: PaceBook::default(),
            epoch: None,
        }
    }

    /// A pacer that goes on from `book` (e.g. a copy of a shared ledger's book), where `now` is
    /// `book_now` on the book's clock: what it grants waits behind what the book already holds.
    /// `ibconn plan` estimates this way behind other processes' reservations.
    pub fn from_book(rules: PacingRules, book: PaceBook, now: Instant, book_now: PaceTime) -> Self {
        Self {
            rules,
            book,
            epoch: Some((now, book_now)),
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
        self.reserve_after(now, now, request)
    }

    /// [`Pacer::reserve`] for a send no earlier than `not_before` (e.g. a slot another pacer
    /// granted); the schedule is still pruned as of `now`.
    pub fn reserve_after(
        &mut self,
        now: Instant,
        not_before: Instant,
        request: &PacedRequest,
    ) -> Result<Reservation, PacerError> {
        let t = self.time(now);
        let not_before = self.time(not_before);
        let r = self
            .book
            .reserve(&self.rules, t, not_before, request, None)?;
        Ok(Reservation {
            id: r.id,
            at: now + r.at.since(t),
            class: r.class,
            held_by: r.held_by,
        })
    }

    /// Marks a sent request as finished (data end, error or cancel), freeing its open-request slot.
    /// Its send slot stays in the schedule: the request *was* sent and still counts in the windows.
    /// Classes without open slots need no completion (completing them while still scheduled is a no-op).
    pub fn complete(&mut self, id: ReservationId) -> Result<(), PacerError> {
        self.book.complete(id)
    }

    /// Withdraws a reservation whose request was **never sent**: its slot and open slot are freed.
    pub fn cancel(&mut self, id: ReservationId) -> Result<(), PacerError> {
        self.book.cancel(id)
    }

    /// Reports a 162 "pacing violation" from IB: pausable classes get no new slot until the returned
    /// instant. The pause grows geometrically with each violation in a streak (see [`PauseRules`]).
    pub fn on_violation(&mut self, now: Instant) -> PauseOutcome {
        let t = self.time(now);
        let (resume_at, displaced) = self.book.on_violation(&self.rules, t);
        PauseOutcome {
            resume_at: now + resume_at.since(t),
            displaced,
        }
    }

    /// Reports error 100 "Max rate of messages per second has been exceeded": no slot of any class
    /// before one full message-rate window has passed. Returns the resume instant.
    pub fn on_rate_exceeded(&mut self, now: Instant) -> Instant {
        let t = self.time(now);
        now + self.book.on_rate_exceeded(&self.rules, t).since(t)
    }

    /// Serializable status as of `now`.
    pub fn snapshot(&self, now: Instant) -> PacerSnapshot {
        let t = self.epoch.map_or(PaceTime(0), |(at, t)| {
            t.plus(now.saturating_duration_since(at))
        });
        self.book.snapshot(&self.rules, t)
    }

    /// `now` as book time, fixing the epoch at the first call.
    fn time(&mut self, now: Instant) -> PaceTime {
        let (at, t) = *self.epoch.get_or_insert((now, PaceTime(0)));
        t.plus(now.saturating_duration_since(at))
    }
}

/// `10 minutes`, `2 seconds`: a rule's window in words, to the nearest second (a configured
/// margin of a fraction of a second does not change how IB's rule reads).
fn plain_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    if secs > 0 && secs.is_multiple_of(3_600) {
        plural(secs / 3_600, "hour")
    } else if secs > 0 && secs.is_multiple_of(60) {
        plural(secs / 60, "minute")
    } else {
        plural(secs, "second")
    }
}

/// `1 minute`, `10 minutes`.
fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar_size::BarSize;
    use crate::what_to_show::WhatToShow;
    use std::time::Duration;

    /// One arbitrary base instant; every other time in the tests is an offset from it.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    use super::rules::small_bars as small;

    fn at_secs(t0: Instant, r: &Reservation) -> f64 {
        r.at.duration_since(t0).as_secs_f64()
    }

    #[test]
    fn identical_requests_are_fifteen_seconds_apart() -> Result<(), PacerError> {
        let t0 = base();
        let mut p = Pacer::new(PacingRules::default());
        let a = p.reserve(t0, &small("AAPL", "e1", WhatToShow::Trades))?;
        let b = p.reserve(t0, &small("AAPL", "e1", WhatToShow::Trades))?;
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
                &p.reserve(t0, &small("AAPL", &format!("e{i}"), WhatToShow::Trades))?,
            ));
        }
        assert_eq!(ats, [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0]);
        // Another contract is not held up.
        assert_eq!(
            at_secs(
                t0,
                &p.reserve(t0, &small("MSFT", "e0", WhatToShow::Trades))?
            ),
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
            let r = p.reserve(t0, &small(&format!("C{i}"), "e", WhatToShow::BidAsk))?;
            last = at_secs(t0, &r);
            p.complete(r.id)?;
        }
        assert_eq!(last, 0.0, "30 × weight 2 = 60 fits in the first window");
        let r = p.reserve(t0, &small("X", "e", WhatToShow::Trades))?;
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
        let a = p.reserve(t0, &small("A", "e", WhatToShow::Trades))?;
        let _b = p.reserve(t0, &small("B", "e", WhatToShow::Trades))?;
        assert_eq!(
            p.reserve(t0, &small("C", "e", WhatToShow::Trades)),
            Err(PacerError::OpenRequestsFull { open: 2, max: 2 })
        );
        // Contract details do not take open slots by default.
        assert!(p.reserve(t0, &PacedRequest::ContractDetails).is_ok());
        p.complete(a.id)?;
        assert!(p.reserve(t0, &small("C", "e", WhatToShow::Trades)).is_ok());
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
            what_to_show: WhatToShow::Trades,
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
        let a = p.reserve(t0, &small("A", "e", WhatToShow::Trades))?;
        let b = p.reserve(t0, &small("A", "e", WhatToShow::Trades))?; // booked for +15 s
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
        let booked = p.reserve(t0, &small("A", "e", WhatToShow::Trades))?;
        let later = p.reserve(t0, &small("A", "e", WhatToShow::Trades))?;
        let first = p.on_violation(t0);
        assert_eq!(first.resume_at, t0 + Duration::from_secs(60));
        assert_eq!(first.displaced, vec![later.id]);
        assert!(!first.displaced.contains(&booked.id));
        let r = p.reserve(t0, &small("B", "e", WhatToShow::Trades))?;
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
        let _ = p.reserve(t0, &small("A", "e", WhatToShow::BidAsk))?;
        let _ = p.reserve(t0, &small("A", "e", WhatToShow::BidAsk))?;
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
