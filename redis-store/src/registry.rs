//! The client-id registry in Redis: one JSON [`RegistryState`] at `{prefix}:client-ids`, shared
//! by every host on the gateway, mirroring `FileStore` (feature `file-store` of `ibconn-core`)
//! with `WATCH`/`MULTI` in place of `flock`.

use std::time::Duration;

use ibconn_core::client_id::liveness::{current_holder, linux_liveness};
use ibconn_core::client_id::{
    Grant, Holder, Liveness, Purpose, Reclaimed, RegistryConfig, RegistryError, RegistryState,
    UnixMillis, SCHEMA_VERSION,
};
use ibconn_core::pool::{IdRegistry, IdRegistryError};

use crate::store::{Codec, RedisStore, RedisStoreError, ServerTime, Undecodable};

/// The registry key never expires sooner than this after its last write.
const MIN_REGISTRY_TTL: Duration = Duration::from_secs(3600);

/// An [`IdRegistry`] shared by every host through Redis.
///
/// Every call is one atomic step with Redis `TIME` as `now` (the caller's `now` is ignored):
/// leases are compared between hosts, and a host whose clock ran ahead would otherwise see the
/// others' leases as expired and take their ids. The state is written whenever it changed, also
/// when the operation failed (stale leases reclaimed before a failed allocation stay reclaimed).
///
/// Liveness: a holder with this host's boot id is checked through `/proc`
/// ([`linux_liveness`]); any other holder (another host, or this host before a reboot) is
/// [`Liveness::Unknown`], and only its lease's TTL ends it.
///
/// A state that does not parse is moved to `{key}:corrupt-{ms}` and the call fails (the next one
/// starts from an empty registry, as the file store does); a newer schema is left untouched.
#[derive(Debug, Clone)]
pub struct RedisRegistry {
    store: RedisStore,
    key: String,
    me: Me,
}

/// What a step needs besides the store.
#[derive(Debug, Clone)]
struct Me {
    config: RegistryConfig,
    holder: Holder,
    local_boot_id: Option<String>,
}

impl Me {
    fn liveness(&self, holder: &Holder) -> Liveness {
        match (&self.local_boot_id, &holder.boot_id) {
            (Some(ours), Some(theirs)) if ours == theirs => linux_liveness(holder),
            _ => Liveness::Unknown,
        }
    }
}

impl RedisRegistry {
    /// A registry on `store` with `config`'s ranges, taking leases as `holder`.
    pub fn new(store: RedisStore, config: RegistryConfig, holder: Holder) -> Self {
        let key = store.key("client-ids");
        Self {
            store,
            key,
            me: Me {
                config,
                holder,
                local_boot_id: current_holder(None).boot_id,
            },
        }
    }

    /// A registry taking leases as the current process ([`current_holder`] with `label`).
    pub fn for_current_process(
        store: RedisStore,
        config: RegistryConfig,
        label: Option<String>,
    ) -> Self {
        Self::new(store, config, current_holder(label))
    }

    /// The Redis key of the state.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Who this registry's leases name.
    pub fn holder(&self) -> &Holder {
        &self.me.holder
    }

    /// The registry's policy.
    pub fn config(&self) -> &RegistryConfig {
        &self.me.config
    }

    /// The store.
    pub fn store(&mut self) -> &mut RedisStore {
        &mut self.store
    }

    /// Liveness as seen from this host: `/proc` for holders on this boot, else unknown.
    pub fn liveness(&self, holder: &Holder) -> Liveness {
        self.me.liveness(holder)
    }

    /// The current leases and foreign marks.
    pub fn state(&mut self) -> Result<RegistryState, IdRegistryError> {
        self.transact(|state, _, _| Ok(state.clone()))
    }

    /// Drops stale leases and ended foreign marks now; returns what was reclaimed.
    pub fn reclaim_stale(&mut self) -> Result<Vec<Reclaimed>, IdRegistryError> {
        self.transact(|state, now, this| Ok(state.reclaim_stale(now, &|h| this.liveness(h))))
    }

    /// One step: `op` gets the state, Redis' time (as `now`) and who we are.
    fn transact<T>(
        &mut self,
        mut op: impl FnMut(&mut RegistryState, UnixMillis, &Me) -> Result<T, RegistryError>,
    ) -> Result<T, IdRegistryError> {
        let codec = Codec {
            decode: &decode_state,
            fresh: &|_: ServerTime, _: ServerTime| RegistryState::new(),
            ttl: self.key_ttl(),
        };
        let Self { store, key, me } = self;
        let result = store.transact(key, &codec, &mut |state, t| op(state, t.unix_millis(), me));
        match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(IdRegistryError::Registry(e)),
            Err(e) => Err(IdRegistryError::Store(e.to_string())),
        }
    }

    /// How long the state outlives its last write: long past every lease and foreign mark.
    fn key_ttl(&self) -> Duration {
        MIN_REGISTRY_TTL
            .max(self.me.config.lease_ttl.saturating_mul(3))
            .max(self.me.config.foreign_cooldown.saturating_mul(2))
    }
}

/// Parses and checks the stored state as `FileStore` does.
fn decode_state(bytes: &[u8]) -> Result<RegistryState, Undecodable> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Undecodable::Corrupt(e.to_string()))?;
    match value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(found) => {
            return Err(Undecodable::Schema {
                found,
                supported: SCHEMA_VERSION,
            })
        }
        None => return Err(Undecodable::Corrupt("missing schema_version".to_owned())),
    }
    serde_json::from_value(value).map_err(|e| Undecodable::Corrupt(e.to_string()))
}

impl IdRegistry for RedisRegistry {
    /// See [`RegistryState::allocate`]; `now` is ignored in favour of Redis `TIME`.
    fn allocate(&mut self, purpose: &Purpose, _now: UnixMillis) -> Result<Grant, IdRegistryError> {
        self.transact(|state, now, this| {
            state.allocate(&this.config, purpose, &this.holder, now, &|h| {
                this.liveness(h)
            })
        })
    }

    fn on_client_id_in_use(
        &mut self,
        grant: &Grant,
        conflicts_so_far: u32,
        _now: UnixMillis,
    ) -> Result<Grant, IdRegistryError> {
        self.transact(|state, now, this| {
            state.on_client_id_in_use(
                &this.config,
                grant,
                conflicts_so_far,
                &this.holder,
                now,
                &|h| this.liveness(h),
            )
        })
    }

    fn heartbeat(&mut self, grant: &Grant, _now: UnixMillis) -> Result<(), IdRegistryError> {
        self.transact(|state, now, _| state.heartbeat(grant, now))
    }

    fn reacquire(&mut self, grant: &Grant, _now: UnixMillis) -> Result<Grant, IdRegistryError> {
        self.transact(|state, now, this| {
            state.reacquire(&this.config, grant, &this.holder, now, &|h| {
                this.liveness(h)
            })
        })
    }

    fn release(&mut self, grant: &Grant, _now: UnixMillis) -> Result<(), IdRegistryError> {
        self.transact(|state, _, _| state.release(grant))
    }
}

/// The registry's view of a store error (kept for callers matching on the text).
impl From<RedisStoreError> for IdRegistryError {
    fn from(e: RedisStoreError) -> Self {
        Self::Store(e.to_string())
    }
}
