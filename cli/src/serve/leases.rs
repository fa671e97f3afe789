//! Client-id leases as the dashboard shows them: with a shared registry (the host's file, or
//! Redis) every process's leases, this one's marked; with the memory store only this process's,
//! which the connection list already shows. Registry reads are blocking I/O: they run off the
//! async workers, one at a time, and a read younger than [`FRESH_FOR`] answers later calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ibconn_core::client_id::store::FileStore;
use ibconn_core::client_id::{ClientId, RegistryState, UnixMillis};
use ibconn_redis::{redact_url, RedisRegistry, RedisStore};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{parse_store, secs, Settings, StoreKind};
use crate::ids::{self, ForeignRow, LeaseRow};

/// How long one registry read answers the dashboard's calls.
const FRESH_FOR: Duration = Duration::from_secs(2);

/// One lease, and whether this process holds it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaseEntry {
    #[serde(flatten)]
    row: LeaseRow,
    /// Held by this process (its pid, and one of its pool's client ids).
    mine: bool,
}

/// The registry's leases at one moment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaseView {
    /// Where leases live: `memory`, `file PATH` or the Redis URL (password hidden).
    store: String,
    /// Whether other processes' leases are visible here.
    shared: bool,
    /// Every lease in the registry (empty for the memory store).
    leases: Vec<LeaseEntry>,
    /// Ids IB reported in use outside the registry (326), avoided for a while.
    foreign: Vec<ForeignRow>,
    /// Why the registry could not be read, if it could not.
    error: Option<String>,
}

/// Where the leases are read from.
enum Source {
    Memory,
    File(FileStore),
    Redis(Arc<std::sync::Mutex<RedisRegistry>>),
    Broken(String),
}

/// The registry reader with its last read.
pub(crate) struct Leases {
    store: String,
    source: Arc<Source>,
    last: Mutex<Option<(Instant, LeaseView)>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("store", &self.store)
            .finish()
    }
}

impl Leases {
    /// The reader for the registry `settings` give this process's pool (see `coordination`).
    pub(crate) fn new(settings: &Settings) -> Self {
        let (store, source) = match parse_store(&settings.coordination.store) {
            Ok(StoreKind::Memory) => ("memory".to_owned(), Source::Memory),
            Ok(StoreKind::File) if settings.client_ids.shared_registry => {
                let path: &PathBuf = &settings.client_ids.registry_file;
                (
                    format!("file {}", path.display()),
                    Source::File(
                        FileStore::new(path)
                            .with_lock_timeout(secs(settings.coordination.lock_timeout_secs)),
                    ),
                )
            }
            Ok(StoreKind::File) => ("memory".to_owned(), Source::Memory),
            Ok(StoreKind::Redis(url)) => {
                let shown = redact_url(&url);
                match RedisStore::open(&url) {
                    Ok(store) => (
                        shown,
                        Source::Redis(Arc::new(std::sync::Mutex::new(
                            RedisRegistry::for_current_process(
                                store,
                                settings.registry_config(),
                                Some("ibconn serve (dashboard)".to_owned()),
                            ),
                        ))),
                    ),
                    Err(e) => (shown, Source::Broken(e.to_string())),
                }
            }
            Err(e) => (settings.coordination.store.clone(), Source::Broken(e)),
        };
        Self {
            store,
            source: Arc::new(source),
            last: Mutex::new(None),
        }
    }

    /// The leases, `mine` marking the ids of this process's pool (`pool_ids`).
    pub(crate) async fn view(&self, pool_ids: &[ClientId]) -> LeaseView {
        let mut last = self.last.lock().await;
        let mut view = match &*last {
            Some((at, v)) if at.elapsed() < FRESH_FOR => v.clone(),
            _ => {
                let v = self.read().await;
                *last = Some((Instant::now(), v.clone()));
                v
            }
        };
        drop(last);
        let me = std::process::id();
        for e in &mut view.leases {
            e.mine = e.row.pid == me && pool_ids.contains(&e.row.id);
        }
        view
    }

    async fn read(&self) -> LeaseView {
        let source = Arc::clone(&self.source);
        let shared = !matches!(*source, Source::Memory);
        let read = tokio::task::spawn_blocking(move || -> Result<RegistryState, String> {
            let now = UnixMillis::from_system_time(SystemTime::now());
            match &*source {
                Source::Memory => Ok(RegistryState::new()),
                Source::File(store) if !store.path().exists() => Ok(RegistryState::new()),
                Source::File(store) => store.load(now).map_err(|e| e.to_string()),
                Source::Redis(registry) => registry
                    .lock()
                    .map_err(|_| "registry reader poisoned".to_owned())?
                    .state()
                    .map_err(|e| e.to_string()),
                Source::Broken(e) => Err(e.clone()),
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let now = UnixMillis::from_system_time(SystemTime::now());
        match read {
            Ok(state) => LeaseView {
                store: self.store.clone(),
                shared,
                leases: state
                    .leases
                    .iter()
                    .map(|(id, lease)| LeaseEntry {
                        row: ids::row(*id, lease, now),
                        mine: false,
                    })
                    .collect(),
                foreign: state
                    .foreign
                    .iter()
                    .map(|(id, m)| ids::foreign_row(*id, m.until.0))
                    .collect(),
                error: None,
            },
            Err(e) => {
                tracing::warn!(store = %self.store, error = %e, "cannot read the client-id registry");
                LeaseView {
                    store: self.store.clone(),
                    shared,
                    leases: Vec::new(),
                    foreign: Vec::new(),
                    error: Some(e),
                }
            }
        }
    }
}
