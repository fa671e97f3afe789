//! Coordination through Redis for several hosts that share one IB gateway: the pacing ledger
//! ([`RedisLedger`], IB's gateway-wide historical limits) and the client-id registry
//! ([`RedisRegistry`], who holds which client id).
//!
//! Both keep one JSON document per key and change it in atomic optimistic steps
//! (`WATCH`/`TIME`/`GET`, the pure operation from `ibconn-core`, `MULTI`/`SET`/`EXEC`, retried
//! when another client wrote first), with Redis' `TIME` as the clock so hosts with skewed clocks
//! agree. Every wait is bounded ([`RedisOptions`]): a step fails, it never hangs, and the next
//! step reconnects.

mod ledger;
mod registry;
mod store;

pub use self::ledger::{RedisLedger, DEFAULT_BOOK_TTL};
pub use self::registry::RedisRegistry;
pub use self::store::{redact_url, RedisOptions, RedisStore, RedisStoreError, ServerTime};
