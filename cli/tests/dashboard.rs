//! The dashboard's routes end to end: the real `ibconn serve` over TCP in front of a simulated
//! gateway. The page and its files are public and self-contained; the data routes keep the
//! token; the history stays within its stated bounds in a running server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;
use common::{get, get_with, health_until, ibconn_std, Serve, Sim};

const TOKEN: &str = "d4shb0ard";
const FILES: [(&str, &str); 3] = [
    ("/", "text/html; charset=utf-8"),
    ("/assets/dashboard.js", "text/javascript; charset=utf-8"),
    ("/assets/dashboard.css", "text/css; charset=utf-8"),
];

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap()
}

fn serve(gateway: &str, extra: &[&str]) -> Serve {
    let mut cmd = ibconn_std();
    cmd.args(["serve", "--gateway", gateway, "--listen", "127.0.0.1:0"])
        .args(["--token", TOKEN])
        .args(extra);
    Serve::spawn(cmd)
}

#[test]
fn the_page_is_public_self_contained_and_cached_by_etag_while_its_data_needs_the_token() {
    let sim = Sim::start();
    let srv = serve(&sim.addr, &[]);
    let own_origin = format!("http://{}", srv.addr);
    let mut total = 0;
    for (path, content_type) in FILES {
        let r = get(&srv.addr, path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        total += r.body.len();
        // No other origin: every URL the files name is relative to the server that sent them.
        for scheme in ["http://", "https://", "ws://", "wss://"] {
            let others = r
                .body
                .match_indices(scheme)
                .filter(|(i, _)| !r.body[*i..].starts_with(&own_origin))
                .count();
            assert_eq!(others, 0, "{path} names another origin with {scheme}");
        }
        // Unchanged: a 304 without a body.
        let etag = r.header("etag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let again = get_with(&srv.addr, path, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        let stale = get_with(&srv.addr, path, &[("If-None-Match", "\"0\"")]);
        assert_eq!(stale.status, 200, "{path}");
    }
    assert!(total < 64 * 1024, "the page weighs {total} bytes");
    let page = get(&srv.addr, "/", None);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    for path in ["/assets/dashboard.js", "/assets/dashboard.css"] {
        assert!(page.body.contains(path), "the page does not load {path}");
    }

    health_until(&srv.addr, Some(TOKEN), 200);
    for path in ["/api/ib/dashboard", "/api/ib/pool/history"] {
        let r = get(&srv.addr, path, None);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["error"]["code"], "unauthorized");
        assert_eq!(get(&srv.addr, path, Some("wrong")).status, 401, "{path}");
        let r = get(&srv.addr, path, Some(TOKEN));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json()["success"], true);
    }
    // Other assets are not public: behind the token, then 404.
    assert_eq!(get(&srv.addr, "/assets/other.js", None).status, 401);
    assert_eq!(get(&srv.addr, "/assets/other.js", Some(TOKEN)).status, 404);
}

/// Poll the dashboard route until `ok` holds for its data (or panic after 10 s).
fn dashboard_until(
    addr: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let d = get(addr, "/api/ib/dashboard", Some(TOKEN)).json()["data"].clone();
        if ok(&d) {
            return d;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: {d:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_dashboard_route_shows_the_session_its_gateway_version_and_what_happened() {
    let mut sim = Sim::start();
    let srv = serve(&sim.addr, &["--probe-timeout", "1"]);
    health_until(&srv.addr, Some(TOKEN), 200);
    let d = dashboard_until(&srv.addr, "server version", |d| {
        d["gateways"][0]["server_version"].is_i64()
    });
    // The sim speaks up to this crate's newest version.
    assert_eq!(d["gateways"][0]["server_version"], 226);
    assert_eq!(d["gateway"], sim.addr.as_str());
    let conn = &d["status"]["connections"][0];
    assert_eq!(conn["state"], "ready");
    assert_eq!(conn["purpose"], "health");
    let id = conn["client_id"].as_i64().unwrap();
    let extra = &d["connections"][0];
    assert_eq!(extra["client_id"], id);
    let since = extra["ready_since_ms"].as_u64().unwrap();
    assert!(since <= d["now_ms"].as_u64().unwrap());
    assert!(extra["last_probe_rtt_us"].as_u64().unwrap() > 0);
    // The shared file registry holds this process's lease, marked as such.
    let leases = &d["leases"];
    assert_eq!(leases["shared"], true);
    assert!(leases["store"].as_str().unwrap().starts_with("file "));
    let mine: Vec<_> = leases["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["mine"] == true)
        .collect();
    assert_eq!(mine.len(), 1, "{leases:#}");
    assert_eq!(mine[0]["id"], id);
    // The handshake's farm notices, by class.
    assert!(d["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["class"] == "farm_status" && e["detail"] == "historical_ok"));
    let kinds = |d: &serde_json::Value| -> Vec<String> {
        d["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds(&d), ["connected"]);
    assert_eq!(d["events"][0]["client_id"], id);
    assert_eq!(d["limits"]["open_max"], 50);
    assert_eq!(d["limits"]["messages_max"], 50);

    // TWS loses its link to IB and gets it back with data lost: 1100, then 1101.
    sim.block_on(sim.server().inject(ibconn_sim::Fault::LinkLoss {
        outage: Duration::from_millis(200),
        data_lost: true,
    }));
    let d = dashboard_until(&srv.addr, "1100 and 1101", |d| {
        let codes: Vec<i64> = d["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "connectivity")
            .filter_map(|e| e["code"].as_i64())
            .collect();
        codes.contains(&1100) && codes.contains(&1101)
    });
    let link: Vec<(i64, String)> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "connectivity")
        .map(|e| {
            (
                e["code"].as_i64().unwrap(),
                e["level"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Newest first: the restore after the loss.
    assert_eq!(
        link,
        [(1101, "warn".to_owned()), (1100, "error".to_owned())],
        "{d:#}"
    );
    assert_eq!(kinds(&d).last().map(String::as_str), Some("connected"));

    // The gateway goes: the session's loss is recorded after its connect, and the row is no
    // longer ready (redials and the breaker may add events after it).
    sim.shutdown();
    let d = dashboard_until(&srv.addr, "lost", |d| {
        kinds(d).contains(&"lost".to_owned()) && d["status"]["connections_ready"] == 0
    });
    let k = kinds(&d);
    let lost = k.iter().position(|k| k == "lost").unwrap();
    assert_eq!(k.last().map(String::as_str), Some("connected"), "{k:?}");
    assert!(k[lost + 1..].iter().all(|k| k != "lost"), "{k:?}");
    assert_eq!(d["events"][lost]["level"], "warn");
    assert_eq!(d["events"][lost]["client_id"], id);
    assert!(d["connections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ready_since_ms"].is_null()));
}

#[test]
fn history_rings_turn_over_within_their_bounds() {
    let sim = Sim::start();
    // A sample every 10 ms: the hour ring (360 slots, 3.6 s) turns over within 5 s. A loaded
    // machine may miss ticks (their slots stay empty), so the bounds are checked, not a count.
    let srv = serve(&sim.addr, &["--history-interval", "0.01"]);
    health_until(&srv.addr, Some(TOKEN), 200);
    let started_ms = unix_ms();
    std::thread::sleep(Duration::from_secs(5));
    let h = get(&srv.addr, "/api/ib/pool/history", Some(TOKEN)).json()["data"].clone();
    assert_eq!(h["memory_bytes"], (360 + 1440) * 64);
    let hour = &h["tiers"][0];
    assert_eq!(hour["name"], "hour");
    assert_eq!(hour["capacity"], 360);
    assert_eq!(hour["interval_ms"], 10);
    let at: Vec<u64> = serde_json::from_value(hour["at_ms"].clone()).unwrap();
    let n = at.len();
    assert_eq!(hour["len"], n);
    assert!(n > 60 && n <= 360, "{n} samples");
    // At most one sample per 10 ms slot, oldest first, none older than the ring's span: the
    // samples of the first second are gone.
    assert!(at.windows(2).all(|w| w[1] / 10 > w[0] / 10), "{at:?}");
    assert!(
        at[n - 1] / 10 - at[0] / 10 < 360,
        "{} ms",
        at[n - 1] - at[0]
    );
    assert!(
        at[0] > started_ms + 1_000,
        "the oldest sample was not dropped"
    );
    for column in [
        "historical",
        "open",
        "messages",
        "ready",
        "requests",
        "probe_rtt_us",
    ] {
        assert_eq!(hour[column].as_array().unwrap().len(), n, "{column}");
    }
    assert!(hour["ready"].as_array().unwrap().iter().any(|v| v == 1));
    let day = &h["tiers"][1];
    assert_eq!(
        (day["name"].as_str(), day["capacity"].as_u64()),
        (Some("day"), Some(1440))
    );
    assert_eq!(day["interval_ms"], 60);
    let at: Vec<u64> = serde_json::from_value(day["at_ms"].clone()).unwrap();
    // Seconds of 60 ms slots: at most one sample per slot.
    assert!(at.len() > 20 && at.len() <= 1440, "{}", at.len());
    assert!(at.windows(2).all(|w| w[1] / 60 > w[0] / 60), "{at:?}");

    let only = get(&srv.addr, "/api/ib/pool/history?tier=day", Some(TOKEN)).json();
    assert_eq!(only["data"]["tiers"].as_array().unwrap().len(), 1);
    assert_eq!(only["data"]["tiers"][0]["name"], "day");
    let bad = get(&srv.addr, "/api/ib/pool/history?tier=week", Some(TOKEN));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "bad_request");
}
