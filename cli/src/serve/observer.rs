//! What `serve` records about its pool beyond the pool's own snapshot, for the dashboard: the
//! history rings ([`super::history`]), the event list ([`super::events`]), each gateway's server
//! version ([`super::version`]) and the client-id registry ([`super::leases`]). Two tasks feed
//! it: one reads the pool's notices, one samples the pool's stats every interval; both end when
//! the pool shuts down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ibconn_core::pacer::PacingRules;
use ibconn_core::pool::PoolNotice;
use ibconn_tokio::{Events, Pool};
use tokio::time::{Instant, MissedTickBehavior};

use super::events::EventLog;
use super::history::{History, Sample};
use super::leases::Leases;
use super::version::server_version;

/// Queue of notices between the pool and the event task: a burst of pacing waits beyond it is
/// reported as one `missed` event rather than slowing the pool.
pub(crate) const NOTICE_QUEUE: usize = 256;

/// The shortest sampling interval (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// How long reading a gateway's server version may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(3);

/// A gateway's server version as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Version {
    /// Being read.
    Reading,
    /// The version the gateway answered.
    Known(i32),
    /// Why it could not be read.
    Failed(String),
}

/// The records, shared by the tasks and the handlers.
#[derive(Debug)]
pub(crate) struct Observer {
    /// The sampling interval.
    pub(crate) interval: Duration,
    /// The pacing rules in force (limits for the gauges, words for pacing waits).
    pub(crate) rules: PacingRules,
    /// The gateways by pool index.
    pub(crate) gateways: Vec<String>,
    history: Mutex<History>,
    events: Mutex<EventLog>,
    versions: Mutex<BTreeMap<String, Version>>,
    /// The client-id registry.
    pub(crate) leases: Leases,
}

/// Unix time now, milliseconds (0 for a clock before 1970).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A lock whose holder panicked still guards plain data: use it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Observer {
    /// Empty records for a pool on `gateways` paced by `rules`, sampled every `interval`.
    pub(crate) fn new(
        gateways: Vec<String>,
        rules: PacingRules,
        interval: Duration,
        leases: Leases,
    ) -> Self {
        let interval = interval.max(MIN_INTERVAL);
        Self {
            interval,
            history: Mutex::new(History::new(interval)),
            events: Mutex::new(EventLog::new(gateways.clone(), rules.clone())),
            versions: Mutex::new(BTreeMap::new()),
            gateways,
            rules,
            leases,
        }
    }

    /// The history rings.
    pub(crate) fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    /// The event list.
    pub(crate) fn events(&self) -> MutexGuard<'_, EventLog> {
        lock(&self.events)
    }

    /// `gateway`'s server version, if read.
    pub(crate) fn version(&self, gateway: &str) -> Option<Version> {
        lock(&self.versions).get(gateway).cloned()
    }

    /// Start the two tasks on `pool`; `notices` must be subscribed before the pool's first
    /// acquire, so the first session's `connected` is seen.
    pub(crate) fn start(self: &Arc<Self>, pool: &Pool, notices: Events) {
        tokio::spawn(Arc::clone(self).read_notices(notices));
        tokio::spawn(Arc::clone(self).sample(pool.clone()));
    }

    async fn read_notices(self: Arc<Self>, mut notices: Events) {
        while let Some(notice) = notices.recv().await {
            tracing::debug!(?notice, "pool notice");
            self.events()
                .notice(unix_ms(), std::time::Instant::now(), &notice);
            if let PoolNotice::Connected { gateway, .. } = notice {
                if let Some(addr) = self.gateways.get(gateway) {
                    self.read_version(addr.clone());
                }
            }
        }
        tracing::debug!("pool notices ended");
    }

    /// Read `addr`'s server version in the background (a session just connected: the gateway is
    /// up, and may have been upgraded since the last read).
    fn read_version(self: &Arc<Self>, addr: String) {
        {
            let mut versions = lock(&self.versions);
            if versions.get(&addr) == Some(&Version::Reading) {
                return;
            }
            versions.insert(addr.clone(), Version::Reading);
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let v = match server_version(&addr, VERSION_TIMEOUT).await {
                Ok(v) => {
                    tracing::debug!(gateway = %addr, server_version = v, "gateway version read");
                    Version::Known(v)
                }
                Err(e) => {
                    tracing::warn!(gateway = %addr, error = %e, "cannot read the gateway's version");
                    Version::Failed(e.to_string())
                }
            };
            lock(&this.versions).insert(addr, v);
        });
    }

    async fn sample(self: Arc<Self>, pool: Pool) {
        let mut tick = tokio::time::interval_at(Instant::now(), self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(stats) = pool.stats().await else {
                tracing::debug!("pool gone; history sampling stops");
                return;
            };
            let now = unix_ms();
            self.history().push(now, Sample::of(&stats, now));
            self.events().counters(now, &stats);
        }
    }
}
