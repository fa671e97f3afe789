//! File-store tests for the client-id registry (feature `file-store`): many processes on one file, a
//! SIGKILLed holder, a corrupt file, permissions.
//!
//! Child processes are this test binary re-executed with `IBCONN_REGISTRY_CHILD` set; the
//! `child_entry` test is a no-op unless that variable is present.
#![cfg(feature = "file-store")]
// A test of the file store: files, processes and clocks are what it exercises.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ibconn_core::client_id::liveness::{current_holder, linux_liveness};
use ibconn_core::client_id::store::{FileStore, StoreError};
use ibconn_core::client_id::{
    ttl_only, Purpose, ReclaimReason, RegistryConfig, RegistryState, UnixMillis,
};

const CHILD_ENV: &str = "IBCONN_REGISTRY_CHILD";
const PROCESSES: usize = 8;
const CYCLES: usize = 1000;

/// Tests are not the core: they may read the wall clock.
fn wall_now() -> UnixMillis {
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    UnixMillis(
        now.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
    )
}

#[allow(clippy::panic)] // test helper
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("registry-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

#[allow(clippy::panic)] // test helper
fn spawn_child(mode: &str, args: &[(&str, &Path)]) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode);
    for (k, v) in args {
        cmd.env(k, v);
    }
    cmd
}

/// Child-process entry point; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(std::env::var("IBCONN_REGISTRY_FILE").unwrap_or_default());
    // Eight processes hammer one lock here: allow for the queue (the default deadline is 1 s).
    let store = FileStore::new(&path).with_lock_timeout(Duration::from_secs(60));
    let config = RegistryConfig::default();
    let me = current_holder(Some(format!("test child {mode}")));
    match mode.as_str() {
        "churn" => {
            let witness = PathBuf::from(std::env::var("IBCONN_WITNESS_DIR").unwrap_or_default());
            let mut double = 0;
            let mut ids = BTreeSet::new();
            for _ in 0..CYCLES {
                let grant = store
                    .allocate(
                        &config,
                        &Purpose::Backfill,
                        &me,
                        wall_now(),
                        &linux_liveness,
                    )
                    .unwrap_or_else(|e| panic!("allocate: {e}"));
                ids.insert(grant.id);
                // An independent witness: creating `<id>` fails if another process holds the same id.
                let mark = witness.join(grant.id.to_string());
                match fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&mark)
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => double += 1,
                    Err(e) => panic!("witness {}: {e}", mark.display()),
                }
                std::thread::yield_now();
                let _ = fs::remove_file(&mark);
                store
                    .release(&grant, wall_now())
                    .unwrap_or_else(|e| panic!("release: {e}"));
            }
            println!("CHILD-RESULT double={double} distinct_ids={}", ids.len());
        }
        "hold" => {
            let now = wall_now();
            let ids: Vec<String> = (0..3)
                .map(|_| store.allocate(&config, &Purpose::Backfill, &me, now, &linux_liveness))
                .map(|g| g.map_or_else(|e| panic!("allocate: {e}"), |g| g.id.to_string()))
                .collect();
            println!("CHILD-READY now={} ids={}", now.0, ids.join(","));
            // Wait to be SIGKILLed; exit on our own after a while so a broken parent cannot hang CI.
            #[allow(clippy::disallowed_methods)] // a test child process, not the core
            std::thread::sleep(Duration::from_secs(120));
            std::process::exit(3);
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn eight_processes_never_share_an_id() {
    let dir = scratch_dir("churn");
    let file = dir.join("client_ids.json");
    let witness = dir.join("witness");
    fs::create_dir_all(&witness).unwrap_or_else(|e| panic!("{e}"));
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            spawn_child(
                "churn",
                &[
                    ("IBCONN_REGISTRY_FILE", &file),
                    ("IBCONN_WITNESS_DIR", &witness),
                ],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"))
        })
        .collect();
    let mut max_distinct = 0;
    for child in children {
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        // libtest prints "test child_entry ... " before our line, so look for the marker anywhere.
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("CHILD-RESULT").map(|(_, rest)| rest))
            .unwrap_or_default();
        assert!(line.contains("double=0"), "an id was held twice: {line}");
        let distinct: usize = line
            .rsplit("distinct_ids=")
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_default();
        max_distinct = max_distinct.max(distinct);
    }
    // The processes really overlapped: some child had to use more than the lowest id.
    assert!(max_distinct > 1, "no contention observed");
    let state = FileStore::new(&file)
        .load(wall_now())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        state.leases.is_empty(),
        "all ids released: {:?}",
        state.leases.keys()
    );
    assert_eq!(state.next_generation, 1 + (PROCESSES * CYCLES) as u64);
}

#[test]
fn sigkilled_holder_ids_are_reclaimed() {
    let dir = scratch_dir("sigkill");
    let file = dir.join("client_ids.json");
    let mut child = spawn_child("hold", &[("IBCONN_REGISTRY_FILE", &file)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("CHILD-READY").map(|(_, rest)| rest.to_owned()))
        .unwrap_or_else(|| panic!("child never got ready"));
    child.kill().unwrap_or_else(|e| panic!("SIGKILL: {e}")); // Child::kill sends SIGKILL on Unix
    let _ = child.wait();
    let field = |name: &str| {
        ready
            .split(' ')
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    let granted_at = UnixMillis(field("now=").parse().unwrap_or_default());
    let ids: BTreeSet<i32> = field("ids=")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(ids.len(), 3);

    let config = RegistryConfig::default();
    let ttl = config.lease_ttl;
    let ttl_store = FileStore::new(&file);
    let liveness_store = FileStore::new(dir.join("copy.json"));
    fs::copy(&file, liveness_store.path()).unwrap_or_else(|e| panic!("{e}"));

    // TTL only: before the TTL the dead holder's ids stay leased; a newcomer gets another id.
    let before_ttl = granted_at.plus(ttl / 2);
    let me = current_holder(None);
    let newcomer = ttl_store.allocate(&config, &Purpose::Backfill, &me, before_ttl, &ttl_only);
    assert!(
        newcomer.as_ref().is_ok_and(|g| !ids.contains(&g.id)),
        "{newcomer:?}"
    );
    // After the TTL they are reclaimed as expired.
    let reclaimed = ttl_store
        .reclaim_stale(granted_at.plus(ttl), &ttl_only)
        .unwrap_or_else(|e| panic!("{e}"));
    let expired: BTreeSet<i32> = reclaimed
        .iter()
        .filter(|r| r.reason == ReclaimReason::Expired)
        .map(|r| r.id)
        .collect();
    assert!(ids.is_subset(&expired), "{reclaimed:?}");

    // With the /proc liveness check they are reclaimed at once: the holder is gone.
    let reclaimed = liveness_store
        .reclaim_stale(before_ttl, &linux_liveness)
        .unwrap_or_else(|e| panic!("{e}"));
    let gone: BTreeSet<i32> = reclaimed
        .iter()
        .filter(|r| r.reason == ReclaimReason::HolderGone)
        .map(|r| r.id)
        .collect();
    assert_eq!(gone, ids);
}

#[test]
fn corrupt_file_is_preserved_and_reported() {
    let dir = scratch_dir("corrupt");
    let file = dir.join("client_ids.json");
    let garbage = b"{\"schema_version\": 1, \"leases\": {\"1000\": tru";
    fs::write(&file, garbage).unwrap_or_else(|e| panic!("{e}"));
    let store = FileStore::new(&file);
    let now = UnixMillis(1_700_000_000_000);
    let result = store.allocate(
        &RegistryConfig::default(),
        &Purpose::Api,
        &current_holder(None),
        now,
        &ttl_only,
    );
    let Err(StoreError::Corrupt { preserved_at, .. }) = result else {
        panic!("expected Corrupt, got {result:?}")
    };
    assert_eq!(
        fs::read(&preserved_at).ok().as_deref(),
        Some(&garbage[..]),
        "corrupt content preserved"
    );
    assert!(!file.exists(), "corrupt file moved aside, not overwritten");
    let message = StoreError::Corrupt {
        path: file.clone(),
        preserved_at: preserved_at.clone(),
        reason: String::new(),
    };
    assert!(message.to_string().contains("preserved at"));
    // The next caller starts a fresh registry (and a second corruption gets its own copy).
    assert!(store
        .allocate(
            &RegistryConfig::default(),
            &Purpose::Api,
            &current_holder(None),
            now,
            &ttl_only
        )
        .is_ok());
    fs::write(&file, b"not json").unwrap_or_else(|e| panic!("{e}"));
    let second = store.load(now);
    assert!(
        matches!(&second, Err(StoreError::Corrupt { preserved_at: p, .. }) if *p != preserved_at),
        "{second:?}"
    );
}

#[test]
fn newer_schema_is_left_untouched() {
    let dir = scratch_dir("schema");
    let file = dir.join("client_ids.json");
    let future = br#"{"schema_version": 2, "whatever": []}"#;
    fs::write(&file, future).unwrap_or_else(|e| panic!("{e}"));
    let result = FileStore::new(&file).load(UnixMillis(0));
    assert!(
        matches!(
            result,
            Err(StoreError::UnsupportedSchema {
                found: 2,
                supported: 1,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(fs::read(&file).ok().as_deref(), Some(&future[..]));
}

#[test]
#[cfg(unix)]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch_dir("mode");
    let file = dir.join("client_ids.json");
    let store = FileStore::new(&file);
    let grant = store
        .allocate(
            &RegistryConfig::default(),
            &Purpose::Cli,
            &current_holder(None),
            UnixMillis(1),
            &ttl_only,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(grant.id, 6000);
    for path in [file.clone(), dir.join("client_ids.json.lock")] {
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default();
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let state: RegistryState = store.load(UnixMillis(2)).unwrap_or_else(|e| panic!("{e}"));
    assert!(state.holds(&grant));
}
