//! The last notable things that happened to the pool, for the dashboard: sessions connected and
//! lost, IB's connectivity notices (1100/1101/1102, …), pacing waits, and what only the pool's
//! counters show (326 client-id conflicts, 162 violations, 100 rate limits, breakers opening).
//!
//! Fed by the pool's notice stream ([`EventLog::notice`]) and by each stats sample
//! ([`EventLog::counters`]); at most [`EVENTS_KEPT`] events, repeats of one kind merged into one
//! line with a count, so a busy backfill's pacing waits cannot push the rest out. Pure: the
//! caller passes the time.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use ibconn_core::classify::Connectivity;
use ibconn_core::client_id::ClientId;
use ibconn_core::pacer::PacingRules;
use ibconn_core::pool::{PoolNotice, PoolStats};
use serde::Serialize;

/// Events kept (the newest).
pub(crate) const EVENTS_KEPT: usize = 100;

/// A repeat of the newest event's kind (same gateway and client id) within this many ms is
/// counted on it instead of added.
const MERGE_WITHIN_MS: u64 = 60_000;

/// How serious an event is, for the page's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Level {
    /// Normal operation.
    Info,
    /// Recovered or recoverable.
    Warn,
    /// Needs attention.
    Error,
}

/// One line of the event list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Event {
    /// When (Unix ms) it last happened.
    pub(crate) at_ms: u64,
    /// When (Unix ms) it first happened, for merged repeats.
    pub(crate) first_ms: u64,
    /// Stable kind: `connected`, `lost`, `connectivity`, `lease_lost`, `pacing_wait`,
    /// `pacing_store`, `client_id_conflict`, `pacing_violation`, `rate_limited`, `breaker_open`,
    /// `missed`, `resubscribe`.
    pub(crate) kind: &'static str,
    /// IB's code where there is one (1100, 326, 162, …).
    pub(crate) code: Option<i32>,
    /// Severity.
    pub(crate) level: Level,
    /// The gateway, when known.
    pub(crate) gateway: Option<String>,
    /// The session's client id, when known.
    pub(crate) client_id: Option<ClientId>,
    /// What happened, in words.
    pub(crate) text: String,
    /// How many times (merged repeats).
    pub(crate) count: u64,
}

/// Counters whose increase is an event, as of the last sample.
#[derive(Debug, Clone, Default)]
struct Seen {
    conflicts: u64,
    violations: u64,
    rate_limited: u64,
    breaker_opened: BTreeMap<String, u64>,
}

/// The bounded event list and the sessions' ready times.
#[derive(Debug)]
pub(crate) struct EventLog {
    events: VecDeque<Event>,
    seen: Seen,
    gateways: Vec<String>,
    rules: PacingRules,
    /// Each ready session's time (Unix ms) it became ready and its gateway, by client id.
    ready_since: BTreeMap<ClientId, (u64, usize)>,
}

impl EventLog {
    /// An empty log for a pool on `gateways` (by index) paced by `rules`.
    pub(crate) fn new(gateways: Vec<String>, rules: PacingRules) -> Self {
        Self {
            events: VecDeque::with_capacity(EVENTS_KEPT),
            seen: Seen::default(),
            gateways,
            rules,
            ready_since: BTreeMap::new(),
        }
    }

    /// The events, newest first.
    pub(crate) fn newest_first(&self) -> Vec<Event> {
        self.events.iter().rev().cloned().collect()
    }

    /// When (Unix ms) the ready session `client_id` became ready, as this process saw it.
    pub(crate) fn ready_since(&self, client_id: ClientId) -> Option<u64> {
        self.ready_since.get(&client_id).map(|(at, _)| *at)
    }

    fn gateway(&self, index: usize) -> Option<String> {
        self.gateways.get(index).cloned()
    }

    /// Add an event at `now_ms`, merged into the newest one when it repeats it.
    fn add(&mut self, now_ms: u64, event: Event) {
        if let Some(last) = self.events.back_mut() {
            if last.kind == event.kind
                && last.code == event.code
                && last.gateway == event.gateway
                && last.client_id == event.client_id
                && now_ms.saturating_sub(last.at_ms) <= MERGE_WITHIN_MS
            {
                last.count = last.count.saturating_add(event.count);
                last.at_ms = now_ms.max(last.at_ms);
                last.text = event.text;
                return;
            }
        }
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at_ms: now_ms,
            first_ms: now_ms,
            ..event
        });
    }

    /// Record a pool notice seen at `now_ms` (`now`: the same moment on the monotonic clock,
    /// for a pacing wait's `until`).
    pub(crate) fn notice(&mut self, now_ms: u64, now: Instant, notice: &PoolNotice) {
        let event = |kind, code, level, gateway, client_id, text| Event {
            at_ms: now_ms,
            first_ms: now_ms,
            kind,
            code,
            level,
            gateway,
            client_id,
            text,
            count: 1,
        };
        let e = match notice {
            PoolNotice::Connected { client_id, gateway } => {
                self.ready_since.insert(*client_id, (now_ms, *gateway));
                event(
                    "connected",
                    None,
                    Level::Info,
                    self.gateway(*gateway),
                    Some(*client_id),
                    format!("session ready (client id {client_id})"),
                )
            }
            PoolNotice::Disconnected { client_id, reason } => {
                let gateway = self.ready_since.remove(client_id);
                event(
                    "lost",
                    None,
                    Level::Warn,
                    gateway.and_then(|(_, g)| self.gateway(g)),
                    Some(*client_id),
                    format!("session lost: {reason}"),
                )
            }
            PoolNotice::Connectivity { client_id, change } => {
                let (code, level, text) = connectivity(*change);
                event(
                    "connectivity",
                    Some(code),
                    level,
                    None,
                    Some(*client_id),
                    text.to_owned(),
                )
            }
            PoolNotice::Resubscribe { client_id, leases } => event(
                "resubscribe",
                None,
                Level::Warn,
                None,
                Some(*client_id),
                format!("{} lease(s) must request their streams again", leases.len()),
            ),
            PoolNotice::LeaseLost {
                client_id, error, ..
            } => event(
                "lease_lost",
                None,
                Level::Error,
                None,
                Some(*client_id),
                format!("lease lost: {error}"),
            ),
            PoolNotice::PacingStore { gateway, error } => match error {
                Some(e) => event(
                    "pacing_store",
                    None,
                    Level::Error,
                    self.gateway(*gateway),
                    None,
                    format!("pacing store failing, requests wait: {e}"),
                ),
                None => event(
                    "pacing_store",
                    None,
                    Level::Info,
                    self.gateway(*gateway),
                    None,
                    "pacing store answers again".to_owned(),
                ),
            },
            PoolNotice::PacingWait {
                gateway,
                until,
                held_by,
            } => {
                let wait = until.saturating_duration_since(now);
                let why = held_by.map_or_else(
                    || "a slot another process holds".to_owned(),
                    |h| h.describe(&self.rules),
                );
                event(
                    "pacing_wait",
                    None,
                    Level::Info,
                    self.gateway(*gateway),
                    None,
                    format!("a request waits {:.1} s for {why}", wait.as_secs_f64()),
                )
            }
            PoolNotice::Missed { count } => event(
                "missed",
                None,
                Level::Warn,
                None,
                None,
                format!("{count} notice(s) not seen (the dashboard fell behind)"),
            ),
            _ => return,
        };
        self.add(now_ms, e);
    }

    /// Record what the counters of a sample at `now_ms` show happened since the last one.
    pub(crate) fn counters(&mut self, now_ms: u64, stats: &PoolStats) {
        let rise = |kind, code, level, new: u64, old: &mut u64, text: &str| {
            let n = new.saturating_sub(*old);
            *old = new.max(*old);
            (n > 0).then(|| Event {
                at_ms: now_ms,
                first_ms: now_ms,
                kind,
                code: Some(code),
                level,
                gateway: None,
                client_id: None,
                text: text.to_owned(),
                count: n,
            })
        };
        let found = [
            rise(
                "client_id_conflict",
                326,
                Level::Warn,
                stats.client_id_conflicts,
                &mut self.seen.conflicts,
                "client id already in use (326): the pool moved to another id",
            ),
            rise(
                "pacing_violation",
                162,
                Level::Error,
                stats.pacing_violations,
                &mut self.seen.violations,
                "IB reported a pacing violation (162): requests pause",
            ),
            rise(
                "rate_limited",
                100,
                Level::Error,
                stats.rate_limited,
                &mut self.seen.rate_limited,
                "IB reported too many messages per second (100)",
            ),
        ];
        for e in found.into_iter().flatten() {
            self.add(now_ms, e);
        }
        for g in &stats.gateways {
            let seen = self.seen.breaker_opened.entry(g.addr.clone()).or_default();
            let n = g.breaker.times_opened.saturating_sub(*seen);
            *seen = g.breaker.times_opened.max(*seen);
            if n > 0 {
                let e = Event {
                    at_ms: now_ms,
                    first_ms: now_ms,
                    kind: "breaker_open",
                    code: None,
                    level: Level::Error,
                    gateway: Some(g.addr.clone()),
                    client_id: None,
                    text: "circuit breaker opened after repeated dial failures".to_owned(),
                    count: n,
                };
                self.add(now_ms, e);
            }
        }
    }
}

/// IB's code, severity and words for a connectivity change.
fn connectivity(change: Connectivity) -> (i32, Level, &'static str) {
    match change {
        Connectivity::Lost => (1100, Level::Error, "TWS lost its link to IB (1100)"),
        Connectivity::RestoredDataLost => (
            1101,
            Level::Warn,
            "link to IB restored, market data lost (1101)",
        ),
        Connectivity::RestoredDataKept => (
            1102,
            Level::Info,
            "link to IB restored, market data kept (1102)",
        ),
        Connectivity::SocketPortReset => (1300, Level::Warn, "TWS reset its socket port (1300)"),
        Connectivity::ServerLinkBroken => (
            2110,
            Level::Warn,
            "link between TWS and IB's server broken (2110)",
        ),
        Connectivity::NotConnected => (504, Level::Error, "not connected (502/504)"),
        Connectivity::SocketBroken => (509, Level::Error, "socket broken (505/507/509)"),
        _ => (0, Level::Warn, "connectivity changed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_765_324_800_000;

    fn log() -> EventLog {
        EventLog::new(vec!["gw:4002".to_owned()], PacingRules::default())
    }

    #[test]
    fn sessions_carry_their_ready_time_until_lost() {
        let mut l = log();
        let now = Instant::now();
        l.notice(
            T0,
            now,
            &PoolNotice::Connected {
                client_id: 7,
                gateway: 0,
            },
        );
        assert_eq!(l.ready_since(7), Some(T0));
        l.notice(
            T0 + 5,
            now,
            &PoolNotice::Connectivity {
                client_id: 7,
                change: Connectivity::Lost,
            },
        );
        l.notice(
            T0 + 9,
            now,
            &PoolNotice::Disconnected {
                client_id: 7,
                reason: ibconn_core::connection::ConnectionError::PeerClosed,
            },
        );
        assert_eq!(l.ready_since(7), None);
        let e = l.newest_first();
        assert_eq!(
            e.iter().map(|e| e.kind).collect::<Vec<_>>(),
            ["lost", "connectivity", "connected"]
        );
        assert_eq!(e[1].code, Some(1100));
        assert_eq!(e[1].level, Level::Error);
        assert_eq!(e[2].gateway.as_deref(), Some("gw:4002"));
        // The loss names the gateway the session was on.
        assert_eq!(e[0].gateway.as_deref(), Some("gw:4002"));
        assert_eq!(e[2].client_id, Some(7));
    }

    #[test]
    fn repeats_merge_with_a_count_and_the_list_is_bounded() {
        let mut l = log();
        let now = Instant::now();
        let wait = PoolNotice::PacingWait {
            gateway: 0,
            until: now + std::time::Duration::from_millis(1500),
            held_by: Some(ibconn_core::pacer::Hold::HistoricalWindow),
        };
        for i in 0..50 {
            l.notice(T0 + i * 100, now, &wait);
        }
        let e = l.newest_first();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].count, 50);
        assert_eq!((e[0].first_ms, e[0].at_ms), (T0, T0 + 4_900));
        assert!(e[0].text.contains("waits 1.5 s"), "{}", e[0].text);
        assert!(
            e[0].text.contains("60 historical requests"),
            "{}",
            e[0].text
        );
        // A minute later it is a new line.
        l.notice(T0 + 4_900 + MERGE_WITHIN_MS + 1, now, &wait);
        assert_eq!(l.newest_first().len(), 2);
        // Distinct events never exceed the bound; the oldest go first.
        for i in 0..(3 * EVENTS_KEPT as i32) {
            l.notice(
                T0 + 100_000,
                now,
                &PoolNotice::Connected {
                    client_id: i,
                    gateway: 0,
                },
            );
        }
        let e = l.newest_first();
        assert_eq!(e.len(), EVENTS_KEPT);
        assert_eq!(e[0].client_id, Some(3 * EVENTS_KEPT as i32 - 1));
        assert_eq!(e[EVENTS_KEPT - 1].client_id, Some(2 * EVENTS_KEPT as i32));
    }

    #[test]
    fn counter_rises_become_events_once() {
        let mut l = log();
        let mut stats = PoolStats::default();
        l.counters(T0, &stats);
        assert!(l.newest_first().is_empty());
        stats.client_id_conflicts = 2;
        stats.pacing_violations = 1;
        l.counters(T0 + 10_000, &stats);
        let e = l.newest_first();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].code, e[0].count), (Some(162), 1));
        assert_eq!((e[1].code, e[1].count), (Some(326), 2));
        // No rise, no new event.
        l.counters(T0 + 20_000, &stats);
        assert_eq!(l.newest_first().len(), 2);
    }
}
