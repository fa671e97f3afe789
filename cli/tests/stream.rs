//! `ibconn stream` over real sockets against `ibconn sim` children: bars and ticks as CSV and
//! JSON lines, a gateway killed with SIGKILL and restarted on the same port (the stream goes on
//! with an `interrupted` and a `gap` line), bad input, and a closed port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{closed_port, ibconn, ibconn_std, scratch, Serve};
use serde_json::Value;

/// A trading day, 15:00 UTC: the US session is open.
const OPEN: &str = "20260106-15:00:00";

fn sim_on(listen: &str, clock: &str) -> Serve {
    let mut cmd = ibconn_std();
    cmd.args(["sim", "--listen", listen, "--wall-clock", clock]);
    Serve::spawn(cmd)
}

/// Lines of a child's stdout, as they come, on a channel (the reader thread ends with the pipe).
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next JSON line whose `type` is `kind`, within `limit`.
fn next_of(
    rx: &mpsc::Receiver<String>,
    kind: &str,
    limit: Duration,
    seen: &mut Vec<Value>,
) -> Value {
    let until = Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {kind:?} line within {limit:?}; saw {seen:#?}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        seen.push(v.clone());
        if v["type"] == kind {
            return v;
        }
    }
}

/// Kills the child on drop, so a failing assertion leaves nothing running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bars_keep_coming_across_a_killed_and_restarted_gateway_with_a_gap_line() {
    let mut sim = sim_on("127.0.0.1:0", OPEN);
    let addr = sim.addr.clone();
    let mut stream = ibconn_std();
    stream
        .args(["stream", "AAPL", "--bars", "5s", "--json", "--for", "60s"])
        .args(["--gateway", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Reaped(stream.spawn().unwrap());
    let rx = lines(&mut child.0);
    let mut seen = Vec::new();
    let first = next_of(&rx, "bar", Duration::from_secs(15), &mut seen);
    assert_eq!(first["symbol"], "AAPL");
    assert_eq!(
        first["time"], "2026-01-06T15:00:00Z",
        "the sim's first 5-second bar"
    );

    // SIGKILL: no goodbye on the socket; the port refuses until the new gateway is up.
    sim.kill();
    let interrupted = next_of(&rx, "interrupted", Duration::from_secs(10), &mut seen);
    assert!(
        interrupted["reason"].as_str().unwrap().contains("lost"),
        "{interrupted}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let _restarted = sim_on(&addr, "20260106-15:00:30");
    let gap = next_of(&rx, "gap", Duration::from_secs(20), &mut seen);
    assert!(gap["seconds"].as_f64().unwrap() >= 2.0, "{gap}");
    assert_eq!(gap["from"], interrupted["at"]);
    let after = next_of(&rx, "bar", Duration::from_secs(15), &mut seen);
    assert!(
        after["time"].as_str().unwrap() >= "2026-01-06T15:00:30Z",
        "bars from the new gateway: {after}"
    );
}

#[test]
fn ticks_and_tick_by_tick_as_csv_rows_until_the_span_ends() {
    let sim = sim_on("127.0.0.1:0", OPEN);
    let dir = scratch("stream-csv");
    let out = dir.join("ticks.csv");
    ibconn()
        .args([
            "stream",
            "AAPL",
            "MSFT",
            "--ticks",
            "--for",
            "3s",
            "--gateway",
            &sim.addr,
        ])
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let text = std::fs::read_to_string(&out).unwrap();
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some("time,symbol,field,price,size,value"));
    let rows: Vec<&str> = rows.collect();
    for sym in ["AAPL", "MSFT"] {
        assert!(
            rows.iter().any(|r| r.contains(&format!(",{sym},bid,"))),
            "a bid of {sym}: {text}"
        );
    }
    // Appending: a second run adds rows, not a second header.
    ibconn()
        .args([
            "stream",
            "AAPL",
            "--ticks",
            "--for",
            "2s",
            "--gateway",
            &sim.addr,
        ])
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let again = std::fs::read_to_string(&out).unwrap();
    assert!(again.len() > text.len());
    assert_eq!(again.matches("time,symbol").count(), 1, "one header");

    let got = ibconn()
        .args([
            "stream",
            "AAPL",
            "--ticks",
            "--what",
            "last",
            "--for",
            "3s",
            "--gateway",
            &sim.addr,
        ])
        .assert()
        .success();
    let stdout = String::from_utf8(got.get_output().stdout.clone()).unwrap();
    let mut rows = stdout.lines();
    assert_eq!(
        rows.next(),
        Some("time,symbol,type,price,size,bid,ask,bid_size,ask_size,exchange")
    );
    assert!(
        rows.any(|r| r.starts_with("2026-01-06T15:00:0") && r.contains(",AAPL,last,")),
        "{stdout}"
    );
}

#[test]
fn other_bar_sizes_are_keep_up_to_date_bars_the_last_ten_first() {
    let sim = sim_on("127.0.0.1:0", OPEN);
    let got = ibconn()
        .args([
            "stream",
            "EUR.USD",
            "--bars",
            "1m",
            "--for",
            "3s",
            "--gateway",
            &sim.addr,
        ])
        .assert()
        .success();
    let stdout = String::from_utf8(got.get_output().stdout.clone()).unwrap();
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert!(rows.len() >= 10, "{stdout}");
    assert!(
        rows[0].starts_with("2026-01-06T14:50:00Z,EUR.USD,"),
        "{stdout}"
    );
    // Forex has no volume: IB's -1 is an empty cell, as in fetch's files.
    assert!(rows[0].ends_with(",,,"), "{stdout}");
}

#[test]
fn bad_input_and_a_closed_port_are_refused_with_their_exit_codes() {
    // Neither --bars nor --ticks; a partial contract; an unknown tick-by-tick series.
    ibconn().args(["stream", "AAPL"]).assert().code(2);
    ibconn()
        .args(["stream", "ES:FUT", "--bars", "5s"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("names several contracts"));
    ibconn()
        .args(["stream", "AAPL", "--ticks", "--what", "trades"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("last, all-last, bid-ask"));
    ibconn()
        .args(["stream", "AAPL", "--bars", "5s", "--for", "0s"])
        .assert()
        .code(2);
    // Real-time bars have four series; BID_ASK is refused before anything is sent.
    ibconn()
        .args(["stream", "AAPL", "--bars", "5s", "--what", "BID_ASK"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("TRADES, MIDPOINT, BID or ASK"));
    // A closed port fails fast and writes nothing.
    let dir = scratch("stream-closed");
    let out = dir.join("bars.csv");
    ibconn()
        .args([
            "stream",
            "AAPL",
            "--bars",
            "5s",
            "--gateway",
            &closed_port(),
        ])
        .arg("--out")
        .arg(&out)
        .timeout(Duration::from_secs(20))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("cannot connect"));
    assert!(!out.exists(), "no header-only file");
}

#[test]
fn without_a_subscription_live_ticks_are_refused_and_delayed_ones_flow() {
    let sim = sim_on("127.0.0.1:0", OPEN);
    // KO: the sim's account has no market-data subscription for it.
    ibconn()
        .args([
            "stream",
            "KO",
            "--ticks",
            "--for",
            "10s",
            "--gateway",
            &sim.addr,
        ])
        .timeout(Duration::from_secs(20))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("354"));
    let got = ibconn()
        .args([
            "stream",
            "KO",
            "--ticks",
            "--delayed",
            "--json",
            "--for",
            "3s",
        ])
        .args(["--gateway", &sim.addr])
        .assert()
        .success();
    let stdout = String::from_utf8(got.get_output().stdout.clone()).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "market_data_type" && v["market_data_type"] == 3),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "tick" && v["field"] == "delayed_bid"),
        "{stdout}"
    );
}

#[test]
fn a_symbol_ib_does_not_know_ends_its_stream_with_exit_4() {
    let sim = sim_on("127.0.0.1:0", OPEN);
    ibconn()
        .args([
            "stream",
            "NOSUCHSYM",
            "--ticks",
            "--for",
            "20s",
            "--gateway",
            &sim.addr,
        ])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(4)
        .stderr(predicates::str::contains("NOSUCHSYM: stream ended"));
}
