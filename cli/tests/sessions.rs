//! Closed sessions cost no request: `ibconn plan` and `ibconn fetch` of a week of 5-second bars
//! skip the chunks the contract's trading hours call closed, and return exactly the bars of the
//! full tiling (the same fetch with `fetch.skip_closed_sessions = false`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::Path;

use serde_json::Value;

mod common;
use common::{closed_port, ibconn, ibconn_std, scratch, Serve};

/// A week of AAPL 5-second bars: 168 one-hour chunks, 88 of them nights and a weekend.
const WEEK: [&str; 7] = [
    "AAPL",
    "--bar",
    "5s",
    "--from",
    "2025-12-01",
    "--to",
    "2025-12-08",
];

fn plan(extra: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = ibconn();
    cmd.arg("plan").args(WEEK).args(extra).arg("--json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let a = cmd.assert().success();
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

/// Fetch the week into `out`; the summary.
fn fetch(dir: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let summary = dir.join("summary.json");
    let mut cmd = ibconn();
    cmd.arg("fetch")
        .args(WEEK)
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg("--summary-json")
        .arg(&summary);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.assert().success();
    serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap()
}

const NO_FILTER: (&str, &str) = ("IBCONN_FETCH_SKIP_CLOSED_SESSIONS", "false");

#[test]
fn a_week_of_five_second_bars_asks_only_open_sessions_and_returns_every_bar() {
    let dir = scratch("sessions-week");

    let p = plan(&[], &[]);
    assert_eq!(p["requests"], 80, "{p}");
    assert!(p["requests"].as_u64().unwrap() <= 90);
    assert_eq!(p["chunks_closed"], 88);
    assert_eq!(p["requests_all_sessions"], 168);
    assert!(p["estimate_secs"].as_u64() < p["estimate_secs_all_sessions"].as_u64());
    assert_eq!(p["sessions"]["status"], "applied");
    assert_eq!(p["sessions"]["zone"], "America/New_York");
    assert_eq!(p["sessions"]["hours"], "trading_hours");
    assert_eq!(p["sessions_from"], "embedded-sim");
    let rth = plan(&["--rth"], &[]);
    assert_eq!(rth["requests"], 35, "{rth}");
    assert_eq!(rth["sessions"]["hours"], "liquid_hours");
    let off = plan(&[], &[NO_FILTER]);
    assert_eq!(off["requests"], 168);
    assert_eq!(off["sessions"]["reason"], "disabled");
    assert_eq!(off["sessions_from"], Value::Null, "nothing asked for");

    for (extra, asked) in [(&[][..], 80), (&["--rth"][..], 35)] {
        let skipping = dir.join(format!("skipping-{asked}.csv"));
        let full = dir.join(format!("full-{asked}.csv"));
        let s = fetch(&dir, &skipping, extra, &[]);
        assert_eq!(s["requests"], asked, "{extra:?}: {s}");
        assert_eq!(s["job"]["progress"]["chunks_closed"], 168 - asked);
        assert_eq!(
            s["job"]["progress"]["chunks_empty"], 0,
            "nothing asked in vain"
        );
        let f = fetch(&dir, &full, extra, &[NO_FILTER]);
        assert_eq!(f["requests"], 168);
        assert_eq!(f["job"]["sessions"]["reason"], "disabled");
        // Not one bar missing, byte for byte.
        let (a, b) = (
            std::fs::read(&skipping).unwrap(),
            std::fs::read(&full).unwrap(),
        );
        assert!(a == b, "{extra:?}: the CSVs differ");
        assert_eq!(s["bars"], f["bars"]);
        assert!(s["bars"].as_u64() > Some(20_000));

        // The sidecar records the closed chunks as covered: a rerun asks nothing.
        let again = fetch(&dir, &skipping, extra, &[]);
        assert_eq!(again["requests"], 0, "{again}");
        assert_eq!(again["job"]["progress"]["chunks_resumed"], 168);
    }
}

#[test]
fn plan_asks_a_gateway_for_the_contract_details_once() {
    let sim = Serve::spawn({
        let mut cmd = ibconn_std();
        cmd.args(["sim", "--listen", "127.0.0.1:0", "--seed", "1"]);
        cmd
    });
    let p = plan(&["--gateway", &sim.addr], &[]);
    assert_eq!(p["requests"], 80, "{p}");
    assert_eq!(p["sessions_from"], sim.addr.as_str());
    assert_eq!(p["sessions_error"], Value::Null);

    // Unreachable: the plan still answers, counting every chunk, and says why.
    let closed = closed_port();
    let p = plan(&["--gateway", &closed], &[]);
    assert_eq!(p["requests"], 168, "{p}");
    assert_eq!(p["sessions"]["status"], "pending");
    assert!(p["sessions_error"].as_str().is_some(), "{p}");
    let text = ibconn()
        .arg("plan")
        .args(WEEK)
        .args(["--gateway", &closed])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(out.contains("unavailable"), "{out}");
}
