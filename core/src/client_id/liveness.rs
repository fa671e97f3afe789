//! Default holder identity and liveness check for Linux, read from `/proc` (feature `file-store`).
//!
//! A lease holder is identified by pid **and** process start time (so a recycled pid is not mistaken
//! for the holder), the kernel boot id (so leases from before a reboot are dead) and the PID namespace
//! (so a holder in another container is reported [`Liveness::Unknown`] rather than dead). On other
//! platforms every answer is [`Liveness::Unknown`] and leases end by TTL only.
//!
//! This is I/O code (file reads under `/proc`) and lives behind the `file-store` feature.

// The file store (feature `file-store`): files, the process id and lock waits are its job.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use super::{Holder, Liveness};

/// The [`Holder`] describing the calling process, with whatever `/proc` can tell.
pub fn current_holder(label: Option<String>) -> Holder {
    let pid = std::process::id();
    Holder {
        pid,
        start_time: read_stat(pid).ok().and_then(|stat| stat.start_time),
        boot_id: boot_id(),
        pid_namespace: pid_namespace(Path::new("/proc/self/ns/pid")),
        label,
    }
}

/// A name for the calling process that is unique among every process on every host sharing a
/// store: host name, pid and process start time (pid reuse gets another start time), then what
/// it is (`label`), e.g. `box1:4242:88123 (ibconn fetch)`. Owner names in pacing books.
pub fn owner_name(label: &str) -> String {
    let me = current_holder(None);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    match me.start_time {
        Some(start) => format!("{host}:{}:{start} ({label})", me.pid),
        None => format!("{host}:{} ({label})", me.pid),
    }
}

/// Linux liveness check: `Dead` if the boot id differs, `/proc/<pid>` is gone, the process is a zombie,
/// or its start time differs from the recorded one; `Unknown` if the holder lives in another PID
/// namespace or `/proc` cannot be read; else `Alive`.
pub fn linux_liveness(holder: &Holder) -> Liveness {
    if let (Some(theirs), Some(ours)) = (holder.boot_id.as_deref(), boot_id()) {
        if theirs != ours {
            return Liveness::Dead;
        }
    }
    if let (Some(theirs), Some(ours)) = (
        holder.pid_namespace.as_deref(),
        pid_namespace(Path::new("/proc/self/ns/pid")),
    ) {
        if theirs != ours {
            return Liveness::Unknown;
        }
    }
    match read_stat(holder.pid) {
        Err(StatError::Gone) => Liveness::Dead,
        Err(StatError::Unreadable) => Liveness::Unknown,
        Ok(stat) if matches!(stat.state, 'Z' | 'X' | 'x') => Liveness::Dead,
        Ok(stat) => match (holder.start_time, stat.start_time) {
            (Some(recorded), Some(actual)) if recorded != actual => Liveness::Dead,
            _ => Liveness::Alive,
        },
    }
}

#[derive(Debug)]
struct Stat {
    state: char,
    start_time: Option<u64>,
}

#[derive(Debug)]
enum StatError {
    Gone,
    Unreadable,
}

fn read_stat(pid: u32) -> Result<Stat, StatError> {
    if cfg!(not(target_os = "linux")) {
        return Err(StatError::Unreadable);
    }
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StatError::Gone),
        Err(_) => return Err(StatError::Unreadable),
    };
    parse_stat(&text).ok_or(StatError::Unreadable)
}

/// Parses `pid (comm) state ppid … starttime …`; `comm` may contain spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_comm = text.get(text.rfind(')')? + 1..)?;
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; field 22 (starttime) is 19 fields further on.
    let start_time = fields.nth(18).and_then(|f| f.parse().ok());
    Some(Stat { state, start_time })
}

/// This boot's id (Linux `/proc/sys/kernel/random/boot_id`): a different one means a reboot.
pub(crate) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

fn pid_namespace(link: &Path) -> Option<String> {
    std::fs::read_link(link)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "4242 (my (weird) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(line);
        assert_eq!(stat.as_ref().map(|s| s.state), Some('S'));
        assert_eq!(stat.and_then(|s| s.start_time), Some(987_654));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn we_are_alive_and_a_recycled_pid_is_not() {
        let me = current_holder(None);
        assert!(me.start_time.is_some());
        assert_eq!(linux_liveness(&me), Liveness::Alive);
        let impostor = Holder {
            start_time: me.start_time.map(|t| t + 1),
            ..me.clone()
        };
        assert_eq!(linux_liveness(&impostor), Liveness::Dead);
        let old_boot = Holder {
            boot_id: Some("not-this-boot".to_owned()),
            ..me
        };
        assert_eq!(linux_liveness(&old_boot), Liveness::Dead);
    }
}
