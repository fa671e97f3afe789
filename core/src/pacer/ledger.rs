//! Where pacing books live: the [`PaceLedger`] trait (one atomic read-modify-write of one
//! gateway's [`PaceBook`]) and its in-memory implementation. Stores that do I/O (a locked file per
//! host, Redis for many hosts) implement the same trait outside the pure core.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::book::{PaceBook, PaceTime};

/// Why a ledger step failed. The caller never sends unpaced on an error: it waits and tries again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store cannot be reached (Redis down, I/O error, …).
    #[error("pacing store {store} is unavailable: {reason}")]
    Unavailable {
        /// The store, as [`PaceLedger::describe`] says.
        store: String,
        /// What failed.
        reason: String,
    },
    /// Another process held the store's lock past the deadline.
    #[error("pacing store {store} stayed locked by another process for {waited:?}")]
    Busy {
        /// The store.
        store: String,
        /// How long we waited for the lock.
        waited: Duration,
    },
    /// The store lost the book and the processes are putting back what they sent: wait.
    #[error("pacing store {store} lost this gateway's book; waiting {wait:?} for every process to put back what it sent")]
    Settling {
        /// The store.
        store: String,
        /// How long until reservations are granted again.
        wait: Duration,
    },
    /// The stored book does not parse (it was preserved aside where the store says).
    #[error("pacing store {store} is corrupt: {reason}")]
    Corrupt {
        /// The store.
        store: String,
        /// The parse error and where the bad copy went.
        reason: String,
    },
}

/// The ledger's clock at one moment, with the caller's monotonic instant at the same moment:
/// a time `t'` in the book is the caller's `instant + (t' − time)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerNow {
    /// The ledger's time (the time every rule is judged in).
    pub time: PaceTime,
    /// The caller's clock at that moment (or later: a late mapping only delays sends). A store
    /// that waited for a lock or a server reads it after the wait, never before.
    pub instant: Instant,
}

/// A ledger step: gets the gateway's book and the ledger's clock, and may change the book.
pub type LedgerOp<'a> = dyn FnMut(&mut PaceBook, LedgerNow) + 'a;

/// Where a pool's pacing books live, one per gateway key. Each handle has an owner name, unique
/// among every process sharing the store; see [`PaceBook`] for what owners mean.
pub trait PaceLedger: fmt::Debug + Send {
    /// This handle's owner name in the books.
    fn owner(&self) -> &str;

    /// Where the books live, for messages and status (`"memory"`, `"file /path"`, `"redis://…"`).
    fn describe(&self) -> String;

    /// One atomic step on `gateway`'s book: load it (a fresh [`PaceBook::new`] with
    /// [`fresh_generation`] if there is none, or [`PaceBook::after_loss`] if the store may have
    /// lost one: a restart, a corrupt file), call `op` with it and the ledger's time, store it
    /// if it changed (a book made after a loss is stored even unchanged). No other step on the same book may interleave. `op` may be called more
    /// than once (optimistic retries): only its last call counts.
    ///
    /// The ledger's time is one clock every sharer reads and that never jumps: the memory
    /// ledger measures the caller's monotonic `now` from a shared epoch; a file ledger reads the
    /// host's boot-time clock (shared by every process on the host, counting suspend as IB does,
    /// deaf to wall-clock steps); Redis its server's `TIME`, so hosts with skewed clocks agree.
    /// The step gets the ledger's time with the caller's instant at that moment
    /// ([`LedgerNow`]), read after any wait for a lock or a server.
    fn transact(
        &mut self,
        gateway: &str,
        now: Instant,
        op: &mut LedgerOp<'_>,
    ) -> Result<(), LedgerError>;
}

/// A generation number for a book created from nothing by `owner` at `now` (never 0, which is
/// the generation of a book nobody has seen yet).
pub fn fresh_generation(now: PaceTime, owner: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    now.hash(&mut h);
    owner.hash(&mut h);
    h.finish().max(1)
}

#[derive(Debug, Default)]
struct MemoryBooks {
    books: BTreeMap<String, PaceBook>,
    unavailable: Option<String>,
    /// [`MemoryLedger::forget_all`] was called: books made afresh since may have had a past.
    lost: bool,
    /// `PaceTime(0)`: the first `now` any handle passed.
    epoch: Option<Instant>,
}

/// Books in this process's memory. Handles made with [`MemoryLedger::handle`] share them: the
/// pools of one process, or the simulated processes of a simulation, on one gateway.
#[derive(Debug, Clone)]
pub struct MemoryLedger {
    owner: String,
    books: Arc<Mutex<MemoryBooks>>,
}

impl MemoryLedger {
    /// An empty ledger with one handle named `owner`.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            books: Arc::default(),
        }
    }

    /// Another handle on the same books, for another owner.
    pub fn handle(&self, owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            books: Arc::clone(&self.books),
        }
    }

    /// A copy of `gateway`'s book (empty if none).
    pub fn book(&self, gateway: &str) -> PaceBook {
        self.lock().books.get(gateway).cloned().unwrap_or_default()
    }

    /// Simulates a store that cannot be reached (`Some(reason)`) or is back (`None`).
    pub fn set_unavailable(&self, reason: Option<String>) {
        self.lock().unavailable = reason;
    }

    /// Simulates a store restart that lost every book.
    pub fn forget_all(&self) {
        let mut books = self.lock();
        books.books.clear();
        books.lost = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryBooks> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PaceLedger for MemoryLedger {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn transact(
        &mut self,
        gateway: &str,
        now: Instant,
        op: &mut LedgerOp<'_>,
    ) -> Result<(), LedgerError> {
        let mut books = self.lock();
        let epoch = *books.epoch.get_or_insert(now);
        let time = PaceTime(0).plus(now.saturating_duration_since(epoch));
        if let Some(reason) = &books.unavailable {
            return Err(LedgerError::Unavailable {
                store: "memory".to_owned(),
                reason: reason.clone(),
            });
        }
        let lost = books.lost;
        let book = books.books.entry(gateway.to_owned()).or_insert_with(|| {
            let generation = fresh_generation(time, &self.owner);
            if lost {
                PaceBook::after_loss(generation)
            } else {
                PaceBook::new(generation)
            }
        });
        op(book, LedgerNow { time, instant: now });
        Ok(())
    }
}
