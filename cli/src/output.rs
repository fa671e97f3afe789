//! `fetch --out`: where the bars go, what an existing file holds, and who may write it.
//!
//! A file is only resumed when it is the same request: its sidecar (`FILE.covered.json`) names
//! the request it holds ([`Identity`]) and fingerprints the CSV it was written with, and the
//! CSV's own rows are checked too (time form, bar grid, trade vs quote bars, symbol). Anything
//! else is refused with a message saying what differs, never overwritten. A resumed file keeps
//! the [`Layout`] it was written with (time format, symbol column, how missing volume is
//! written); asking for another time format, or `--with-symbol` on a file without that column,
//! is refused. Only a regular file (or a new path) is written; through a symlink, its target is.
//! One fetch at a time holds an exclusive lock on `FILE.lock`; every write is a temporary file,
//! fsync, rename and a directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ibconn_core::locked_file::{sibling, LockGuard, LockedFile, LockedFileError};
use serde::{Deserialize, Serialize};

use crate::csvio::{self, CsvError, Held, Layout, Missing, TimeForm, TimeFormat};

/// Sidecar schema this build writes (1: `{request, covered}` without a fingerprint; 2: no
/// layout, i.e. [`Layout::LEGACY`], read and migrated).
const SIDECAR_VERSION: u32 = 3;

/// Why `--out` cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutError {
    /// Not something a fetch may replace (exit 2).
    #[error(
        "--out {path}: {kind}; only a regular file or a new path can be written \
         (use `--out -` or no --out for stdout)"
    )]
    NotARegularFile {
        /// The path as given.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Another process is writing the same file (exit 2).
    #[error("--out {path}: another fetch is writing it (it holds {lock}); wait for it to finish")]
    Busy {
        /// The path as given.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The file holds another request's bars (exit 2).
    #[error(
        "--out {path} holds {held}, not {wanted} ({differs}); choose another --out, or delete \
         {path} and {sidecar} to start over"
    )]
    OtherRequest {
        /// The path as given.
        path: PathBuf,
        /// What the file holds.
        held: String,
        /// What this fetch asks for.
        wanted: String,
        /// The fields that differ.
        differs: String,
        /// The sidecar.
        sidecar: PathBuf,
    },
    /// The file is written in the other time format (exit 2).
    #[error(
        "{path} is written with --time-format {held}, and this run asks for {wanted}: drop \
         --time-format (the file keeps {held}), or delete {path} and {sidecar} to fetch it \
         again as {wanted}"
    )]
    TimeFormat {
        /// The path as given.
        path: PathBuf,
        /// The file's format.
        held: TimeFormat,
        /// The one asked for.
        wanted: TimeFormat,
        /// The sidecar.
        sidecar: PathBuf,
    },
    /// `--with-symbol` on a file written without the column (exit 2).
    #[error(
        "{path} has no symbol column (it was written without --with-symbol or --out-dir): drop \
         --with-symbol (the file keeps its columns), or delete {path} and {sidecar} to fetch it \
         again with one"
    )]
    NoSymbolColumn {
        /// The path as given.
        path: PathBuf,
        /// The sidecar.
        sidecar: PathBuf,
    },
    /// The file is not a CSV this tool wrote (exit 2).
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// The lock or a write failed (exit 1).
    #[error("--out {path}: {source}")]
    Io {
        /// The path as given.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

impl OutError {
    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::NotARegularFile { .. }
            | Self::Busy { .. }
            | Self::OtherRequest { .. }
            | Self::TimeFormat { .. }
            | Self::NoSymbolColumn { .. } => 2,
            Self::Csv(e) => e.exit_code(),
            Self::Io { .. } => 1,
        }
    }
}

/// What a fetch's bars are (two files with different requests never mix) and how its rows
/// are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    /// The contract, e.g. `AAPL STK SMART USD`.
    pub(crate) contract: String,
    /// IB's bar size, e.g. `5 secs`.
    pub(crate) bar_size: String,
    /// IB's whatToShow.
    pub(crate) what_to_show: String,
    /// Regular trading hours only.
    pub(crate) rth: bool,
    /// How the rows are written.
    pub(crate) layout: Layout,
}

impl Identity {
    /// The request in one phrase, for messages: `AAPL STK SMART USD 1 hour TRADES (RTH)`.
    fn describe(&self) -> String {
        format!(
            "{} {} {}{}",
            self.contract,
            self.bar_size,
            self.what_to_show,
            if self.rth { " (RTH)" } else { "" }
        )
    }

    /// The request fields of `self` that differ from `other`, named (the layout is checked on
    /// its own: a resumed file keeps its own).
    fn differences(&self, other: &Self) -> Vec<String> {
        let mut d = Vec::new();
        let mut field = |name: &str, a: &str, b: &str| {
            if a != b {
                d.push(format!("{name}: {a} vs {b}"));
            }
        };
        field("contract", &self.contract, &other.contract);
        field("bar size", &self.bar_size, &other.bar_size);
        field("whatToShow", &self.what_to_show, &other.what_to_show);
        field("rth", &self.rth.to_string(), &other.rth.to_string());
        d
    }
}

/// The identity of sidecar version 2: no layout (epoch / `YYYYMMDD` times, `-1` kept).
#[derive(Debug, Deserialize)]
struct IdentityV2 {
    contract: String,
    bar_size: String,
    what_to_show: String,
    rth: bool,
}

/// A version 2 sidecar, migrated on read.
#[derive(Debug, Deserialize)]
struct SidecarV2 {
    identity: IdentityV2,
    csv: Fingerprint,
    covered: Vec<(i64, i64)>,
    #[serde(default)]
    empty_once: Vec<(i64, i64)>,
}

impl SidecarV2 {
    /// The same record in this build's schema, with [`Layout::LEGACY`].
    fn migrate(self) -> Sidecar {
        let i = self.identity;
        Sidecar {
            version: SIDECAR_VERSION,
            identity: Identity {
                contract: i.contract,
                bar_size: i.bar_size,
                what_to_show: i.what_to_show,
                rth: i.rth,
                layout: Layout::LEGACY,
            },
            csv: self.csv,
            covered: self.covered,
            empty_once: self.empty_once,
        }
    }
}

/// What a fetch asks of its output: the request, the layout a new file gets, and which of it
/// the user asked for explicitly (refused when an existing file differs).
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    /// The request, with the layout of a new file.
    pub(crate) identity: Identity,
    /// `--time-format` as given (`None`: the file's, or ISO for a new file).
    pub(crate) time_format: Option<TimeFormat>,
    /// `--with-symbol` was given: a file without the column is refused.
    pub(crate) symbol_required: bool,
    /// The symbol column's value, should the file have one.
    pub(crate) symbol: String,
    /// The series has no volume (IB's -1 in volume, WAP and count).
    pub(crate) no_volume: bool,
    /// The bar length in seconds for intraday bars (`None`: daily and longer).
    pub(crate) step: Option<i64>,
}

/// What the CSV looked like when the sidecar was written: a CSV edited, truncated or replaced
/// since no longer matches, and its recorded coverage is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    /// Length in bytes.
    pub(crate) bytes: u64,
    /// FNV-1a 64 of the content.
    pub(crate) fnv64: u64,
}

impl Fingerprint {
    /// The fingerprint of `content`.
    pub(crate) fn of(content: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in content {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            bytes: content.len() as u64,
            fnv64: h,
        }
    }
}

/// The sidecar beside the CSV (`FILE.covered.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    /// Schema version ([`SIDECAR_VERSION`]).
    pub(crate) version: u32,
    /// The request the CSV holds.
    pub(crate) identity: Identity,
    /// The CSV as written with this sidecar.
    pub(crate) csv: Fingerprint,
    /// Spans answered (bars, or empty twice), `[start, end)` unix seconds, merged.
    pub(crate) covered: Vec<(i64, i64)>,
    /// Spans answered empty once: asked again next run, final when empty again.
    #[serde(default)]
    pub(crate) empty_once: Vec<(i64, i64)>,
}

/// What an existing `--out` file gives a resume.
#[derive(Debug)]
pub(crate) struct Resume {
    /// Bars in the file.
    pub(crate) bars: Vec<ibconn_core::message::Bar>,
    /// Exact coverage, when the sidecar matches the CSV byte for byte.
    pub(crate) covered: Option<Vec<(i64, i64)>>,
    /// Spans answered empty once (with `covered`).
    pub(crate) empty_once: Vec<(i64, i64)>,
    /// Why a sidecar was not trusted, for a warning.
    pub(crate) note: Option<String>,
    /// How to write the file: its own layout, or a new file's.
    pub(crate) layout: Layout,
}

impl Resume {
    /// Nothing to resume: a new file (or stdout) in `layout`.
    pub(crate) fn fresh(layout: Layout) -> Self {
        Self {
            bars: Vec::new(),
            covered: None,
            empty_once: Vec::new(),
            note: None,
            layout,
        }
    }
}

/// An `--out` file, locked for this process.
#[derive(Debug)]
pub(crate) struct OutFile {
    /// The path as given (for messages).
    shown: PathBuf,
    /// Where the bytes go (a symlink's target).
    path: PathBuf,
    /// `None` for a read-only look ([`OutFile::inspect`]).
    _lock: Option<LockGuard>,
}

impl OutFile {
    /// Open `path` for this fetch: refuse anything but a regular file or a new path, follow a
    /// symlink to its target, and take the exclusive lock (a second fetch fails at once).
    pub(crate) fn open(path: &Path) -> Result<Self, OutError> {
        let mut file = Self::inspect(path)?;
        let shown = &file.shown;
        // LockedFile locks `FILE.lock`: the CSV itself is replaced by rename on every write.
        let guard = LockedFile::new(&file.path)
            .with_lock_timeout(Duration::ZERO)
            .lock()
            .map_err(|e| match e {
                LockedFileError::Busy { path, .. } => OutError::Busy {
                    path: shown.clone(),
                    lock: path,
                },
                LockedFileError::Io { source, .. } => OutError::Io {
                    path: shown.clone(),
                    source,
                },
                other => OutError::Io {
                    path: shown.clone(),
                    source: io::Error::other(other.to_string()),
                },
            })?;
        // Checked again under the lock: the path may have changed while we waited.
        check_kind(&file.shown, &file.path)?;
        file._lock = Some(guard);
        Ok(file)
    }

    /// `path` for reading only (`ibconn plan`): the same checks, no lock.
    pub(crate) fn inspect(path: &Path) -> Result<Self, OutError> {
        let shown = path.to_owned();
        let target = resolve(path).map_err(|source| OutError::Io {
            path: shown.clone(),
            source,
        })?;
        check_kind(&shown, &target)?;
        Ok(Self {
            shown,
            path: target,
            _lock: None,
        })
    }

    /// The sidecar's path.
    pub(crate) fn sidecar_path(&self) -> PathBuf {
        csvio::coverage_path(&self.path)
    }

    /// Read what the file holds for a fetch of `wanted`; refuse another request's file, and a
    /// layout the user asked for that the file does not have.
    pub(crate) fn resume(&self, wanted: &Wanted) -> Result<Resume, OutError> {
        let Some(held) = csvio::read(&self.path)? else {
            // No CSV: a sidecar left behind describes nothing any more.
            let mut fresh = Resume::fresh(wanted.identity.layout.clone());
            fresh.note = self.sidecar_path().exists().then(|| {
                format!(
                    "{} has no CSV beside it; ignored",
                    self.sidecar_path().display()
                )
            });
            return Ok(fresh);
        };
        let sidecar = read_sidecar(&self.sidecar_path());
        let recorded = match &sidecar {
            Some(Ok(s)) => {
                let differs = s.identity.differences(&wanted.identity);
                if !differs.is_empty() {
                    return Err(self.other_request(
                        &s.identity,
                        &wanted.identity,
                        differs.join(", "),
                    ));
                }
                Some(&s.identity.layout)
            }
            _ => None,
        };
        let layout = self.layout_of(&held, recorded, wanted)?;
        self.check_content(&held, wanted, &layout)?;
        let mut resume = Resume {
            bars: held.bars,
            ..Resume::fresh(layout)
        };
        match sidecar {
            Some(Ok(s)) if s.csv == held.fingerprint => {
                resume.covered = Some(s.covered);
                resume.empty_once = s.empty_once;
            }
            Some(Ok(_)) => {
                resume.note = Some(format!(
                    "{} changed since the last run (edited or truncated?): its coverage record \
                     is ignored and chunks without bars are fetched again",
                    self.shown.display()
                ));
            }
            Some(Err(reason)) => {
                resume.note = Some(format!(
                    "{}: {reason}; ignored, chunks without bars are fetched again",
                    self.sidecar_path().display()
                ));
            }
            None => {}
        }
        Ok(resume)
    }

    /// The layout the file keeps: what its rows show, else what its sidecar recorded, else a
    /// new file's. Refused when the user asked for a time format or a symbol column it lacks.
    fn layout_of(
        &self,
        held: &Held,
        recorded: Option<&Layout>,
        wanted: &Wanted,
    ) -> Result<Layout, OutError> {
        let new = &wanted.identity.layout;
        let format = held
            .time_form
            .map(TimeForm::format)
            .or(recorded.map(|l| l.time_format));
        let time_format = match (format, wanted.time_format) {
            (Some(held), Some(asked)) if held != asked => {
                return Err(OutError::TimeFormat {
                    path: self.shown.clone(),
                    held,
                    wanted: asked,
                    sidecar: self.sidecar_path(),
                })
            }
            (Some(held), _) => held,
            (None, _) => new.time_format,
        };
        if wanted.symbol_required && !held.symbol_column {
            return Err(OutError::NoSymbolColumn {
                path: self.shown.clone(),
                sidecar: self.sidecar_path(),
            });
        }
        let missing = held
            .missing
            .or(recorded.map(|l| l.missing))
            .unwrap_or(Missing::Empty);
        Ok(Layout {
            time_format,
            symbol: held.symbol_column.then(|| wanted.symbol.clone()),
            missing,
        })
    }

    /// The rows themselves must fit the request: a sidecar can be lost or copied.
    fn check_content(&self, held: &Held, wanted: &Wanted, layout: &Layout) -> Result<(), OutError> {
        let Some(first) = held.bars.first() else {
            return Ok(());
        };
        let mut found = wanted.identity.clone();
        let mut differs = Vec::new();
        if let Some(symbol) = held.symbol.as_ref().filter(|s| **s != wanted.symbol) {
            found.contract = format!("rows of {symbol}");
            differs.push(format!("its symbol column says {symbol}"));
        }
        let writes = TimeForm::of(layout.time_format, wanted.step.is_none());
        if let Some(form) = held.time_form.filter(|f| *f != writes) {
            found.bar_size = if form.is_daily() {
                "daily bars"
            } else {
                "intraday bars"
            }
            .to_owned();
            differs.push(format!(
                "times are written as {}, this bar size writes {}",
                form.name(),
                writes.name()
            ));
        }
        if let Some((step, off)) = wanted
            .step
            .and_then(|st| held.off_grid(st).map(|off| (st, off)))
        {
            found.bar_size = format!("bars finer than {}", wanted.identity.bar_size);
            differs.push(format!("a bar starts at {off}, off the {step}-second grid"));
        }
        let no_volume = held.bars.iter().all(|b| b.volume < 0.0 && b.count < 0);
        if no_volume != wanted.no_volume {
            found.what_to_show = if no_volume {
                "quote bars"
            } else {
                "trade bars"
            }
            .to_owned();
            differs.push(format!(
                "its bars have {} (first at {:?})",
                if no_volume { "no volume" } else { "volume" },
                first.date
            ));
        }
        if differs.is_empty() {
            return Ok(());
        }
        Err(self.other_request(&found, &wanted.identity, differs.join("; ")))
    }

    /// The refusal of a file holding `held` for a fetch of `wanted`.
    fn other_request(&self, held: &Identity, wanted: &Identity, differs: String) -> OutError {
        OutError::OtherRequest {
            path: self.shown.clone(),
            held: held.describe(),
            wanted: wanted.describe(),
            differs,
            sidecar: self.sidecar_path(),
        }
    }

    /// Replace the CSV with `bars` and then the sidecar, each durably (temp, fsync, rename,
    /// directory fsync). A crash between the two leaves a sidecar whose fingerprint no longer
    /// matches: the next run distrusts it and re-checks, never skips.
    pub(crate) fn write(
        &self,
        bars: &[ibconn_core::message::Bar],
        identity: &Identity,
        covered: Vec<(i64, i64)>,
        empty_once: Vec<(i64, i64)>,
    ) -> Result<(), OutError> {
        let mut csv = Vec::new();
        csvio::write_to(&mut csv, bars, &identity.layout)
            .map_err(|e| self.io(io::Error::other(e)))?;
        replace(&self.path, &csv).map_err(|e| self.io(e))?;
        let sidecar = Sidecar {
            version: SIDECAR_VERSION,
            identity: identity.clone(),
            csv: Fingerprint::of(&csv),
            covered,
            empty_once,
        };
        let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| self.io(io::Error::other(e)))?;
        replace(&self.sidecar_path(), &json).map_err(|e| self.io(e))
    }

    /// An I/O failure on this file.
    fn io(&self, source: io::Error) -> OutError {
        OutError::Io {
            path: self.shown.clone(),
            source,
        }
    }
}

/// The sidecar at `path`: `None` if there is none, `Err` (why) if it cannot be used. A version 2
/// sidecar is migrated ([`SidecarV2::migrate`]).
fn read_sidecar(path: &Path) -> Option<Result<Sidecar, String>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    /// Only the schema version, read first to pick the schema.
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let unreadable = || "an older or unreadable coverage record".to_owned();
    Some(match serde_json::from_str::<Version>(&text) {
        Ok(Version { version: 2 }) => serde_json::from_str::<SidecarV2>(&text)
            .map(SidecarV2::migrate)
            .map_err(|_| unreadable()),
        Ok(Version {
            version: SIDECAR_VERSION,
        }) => serde_json::from_str::<Sidecar>(&text).map_err(|_| unreadable()),
        Ok(Version { version }) => Err(format!(
            "sidecar version {version} (this build reads 2 and {SIDECAR_VERSION})"
        )),
        Err(_) => Err(unreadable()),
    })
}

/// Where writes to `path` land: the final target of a symlink chain, else `path`.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_owned();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// Refuse anything that is not a regular file or a new path.
fn check_kind(shown: &Path, target: &Path) -> Result<(), OutError> {
    let meta = match fs::metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match target.parent() {
                Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(OutError::Io {
                    path: shown.to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("directory {} does not exist", dir.display()),
                    ),
                }),
                _ => Ok(()),
            }
        }
        Err(source) => {
            return Err(OutError::Io {
                path: shown.to_owned(),
                source,
            })
        }
    };
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    let kind = if ft.is_dir() {
        "a directory"
    } else {
        file_kind(&ft)
    };
    Err(OutError::NotARegularFile {
        path: shown.to_owned(),
        kind,
    })
}

/// What a non-regular file is, for the refusal.
#[cfg(unix)]
fn file_kind(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// What a non-regular file is, for the refusal (no finer kinds off Unix).
#[cfg(not(unix))]
fn file_kind(_: &fs::FileType) -> &'static str {
    "not a regular file"
}

/// Replace `path` with `bytes` durably, keeping an existing file's permissions.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = sibling(path, ".partial");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    if let Ok(meta) = fs::metadata(path) {
        file.set_permissions(meta.permissions())?;
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// fsync the directory holding `path`, so the rename survives a power loss.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
