//! Metrics: the pool's counters joined with each gateway's and connection's state as of `now`.

use std::time::Instant;

use super::{ConnectionStats, GatewayStats, Link, Pool, PoolStats};
use crate::classify::ErrorClass;

impl Pool {
    /// Metrics as of `now` (reads each gateway's shared pacing book once).
    pub fn stats(&mut self, now: Instant) -> PoolStats {
        // Snapshots prune the pacing windows, which a timer may depend on.
        self.timeout_cache.set(None);
        let mut stats = self.stats.clone();
        stats.leases = self.leases.len();
        stats.waiters = self.waiters.len();
        stats.streams.open = self.open_streams();
        let ledger = &mut *self.ledger;
        stats.gateways = self
            .gateways
            .iter_mut()
            .map(|g| {
                let (pacer, pacing) = g.pacer.snapshot(ledger, now);
                GatewayStats {
                    addr: g.addr.clone(),
                    established: g.established,
                    failed: g.failed,
                    wide_offer: g.wide_offer,
                    version_fallbacks: g.version_fallbacks,
                    breaker: g.breaker.snapshot(now),
                    pacer,
                    pacing,
                }
            })
            .collect();
        stats.connections = self
            .slots
            .values()
            .map(|s| {
                let (state, session) = match &s.link {
                    Link::Dialing { .. } => ("dialing", None),
                    Link::Open { conn, .. } if conn.is_ready() => {
                        ("ready", Some(conn.stats().clone()))
                    }
                    Link::Open { conn, .. } => ("handshaking", Some(conn.stats().clone())),
                    Link::Waiting { .. } => ("waiting", None),
                };
                ConnectionStats {
                    client_id: s.grant.id,
                    purpose: s.purpose.clone(),
                    gateway: s.gateway,
                    state,
                    leases: s.leases.len(),
                    session,
                }
            })
            .collect();
        stats
    }

    pub(super) fn count(&mut self, class: ErrorClass) {
        *self
            .stats
            .errors_by_class
            .entry(format!("{class:?}"))
            .or_default() += 1;
    }
}
