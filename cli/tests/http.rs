//! `ibconn serve` end to end: the real binary, a real HTTP/1.1 client over TCP, an in-process
//! simulated gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{closed_port, ibconn_std, scratch, Serve, Sim};

const TOKEN: &str = "t0ps3cret";

/// `ibconn serve` on a loopback port against `gateway`, the token (if any) from the environment.
fn serve(gateway: &str, env_token: Option<&str>, extra: &[&str]) -> Serve {
    let mut cmd = ibconn_std();
    cmd.args(["serve", "--gateway", gateway, "--listen", "127.0.0.1:0"])
        .args(extra);
    if let Some(t) = env_token {
        cmd.env("IBCONN_HTTP_TOKEN", t);
    }
    Serve::spawn(cmd)
}

/// A response: status, lower-cased headers, body.
struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `GET path` over a fresh connection (HTTP/1.1, `Connection: close`).
fn get(addr: &str, path: &str, token: Option<&str>) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// Poll `/api/ib/pool/health` until it answers `want` (or panic after 10 s).
fn health_until(addr: &str, token: Option<&str>, want: u16) -> Resp {
    let start = Instant::now();
    loop {
        let r = get(addr, "/api/ib/pool/health", token);
        if r.status == want {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "health stayed {}: {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Values that vary between runs of one scenario (timing, ports) become placeholders, so the
/// snapshot holds the shape: every key, every type, the stable strings and booleans.
fn normalise(v: &mut Value, gateway: &str) {
    const VOLATILE: [&str; 4] = ["cached", "last_probe_rtt_us", "handshake_us", "message"];
    match v {
        Value::Number(_) => *v = Value::from("[number]"),
        // This process's name in the pacing book: host, pid, start time, then what it is.
        Value::String(s) if s.ends_with(" (ibconn serve)") => {
            *v = Value::from("[host]:[pid]:[start] (ibconn serve)");
        }
        Value::String(s) if s.starts_with("file /") && s.ends_with("/ibconn/pacing") => {
            *v = Value::from("file [state dir]/ibconn/pacing");
        }
        Value::String(s) if s == gateway => *v = Value::from("[gateway]"),
        Value::Array(a) => a.iter_mut().for_each(|x| normalise(x, gateway)),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if VOLATILE.contains(&k.as_str()) {
                    *x = Value::from("[volatile]");
                } else {
                    normalise(x, gateway);
                }
            }
        }
        _ => {}
    }
}

fn snapshot_of(r: &Resp, gateway: &str) -> Value {
    assert!(
        r.headers.contains("content-type: application/json"),
        "{}",
        r.headers
    );
    let mut v = r.json();
    normalise(&mut v, gateway);
    v
}

const ENDPOINTS: [(&str, &str); 5] = [
    ("/api/ib/pool/status", "pool_status"),
    ("/api/ib/pool/metrics", "pool_metrics"),
    ("/api/ib/pool/health", "pool_health"),
    ("/api/ib/pace/status", "pace_status"),
    ("/api/ib/pace/stats", "pace_stats"),
];

#[test]
fn every_endpoint_answers_its_envelope_and_health_turns_503_when_the_gateway_goes() {
    let mut sim = Sim::start();
    let srv = serve(&sim.addr, Some(TOKEN), &["--probe-timeout", "1"]);
    health_until(&srv.addr, Some(TOKEN), 200);

    for (path, name) in ENDPOINTS {
        let r = get(&srv.addr, path, Some(TOKEN));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let v = r.json();
        assert_eq!(v["success"], true, "{path}");
        assert!(v["error"].is_null(), "{path}");
        assert!(v["data"].is_object(), "{path}");
        insta::assert_json_snapshot!(name, snapshot_of(&r, &sim.addr));
    }
    let h = get(&srv.addr, "/api/ib/pool/health", Some(TOKEN)).json();
    assert_eq!(h["data"]["healthy"], true);
    assert!(h["data"]["probe_rtt_us"].as_u64().is_some());
    assert!(h["data"]["server_time"].as_i64().unwrap() > 1_700_000_000);

    sim.shutdown();
    let started = Instant::now();
    let r = health_until(&srv.addr, Some(TOKEN), 503);
    assert!(started.elapsed() < Duration::from_secs(5));
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["data"]["healthy"], false);
    assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string());
    // The code says why (timeout on the dead session, or a refused redial); the shape is fixed.
    let mut shape = snapshot_of(&r, &sim.addr);
    shape["error"]["code"] = Value::from("[code]");
    insta::assert_json_snapshot!("pool_health_503", shape);
    // The status endpoints keep answering from the pool's counters.
    let status = get(&srv.addr, "/api/ib/pool/status", Some(TOKEN)).json();
    assert_eq!(status["success"], true);
    assert_eq!(status["data"]["connections_ready"], 0);
}

#[test]
fn a_missing_or_wrong_token_is_401_in_the_envelope() {
    let sim = Sim::start();
    let srv = serve(&sim.addr, None, &["--token", TOKEN]);
    for path in ENDPOINTS.iter().map(|(p, _)| *p).chain(["/metrics"]) {
        for token in [None, Some("wrong"), Some("t0ps3cre"), Some("")] {
            let r = get(&srv.addr, path, token);
            assert_eq!(r.status, 401, "{path} {token:?}");
            assert!(r.headers.contains("www-authenticate: bearer"));
            let v = r.json();
            assert_eq!(v["success"], false);
            assert!(v["data"].is_null());
            assert_eq!(v["error"]["code"], "unauthorized");
        }
    }
    let missing = get(&srv.addr, "/api/ib/pool/status", None);
    insta::assert_json_snapshot!("unauthorized", missing.json());
    let r = get(&srv.addr, "/api/ib/pool/status", Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.body);
    // Unknown paths are also behind the token, then 404 in the envelope.
    let r = get(&srv.addr, "/api/ib/nope", Some(TOKEN));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
}

#[test]
fn the_token_comes_from_the_config_file_and_the_environment_overrides_it() {
    let sim = Sim::start();
    let cfg = scratch("token").join("token.toml");
    std::fs::write(&cfg, "[http]\ntoken = \"from-file\"\n").unwrap();
    let cfg_s = cfg.to_str().unwrap();

    let srv = serve(&sim.addr, None, &["--config", cfg_s]);
    assert_eq!(get(&srv.addr, "/api/ib/pool/status", None).status, 401);
    assert_eq!(
        get(&srv.addr, "/api/ib/pool/status", Some("from-file")).status,
        200
    );
    drop(srv);

    let srv = serve(&sim.addr, Some("from-env"), &["--config", cfg_s]);
    assert_eq!(
        get(&srv.addr, "/api/ib/pool/status", Some("from-file")).status,
        401
    );
    assert_eq!(
        get(&srv.addr, "/api/ib/pool/status", Some("from-env")).status,
        200
    );
    drop(srv);

    // --token beats both.
    let srv = serve(
        &sim.addr,
        Some("from-env"),
        &["--config", cfg_s, "--token", "flag"],
    );
    assert_eq!(
        get(&srv.addr, "/api/ib/pool/status", Some("flag")).status,
        200
    );
    assert_eq!(
        get(&srv.addr, "/api/ib/pool/status", Some("from-env")).status,
        401
    );
}

#[test]
fn metrics_are_prometheus_text_with_help_and_type() {
    let sim = Sim::start();
    let srv = serve(&sim.addr, None, &[]);
    health_until(&srv.addr, None, 200);
    let r = get(&srv.addr, "/metrics", None);
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    for line in r.body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "summary"].contains(&kind), "{line}");
            assert!(
                helped.last().is_some_and(|h| h == name),
                "TYPE without HELP: {line}"
            );
            typed.push((name.to_owned(), kind.to_owned()));
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(
                typed.iter().any(|(f, _)| name == f
                    || name
                        .strip_prefix(f.as_str())
                        .is_some_and(|s| s == "_sum" || s == "_count")),
                "sample without a TYPE: {line}"
            );
        }
    }
    assert!(typed.len() > 30, "{}", r.body);
    let gw = format!("gateway=\"{}\"", sim.addr);
    for needle in [
        "ibconn_pool_sessions_established_total 1\n".to_owned(),
        "ibconn_pool_connections{state=\"ready\"} 1\n".to_owned(),
        "ibconn_health_probe_ok 1\n".to_owned(),
        "ibconn_pool_handshake_seconds_count 1\n".to_owned(),
        format!("ibconn_pacer_open_requests_max{{{gw}}} 50\n"),
        format!("ibconn_gateway_breaker_state{{{gw},state=\"closed\"}} 1\n"),
    ] {
        assert!(r.body.contains(&needle), "{needle} missing in\n{}", r.body);
    }
}

#[test]
fn health_is_503_fast_for_a_gateway_that_never_answered() {
    let gateway = closed_port();
    let srv = serve(&gateway, None, &[]);
    let started = Instant::now();
    let r = get(&srv.addr, "/api/ib/pool/health", None);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(r.status, 503, "{}", r.body);
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["data"]["healthy"], false);
    assert_eq!(v["error"]["code"], "gateway_unreachable");
    let status = get(&srv.addr, "/api/ib/pool/status", None).json();
    assert_eq!(status["data"]["connections_ready"], 0);
    assert!(status["data"]["gateways"][0]["failed"].as_u64().unwrap() >= 1);
}

#[test]
fn serve_refuses_an_empty_token() {
    let out = ibconn_std()
        .args([
            "serve",
            "--gateway",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("IBCONN_HTTP_TOKEN", " ")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IBCONN_HTTP_TOKEN"));
}
