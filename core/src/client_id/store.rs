//! JSON file store for the client-id registry (feature `file-store`) — **the only I/O code in
//! `ibconn-core`**, shared by both runtimes so every process on a host agrees on who holds which id.
//!
//! Every operation is one transaction: take an exclusive `flock` on a sidecar lock file
//! (`<file>.lock`, via `fs4`) within a deadline ([`LockedFileError::Busy`] after it, never a hang; see
//! [`crate::locked_file`]), read the JSON state, apply the pure [`RegistryState`] operation, and —
//! if anything changed — write a temp file (`<file>.tmp`, mode 0600), `fsync` it and rename it over
//! the state file (atomic: readers see the old or the new state, never a torn one). The lock lives on
//! a separate file because the state file is replaced by rename on every write (a lock on the
//! replaced inode would protect nothing).
//!
//! A state file that does not parse is **moved aside** to `<file>.corrupt-<unix_ms>` and the call fails
//! with [`StoreError::Corrupt`] naming the preserved copy; the registry is never silently reset under
//! a caller. (The next call starts from an empty registry; holders of leases that were in the corrupt
//! file find out on their next heartbeat, which fails with `NotHeld`.) A file with a newer schema
//! version is left untouched and reported as [`StoreError::UnsupportedSchema`].

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Grant, Holder, Liveness, Purpose, Reclaimed, RegistryConfig, RegistryError, RegistryState,
    UnixMillis, SCHEMA_VERSION,
};
use crate::locked_file::{LockedFile, LockedFileError};

/// File-store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file or its lock failed: an OS call, or another process held the lock past the
    /// deadline ([`LockedFileError::Busy`]).
    #[error(transparent)]
    File(#[from] LockedFileError),
    /// The state file did not parse; it was moved to `preserved_at` for inspection.
    #[error("client-id registry {path} is corrupt ({reason}); preserved at {preserved_at}")]
    Corrupt {
        /// The registry file.
        path: PathBuf,
        /// Where the corrupt content now lives.
        preserved_at: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// The state file was written by a newer (or unknown) schema; it was left untouched.
    #[error(
        "client-id registry {path} has schema version {found}, this build supports {supported}"
    )]
    UnsupportedSchema {
        /// The registry file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The registry operation itself failed (range exhausted, lease not held, …).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A registry persisted in one JSON file, safe for concurrent use by many processes.
#[derive(Debug, Clone)]
pub struct FileStore {
    file: LockedFile,
}

impl FileStore {
    /// A store at `path` (created on first write; the parent directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            file: LockedFile::new(path),
        }
    }

    /// The same store with another lock deadline (default
    /// [`crate::locked_file::DEFAULT_LOCK_TIMEOUT`]).
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.file = self.file.with_lock_timeout(timeout);
        self
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Reads the current state (under the exclusive lock, since a corrupt file is moved aside).
    pub fn load(&self, now: UnixMillis) -> Result<RegistryState, StoreError> {
        let lock = self.file.lock()?;
        let state = self.read_state(now);
        drop(lock);
        state
    }

    /// Runs `op` on the state under the exclusive lock and persists the result if it changed (also when
    /// `op` fails: e.g. stale leases reclaimed before a failed allocation stay reclaimed).
    pub fn transact<T>(
        &self,
        now: UnixMillis,
        op: impl FnOnce(&mut RegistryState) -> Result<T, RegistryError>,
    ) -> Result<T, StoreError> {
        let lock = self.file.lock()?;
        let before = self.read_state(now)?;
        let mut state = before.clone();
        let result = op(&mut state);
        if state != before {
            self.write_state(&state)?;
        }
        drop(lock);
        Ok(result?)
    }

    /// [`RegistryState::allocate`] as one transaction.
    pub fn allocate(
        &self,
        config: &RegistryConfig,
        purpose: &Purpose,
        holder: &Holder,
        now: UnixMillis,
        liveness: &dyn Fn(&Holder) -> Liveness,
    ) -> Result<Grant, StoreError> {
        self.transact(now, |state| {
            state.allocate(config, purpose, holder, now, liveness)
        })
    }

    /// [`RegistryState::release`] as one transaction.
    pub fn release(&self, grant: &Grant, now: UnixMillis) -> Result<(), StoreError> {
        self.transact(now, |state| state.release(grant))
    }

    /// [`RegistryState::heartbeat`] as one transaction.
    pub fn heartbeat(&self, grant: &Grant, now: UnixMillis) -> Result<(), StoreError> {
        self.transact(now, |state| state.heartbeat(grant, now))
    }

    /// [`RegistryState::reacquire`] as one transaction.
    pub fn reacquire(
        &self,
        config: &RegistryConfig,
        grant: &Grant,
        holder: &Holder,
        now: UnixMillis,
        liveness: &dyn Fn(&Holder) -> Liveness,
    ) -> Result<Grant, StoreError> {
        self.transact(now, |state| {
            state.reacquire(config, grant, holder, now, liveness)
        })
    }

    /// [`RegistryState::on_client_id_in_use`] as one transaction.
    pub fn on_client_id_in_use(
        &self,
        config: &RegistryConfig,
        grant: &Grant,
        conflicts_so_far: u32,
        holder: &Holder,
        now: UnixMillis,
        liveness: &dyn Fn(&Holder) -> Liveness,
    ) -> Result<Grant, StoreError> {
        self.transact(now, |state| {
            state.on_client_id_in_use(config, grant, conflicts_so_far, holder, now, liveness)
        })
    }

    /// [`RegistryState::reclaim_stale`] as one transaction.
    pub fn reclaim_stale(
        &self,
        now: UnixMillis,
        liveness: &dyn Fn(&Holder) -> Liveness,
    ) -> Result<Vec<Reclaimed>, StoreError> {
        self.transact(now, |state| Ok(state.reclaim_stale(now, liveness)))
    }

    /// Reads and validates the state file; must be called with the lock held.
    fn read_state(&self, now: UnixMillis) -> Result<RegistryState, StoreError> {
        let text = match self.file.read()? {
            None => return Ok(RegistryState::new()),
            Some(Err(e)) => return self.move_aside(now, format!("not UTF-8: {e}")),
            Some(Ok(text)) => text,
        };
        let value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => return self.move_aside(now, e.to_string()),
        };
        let version = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64);
        match version {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(StoreError::UnsupportedSchema {
                    path: self.path().to_path_buf(),
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                    supported: SCHEMA_VERSION,
                })
            }
            None => return self.move_aside(now, "missing schema_version".to_owned()),
        }
        serde_json::from_value(value).or_else(|e| self.move_aside(now, e.to_string()))
    }

    /// Moves the unreadable state file aside and reports it; never returns `Ok`.
    fn move_aside(&self, now: UnixMillis, reason: String) -> Result<RegistryState, StoreError> {
        let preserved_at = self.file.move_aside(&format!(".corrupt-{}", now.0))?;
        Err(StoreError::Corrupt {
            path: self.path().to_path_buf(),
            preserved_at,
            reason,
        })
    }

    /// Writes `state` atomically (see [`LockedFile::write`]).
    fn write_state(&self, state: &RegistryState) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| LockedFileError::Io {
            op: "serialize",
            path: self.path().to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        Ok(self.file.write(&json)?)
    }
}
