//! Connect latency and memory per idle connection, ours against the third-party `ibapi` 5.5.0
//! client, both against the same simulated gateway running as a separate process on loopback.
//! In the same interleaved rounds, floors: raw blocking `std::net` clients doing only the bytes a
//! session needs (built with the core's codec) — hello and START_API in one write (our exchange:
//! TCP connect + one round trip), or START_API after the server's hello (ibapi's: connect + two
//! round trips) — and the one-round-trip bytes through Tokio in the calling task. They split the
//! time into work every client shares (kernel, sim, runtime wake-ups) and each client's overhead.
//!
//! Our client is timed with its default offer (v213..226, START_API with the hello) and with the
//! wide offer v100..226 pinned (START_API after the server's hello), and both against a second,
//! text-era sim (`--server-version 176`), where the default falls back: a modern attempt, then the
//! wide offer — the price of the fallback.
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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ibconn_core::connection::{Config, VersionPolicy};
use ibconn_core::message::{Request, Response};
use ibconn_core::wire::{ClientHello, FrameDecoder, ServerHello, VersionRange};

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

fn start_sim(extra: &[&str]) -> Sim {
    let mut child = Command::new(sim_binary())
        .args(["--listen", "127.0.0.1:0", "--seed", "1"])
        .args(extra)
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

/// Our client: by default (`wide = false`) it offers v213..226 like ibapi and sends START_API
/// with the hello (falling back to v100..226 for an older gateway); `wide` pins v100..226, which
/// makes START_API wait for the server's hello (one round trip later).
async fn connect_ours(addr: &str, id: i32, wide: bool) -> (Duration, ibconn_tokio::Client) {
    let mut config = Config::new(id);
    if wide {
        config.versions = VersionPolicy::Pinned(VersionRange::supported());
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

/// What a raw exchange measured: the TCP connect alone, the whole exchange until the session is
/// usable, and one more request/reply round trip on the now-ready socket.
struct Raw {
    connect: Duration,
    ready: Duration,
    rtt: Duration,
}

/// The floor: a blocking `std::net` client doing only the bytes a session needs, built with the
/// core's codec — `pipelined` writes hello + START_API in one write (our exchange: connect + one
/// round trip); otherwise START_API waits for the server's hello (ibapi's: connect + two round
/// trips). "Ready" = server hello, ManagedAccounts and NextValidId received, as for both clients.
fn connect_raw(addr: &str, id: i32, pipelined: bool) -> Raw {
    let versions = VersionRange::new(213, 226);
    let mut hello = BytesMut::new();
    ClientHello::new(versions).encode(&mut hello);
    let mut start = BytesMut::new();
    Request::StartApi {
        client_id: id,
        optional_capabilities: String::new(),
    }
    .encode(versions.min, &mut start)
    .expect("START_API encodes");
    if pipelined {
        hello.extend_from_slice(&start);
    }
    let t = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("raw connect");
    let connect = t.elapsed();
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(&hello).expect("hello");
    let (mut sv, mut accounts, mut next_id) = (None, false, false);
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 8192];
    let mut read_frame = |stream: &mut TcpStream| loop {
        if let Some(frame) = decoder.next_frame().expect("framing") {
            return frame;
        }
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "sim closed the raw session");
        decoder.push(&buf[..n]);
    };
    while !(accounts && next_id) {
        let frame = read_frame(&mut stream);
        let Some(v) = sv else {
            sv = Some(
                ServerHello::decode(&frame)
                    .expect("server hello")
                    .server_version,
            );
            if !pipelined {
                stream.write_all(&start).expect("START_API");
            }
            continue;
        };
        match Response::decode_payload(frame, v).expect("response") {
            Response::ManagedAccounts { .. } => accounts = true,
            Response::NextValidId { .. } => next_id = true,
            _ => {}
        }
    }
    let ready = t.elapsed();
    let sv = sv.expect("server version");
    let mut req = BytesMut::new();
    Request::ReqCurrentTime
        .encode(sv, &mut req)
        .expect("reqCurrentTime encodes");
    let t = Instant::now();
    stream.write_all(&req).expect("reqCurrentTime");
    while !matches!(
        Response::decode_payload(read_frame(&mut stream), sv).expect("response"),
        Response::CurrentTime { .. }
    ) {}
    Raw {
        connect,
        ready,
        rtt: t.elapsed(),
    }
}

/// The 1-round-trip floor through Tokio: the same bytes as [`connect_raw`] (pipelined) with an
/// async `tokio::net::TcpStream` in the calling task — what any async client pays for the runtime.
async fn connect_raw_tokio(addr: &str, id: i32) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let versions = VersionRange::new(213, 226);
    let mut hello = BytesMut::new();
    ClientHello::new(versions).encode(&mut hello);
    Request::StartApi {
        client_id: id,
        optional_capabilities: String::new(),
    }
    .encode(versions.min, &mut hello)
    .expect("START_API encodes");
    let t = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(&hello).await.expect("hello");
    let (mut sv, mut accounts, mut next_id) = (None, false, false);
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 8192];
    while !(accounts && next_id) {
        let Some(frame) = decoder.next_frame().expect("framing") else {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "sim closed the raw session");
            decoder.push(&buf[..n]);
            continue;
        };
        let Some(v) = sv else {
            sv = Some(
                ServerHello::decode(&frame)
                    .expect("server hello")
                    .server_version,
            );
            continue;
        };
        match Response::decode_payload(frame, v).expect("response") {
            Response::ManagedAccounts { .. } => accounts = true,
            Response::NextValidId { .. } => next_id = true,
            _ => {}
        }
    }
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let (rounds, idle) = if quick { (5, 30) } else { (60, 90) };
    // The sim admits 32 API clients, like IB: the memory test spreads over several sims.
    let sims: Vec<Sim> = (0..3).map(|_| start_sim(&[])).collect();
    let addr = sims[0].addr.clone();
    // A text-era gateway (ibapi cannot connect to it).
    let old_sim = start_sim(&["--server-version", "176"]);
    let old = old_sim.addr.clone();

    // Warm-up: first connects pay for lazy initialisation on both sides.
    let (_, c) = connect_ours(&addr, 900, false).await;
    c.shutdown().await;
    let (_, c) = connect_ours(&old, 905, false).await;
    c.shutdown().await;
    let (_, c) = connect_ours(&old, 906, true).await;
    c.shutdown().await;
    let (_, c) = connect_ibapi(&addr, 901).await;
    c.disconnect().await;
    connect_raw(&addr, 902, true);
    connect_raw(&addr, 903, false);
    connect_raw_tokio(&addr, 904).await;

    // Latency: alternate the clients; fresh client ids so no id is ever held.
    let (mut wide, mut modern, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut wide_ratio, mut modern_ratio) = (Vec::new(), Vec::new());
    let (mut floor1, mut floor2, mut floor1_ratio, mut floor2_ratio) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut floor_tokio, mut floor_tokio_ratio) = (Vec::new(), Vec::new());
    let (mut tcp, mut rtt, mut extra_rt) = (Vec::new(), Vec::new(), Vec::new());
    let (mut old_default, mut old_wide, mut fallback_ratio) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (m, c) = connect_ours(&addr, 1_000 + i, false).await;
        c.shutdown().await;
        let (a, c) = connect_ours(&addr, 3_000 + i, true).await;
        c.shutdown().await;
        let (od, c) = connect_ours(&old, 4_000 + i, false).await;
        c.shutdown().await;
        let (ow, c) = connect_ours(&old, 6_000 + i, true).await;
        c.shutdown().await;
        old_default.push(od.as_secs_f64());
        old_wide.push(ow.as_secs_f64());
        fallback_ratio.push(od.as_secs_f64() / ow.as_secs_f64());
        let (b, c) = connect_ibapi(&addr, 5_000 + i).await;
        c.disconnect().await;
        // The raw clients block this (main) thread; the runtime's workers are idle meanwhile.
        let one = connect_raw(&addr, 7_000 + i, true);
        let two = connect_raw(&addr, 8_000 + i, false);
        let async_floor = connect_raw_tokio(&addr, 9_000 + i).await.as_secs_f64();
        let b = b.as_secs_f64();
        floor_tokio.push(async_floor);
        floor_tokio_ratio.push(async_floor / b);
        floor1.push(one.ready.as_secs_f64());
        floor2.push(two.ready.as_secs_f64());
        floor1_ratio.push(one.ready.as_secs_f64() / b);
        floor2_ratio.push(two.ready.as_secs_f64() / b);
        tcp.push(one.connect.as_secs_f64());
        tcp.push(two.connect.as_secs_f64());
        rtt.push(one.rtt.as_secs_f64());
        rtt.push(two.rtt.as_secs_f64());
        extra_rt.push(two.ready.as_secs_f64() - one.ready.as_secs_f64());
        wide.push(a.as_secs_f64());
        modern.push(m.as_secs_f64());
        theirs.push(b);
        wide_ratio.push(a.as_secs_f64() / b);
        modern_ratio.push(m.as_secs_f64() / b);
    }
    println!("handshake -> ready over loopback, {rounds} interleaved rounds (median)");
    println!(
        "  ibapi::Client::connect (v213..226)             {:>8.1} µs",
        median(theirs) * 1e6
    );
    println!(
        "  ibconn-tokio, default (v213..226, START_API pipelined) {:>8.1} µs   ours/ibapi {:.3}   (target <= 0.5)",
        median(modern) * 1e6,
        median(modern_ratio)
    );
    println!(
        "  ibconn-tokio, v100..226 pinned (START_API after hello) {:>8.1} µs   ours/ibapi {:.3}",
        median(wide) * 1e6,
        median(wide_ratio)
    );
    println!(
        "  text-era sim (v176): ibconn-tokio default, with the fallback {:>8.1} µs; v100..226 pinned {:>8.1} µs; \
         default/pinned {:.3}",
        median(old_default) * 1e6,
        median(old_wide) * 1e6,
        median(fallback_ratio)
    );
    println!(
        "  floor: raw std client, hello+START_API in one write (connect + 1 RT) {:>8.1} µs   raw/ibapi {:.3}",
        median(floor1.clone()) * 1e6,
        median(floor1_ratio)
    );
    println!(
        "  floor: raw std client, START_API after the hello (connect + 2 RT)   {:>8.1} µs   raw/ibapi {:.3}",
        median(floor2.clone()) * 1e6,
        median(floor2_ratio)
    );
    println!(
        "  floor: same 1-RT bytes through tokio in the calling task              {:>8.1} µs   raw/ibapi {:.3}",
        median(floor_tokio) * 1e6,
        median(floor_tokio_ratio)
    );
    let (c, r, r2) = (median(tcp), median(rtt), median(extra_rt));
    println!(
        "  C = TCP connect {:.1} µs; R = reqCurrentTime round trip on a ready socket {:.1} µs; \
         2-RT floor - 1-RT floor {:.1} µs",
        c * 1e6,
        r * 1e6,
        r2 * 1e6,
    );
    println!(
        "  one round trip less, against a client at the 2-RT floor: (C+R)/(C+2R) = {:.3}; \
         1-RT floor / 2-RT floor = {:.3}",
        (c + r) / (c + 2.0 * r),
        median(floor1.clone()) / median(floor2.clone())
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
    drop(old_sim);
}
