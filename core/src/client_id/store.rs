//! JSON file store for the client-id registry (feature `file-store`) — **the only I/O code in
//! `ibconn-core`**, shared by both runtimes so every process on a host agrees on who holds which id.
//!
//! Every operation is one transaction: take an exclusive `flock` on a sidecar lock file
//! (`<file>.lock`, via `fs4`), read the JSON state, apply the pure [`RegistryState`] operation, and —
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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use fs4::FileExt;

use super::{
    Grant, Holder, Liveness, Purpose, Reclaimed, RegistryConfig, RegistryError, RegistryState,
    UnixMillis, SCHEMA_VERSION,
};

/// File-store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An OS call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing (`"lock"`, `"read"`, `"write"`, `"rename"`, …).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
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
    path: PathBuf,
}

impl FileStore {
    /// A store at `path` (created on first write; the parent directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the current state (under the exclusive lock, since a corrupt file is moved aside).
    pub fn load(&self, now: UnixMillis) -> Result<RegistryState, StoreError> {
        let lock = self.open_lock()?;
        FileExt::lock(&lock).map_err(|e| self.io("lock", &self.lock_path(), e))?;
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
        let lock = self.open_lock()?;
        FileExt::lock(&lock).map_err(|e| self.io("lock", &self.lock_path(), e))?;
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

    fn lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }

    fn open_lock(&self) -> Result<File, StoreError> {
        let path = self.lock_path();
        private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.io("open", &path, e))
    }

    /// Reads and validates the state file; must be called with the lock held.
    fn read_state(&self, now: UnixMillis) -> Result<RegistryState, StoreError> {
        let mut text = String::new();
        match File::open(&self.path) {
            Ok(mut file) => {
                if let Err(e) = file.read_to_string(&mut text) {
                    if e.kind() != io::ErrorKind::InvalidData {
                        return Err(self.io("read", &self.path, e));
                    }
                    return self.move_aside(now, format!("not UTF-8: {e}"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RegistryState::new()),
            Err(e) => return Err(self.io("open", &self.path, e)),
        }
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
                    path: self.path.clone(),
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
        let mut preserved_at = sibling(&self.path, &format!(".corrupt-{}", now.0));
        let mut n = 1;
        while preserved_at.exists() {
            preserved_at = sibling(&self.path, &format!(".corrupt-{}-{n}", now.0));
            n += 1;
        }
        fs::rename(&self.path, &preserved_at).map_err(|e| self.io("rename", &self.path, e))?;
        Err(StoreError::Corrupt {
            path: self.path.clone(),
            preserved_at,
            reason,
        })
    }

    /// Writes `state` atomically: temp file (0600) + fsync + rename.
    fn write_state(&self, state: &RegistryState) -> Result<(), StoreError> {
        let tmp = sibling(&self.path, ".tmp");
        let json = serde_json::to_vec_pretty(state).map_err(|e| {
            self.io(
                "serialize",
                &self.path,
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        let mut file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| self.io("create", &tmp, e))?;
        restrict_permissions(&file).map_err(|e| self.io("chmod", &tmp, e))?;
        file.write_all(&json)
            .map_err(|e| self.io("write", &tmp, e))?;
        file.sync_all().map_err(|e| self.io("fsync", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| self.io("rename", &tmp, e))?;
        // No directory fsync: it only matters after a power loss or kernel crash, and after a reboot
        // every lease is dead anyway (the boot id changes). The rename itself is atomic.
        Ok(())
    }

    fn io(&self, op: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Open options that create files readable and writable by the owner only.
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Forces mode 0600 (a leftover temp file may have been created with other permissions).
fn restrict_permissions(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}
