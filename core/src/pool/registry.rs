//! The client-id registry as the pool sees it: a small trait, an in-memory implementation over
//! [`RegistryState`] and (feature `file-store`) one over the shared [`FileStore`].
//!
//! Wall-clock time is data: every call takes `now` as [`UnixMillis`].

use std::fmt;

#[cfg(feature = "file-store")]
use crate::client_id::{liveness, store::FileStore, store::StoreError};
use crate::client_id::{
    ttl_only, Grant, Holder, Purpose, RegistryConfig, RegistryError, RegistryState, UnixMillis,
};

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdRegistryError {
    /// The registry refused (range exhausted, too many conflicts, lease lost, …).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The persistent store failed (I/O, corrupt file); the text of the store's error.
    #[error("client-id store: {0}")]
    Store(String),
}

/// Where client ids come from: leases that other processes on the host respect.
pub trait IdRegistry: fmt::Debug {
    /// Lease a free id of `purpose`.
    fn allocate(&mut self, purpose: &Purpose, now: UnixMillis) -> Result<Grant, IdRegistryError>;
    /// The gateway answered 326 for `grant`: mark it foreign and lease the next id
    /// (`conflicts_so_far` counts earlier 326s of the same connection).
    fn on_client_id_in_use(
        &mut self,
        grant: &Grant,
        conflicts_so_far: u32,
        now: UnixMillis,
    ) -> Result<Grant, IdRegistryError>;
    /// Renew `grant`'s lease.
    fn heartbeat(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError>;
    /// A heartbeat said `grant`'s lease is lost (it lapsed, e.g. over a host sleep): take the
    /// same id again if nobody else holds it now, with a new grant
    /// ([`RegistryState::reacquire`]). The default cannot, and says so with
    /// [`RegistryError::NotHeld`]: the pool then moves the connection to a fresh id.
    fn reacquire(&mut self, grant: &Grant, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        let _ = now;
        Err(RegistryError::NotHeld { id: grant.id }.into())
    }
    /// Give `grant`'s id back.
    fn release(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError>;
}

/// A registry private to this process (no persistence; liveness by TTL only).
#[derive(Debug, Clone)]
pub struct MemoryRegistry {
    config: RegistryConfig,
    holder: Holder,
    state: RegistryState,
}

impl MemoryRegistry {
    /// An empty registry with `config`'s ranges.
    pub fn new(config: RegistryConfig, holder: Holder) -> Self {
        Self {
            config,
            holder,
            state: RegistryState::new(),
        }
    }

    /// The current leases and foreign marks.
    pub fn state(&self) -> &RegistryState {
        &self.state
    }

    /// The leases and foreign marks, to edit (tests and simulations: another process's leases).
    pub fn state_mut(&mut self) -> &mut RegistryState {
        &mut self.state
    }

    /// The registry's policy.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }
}

impl IdRegistry for MemoryRegistry {
    fn allocate(&mut self, purpose: &Purpose, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        Ok(self
            .state
            .allocate(&self.config, purpose, &self.holder, now, &ttl_only)?)
    }

    fn on_client_id_in_use(
        &mut self,
        grant: &Grant,
        conflicts_so_far: u32,
        now: UnixMillis,
    ) -> Result<Grant, IdRegistryError> {
        Ok(self.state.on_client_id_in_use(
            &self.config,
            grant,
            conflicts_so_far,
            &self.holder,
            now,
            &ttl_only,
        )?)
    }

    fn heartbeat(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        Ok(self.state.heartbeat(grant, now)?)
    }

    fn reacquire(&mut self, grant: &Grant, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        Ok(self
            .state
            .reacquire(&self.config, grant, &self.holder, now, &ttl_only)?)
    }

    fn release(&mut self, grant: &Grant, _now: UnixMillis) -> Result<(), IdRegistryError> {
        Ok(self.state.release(grant)?)
    }
}

/// A registry shared by every process on the host through a [`FileStore`] (feature `file-store`),
/// with the Linux `/proc` liveness check.
#[cfg(feature = "file-store")]
#[derive(Debug, Clone)]
pub struct FileRegistry {
    config: RegistryConfig,
    holder: Holder,
    store: FileStore,
}

#[cfg(feature = "file-store")]
impl FileRegistry {
    /// A registry persisted at `store`, holding leases as the current process.
    pub fn new(config: RegistryConfig, store: FileStore, label: Option<String>) -> Self {
        Self {
            config,
            holder: liveness::current_holder(label),
            store,
        }
    }

    /// The store.
    pub fn store(&self) -> &FileStore {
        &self.store
    }
}

#[cfg(feature = "file-store")]
fn store_err(e: StoreError) -> IdRegistryError {
    match e {
        StoreError::Registry(r) => IdRegistryError::Registry(r),
        other => IdRegistryError::Store(other.to_string()),
    }
}

#[cfg(feature = "file-store")]
impl IdRegistry for FileRegistry {
    fn allocate(&mut self, purpose: &Purpose, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        self.store
            .allocate(
                &self.config,
                purpose,
                &self.holder,
                now,
                &liveness::linux_liveness,
            )
            .map_err(store_err)
    }

    fn on_client_id_in_use(
        &mut self,
        grant: &Grant,
        conflicts_so_far: u32,
        now: UnixMillis,
    ) -> Result<Grant, IdRegistryError> {
        self.store
            .on_client_id_in_use(
                &self.config,
                grant,
                conflicts_so_far,
                &self.holder,
                now,
                &liveness::linux_liveness,
            )
            .map_err(store_err)
    }

    fn heartbeat(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        self.store.heartbeat(grant, now).map_err(store_err)
    }

    fn reacquire(&mut self, grant: &Grant, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        self.store
            .reacquire(
                &self.config,
                grant,
                &self.holder,
                now,
                &liveness::linux_liveness,
            )
            .map_err(store_err)
    }

    fn release(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        self.store.release(grant, now).map_err(store_err)
    }
}
