//! Client-id registry: crash-safe leases on IB client ids, shared by every process on a host.
//!
//! IB Gateway accepts one connection per client id; a second one gets error 326 and the socket is
//! closed. Processes that crash leave ids "taken" in naive registries until someone resets them, and
//! processes that pick ids ad hoc collide. Here every id in use is a [`Lease`]: it names its
//! [`Holder`] (process id + process start time + boot id), carries a heartbeat and a TTL, and is
//! reclaimed when the TTL expires or the holder is gone (checked by an injected liveness function).
//! IB stays the final arbiter: a 326 marks the id *foreign* for a cool-down and the caller moves on to
//! the next id, a bounded number of times.
//!
//! This module is pure: [`RegistryState`] is plain serde data with a schema version and every
//! operation takes `now` as [`UnixMillis`]. Wall-clock milliseconds (not `Instant`) because leases
//! must be comparable across processes. Persisting the state is the job of the `file-store` feature
//! ([`store::FileStore`]), the only I/O code in this crate.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "file-store")]
pub mod liveness;
#[cfg(feature = "file-store")]
pub mod store;

/// An IB client id (the `clientId` sent in `startApi`).
pub type ClientId = i32;

/// Version of the serialized [`RegistryState`] layout this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Wall-clock time as milliseconds since the Unix epoch, passed in by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The wall-clock time `t` (which the caller read: the core reads no clock). Times before
    /// the epoch are 0, times past `u64::MAX` ms saturate.
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        Self(
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Whole seconds since the epoch.
    pub fn as_unix_secs(self) -> i64 {
        i64::try_from(self.0 / 1_000).unwrap_or(i64::MAX)
    }

    /// Milliseconds since the epoch, as a signed count (the sim's and IB's clocks use `i64`).
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

/// What a connection is for; each purpose draws ids from its own range so ids say who owns them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Purpose {
    /// Long-lived API/service connections (default ids 1000–1999).
    Api,
    /// Historical backfill workers (default ids 2000–2999).
    Backfill,
    /// Streaming market-data connections (default ids 3000–3999).
    Streaming,
    /// Symbol / contract validation (default ids 4000–4999).
    Validation,
    /// Health probes (default ids 5000–5999).
    Health,
    /// Short-lived command-line tools (default ids 6000–6999).
    Cli,
    /// A user-defined purpose; needs a range in [`RegistryConfig::ranges`].
    Custom(String),
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Api => "api",
            Self::Backfill => "backfill",
            Self::Streaming => "streaming",
            Self::Validation => "validation",
            Self::Health => "health",
            Self::Cli => "cli",
            Self::Custom(name) => name,
        })
    }
}

impl From<String> for Purpose {
    fn from(name: String) -> Self {
        match name.as_str() {
            "api" => Self::Api,
            "backfill" => Self::Backfill,
            "streaming" => Self::Streaming,
            "validation" => Self::Validation,
            "health" => Self::Health,
            "cli" => Self::Cli,
            _ => Self::Custom(name),
        }
    }
}

impl From<Purpose> for String {
    fn from(purpose: Purpose) -> Self {
        purpose.to_string()
    }
}

impl FromStr for Purpose {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(s.to_owned()))
    }
}

/// An inclusive range of client ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// Lowest id.
    pub first: ClientId,
    /// Highest id (inclusive).
    pub last: ClientId,
}

impl IdRange {
    /// The range `first..=last`.
    pub const fn new(first: ClientId, last: ClientId) -> Self {
        Self { first, last }
    }
}

/// Registry policy. Not persisted: every process passes its own (ranges should agree; if they do not,
/// ids are still never double-leased, because leases are keyed by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryConfig {
    /// Id range per purpose. Defaults: api 1000–1999, backfill 2000–2999, streaming 3000–3999,
    /// validation 4000–4999, health 5000–5999, cli 6000–6999 (all clear of the small ids people
    /// type by hand, and of 0, which IB treats specially for manual orders).
    pub ranges: BTreeMap<Purpose, IdRange>,
    /// Lease lifetime without a heartbeat (default 60 s; heartbeat every ≤ TTL/3).
    pub lease_ttl: Duration,
    /// How long an id stays foreign after a 326 (default 5 min; IB can hold a dead session's id).
    pub foreign_cooldown: Duration,
    /// Maximum consecutive 326 conflicts for one connect before giving up (default 5).
    pub max_conflict_attempts: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        let ranges = [
            (Purpose::Api, 1000),
            (Purpose::Backfill, 2000),
            (Purpose::Streaming, 3000),
            (Purpose::Validation, 4000),
            (Purpose::Health, 5000),
            (Purpose::Cli, 6000),
        ]
        .into_iter()
        .map(|(purpose, first)| (purpose, IdRange::new(first, first + 999)))
        .collect();
        Self {
            ranges,
            lease_ttl: Duration::from_secs(60),
            foreign_cooldown: Duration::from_secs(300),
            max_conflict_attempts: 5,
        }
    }
}

/// Who holds a lease: enough to tell, from another process, whether the holder still runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder {
    /// OS process id.
    pub pid: u32,
    /// Process start time (Linux: clock ticks since boot, `/proc/<pid>/stat` field 22), to detect pid reuse.
    pub start_time: Option<u64>,
    /// Kernel boot id (Linux: `/proc/sys/kernel/random/boot_id`); a different boot means the holder is gone.
    pub boot_id: Option<String>,
    /// PID namespace (Linux: target of `/proc/self/ns/pid`); pids from another namespace cannot be checked.
    pub pid_namespace: Option<String>,
    /// Free-form description for humans (e.g. `"backfill worker 3"`).
    pub label: Option<String>,
}

impl Holder {
    /// A holder identified only by its pid (liveness can then only say "unknown" or "gone").
    pub const fn from_pid(pid: u32) -> Self {
        Self {
            pid,
            start_time: None,
            boot_id: None,
            pid_namespace: None,
            label: None,
        }
    }
}

/// Answer of a liveness check for a lease holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Liveness {
    /// The holder process runs.
    Alive,
    /// The holder process is gone (exited, zombie, pid reused, or previous boot).
    Dead,
    /// Cannot tell; only the TTL decides.
    Unknown,
}

/// A liveness check that never knows (leases then end only by TTL or release).
pub fn ttl_only(_: &Holder) -> Liveness {
    Liveness::Unknown
}

/// One leased id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Why it was taken.
    pub purpose: Purpose,
    /// Who holds it.
    pub holder: Holder,
    /// When it was granted.
    pub acquired_at: UnixMillis,
    /// Last heartbeat (initially `acquired_at`).
    pub heartbeat_at: UnixMillis,
    /// Lifetime after the last heartbeat, in milliseconds.
    pub ttl_ms: u64,
    /// Unique per grant; a stale holder cannot release or renew a re-granted id.
    pub generation: u64,
}

impl Lease {
    /// Whether the TTL has run out at `now`.
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        now.0 >= self.heartbeat_at.0.saturating_add(self.ttl_ms)
    }
}

/// An id marked as used outside the registry (the gateway said 326).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignMark {
    /// When the conflict was seen.
    pub since: UnixMillis,
    /// The id becomes allocatable again at this time.
    pub until: UnixMillis,
}

/// What a caller holds after a successful allocation; pass it back to release or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The client id to connect with.
    pub id: ClientId,
    /// The lease generation (guards against releasing someone else's lease).
    pub generation: u64,
    /// The purpose it was taken for.
    pub purpose: Purpose,
}

/// Why a lease disappeared without being released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReclaimReason {
    /// No heartbeat within the TTL.
    Expired,
    /// The liveness check says the holder is gone.
    HolderGone,
}

/// A lease reclaimed by [`RegistryState::reclaim_stale`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclaimed {
    /// The freed id.
    pub id: ClientId,
    /// The lease that was dropped.
    pub lease: Lease,
    /// Why.
    pub reason: ReclaimReason,
}

/// Registry failures (all are about ids or leases, never about I/O).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The purpose has no configured id range.
    #[error("no client-id range configured for purpose {purpose}")]
    NoRange {
        /// The purpose.
        purpose: Purpose,
    },
    /// Every id in the purpose's range is leased or foreign.
    #[error("client-id range {first}..={last} for purpose {purpose} is exhausted")]
    RangeExhausted {
        /// The purpose.
        purpose: Purpose,
        /// Range start.
        first: ClientId,
        /// Range end (inclusive).
        last: ClientId,
    },
    /// The grant no longer matches a lease (released, reclaimed after expiry, or re-granted).
    #[error("client id {id} is not held by this grant (released, expired or reclaimed)")]
    NotHeld {
        /// The id.
        id: ClientId,
    },
    /// The gateway rejected too many ids in a row with 326.
    #[error("gave up after {attempts} client-id conflicts (error 326) for purpose {purpose}")]
    TooManyConflicts {
        /// The purpose.
        purpose: Purpose,
        /// Conflicts seen.
        attempts: u32,
    },
}

/// The whole registry: leases and foreign marks, serde-serializable with a schema version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryState {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Next lease generation to hand out.
    pub next_generation: u64,
    /// Live (or not yet reclaimed) leases by id.
    pub leases: BTreeMap<ClientId, Lease>,
    /// Ids recently rejected by the gateway (326), by id.
    pub foreign: BTreeMap<ClientId, ForeignMark>,
}

impl Default for RegistryState {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            next_generation: 1,
            leases: BTreeMap::new(),
            foreign: BTreeMap::new(),
        }
    }
}

impl RegistryState {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops leases whose TTL expired or whose holder is gone, and foreign marks whose cool-down ended.
    pub fn reclaim_stale(
        &mut self,
        now: UnixMillis,
        liveness: &dyn Fn(&Holder) -> Liveness,
    ) -> Vec<Reclaimed> {
        self.foreign.retain(|_, mark| now < mark.until);
        let mut reclaimed = Vec::new();
        self.leases.retain(|id, lease| {
            let reason = if lease.is_expired(now) {
                Some(ReclaimReason::Expired)
            } else if liveness(&lease.holder) == Liveness::Dead {
                Some(ReclaimReason::HolderGone)
            } else {
                None
            };
            match reason {
                Some(reason) => {
                    reclaimed.push(Reclaimed {
                        id: *id,
                        lease: lease.clone(),
                        reason,
                    });
                    false
                }
                None => true,
            }
        });
        reclaimed
    }

    /// Leases the lowest id in the purpose's range that is neither leased nor foreign (after reclaiming
    /// stale leases).
    pub fn allocate(
        &mut self,
        config: &RegistryConfig,
        purpose: &Purpose,
        holder: &Holder,
        now: UnixMillis,
        liveness: &dyn Fn(&Holder) -> Liveness,
    ) -> Result<Grant, RegistryError> {
        let range = *config
            .ranges
            .get(purpose)
            .ok_or_else(|| RegistryError::NoRange {
                purpose: purpose.clone(),
            })?;
        self.reclaim_stale(now, liveness);
        let id = (range.first..=range.last)
            .find(|id| !self.leases.contains_key(id) && !self.foreign.contains_key(id))
            .ok_or_else(|| RegistryError::RangeExhausted {
                purpose: purpose.clone(),
                first: range.first,
                last: range.last,
            })?;
        Ok(self.grant(config, id, purpose, holder, now))
    }

    /// Whether `grant` still matches a lease in the registry.
    pub fn holds(&self, grant: &Grant) -> bool {
        self.leases
            .get(&grant.id)
            .is_some_and(|lease| lease.generation == grant.generation)
    }

    /// Gives the id back.
    pub fn release(&mut self, grant: &Grant) -> Result<(), RegistryError> {
        if self.holds(grant) {
            self.leases.remove(&grant.id);
            Ok(())
        } else {
            Err(RegistryError::NotHeld { id: grant.id })
        }
    }

    /// Renews the lease's TTL from `now`. Fails if the lease was lost (then stop using the id).
    pub fn heartbeat(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), RegistryError> {
        match self.leases.get_mut(&grant.id) {
            Some(lease) if lease.generation == grant.generation && !lease.is_expired(now) => {
                lease.heartbeat_at = lease.heartbeat_at.max(now);
                Ok(())
            }
            _ => Err(RegistryError::NotHeld { id: grant.id }),
        }
    }

    /// Takes `grant`'s id again after its lease lapsed (TTL ran out, e.g. over a host sleep):
    /// renews the lease if `grant` still holds it; otherwise, if the id is neither leased (after
    /// reclaiming stale leases) nor foreign, leases it anew for `holder` with a fresh generation.
    /// Fails with [`RegistryError::NotHeld`] when someone else holds the id now (then stop using it).
    pub fn reacquire(
        &mut self,
        config: &RegistryConfig,
        grant: &Grant,
        holder: &Holder,
        now: UnixMillis,
        liveness: &dyn Fn(&Holder) -> Liveness,
    ) -> Result<Grant, RegistryError> {
        if self.heartbeat(grant, now).is_ok() {
            return Ok(grant.clone());
        }
        self.reclaim_stale(now, liveness);
        if self.leases.contains_key(&grant.id) || self.foreign.contains_key(&grant.id) {
            return Err(RegistryError::NotHeld { id: grant.id });
        }
        Ok(self.grant(config, grant.id, &grant.purpose, holder, now))
    }

    /// Lease `id` to `holder` from `now` under a fresh generation.
    fn grant(
        &mut self,
        config: &RegistryConfig,
        id: ClientId,
        purpose: &Purpose,
        holder: &Holder,
        now: UnixMillis,
    ) -> Grant {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.leases.insert(
            id,
            Lease {
                purpose: purpose.clone(),
                holder: holder.clone(),
                acquired_at: now,
                heartbeat_at: now,
                ttl_ms: u64::try_from(config.lease_ttl.as_millis()).unwrap_or(u64::MAX),
                generation,
            },
        );
        Grant {
            id,
            generation,
            purpose: purpose.clone(),
        }
    }

    /// Records a 326 for `grant`'s id: drops the lease (if still held) and marks the id foreign for
    /// [`RegistryConfig::foreign_cooldown`].
    pub fn mark_foreign(&mut self, config: &RegistryConfig, grant: &Grant, now: UnixMillis) {
        if self.holds(grant) {
            self.leases.remove(&grant.id);
        }
        self.foreign.insert(
            grant.id,
            ForeignMark {
                since: now,
                until: now.plus(config.foreign_cooldown),
            },
        );
    }

    /// Handles a 326 for `grant`: marks the id foreign and leases the next free one, unless this was
    /// conflict number [`RegistryConfig::max_conflict_attempts`] (`conflicts_so_far` counts earlier
    /// 326s of the same connect attempt).
    pub fn on_client_id_in_use(
        &mut self,
        config: &RegistryConfig,
        grant: &Grant,
        conflicts_so_far: u32,
        holder: &Holder,
        now: UnixMillis,
        liveness: &dyn Fn(&Holder) -> Liveness,
    ) -> Result<Grant, RegistryError> {
        self.mark_foreign(config, grant, now);
        let attempts = conflicts_so_far.saturating_add(1);
        if attempts >= config.max_conflict_attempts {
            return Err(RegistryError::TooManyConflicts {
                purpose: grant.purpose.clone(),
                attempts,
            });
        }
        self.allocate(config, &grant.purpose, holder, now, liveness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_readings_convert_once_saturating_at_the_edges() {
        use std::time::{Duration, UNIX_EPOCH};
        let t = UNIX_EPOCH + Duration::from_millis(1_764_547_200_123);
        let ms = UnixMillis::from_system_time(t);
        assert_eq!(ms, UnixMillis(1_764_547_200_123));
        assert_eq!(
            (ms.as_unix_secs(), ms.as_i64()),
            (1_764_547_200, 1_764_547_200_123)
        );
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(UnixMillis::from_system_time(before), UnixMillis(0));
        assert_eq!(UnixMillis(u64::MAX).as_i64(), i64::MAX);
    }

    fn cfg_small() -> RegistryConfig {
        let mut config = RegistryConfig::default();
        config
            .ranges
            .insert(Purpose::Custom("tiny".to_owned()), IdRange::new(10, 12));
        config
    }

    #[test]
    fn purpose_strings_round_trip() {
        for p in [
            Purpose::Api,
            Purpose::Cli,
            Purpose::Custom("gap_filler".to_owned()),
        ] {
            assert_eq!(Purpose::from(p.to_string()), p);
        }
    }

    #[test]
    fn reacquire_renews_retakes_a_lapsed_id_or_refuses_a_taken_one() {
        let config = cfg_small();
        let tiny = Purpose::Custom("tiny".to_owned());
        let mut state = RegistryState::new();
        let me = Holder::from_pid(1);
        let other = Holder::from_pid(2);
        let t0 = UnixMillis(1_000);
        let grant = state.allocate(&config, &tiny, &me, t0, &ttl_only).unwrap();
        // Still held: a plain renewal, same grant.
        let t1 = t0.plus(Duration::from_secs(30));
        assert_eq!(
            state.reacquire(&config, &grant, &me, t1, &ttl_only),
            Ok(grant.clone())
        );
        // Lapsed but free: the same id under a new generation; the old grant is dead.
        let t2 = t1.plus(config.lease_ttl * 2);
        assert!(state.heartbeat(&grant, t2).is_err());
        let again = state
            .reacquire(&config, &grant, &me, t2, &ttl_only)
            .unwrap();
        assert_eq!(again.id, grant.id);
        assert_ne!(again.generation, grant.generation);
        assert!(state.holds(&again) && !state.holds(&grant));
        // Lapsed and taken by another holder: refused, the other lease untouched.
        let t3 = t2.plus(config.lease_ttl * 2);
        let theirs = state
            .allocate(&config, &tiny, &other, t3, &ttl_only)
            .unwrap();
        assert_eq!(theirs.id, grant.id);
        assert_eq!(
            state.reacquire(&config, &again, &me, t3, &ttl_only),
            Err(RegistryError::NotHeld { id: grant.id })
        );
        assert!(state.holds(&theirs));
        // Foreign (326) ids are refused too.
        state.mark_foreign(&config, &theirs, t3);
        assert!(state
            .reacquire(&config, &again, &me, t3, &ttl_only)
            .is_err());
    }

    #[test]
    fn lowest_free_then_exhausted() {
        let config = cfg_small();
        let tiny = Purpose::Custom("tiny".to_owned());
        let mut state = RegistryState::new();
        let me = Holder::from_pid(1);
        let now = UnixMillis(1_000);
        let ids: Vec<ClientId> = (0..3)
            .filter_map(|_| state.allocate(&config, &tiny, &me, now, &ttl_only).ok())
            .map(|g| g.id)
            .collect();
        assert_eq!(ids, [10, 11, 12]);
        assert!(matches!(
            state.allocate(&config, &tiny, &me, now, &ttl_only),
            Err(RegistryError::RangeExhausted {
                first: 10,
                last: 12,
                ..
            })
        ));
        assert!(matches!(
            state.allocate(
                &config,
                &Purpose::Custom("nope".to_owned()),
                &me,
                now,
                &ttl_only
            ),
            Err(RegistryError::NoRange { .. })
        ));
    }
}
