//! Leases and their waiters: `acquire` queues a waiter, a ready connection with room grants it,
//! and the rest open connections within their purpose's cap; `release` gives a lease back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{
    AcquireError, AcquireId, CallError, LeaseId, Link, Offered, Pool, PoolEvent, Slot, SlotId,
    Ticket, Waiter,
};
use crate::backoff::Backoff;
use crate::client_id::Purpose;
use crate::deadline::after;

impl Pool {
    /// The client id behind a lease.
    pub fn lease_client_id(&self, lease: LeaseId) -> Option<i32> {
        let slot = self.leases.get(&lease)?;
        self.slots.get(slot).map(|s| s.grant.id)
    }

    /// Ask for a lease on a connection of `purpose`, waiting up to `timeout` (default
    /// [`PoolConfig::acquire_timeout`]). The outcome arrives as exactly one
    /// [`PoolEvent::Acquired`] or [`PoolEvent::AcquireFailed`] with the returned id.
    ///
    /// [`PoolConfig::acquire_timeout`]: super::PoolConfig::acquire_timeout
    pub fn acquire(
        &mut self,
        now: Instant,
        purpose: Purpose,
        timeout: Option<Duration>,
    ) -> AcquireId {
        self.advance(now);
        let id = AcquireId(self.fresh());
        let error = if self.shutting_down {
            Some(AcquireError::ShuttingDown)
        } else if !self.cfg.purposes.contains_key(&purpose) {
            Some(AcquireError::UnknownPurpose(purpose.clone()))
        } else {
            None
        };
        if let Some(error) = error {
            self.events
                .push_back(PoolEvent::AcquireFailed { acquire: id, error });
            return id;
        }
        let deadline = after(now, timeout.unwrap_or(self.cfg.acquire_timeout));
        tracing::debug!(acquire = id.0, %purpose, "acquire queued");
        self.waiters.push_back(Waiter {
            id,
            purpose,
            since: now,
            deadline,
        });
        self.update(now);
        id
    }

    /// Give a lease back. Its open requests end ([`CallError::Released`] or a cancel).
    ///
    /// [`CallError::Released`]: super::CallError::Released
    pub fn release(&mut self, now: Instant, lease: LeaseId) {
        self.advance(now);
        let Some(slot_id) = self.leases.get(&lease).copied() else {
            self.lost.remove(&lease);
            return;
        };
        let tickets: Vec<Ticket> = self
            .requests
            .iter()
            .filter(|(_, r)| r.lease == lease)
            .map(|(t, _)| *t)
            .collect();
        // Cancelled while the lease still names its connection: requests already sent are
        // cancelled at the gateway too (IB would otherwise keep them open). An answered stream's
        // subscriber hears that it ended with its lease.
        for ticket in tickets {
            let answered = self
                .requests
                .get(&ticket)
                .and_then(|r| r.stream.as_ref())
                .is_some_and(|s| s.answered);
            self.cancel(now, ticket);
            if answered {
                self.events.push_back(PoolEvent::StreamEnded {
                    ticket,
                    error: Some(CallError::Released),
                });
            }
        }
        self.leases.remove(&lease);
        if let Some(slot) = self.slots.get_mut(&slot_id) {
            slot.leases.remove(&lease);
            if slot.leases.is_empty() {
                slot.idle_since = now;
            }
            tracing::debug!(lease = lease.0, client_id = slot.grant.id, "lease released");
        }
        self.update(now);
    }

    pub(super) fn grant_waiters(&mut self, now: Instant) {
        let mut blocked: BTreeSet<Purpose> = BTreeSet::new();
        let mut i = 0;
        while i < self.waiters.len() {
            let purpose = self.waiters[i].purpose.clone();
            if !blocked.contains(&purpose) {
                let free = self
                    .slots
                    .iter()
                    .filter(|(_, s)| {
                        s.purpose == purpose && s.is_ready() && s.leases.len() < s.capacity
                    })
                    .min_by_key(|(_, s)| (s.leases.len(), s.gateway))
                    .map(|(id, _)| *id);
                if let Some(slot_id) = free {
                    if let Some(w) = self.waiters.remove(i) {
                        self.grant(now, w, slot_id);
                    }
                    continue;
                }
                blocked.insert(purpose);
            }
            i += 1;
        }
        for purpose in blocked {
            self.open_for(now, &purpose);
        }
    }

    fn grant(&mut self, now: Instant, w: Waiter, slot_id: SlotId) {
        let lease = LeaseId(self.fresh());
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        slot.leases.insert(lease);
        self.leases.insert(lease, slot_id);
        self.stats.acquired += 1;
        tracing::debug!(
            acquire = w.id.0,
            lease = lease.0,
            client_id = slot.grant.id,
            waited = ?now.saturating_duration_since(w.since),
            "lease granted"
        );
        self.events.push_back(PoolEvent::Acquired {
            acquire: w.id,
            lease,
            client_id: slot.grant.id,
            gateway: slot.gateway,
        });
    }

    /// Open connections for `purpose`'s unserved waiters, within its cap.
    fn open_for(&mut self, now: Instant, purpose: &Purpose) {
        let Some(pc) = self.cfg.purposes.get(purpose).copied() else {
            return;
        };
        let unmet = self
            .waiters
            .iter()
            .filter(|w| &w.purpose == purpose)
            .count();
        let mine = || self.slots.values().filter(|s| &s.purpose == purpose);
        let mut total = mine().count();
        let mut coming: usize = mine()
            .filter(|s| !s.is_ready())
            .map(|s| s.capacity.saturating_sub(s.leases.len()))
            .fold(0, usize::saturating_add);
        while coming < unmet && total < pc.max_connections {
            let wall = self.wall_at(now);
            match self.registry.allocate(purpose, wall) {
                Ok(grant) => {
                    let slot_id = self.fresh();
                    tracing::debug!(client_id = grant.id, %purpose, "opening a connection");
                    self.slots.insert(
                        slot_id,
                        Slot {
                            purpose: purpose.clone(),
                            capacity: pc.sharing.capacity(),
                            grant,
                            conflicts: 0,
                            gateway: 0,
                            link: Link::Waiting { until: now },
                            backoff: Backoff::new(self.cfg.backoff),
                            leases: BTreeSet::new(),
                            idle_since: now,
                            dialed_at: now,
                            offer: Offered::Pinned,
                            ever_ready: false,
                            session_ready: false,
                            sent: BTreeMap::new(),
                            seen_probe: (0, None),
                            next_req_id: self.cfg.connection.first_request_id,
                        },
                    );
                    self.dial(now, slot_id);
                    total += 1;
                    coming = coming.saturating_add(pc.sharing.capacity());
                }
                Err(error) => {
                    tracing::warn!(%purpose, %error, "no client id");
                    if total == 0 {
                        self.fail_waiters(purpose, &AcquireError::ClientId(error));
                    }
                    return;
                }
            }
        }
    }

    pub(super) fn fail_waiters(&mut self, purpose: &Purpose, error: &AcquireError) {
        let (failed, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| &w.purpose == purpose);
        self.waiters = keep.into();
        for w in failed {
            self.events.push_back(PoolEvent::AcquireFailed {
                acquire: w.id,
                error: error.clone(),
            });
        }
    }
}
