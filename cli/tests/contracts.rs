//! The contract syntax end to end, for every contract type: `validate` and `head` against an
//! `ibconn sim` over TCP whose clock is pinned (so the listed futures and options are fixed),
//! `fetch` on the embedded simulator (virtual time) and once over TCP, ambiguity (a table of
//! candidates and exit 2, never a guess), and the refusals that cost no request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::Path;

use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::{ibconn_in, ibconn_std, scratch, Serve};

/// The pinned gateway clock: Thursday 2026-11-05 15:00 UTC. Listed then: ESZ6 ESH7 ESM7 ESU7,
/// options expiring 20261120, 20261218 and 20270115.
const CLOCK: &str = "20261105-15:00:00";

/// An `ibconn sim` on a free loopback port with the pinned clock.
fn sim() -> Serve {
    let mut cmd = ibconn_std();
    cmd.args(["sim", "--listen", "127.0.0.1:0", "--wall-clock", CLOCK]);
    Serve::spawn(cmd)
}

fn stdout_json(a: &assert_cmd::assert::Assert) -> Value {
    let out = &a.get_output().stdout;
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

/// Every contract type (a future by month and by local symbol), with the contract id the sim
/// gives it.
const EACH_TYPE: [(&str, i64); 9] = [
    ("AAPL", 265_598),
    ("BRK B", 72_063_691),
    ("EUR.USD", 12_087_792),
    ("SPX:IND", 416_904),
    ("ES:FUT:202612", 495_002_612),
    // Another month than the one above: the sim judges IB's identical-request rule by
    // contract id, and asking for ESZ6 twice within 15 s would wait.
    ("ESH7", 495_002_703),
    ("nq:fut:20270319", 496_002_703),
    ("AAPL:OPT:20261218:200:C", 700_041_358),
    ("@265598", 265_598),
];

#[test]
fn validate_resolves_every_contract_type_over_tcp() {
    let sim = sim();
    let dir = scratch("contracts-validate");
    let mut args = vec!["validate", "--json", "--gateway", &sim.addr];
    args.extend(EACH_TYPE.iter().map(|(s, _)| *s));
    let a = ibconn_in(&dir).args(&args).assert().code(0);
    let v = stdout_json(&a);
    let rows = v["symbols"].as_array().unwrap();
    for ((spec, con_id), row) in EACH_TYPE.iter().zip(rows) {
        assert_eq!(row["status"], "valid", "{spec}: {row}");
        assert_eq!(row["con_id"], *con_id, "{spec}");
        assert!(row["head_timestamp"].as_i64().unwrap() > 0, "{spec}: {row}");
    }
    assert_eq!(rows[2]["symbol"], "EUR.USD");
    assert_eq!(rows[6]["symbol"], "NQ:FUT:20270319", "canonical text");
    assert_eq!(rows[4]["local_symbol"], "ESZ6");
    assert!(rows[5]["local_symbol"].is_null(), "the name says it");
    assert_eq!(rows[4]["exchange"], "CME");
    assert_eq!(rows[7]["local_symbol"], "AAPL  261218C00200000");
    assert_eq!(rows[8]["local_symbol"], "AAPL");
    // Each is cached under its own key: a second run dials nothing.
    let mut again = args.clone();
    again[3] = "127.0.0.1:1";
    let v = stdout_json(&ibconn_in(&dir).args(&again).assert().code(0));
    assert!(v["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["source"] == "cache"));
}

#[test]
fn head_answers_for_every_contract_type_over_tcp() {
    // A gateway of its own: `validate` asked the same head timestamps, and asking again within
    // 15 s would wait out IB's identical-request rule.
    let sim = sim();
    let dir = scratch("contracts-head");
    for (spec, _) in EACH_TYPE {
        // AAPL by its id is AAPL: RTH-only makes it another request.
        let rth: &[&str] = if spec.starts_with('@') {
            &["--rth"]
        } else {
            &[]
        };
        let a = ibconn_in(&dir)
            .args(["head", spec, "--json", "--gateway", &sim.addr])
            .args(rth)
            .assert()
            .code(0);
        let v = stdout_json(&a);
        assert!(v["head_timestamp"].as_i64().unwrap() > 0, "{spec}: {v}");
        let what = if spec == "EUR.USD" {
            "MIDPOINT"
        } else {
            "TRADES"
        };
        assert_eq!(v["what_to_show"], what, "the type's default series");
    }
    ibconn_in(&dir)
        .args(["head", "ESZ6", "--what", "MIDPOINT", "--gateway", &sim.addr])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "ESZ6 MIDPOINT: data since 2025-09-18T",
        ));
}

#[test]
fn an_ambiguous_contract_lists_its_candidates_and_exits_2() {
    let sim = sim();
    let dir = scratch("contracts-ambiguous");
    ibconn_in(&dir)
        .args(["validate", "AAPL", "ES:FUT", "--gateway", &sim.addr])
        .assert()
        .code(2)
        .stdout(
            predicate::str::contains("ES:FUT is ambiguous: 4 contracts match")
                .and(predicate::str::contains("CON_ID      LOCAL SYMBOL"))
                .and(predicate::str::contains(
                    "@495002612  ESZ6          20261218             CME       USD       E-mini S&P 500",
                ))
                .and(predicate::str::contains("ESH7"))
                .and(predicate::str::contains("ESM7"))
                .and(predicate::str::contains("ESU7")),
        );
    let a = ibconn_in(&dir)
        .args([
            "validate",
            "AAPL:OPT:20261218:200",
            "--json",
            "--gateway",
            &sim.addr,
        ])
        .assert()
        .code(2);
    let v = stdout_json(&a);
    let row = &v["symbols"][0];
    assert_eq!(row["status"], "ambiguous");
    let candidates = row["candidates"].as_array().unwrap();
    let locals: Vec<&str> = candidates
        .iter()
        .map(|c| c["local_symbol"].as_str().unwrap())
        .collect();
    assert_eq!(locals, ["AAPL  261218C00200000", "AAPL  261218P00200000"]);
    assert_eq!(candidates[0]["strike"], 200.0);
    assert_eq!(candidates[1]["right"], "P");
    // Nothing guessed, nothing cached for it.
    let cache = std::fs::read_to_string(dir.join("cache/ibconn/symbols.json")).unwrap();
    assert!(!cache.contains("ES/FUT"), "{cache}");
    assert!(!cache.contains("strike=200;"), "{cache}");

    // Bars need one contract: refused before any request.
    ibconn_in(&dir)
        .args(["head", "ES:FUT", "--gateway", &sim.addr])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ibconn validate ES:FUT"));
    for cmd in ["fetch", "plan"] {
        ibconn_in(&dir)
            .args([
                cmd,
                "ES:FUT",
                "--bar",
                "1h",
                "--from",
                "2026-11-02",
                "--to",
                "2026-11-04",
            ])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("names several contracts"));
    }
}

/// `fetch SPEC` for 1-hour bars over Monday–Tuesday 2026-11-02/03 into `dir/name`.
fn fetch(dir: &Path, spec: &str, name: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    ibconn_in(dir)
        .args([
            "fetch",
            spec,
            "--bar",
            "1h",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-04",
        ])
        .args(["--json", "--out", name])
        .args(extra)
        .assert()
}

#[test]
fn fetch_serves_each_contract_type_with_its_own_hours() {
    let dir = scratch("contracts-fetch");
    // Two days of hourly bars: stock 04:00–20:00, forex and futures nearly all day, index and
    // option 09:30–16:00 (7 bars a day).
    for (spec, name, bars) in [
        ("AAPL", "aapl.csv", 31),
        ("EUR.USD", "eur.csv", 48),
        ("SPX:IND", "spx.csv", 14),
        ("ES:FUT:202612", "es_202612.csv", 46),
        ("ESZ6", "esz6.csv", 46),
        ("AAPL:OPT:20261218:200:C", "aapl_c200.csv", 14),
        ("@265598", "by_id.csv", 31),
    ] {
        let v = stdout_json(&fetch(&dir, spec, name, &[]).code(0));
        assert_eq!(v["bars"], bars, "{spec}: {v}");
    }
    // The same contract named two ways has the same bars.
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(read("es_202612.csv"), read("esz6.csv"));
    assert_eq!(read("aapl.csv"), read("by_id.csv"));
    // The sidecar names the whole contract: another month is another request.
    let sidecar = read("es_202612.csv.covered.json");
    assert!(
        sidecar.contains("ES FUT CME USD expiry=202612"),
        "{sidecar}"
    );
    fetch(&dir, "ES:FUT:202703", "es_202612.csv", &[])
        .code(2)
        .stderr(
            predicate::str::contains("expiry=202612")
                .and(predicate::str::contains("expiry=202703")),
        );
    // A series the type lacks is refused before any request.
    fetch(&dir, "EUR.USD", "eur_trades.csv", &["--what", "TRADES"])
        .code(2)
        .stderr(predicate::str::contains("no TRADES bars for EUR.USD"));
    assert!(!dir.join("eur_trades.csv").exists());
}

#[test]
fn fetch_a_future_by_local_symbol_over_tcp() {
    let sim = sim();
    let dir = scratch("contracts-fetch-tcp");
    let v = stdout_json(&fetch(&dir, "ESZ6", "esz6.csv", &["--gateway", &sim.addr]).code(0));
    assert_eq!(v["bars"], 46, "{v}");
    let v = stdout_json(&fetch(&dir, "EUR.USD", "eur.csv", &["--gateway", &sim.addr]).code(0));
    assert_eq!(v["bars"], 48, "{v}");
}

#[test]
fn bad_contract_text_and_conflicting_overrides_are_usage_errors() {
    let dir = scratch("contracts-usage");
    ibconn_in(&dir)
        .args(["head", "ES:FUT:2026"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("YYYYMM"));
    ibconn_in(&dir)
        .args(["validate", "AAPL:BOND"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("STK, CASH, IND, FUT, OPT"));
    ibconn_in(&dir)
        .args(["validate", "EUR.USD", "--sec-type", "STK"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("contradicts EUR.USD"));
    // An override re-reads a plain symbol: SPX as an index.
    ibconn_in(&dir)
        .args(["head", "SPX", "--sec-type", "IND"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "SPX TRADES: data since 1980-01-02T",
        ));
}

/// A bare name IB has no stock of gets what its symbol search knows it as, over the wire: an
/// index, a currency pair; a name nobody knows gets no guess.
#[test]
fn an_unknown_stock_name_suggests_what_ib_knows_it_as() {
    let sim = sim();
    let dir = scratch("contracts-hint");
    ibconn_in(&dir)
        .args(["validate", "--gateway", &sim.addr, "SPX", "EUR", "NOPE"])
        .assert()
        .code(4)
        .stdout(predicate::str::contains("SPX: did you mean SPX:IND?"))
        .stdout(predicate::str::contains("EUR: did you mean EUR.USD?"))
        .stdout(predicate::str::contains("NOPE: did you mean").not());
    let v = stdout_json(
        &ibconn_in(&dir)
            .args([
                "validate",
                "--json",
                "--refresh",
                "--gateway",
                &sim.addr,
                "SPX",
            ])
            .assert()
            .code(4),
    );
    assert_eq!(v["symbols"][0]["status"], "invalid");
    assert_eq!(v["symbols"][0]["hint"], "did you mean SPX:IND?");
}
