//! Several symbols per fetch (`--out-dir`, `--symbols-file`) and data users can load
//! (`--time-format`, the symbol column, empty cells instead of IB's -1), on the embedded
//! simulator (issue 14, items 2 and 3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::Path;

use serde_json::Value;

mod common;
use common::{ibconn_in, ibconn_std, scratch, Serve};

/// `ibconn fetch ARGS` in `dir` on the embedded simulator.
fn fetch(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    ibconn_in(dir).arg("fetch").args(args).assert()
}

/// `ibconn fetch ARGS --json` in `dir`: the exit code and the summary.
fn fetch_json(dir: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let a = fetch(dir, &[args, &["--json"]].concat());
    let out = a.get_output();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Four hours of 5-second bars: four chunks for a stock, a forex pair alike.
const FOUR_HOURS: [&str; 6] = [
    "--bar",
    "5s",
    "--from",
    "2025-12-01T14:00:00Z",
    "--to",
    "2025-12-01T18:00:00Z",
];

/// One day of 5-second bars: 15 chunks for a stock (04:00–20:00 New York), 24 for forex.
const DAY: [&str; 6] = ["--bar", "5s", "--from", "2025-12-01", "--to", "2025-12-02"];

#[test]
fn several_symbols_one_file_each_through_one_pacer() {
    let dir = scratch("batch-three");
    let (code, s) = fetch_json(
        &dir,
        &[
            &["AAPL", "MSFT", "EUR.USD"][..],
            &FOUR_HOURS,
            &["--out-dir", "out"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0), "{s}");
    let symbols = s["symbols"].as_array().unwrap();
    assert_eq!(symbols.len(), 3);
    for (entry, (symbol, file, what)) in symbols.iter().zip([
        ("AAPL", "AAPL.csv", "TRADES"),
        ("MSFT", "MSFT.csv", "TRADES"),
        ("EUR.USD", "EUR.USD.csv", "MIDPOINT"),
    ]) {
        assert_eq!(entry["symbol"], symbol);
        assert_eq!(entry["exit_code"], 0);
        assert_eq!(entry["written"], true);
        assert_eq!(entry["requests"], 4, "{entry}");
        assert_eq!(entry["job"]["what_to_show"], what);
        assert_eq!(entry["bars"], 4 * 720);
        let text = read(&dir.join("out").join(file));
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("symbol,time,open,high,low,close,volume,wap,count")
        );
        let first = lines.next().unwrap();
        assert!(
            first.starts_with(&format!("{symbol},2025-12-01T14:00:00Z,")),
            "{first}"
        );
        assert!(lines.all(|l| l.starts_with(&format!("{symbol},"))));
        assert!(dir
            .join("out")
            .join(format!("{file}.covered.json"))
            .exists());
    }
    assert_eq!(s["requests"], 12);
    assert_eq!(s["bars"], 3 * 4 * 720);
    assert_eq!(s["pacing_violations"], 0);
    assert_eq!(s["gateway_pacing_violations"], 0);
    // Round-robin: each contract's requests are spaced by the others', so the per-contract
    // burst rule holds none of them back ...
    assert_eq!(s["pacing_held_by"]["burst"], 0, "{}", s["pacing_held_by"]);
    assert_eq!(s["pacing_waits"], 0);

    // ... where the same twelve requests for one contract wait for it.
    let (code, one) = fetch_json(
        &dir,
        &[
            "AAPL",
            "--bar",
            "5s",
            "--from",
            "2025-12-01T09:00:00Z",
            "--to",
            "2025-12-01T21:00:00Z",
            "--out-dir",
            "one",
        ],
    );
    assert_eq!(code, Some(0));
    assert_eq!(one["requests"], 12);
    assert!(
        one["pacing_held_by"]["burst"].as_u64().unwrap() > 0,
        "{}",
        one["pacing_held_by"]
    );

    // Running it again resumes every file: nothing asked.
    let (code, again) = fetch_json(
        &dir,
        &[
            &["AAPL", "MSFT", "EUR.USD"][..],
            &FOUR_HOURS,
            &["--out-dir", "out"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0));
    assert_eq!(again["requests"], 0);
    assert_eq!(again["bars"], 3 * 4 * 720);
}

#[test]
fn interleaving_waits_less_than_the_symbols_one_after_another() {
    let dir = scratch("batch-interleave");
    let (code, all) = fetch_json(
        &dir,
        &[
            &["AAPL", "MSFT", "EUR.USD"][..],
            &DAY,
            &["--out-dir", "all"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0));
    assert_eq!(all["pacing_violations"], 0);
    assert_eq!(all["gateway_pacing_violations"], 0);
    let (mut secs, mut longest, mut wait_ms, mut burst) = (0.0, 0.0_f64, 0, 0);
    for symbol in ["AAPL", "MSFT", "EUR.USD"] {
        let (code, one) = fetch_json(
            &dir,
            &[&[symbol][..], &DAY, &["--out-dir", symbol]].concat(),
        );
        assert_eq!(code, Some(0));
        let took = one["virtual_secs"].as_f64().unwrap();
        secs += took;
        longest = longest.max(took);
        wait_ms += one["pacing_wait_ms"].as_u64().unwrap();
        burst += one["pacing_held_by"]["burst"].as_u64().unwrap();
        // The same bars, file for file.
        let name = format!("{symbol}.csv");
        assert_eq!(
            read(&dir.join(symbol).join(&name)),
            read(&dir.join("all").join(&name))
        );
    }
    // Together they take as long as the longest alone (EUR.USD: 24 chunks, the stocks 15): the
    // other symbols' requests fill the gaps its burst rule leaves and cost no time.
    let together = all["virtual_secs"].as_f64().unwrap();
    assert!(together <= longest + 0.5, "{together} s vs {longest} s");
    assert!(
        together < secs / 2.0,
        "{together} s vs {secs} s one after another"
    );
    assert!(all["pacing_wait_ms"].as_u64().unwrap() < wait_ms);
    assert!(all["pacing_held_by"]["burst"].as_u64().unwrap() < burst);
    assert_eq!(all["pacing_held_by"]["historical_window"], 0);
}

#[test]
fn a_symbols_file_adds_contracts_and_a_bad_line_is_named() {
    let dir = scratch("batch-file");
    std::fs::write(
        dir.join("symbols.txt"),
        "# my list\nMSFT\n\n  EUR.USD   # forex, midpoints\naapl\n",
    )
    .unwrap();
    let (code, s) = fetch_json(
        &dir,
        &[
            &["AAPL", "--symbols-file", "symbols.txt"][..],
            &FOUR_HOURS,
            &["--out-dir", "out"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0));
    let names: Vec<&str> = s["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["symbol"].as_str().unwrap())
        .collect();
    // Arguments first, then the file; `aapl` is AAPL again: fetched once.
    assert_eq!(names, ["AAPL", "MSFT", "EUR.USD"]);

    std::fs::write(dir.join("bad.txt"), "AAPL\n# fine\nES:XYZ\nMSFT\n").unwrap();
    let a = fetch(
        &dir,
        &[
            &["--symbols-file", "bad.txt"][..],
            &FOUR_HOURS,
            &["--out-dir", "bad"],
        ]
        .concat(),
    )
    .code(2);
    let err = stderr(&a);
    assert!(
        err.contains("bad.txt") && err.contains("line 3") && err.contains("XYZ"),
        "{err}"
    );
    assert!(!dir.join("bad").exists(), "nothing was written");
    let a = fetch(
        &dir,
        &[&["--symbols-file", "missing.txt"][..], &FOUR_HOURS].concat(),
    )
    .code(2);
    assert!(stderr(&a).contains("missing.txt"), "{}", stderr(&a));
    // Several symbols need a directory; a plan does not.
    let a = fetch(&dir, &[&["AAPL", "MSFT"][..], &FOUR_HOURS].concat()).code(2);
    assert!(stderr(&a).contains("--out-dir"), "{}", stderr(&a));
    let plan = ibconn_in(&dir)
        .args(["plan", "--symbols-file", "symbols.txt", "AAPL", "--json"])
        .args(DAY)
        .assert()
        .success();
    let p: Value = serde_json::from_slice(&plan.get_output().stdout).unwrap();
    assert_eq!(p["symbols"].as_array().unwrap().len(), 3);
    // One estimate for the three, over all their requests.
    assert_eq!(p["requests"], 15 + 15 + 24);
    assert!(p["estimate_secs"].as_u64().unwrap() > 0);
}

#[test]
fn unknown_symbols_exit_4_only_when_all_are_unknown() {
    let dir = scratch("batch-unknown");
    let (code, s) = fetch_json(
        &dir,
        &[&["AAPL", "NOSUCH"][..], &FOUR_HOURS, &["--out-dir", "out"]].concat(),
    );
    assert_eq!(code, Some(3), "{s}");
    assert_eq!(s["symbols"][0]["exit_code"], 0);
    assert_eq!(s["symbols"][1]["exit_code"], 4);
    assert_eq!(s["symbols"][1]["written"], false);
    assert!(dir.join("out/AAPL.csv").exists());
    assert!(!dir.join("out/NOSUCH.csv").exists());
    let (code, _) = fetch_json(
        &dir,
        &[
            &["NOSUCH", "ALSONOT"][..],
            &FOUR_HOURS,
            &["--out-dir", "none"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(4));
}

#[test]
fn times_are_iso_by_default_and_epoch_on_request() {
    let dir = scratch("times");
    let first_row = |args: &[&str]| {
        let a = fetch(&dir, args).success();
        let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
        out.lines().nth(1).unwrap().to_owned()
    };
    let day = ["--from", "2025-12-01", "--to", "2025-12-03"];
    let hourly = first_row(&[&["AAPL", "--bar", "1h"][..], &day].concat());
    assert!(hourly.starts_with("2025-12-01T09:00:00Z,"), "{hourly}");
    let daily = first_row(&[&["AAPL", "--bar", "1d"][..], &day].concat());
    assert!(daily.starts_with("2025-12-01,"), "{daily}");
    let epoch = first_row(&[&["AAPL", "--bar", "1h", "--time-format", "epoch"][..], &day].concat());
    assert!(epoch.starts_with("1764579600,"), "{epoch}");
    let yyyymmdd =
        first_row(&[&["AAPL", "--bar", "1d", "--time-format", "epoch"][..], &day].concat());
    assert!(yyyymmdd.starts_with("20251201,"), "{yyyymmdd}");
    // Quote bars: IB's -1 in volume, WAP and count is an empty cell; trade bars keep theirs.
    let mid = first_row(&[&["EUR.USD", "--bar", "1h"][..], &day].concat());
    assert!(
        mid.starts_with("2025-12-01T00:00:00Z,") && mid.ends_with(",,,"),
        "{mid}"
    );
    assert!(!hourly.ends_with(','), "{hourly}");
    // --with-symbol, also on stdout.
    let a = fetch(
        &dir,
        &[&["EUR.USD", "--bar", "1h", "--with-symbol"][..], &day].concat(),
    )
    .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.starts_with(
        "symbol,time,open,high,low,close,volume,wap,count\nEUR.USD,2025-12-01T00:00:00Z,"
    ));
}

#[test]
fn a_resumed_file_keeps_its_format_and_the_other_is_refused() {
    let dir = scratch("times-resume");
    let range = |to: &str| ["--from", "2025-12-01", "--to", to].map(str::to_owned);
    let run = |extra: &[&str], to: &str, out: &str| {
        let r = range(to);
        let r: Vec<&str> = r.iter().map(String::as_str).collect();
        fetch(
            &dir,
            &[&["AAPL", "--bar", "1h"][..], &r, extra, &["--out", out]].concat(),
        )
    };
    run(&["--time-format", "epoch"], "2025-12-03", "e.csv").success();
    run(&[], "2025-12-03", "i.csv").success();
    for (file, asked, held) in [("e.csv", "iso", "epoch"), ("i.csv", "epoch", "iso")] {
        let before = std::fs::read(dir.join(file)).unwrap();
        let a = run(&["--time-format", asked], "2025-12-05", file).code(2);
        let err = stderr(&a);
        assert!(
            err.contains(&format!("--time-format {held}")) && err.contains(asked),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.join(file)).unwrap(), before, "left alone");
        let a = run(&["--with-symbol"], "2025-12-05", file).code(2);
        assert!(stderr(&a).contains("no symbol column"), "{}", stderr(&a));
    }
    // Without the flag (or with the file's own) a resume keeps the format.
    run(&[], "2025-12-05", "e.csv").success();
    run(&["--time-format", "iso"], "2025-12-05", "i.csv").success();
    let e = read(&dir.join("e.csv"));
    let i = read(&dir.join("i.csv"));
    assert_eq!(e.lines().count(), i.lines().count());
    assert!(e
        .lines()
        .skip(1)
        .all(|l| l.as_bytes()[0].is_ascii_digit() && !l.contains('T')));
    assert!(i
        .lines()
        .skip(1)
        .all(|l| l.starts_with("2025-12-0") && l.contains('T')));
    // The two files hold the same bars, times apart.
    let epoch_of = |iso_row: &str| {
        let t = iso_row.split(',').next().unwrap();
        let day: i64 = t[8..10].parse().unwrap();
        let (h, m): (i64, i64) = (t[11..13].parse().unwrap(), t[14..16].parse().unwrap());
        1_764_547_200 + (day - 1) * 86_400 + h * 3_600 + m * 60
    };
    for (a, b) in e.lines().skip(1).zip(i.lines().skip(1)) {
        let (ta, rest_a) = a.split_once(',').unwrap();
        let (_, rest_b) = b.split_once(',').unwrap();
        assert_eq!(ta.parse::<i64>().unwrap(), epoch_of(b));
        assert_eq!(rest_a, rest_b);
    }
    // A file with the symbol column keeps it without the flag.
    run(&["--with-symbol"], "2025-12-03", "s.csv").success();
    run(&[], "2025-12-05", "s.csv").success();
    assert!(read(&dir.join("s.csv"))
        .lines()
        .skip(1)
        .all(|l| l.starts_with("AAPL,2025-12-0")));
}

/// FNV-1a 64, as the sidecar fingerprints a CSV.
fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[test]
fn a_file_of_the_old_epoch_format_resumes_as_it_was_written() {
    let dir = scratch("times-legacy");
    let args = |to: &'static str| {
        [
            "EUR.USD",
            "--bar",
            "5s",
            "--from",
            "2025-12-01",
            "--to",
            to,
            "--out",
            "old.csv",
        ]
    };
    // What an earlier build wrote: epoch times, -1 where a quote bar has no volume, and a
    // version 2 sidecar without a layout.
    fetch(
        &dir,
        &[
            &args("2025-12-01T04:00:00Z")[..],
            &["--time-format", "epoch"],
        ]
        .concat(),
    )
    .success();
    let new_format = read(&dir.join("old.csv"));
    let old = new_format.replace(",,,\n", ",-1,-1,-1\n");
    assert_ne!(old, new_format);
    std::fs::write(dir.join("old.csv"), &old).unwrap();
    let sidecar: Value = serde_json::from_str(&read(&dir.join("old.csv.covered.json"))).unwrap();
    let v2 = serde_json::json!({
        "version": 2,
        "identity": {
            "contract": sidecar["identity"]["contract"],
            "bar_size": "5 secs",
            "what_to_show": "MIDPOINT",
            "rth": false,
            "time_format": "epoch",
        },
        "csv": {"bytes": old.len(), "fnv64": fnv64(old.as_bytes())},
        "covered": sidecar["covered"],
        "empty_once": sidecar["empty_once"],
    });
    std::fs::write(dir.join("old.csv.covered.json"), v2.to_string()).unwrap();

    // Resumed over a longer range: trusted (no re-fetch of what it covers), kept as it was.
    let summary = dir.join("s.json");
    let a = fetch(
        &dir,
        &[
            &args("2025-12-01T06:00:00Z")[..],
            &["--summary-json", summary.to_str().unwrap()],
        ]
        .concat(),
    )
    .success();
    assert!(!stderr(&a).contains("warning"), "{}", stderr(&a));
    let s: Value = serde_json::from_str(&read(&summary)).unwrap();
    assert_eq!(s["job"]["progress"]["chunks_resumed"], 4, "{s}");
    assert_eq!(s["requests"], 2, "{s}");
    let text = read(&dir.join("old.csv"));
    assert!(
        text.starts_with(&old),
        "the old rows are kept byte for byte"
    );
    assert!(text.len() > old.len());
    assert!(text
        .lines()
        .skip(1)
        .all(|l| l.ends_with(",-1,-1,-1") && !l.contains('T')));
    let sidecar: Value = serde_json::from_str(&read(&dir.join("old.csv.covered.json"))).unwrap();
    assert_eq!(sidecar["version"], 3);
    assert_eq!(
        sidecar["identity"]["layout"],
        serde_json::json!({"time_format": "epoch", "symbol": null, "missing": "-1"})
    );
    // Asked for ISO, the old file is refused like any epoch file.
    let a = fetch(
        &dir,
        &[&args("2025-12-01T06:00:00Z")[..], &["--time-format", "iso"]].concat(),
    )
    .code(2);
    assert!(stderr(&a).contains("--time-format epoch"), "{}", stderr(&a));
}

/// Over TCP (`ibconn sim`, IB's pacing in wall time): the same files, one pool, no violation,
/// the per-contract burst rule holding nothing back.
#[test]
fn several_symbols_over_a_gateway() {
    let mut cmd = ibconn_std();
    // Its clock shortly after the range: IB serves 5-second bars only ~6 months back.
    cmd.args(["sim", "--listen", "127.0.0.1:0", "--seed", "2"])
        .args(["--wall-clock", "20251210-00:00:00"]);
    let sim = Serve::spawn(cmd);
    let dir = scratch("batch-gateway");
    let two_hours = [
        "--bar",
        "5s",
        "--from",
        "2025-12-01T14:00:00Z",
        "--to",
        "2025-12-01T16:00:00Z",
    ];
    let (code, s) = fetch_json(
        &dir,
        &[
            &["AAPL", "EUR.USD", "ES:FUT:202603"][..],
            &two_hours,
            &["--gateway", &sim.addr, "--out-dir", "out"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0), "{s}");
    assert_eq!(s["time"], "wall");
    assert_eq!(s["requests"], 6);
    assert_eq!(s["pacing_violations"], 0);
    assert_eq!(s["pacing_held_by"]["burst"], 0, "{s}");
    for (symbol, file) in [
        ("AAPL", "AAPL.csv"),
        ("EUR.USD", "EUR.USD.csv"),
        ("ES:FUT:202603", "ES-FUT-202603.csv"),
    ] {
        let text = read(&dir.join("out").join(file));
        assert_eq!(text.lines().count(), 1 + 2 * 720, "{file}");
        assert!(text
            .lines()
            .skip(1)
            .all(|l| l.starts_with(&format!("{symbol},2025-12-01T1"))));
    }
    // The same run on the embedded simulator writes the same bars.
    let (code, _) = fetch_json(
        &dir,
        &[
            &["AAPL", "EUR.USD", "ES:FUT:202603"][..],
            &two_hours,
            &["--out-dir", "embedded", "--seed", "2"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0));
    for file in ["AAPL.csv", "EUR.USD.csv", "ES-FUT-202603.csv"] {
        let same = read(&dir.join("out").join(file)) == read(&dir.join("embedded").join(file));
        assert!(same, "{file} differs");
    }
}

/// SIGTERM stops a fetch of several symbols like one of one: every file holds what was fetched
/// (with its sidecar), each symbol says "partial", the run exits 3.
#[test]
fn sigterm_writes_every_symbols_file() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = scratch("batch-sigterm");
    let mut child = common::ibconn_std_in(&dir)
        .args(["fetch", "AAPL", "MSFT", "--bar", "5s"])
        .args(["--from", "2025-09-01", "--to", "2025-12-01"])
        .args(["--out-dir", "long", "--summary-json", "s.json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = dir.join("long/MSFT.csv.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lock.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
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
    let s: Value = serde_json::from_str(&read(&dir.join("s.json"))).unwrap();
    for (entry, file) in s["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["AAPL", "MSFT"])
    {
        assert_eq!(entry["exit_code"], 3, "{entry}");
        let text = read(&dir.join("long").join(format!("{file}.csv")));
        assert!(
            text.lines().count() > 1,
            "{file}: the bars fetched were written"
        );
        assert!(dir
            .join("long")
            .join(format!("{file}.csv.covered.json"))
            .exists());
    }
}
