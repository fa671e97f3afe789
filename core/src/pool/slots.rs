//! Slots, the pool's logical connections: dialing a gateway behind its breaker, the session's
//! socket input, its events, redials with backoff, the version fallback and retirement.

use std::time::Instant;

use super::{CallError, Io, Link, Offered, Pool, PoolEvent, ReqState, SlotId, SocketId, Ticket};
use crate::breaker::{BreakerRejection, BreakerState};
use crate::connection::{Config, Connection, ConnectionError, Event, VersionPolicy};
use crate::deadline::after;
use crate::wire::{version, VersionRange};

impl Pool {
    /// The runtime connected `socket`.
    pub fn handle_dialed(&mut self, now: Instant, socket: SocketId) {
        self.advance(now);
        let Some(&slot_id) = self.sockets.get(&socket) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        if !matches!(slot.link, Link::Dialing { socket: s, .. } if s == socket) {
            return;
        }
        let wide = self
            .gateways
            .get(slot.gateway)
            .is_some_and(|g| g.wide_offer);
        let (offer, versions) = match self.cfg.connection.versions {
            VersionPolicy::Pinned(range) => (Offered::Pinned, VersionPolicy::Pinned(range)),
            VersionPolicy::Auto if wide => (
                Offered::Wide,
                VersionPolicy::Pinned(VersionRange::supported()),
            ),
            VersionPolicy::Auto => (Offered::Modern, VersionPolicy::Auto),
        };
        slot.offer = offer;
        let cfg = Config {
            client_id: slot.grant.id,
            versions,
            first_request_id: slot.next_req_id,
            ..self.cfg.connection.clone()
        };
        tracing::debug!(client_id = slot.grant.id, "socket open; handshaking");
        slot.link = Link::Open {
            socket,
            conn: Box::new(Connection::new(cfg, now)),
        };
        self.drive(now, slot_id);
        self.update(now);
    }

    /// The runtime could not connect `socket`.
    pub fn handle_dial_failed(&mut self, now: Instant, socket: SocketId, reason: String) {
        self.advance(now);
        if let Some(&slot_id) = self.sockets.get(&socket) {
            self.link_failed(now, slot_id, ConnectionError::Transport(reason));
        }
        self.update(now);
    }

    /// Bytes read from `socket`.
    pub fn handle_input(&mut self, now: Instant, socket: SocketId, bytes: &[u8]) {
        self.advance(now);
        if let Some(slot_id) = self.open_conn(socket, |conn| conn.handle_input(now, bytes)) {
            self.drive(now, slot_id);
        }
        self.update(now);
    }

    /// `socket` saw EOF (`cause = None`) or an error.
    pub fn handle_eof(&mut self, now: Instant, socket: SocketId, cause: Option<String>) {
        self.advance(now);
        if let Some(slot_id) = self.open_conn(socket, |conn| conn.handle_eof(now, cause)) {
            self.drive(now, slot_id);
        }
        self.update(now);
    }

    /// The runtime closed `socket` for a typed reason (e.g. [`ConnectionError::WriteTimeout`]):
    /// a loss like [`Pool::handle_eof`], with that reason.
    pub fn handle_socket_error(&mut self, now: Instant, socket: SocketId, reason: ConnectionError) {
        self.advance(now);
        let failed = self.open_conn(socket, |conn| conn.handle_socket_error(now, reason));
        if let Some(slot_id) = failed {
            self.drive(now, slot_id);
        }
        self.update(now);
    }

    fn open_conn(&mut self, socket: SocketId, f: impl FnOnce(&mut Connection)) -> Option<SlotId> {
        let slot_id = *self.sockets.get(&socket)?;
        match &mut self.slots.get_mut(&slot_id)?.link {
            Link::Open { socket: s, conn } if *s == socket => f(conn),
            _ => return None,
        }
        Some(slot_id)
    }

    /// Dial the first gateway whose breaker admits a connect; if none does, wait for the earliest.
    pub(super) fn dial(&mut self, now: Instant, slot_id: SlotId) {
        let mut retry_at = after(now, self.cfg.backoff.base);
        let mut chosen = None;
        for (i, g) in self.gateways.iter_mut().enumerate() {
            match g.breaker.try_acquire(now) {
                Ok(()) => {
                    chosen = Some(i);
                    break;
                }
                Err(BreakerRejection::Open { retry_at: t }) => retry_at = retry_at.min(t),
                Err(_) => {}
            }
        }
        let Some(gateway) = chosen else {
            if let Some(slot) = self.slots.get_mut(&slot_id) {
                tracing::debug!(client_id = slot.grant.id, "every gateway's breaker is open");
                slot.link = Link::Waiting { until: retry_at };
            }
            return;
        };
        self.dial_gateway(now, slot_id, gateway);
    }

    /// Dial `gateway`, whose breaker has admitted the attempt.
    fn dial_gateway(&mut self, now: Instant, slot_id: SlotId, gateway: usize) {
        let socket = SocketId(self.fresh());
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let Some(addr) = self.gateways.get(gateway).map(|g| g.addr.clone()) else {
            return;
        };
        if slot.ever_ready {
            self.stats.reconnects += 1;
        }
        tracing::debug!(client_id = slot.grant.id, %addr, "dialing");
        slot.gateway = gateway;
        slot.dialed_at = now;
        slot.session_ready = false;
        slot.link = Link::Dialing {
            socket,
            deadline: after(now, self.cfg.dial_timeout),
        };
        self.sockets.insert(socket, slot_id);
        self.io.push_back(Io::Dial {
            socket,
            addr,
            client_id: slot.grant.id,
        });
    }

    pub(super) fn slot_timeout(&mut self, now: Instant, slot_id: SlotId) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let due = slot
            .deadline(self.cfg.idle_timeout)
            .is_some_and(|t| now >= t);
        match &mut slot.link {
            Link::Dialing { .. } if due => {
                let after = self.cfg.dial_timeout;
                self.link_failed(
                    now,
                    slot_id,
                    ConnectionError::Transport(format!("connect timed out after {after:?}")),
                );
            }
            Link::Waiting { .. } if due => self.dial(now, slot_id),
            Link::Open { .. } if due => {
                tracing::debug!(client_id = slot.grant.id, "idle; closing");
                self.retire(now, slot_id);
            }
            Link::Open { conn, .. } => {
                conn.handle_timeout(now);
                self.drive(now, slot_id);
            }
            _ => {}
        }
    }

    /// Drain a connection's output into the pool's.
    pub(super) fn drive(&mut self, now: Instant, slot_id: SlotId) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let Link::Open { socket, conn } = &mut slot.link else {
            return;
        };
        while let Some(bytes) = conn.poll_transmit() {
            self.io.push_back(Io::Write {
                socket: *socket,
                bytes,
            });
        }
        let probe = (conn.stats().probes, conn.stats().last_probe_rtt_us);
        if probe.1.is_some() && probe != slot.seen_probe {
            slot.seen_probe = probe;
            self.stats.probe_rtt.record(probe.1.unwrap_or(0));
            // An answered health probe is the further success a half-open breaker waits for:
            // a gateway with one session would otherwise never dial again to close it.
            if let Some(g) = self.gateways.get_mut(slot.gateway) {
                if matches!(g.breaker.state(now), BreakerState::HalfOpen { .. }) {
                    g.breaker.on_success(now);
                }
            }
        }
        let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
        for event in events {
            self.on_event(now, slot_id, event);
        }
    }

    fn on_event(&mut self, now: Instant, slot_id: SlotId, event: Event) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let client_id = slot.grant.id;
        match event {
            Event::Connected { server_version, .. } => {
                if slot.offer == Offered::Wide
                    && server_version >= version::PROTOBUF_REST_MESSAGES_3
                {
                    if let Some(g) = self.gateways.get_mut(slot.gateway) {
                        if g.wide_offer {
                            g.wide_offer = false;
                            tracing::debug!(
                                gateway = %g.addr,
                                server_version,
                                "gateway speaks a modern version again; back to the modern offer"
                            );
                        }
                    }
                }
                slot.ever_ready = true;
                slot.session_ready = true;
                slot.conflicts = 0;
                slot.backoff.reset();
                slot.idle_since = now;
                let latency = now.saturating_duration_since(slot.dialed_at);
                let gateway = slot.gateway;
                if let Some(g) = self.gateways.get_mut(gateway) {
                    g.breaker.on_success(now);
                    g.established += 1;
                }
                self.stats.established += 1;
                self.stats
                    .handshake_latency
                    .record(latency.as_micros() as u64);
                self.events
                    .push_back(PoolEvent::Connected { client_id, gateway });
            }
            Event::Completed { id, result } => {
                if let Some(ticket) = slot.sent.remove(&id) {
                    self.on_completed(now, slot_id, id, ticket, result);
                }
            }
            Event::Stream { id, data } => self.stream_data(slot_id, id, data),
            Event::StreamEnded { id, error } => self.stream_ended(now, slot_id, id, error),
            Event::Notice { class, .. } => self.count(class),
            Event::Connectivity(change) => self
                .events
                .push_back(PoolEvent::Connectivity { client_id, change }),
            Event::Resubscribe => {
                let leases = slot.leases.iter().copied().collect();
                self.events
                    .push_back(PoolEvent::Resubscribe { client_id, leases });
                self.resubscribe_slot(now, slot_id);
            }
            Event::RateLimited => {
                self.stats.rate_limited += 1;
                if let Some(g) = self.gateways.get_mut(slot.gateway) {
                    g.pacer.on_rate_exceeded(now);
                }
            }
            Event::Disconnected { reason } => {
                if matches!(reason, ConnectionError::SleepDetected(_)) {
                    // The leases may have lapsed while the host slept: renew them now.
                    self.next_heartbeat = self.next_heartbeat.min(now);
                }
                self.link_failed(now, slot_id, reason);
            }
        }
    }

    /// A dial or session ended: move on to the next id (326), redial with backoff, or retire.
    pub(super) fn link_failed(&mut self, now: Instant, slot_id: SlotId, reason: ConnectionError) {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        if let Some(socket) = slot.socket() {
            self.sockets.remove(&socket);
            self.io.push_back(Io::Close { socket });
        }
        let gateway = slot.gateway;
        let was_ready = std::mem::take(&mut slot.session_ready);
        if let Link::Open { conn, .. } = &slot.link {
            slot.next_req_id = conn.next_request_id();
        }
        slot.link = Link::Waiting { until: now };
        // Requests paced for this session go back to the queue (the next session may use
        // another gateway and so another pacer).
        let leases = slot.leases.clone();
        let client_id = slot.grant.id;
        let paced: Vec<Ticket> = self
            .requests
            .iter()
            .filter(|(_, r)| leases.contains(&r.lease) && matches!(r.state, ReqState::Paced { .. }))
            .map(|(t, _)| *t)
            .collect();
        paced.into_iter().for_each(|t| self.unreserve(t));
        if self.version_fallback(now, slot_id, &reason) {
            return;
        }
        if let Some(g) = self.gateways.get_mut(gateway) {
            if was_ready {
                self.stats.disconnects += 1;
            } else if matches!(reason, ConnectionError::ClientIdInUse { .. }) {
                g.breaker.on_success(now);
            } else {
                self.stats.failed += 1;
                g.failed += 1;
                g.breaker.on_failure(now);
            }
        }
        if was_ready {
            self.events.push_back(PoolEvent::Disconnected {
                client_id,
                reason: reason.clone(),
            });
        }
        if self.shutting_down {
            return self.retire(now, slot_id);
        }
        if let ConnectionError::ClientIdInUse { .. } = reason {
            return self.next_client_id(now, slot_id);
        }
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return;
        };
        let purpose = slot.purpose.clone();
        if slot.leases.is_empty() && !self.waiters.iter().any(|w| w.purpose == purpose) {
            return self.retire(now, slot_id);
        }
        let delay = slot
            .backoff
            .next_delay(&mut self.rng)
            .unwrap_or_else(|| slot.backoff.ceiling());
        tracing::warn!(client_id, %reason, ?delay, "redialing after backoff");
        slot.link = Link::Waiting {
            until: after(now, delay),
        };
    }

    /// Under [`VersionPolicy::Auto`], a session that offered the modern range and ended before
    /// its hello could be used — the gateway answered a version below the offer, closed the
    /// socket first, or never finished the handshake (a gateway that stays silent on an offer it
    /// does not know; a slow modern one merely costs one wide session, after which a reported
    /// version ≥ 213 restores the modern offer) — marks its gateway as needing the wide offer and
    /// redials it at once: no
    /// backoff, no failure counted, and the breaker admission of the first attempt carries over
    /// (the wide attempt reports the outcome). Returns whether it did.
    fn version_fallback(
        &mut self,
        now: Instant,
        slot_id: SlotId,
        reason: &ConnectionError,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(&slot_id) else {
            return false;
        };
        let older = matches!(
            reason,
            ConnectionError::VersionBelowOffer { .. }
                | ConnectionError::ClosedBeforeHello { .. }
                | ConnectionError::HandshakeTimeout(_)
        );
        if slot.offer != Offered::Modern || !older {
            return false;
        }
        slot.offer = Offered::Wide;
        let (gateway, client_id) = (slot.gateway, slot.grant.id);
        let Some(g) = self.gateways.get_mut(gateway) else {
            return false;
        };
        g.wide_offer = true;
        tracing::debug!(
            client_id,
            gateway = %g.addr,
            %reason,
            offer = %VersionRange::supported(),
            "gateway older than the modern offer; redialing at once with the wide offer"
        );
        let users =
            !slot.leases.is_empty() || self.waiters.iter().any(|w| w.purpose == slot.purpose);
        if users && !self.shutting_down {
            // The handshake latency keeps counting from the first dial: the fallback is part of
            // what the caller waits for.
            let dialed_at = slot.dialed_at;
            g.version_fallbacks += 1;
            self.dial_gateway(now, slot_id, gateway);
            if let Some(slot) = self.slots.get_mut(&slot_id) {
                slot.dialed_at = dialed_at;
            }
            return true;
        }
        // Nobody waits for this session; the gateway stays marked for the next one. A gateway
        // that answered is alive; an unexplained close stays a failure (no wide retry shows
        // otherwise) and takes the usual path.
        if !matches!(reason, ConnectionError::VersionBelowOffer { .. }) {
            return false;
        }
        g.breaker.on_success(now);
        self.retire(now, slot_id);
        true
    }

    /// Remove a slot: close its session and socket, release its id.
    pub(super) fn retire(&mut self, now: Instant, slot_id: SlotId) {
        let Some(mut slot) = self.slots.remove(&slot_id) else {
            return;
        };
        if let Link::Open { conn, .. } = &mut slot.link {
            conn.close(now);
            let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
            for event in events {
                if let Event::Completed { id, result } = event {
                    if let Some(ticket) = slot.sent.remove(&id) {
                        // A request still in flight (one IB never answered, say) gives its
                        // pacing slot back as it ends here, as in `on_completed`; `unreserve`
                        // only covers slots not yet used.
                        let state = self.requests.get(&ticket).map(|r| r.state);
                        if let Some(ReqState::Sent { gateway, res }) = state {
                            if let Some(g) = self.gateways.get_mut(gateway) {
                                g.pacer.complete(&mut *self.ledger, now, res);
                            }
                        }
                        self.unreserve(ticket);
                        self.finish(ticket, result.map_err(CallError::from));
                    }
                }
            }
        }
        if let Some(socket) = slot.socket() {
            self.sockets.remove(&socket);
            self.io.push_back(Io::Close { socket });
        }
        for lease in &slot.leases {
            self.leases.remove(lease);
        }
        let wall = self.wall_at(now);
        match self.registry.release(&slot.grant, wall) {
            Ok(()) => tracing::debug!(client_id = slot.grant.id, "client id released"),
            Err(e) => tracing::warn!(client_id = slot.grant.id, error = %e, "release failed"),
        }
    }
}
