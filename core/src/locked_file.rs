//! A JSON state file shared by every process on a host (feature `file-store`): an exclusive
//! `flock` on a sidecar `<file>.lock` taken **with a deadline** (a stopped or stuck holder makes
//! the next process fail with [`LockedFileError::Busy`], never hang), reads, and atomic writes
//! (temp file 0600 + fsync + rename). Used by the client-id registry and the
//! pacing ledger; the lock lives on a separate file because the state file is replaced by rename
//! on every write (a lock on the replaced inode would protect nothing).

// The file store (feature `file-store`): files, the process id and lock waits are its job.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs4::{FileExt, TryLockError};

/// How long a store waits for another process's lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// Failures of a locked file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockedFileError {
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
    /// Another process held the lock past the deadline (stopped with Ctrl-Z, stuck on a slow disk).
    #[error("{path} stayed locked by another process for {waited:?}")]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

/// One state file and its lock. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LockedFile {
    path: PathBuf,
    lock_timeout: Duration,
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

impl LockedFile {
    /// The state file at `path` (created on first write; the parent directory must exist), with
    /// [`DEFAULT_LOCK_TIMEOUT`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// The same file with another lock deadline.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock deadline.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// Takes the exclusive lock, polling until the deadline.
    pub fn lock(&self) -> Result<LockGuard, LockedFileError> {
        let path = self.lock_path();
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        #[allow(clippy::disallowed_methods)] // a real wait on another process: wall time
        let start = Instant::now();
        let mut tries: u32 = 0;
        loop {
            match FileExt::try_lock(&file) {
                Ok(()) => return Ok(LockGuard { _file: file }),
                Err(TryLockError::Error(e)) => return Err(io_err("lock", &path, e)),
                Err(TryLockError::WouldBlock) => {}
            }
            let waited = start.elapsed();
            if waited >= self.lock_timeout {
                return Err(LockedFileError::Busy { path, waited });
            }
            // A holder keeps the lock for well under a millisecond: yield a few times, then
            // poll every 0.5 ms (flock has no timed wait; a blocked flock could not be bounded).
            tries += 1;
            if tries < 16 {
                std::thread::yield_now();
            } else {
                #[allow(clippy::disallowed_methods)] // the file store is the core's one I/O
                std::thread::sleep(Duration::from_micros(500).min(self.lock_timeout - waited));
            }
        }
    }

    /// The file's text, `None` if it does not exist (call with the lock held).
    pub fn read(&self) -> Result<Option<Result<String, io::Error>>, LockedFileError> {
        match File::open(&self.path) {
            Ok(mut file) => {
                let mut text = String::new();
                match file.read_to_string(&mut text) {
                    Ok(_) => Ok(Some(Ok(text))),
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Some(Err(e))),
                    Err(e) => Err(io_err("read", &self.path, e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("open", &self.path, e)),
        }
    }

    /// Replaces the file with `bytes` atomically: temp file (0600) + fsync + rename (call with
    /// the lock held). Readers see the old or the new content, never a torn one.
    pub fn write(&self, bytes: &[u8]) -> Result<(), LockedFileError> {
        let tmp = sibling(&self.path, ".tmp");
        let mut file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        restrict_permissions(&file).map_err(|e| io_err("chmod", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| io_err("write", &tmp, e))?;
        file.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| io_err("rename", &tmp, e))?;
        // No directory fsync: it only matters after a power loss or kernel crash, and after a
        // reboot every lease is dead and every pacing book void anyway (the boot id changes).
        Ok(())
    }

    /// Moves the state file to `<file><suffix>` (or `<file><suffix>-N` if taken) and returns
    /// where it went: an unreadable file is kept for inspection, never silently reset.
    pub fn move_aside(&self, suffix: &str) -> Result<PathBuf, LockedFileError> {
        let mut target = sibling(&self.path, suffix);
        let mut n = 1;
        while target.exists() {
            target = sibling(&self.path, &format!("{suffix}-{n}"));
            n += 1;
        }
        fs::rename(&self.path, &target).map_err(|e| io_err("rename", &self.path, e))?;
        Ok(target)
    }

    fn lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> LockedFileError {
    LockedFileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// `path` with `suffix` appended to its file name (`a.csv` + `.lock` = `a.csv.lock`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_busy_after_the_deadline_not_a_hang() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = std::env::temp_dir().join(format!("ibconn-lock-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let file =
            LockedFile::new(dir.join("state.json")).with_lock_timeout(Duration::from_millis(150));
        let held = file.lock()?;
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let second = file.lock();
        let took = start.elapsed();
        assert!(
            matches!(second, Err(LockedFileError::Busy { .. })),
            "{second:?}"
        );
        assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(2));
        drop(held);
        assert!(file.lock().is_ok());
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
