//! Client-id registries: one per host, shared by its processes, each process leasing as its
//! own holder; split out of `pool_world.rs` to keep the world's driving loop readable.

use std::sync::{Arc, Mutex, PoisonError};

use ibconn_core::client_id::{
    ttl_only, Grant, Holder, Purpose, RegistryConfig, RegistryState, UnixMillis,
};
use ibconn_core::pool::{IdRegistry, IdRegistryError};

/// One host's client-id registry (as the per-user registry file): its policy and its state,
/// shared by the processes on the host and by the world.
#[derive(Debug, Clone)]
pub(super) struct HostRegistry {
    pub(super) config: RegistryConfig,
    state: Arc<Mutex<RegistryState>>,
}

impl HostRegistry {
    pub(super) fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            state: Arc::default(),
        }
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&mut RegistryState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One process's view of its host's registry: every call goes straight to the shared state as
/// this process's holder (liveness by TTL only, as for a holder in another container).
#[derive(Debug, Clone)]
pub(super) struct ProcessRegistry {
    pub(super) host: HostRegistry,
    pub(super) holder: Holder,
}

impl IdRegistry for ProcessRegistry {
    fn allocate(&mut self, purpose: &Purpose, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        let (config, holder) = (&self.host.config, &self.holder);
        Ok(self
            .host
            .with(|s| s.allocate(config, purpose, holder, now, &ttl_only))?)
    }

    fn on_client_id_in_use(
        &mut self,
        grant: &Grant,
        conflicts_so_far: u32,
        now: UnixMillis,
    ) -> Result<Grant, IdRegistryError> {
        let (config, holder) = (&self.host.config, &self.holder);
        Ok(self.host.with(|s| {
            s.on_client_id_in_use(config, grant, conflicts_so_far, holder, now, &ttl_only)
        })?)
    }

    fn heartbeat(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        Ok(self.host.with(|s| s.heartbeat(grant, now))?)
    }

    fn reacquire(&mut self, grant: &Grant, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        let (config, holder) = (&self.host.config, &self.holder);
        Ok(self
            .host
            .with(|s| s.reacquire(config, grant, holder, now, &ttl_only))?)
    }

    fn release(&mut self, grant: &Grant, _now: UnixMillis) -> Result<(), IdRegistryError> {
        Ok(self.host.with(|s| s.release(grant))?)
    }
}
