//! One gateway's pacing as a pool sees it: the classes IB counts per gateway session go through
//! the shared [`PaceLedger`]; the 50 messages/s rule, which IB applies per client connection,
//! stays in a private [`Pacer`] of this process.
//!
//! Ledger steps that fail (store down, lock busy) never let a request out unpaced: a reservation
//! fails with [`SharedError::Ledger`] and the caller waits; completions, cancels and violations
//! that could not be written are kept and written with the next step that succeeds. After every
//! step the book is remembered, so a store that lost it (a Redis restart) gets it back merged.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::book::{OwnerView, PaceBook, PaceTime};
use super::ledger::{LedgerError, LedgerNow, PaceLedger};
use super::rules::{PacedRequest, PacingRules, RequestClass, WindowLimit};
use super::{Hold, Pacer, PacerError, PacerSnapshot, ReservationId};

/// What one request holds: its message-rate slot here and its slot in the shared book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedHold {
    local: ReservationId,
    shared: Option<ReservationId>,
}

impl SharedHold {
    /// The reservation in the shared book, if the request's class is paced there.
    pub fn shared(&self) -> Option<ReservationId> {
        self.shared
    }
}

/// A slot [`SharedPacer::reserve`] granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the request must be sent at `at`, and completed or cancelled afterwards"]
pub struct SharedGrant {
    /// What the request holds (for completion or cancel).
    pub hold: SharedHold,
    /// When to send it.
    pub at: Instant,
    /// The rule set that was applied.
    pub class: RequestClass,
    /// The rule that set `at`, when later than `now`.
    pub held_by: Option<Hold>,
}

/// Why [`SharedPacer::reserve`] gave no slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// The rules refuse (open slots full: try after a completion; or never satisfiable).
    #[error(transparent)]
    Pacer(#[from] PacerError),
    /// The ledger could not be reached: wait and try again, never send unpaced.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A later ledger step owes the book this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    Complete(ReservationId),
    Cancel(ReservationId),
    Violation,
}

/// The shared book's view for status pages: the gateway as every process sees it, and who holds what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPacerStatus {
    /// Where the book lives (`"memory"`, `"file …"`, `"redis://…"`).
    pub store: String,
    /// The book's key (the gateway id).
    pub key: String,
    /// This process's owner name.
    pub owner: String,
    /// Every owner with a claim on the book, this one included.
    pub owners: Vec<OwnerView>,
    /// The last ledger error, while it lasts.
    pub error: Option<String>,
    /// Steps that failed so far.
    pub errors_total: u64,
    /// Completions and cancels waiting to be written.
    pub owed: u32,
}

/// One gateway's pacer in a pool. See the module docs.
#[derive(Debug, Clone)]
pub struct SharedPacer {
    rules: PacingRules,
    gateway_rules: PacingRules,
    local: Pacer,
    key: String,
    ttl: Duration,
    seen: PaceBook,
    /// When `seen` was stepped on: our clock and the ledger's.
    seen_at: (Instant, PaceTime),
    /// Our last step that renewed our claim (reads do not).
    stepped_at: Option<Instant>,
    owed: Vec<Owed>,
    error: Option<LedgerError>,
    errors_total: u64,
}

impl SharedPacer {
    /// A pacer for the book `key` (the gateway id); this process's claims on it lapse `ttl` after
    /// its last ledger step unless renewed ([`SharedPacer::renew`]). `epoch`: any instant not
    /// after the first call's `now`.
    pub fn new(rules: PacingRules, key: impl Into<String>, ttl: Duration, epoch: Instant) -> Self {
        let mut gateway_rules = rules.clone();
        // IB counts the message rate per connection: the private pacer applies it.
        gateway_rules.message_rate = WindowLimit {
            window: Duration::ZERO,
            max_weight: u32::MAX,
        };
        Self {
            local: Pacer::new(rules.clone()),
            rules,
            gateway_rules,
            key: key.into(),
            ttl,
            seen: PaceBook::default(),
            seen_at: (epoch, PaceTime::default()),
            stepped_at: None,
            owed: Vec::new(),
            error: None,
            errors_total: 0,
        }
    }

    /// Reserves a send slot for `request` (see [`Pacer::reserve`]). Gateway-wide classes take
    /// one ledger step (two when this connection's message rate is saturated at the granted time).
    pub fn reserve(
        &mut self,
        ledger: &mut dyn PaceLedger,
        now: Instant,
        request: &PacedRequest,
    ) -> Result<SharedGrant, SharedError> {
        let class = self.rules.class_of(request);
        if !self.rules.class_rules(class).is_gateway_scoped() {
            let r = self.local.reserve(now, request)?;
            let hold = SharedHold {
                local: r.id,
                shared: None,
            };
            return Ok(SharedGrant {
                hold,
                at: r.at,
                class: r.class,
                held_by: r.held_by,
            });
        }
        let mut message = self.local.reserve(now, &PacedRequest::Message)?;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let not_before = message.at;
            let store = ledger.describe();
            let granted = self.step(ledger, now, |book, clock, rules, owner| {
                let t = clock.time;
                if let Some(until) = book.settling(t) {
                    return Err(SharedError::Ledger(LedgerError::Settling {
                        store: store.clone(),
                        wait: until.since(t),
                    }));
                }
                let not_before = t.plus(not_before.saturating_duration_since(clock.instant));
                book.reserve(rules, t, not_before, request, Some(owner))
                    .map(|r| (r.id, clock.instant + r.at.since(t), r.held_by))
                    .map_err(SharedError::from)
            });
            let granted = granted.map_err(SharedError::from).and_then(|r| r);
            let (shared, at, held_by) = match granted {
                Ok(granted) => granted,
                Err(e) => {
                    let _ = self.local.cancel(message.id);
                    return Err(e);
                }
            };
            if at > message.at {
                let _ = self.local.cancel(message.id);
                message = self.local.reserve_after(now, at, &PacedRequest::Message)?;
            }
            let hold = SharedHold {
                local: message.id,
                shared: Some(shared),
            };
            if message.at == at || rounds >= 3 {
                // After three rounds on a saturated connection, send a little late (< 1 s, and
                // the margin in the rules absorbs it) rather than keep the ledger busy.
                let held_by = if message.at > at {
                    message.held_by.or(Some(Hold::MessageRate))
                } else {
                    held_by.or(message.held_by)
                };
                return Ok(SharedGrant {
                    hold,
                    at: message.at.max(at),
                    class,
                    held_by,
                });
            }
            self.release(ledger, now, Owed::Cancel(shared));
        }
    }

    /// The request was sent and finished: free its open slot.
    pub fn complete(&mut self, ledger: &mut dyn PaceLedger, now: Instant, hold: SharedHold) {
        let _ = self.local.complete(hold.local);
        if let Some(id) = hold.shared {
            self.release(ledger, now, Owed::Complete(id));
        }
    }

    /// The request was never sent: free its slots.
    pub fn cancel(&mut self, ledger: &mut dyn PaceLedger, now: Instant, hold: SharedHold) {
        let _ = self.local.cancel(hold.local);
        if let Some(id) = hold.shared {
            self.release(ledger, now, Owed::Cancel(id));
        }
    }

    /// IB answered 162 "pacing violation": every process on the gateway pauses.
    pub fn on_violation(&mut self, ledger: &mut dyn PaceLedger, now: Instant) {
        let _ = self.local.on_violation(now);
        self.release(ledger, now, Owed::Violation);
    }

    /// IB answered 100 (message rate, per connection): only this process waits.
    pub fn on_rate_exceeded(&mut self, now: Instant) -> Instant {
        self.local.on_rate_exceeded(now)
    }

    /// Renews this process's claim on the book and pays what is owed. Returns the reservations
    /// of `held` that the book no longer has (this process's claim lapsed, e.g. it was stopped
    /// longer than the TTL): their requests must be reserved again before they are sent.
    pub fn renew(
        &mut self,
        ledger: &mut dyn PaceLedger,
        now: Instant,
        held: &[ReservationId],
    ) -> Result<Vec<ReservationId>, LedgerError> {
        self.step(ledger, now, |book, _, _, _| {
            held.iter().copied().filter(|id| !book.holds(*id)).collect()
        })
    }

    /// The error of the last ledger step, while the store keeps failing (`None` once a step
    /// succeeded again).
    pub fn failing(&self) -> Option<&LedgerError> {
        self.error.as_ref()
    }

    /// Whether this process must renew its claim even while it holds nothing: the book (as last
    /// seen) still has slots of `owner` that constrain others, and a store that loses the book
    /// gets them back only from a process that steps.
    pub fn needs_renewal(&self, owner: &str, now: Instant) -> bool {
        self.seen.has_slots_of(owner, self.seen_time(now))
    }

    /// Whether this process's claim may have lapsed since its last step (half the TTL has
    /// passed): before a reserved request is sent it must renew, or another process may
    /// already have been given the slot.
    pub fn claim_stale(&self, now: Instant) -> bool {
        self.stepped_at
            .is_some_and(|at| now.saturating_duration_since(at) >= self.ttl / 2)
    }

    /// `now` on the ledger's clock, from our last step.
    fn seen_time(&self, now: Instant) -> PaceTime {
        self.seen_at
            .1
            .plus(now.saturating_duration_since(self.seen_at.0))
    }

    /// The gateway as every process sees it: read from the ledger now (the last view if it
    /// cannot be reached), with this connection's message rate. Only reads: a status page
    /// neither renews this process's claim nor writes the store.
    pub fn snapshot(
        &self,
        ledger: &mut dyn PaceLedger,
        now: Instant,
    ) -> (PacerSnapshot, SharedPacerStatus) {
        let mut read = None;
        let result = ledger.transact(&self.key, now, &mut |book, clock| {
            read = Some((book.clone(), clock));
        });
        // The book as of now on the ledger's clock. What was read stays out of `seen`: that is
        // this process's memory of the book it stepped on, which a lost book is refilled from.
        let (book, t) = match (result, read) {
            (Ok(()), Some((book, clock))) => {
                let t = clock
                    .time
                    .plus(now.saturating_duration_since(clock.instant));
                (book, t)
            }
            _ => (self.seen.clone(), self.seen_time(now)),
        };
        let mut snapshot = book.snapshot(&self.gateway_rules, t);
        let local = self.local.snapshot(now);
        snapshot.messages_in_window = local.messages_in_window;
        snapshot.paused_for_ms = snapshot.paused_for_ms.max(local.paused_for_ms);
        let status = SharedPacerStatus {
            store: ledger.describe(),
            key: self.key.clone(),
            owner: ledger.owner().to_owned(),
            owners: book.owners(&self.gateway_rules, t),
            error: self.error.as_ref().map(ToString::to_string),
            errors_total: self.errors_total,
            owed: u32::try_from(self.owed.len()).unwrap_or(u32::MAX),
        };
        (snapshot, status)
    }

    /// Whether completions, cancels or a violation wait to be written (the store failed).
    pub fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Writes what is owed now (one step); `false` if the store still fails.
    pub fn pay(&mut self, ledger: &mut dyn PaceLedger, now: Instant) -> bool {
        self.step(ledger, now, |_, _, _, _| ()).is_ok()
    }

    /// Writes `owed` now, or keeps it for the next step that succeeds.
    fn release(&mut self, ledger: &mut dyn PaceLedger, now: Instant, owed: Owed) {
        self.owed.push(owed);
        let _ = self.step(ledger, now, |_, _, _, _| ());
    }

    /// One ledger step: put back a lost book, renew our claim, pay what is owed, run `op`,
    /// remember the book.
    fn step<T>(
        &mut self,
        ledger: &mut dyn PaceLedger,
        now: Instant,
        mut op: impl FnMut(&mut PaceBook, LedgerNow, &PacingRules, &str) -> T,
    ) -> Result<T, LedgerError> {
        let owner = ledger.owner().to_owned();
        let mut out = None;
        let (rules, ttl, seen, owed) = (&self.gateway_rules, self.ttl, &self.seen, &self.owed);
        let mut after = None;
        let result = ledger.transact(&self.key, now, &mut |book, clock| {
            let t = clock.time;
            if book.generation != seen.generation && seen.generation != 0 {
                tracing::warn!(
                    generation = seen.generation,
                    "the pacing store lost this gateway's book; merging back what this process saw"
                );
                book.merge(seen, &owner);
            }
            if let Some(since) = book
                .take_lost_predecessor(t)
                .filter(|s| s.plus(ttl / 3) > t)
            {
                // Until every process has stepped (within a third of the TTL of the store
                // coming back: renewals come at least that often) the new book may lack what
                // they sent. A store up longer than that (a first use) needs no settle.
                book.settle_until_at_least(since.plus(ttl / 3));
            }
            book.touch(&owner, t.plus(ttl));
            for o in owed {
                match *o {
                    Owed::Complete(id) => {
                        let _ = book.complete(id);
                    }
                    Owed::Cancel(id) => {
                        let _ = book.cancel(id);
                    }
                    Owed::Violation => {
                        let _ = book.on_violation(rules, t);
                    }
                }
            }
            out = Some(op(book, clock, rules, &owner));
            after = Some((book.clone(), clock));
        });
        match (result, out, after) {
            (Ok(()), Some(out), Some((book, clock))) => {
                // The step ran, so it paid everything owed.
                self.owed.clear();
                if self.error.take().is_some() {
                    tracing::info!(key = %self.key, "pacing store reachable again");
                }
                self.seen = book;
                self.seen_at = (clock.instant, clock.time);
                self.stepped_at = Some(clock.instant);
                Ok(out)
            }
            (Err(e), _, _) => {
                self.errors_total += 1;
                if self.error.as_ref() != Some(&e) {
                    tracing::warn!(key = %self.key, error = %e, "pacing store step failed; requests wait");
                }
                self.error = Some(e.clone());
                Err(e)
            }
            (Ok(()), _, _) => {
                // A ledger that returned without running the step: treat as unreachable.
                let e = LedgerError::Unavailable {
                    store: ledger.describe(),
                    reason: "the store did not run the step".to_owned(),
                };
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // One arbitrary origin; every later instant is derived from it.
    #![allow(clippy::disallowed_methods)]

    use super::*;
    use crate::pacer::rules::small_bars;
    use crate::pacer::LedgerNow;
    use crate::what_to_show::WhatToShow;

    const S: u64 = 1_000_000_000;

    /// A ledger over one book whose clock is `time` at `epoch` (as a shared store's would be).
    #[derive(Debug)]
    struct OneBook {
        book: PaceBook,
        epoch: Instant,
        time: PaceTime,
    }

    impl PaceLedger for OneBook {
        fn owner(&self) -> &str {
            "me"
        }
        fn describe(&self) -> String {
            "one book".to_owned()
        }
        fn transact(
            &mut self,
            _gateway: &str,
            now: Instant,
            op: &mut crate::pacer::LedgerOp<'_>,
        ) -> Result<(), LedgerError> {
            let time = self.time.plus(now.saturating_duration_since(self.epoch));
            op(&mut self.book, LedgerNow { time, instant: now });
            Ok(())
        }
    }

    /// `SharedPacer::reserve` on a store whose book was made afresh, at 1,000 s on its clock.
    fn first_reserve(book: PaceBook) -> Result<SharedGrant, SharedError> {
        let epoch = Instant::now();
        let mut ledger = OneBook {
            book,
            epoch,
            time: PaceTime(1_000 * S),
        };
        let ttl = Duration::from_secs(60);
        let mut pacer = SharedPacer::new(PacingRules::default(), "gw", ttl, epoch);
        pacer.reserve(
            &mut ledger,
            epoch,
            &small_bars("X", "1", WhatToShow::Trades),
        )
    }

    #[test]
    fn a_store_up_longer_than_the_settle_grants_its_fresh_book_at_once() {
        // Redis started 30 s before the book was made: every process has stepped since (a
        // third of the 60-s TTL), so nothing can be missing from it.
        let book = PaceBook::after_loss_since(1, PaceTime(970 * S));
        assert!(first_reserve(book).is_ok());
    }

    #[test]
    fn a_book_lost_recently_settles_until_a_third_of_the_ttl_after_the_loss() {
        // Redis started 5 s ago: 15 s of the 20-s settle are left.
        let book = PaceBook::after_loss_since(1, PaceTime(995 * S));
        match first_reserve(book) {
            Err(SharedError::Ledger(LedgerError::Settling { wait, .. })) => {
                assert_eq!(wait, Duration::from_secs(15));
            }
            other => panic!("expected a settle, got {other:?}"),
        }
        // A store that cannot say when it lost the book settles the full third from now.
        match first_reserve(PaceBook::after_loss(1)) {
            Err(SharedError::Ledger(LedgerError::Settling { wait, .. })) => {
                assert_eq!(wait, Duration::from_secs(20));
            }
            other => panic!("expected a settle, got {other:?}"),
        }
    }
}
