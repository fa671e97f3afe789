//! The pacing ledger in Redis: one JSON [`PaceBook`] per gateway at `{prefix}:pace:{gateway}`,
//! changed only by atomic optimistic steps judged by Redis' clock.

use std::time::{Duration, Instant};

use ibconn_core::pacer::{
    fresh_generation, LedgerError, LedgerNow, LedgerOp, PaceBook, PaceLedger,
};

use crate::store::{Codec, RedisStore, RedisStoreError, ServerTime, Undecodable};

/// Default lifetime of a book after its last write: a dead gateway's book vanishes, a live one
/// is rewritten far more often (every reservation, completion and renewal).
pub const DEFAULT_BOOK_TTL: Duration = Duration::from_secs(3600);

/// A [`PaceLedger`] handle on books in Redis, shared by every host that talks to one gateway.
///
/// Every step uses Redis `TIME` as the ledger clock and ignores the caller's `now`, so hosts with
/// skewed clocks still agree on every window. Steps fail (never hang) within the store's
/// timeouts: [`LedgerError::Unavailable`] when Redis cannot be reached, [`LedgerError::Busy`] when
/// other writers won every optimistic try, [`LedgerError::Corrupt`] when the stored book does not
/// parse — it is then moved to `{key}:corrupt-{ms}` (kept 7 days) and the next step starts a
/// fresh book (a new generation, into which [`ibconn_core::pacer::SharedPacer`] merges what it saw).
#[derive(Debug, Clone)]
pub struct RedisLedger {
    store: RedisStore,
    owner: String,
    ttl: Duration,
}

impl RedisLedger {
    /// A handle named `owner` (unique among every process sharing the store, e.g.
    /// `ibconn_core::client_id::liveness::owner_name`) on `store`'s books.
    pub fn new(store: RedisStore, owner: impl Into<String>) -> Self {
        Self {
            store,
            owner: owner.into(),
            ttl: DEFAULT_BOOK_TTL,
        }
    }

    /// A handle on the Redis at `url` with default options.
    pub fn open(url: &str, owner: impl Into<String>) -> Result<Self, RedisStoreError> {
        Ok(Self::new(RedisStore::open(url)?, owner))
    }

    /// The same handle with books expiring `ttl` after their last write (default 1 h).
    #[must_use]
    pub fn with_book_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The store.
    pub fn store(&mut self) -> &mut RedisStore {
        &mut self.store
    }

    /// The key of `gateway`'s book.
    pub fn key(&self, gateway: &str) -> String {
        self.store.key(&format!("pace:{gateway}"))
    }
}

impl PaceLedger for RedisLedger {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn describe(&self) -> String {
        self.store.describe().to_owned()
    }

    /// See [`PaceLedger::transact`]; `now` is ignored in favour of Redis `TIME`.
    fn transact(
        &mut self,
        gateway: &str,
        _now: Instant,
        op: &mut LedgerOp<'_>,
    ) -> Result<(), LedgerError> {
        let key = self.key(gateway);
        let owner = self.owner.as_str();
        let decode = |bytes: &[u8]| {
            serde_json::from_slice::<PaceBook>(bytes)
                .map_err(|e| Undecodable::Corrupt(e.to_string()))
        };
        // A missing key may be a restart that lost the book; nothing tells it from a first use
        // but the server's uptime: a book lost before the server started was lost with it.
        let fresh = |t: ServerTime, lost_since: ServerTime| {
            PaceBook::after_loss_since(
                fresh_generation(t.pace_time(), owner),
                lost_since.pace_time(),
            )
        };
        let codec = Codec {
            decode: &decode,
            fresh: &fresh,
            ttl: self.ttl,
        };
        self.store
            .transact(&key, &codec, &mut |book, t| {
                // Taken after TIME's reply arrived: a late mapping only delays sends.
                let instant = Instant::now();
                op(
                    book,
                    LedgerNow {
                        time: t.pace_time(),
                        instant,
                    },
                );
            })
            .map_err(ledger_error)
    }
}

/// The ledger's view of a store error.
fn ledger_error(e: RedisStoreError) -> LedgerError {
    match e {
        RedisStoreError::Contended { store, waited, .. } => LedgerError::Busy { store, waited },
        RedisStoreError::Corrupt {
            store,
            preserved_at,
            reason,
            ..
        } => LedgerError::Corrupt {
            store,
            reason: format!("{reason}; preserved at {preserved_at}"),
        },
        RedisStoreError::UnsupportedSchema {
            store,
            key,
            found,
            supported,
        } => LedgerError::Corrupt {
            store,
            reason: format!("{key} has schema version {found}, this build supports {supported}"),
        },
        RedisStoreError::InvalidUrl { url, reason } => {
            LedgerError::Unavailable { store: url, reason }
        }
        RedisStoreError::Unavailable { store, reason } => {
            LedgerError::Unavailable { store, reason }
        }
    }
}
