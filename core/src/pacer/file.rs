//! Pacing books in files (feature `file-store`): one JSON file per gateway key in a directory
//! beside the client-id registry, shared by every process on the host through
//! [`LockedFile`] (flock with a deadline, 0600, atomic replace, fsync).
//!
//! Time is the host's boot-time clock (`CLOCK_BOOTTIME`): every process on the host reads the
//! same one, it counts suspend (IB's clock runs on while a laptop sleeps) and wall-clock steps do
//! not move it. A book written in another boot (its `boot_id` differs) is started afresh. A book that does not parse is
//! moved aside (`<file>.corrupt-<ms>`) and replaced by a fresh one of a new generation, which the
//! processes then refill from what they remember ([`PaceBook::merge`]); pacing never stops on it.

// The file store (feature `file-store`): files, the process id and lock waits are its job.
#![allow(clippy::disallowed_methods)]

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::book::{PaceBook, PaceTime};
use super::ledger::{fresh_generation, LedgerError, LedgerNow, LedgerOp, PaceLedger};
use crate::client_id::liveness::boot_id;
use crate::locked_file::{LockedFile, LockedFileError, DEFAULT_LOCK_TIMEOUT};

/// Version of the book file layout this code reads and writes.
pub const BOOK_SCHEMA_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct BookFile {
    schema_version: u32,
    gateway: String,
    /// The boot the book's times count from.
    boot_id: Option<String>,
    book: PaceBook,
}

/// The host's boot-time clock as ledger time.
fn boottime() -> PaceTime {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    PaceTime(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// A ledger handle whose books live in `dir` (see the module docs).
#[derive(Debug, Clone)]
pub struct FileLedger {
    dir: PathBuf,
    owner: String,
    lock_timeout: Duration,
    /// This boot's id, read once: books of another boot are void.
    boot_id: Option<String>,
}

impl FileLedger {
    /// Books in `dir` (created if missing at the first step), this handle named `owner` — unique
    /// among the processes that share the directory (e.g. `pid 4242 start 8812 (ibconn fetch)`).
    pub fn new(dir: impl Into<PathBuf>, owner: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            owner: owner.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            boot_id: boot_id(),
        }
    }

    /// The same ledger with another lock deadline.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `gateway`'s book.
    pub fn book_path(&self, gateway: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_stem(gateway)))
    }

    fn err(&self, e: LockedFileError) -> LedgerError {
        match e {
            LockedFileError::Busy { waited, .. } => LedgerError::Busy {
                store: self.describe(),
                waited,
            },
            other => LedgerError::Unavailable {
                store: self.describe(),
                reason: other.to_string(),
            },
        }
    }

    /// The stored book, or a fresh one when there is none or it does not parse (moved aside:
    /// then `true`, the book was lost).
    fn load(
        &self,
        file: &LockedFile,
        gateway: &str,
        now: PaceTime,
        boot: Option<&str>,
    ) -> Result<(PaceBook, bool), LedgerError> {
        let fresh = || PaceBook::new(fresh_generation(now, &self.owner));
        let reason = match file.read().map_err(|e| self.err(e))? {
            None => return Ok((fresh(), false)),
            Some(Err(e)) => format!("not UTF-8: {e}"),
            Some(Ok(text)) => match serde_json::from_str::<BookFile>(&text) {
                Ok(f)
                    if f.schema_version == BOOK_SCHEMA_VERSION && f.boot_id.as_deref() != boot =>
                {
                    // Times from another boot mean nothing now (and the reboot outlasted them).
                    return Ok((fresh(), false));
                }
                Ok(f) if f.schema_version == BOOK_SCHEMA_VERSION => return Ok((f.book, false)),
                Ok(f) => format!("schema version {}", f.schema_version),
                Err(e) => e.to_string(),
            },
        };
        let kept = file
            .move_aside(&format!(".corrupt-{}", now.as_millis()))
            .map_err(|e| self.err(e))?;
        tracing::warn!(
            gateway,
            %reason,
            kept = %kept.display(),
            "pacing book unreadable; kept aside, starting a new one from what this process saw"
        );
        Ok((
            PaceBook::after_loss(fresh_generation(now, &self.owner)),
            true,
        ))
    }
}

impl PaceLedger for FileLedger {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn describe(&self) -> String {
        format!("file {}", self.dir.display())
    }

    fn transact(
        &mut self,
        gateway: &str,
        _now: Instant,
        op: &mut LedgerOp<'_>,
    ) -> Result<(), LedgerError> {
        let file = LockedFile::new(self.book_path(gateway)).with_lock_timeout(self.lock_timeout);
        let _lock = match file.lock() {
            // The directory is made on the first step that finds it missing, not on every step.
            Err(LockedFileError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir).map_err(|e| LedgerError::Unavailable {
                    store: self.describe(),
                    reason: format!("create {}: {e}", self.dir.display()),
                })?;
                file.lock()
            }
            other => other,
        }
        .map_err(|e| self.err(e))?;
        // Read under the lock: steps are then ordered on the clock as they are on the file, and
        // the caller's instant is taken at the same moment (after the wait for the lock).
        let now = boottime();
        #[allow(clippy::disallowed_methods)] // the file store is the core's one I/O
        let instant = Instant::now();
        let (mut book, recreated) = self.load(&file, gateway, now, self.boot_id.as_deref())?;
        let before = book.clone();
        op(&mut book, LedgerNow { time: now, instant });
        if book != before || recreated {
            let json = serde_json::to_vec(&BookFile {
                schema_version: BOOK_SCHEMA_VERSION,
                gateway: gateway.to_owned(),
                boot_id: self.boot_id.clone(),
                book,
            })
            .map_err(|e| LedgerError::Unavailable {
                store: self.describe(),
                reason: e.to_string(),
            })?;
            file.write(&json).map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

/// A file name for a gateway key: its safe characters plus a hash of the whole key, so
/// `host:4002` and `host_4002` never share a file.
fn file_stem(gateway: &str) -> String {
    let safe: String = gateway
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    // FNV-1a: stable across builds and platforms (DefaultHasher is not promised to be).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in gateway.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{safe}-{:08x}", h as u32 ^ (h >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacer::rules::small_bars;
    use crate::pacer::PacingRules;
    use crate::what_to_show::WhatToShow;

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ibconn-{name}-{}", std::process::id()))
    }

    #[test]
    fn two_handles_share_one_book_and_a_corrupt_file_is_kept_aside(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir("file-ledger");
        let _ = std::fs::remove_dir_all(&dir);
        let rules = PacingRules::default();
        let req = small_bars("AAPL", "e", WhatToShow::Trades);
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut ats = Vec::new();
        for owner in ["a", "b"] {
            let mut ledger = FileLedger::new(&dir, owner);
            ledger.transact("127.0.0.1:4002", now, &mut |book, clock| {
                let t = clock.time;
                book.touch(owner, t.plus(Duration::from_secs(60)));
                ats.push(
                    book.reserve(&rules, t, t, &req, Some(owner))
                        .map(|r| (t, r.at)),
                );
            })?;
        }
        let [Ok((t0, a)), Ok((t1, b))] = ats[..] else {
            panic!("{ats:?}");
        };
        assert_eq!(a, t0, "the first goes at once");
        assert!(t1 >= t0);
        assert_eq!(
            b,
            a.plus(Duration::from_secs(15)),
            "the second process sees the first one's identical request"
        );
        let path = FileLedger::new(&dir, "a").book_path("127.0.0.1:4002");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&path, b"{not json")?;
        let mut generation = 0;
        FileLedger::new(&dir, "c").transact("127.0.0.1:4002", now, &mut |book, _| {
            generation = book.generation;
        })?;
        assert_ne!(generation, 0);
        let kept = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
        assert!(kept, "the unreadable book was kept for inspection");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn keys_that_look_alike_get_different_files() {
        assert_ne!(file_stem("host:4002"), file_stem("host_4002"));
        assert!(file_stem("a/../../etc").chars().all(|c| c != '/'));
    }
}
