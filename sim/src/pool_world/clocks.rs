//! Clocks and the pacing store of a [`PoolWorld`]: clock observations, sleeps, wall-clock
//! steps, the shared ledger and its faults; split out of `pool_world.rs`.

use std::time::Duration;

use ibconn_core::client_id::UnixMillis;
use ibconn_core::pacer::{MemoryLedger, PaceBook, PaceTime};

use super::PoolWorld;

impl PoolWorld {
    /// Report the host's clocks to every pool ([`Pool::observe_clocks`]) as a runtime does every
    /// [`PoolConfig::clock_interval`]: boot time is virtual time plus everything
    /// [`PoolWorld::sleep`] added, and so is the wall clock. The world never calls this itself.
    pub fn observe_clocks(&mut self) {
        let now = self.net.now();
        let since = self.elapsed() + self.slept;
        let wall = self.wall();
        self.log(|| format!("clocks boot +{since:?} wall {}", wall.0));
        for p in 0..self.procs.len() {
            if let Some(pool) = self.pool_mut(p) {
                pool.observe_clocks(now, since, wall);
                self.drain_pool(p);
            }
        }
    }

    /// The hosts slept for `slept` (every host: they share one clock): the boot-time and wall
    /// clocks jump ahead of the monotonic clock (which stops during suspend) by that much, and
    /// the pools are told at once ([`PoolWorld::observe_clocks`]). IB's servers lived through
    /// the sleep, so the gateway's historical pacing windows age by `slept`
    /// ([`Gateway::age_pacing`]); its sessions and the links are not affected: inject a fault for
    /// what the gateway did meanwhile.
    pub fn sleep(&mut self, slept: Duration) {
        self.doze(slept);
        self.observe_clocks();
    }

    /// [`PoolWorld::sleep`] without telling the pools yet: the clocks jump, and the pools hear of
    /// it at the next [`PoolWorld::observe_clocks`]. In between, other processes may act on the
    /// registry ([`PoolWorld::take_client_id`]), as they do while a laptop sleeps.
    pub fn doze(&mut self, slept: Duration) {
        self.log(|| format!("host sleeps {slept:?}"));
        self.slept += slept;
        self.gateway.age_pacing(slept);
    }

    /// The hosts' wall clocks step ahead by `by` with no time passing (an NTP step, a clock set
    /// by hand): unlike [`PoolWorld::doze`], neither boot time, monotonic time nor IB's servers
    /// move. The pools hear of it at the next [`PoolWorld::observe_clocks`].
    pub fn step_wall_clock(&mut self, by: Duration) {
        self.log(|| format!("wall clock steps ahead {by:?}"));
        self.wall_step += by;
    }

    /// Wall time now, as the hosts see it (sleeps and clock steps included).
    pub(super) fn wall(&self) -> UnixMillis {
        let since = self.elapsed() + self.slept + self.wall_step;
        let wall = self
            .wall_unix_ms
            .saturating_add(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        UnixMillis(u64::try_from(wall).unwrap_or(0))
    }

    /// The pacing ledger's clock now: the [`MemoryLedger`] measures monotonic time from its
    /// first step, which the world takes at the epoch, so this is virtual time since the epoch
    /// (a host sleep does not count; neither does a wall-clock step).
    pub fn ledger_time(&self) -> PaceTime {
        PaceTime(0).plus(self.elapsed())
    }

    // ----- the pacing store -----

    /// The pacing ledger every process shares (a handle that is never an owner in the books).
    pub fn pacing_ledger(&self) -> &MemoryLedger {
        &self.ledger
    }

    /// The key of the gateway's pacing book ([`PoolConfig::pacing_key`] of the first address).
    pub fn pacing_key(&self) -> String {
        let addr = self
            .pool_config
            .gateways
            .first()
            .cloned()
            .unwrap_or_default();
        self.pool_config.pacing_key(&addr)
    }

    /// A copy of the gateway's pacing book as the store holds it now.
    pub fn pacing_book(&self) -> PaceBook {
        self.ledger.book(&self.pacing_key())
    }

    /// The pacing store becomes unreachable (`Some(reason)`) or reachable again (`None`).
    pub fn set_store_unavailable(&mut self, reason: Option<String>) {
        self.log(|| match &reason {
            Some(r) => format!("pacing store unavailable: {r}"),
            None => "pacing store available".to_owned(),
        });
        self.ledger.set_unavailable(reason);
    }

    /// The pacing store restarts and loses every book (the pools merge back what they saw).
    pub fn restart_store(&mut self) {
        self.log(|| "pacing store restarts, losing every book".to_owned());
        self.ledger.forget_all();
    }
}
