//! What the processes (and hosts) sharing a gateway share: the client-id registry and the pacing
//! ledger, from `[coordination]` — files on this host (default), this process's memory, or Redis.

use ibconn_core::client_id::liveness::owner_name;
use ibconn_core::pacer::{FileLedger, MemoryLedger, PaceLedger};
use ibconn_core::pool::IdRegistry;
use ibconn_redis::{RedisLedger, RedisRegistry, RedisStore};

use crate::config::{parse_store, secs, Settings, StoreKind};
use crate::ids;

/// A pool's registry and pacing ledger.
pub(crate) struct Shared {
    /// Client-id leases.
    pub(crate) registry: Box<dyn IdRegistry + Send>,
    /// Pacing books.
    pub(crate) ledger: Box<dyn PaceLedger>,
}

/// The registry and ledger for a pool of this process on a real gateway. A store that cannot be
/// set up (a directory that cannot be created) is an error: falling back to this process alone
/// would silently give up the shared pacing budget.
pub(crate) fn open(settings: &Settings, label: &str) -> Result<Shared, String> {
    let owner = owner_name(label);
    let c = &settings.coordination;
    match parse_store(&c.store)? {
        StoreKind::Memory => Ok(Shared {
            registry: ids::memory_registry(settings),
            ledger: Box::new(MemoryLedger::new(owner)),
        }),
        StoreKind::File => {
            std::fs::create_dir_all(&c.pacing_dir)
                .map_err(|e| format!("pacing store {}: {e}", c.pacing_dir.display()))?;
            let ledger =
                FileLedger::new(&c.pacing_dir, owner).with_lock_timeout(secs(c.lock_timeout_secs));
            Ok(Shared {
                registry: ids::registry(settings, label),
                ledger: Box::new(ledger),
            })
        }
        StoreKind::Redis(url) => {
            // Leases and pacing books on one Redis: every host using it shares both, with
            // Redis TIME as the one clock; no step waits longer than its timeouts.
            let store = RedisStore::open(&url).map_err(|e| format!("coordination.store: {e}"))?;
            let registry = RedisRegistry::for_current_process(
                store.clone(),
                settings.registry_config(),
                Some(label.to_owned()),
            );
            Ok(Shared {
                registry: Box::new(registry),
                ledger: Box::new(RedisLedger::new(store, owner)),
            })
        }
    }
}

/// A tokio pool on `config`'s gateways that shares this host's (or these hosts') client ids and
/// pacing budget as configured.
pub(crate) fn start_pool(
    settings: &Settings,
    config: ibconn_core::pool::PoolConfig,
    label: &str,
) -> Result<ibconn_tokio::Pool, String> {
    let shared = open(settings, label)?;
    Ok(ibconn_tokio::Pool::start_with_ledger(
        config,
        shared.registry,
        shared.ledger,
    ))
}
