//! Processes of a [`PoolWorld`]: spawning, killing, and the caller's commands to their pools
//! (acquire, send, release, events, shutdown); split out of `pool_world.rs`.

use std::time::Duration;

use ibconn_core::client_id::Purpose;
use ibconn_core::connection::Query;
use ibconn_core::pool::{
    AcquireId, LeaseId, Pool, PoolEvent, PoolStats, SocketId, SubmitError, Ticket,
};

use super::trace::describe_query;
use super::{PoolWorld, Sock};

impl PoolWorld {
    /// Processes started so far, killed ones included (indices are never reused).
    pub fn processes(&self) -> usize {
        self.procs.len()
    }

    /// Whether process `p` runs (it was started and not killed; a shut-down pool still counts).
    pub fn is_alive(&self, p: usize) -> bool {
        self.procs.get(p).is_some_and(|x| x.pool.is_some())
    }

    /// The host process `p` runs (ran) on.
    pub fn host_of(&self, p: usize) -> Option<usize> {
        self.procs.get(p).map(|x| x.host)
    }

    /// Process `p`'s owner name in the pacing books (`host0/pid1`).
    pub fn owner_of(&self, p: usize) -> Option<&str> {
        self.procs.get(p).map(|x| x.owner.as_str())
    }

    /// When process `p` was killed, as virtual time since the epoch.
    pub fn killed_at(&self, p: usize) -> Option<Duration> {
        self.procs
            .get(p)
            .and_then(|x| x.killed_at)
            .map(|t| self.net.since_epoch(t))
    }

    /// Start another process on `host` (a fresh pool, a pid and owner name of its own); its index.
    pub fn spawn(&mut self, host: usize) -> usize {
        self.labelled = true;
        let p = self.start_process(host);
        let owner = self.procs[p].owner.clone();
        self.log(|| format!("P{p} starts as {owner}"));
        p
    }

    /// Kill process `p` (as `kill -9`): its pool is dropped without a shutdown, the kernel
    /// closes its sockets (the gateway sees FINs), and its events are gone. Its registry leases
    /// and pacing claims stay until their TTLs run out. Killing a dead process does nothing.
    pub fn kill(&mut self, p: usize) {
        let Some(process) = self.procs.get_mut(p) else {
            return;
        };
        let Some(pool) = process.pool.take() else {
            return;
        };
        drop(pool);
        process.killed_at = Some(self.net.now());
        process.events.clear();
        let who = self.who(p);
        self.log(|| format!("{who}killed"));
        let socks: Vec<Sock> = self
            .links
            .range((p, SocketId(0))..)
            .map(|(s, _)| *s)
            .take_while(|s| s.0 == p)
            .collect();
        for sock in socks {
            self.close_socket(sock);
        }
    }

    pub(super) fn pool_mut(&mut self, p: usize) -> Option<&mut Pool> {
        self.procs.get_mut(p).and_then(|x| x.pool.as_mut())
    }

    /// Process 0's pool (`None` once killed).
    pub fn pool(&self) -> Option<&Pool> {
        self.pool_in(0)
    }

    /// Process `p`'s pool (`None` once killed).
    pub fn pool_in(&self, p: usize) -> Option<&Pool> {
        self.procs.get(p).and_then(|x| x.pool.as_ref())
    }

    /// Process 0's counters now (all zero once killed).
    pub fn pool_stats(&mut self) -> PoolStats {
        self.pool_stats_in(0).unwrap_or_default()
    }

    /// Process `p`'s counters now (`None` once killed). Reads the shared pacing book (a ledger
    /// step, which renews the process's pacing claims, as a status page would).
    pub fn pool_stats_in(&mut self, p: usize) -> Option<PoolStats> {
        let now = self.net.now();
        self.pool_mut(p).map(|pool| pool.stats(now))
    }

    /// Ask process 0's pool for a lease (the outcome arrives as an event; see
    /// [`PoolWorld::poll_event`]). Once process 0 is killed: `AcquireId(0)`, never answered.
    pub fn acquire(&mut self, purpose: Purpose) -> AcquireId {
        self.acquire_in(0, purpose).unwrap_or(AcquireId(0))
    }

    /// Ask process `p`'s pool for a lease (`None`: the process is dead).
    pub fn acquire_in(&mut self, p: usize, purpose: Purpose) -> Option<AcquireId> {
        let now = self.net.now();
        let shown = purpose.to_string();
        let id = self.pool_mut(p)?.acquire(now, purpose, None);
        let who = self.who(p);
        self.log(|| format!("{who}acquire {} {shown}", id.0));
        self.drain_pool(p);
        Some(id)
    }

    /// Submit a query on a lease of process 0.
    pub fn send(
        &mut self,
        lease: LeaseId,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<Ticket, SubmitError> {
        self.send_in(0, lease, query, timeout)
    }

    /// Submit a query on a lease of process `p` (a dead process refuses as shutting down).
    pub fn send_in(
        &mut self,
        p: usize,
        lease: LeaseId,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<Ticket, SubmitError> {
        let now = self.net.now();
        let shown = self.trace.is_some().then(|| describe_query(&query));
        let ticket = match self.pool_mut(p) {
            Some(pool) => pool.send(now, lease, query, timeout),
            None => Err(SubmitError::ShuttingDown),
        };
        let who = self.who(p);
        self.log(|| {
            let outcome = match &ticket {
                Ok(t) => format!("T{}", t.0),
                Err(e) => format!("refused ({e})"),
            };
            format!(
                "{who}send on L{} {} timeout {timeout:?}: {outcome}",
                lease.0,
                shown.unwrap_or_default()
            )
        });
        self.drain_pool(p);
        ticket
    }

    /// Give a lease of process 0 back.
    pub fn release(&mut self, lease: LeaseId) {
        self.release_in(0, lease);
    }

    /// Give a lease of process `p` back.
    pub fn release_in(&mut self, p: usize, lease: LeaseId) {
        let who = self.who(p);
        self.log(|| format!("{who}release L{}", lease.0));
        let now = self.net.now();
        if let Some(pool) = self.pool_mut(p) {
            pool.release(now, lease);
        }
        self.drain_pool(p);
    }

    /// Process 0's next event not taken yet.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.poll_event_in(0)
    }

    /// Process `p`'s next event not taken yet.
    pub fn poll_event_in(&mut self, p: usize) -> Option<PoolEvent> {
        self.procs.get_mut(p)?.events.pop_front()
    }

    /// Shut process 0's pool down (see [`Pool::shutdown`]); keep stepping to let the closes reach
    /// the gateway.
    pub fn shutdown(&mut self) {
        self.shutdown_in(0);
    }

    /// Shut process `p`'s pool down.
    pub fn shutdown_in(&mut self, p: usize) {
        let who = self.who(p);
        self.log(|| format!("{who}shutdown"));
        let now = self.net.now();
        if let Some(pool) = self.pool_mut(p) {
            pool.shutdown(now);
        }
        self.drain_pool(p);
    }
}
