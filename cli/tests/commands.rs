//! `ibconn validate`, `head`, `ids`, `config`, `fetch --json` end to end: the real binary against
//! the embedded simulator, an in-process simulated gateway on a loopback port, or a closed port.
//! Every command runs in a scratch directory with its own state and cache directories, so no test
//! touches the user's files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::Path;

use ibconn_sim::ServerConfig;
use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::{closed_port, ibconn_in, scratch, Sim};

fn stdout_json(a: &assert_cmd::assert::Assert) -> Value {
    let out = &a.get_output().stdout;
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

fn cache_entries(path: &Path) -> serde_json::Map<String, Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["entries"].as_object().unwrap().clone()
}

fn statuses(v: &Value) -> Vec<(String, String, Value)> {
    v["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["symbol"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
                s["source"].clone(),
            )
        })
        .collect()
}

#[test]
fn validate_caches_valid_and_definitively_unknown_symbols() {
    let dir = scratch("validate");
    let cache = dir.join("symbols.json");
    let cache_s = cache.to_str().unwrap();
    let a = ibconn_in(&dir)
        .args(["validate", "AAPL", "nope", "--json", "--cache", cache_s])
        .assert()
        .code(4);
    let v = stdout_json(&a);
    insta::assert_json_snapshot!("validate_embedded", v, { ".cache" => "[cache file]" });

    // Both answers are cached: the negative one because IB said 200.
    let entries = cache_entries(&cache);
    assert_eq!(entries["AAPL/STK/SMART/USD"]["kind"], "valid");
    assert_eq!(entries["AAPL/STK/SMART/USD"]["symbol"]["con_id"], 265_598);
    assert_eq!(entries["NOPE/STK/SMART/USD"]["kind"], "unknown");

    // Second run: answered from the cache, so even an unreachable gateway is never dialed.
    let a = ibconn_in(&dir)
        .args(["validate", "AAPL", "NOPE", "--json", "--cache", cache_s])
        .args(["--gateway", &closed_port()])
        .assert()
        .code(4);
    let again = stdout_json(&a);
    assert_eq!(
        statuses(&again),
        [
            ("AAPL".into(), "valid".into(), Value::from("cache")),
            ("NOPE".into(), "invalid".into(), Value::from("cache")),
        ]
    );
    assert_eq!(again["symbols"][0]["con_id"], v["symbols"][0]["con_id"]);

    // --refresh asks again; only valid symbols: exit 0, and a table.
    ibconn_in(&dir)
        .args(["validate", "AAPL", "MSFT", "--refresh", "--cache", cache_s])
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("SYMBOL")
                .and(predicate::str::contains("APPLE INC"))
                .and(predicate::str::contains("272093"))
                .and(predicate::str::contains("gateway")),
        );
}

#[test]
fn a_connection_failure_is_an_error_and_is_never_cached() {
    let dir = scratch("validate-down");
    let cache = dir.join("symbols.json");
    let cache_s = cache.to_str().unwrap();
    // AAPL is known from an earlier run; ZZZZ has never been asked.
    ibconn_in(&dir)
        .args(["validate", "AAPL", "--cache", cache_s])
        .assert()
        .code(0);
    let closed = closed_port();
    let a = ibconn_in(&dir)
        .args(["validate", "AAPL", "ZZZZ", "--json", "--cache", cache_s])
        .args(["--gateway", &closed])
        .assert()
        .code(1);
    let v = stdout_json(&a);
    assert_eq!(
        statuses(&v),
        [
            ("AAPL".into(), "valid".into(), Value::from("cache")),
            ("ZZZZ".into(), "error".into(), Value::Null),
        ]
    );
    assert!(
        v["symbols"][1]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{v}"
    );
    let entries = cache_entries(&cache);
    assert!(entries.contains_key("AAPL/STK/SMART/USD"));
    assert!(
        !entries.contains_key("ZZZZ/STK/SMART/USD"),
        "a connection failure was cached: {entries:?}"
    );

    // A fresh cache and no gateway: nothing negative is written either.
    let fresh = dir.join("fresh.json");
    ibconn_in(&dir)
        .args(["validate", "NOPE", "--gateway", &closed, "--cache"])
        .arg(&fresh)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("error"));
    assert!(cache_entries(&fresh).is_empty());

    // Once the gateway answers, the symbol gets its definitive verdict.
    let a = ibconn_in(&dir)
        .args(["validate", "ZZZZ", "--json", "--cache", cache_s])
        .assert()
        .code(4);
    assert_eq!(
        statuses(&stdout_json(&a)),
        [("ZZZZ".into(), "invalid".into(), Value::from("gateway"))]
    );
}

#[test]
fn a_request_that_times_out_is_an_error_and_is_never_cached() {
    // A gateway that answers the handshake but takes 30 s for every contract-details reply;
    // the request timeout comes from the configuration (environment).
    let mut config = ServerConfig::default();
    config.gateway.reply_latency = std::time::Duration::from_secs(30);
    let sim = Sim::start_with(config);
    let addr = sim.addr.clone();
    let dir = scratch("validate-timeout");
    let cache = dir.join("symbols.json");
    let a = ibconn_in(&dir)
        .args([
            "validate",
            "AAPL",
            "NOPE",
            "--json",
            "--gateway",
            &addr,
            "--cache",
        ])
        .arg(&cache)
        .env("IBCONN_CONNECTION_REQUEST_TIMEOUT_SECS", "0.5")
        .assert()
        .code(1);
    let v = stdout_json(&a);
    let got = statuses(&v);
    // AAPL's answer never came: an error, not a verdict on the symbol.
    assert_eq!(got[0], ("AAPL".into(), "error".into(), Value::Null), "{v}");
    assert!(
        v["symbols"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{v}"
    );
    let entries = cache_entries(&cache);
    assert!(
        !entries.contains_key("AAPL/STK/SMART/USD"),
        "a timeout was cached: {entries:?}"
    );
    // NOPE got IB's definitive 200 on the same session (errors are not delayed): cached.
    assert_eq!(
        got[1],
        ("NOPE".into(), "invalid".into(), Value::from("gateway")),
        "{v}"
    );
    assert_eq!(entries["NOPE/STK/SMART/USD"]["kind"], "unknown");
}

#[test]
fn validate_and_head_talk_to_a_gateway_over_tcp() {
    let sim = Sim::start();
    let addr = sim.addr.clone();
    let dir = scratch("validate-tcp");
    let a = ibconn_in(&dir)
        .args(["validate", "MSFT", "--json", "--gateway", &addr])
        .assert()
        .code(0);
    let v = stdout_json(&a);
    assert_eq!(v["gateway"], addr.as_str());
    assert_eq!(v["symbols"][0]["status"], "valid");
    assert_eq!(v["symbols"][0]["con_id"], 272_093);
    // The default cache file lives under $XDG_CACHE_HOME.
    assert!(
        cache_entries(&dir.join("cache/ibconn/symbols.json")).contains_key("MSFT/STK/SMART/USD")
    );

    ibconn_in(&dir)
        .args(["head", "MSFT", "--gateway", &addr])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "MSFT TRADES: data since 1986-03-13T",
        ));
}

#[test]
fn head_prints_the_earliest_data_point() {
    let dir = scratch("head");
    let a = ibconn_in(&dir)
        .args(["head", "aapl", "--json"])
        .assert()
        .code(0);
    insta::assert_json_snapshot!("head_embedded", stdout_json(&a));

    ibconn_in(&dir)
        .args(["head", "AAPL", "--what", "MIDPOINT", "--rth"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "AAPL MIDPOINT (RTH): data since 1980-12-12T14:30:00Z (345479400)",
        ));
    ibconn_in(&dir)
        .args(["head", "NOPE"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("No security definition"));
    let a = ibconn_in(&dir)
        .args(["head", "AAPL", "--json", "--gateway", &closed_port()])
        .assert()
        .code(1);
    let v = stdout_json(&a);
    assert!(v["head_timestamp"].is_null());
    assert!(
        v["error"].as_str().unwrap().contains("cannot connect"),
        "{v}"
    );
}

/// `ids` against registry files; liveness comes from `/proc`, so Linux only.
#[cfg(target_os = "linux")]
mod ids {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use ibconn_core::client_id::liveness::current_holder;
    use ibconn_core::client_id::store::FileStore;
    use ibconn_core::client_id::{Holder, Purpose, RegistryConfig, UnixMillis};
    use predicates::prelude::*;

    use super::common::{ibconn_in, ibconn_std_in, scratch, Serve, Sim};
    use super::stdout_json;

    /// A registry file with a lease held by this (live) test process and one by a holder from
    /// another boot (dead).
    fn registry_with_two_leases(path: &Path) -> (i32, i32) {
        let store = FileStore::new(path);
        let cfg = RegistryConfig::default();
        let now = UnixMillis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        );
        let alive = |_: &Holder| ibconn_core::client_id::Liveness::Unknown;
        let live = store
            .allocate(
                &cfg,
                &Purpose::Backfill,
                &current_holder(Some("test worker".to_owned())),
                now,
                &alive,
            )
            .unwrap();
        let gone = Holder {
            boot_id: Some("a-previous-boot".to_owned()),
            label: Some("crashed worker".to_owned()),
            ..Holder::from_pid(1)
        };
        let dead = store
            .allocate(&cfg, &Purpose::Api, &gone, now, &alive)
            .unwrap();
        (live.id, dead.id)
    }

    #[test]
    fn ids_lists_leases_and_releases_live_ones_only_with_force() {
        let dir = scratch("ids");
        let reg = dir.join("ids.json");
        let reg_s = reg.to_str().unwrap();
        let (live, dead) = registry_with_two_leases(&reg);
        assert_eq!((live, dead), (2000, 1000));

        let a = ibconn_in(&dir)
            .args(["ids", "--registry", reg_s, "--json"])
            .assert()
            .code(0);
        let v = stdout_json(&a);
        assert_eq!(v["leases"][1]["pid"], std::process::id());
        insta::assert_json_snapshot!("ids_list", v, {
            ".registry" => "[registry file]",
            ".leases[].pid" => "[pid]",
            ".leases[].acquired_at_ms" => "[ms]",
            ".leases[].heartbeat_at_ms" => "[ms]",
            ".leases[].expires_at_ms" => "[ms]",
            ".leases[].expires_at" => "[time]",
        });

        ibconn_in(&dir)
            .args(["ids", "list", "--registry", reg_s])
            .assert()
            .code(0)
            .stdout(
                predicate::str::contains("2000  backfill")
                    .and(predicate::str::contains("test worker"))
                    .and(predicate::str::contains("alive"))
                    .and(predicate::str::contains("dead")),
            );

        // The live lease stays without --force, with a message saying why.
        ibconn_in(&dir)
            .args(["ids", "release", "2000", "--registry", reg_s])
            .assert()
            .code(1)
            .stderr(
                predicate::str::contains("--force")
                    .and(predicate::str::contains("326"))
                    .and(predicate::str::contains("alive")),
            );
        // The dead one goes without it; an id nobody leases is reported.
        ibconn_in(&dir)
            .args(["ids", "release", "1000", "--registry", reg_s])
            .assert()
            .code(0)
            .stdout(predicate::str::contains("released client id 1000"));
        ibconn_in(&dir)
            .args(["ids", "release", "4242", "--registry", reg_s])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("client id 4242: not leased"));
        let a = ibconn_in(&dir)
            .args(["ids", "--registry", reg_s, "--json"])
            .assert()
            .code(0);
        let ids: Vec<i64> = stdout_json(&a)["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [2000]);

        // --all refuses the live one too, unless forced.
        ibconn_in(&dir)
            .args(["ids", "release", "--all", "--registry", reg_s])
            .assert()
            .code(1);
        let a = ibconn_in(&dir)
            .args([
                "ids",
                "release",
                "--all",
                "--force",
                "--json",
                "--registry",
                reg_s,
            ])
            .assert()
            .code(0);
        assert_eq!(stdout_json(&a)["released"], serde_json::json!([2000]));
        ibconn_in(&dir)
            .args(["ids", "--registry", reg_s])
            .assert()
            .code(0)
            .stdout(predicate::str::contains("no leases"));

        // The registry comes from the config when --registry is not given.
        ibconn_in(&dir)
            .args(["ids", "--json"])
            .env("IBCONN_CLIENT_IDS_REGISTRY_FILE", reg_s)
            .assert()
            .code(0)
            .stdout(predicate::str::contains(reg_s));
    }

    #[test]
    fn ids_shows_the_lease_a_running_serve_holds() {
        let sim = Sim::start();
        let dir = scratch("ids-serve");
        let mut cmd = ibconn_std_in(&dir);
        cmd.args(["serve", "--gateway", &sim.addr, "--listen", "127.0.0.1:0"]);
        // Panics unless the first line is `listening on ADDR`.
        let mut serve = Serve::spawn(cmd);
        let pid = serve.child.id();

        // serve connects its health session right away; wait for its lease to appear.
        let started = Instant::now();
        let lease = loop {
            let a = ibconn_in(&dir).args(["ids", "--json"]).assert().code(0);
            let v = stdout_json(&a);
            if let Some(l) = v["leases"].as_array().and_then(|l| l.first()) {
                break l.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no lease appeared: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(lease["purpose"], "health");
        assert_eq!(lease["id"], 5000);
        assert_eq!(lease["pid"], pid);
        assert_eq!(lease["holder"], "ibconn serve");
        assert_eq!(lease["liveness"], "alive");
        assert_eq!(lease["expired"], false);
        ibconn_in(&dir)
            .args(["ids", "release", "5000"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("--force"));

        // Killed (no chance to release): the lease stays, but its holder is dead, so it goes
        // without --force.
        serve.kill();
        let a = ibconn_in(&dir).args(["ids", "--json"]).assert().code(0);
        assert_eq!(stdout_json(&a)["leases"][0]["liveness"], "dead");
        ibconn_in(&dir)
            .args(["ids", "release", "5000"])
            .assert()
            .code(0);
    }
}

#[test]
fn config_prints_the_effective_configuration() {
    let dir = scratch("config");
    let a = ibconn_in(&dir).args(["config", "--json"]).assert().code(0);
    insta::assert_json_snapshot!("config_defaults", stdout_json(&a), {
        ".client_ids.registry_file" => "[state dir]/ibconn/client-ids.json",
        ".coordination.pacing_dir" => "[state dir]/ibconn/pacing",
        ".validate.cache_file" => "[cache dir]/ibconn/symbols.json",
    });
    let v = stdout_json(&a);
    assert_eq!(
        v["client_ids"]["registry_file"],
        dir.join("state/ibconn/client-ids.json").to_str().unwrap()
    );

    // ./ibconn.toml is read by default; the environment overrides it; the token is not shown.
    std::fs::write(
        dir.join("ibconn.toml"),
        "gateway = \"127.0.0.1:4002\"\n[pool]\nacquire_timeout_secs = 12\n\
         [fetch]\nconcurrency = 2\n[http]\ntoken = \"from-file\"\n",
    )
    .unwrap();
    let a = ibconn_in(&dir)
        .args(["config", "--json"])
        .env("IBCONN_FETCH_CONCURRENCY", "7")
        .env("IBCONN_HTTP_TOKEN", "s3cret")
        .assert()
        .code(0);
    let v = stdout_json(&a);
    assert_eq!(v["gateway"], "127.0.0.1:4002");
    assert_eq!(v["pool"]["acquire_timeout_secs"], 12.0);
    assert_eq!(v["fetch"]["concurrency"], 7);
    assert_eq!(v["http"]["token"], "[redacted]");
    assert!(!String::from_utf8_lossy(&a.get_output().stdout).contains("s3cret"));

    // TOML by default, naming the file and the variables applied; it reads back as a config.
    let a = ibconn_in(&dir)
        .arg("config")
        .env("IBCONN_FETCH_CONCURRENCY", "7")
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("# file: ibconn.toml")
                .and(predicate::str::contains("IBCONN_FETCH_CONCURRENCY"))
                .and(predicate::str::contains("concurrency = 7")),
        );
    let printed = dir.join("printed.toml");
    std::fs::write(&printed, &a.get_output().stdout).unwrap();
    ibconn_in(&dir)
        .args(["config", "--json", "--config"])
        .arg(&printed)
        .assert()
        .code(0);
}

#[test]
fn bad_config_exits_2_naming_the_file_and_key() {
    let dir = scratch("config-bad");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (
            write("unknown.toml", "[pool]\nacquire_timeout = 3\n"),
            vec!["unknown.toml", "unknown field `acquire_timeout`"],
        ),
        (
            write("type.toml", "[fetch]\nconcurrency = \"four\"\n"),
            vec!["type.toml", "concurrency"],
        ),
        (
            write(
                "range.toml",
                "[client_ids.ranges.backfill]\nfirst = 2999\nlast = 2000\n",
            ),
            vec!["client_ids.ranges.backfill", "range.toml"],
        ),
        (
            write("ttl.toml", "[client_ids]\nlease_ttl_secs = 30\n"),
            vec!["pool.heartbeat_interval_secs", "lease_ttl_secs"],
        ),
    ];
    for (file, wanted) in &cases {
        for cmd in [
            &["config"][..],
            &["health", "--gateway", "127.0.0.1:9"],
            &["ids"],
        ] {
            let mut pred = predicate::str::contains("ibconn:").boxed();
            for w in wanted {
                pred = pred.and(predicate::str::contains(*w)).boxed();
            }
            ibconn_in(&dir)
                .arg("--config")
                .arg(file)
                .args(cmd)
                .assert()
                .code(2)
                .stderr(pred);
        }
    }
    ibconn_in(&dir)
        .args(["config", "--config", "missing.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.toml"));
    // A variable under a known section that names no key is a typo, not ignored.
    ibconn_in(&dir)
        .arg("config")
        .env("IBCONN_POOL_ACQUIRE_TIMEOUT", "3")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("IBCONN_POOL_ACQUIRE_TIMEOUT"));
    ibconn_in(&dir)
        .arg("config")
        .env("IBCONN_PACING_HISTORICAL_MAX", "0")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("pacing.historical_max")
                .and(predicate::str::contains("$IBCONN_PACING_HISTORICAL_MAX")),
        );
    // explain needs no configuration and works even with a broken one.
    ibconn_in(&dir)
        .arg("--config")
        .arg(&cases[0].0)
        .args([
            "explain",
            "200",
            "No security definition has been found for the request.",
        ])
        .assert()
        .code(0);
}

#[test]
fn the_configured_version_offer_reaches_the_connection() {
    // A text-era gateway (server version 176): the default offer falls back and connects; a
    // pinned modern offer cannot (and says so in the exit code); a pinned wide one can.
    let mut config = ServerConfig::default();
    config.gateway.versions = ibconn_core::wire::VersionRange::new(100, 176);
    let sim = Sim::start_with(config);
    let dir = scratch("config-versions");
    let health = |versions: Option<&str>| {
        let mut cmd = ibconn_in(&dir);
        cmd.args(["health", "--gateway", &sim.addr, "--timeout", "3"]);
        if let Some(v) = versions {
            cmd.env("IBCONN_CONNECTION_VERSIONS", v);
        }
        cmd.assert()
    };
    health(None).code(0);
    health(Some("213..226")).code(1);
    health(Some("100..226")).code(0);
    health(Some("100..300"))
        .code(2)
        .stderr(predicate::str::contains("connection.versions"));
    health(Some("modern"))
        .code(2)
        .stderr(predicate::str::contains("neither \"auto\" nor MIN..MAX"));
}

#[test]
fn configuration_reaches_the_commands_with_flags_on_top() {
    let sim = Sim::start();
    let sim_addr = sim.addr.clone();
    let closed = closed_port();
    let dir = scratch("config-use");
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, format!("gateway = \"{sim_addr}\"\n")).unwrap();

    // health takes the gateway from the file; the environment overrides the file; a flag
    // overrides both.
    ibconn_in(&dir)
        .arg("--config")
        .arg(&cfg)
        .arg("health")
        .assert()
        .code(0);
    ibconn_in(&dir)
        .arg("--config")
        .arg(&cfg)
        .arg("health")
        .env("IBCONN_GATEWAY", &closed)
        .assert()
        .code(1);
    ibconn_in(&dir)
        .arg("--config")
        .arg(&cfg)
        .args(["health", "--gateway", &sim_addr])
        .env("IBCONN_GATEWAY", &closed)
        .assert()
        .code(0);
    ibconn_in(&dir)
        .arg("health")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no gateway"));

    // validate uses the configured gateway, and `--gateway embedded` the embedded simulator.
    let a = ibconn_in(&dir)
        .arg("--config")
        .arg(&cfg)
        .args(["validate", "AAPL", "--json"])
        .assert()
        .code(0);
    assert_eq!(stdout_json(&a)["gateway"], sim_addr.as_str());
    let a = ibconn_in(&dir)
        .args([
            "validate",
            "AAPL",
            "--json",
            "--refresh",
            "--gateway",
            "embedded",
        ])
        .env("IBCONN_GATEWAY", &closed)
        .assert()
        .code(0);
    assert_eq!(stdout_json(&a)["gateway"], "embedded-sim");

    // plan estimates with the configured pacing: twice the per-contract burst budget, less time.
    let plan = |env: &[(&str, &str)]| {
        let mut cmd = ibconn_in(&dir);
        cmd.args([
            "plan",
            "AAPL",
            "--bar",
            "5s",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-03",
            "--json",
        ]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        stdout_json(&cmd.assert().code(0))
    };
    let default = plan(&[]);
    let doubled = plan(&[("IBCONN_PACING_BURST_MAX", "10")]);
    assert_eq!(default["requests"], doubled["requests"]);
    assert!(
        doubled["estimate_secs"].as_u64().unwrap() < default["estimate_secs"].as_u64().unwrap(),
        "{default} vs {doubled}"
    );
    assert!(doubled["delayed"].as_u64().unwrap() < default["delayed"].as_u64().unwrap());
}

#[test]
fn fetch_json_prints_the_summary_on_stdout() {
    let dir = scratch("fetch-json");
    let out = dir.join("d.csv");
    let a = ibconn_in(&dir)
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "1d",
            "--rth",
            "--from",
            "2025-12-01",
            "--to",
            "2026-01-01",
            "--json",
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(0);
    let v = stdout_json(&a);
    insta::assert_json_snapshot!("fetch_json", v, {
        ".wall_secs" => "[secs]",
        ".virtual_secs" => "[secs]",
    });
    assert_eq!(v["bars"], 22);
    assert_eq!(v["bars_added"], 22);
    assert_eq!(v["gateway"], "embedded-sim");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["job"]["progress"]["chunks_failed"], 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 23);
    // No text summary on stderr when it went to stdout as JSON.
    assert!(
        !String::from_utf8_lossy(&a.get_output().stderr).contains("bars ("),
        "{}",
        String::from_utf8_lossy(&a.get_output().stderr)
    );

    // Without --out the bars would share stdout with the JSON: refused as usage.
    ibconn_in(&dir)
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "1d",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-05",
            "--json",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--out"));
}

#[test]
fn fetch_against_a_closed_port_exits_1() {
    let dir = scratch("fetch-closed");
    let closed = closed_port();
    let out = dir.join("d.csv");
    ibconn_in(&dir)
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "1h",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-03",
            "--gateway",
            &closed,
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot connect").and(predicate::str::contains(&closed)))
        // Only why: no summary of a run that asked nothing.
        .stderr(predicate::str::contains("chunks:").not());
    // Nothing was asked, so nothing is written: no header-only CSV, no sidecar.
    assert!(!out.exists(), "a failed connect created {}", out.display());
    assert!(!dir.join("d.csv.covered.json").exists());
    let a = ibconn_in(&dir)
        .args([
            "fetch",
            "AAPL",
            "--bar",
            "1h",
            "--from",
            "2025-12-01",
            "--to",
            "2025-12-03",
            "--gateway",
            &closed,
            "--json",
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(1);
    let v = stdout_json(&a);
    assert_eq!(v["bars"], 0);
    assert_eq!(v["exit_code"], 1);
    insta::assert_json_snapshot!("fetch_json_unreachable", v, {
        ".wall_secs" => "[secs]",
        ".error" => "[cannot connect to the gateway]",
        ".gateway" => "[gateway]",
    });
    assert!(
        v["error"].as_str().unwrap().contains("cannot connect"),
        "{v}"
    );
}

#[test]
fn new_commands_have_help() {
    let dir = scratch("help");
    for cmd in [
        &["validate"][..],
        &["head"],
        &["ids"],
        &["ids", "list"],
        &["ids", "release"],
        &["config"],
    ] {
        ibconn_in(&dir)
            .args(cmd)
            .arg("--help")
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage").and(predicate::str::contains("Exit codes")));
    }
    ibconn_in(&dir)
        .args(["ids", "release", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--force"));
}
