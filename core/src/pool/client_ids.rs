//! Glue to the client-id registry: lease heartbeats, the next id after a 326, a fresh id when a
//! lapsed lease went to someone else, and losing a slot when no id is left.

use std::time::Instant;

use super::{AcquireError, IdRegistryError, Io, Link, Pool, PoolEvent, SlotId};
use crate::connection::ConnectionError;
use crate::deadline::after;

impl Pool {
    /// After a 326: the registry marks the id foreign and leases the next one; dial right away.
    pub(super) fn next_client_id(&mut self, now: Instant, slot_id: SlotId) {
        self.stats.client_id_conflicts += 1;
        let wall = self.wall_at(now);
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        match self
            .registry
            .on_client_id_in_use(&slot.grant, slot.conflicts, wall)
        {
            Ok(grant) => {
                tracing::warn!(
                    refused = slot.grant.id,
                    next = grant.id,
                    "client id in use (326); trying the next id"
                );
                slot.grant = grant;
                slot.conflicts += 1;
                self.dial(now, slot_id);
            }
            Err(error) => {
                tracing::warn!(%error, "no client id left after 326");
                self.lose_slot(slot_id, error);
            }
        }
    }

    /// Remove a slot that has no client id left: its leases are gone (their requests end with
    /// [`CallError::LeaseLost`] and their holders get [`PoolEvent::LeaseLost`]), and so are the
    /// purpose's waiters if no connection of the purpose remains. The id is not released: the
    /// slot no longer holds it.
    ///
    /// [`CallError::LeaseLost`]: super::CallError::LeaseLost
    fn lose_slot(&mut self, slot_id: SlotId, error: IdRegistryError) {
        let Some(slot) = self.slots.remove(&slot_id) else {
            return;
        };
        if let Some(socket) = slot.socket() {
            self.sockets.remove(&socket);
            self.io.push_back(Io::Close { socket });
        }
        let purpose = slot.purpose.clone();
        let client_id = slot.grant.id;
        for lease in slot.leases {
            self.leases.remove(&lease);
            self.lost.insert(lease);
            self.abandon_lease(lease);
            self.events.push_back(PoolEvent::LeaseLost {
                lease,
                client_id,
                error: AcquireError::ClientId(error.clone()),
            });
        }
        if !self.slots.values().any(|s| s.purpose == purpose) {
            self.fail_waiters(&purpose, &AcquireError::ClientId(error));
        }
    }

    /// Heartbeat every connection's registry lease. A lease that lapsed (no heartbeat within the
    /// TTL: the host slept, or the process stalled) is taken again if its id is still free, and
    /// the session carries on. A connection whose id someone else holds now must not use it
    /// another moment: its session closes and it moves to a fresh id ([`Pool::move_to_fresh_id`]).
    /// Store failures (I/O) are only logged; the next heartbeat tries again.
    pub(super) fn renew_leases(&mut self, now: Instant) {
        self.next_heartbeat = after(now, self.cfg.heartbeat_interval);
        let wall = self.wall_at(now);
        let mut taken = Vec::new();
        // First renew everything, so that no id this pool still uses looks free when the
        // connections that lost theirs allocate new ones.
        for (&slot_id, slot) in &mut self.slots {
            let client_id = slot.grant.id;
            match self.registry.heartbeat(&slot.grant, wall) {
                Ok(()) => continue,
                Err(error @ IdRegistryError::Store(_)) => {
                    tracing::warn!(client_id, %error, "lease heartbeat failed; retrying at the next");
                    continue;
                }
                Err(error) => {
                    tracing::debug!(client_id, %error, "lease lapsed; taking the id again");
                }
            }
            match self.registry.reacquire(&slot.grant, wall) {
                Ok(grant) => {
                    tracing::warn!(
                        client_id,
                        "client-id lease had lapsed; took the same id again"
                    );
                    slot.grant = grant;
                }
                Err(error @ IdRegistryError::Store(_)) => {
                    tracing::warn!(client_id, %error, "lease renewal failed; retrying at the next");
                }
                Err(error) => {
                    tracing::warn!(
                        client_id,
                        %error,
                        "client-id lease lapsed and the id is someone else's now; moving to a fresh id"
                    );
                    taken.push(slot_id);
                }
            }
        }
        for slot_id in taken {
            self.move_to_fresh_id(now, slot_id);
        }
    }

    /// The slot's id belongs to someone else now: end its session (its requests go back to the
    /// queue, as after any drop; [`PoolEvent::Disconnected`] if it was ready), lease a fresh id
    /// for the redial, or — none left — lose the slot ([`Pool::lose_slot`]).
    fn move_to_fresh_id(&mut self, now: Instant, slot_id: SlotId) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        match &mut slot.link {
            Link::Open { conn, .. } => {
                conn.close(now);
                self.drive(now, slot_id);
            }
            Link::Dialing { .. } => self.link_failed(now, slot_id, ConnectionError::LocallyClosed),
            Link::Waiting { .. } => {}
        }
        // With no user left the slot was retired by the close.
        let Some(purpose) = self.slots.get(&slot_id).map(|s| s.purpose.clone()) else {
            return;
        };
        let wall = self.wall_at(now);
        match self.registry.allocate(&purpose, wall) {
            Ok(grant) => {
                if let Some(slot) = self.slots.get_mut(&slot_id) {
                    tracing::debug!(
                        lost = slot.grant.id,
                        next = grant.id,
                        "redialing with a fresh client id"
                    );
                    slot.grant = grant;
                    slot.conflicts = 0;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "no client id left for a connection whose id was taken");
                self.lose_slot(slot_id, error);
            }
        }
    }
}
