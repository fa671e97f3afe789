//! Latency of `ibconn serve`'s HTTP API on loopback (issue 6 target: < 1 ms p99), against two
//! baselines measured in the same run: a bare socket server that answers a fixed response (the
//! loopback floor) and a one-route axum server returning fixed JSON (the framework floor).
//!
//! Run: `cargo bench -p ibconn-cli --bench http`. The real `ibconn` binary serves, on an
//! in-process simulated gateway; the client is one keep-alive HTTP/1.1 connection per endpoint.
// A bench measures wall time and aborts on broken set-up: all fine outside the core.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::{ibconn_std, Serve, Sim};
use support::{measure, micros, Conn, Percentiles};

/// Requests per endpoint (after `WARMUP`), in `ROUNDS` interleaved rounds so that noise from the
/// rest of the machine falls on every target alike.
const REQUESTS: usize = 5_000;
const ROUNDS: usize = 10;
const WARMUP: usize = 200;
const TARGET_P99: Duration = Duration::from_millis(1);

/// `ibconn serve` on a loopback port against `gateway`, without a token, its state in a scratch
/// directory.
fn start_serve(gateway: &str) -> Serve {
    let mut cmd = ibconn_std();
    cmd.args(["serve", "--gateway", gateway, "--listen", "127.0.0.1:0"]);
    Serve::spawn(cmd)
}

/// The loopback floor: a thread that answers every request with the same small JSON response.
fn bare_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                let body = br#"{"success":true,"data":{}}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => {
                            let mut out = response.clone().into_bytes();
                            out.extend_from_slice(body);
                            if writer.write_all(&out).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

/// The framework floor: axum on tokio, one route returning fixed JSON.
fn axum_server(rt: &tokio::runtime::Runtime) -> String {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let app = axum::Router::new().route(
            "/fixed",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"success": true, "data": {}}))
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("http: bench");
        return;
    }
    // The simulated gateway and the axum baseline share the sim's one-worker runtime.
    let mut sim = Sim::start();
    let serve = start_serve(&sim.addr);
    // Wait for the pool's first session, so every endpoint measures the steady state.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Conn::open(&serve.addr, "/api/ib/pool/health").get() != 200 {
        assert!(Instant::now() < deadline, "serve never became healthy");
        std::thread::sleep(Duration::from_millis(20));
    }

    let bare = bare_server();
    let framework = axum_server(sim.runtime());
    let mut targets: Vec<(&str, Conn, Vec<Duration>)> = vec![
        (
            "bare socket (floor)",
            Conn::open(&bare, "/fixed"),
            Vec::new(),
        ),
        (
            "axum fixed JSON",
            Conn::open(&framework, "/fixed"),
            Vec::new(),
        ),
    ];
    for path in [
        "/api/ib/pool/status",
        "/api/ib/pool/metrics",
        "/api/ib/pool/health",
        "/api/ib/pace/status",
        "/api/ib/pace/stats",
        "/metrics",
    ] {
        targets.push((path, Conn::open(&serve.addr, path), Vec::new()));
    }
    for (_, conn, _) in &mut targets {
        let mut discard = Vec::new();
        measure(conn, WARMUP, &mut discard);
    }
    for _ in 0..ROUNDS {
        for (_, conn, times) in &mut targets {
            measure(conn, REQUESTS / ROUNDS, times);
        }
    }
    let results: Vec<(&str, Percentiles)> = targets
        .into_iter()
        .map(|(name, _, times)| (name, Percentiles::of(times)))
        .collect();
    let floor = results[0].1.p99;
    let axum_floor = results[1].1.p99;

    println!(
        "{REQUESTS} sequential GETs per endpoint on one keep-alive connection each, \
         {ROUNDS} interleaved rounds, after {WARMUP} warm-up"
    );
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "endpoint", "p50 µs", "p99 µs", "max µs", "p99÷bare", "p99÷axum"
    );
    let mut worst = Duration::ZERO;
    for (i, (name, p)) in results.iter().enumerate() {
        println!(
            "{:<24} {:>9.1} {:>9.1} {:>9.1} {:>11.2} {:>11.2}",
            name,
            micros(p.p50),
            micros(p.p99),
            micros(p.max),
            micros(p.p99) / micros(floor),
            micros(p.p99) / micros(axum_floor),
        );
        if i >= 2 {
            worst = worst.max(p.p99);
        }
    }
    println!(
        "worst p99 {:.1} µs: target < {} µs {}",
        micros(worst),
        TARGET_P99.as_micros(),
        if worst < TARGET_P99 { "met" } else { "NOT met" }
    );
    drop(serve);
    sim.shutdown();
}
