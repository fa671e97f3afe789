//! Client-id registries as the world sees them: ids taken by another process, and the ids
//! each process holds; split out of `pool_world.rs`.

use ibconn_core::client_id::{ttl_only, Purpose};

use super::{PoolWorld, OTHER_PROCESS};

impl PoolWorld {
    /// Another process on host 0 (pid 2) leases the lowest free id of `purpose` from the
    /// host's registry — an id whose lease lapsed counts as free — and holds it until
    /// [`PoolWorld::give_back_client_id`] (its lease never lapses). The id, or `None` when the
    /// range is full.
    pub fn take_client_id(&mut self, purpose: &Purpose) -> Option<i32> {
        let now = self.wall();
        let host = self.hosts.first().cloned();
        let id = host.and_then(|host| {
            host.with(|state| {
                let grant = state
                    .allocate(&host.config, purpose, &OTHER_PROCESS, now, &ttl_only)
                    .ok()?;
                if let Some(lease) = state.leases.get_mut(&grant.id) {
                    lease.ttl_ms = u64::MAX;
                }
                Some(grant.id)
            })
        });
        self.log(|| format!("another process leases {purpose} id {id:?}"));
        id
    }

    /// The other process of [`PoolWorld::take_client_id`] gives `id` back (if it holds it).
    pub fn give_back_client_id(&mut self, id: i32) {
        self.log(|| format!("another process releases id {id}"));
        if let Some(host) = self.hosts.first() {
            host.with(|state| {
                if state
                    .leases
                    .get(&id)
                    .is_some_and(|l| l.holder == OTHER_PROCESS)
                {
                    state.leases.remove(&id);
                }
            });
        }
    }

    /// Client ids process 0 holds a registry lease on, sorted (see
    /// [`PoolWorld::held_client_ids_in`]).
    pub fn held_client_ids(&self) -> Vec<i32> {
        self.held_client_ids_in(0)
    }

    /// Client ids process `p` holds a lease on in its host's registry, sorted (lapsed leases not
    /// yet reclaimed included; killed processes' too).
    pub fn held_client_ids_in(&self, p: usize) -> Vec<i32> {
        let Some(process) = self.procs.get(p) else {
            return Vec::new();
        };
        self.hosts[process.host].with(|state| {
            state
                .leases
                .iter()
                .filter(|(_, l)| l.holder == process.holder)
                .map(|(id, _)| *id)
                .collect()
        })
    }

    /// Client ids other holders than process 0 (other processes on its host, killed ones
    /// included, and [`PoolWorld::take_client_id`]'s) hold a live lease on, sorted.
    pub fn others_client_ids(&self) -> Vec<i32> {
        self.others_client_ids_in(0)
    }

    /// Client ids other holders than process `p` hold a live lease on in `p`'s host's registry,
    /// sorted: ids `p` must not use.
    pub fn others_client_ids_in(&self, p: usize) -> Vec<i32> {
        let Some(process) = self.procs.get(p) else {
            return Vec::new();
        };
        let now = self.wall();
        self.hosts[process.host].with(|state| {
            state
                .leases
                .iter()
                .filter(|(_, l)| l.holder != process.holder && !l.is_expired(now))
                .map(|(id, _)| *id)
                .collect()
        })
    }

    /// Sockets the world tracks (open on either side), for leak checks.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Deliveries in flight, for leak checks.
    pub fn in_flight(&self) -> usize {
        self.net.in_flight()
    }
}
