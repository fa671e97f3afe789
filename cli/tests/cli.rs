//! End-to-end tests of the `ibconn` binary on the embedded simulator (virtual time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::Path;

use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::{ibconn, ibconn_std, scratch, Serve};

/// The data rows of a CSV file (header checked and dropped).
fn rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("time,open,high,low,close,volume,wap,count")
    );
    lines.map(str::to_owned).collect()
}

/// The time column: ISO-8601 UTC, fixed width, so its text order is time order.
fn times(rows: &[String]) -> Vec<&str> {
    rows.iter()
        .map(|r| {
            let t = r.split(',').next().unwrap();
            assert!(t.len() == 20 && t.ends_with('Z'), "{t}");
            t
        })
        .collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fetch(dir: &Path, args: &[&str]) -> (assert_cmd::assert::Assert, Value) {
    let summary = dir.join("summary.json");
    let a = ibconn()
        .arg("fetch")
        .args(args)
        .arg("--summary-json")
        .arg(&summary)
        .assert();
    let s = json(&summary);
    (a, s)
}

#[test]
fn fetch_writes_the_trading_calendars_bar_count() {
    let dir = scratch("count");
    let out = dir.join("d.csv");
    let out_s = out.to_str().unwrap();
    // December 2025: 23 weekdays, Christmas closed.
    let (a, s) = fetch(
        &dir,
        &[
            "AAPL",
            "--bar",
            "1d",
            "--rth",
            "--from",
            "2025-12-01",
            "--to",
            "2026-01-01",
            "--out",
            out_s,
        ],
    );
    a.success();
    let days = rows(&out);
    assert_eq!(days.len(), 22);
    assert!(days.iter().all(|r| r.starts_with("2025-12-")));
    assert!(!days.iter().any(|r| r.starts_with("2025-12-25,")));
    assert_eq!(s["bars"], 22);
    assert_eq!(s["time"], "virtual");

    // One week of regular-hours hourly bars: 09:30, 10:00 … 15:00 → 7 a day, 5 days.
    let out = dir.join("h.csv");
    ibconn()
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "1h",
            "--rth",
            "--from",
            "2025-12-01",
        ])
        .args([
            "--to",
            "2025-12-06T00:00:00Z",
            "--out",
            out.to_str().unwrap(),
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("35 bars"));
    assert_eq!(rows(&out).len(), 35);
}

#[test]
fn a_pacing_bound_fetch_runs_in_virtual_time_and_resumes_without_duplicates() {
    let dir = scratch("resume");
    let full = dir.join("full.csv");
    // Christmas Eve and Christmas Day 2025: the simulator's contract details list another week,
    // so Christmas counts as an ordinary Thursday and is asked (it comes back empty); the nights
    // are closed sessions, never asked.
    let range = ["--from", "2025-12-24", "--to", "2025-12-26"];
    let (a, s) = fetch(
        &dir,
        &[
            &["AAPL", "--bar", "5s"][..],
            &range,
            &["--out", full.to_str().unwrap()],
        ]
        .concat(),
    );
    a.success()
        .stderr(predicate::str::contains("virtual").and(predicate::str::contains("0 violations")));
    let all = rows(&full);
    assert_eq!(s["requests"], 32);
    assert_eq!(s["job"]["progress"]["chunks_closed"], 16);
    assert_eq!(s["bars"], all.len());
    assert_eq!(s["gateway_pacing_violations"], 0);
    assert_eq!(s["pacing_violations"], 0);
    assert!(s["pacing_waits"].as_u64().unwrap() > 0);
    assert!(s["virtual_secs"].as_f64().unwrap() > 0.0);
    assert!(s["wall_secs"].is_number());

    // An interrupted run: the first third of the rows. Resuming fetches the rest only.
    let part = dir.join("part.csv");
    let keep = all.len() / 3;
    let mut text = String::from("time,open,high,low,close,volume,wap,count\n");
    for r in &all[..keep] {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(&part, text).unwrap();
    let part_s = part.to_str().unwrap();
    let plan = || {
        let planned = ibconn()
            .args(
                [
                    &["plan", "AAPL", "--bar", "5s", "--json"][..],
                    &range,
                    &["--out", part_s],
                ]
                .concat(),
            )
            .assert()
            .success();
        serde_json::from_slice::<Value>(&planned.get_output().stdout).unwrap()
    };
    let planned = plan();
    let (a, s) = fetch(
        &dir,
        &[&["AAPL", "--bar", "5s"][..], &range, &["--out", part_s]].concat(),
    );
    a.success();
    assert_eq!(rows(&part), all, "a resumed file equals a fresh one");
    assert_eq!(s["bars_added"], all.len() - keep);
    assert_eq!(s["requests"], planned["requests"]);
    assert!(s["requests"].as_u64().unwrap() < 32);

    // The coverage recorded beside the file: a rerun asks again only for the chunks answered
    // empty once (IB's "no data" is sometimes spurious); the run after that asks for nothing.
    assert!(dir.join("part.csv.covered.json").exists());
    let empty_once = s["job"]["progress"]["chunks_empty_tentative"].clone();
    assert!(empty_once.as_u64() > Some(0), "Christmas Day: {s}");
    assert_eq!(plan()["requests"], empty_once);
    let (a, s) = fetch(
        &dir,
        &[&["AAPL", "--bar", "5s"][..], &range, &["--out", part_s]].concat(),
    );
    a.success();
    assert_eq!(s["requests"], empty_once);
    assert_eq!(s["bars_added"], 0);
    assert_eq!(plan()["requests"], 0, "empty twice: final");

    // Once more: nothing new, no duplicates, no requests.
    let (a, s) = fetch(
        &dir,
        &[&["AAPL", "--bar", "5s"][..], &range, &["--out", part_s]].concat(),
    );
    a.success();
    let again = rows(&part);
    assert_eq!(again, all);
    assert_eq!(s["bars_added"], 0);
    assert_eq!(s["requests"], 0);
    let t = times(&again);
    assert!(t.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn plan_agrees_with_fetch_and_sends_nothing() {
    let dir = scratch("plan");
    let args = [
        "AAPL",
        "--bar",
        "5m",
        "--from",
        "2025-11-01",
        "--to",
        "2025-12-20",
    ];
    let plan = ibconn()
        .arg("plan")
        .args(args)
        .arg("--json")
        .assert()
        .success();
    let plan: Value = serde_json::from_slice(&plan.get_output().stdout).unwrap();
    let (a, s) = fetch(
        &dir,
        &[&args[..], &["--out", dir.join("p.csv").to_str().unwrap()]].concat(),
    );
    a.success();
    assert_eq!(plan["requests"], s["requests"]);
    // Seven weeks, on the 7-day grid counted from the epoch (cells start on Thursdays): eight.
    assert_eq!(plan["requests"], 8);
    ibconn()
        .arg("plan")
        .args([
            "AAPL",
            "--bar",
            "1s",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-02",
        ])
        .assert()
        .success()
        .stdout(
            // Monday's 09:00–24:00 UTC (04:00–19:00 New York) in 30-minute cells; the night
            // before is Sunday's, closed.
            predicate::str::contains("requests: 30 (48 chunks")
                .and(predicate::str::contains("IB pacing: about"))
                .and(predicate::str::contains(
                    "every chunk asked, closed sessions included: 48 requests",
                )),
        );
}

fn explain(code: &str, message: &str) -> Value {
    let out = ibconn()
        .args(["explain", code, message, "--json"])
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

#[test]
fn explain_classifies_real_ib_texts() {
    let pacing = explain(
        "162",
        "Historical Market Data Service error message:Historical data request pacing violation",
    );
    assert_eq!(pacing["class"], "Pacing");
    assert_eq!(pacing["advice"], "RetryWhenPacerAllows");
    let no_data = explain(
        "162",
        "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades",
    );
    assert_eq!(no_data["class"], "NoData");
    assert_eq!(no_data["advice"], "ReturnEmpty");
    let spanish = explain(
        "162",
        "Mensaje de error de los servicios de datos de mercado históricos:Infracción del ritmo de solicitudes de datos históricos",
    );
    assert_eq!(
        spanish["class"], "Unknown",
        "a localized 162 is never pacing"
    );
    let farm = explain("2104", "Market data farm connection is OK:usfarm");
    assert_eq!(farm["advice"], "Ignore");
    assert!(farm["class"]["FarmStatus"].is_array());
    let in_use = explain(
        "326",
        "Unable to connect as the client id is already in use. Retry with a unique client id.",
    );
    assert_eq!(in_use["class"], "ClientIdInUse");
    ibconn()
        .args([
            "explain",
            "162",
            "Historical Market Data Service error message:Historical data request pacing violation",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("What happened\n")
                .and(predicate::str::contains("What ibconn does\n"))
                .and(predicate::str::contains("What you can do\n"))
                .and(predicate::str::contains("RetryWhenPacerAllows").not()),
        );
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "fetch",
                "AAPL",
                "--bar",
                "1h",
                "--from",
                "2025-13-01",
                "--to",
                "2026-01-01",
            ],
            "invalid date",
        ),
        (
            &[
                "fetch",
                "AAPL",
                "--bar",
                "7h",
                "--from",
                "2025-12-01",
                "--to",
                "2026-01-01",
            ],
            "unknown bar size",
        ),
        (
            &[
                "fetch",
                "AAPL",
                "--bar",
                "1h",
                "--from",
                "2026-01-01",
                "--to",
                "2025-12-01",
            ],
            "empty range",
        ),
        (
            &[
                "plan",
                "AAPL",
                "--bar",
                "1s",
                "--from",
                "2000-01-01",
                "--to",
                "2026-01-01",
            ],
            "requests needed",
        ),
        (&["fetch", "AAPL", "--from", "2025-12-01"], "required"),
        (&["frobnicate"], "unrecognized subcommand"),
        // A real gateway has no future: the range is cut at the current bar, here to nothing.
        (
            &[
                "plan",
                "AAPL",
                "--bar",
                "1d",
                "--from",
                "2099-01-01",
                "--to",
                "2099-02-01",
                "--gateway",
                "127.0.0.1:9",
            ],
            "in the future",
        ),
    ];
    for (args, message) in cases {
        ibconn()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    let dir = scratch("bad");
    let out = dir.join("bad.csv");
    std::fs::write(
        &out,
        "time,open,high,low,close,volume,wap,count\nnoon,1,1,1,1,1,1,1\n",
    )
    .unwrap();
    ibconn()
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "1h",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-02",
        ])
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad time"));
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &[][..],
        &["fetch"],
        &["plan"],
        &["explain"],
        &["sim"],
        &["health"],
        &["serve"],
    ] {
        ibconn()
            .args(cmd)
            .arg("--help")
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage").and(predicate::str::contains("Exit codes")));
    }
}

/// `ibconn sim` on a port, then `ibconn fetch --gateway` against it on wall time.
#[test]
fn fetch_over_tcp_from_ibconn_sim() {
    let mut cmd = ibconn_std();
    cmd.args(["sim", "--listen", "127.0.0.1:0", "--seed", "1"]);
    // Killed on drop, also when an assertion below fails.
    let sim = Serve::spawn(cmd);
    let dir = scratch("tcp");
    let (a, s) = fetch(
        &dir,
        &[
            "AAPL",
            "--bar",
            "1d",
            "--rth",
            "--from",
            "2025-12-01",
            "--to",
            "2026-01-01",
            "--gateway",
            &sim.addr,
        ],
    );
    a.success();
    assert_eq!(s["time"], "wall");
    assert_eq!(s["bars"], 22);
}

/// A typo in the symbol costs one request, not one failure per chunk (168 for a week of 5-second
/// bars: twenty minutes of IB's pacing), and exits 4 like `validate`; a range before the
/// contract's head timestamp asks for no bars at all. Both on the embedded simulator and over TCP.
#[test]
fn an_unknown_symbol_exits_4_after_one_request_and_a_range_before_the_head_sends_no_chunk() {
    let sim = Serve::spawn({
        let mut cmd = ibconn_std();
        cmd.args(["sim", "--listen", "127.0.0.1:0", "--seed", "1"]);
        cmd
    });
    let dir = scratch("lookup");
    for gateway in [None, Some(sim.addr.as_str())] {
        let out = dir.join("nope.csv");
        let mut args = vec![
            "NOPE",
            "--bar",
            "5s",
            "--from",
            "2025-11-03",
            "--to",
            "2025-11-10",
        ];
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(gateway.map(|g| ["--gateway", g]).into_iter().flatten());
        let (a, s) = fetch(&dir, &args);
        a.code(4)
            .stderr(predicate::str::contains("No security definition"));
        let p = &s["job"]["progress"];
        assert_eq!(p["lookups"], 1, "{gateway:?}: {s}");
        assert_eq!(s["requests"], 0, "{gateway:?}: {s}");
        assert!(!out.exists(), "no file for a symbol that does not exist");

        // MSFT's head timestamp is 1986-03-13: every chunk before it is empty for good.
        let mut args = vec![
            "MSFT",
            "--bar",
            "1d",
            "--from",
            "1980-01-01",
            "--to",
            "1986-03-01",
        ];
        args.extend(gateway.map(|g| ["--gateway", g]).into_iter().flatten());
        let (a, s) = fetch(&dir, &args);
        a.success();
        assert_eq!(s["requests"], 0, "{gateway:?}: {s}");
        assert_eq!(s["job"]["progress"]["lookups"], 2, "{gateway:?}: {s}");
        assert!(s["job"]["clamped_to_unix"].is_number(), "{s}");
    }
}
