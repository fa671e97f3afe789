//! `ibconn health` against an in-process simulated gateway and against a closed port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::{closed_port, ibconn, Sim};

#[test]
fn health_exits_0_against_the_sim_and_prints_latency() {
    let sim = Sim::start();
    let addr = sim.addr.clone();
    ibconn()
        .args(["health", "--gateway", &addr])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("healthy:").and(predicate::str::contains("round trip")));

    let out = ibconn()
        .args(["health", "--gateway", &addr, "--json", "--timeout", "3"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["gateway"], addr.as_str());
    assert!(v["probe_rtt_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["connect_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["server_time"].as_i64().unwrap() > 1_700_000_000);
    assert!(v["error"].is_null());
}

#[test]
fn health_exits_1_fast_against_a_closed_port() {
    let addr = closed_port();
    let started = Instant::now();
    ibconn()
        .args(["health", "--gateway", &addr])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unhealthy").and(predicate::str::contains(&addr)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");

    let out = ibconn()
        .args(["health", "--gateway", &addr, "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["healthy"], false);
    assert!(v["error"].as_str().unwrap().contains("cannot connect"));
}

#[test]
fn health_is_bounded_by_its_timeout_when_nothing_answers() {
    // A listener that accepts but never speaks: the handshake cannot finish.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = mute.local_addr().unwrap().to_string();
    let started = Instant::now();
    ibconn()
        .args(["health", "--gateway", &addr, "--timeout", "0.5"])
        .assert()
        .code(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(mute);
}

#[test]
fn health_rejects_a_bad_gateway_or_timeout_as_usage() {
    for args in [
        &["health"][..],
        &["health", "--gateway", "nohostport"],
        &["health", "--gateway", "127.0.0.1:1", "--timeout", "0"],
    ] {
        ibconn().args(args).assert().code(2);
    }
}

/// A process stopped while it holds the client-id registry's lock (Ctrl-Z, a stuck disk) used to
/// hang every `ibconn` behind it: the container healthcheck must still answer within its timeout.
#[test]
fn health_answers_within_its_timeout_while_another_process_holds_the_registry_lock() {
    let sim = Sim::start();
    let dir = common::scratch("health-lock");
    let lock = dir.join("state/ibconn/client-ids.json.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // `flock` (util-linux) holds the lock as a stopped process would.
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let out = common::ibconn_in(&dir)
        .args(["health", "--gateway", &sim.addr, "--timeout", "2", "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["healthy"], false);
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("locked by another process"), "{error}");
}
