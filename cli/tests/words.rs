//! Dates, bar sizes, progress and words (issue 14, items 5 and 6): every date and span form
//! `fetch` and `plan` accept, the refused `1M`, progress lines when stderr is not a terminal (in
//! virtual time on the embedded simulator, so they are the same on every run; and on wall time
//! against a simulator on TCP), `explain` in a user's words, the warning about a misspelt
//! `IBCONN_*` variable, and `gateway = "embedded"` in a file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use predicates::prelude::*;
use serde_json::Value;

use common::{ibconn, ibconn_in, scratch, Sim};

/// The embedded simulator's clock, what `--to` defaults to without a gateway:
/// 2026-01-06T15:00:00Z.
const SIM_NOW: i64 = 1_767_711_600;

/// 2025-12-01T14:30:00Z (09:30 in New York) and 21:00Z (16:00 there).
const OPEN: i64 = 1_764_599_400;
const CLOSE: i64 = 1_764_622_800;

/// `ibconn plan AAPL ARGS… --json` (embedded simulator): the report.
fn plan(args: &[&str]) -> Value {
    let out = ibconn()
        .args(["plan", "AAPL"])
        .args(args)
        .arg("--json")
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// The aligned range a plan reports.
fn range(report: &Value) -> (i64, i64) {
    (
        report["from_unix"].as_i64().unwrap(),
        report["to_unix"].as_i64().unwrap(),
    )
}

#[test]
fn dates_take_utc_offsets_and_zone_names() {
    for (from, to) in [
        ("2025-12-01T14:30:00Z", "2025-12-01T21:00:00Z"),
        ("2025-12-01T09:30:00-05:00", "2025-12-01T16:00:00-05:00"),
        ("2025-12-01T15:30+01:00", "2025-12-01T22:00+0100"),
        (
            "2025-12-01T09:30 America/New_York",
            "2025-12-01T16:00 America/New_York",
        ),
        ("2025-12-01 09:30 US/Eastern", "2025-12-01T21:00 UTC"),
    ] {
        let r = plan(&["--bar", "5s", "--from", from, "--to", to]);
        assert_eq!(range(&r), (OPEN, CLOSE), "{from} .. {to}");
    }
}

#[test]
fn to_defaults_to_now_and_last_counts_back() {
    // On the embedded simulator "now" is its clock.
    let r = plan(&["--bar", "1h", "--from", "2026-01-05"]);
    assert_eq!(range(&r), (SIM_NOW - 39 * 3_600, SIM_NOW));
    let r = plan(&["--bar", "5m", "--last", "6h"]);
    assert_eq!(range(&r), (SIM_NOW - 6 * 3_600, SIM_NOW));
    let r = plan(&["--bar", "1m", "--last", "90m"]);
    assert_eq!(range(&r), (SIM_NOW - 5_400, SIM_NOW));
    let r = plan(&["--bar", "1h", "--last", "2w", "--to", "2025-12-15"]);
    assert_eq!(range(&r), (1_764_547_200, 1_765_756_800));
    let r = plan(&["--bar", "1d", "--last", "30d", "--to", "2025-12-31"]);
    assert_eq!(range(&r), (1_764_547_200, 1_767_139_200));
    let r = plan(&["--bar", "1d", "--last", "1y", "--to", "2025-12-31"]);
    assert_eq!(range(&r), (1_735_603_200, 1_767_139_200));
    // fetch takes them too.
    let dir = scratch("words-fetch-last");
    ibconn_in(&dir)
        .args([
            "fetch", "AAPL", "--bar", "1h", "--last", "2d", "--out", "a.csv",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("AAPL 1 hour TRADES"));
}

#[test]
fn bar_sizes_in_every_spelling_and_1m_upper_refused() {
    for (bar, ib) in [
        ("1min", "1 min"),
        ("1m", "1 min"),
        ("60m", "1 hour"),
        ("1H", "1 hour"),
        ("5s", "5 secs"),
        ("1d", "1 day"),
        ("1w", "1 week"),
        ("1mo", "1 month"),
        ("5 mins", "5 mins"),
    ] {
        let r = plan(&["--bar", bar, "--from", "2025-12-01", "--to", "2025-12-02"]);
        assert_eq!(r["bar_size"], ib, "{bar}");
    }
    for cmd in ["plan", "fetch"] {
        ibconn()
            .args([cmd, "AAPL", "--bar", "1M", "--last", "1d"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "bar size \"1M\" is ambiguous: use 1mo (a month) or 1min (a minute)",
            ));
    }
}

#[test]
fn bad_dates_name_the_value_and_the_accepted_forms() {
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["--from", "2025-12-01T09:30"],
            &[
                "\"2025-12-01T09:30\" has a time but no time zone",
                "America/New_York",
            ],
        ),
        (
            &["--from", "2025-12-01T09:30 Mars/Olympus"],
            &["unknown time zone \"Mars/Olympus\"", "Europe/London"],
        ),
        (
            &["--from", "01/12/2025"],
            &[
                "invalid date \"01/12/2025\"",
                "YYYY-MM-DD",
                "America/New_York",
            ],
        ),
        (
            &["--from", "2025-11-02T01:30 America/New_York"],
            &["happens twice", "-04:00 or -05:00"],
        ),
        (&["--last", "3x"], &["invalid --last \"3x\"", "30d"]),
        (
            &["--last", "1M"],
            &["--last \"1M\" is ambiguous: use 1mo (months) or 1min (minutes)"],
        ),
        (
            &["--from", "2025-12-01", "--last", "1d"],
            &["cannot be used with"],
        ),
    ];
    for (args, needles) in cases {
        let mut pred = predicate::str::contains(needles[0]).boxed();
        for n in &needles[1..] {
            pred = pred.and(predicate::str::contains(*n)).boxed();
        }
        ibconn()
            .args(["plan", "AAPL", "--bar", "1h"])
            .args(args)
            .assert()
            .code(2)
            .stderr(pred);
    }
    // Neither --from nor --last.
    ibconn()
        .args(["fetch", "AAPL", "--bar", "1h", "--to", "2025-12-02"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--last"));
}

#[test]
fn plan_blames_each_wait_on_its_rule() {
    // Seven chunks of one contract: two wait for the per-contract burst rule, none for the
    // 60-per-10-minutes window.
    ibconn()
        .args([
            "plan",
            "AAPL",
            "--bar",
            "5s",
            "--from",
            "2025-12-01T14:00Z",
            "--to",
            "2025-12-01T21:00Z",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(
                "(2 requests held back: 2 by IB's limit of 5 requests per 2 seconds for one contract)",
            )
            .and(predicate::str::contains("60 historical").not()),
        );
    let r = plan(&["--bar", "5s", "--from", "2025-12-01", "--to", "2025-12-08"]);
    assert_eq!(r["delayed_by"]["burst"], 55, "{r}");
    assert_eq!(r["delayed_by"]["historical_window"], 20, "{r}");
}

/// A week of 5-second bars on the embedded simulator with stderr not a terminal: `(stderr
/// lines starting "ibconn: ", exit code)`.
fn week_of_lines(dir: &std::path::Path, every: Option<&str>) -> Vec<String> {
    let mut cmd = ibconn_in(dir);
    cmd.args([
        "fetch",
        "AAPL",
        "--bar",
        "5s",
        "--from",
        "2025-12-01",
        "--to",
        "2025-12-08",
        "--out",
        "aapl.csv",
    ]);
    if let Some(e) = every {
        cmd.env("IBCONN_FETCH_PROGRESS_EVERY_SECS", e);
    }
    let out = cmd.assert().success();
    String::from_utf8_lossy(&out.get_output().stderr)
        .lines()
        .filter(|l| l.starts_with("ibconn: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_fetch_without_a_terminal_prints_progress_lines_in_virtual_time() {
    let dir = scratch("words-progress");
    let lines = week_of_lines(&dir, None);
    let progress: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("ibconn: progress: "))
        .collect();
    // About ten virtual minutes, a line every 30 s.
    assert_eq!(progress.len(), 20, "{lines:#?}");
    assert_eq!(
        progress[0].as_str(),
        "ibconn: progress: 147/168 chunks, 42480 bars, 58 pacing waits; 30.0s virtual elapsed, \
         about 9m 40s left (the pacer's plan)"
    );
    // The 61st request waits for the 10-minute window: said once, with the rule and the time.
    let waits: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("ibconn: pacing: "))
        .collect();
    assert_eq!(
        waits,
        [
            "ibconn: pacing: the next request waits 9m 35s for IB's limit of 60 historical \
          requests per 10 minutes, until 2026-01-06T15:10:00Z on the simulator's clock"
        ],
        "{lines:#?}"
    );
    // The time left counts down with the plan, never up.
    let left: Vec<&str> = progress
        .iter()
        .filter_map(|l| l.split("about ").nth(1))
        .collect();
    assert_eq!(left.last(), Some(&"10.3s left (the pacer's plan)"));
    // Virtual time: the same lines on every run; the interval is a setting.
    let again = scratch("words-progress-again");
    assert_eq!(week_of_lines(&again, None), lines);
    let sparse = scratch("words-progress-sparse");
    let lines = week_of_lines(&sparse, Some("120"));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("ibconn: progress: "))
            .count(),
        5,
        "{lines:#?}"
    );
}

#[test]
fn a_wall_time_fetch_without_a_terminal_prints_progress_and_long_waits() {
    // A stricter window than IB's (4 per 11 s) so a wait over 10 s comes after a few requests;
    // every chunk asked (a weekend closes none), lines every 2 s.
    let sim = Sim::start();
    let dir = scratch("words-wall");
    std::fs::write(
        dir.join("ibconn.toml"),
        "[pacing]\nhistorical_max = 4\nhistorical_window_secs = 11.0\n\
         [fetch]\nprogress_every_secs = 2.0\nskip_closed_sessions = false\n",
    )
    .unwrap();
    let out = ibconn_in(&dir)
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "5s",
            "--last",
            "6h",
            "--gateway",
            &sim.addr,
            "--out",
            "a.csv",
        ])
        .assert();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let progress = stderr
        .lines()
        .filter(|l| l.starts_with("ibconn: progress: ") && l.contains("left (the pacer's plan)"))
        .count();
    assert!(progress >= 3, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("ibconn: pacing: the next request waits ")
                && l.contains("for IB's limit of 4 historical requests per 11 seconds, until 20")
                && l.ends_with('Z')),
        "{stderr}"
    );
}

#[test]
fn explain_speaks_a_users_words() {
    let mut all = String::new();
    for (code, message) in [
        ("10197", "No market data during competing session"),
        (
            "162",
            "Historical Market Data Service error message:Trading TWS session is connected from a different IP address",
        ),
        (
            "354",
            "Requested market data is not subscribed. Check API status by selecting the Account menu then under Management choose Market Data Subscription Manager and/or availability of delayed data.",
        ),
        (
            "162",
            "Historical Market Data Service error message:Historical data request pacing violation",
        ),
        (
            "162",
            "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades",
        ),
        ("200", "No security definition has been found for the request."),
        ("2106", "HMDS data farm connection is OK:ushmds"),
    ] {
        let out = ibconn().args(["explain", code, message]).assert().success();
        let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        for internal in ["ReturnEmpty", "RetryWhenPacerAllows", "pacer", "retrying will not help"] {
            assert!(!text.contains(internal), "{internal} in\n{text}");
        }
        all.push_str(&text);
        all.push_str("----\n");
    }
    let flat = all.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("It clears when the other session ends"));
    assert!(flat.contains("reqMarketDataType(3)"));
    insta::assert_snapshot!("explain_texts", all);
}

#[test]
fn a_misspelt_variable_is_warned_about() {
    let dir = scratch("words-typo");
    ibconn_in(&dir)
        .arg("config")
        .env("IBCONN_GATWAY", "127.0.0.1:4002")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "ibconn: warning: environment variable IBCONN_GATWAY is not a configuration key and \
             is ignored; did you mean IBCONN_GATEWAY?",
        ));
    // Under a known section it is an error, with the suggestion.
    ibconn_in(&dir)
        .arg("config")
        .env("IBCONN_FETCH_CONCURENCY", "2")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "did you mean IBCONN_FETCH_CONCURRENCY?",
        ));
}

#[test]
fn gateway_embedded_in_the_file_means_the_simulator() {
    let dir = scratch("words-embedded");
    std::fs::write(dir.join("ibconn.toml"), "gateway = \"embedded\"\n").unwrap();
    let out = ibconn_in(&dir)
        .args(["plan", "AAPL", "--bar", "1h", "--last", "1d", "--json"])
        .assert()
        .success();
    let r: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(r["sessions_from"], "embedded-sim");
    ibconn_in(&dir)
        .args([
            "fetch", "AAPL", "--bar", "1h", "--last", "1d", "--out", "a.csv",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("on embedded-sim"));
    ibconn_in(&dir)
        .args(["validate", "AAPL", "--json"])
        .assert()
        .success();
    // health needs a real gateway, and says so.
    ibconn_in(&dir)
        .arg("health")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not the embedded simulator"));
    // A malformed gateway is still refused, naming the forms.
    std::fs::write(dir.join("ibconn.toml"), "gateway = \"embeded\"\n").unwrap();
    ibconn_in(&dir).arg("config").assert().code(2).stderr(
        predicate::str::contains("or \\\"embedded\\\"")
            .or(predicate::str::contains("or \"embedded\"")),
    );
}
