//! `ibconn serve` end to end: the real binary, a real HTTP/1.1 client over TCP, an in-process
//! simulated gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{closed_port, get, health_until, ibconn_std, scratch, Resp, Serve, Sim};

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
        // The farm notices of the handshake, as plain snake_case label values.
        "ibconn_ib_errors_total{class=\"farm_status\",detail=\"historical_ok\"} 1\n".to_owned(),
    ] {
        assert!(r.body.contains(&needle), "{needle} missing in\n{}", r.body);
    }
    assert!(
        !r.body.contains("FarmStatus") && !r.body.contains("class=\"FarmStatus"),
        "Rust debug text in a label:\n{}",
        r.body
    );
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

// ----- hardening (issue 12) -----

/// Send `raw` bytes as they are and read the answer until the server closes (10 s at most).
fn send(addr: &str, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    read_resp(&mut s)
}

/// Read a whole response from `s` (the server closes after it).
fn read_resp(s: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{e} after {:?}", String::from_utf8_lossy(&raw)));
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {raw:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// `METHOD path` with extra header lines (each `Name: value`), `Connection: close`, no body.
fn request(addr: &str, method: &str, path: &str, headers: &[&str]) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    send(addr, raw.as_bytes())
}

/// Assert `r` is the error envelope with `status` and `code`.
fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}\n{}", r.headers, r.body);
    assert!(
        r.headers.contains("content-type: application/json"),
        "{}",
        r.headers
    );
    let v = r.json();
    assert_eq!(v["success"], false, "{}", r.body);
    assert!(v["data"].is_null(), "{}", r.body);
    assert_eq!(v["error"]["code"], code, "{}", r.body);
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

/// Wait up to `within` for `child` to exit; kill it and panic if it does not.
fn exits_within(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Freeze the sim's open sockets (they stay open, nothing is answered) once `srv`'s health
/// session is up, then wait out the 1.1 s a success is reused: from now on every probe waits
/// its full timeout.
fn freeze_after_first_probe(sim: &Sim, srv: &Serve) {
    health_until(&srv.addr, None, 200);
    sim.block_on(
        sim.server()
            .inject(ibconn_sim::Fault::Pause(ibconn_sim::Target::All)),
    );
    std::thread::sleep(Duration::from_millis(1_300));
}

#[test]
fn serve_refuses_a_non_loopback_bind_without_a_token() {
    let sim = Sim::start();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let mut child = ibconn_std()
            .args(["serve", "--gateway", &sim.addr, "--listen", listen])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = exits_within(&mut child, Duration::from_secs(10));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{listen}: {stderr}");
        for why in [
            "without a bearer token",
            "--token",
            "IBCONN_HTTP_TOKEN",
            "--insecure-no-token",
        ] {
            assert!(stderr.contains(why), "{listen}: {why} missing in {stderr}");
        }
    }
    // Told so, it serves without a token.
    let srv = serve_on(&sim.addr, "0.0.0.0:0", None, &["--insecure-no-token"]);
    let r = get(&loopback(&srv.addr), "/api/ib/pool/status", None);
    assert_eq!(r.status, 200, "{}", r.body);
    drop(srv);
    // With a token it serves, and asks for it.
    let srv = serve_on(&sim.addr, "0.0.0.0:0", Some(TOKEN), &[]);
    assert_eq!(
        get(&loopback(&srv.addr), "/api/ib/pool/status", None).status,
        401
    );
    assert_eq!(
        get(&loopback(&srv.addr), "/api/ib/pool/status", Some(TOKEN)).status,
        200
    );
    drop(srv);
    // Loopback, by address or by name, needs no token.
    for listen in ["127.0.0.2:0", "localhost:0"] {
        let srv = serve_on(&sim.addr, listen, None, &[]);
        let r = get(&srv.addr, "/api/ib/pool/status", None);
        assert_eq!(r.status, 200, "{listen}: {}", r.body);
    }
}

/// `ibconn serve` on `listen` (cf. [`serve`]).
fn serve_on(gateway: &str, listen: &str, env_token: Option<&str>, extra: &[&str]) -> Serve {
    let mut cmd = ibconn_std();
    cmd.args(["serve", "--gateway", gateway, "--listen", listen])
        .args(extra);
    if let Some(t) = env_token {
        cmd.env("IBCONN_HTTP_TOKEN", t);
    }
    Serve::spawn(cmd)
}

/// The loopback address of a server listening on a wildcard address.
fn loopback(addr: &str) -> String {
    let port = addr.rsplit_once(':').unwrap().1;
    format!("127.0.0.1:{port}")
}

#[test]
fn oversized_headers_and_bodies_are_refused_in_the_envelope() {
    let sim = Sim::start();
    let srv = serve(&sim.addr, None, &[]);
    let path = "/api/ib/pool/status";
    assert_eq!(request(&srv.addr, "GET", path, &[]).status, 200);

    // Headers over 16 KiB: 431 in the envelope.
    let pad = format!("X-Pad: {}", "a".repeat(20 * 1024));
    assert_error(
        &request(&srv.addr, "GET", path, &[&pad]),
        431,
        "headers_too_large",
    );
    // Over 64 KiB the connection stops reading: hyper's own 431.
    let pad = format!("X-Pad: {}", "a".repeat(100 * 1024));
    assert_eq!(request(&srv.addr, "GET", path, &[&pad]).status, 431);

    // A declared body over 16 KiB: 413 before a byte of it is read.
    assert_error(
        &request(&srv.addr, "GET", path, &["Content-Length: 1048576"]),
        413,
        "body_too_large",
    );
    // A chunked body that grows past 16 KiB: 413 as it arrives.
    let mut raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        srv.addr,
        16 * 1024 + 1
    )
    .into_bytes();
    raw.extend(std::iter::repeat_n(b'a', 16 * 1024 + 1));
    assert_error(&send(&srv.addr, &raw), 413, "body_too_large");

    // A small body is fine (and ignored).
    let r = send(
        &srv.addr,
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
            srv.addr
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn clients_too_slow_to_send_get_408_in_the_envelope() {
    let sim = Sim::start();
    let srv = serve(&sim.addr, None, &["--request-timeout", "1"]);
    let path = "/api/ib/pool/status";

    // Headers that never end (slowloris).
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nX-Slow: 1\r\n",
        srv.addr
    )
    .unwrap();
    assert_error(&read_resp(&mut s), 408, "request_timeout");

    // A body that never arrives.
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 10\r\n\r\nabc",
        srv.addr
    )
    .unwrap();
    assert_error(&read_resp(&mut s), 408, "request_timeout");

    // A connection that sends nothing is closed, quietly.
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));

    // Prompt clients are unaffected.
    assert_eq!(get(&srv.addr, path, None).status, 200);
}

#[test]
fn an_answer_too_slow_is_503_in_the_envelope() {
    let sim = Sim::start();
    // The probe may wait 5 s for the frozen gateway; the request only 1 s.
    let srv = serve(
        &sim.addr,
        None,
        &["--probe-timeout", "5", "--request-timeout", "1"],
    );
    freeze_after_first_probe(&sim, &srv);
    assert_error(
        &get(&srv.addr, "/api/ib/pool/health", None),
        503,
        "response_timeout",
    );
    // Other routes answer meanwhile.
    assert_eq!(get(&srv.addr, "/api/ib/pool/status", None).status, 200);
}

#[test]
fn requests_beyond_the_concurrency_limit_are_shed_with_503() {
    let sim = Sim::start();
    let srv = serve(
        &sim.addr,
        None,
        &["--max-concurrent-requests", "2", "--probe-timeout", "3"],
    );
    freeze_after_first_probe(&sim, &srv);
    // Two health calls hold both slots while the probe waits out its 3 s.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let addr = srv.addr.clone();
            std::thread::spawn(move || get(&addr, "/api/ib/pool/health", None).status)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let r = get(&srv.addr, "/api/ib/pool/status", None);
    assert_error(&r, 503, "overloaded");
    assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
    for b in busy {
        assert_eq!(b.join().unwrap(), 503);
    }
    // The slots are free again.
    assert_eq!(get(&srv.addr, "/api/ib/pool/status", None).status, 200);
}

#[test]
fn a_burst_of_health_calls_shares_one_probe() {
    let sim = Sim::start();
    let srv = serve(&sim.addr, None, &["--probe-timeout", "1"]);
    freeze_after_first_probe(&sim, &srv);
    // One call: a whole probe timeout.
    let started = Instant::now();
    let one = get(&srv.addr, "/api/ib/pool/health", None);
    let single = started.elapsed();
    assert_eq!(one.status, 503, "{}", one.body);

    const BURST: usize = 20;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(BURST + 1));
    let calls: Vec<_> = (0..BURST)
        .map(|_| {
            let addr = srv.addr.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                get(&addr, "/api/ib/pool/health", None)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for c in calls {
        let r = c.join().unwrap();
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.json()["data"]["healthy"], false);
    }
    let burst = started.elapsed();
    // Queued one behind another they would take ~20 probes; shared, about one.
    assert!(
        burst < single * 5,
        "{BURST} concurrent health calls took {burst:?}, one took {single:?}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_with_a_hung_request_exits_within_the_drain_bound() {
    let sim = Sim::start();
    // A probe that would wait a minute for the frozen gateway.
    let mut srv = serve(&sim.addr, None, &["--probe-timeout", "60"]);
    freeze_after_first_probe(&sim, &srv);
    let addr = srv.addr.clone();
    let hung = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET /api/ib/pool/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    // Drain 5 s, then the pool's 2 s: well before the probe's minute.
    let status = exits_within(&mut srv.child, Duration::from_secs(15));
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    assert!(
        took >= Duration::from_secs(4),
        "the drain was skipped: {took:?}"
    );
    // The hung client's connection was closed, not left open.
    assert!(hung.join().unwrap() < Duration::from_secs(12));
}

#[test]
fn the_bearer_scheme_matches_in_any_case() {
    let sim = Sim::start();
    let srv = serve(&sim.addr, Some(TOKEN), &[]);
    let path = "/api/ib/pool/status";
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("Authorization: {scheme} {TOKEN}");
        let r = request(&srv.addr, "GET", path, &[&auth]);
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
    for wrong in [
        format!("Authorization: Basic {TOKEN}"),
        format!("Authorization: bearer {TOKEN}x"),
        format!("Authorization: Bearer{TOKEN}"),
    ] {
        assert_error(
            &request(&srv.addr, "GET", path, &[&wrong]),
            401,
            "unauthorized",
        );
    }
}

#[test]
fn wrong_methods_and_paths_answer_in_the_envelope() {
    let sim = Sim::start();
    let srv = serve(&sim.addr, None, &[]);
    for (method, path) in [
        ("POST", "/api/ib/pool/status"),
        ("DELETE", "/api/ib/pool/health"),
        ("PUT", "/metrics"),
    ] {
        let r = request(&srv.addr, method, path, &["Content-Length: 0"]);
        assert_error(&r, 405, "method_not_allowed");
        assert!(r.headers.contains("allow: get,head"), "{}", r.headers);
    }
    for (method, path) in [("GET", "/nope"), ("POST", "/api/ib/nope")] {
        let r = request(&srv.addr, method, path, &["Content-Length: 0"]);
        assert_error(&r, 404, "not_found");
    }
}
