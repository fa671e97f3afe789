//! Connect latency and memory per idle connection, ours against the third-party `ibapi` 5.5.0
//! client, both against the same simulated gateway running as a separate process on loopback.
//!
//! Run: `cargo bench -p ibconn-tokio --bench connect` (builds `ibconn-sim` in release mode first if
//! `target/release/ibconn-sim` is missing; `IBCONN_SIM_BIN` overrides the path).
// A bench measures wall time, reads /proc and aborts on broken set-up: all fine outside the core.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::disallowed_methods
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ibconn_core::connection::Config;
use ibconn_core::wire::VersionRange;

const STEP: Duration = Duration::from_secs(10);

/// The sim as a child process; killed on drop.
struct Sim {
    child: Child,
    addr: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sim_binary() -> PathBuf {
    if let Ok(path) = std::env::var("IBCONN_SIM_BIN") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = root.join("target/release/ibconn-sim");
    if !bin.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "-p",
                "ibconn-sim",
                "--bin",
                "ibconn-sim",
            ])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building ibconn-sim failed");
    }
    bin
}

fn start_sim() -> Sim {
    let mut child = Command::new(sim_binary())
        .args(["--listen", "127.0.0.1:0", "--seed", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sim starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("sim prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("`listening on ADDR`")
        .to_owned();
    Sim { child, addr }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Our client; `modern` offers only protobuf-era versions (213..226, like ibapi), which lets the
/// core send START_API with the hello instead of one round trip later.
async fn connect_ours(addr: &str, id: i32, modern: bool) -> (Duration, ibconn_tokio::Client) {
    let mut config = Config::new(id);
    if modern {
        config.versions = VersionRange::new(213, 226);
    }
    let t = Instant::now();
    let client = tokio::time::timeout(STEP, ibconn_tokio::Client::connect_with(addr, id, config))
        .await
        .expect("in time")
        .expect("ibconn connects");
    (t.elapsed(), client)
}

async fn connect_ibapi(addr: &str, id: i32) -> (Duration, ibapi::Client) {
    let t = Instant::now();
    let client = tokio::time::timeout(STEP, ibapi::Client::connect(addr, id))
        .await
        .expect("in time")
        .expect("ibapi connects");
    (t.elapsed(), client)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let (rounds, idle) = if quick { (5, 30) } else { (60, 90) };
    // The sim admits 32 API clients, like IB: the memory test spreads over several sims.
    let sims: Vec<Sim> = (0..3).map(|_| start_sim()).collect();
    let addr = sims[0].addr.clone();

    // Warm-up: first connects pay for lazy initialisation on both sides.
    let (_, c) = connect_ours(&addr, 900, false).await;
    c.shutdown().await;
    let (_, c) = connect_ibapi(&addr, 901).await;
    c.disconnect().await;

    // Latency: alternate the clients; fresh client ids so no id is ever held.
    let (mut wide, mut modern, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut wide_ratio, mut modern_ratio) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let (a, c) = connect_ours(&addr, 1_000 + i, false).await;
        c.shutdown().await;
        let (m, c) = connect_ours(&addr, 3_000 + i, true).await;
        c.shutdown().await;
        let (b, c) = connect_ibapi(&addr, 5_000 + i).await;
        c.disconnect().await;
        wide.push(a.as_secs_f64());
        modern.push(m.as_secs_f64());
        theirs.push(b.as_secs_f64());
        wide_ratio.push(a.as_secs_f64() / b.as_secs_f64());
        modern_ratio.push(m.as_secs_f64() / b.as_secs_f64());
    }
    println!("handshake -> ready over loopback, {rounds} interleaved rounds (median)");
    println!(
        "  ibapi::Client::connect (v213..226)             {:>8.1} µs",
        median(theirs) * 1e6
    );
    println!(
        "  ibconn-tokio, default versions v100..226      {:>8.1} µs   ours/ibapi {:.3}",
        median(wide) * 1e6,
        median(wide_ratio)
    );
    println!(
        "  ibconn-tokio, v213..226 (START_API pipelined) {:>8.1} µs   ours/ibapi {:.3}   (target <= 0.5)",
        median(modern) * 1e6,
        median(modern_ratio)
    );

    // Memory: RSS growth per idle connection, each side measured on its own.
    let per_sim = idle / 3;
    let before = rss_bytes();
    let mut clients = Vec::new();
    for (s, sim) in sims.iter().enumerate() {
        for i in 0..per_sim {
            let id = 10_000 + 100 * i32::try_from(s).unwrap() + i;
            clients.push(connect_ours(&sim.addr, id, false).await.1);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = f64::from(per_sim * 3);
    let ours_per = (rss_bytes().saturating_sub(before)) as f64 / n;
    for c in clients {
        c.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let mut clients = Vec::new();
    for (s, sim) in sims.iter().enumerate() {
        for i in 0..per_sim {
            let id = 20_000 + 100 * i32::try_from(s).unwrap() + i;
            clients.push(connect_ibapi(&sim.addr, id).await.1);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let theirs_per = (rss_bytes().saturating_sub(before)) as f64 / n;
    for c in clients {
        c.disconnect().await;
    }
    println!(
        "memory per idle connection, RSS growth over {} connections",
        per_sim * 3
    );
    println!(
        "  ibconn-tokio   {:>8.1} KiB   (target <= 64 KiB)",
        ours_per / 1024.0
    );
    println!("  ibapi          {:>8.1} KiB", theirs_per / 1024.0);
    drop(sims);
}
