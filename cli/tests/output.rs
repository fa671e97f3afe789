//! `fetch --out` hazards: what may be written, which file may be resumed, who may write it, and
//! what survives a signal. Each test failed before the output was hardened (issue 12).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{ibconn_in, ibconn_std, ibconn_std_in, scratch, Serve};

const WEEK: [&str; 4] = ["--from", "2025-11-03", "--to", "2025-11-08"];

/// `ibconn fetch SYMBOL --bar BAR [extra] --out OUT` over [`WEEK`] on the embedded simulator.
fn fetch(
    dir: &Path,
    symbol: &str,
    bar: &str,
    extra: &[&str],
    out: &str,
) -> assert_cmd::assert::Assert {
    fetch_range(dir, symbol, bar, &[&WEEK[..], extra].concat(), out)
}

/// `ibconn fetch SYMBOL --bar BAR ARGS --out OUT` on the embedded simulator in `dir`.
fn fetch_range(
    dir: &Path,
    symbol: &str,
    bar: &str,
    args: &[&str],
    out: &str,
) -> assert_cmd::assert::Assert {
    ibconn_in(dir)
        .args(["fetch", symbol, "--bar", bar])
        .args(args)
        .args(["--out", out])
        .assert()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn only_a_regular_file_or_a_new_path_is_written() {
    let dir = scratch("out-kinds");
    // A FIFO used to hang (the old code read it to resume); a device read until OOM.
    let fifo = dir.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (out, kind) in [
        (fifo.to_str().unwrap(), "FIFO"),
        ("/dev/zero", "character device"),
    ] {
        let started = Instant::now();
        let a = fetch(&dir, "AAPL", "1h", &[], out).code(2);
        assert!(stderr(&a).contains(kind), "{}", stderr(&a));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "refused at once"
        );
    }
    assert!(fifo.exists(), "the FIFO was not replaced");
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let a = fetch(&dir, "AAPL", "1h", &[], sub.to_str().unwrap()).code(2);
    assert!(stderr(&a).contains("a directory"));
    assert!(sub.is_dir());
}

#[test]
fn a_symlink_is_written_through_to_its_target() {
    let dir = scratch("out-symlink");
    let target = dir.join("data").join("aapl.csv");
    std::fs::create_dir(dir.join("data")).unwrap();
    std::os::unix::fs::symlink("data/aapl.csv", dir.join("link.csv")).unwrap();
    fetch(&dir, "AAPL", "1h", &[], "link.csv").success();
    let link = std::fs::symlink_metadata(dir.join("link.csv")).unwrap();
    assert!(link.file_type().is_symlink(), "the link is still a link");
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.lines().count() > 10, "the bars went to the target");
    assert!(dir.join("data").join("aapl.csv.covered.json").exists());
}

#[test]
fn dash_means_stdout() {
    let dir = scratch("out-dash");
    let a = fetch(&dir, "AAPL", "1h", &[], "-").success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.starts_with("time,open,high,low,close,volume,wap,count\n"));
    assert!(!dir.join("-").exists(), "no file named '-'");
    // The summary would land in the same stream as the bars.
    let a = fetch(&dir, "AAPL", "1h", &["--json"], "-").code(2);
    assert!(stderr(&a).contains("--summary-json"), "{}", stderr(&a));
}

#[test]
fn another_requests_file_is_refused_and_left_alone() {
    let dir = scratch("out-other");
    fetch(&dir, "AAPL", "1h", &[], "aapl.csv").success();
    let before = std::fs::read(dir.join("aapl.csv")).unwrap();
    for (symbol, bar, extra, differs) in [
        ("MSFT", "1h", &[][..], "contract"),
        ("AAPL", "1h", &["--rth"][..], "rth"),
        ("AAPL", "1h", &["--what", "MIDPOINT"][..], "whatToShow"),
        ("AAPL", "1d", &[][..], "bar size"),
        ("AAPL", "5s", &[][..], "bar size"),
    ] {
        let a = fetch(&dir, symbol, bar, extra, "aapl.csv").code(2);
        let err = stderr(&a);
        assert!(err.contains(differs), "{symbol} {bar} {extra:?}: {err}");
        assert_eq!(std::fs::read(dir.join("aapl.csv")).unwrap(), before);
    }
    // Without the sidecar the rows themselves still tell: quote bars have no volume, daily
    // files are written as YYYYMMDD, a 5-second file is off the hourly grid.
    std::fs::remove_file(dir.join("aapl.csv.covered.json")).unwrap();
    fetch(&dir, "AAPL", "5s", &["--what", "MIDPOINT"], "mid.csv").success();
    fetch(&dir, "AAPL", "1d", &[], "daily.csv").success();
    for (file, bar, extra) in [
        ("aapl.csv", "1h", &["--what", "MIDPOINT"][..]),
        ("mid.csv", "5s", &[][..]),
        ("daily.csv", "1h", &[][..]),
        ("aapl.csv", "1d", &[][..]),
    ] {
        std::fs::remove_file(dir.join(format!("{file}.covered.json"))).ok();
        let before = std::fs::read(dir.join(file)).unwrap();
        let a = fetch(&dir, "AAPL", bar, extra, file).code(2);
        assert!(
            stderr(&a).contains("not AAPL"),
            "{file} as {bar}: {}",
            stderr(&a)
        );
        assert_eq!(std::fs::read(dir.join(file)).unwrap(), before);
    }
    let a = fetch(&dir, "AAPL", "1h", &["--what", "MIDPOINT"], "mid.csv").code(2);
    assert!(stderr(&a).contains("grid"), "{}", stderr(&a));
}

#[test]
fn a_file_that_is_not_ours_is_never_overwritten() {
    let dir = scratch("out-foreign");
    std::fs::write(dir.join("notes.csv"), "remember the milk\n").unwrap();
    let a = fetch(&dir, "AAPL", "1h", &[], "notes.csv").code(2);
    assert!(stderr(&a).contains("not an ibconn CSV"));
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.csv")).unwrap(),
        "remember the milk\n"
    );
}

#[test]
fn a_deleted_or_truncated_csv_is_fetched_again_despite_its_sidecar() {
    let dir = scratch("out-truncated");
    let day = ["--from", "2025-11-03", "--to", "2025-11-04"];
    let fetch = |dir: &Path, symbol: &str, bar: &str, _: &[&str], out: &str| {
        fetch_range(dir, symbol, bar, &day, out)
    };
    fetch(&dir, "AAPL", "5s", &["--to", "2025-11-04"], "clean.csv").success();
    let clean = std::fs::read_to_string(dir.join("clean.csv")).unwrap();
    assert!(clean.lines().count() > 1000);

    // Deleted with its sidecar left: the old code skipped every chunk and wrote a header.
    fetch(&dir, "AAPL", "5s", &["--to", "2025-11-04"], "gone.csv").success();
    std::fs::remove_file(dir.join("gone.csv")).unwrap();
    fetch(&dir, "AAPL", "5s", &["--to", "2025-11-04"], "gone.csv").success();
    assert_eq!(
        std::fs::read_to_string(dir.join("gone.csv")).unwrap(),
        clean
    );

    // Truncated by hand to its first half: the old code trusted the sidecar and never fetched
    // the second half again.
    fetch(&dir, "AAPL", "5s", &["--to", "2025-11-04"], "cut.csv").success();
    let half: String = clean
        .lines()
        .take(clean.lines().count() / 2)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("cut.csv"), half).unwrap();
    let a = fetch(&dir, "AAPL", "5s", &["--to", "2025-11-04"], "cut.csv").success();
    assert!(
        stderr(&a).contains("changed since the last run"),
        "{}",
        stderr(&a)
    );
    assert_eq!(std::fs::read_to_string(dir.join("cut.csv")).unwrap(), clean);
}

/// `ibconn sim --listen` at IB's own pacing (a day of 5-second bars takes ~10 s).
fn gateway() -> Serve {
    let mut cmd = ibconn_std();
    // Its clock a few days after the range: IB serves 5-second bars only ~6 months back.
    cmd.args(["sim", "--listen", "127.0.0.1:0", "--seed", "3"])
        .args(["--wall-clock", "20251110-00:00:00"]);
    Serve::spawn(cmd)
}

/// A wall-time fetch of one day of AAPL 5-second bars into `dir/out`.
fn gateway_fetch(dir: &Path, addr: &str, out: &str) -> Command {
    let mut cmd = ibconn_std_in(dir);
    cmd.args([
        "fetch",
        "AAPL",
        "--bar",
        "5s",
        "--from",
        "2025-11-04",
        "--to",
        "2025-11-05",
    ])
    .args(["--gateway", addr, "--out", out])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two fetches into one file: the second is refused at once (it used to splice rows). SIGTERM
/// (`docker stop`) mid-fetch writes what was fetched and exits "partial"; running the command
/// again completes the file, byte for byte what an uninterrupted run writes.
#[test]
fn one_writer_per_file_and_sigterm_then_resume_equals_a_clean_run() {
    let sim = gateway();
    let dir = scratch("out-sigterm");
    let mut first = gateway_fetch(&dir, &sim.addr, "a.csv").spawn().unwrap();
    wait_for(&dir.join("a.csv.lock"));
    std::thread::sleep(Duration::from_millis(300));
    let second = gateway_fetch(&dir, &sim.addr, "a.csv").output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another fetch is writing"));

    std::thread::sleep(Duration::from_secs(2));
    let killed = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = first.wait().unwrap();
    let mut err = String::new();
    first
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(3), "partial after SIGTERM: {err}");
    assert!(err.contains("interrupted"), "{err}");
    let partial = std::fs::read_to_string(dir.join("a.csv")).unwrap();

    let resumed = gateway_fetch(&dir, &sim.addr, "a.csv").output().unwrap();
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let clean = gateway_fetch(&dir, &sim.addr, "clean.csv")
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0));
    let clean = std::fs::read(dir.join("clean.csv")).unwrap();
    assert!(
        partial.len() > 50 && partial.len() < clean.len(),
        "the first run was cut short"
    );
    assert_eq!(std::fs::read(dir.join("a.csv")).unwrap(), clean);
}

/// `ibconn config | true`: the reader went away; the old code panicked (exit 101).
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = scratch("out-pipe");
    for args in [&["config"][..], &["explain", "162", "pacing violation"][..]] {
        // A pipe whose reader is gone before the child starts: every write gets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = ibconn_std_in(&dir)
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}");
    }
}

/// The embedded simulator had no signal handling at all: SIGTERM killed it with nothing written.
/// Now it stops like a gateway fetch: what was fetched is written, exit 3.
#[test]
fn sigterm_stops_an_embedded_fetch_with_its_bars_written() {
    let dir = scratch("out-sigterm-embedded");
    // Three months of 5-second bars: over 2,000 chunks, seconds of wall time even in release.
    let mut child = ibconn_std_in(&dir)
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "5s",
            "--from",
            "2025-09-01",
            "--to",
            "2025-12-01",
        ])
        .args(["--out", "long.csv"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&dir.join("long.csv.lock"));
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    if status.code() == Some(0) {
        // The run beat the signal (a very fast machine): nothing to check.
        return;
    }
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let rows = std::fs::read_to_string(dir.join("long.csv"))
        .unwrap()
        .lines()
        .count();
    assert!(rows > 1, "the bars fetched before the signal were written");
    assert!(dir.join("long.csv.covered.json").exists());
}

/// `ibconn fetch … | head -1`: the reader leaving early is not a failure — exit 0, no
/// "Broken pipe" error (it used to exit 1 with one).
#[test]
fn a_reader_that_leaves_early_is_not_a_failure() {
    let dir = scratch("out-closed-pipe");
    let mut child = ibconn_std_in(&dir)
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "1min",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-04",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    out.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"time,"), "{first:?}");
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
}
