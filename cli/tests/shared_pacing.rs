//! IB counts historical pacing per gateway, across every API client: several `ibconn fetch`
//! processes on one host share one budget through the file store. Real processes, a real
//! `ibconn sim --listen` over TCP, and the simulator's own count of 162 pacing refusals.
//!
//! IB's windows (10 min, 15 s, 2 s) are scaled by [`SCALE`] on both sides (`--pace-scale` for
//! the simulator, `[pacing]` in the processes' `ibconn.toml`) so the run takes half a minute.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers

mod common;
#[path = "../../redis-store/tests/common/mod.rs"]
mod redis_common;

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use common::{ibconn_std_in, scratch};
use serde_json::Value;

/// IB's pacing windows times this.
const SCALE: f64 = 0.05;
/// IB's historical window (600 s) as scaled.
const WINDOW_SECS: f64 = 600.0 * SCALE;

/// `ibconn sim --listen` with its stdout kept open (it prints the violation count on SIGTERM).
struct Gateway {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: String,
}

impl Gateway {
    fn start(dir: &Path) -> Self {
        let mut child = ibconn_std_in(dir)
            .args(["sim", "--listen", "127.0.0.1:0", "--pace-scale"])
            .arg(SCALE.to_string())
            // The fetches ask for December 2025's 5-second bars: pin the gateway's clock within
            // IB's six months of small-bar history, whatever the date the test runs on.
            .args(["--wall-clock", "20260106-15:00:00"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first.strip_prefix("listening on ").unwrap().to_owned();
        Self { child, lines, addr }
    }

    /// SIGTERM, then the simulator's count of pacing violations over every connection.
    fn stop(mut self) -> u64 {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let line = self.lines.next().unwrap().unwrap();
        let _ = self.child.wait();
        line.strip_prefix("pacing violations: ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ibconn.toml` with IB's windows scaled like the simulator's, and the pacing claims with them
/// (heartbeat 1 s, claim TTL 3 s: a book Redis makes afresh settles for a third of the TTL).
/// Every chunk is asked, closed sessions included: these runs measure the shared budget, so the
/// night hours of their ranges count as requests.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ibconn.toml");
    std::fs::write(
        &path,
        format!(
            "[pool]\nheartbeat_interval_secs = 1.0\n[coordination]\nclaim_ttl_secs = 3.0\n\
             [pacing]\nhistorical_window_secs = {}\nidentical_gap_secs = {}\n\
             burst_window_secs = {}\nmargin_secs = {}\n\
             [fetch]\nskip_closed_sessions = false\n",
            600.0 * SCALE,
            15.0 * SCALE,
            2.0 * SCALE,
            // The margin stays IB's default: it absorbs send lateness, which a loaded 2-core
            // machine does not scale down.
            0.25
        ),
    )
    .unwrap();
    path
}

/// A fetch of `hours` one-hour chunks of 5-second bars into `dir/SYMBOL.csv`, sharing the state
/// directory `state` (the registry and the pacing books) with the other processes; `store`
/// overrides `coordination.store`.
fn fetch(
    dir: &Path,
    state: &Path,
    config: &Path,
    gateway: &str,
    symbol: &str,
    hours: u32,
    store: Option<&str>,
) -> Child {
    fetch_cmd(dir, state, config, gateway, symbol, hours, store)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The command line of [`fetch`], stdout piped, stderr not set.
fn fetch_cmd(
    dir: &Path,
    state: &Path,
    config: &Path,
    gateway: &str,
    symbol: &str,
    hours: u32,
    store: Option<&str>,
) -> Command {
    let to = format!("2025-12-{:02}T{:02}:00:00Z", 1 + hours / 24, hours % 24);
    let mut cmd = ibconn_std_in(dir);
    if let Some(store) = store {
        // Only what IBCONN_COORDINATION_STORE names is shared between the "hosts".
        cmd.env("IBCONN_COORDINATION_STORE", store);
    }
    cmd.env("XDG_STATE_HOME", state)
        .arg("--config")
        .arg(config)
        .args([
            "fetch",
            symbol,
            "--bar",
            "5s",
            "--from",
            "2025-12-01",
            "--to",
            &to,
        ])
        .args(["--gateway", gateway, "--json", "--out"])
        .arg(dir.join(format!("{symbol}.csv")))
        .stdout(Stdio::piped());
    cmd
}

/// One shared-pacing run at a time: each is pacing-bound, not CPU-bound, and two at once on a
/// 2-core machine only add scheduling noise.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs one fetch per `(symbol, state dir)` at once against a fresh simulator and checks that
/// together they stay inside IB's per-gateway budget: every fetch complete, no 162 at any
/// process nor at the simulator, and no faster than IB's minimum for the combined requests.
fn run_shared(name: &str, runs: &[(&str, &str)], hours: u32, store: Option<&str>) -> Plans {
    let _one = one_at_a_time();
    let dir = scratch(name);
    let config = write_config(&dir);
    let gateway = Gateway::start(&dir);
    let started = Instant::now();
    let children: Vec<(String, Child)> = runs
        .iter()
        .map(|(symbol, host)| {
            let run = dir.join(symbol);
            std::fs::create_dir_all(&run).unwrap();
            let state = dir.join(host);
            let child = fetch(&run, &state, &config, &gateway.addr, symbol, hours, store);
            ((*symbol).to_owned(), child)
        })
        .collect();
    // While they run: `plan` on one host sees them in the shared book, and waits behind them.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let plans = Plans {
        shared: plan(&dir, &dir.join(runs[0].1), &config, &gateway.addr, store),
        alone: plan(
            &dir,
            &dir.join("nobody"),
            &config,
            &gateway.addr,
            Some("memory"),
        ),
    };
    let mut requests = 0;
    for (symbol, child) in children {
        let out = child.wait_with_output().unwrap();
        let summary: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{symbol}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(out.status.code(), Some(0), "{symbol}: {summary}");
        assert_eq!(summary["pacing_violations"], 0, "{symbol}: {summary}");
        assert_eq!(summary["job"]["progress"]["chunks_failed"], 0, "{symbol}");
        assert!(summary["bars"].as_u64() > Some(0), "{symbol}: {summary}");
        println!(
            "{symbol}: {} requests, {} bars, {} pacing waits",
            summary["requests"], summary["bars"], summary["pacing_waits"]
        );
        requests += summary["requests"].as_u64().unwrap();
    }
    let makespan = started.elapsed().as_secs_f64();
    assert!(requests >= 100, "{requests} requests");
    // IB's minimum for the combined requests: the 61st can go one window after the first.
    let minimum = ((requests - 1) / 60) as f64 * WINDOW_SECS;
    println!(
        "{name}: {requests} requests from {} processes in {makespan:.2} s; minimum \
         {minimum:.2} s; ratio {:.3}",
        runs.len(),
        makespan / minimum
    );
    assert!(
        makespan >= minimum,
        "faster than IB allows: the budget was not shared"
    );
    assert_eq!(gateway.stop(), 0, "the gateway counted pacing violations");
    plans
}

/// `ibconn plan --json` reports of one more fetch, made while a shared run was going.
struct Plans {
    /// Through the run's store.
    shared: Value,
    /// Through a private (memory) store: what the plan would say alone.
    alone: Value,
}

/// `ibconn plan --json` for a day of IWM 5-second bars on `gateway`, sharing `state`.
fn plan(dir: &Path, state: &Path, config: &Path, gateway: &str, store: Option<&str>) -> Value {
    let mut cmd = ibconn_std_in(dir);
    if let Some(store) = store {
        cmd.env("IBCONN_COORDINATION_STORE", store);
    }
    let out = cmd
        .env("XDG_STATE_HOME", state)
        .arg("--config")
        .arg(config)
        .args([
            "plan",
            "IWM",
            "--bar",
            "5s",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-02",
        ])
        .args(["--gateway", gateway, "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn four_processes_on_one_host_share_one_pacing_budget_through_the_file_store() {
    let one_host = [
        ("AAPL", "state"),
        ("MSFT", "state"),
        ("SPY", "state"),
        ("QQQ", "state"),
    ];
    let plans = run_shared("shared-file", &one_host, 26, None);
    let shared = &plans.shared["shared"];
    assert!(
        shared["owners"].as_array().is_some_and(|o| o.len() >= 2),
        "plan sees the fetches in the shared book: {shared}"
    );
    assert!(
        shared["historical_weight_in_window"].as_u64() > Some(0),
        "{shared}"
    );
    assert!(
        plans.shared["estimate_secs"].as_u64() > plans.alone["estimate_secs"].as_u64(),
        "the shared estimate waits behind the others: {} vs {} alone",
        plans.shared["estimate_secs"],
        plans.alone["estimate_secs"]
    );
}

#[test]
fn three_hosts_share_one_pacing_budget_through_redis() {
    let Some(redis) = redis_common::RedisServer::start().unwrap() else {
        return;
    };
    // Separate state directories: nothing is shared but the Redis server.
    let hosts = [("AAPL", "host-a"), ("MSFT", "host-b"), ("SPY", "host-c")];
    let plans = run_shared("shared-redis", &hosts, 35, Some(&redis.url()));
    assert!(plans.shared["shared"]["store"]
        .as_str()
        .is_some_and(|s| s.starts_with("redis://")));
}

/// The same fetch run twice in a row by two processes (the README's "Ctrl-C, run it again", or
/// two users asking for the same data): the second process's requests are identical to the
/// first's, and IB refuses identical requests within 15 s. The shared book makes it wait.
#[test]
fn the_same_request_from_two_processes_back_to_back_waits_the_identical_gap() {
    let _one = one_at_a_time();
    let dir = scratch("back-to-back");
    let config = write_config(&dir);
    let gateway = Gateway::start(&dir);
    let state = dir.join("state");
    let mut waits = Vec::new();
    for run in ["first", "second"] {
        let out_dir = dir.join(run);
        std::fs::create_dir_all(&out_dir).unwrap();
        let child = fetch(&out_dir, &state, &config, &gateway.addr, "AAPL", 2, None);
        let out = child.wait_with_output().unwrap();
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{run}: {summary}");
        assert_eq!(summary["pacing_violations"], 0, "{run}: {summary}");
        waits.push(summary["pacing_waits"].as_u64().unwrap());
    }
    assert!(
        waits[1] > 0,
        "the second process waited for the first one's identical requests: {waits:?}"
    );
    assert_eq!(gateway.stop(), 0, "the gateway counted pacing violations");
}

/// `kill -9` of one fetch while three share the budget: its unsent reservations lapse with its
/// claim (3 s here), the others finish every chunk, and the gateway sees no violation.
#[test]
fn a_killed_process_frees_its_reservations_and_the_others_finish() {
    let _one = one_at_a_time();
    let dir = scratch("killed");
    let config = write_config(&dir);
    let gateway = Gateway::start(&dir);
    let state = dir.join("state");
    let mut children: Vec<(&str, Child)> = ["AAPL", "MSFT", "SPY"]
        .into_iter()
        .map(|s| {
            let run = dir.join(s);
            std::fs::create_dir_all(&run).unwrap();
            (s, fetch(&run, &state, &config, &gateway.addr, s, 26, None))
        })
        .collect();
    // 78 requests for a budget of 60 per window: some wait, then one process dies mid-run.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (_, victim) = children.remove(0);
    let mut victim = victim;
    victim.kill().unwrap();
    let _ = victim.wait();
    for (symbol, child) in children {
        let out = child.wait_with_output().unwrap();
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{symbol}: {summary}");
        assert_eq!(summary["pacing_violations"], 0, "{symbol}: {summary}");
        assert_eq!(summary["job"]["progress"]["chunks_failed"], 0, "{symbol}");
    }
    assert_eq!(gateway.stop(), 0, "the gateway counted pacing violations");
}

/// Redis killed mid-run and started again empty: the fetches wait while it is down and say so,
/// put the lost book back when it returns, and finish every chunk with no violation.
#[test]
fn a_redis_restart_mid_run_loses_no_chunk_and_causes_no_violation() {
    let Some(mut redis) = redis_common::RedisServer::start().unwrap() else {
        return;
    };
    let _one = one_at_a_time();
    let dir = scratch("redis-restart");
    let config = write_config(&dir);
    let gateway = Gateway::start(&dir);
    let url = redis.url();
    let children: Vec<(&str, Child)> = [("AAPL", "host-a"), ("MSFT", "host-b")]
        .into_iter()
        .map(|(symbol, host)| {
            let run = dir.join(symbol);
            std::fs::create_dir_all(&run).unwrap();
            let state = dir.join(host);
            let mut cmd = fetch_cmd(&run, &state, &config, &gateway.addr, symbol, 35, Some(&url));
            (symbol, cmd.stderr(Stdio::piped()).spawn().unwrap())
        })
        .collect();
    // 70 requests for a budget of 60 per window: the run is pacing-bound when Redis goes.
    std::thread::sleep(std::time::Duration::from_secs(3));
    redis.kill();
    std::thread::sleep(std::time::Duration::from_secs(2));
    redis.restart().unwrap();
    let mut said = String::new();
    for (symbol, child) in children {
        let out = child.wait_with_output().unwrap();
        let summary: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{symbol}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{symbol}: {summary}");
        assert_eq!(summary["pacing_violations"], 0, "{symbol}: {summary}");
        let p = &summary["job"]["progress"];
        assert_eq!(p["chunks_failed"], 0, "{symbol}: {summary}");
        assert_eq!(
            p["chunks_done"], p["chunks_total"],
            "{symbol}: no chunk lost"
        );
        said.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        said.contains("is unavailable") && said.contains("none is sent unpaced"),
        "a clear message while it waits: {said}"
    );
    assert!(said.contains("answers again"), "{said}");
    assert_eq!(gateway.stop(), 0, "the gateway counted pacing violations");
}
