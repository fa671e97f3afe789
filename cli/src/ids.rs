//! Client ids: the registry every pool of this CLI leases from, and `ibconn ids` to list and
//! release its leases.
//!
//! With `client_ids.shared_registry` (the default) leases live in one JSON file per user
//! (`client_ids.registry_file`, locked with `flock`; see `ibconn_core::client_id::store`), so
//! every `ibconn` process on the host agrees on who holds which id.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ibconn_core::client_id::liveness::linux_liveness;
use ibconn_core::client_id::store::{FileStore, StoreError};
use ibconn_core::client_id::{ClientId, Holder, Lease, Liveness, RegistryState, UnixMillis};
use ibconn_core::pool::{FileRegistry, IdRegistry, MemoryRegistry};
use serde::Serialize;

use crate::args::{IdsAction, IdsArgs, ReleaseArgs};
use crate::config::{secs, Settings};
use crate::util::{ensure_parent, iso_utc_ms, table};

/// The registry for a pool of this process: the shared file (its directory created if needed),
/// or, when sharing is off or the directory cannot be created, one in memory.
pub(crate) fn registry(settings: &Settings, label: &str) -> Box<dyn IdRegistry + Send> {
    let config = settings.registry_config();
    if settings.client_ids.shared_registry {
        let path = &settings.client_ids.registry_file;
        match ensure_parent(path) {
            Ok(()) => {
                let store = FileStore::new(path)
                    .with_lock_timeout(secs(settings.coordination.lock_timeout_secs));
                return Box::new(FileRegistry::new(config, store, Some(label.to_owned())));
            }
            Err(e) => eprintln!(
                "ibconn: warning: client-id registry {}: {e}; leasing ids in memory (not shared \
                 with other processes)",
                path.display()
            ),
        }
    }
    memory_registry(settings)
}

/// A registry private to this process.
pub(crate) fn memory_registry(settings: &Settings) -> Box<dyn IdRegistry + Send> {
    Box::new(MemoryRegistry::new(
        settings.registry_config(),
        Holder::from_pid(std::process::id()),
    ))
}

/// Why `ids` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdsError {
    /// The registry file cannot be read or written (exit 1).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some leases were not released (exit 1); the message says which and why.
    #[error("{0}")]
    Refused(String),
}

impl IdsError {
    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        1
    }
}

/// Wall clock now.
fn now() -> UnixMillis {
    UnixMillis::from_system_time(SystemTime::now())
}

/// One lease as `ids list` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaseRow {
    /// The client id.
    pub(crate) id: ClientId,
    /// Its purpose.
    pub(crate) purpose: String,
    /// The holder's pid.
    pub(crate) pid: u32,
    /// The holder's label (e.g. `ibconn serve`).
    pub(crate) holder: Option<String>,
    /// `alive`, `dead` or `unknown` (another PID namespace, or not Linux).
    pub(crate) liveness: &'static str,
    /// Whether the lease's TTL has run out (it is free for the next allocation).
    pub(crate) expired: bool,
    /// When it was granted, Unix ms.
    pub(crate) acquired_at_ms: u64,
    /// Last heartbeat, Unix ms.
    pub(crate) heartbeat_at_ms: u64,
    /// When it expires without another heartbeat, Unix ms.
    pub(crate) expires_at_ms: u64,
    /// The same, ISO 8601 UTC.
    pub(crate) expires_at: String,
}

/// An id IB reported in use (326), avoided until `until`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ForeignRow {
    /// The client id.
    pub(crate) id: ClientId,
    /// When the cool-down ends, Unix ms.
    pub(crate) until_ms: u64,
    /// The same, ISO 8601 UTC.
    pub(crate) until: String,
}

/// What `ids list` prints.
#[derive(Debug, Serialize)]
pub(crate) struct IdsList {
    /// The registry file.
    pub(crate) registry: PathBuf,
    /// Leases by id.
    pub(crate) leases: Vec<LeaseRow>,
    /// Ids marked in use outside the registry.
    pub(crate) foreign: Vec<ForeignRow>,
}

/// What `ids release` did.
#[derive(Debug, Serialize)]
pub(crate) struct IdsReleased {
    /// The registry file.
    pub(crate) registry: PathBuf,
    /// Ids released.
    pub(crate) released: Vec<ClientId>,
    /// 326 marks forgotten (`--all`).
    pub(crate) foreign_cleared: Vec<ClientId>,
    /// Ids left alone, with the reason.
    pub(crate) refused: Vec<Refusal>,
}

/// A lease `ids release` left alone.
#[derive(Debug, Serialize)]
pub(crate) struct Refusal {
    /// The client id.
    pub(crate) id: ClientId,
    /// Why.
    pub(crate) reason: String,
}

fn liveness_name(l: Liveness) -> &'static str {
    match l {
        Liveness::Alive => "alive",
        Liveness::Dead => "dead",
        Liveness::Unknown => "unknown",
    }
}

/// `lease` of `id` as a row, its expiry and liveness as of `now`.
pub(crate) fn row(id: ClientId, lease: &Lease, now: UnixMillis) -> LeaseRow {
    let expires = lease.heartbeat_at.0.saturating_add(lease.ttl_ms);
    LeaseRow {
        id,
        purpose: lease.purpose.to_string(),
        pid: lease.holder.pid,
        holder: lease.holder.label.clone(),
        liveness: liveness_name(linux_liveness(&lease.holder)),
        expired: lease.is_expired(now),
        acquired_at_ms: lease.acquired_at.0,
        heartbeat_at_ms: lease.heartbeat_at.0,
        expires_at_ms: expires,
        expires_at: iso_utc_ms(expires),
    }
}

/// The 326 mark of `id`, avoided until `until_ms` (Unix ms), as a row.
pub(crate) fn foreign_row(id: ClientId, until_ms: u64) -> ForeignRow {
    ForeignRow {
        id,
        until_ms,
        until: iso_utc_ms(until_ms),
    }
}

/// The output of `ibconn ids`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum IdsOutput {
    /// `list`.
    List(IdsList),
    /// `release`.
    Released(IdsReleased),
}

impl IdsOutput {
    /// Human-readable text.
    pub(crate) fn text(&self) -> String {
        match self {
            Self::List(l) => {
                let mut s = format!("registry: {}\n", l.registry.display());
                if l.leases.is_empty() {
                    s.push_str("no leases\n");
                } else {
                    let mut rows = vec![[
                        "ID".to_owned(),
                        "PURPOSE".to_owned(),
                        "PID".to_owned(),
                        "HOLDER".to_owned(),
                        "LIVENESS".to_owned(),
                        "EXPIRES".to_owned(),
                    ]];
                    for r in &l.leases {
                        rows.push([
                            r.id.to_string(),
                            r.purpose.clone(),
                            r.pid.to_string(),
                            r.holder.clone().unwrap_or_else(|| "-".to_owned()),
                            r.liveness.to_owned(),
                            if r.expired {
                                format!("{} (expired)", r.expires_at)
                            } else {
                                r.expires_at.clone()
                            },
                        ]);
                    }
                    s.push_str(&table(&rows));
                }
                for f in &l.foreign {
                    s.push_str(&format!(
                        "id {} in use outside the registry (IB error 326), avoided until {}\n",
                        f.id, f.until
                    ));
                }
                s
            }
            Self::Released(r) => {
                let mut s = String::new();
                for id in &r.released {
                    s.push_str(&format!("released client id {id}\n"));
                }
                if !r.foreign_cleared.is_empty() {
                    let ids: Vec<String> =
                        r.foreign_cleared.iter().map(|i| i.to_string()).collect();
                    s.push_str(&format!("forgot 326 marks of ids {}\n", ids.join(", ")));
                }
                if r.released.is_empty() && r.foreign_cleared.is_empty() && r.refused.is_empty() {
                    s.push_str("nothing to release\n");
                }
                s
            }
        }
    }
}

/// Run `ibconn ids`. A release that refused some ids returns the output and an error saying so.
pub(crate) fn ids(
    args: &IdsArgs,
    settings: &Settings,
) -> Result<(IdsOutput, Option<IdsError>), IdsError> {
    let path = args
        .registry
        .clone()
        .unwrap_or_else(|| settings.client_ids.registry_file.clone());
    let store = FileStore::new(&path);
    let now = now();
    match &args.action {
        None | Some(IdsAction::List) => {
            // Reading an absent file needs no directory; don't create one just to list nothing.
            let state = if path.exists() {
                store.load(now)?
            } else {
                RegistryState::new()
            };
            Ok((
                IdsOutput::List(IdsList {
                    registry: path,
                    leases: state
                        .leases
                        .iter()
                        .map(|(id, lease)| row(*id, lease, now))
                        .collect(),
                    foreign: state
                        .foreign
                        .iter()
                        .map(|(id, m)| foreign_row(*id, m.until.0))
                        .collect(),
                }),
                None,
            ))
        }
        Some(IdsAction::Release(r)) => {
            if !path.exists() {
                let out = IdsReleased {
                    registry: path.clone(),
                    released: Vec::new(),
                    foreign_cleared: Vec::new(),
                    refused: r
                        .ids
                        .iter()
                        .map(|id| Refusal {
                            id: *id,
                            reason: "not leased".to_owned(),
                        })
                        .collect(),
                };
                let err = refusal_error(&out, &path);
                return Ok((IdsOutput::Released(out), err));
            }
            let out = store.transact(now, |state| Ok(release(state, r, now, &linux_liveness)))?;
            let out = IdsReleased {
                registry: path.clone(),
                ..out
            };
            let err = refusal_error(&out, &path);
            Ok((IdsOutput::Released(out), err))
        }
    }
}

fn refusal_error(out: &IdsReleased, path: &Path) -> Option<IdsError> {
    if out.refused.is_empty() {
        return None;
    }
    let lines: Vec<String> = out
        .refused
        .iter()
        .map(|r| format!("client id {}: {}", r.id, r.reason))
        .collect();
    let live = out.refused.iter().any(|r| r.reason.contains("--force"));
    let mut msg = format!(
        "not released (registry {}):\n  {}",
        path.display(),
        lines.join("\n  ")
    );
    if live {
        msg.push_str(
            "\nA live holder may still be connected to IB with that id: releasing it lets another \
             process take the id and be refused with error 326. Stop the holder, or pass --force.",
        );
    }
    Some(IdsError::Refused(msg))
}

/// The release itself (pure: the state, `now` and the liveness check are passed in).
fn release(
    state: &mut RegistryState,
    args: &ReleaseArgs,
    now: UnixMillis,
    liveness: &dyn Fn(&Holder) -> Liveness,
) -> IdsReleased {
    let wanted: Vec<ClientId> = if args.all {
        state.leases.keys().copied().collect()
    } else {
        args.ids.clone()
    };
    let mut out = IdsReleased {
        registry: PathBuf::new(),
        released: Vec::new(),
        foreign_cleared: Vec::new(),
        refused: Vec::new(),
    };
    for id in wanted {
        let Some(lease) = state.leases.get(&id) else {
            out.refused.push(Refusal {
                id,
                reason: "not leased".to_owned(),
            });
            continue;
        };
        let live = liveness(&lease.holder);
        let stale = lease.is_expired(now) || live == Liveness::Dead;
        if stale || args.force {
            state.leases.remove(&id);
            out.released.push(id);
        } else {
            out.refused.push(Refusal {
                id,
                reason: format!(
                    "held by {} process {} ({}{}); use --force to release it anyway",
                    liveness_name(live),
                    lease.holder.pid,
                    lease.purpose,
                    lease
                        .holder
                        .label
                        .as_deref()
                        .map(|l| format!(", {l}"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    if args.all {
        out.foreign_cleared = state.foreign.keys().copied().collect();
        state.foreign.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibconn_core::client_id::{ttl_only, Purpose, RegistryConfig};

    fn args(ids: &[ClientId], all: bool, force: bool) -> ReleaseArgs {
        ReleaseArgs {
            ids: ids.to_vec(),
            all,
            force,
        }
    }

    #[test]
    fn live_leases_need_force_and_stale_ones_do_not() {
        let cfg = RegistryConfig::default();
        let mut state = RegistryState::new();
        let now = UnixMillis(1_000_000);
        let live = Holder::from_pid(1);
        let dead = Holder::from_pid(2);
        let a = state
            .allocate(&cfg, &Purpose::Backfill, &live, now, &ttl_only)
            .unwrap();
        let b = state
            .allocate(&cfg, &Purpose::Backfill, &dead, now, &ttl_only)
            .unwrap();
        let check = |h: &Holder| {
            if h.pid == 1 {
                Liveness::Alive
            } else {
                Liveness::Dead
            }
        };
        let out = release(
            &mut state,
            &args(&[a.id, b.id, 42], false, false),
            now,
            &check,
        );
        assert_eq!(out.released, [b.id]);
        let refused: Vec<ClientId> = out.refused.iter().map(|r| r.id).collect();
        assert_eq!(refused, [a.id, 42]);
        assert!(out.refused[0].reason.contains("--force"));
        assert!(state.holds(&a) && !state.holds(&b));

        // Expired leases are stale whatever the liveness says.
        let later = now.plus(cfg.lease_ttl);
        let out = release(&mut state, &args(&[], true, false), later, &check);
        assert_eq!(out.released, [a.id]);
        assert!(state.leases.is_empty());

        let c = state
            .allocate(&cfg, &Purpose::Api, &live, now, &ttl_only)
            .unwrap();
        state.mark_foreign(&cfg, &c, now);
        let d = state
            .allocate(&cfg, &Purpose::Api, &live, now, &ttl_only)
            .unwrap();
        let out = release(&mut state, &args(&[], true, true), now, &check);
        assert_eq!(out.released, [d.id]);
        assert_eq!(out.foreign_cleared, [c.id]);
        assert!(state.leases.is_empty() && state.foreign.is_empty());
    }
}
