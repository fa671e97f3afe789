//! Replay: a tiny server writes pre-encoded frames — captured once from `ibconn-sim` into
//! `benches/fixtures/` — as fast as the socket takes them, so a fetch measures the client (socket
//! reads, framing, decoding, hand-off) and not a gateway generating bars. `ibapi` 5.5.0 and
//! ibconn-tokio fetch the same bytes in interleaved rounds, same run.
//!
//! The fixtures are the raw server → client byte streams of one session each: server 226 (captured
//! under `ibapi`: protobuf bars) and server 176 (captured under ibconn with the sim held to 176:
//! text bars; `ibapi` 5.5 needs 213+, so that form has no `ibapi` row). Each holds the hello, the
//! startup burst, a 1,950-bar `HistoricalData` answer and a contract-details answer. The replay
//! answers a request with the captured frames of its kind, the request id spliced in.
//!
//! Run: `cargo bench -p ibconn-tokio --bench replay`
//! Re-capture: `cargo bench -p ibconn-tokio --bench replay -- --capture`
// A bench measures wall time, reads its fixtures and aborts on broken set-up: fine outside the core.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ibapi::market_data::historical::{BarSize, ToDuration};
use ibapi::market_data::TradingHours;
use ibconn_core::bar_size::BarSize as IbBarSize;
use ibconn_core::civil::utc;
use ibconn_core::connection::{Config, VersionPolicy};
use ibconn_core::message::ids::incoming as id;
use ibconn_core::message::{Contract, Request, Response};
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_core::wire::{Form, Frame, FrameDecoder, VersionRange};
use ibconn_sim::{GatewayConfig, HistoricalRules, ServerConfig, SimServer};
use support::median;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod support;

const STEP: Duration = Duration::from_secs(30);

/// The committed capture of a session at server version `sv`.
fn fixture(sv: i32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("benches/fixtures/replay-{sv}.bin"))
}

/// ibconn's side of the fetch bench's request: five RTH days of 1-minute AAPL trades.
fn ours_request() -> HistoricalQuery {
    HistoricalQuery {
        use_rth: true,
        ..HistoricalQuery::new(
            Contract::stock("AAPL"),
            EndTime::At(utc(2025, 12, 31, 21, 0, 0)),
            "5 D".parse().unwrap(),
            IbBarSize::Min1,
            WhatToShow::Trades,
        )
    }
}

/// ibconn's connection settings for a replay at `sv`.
fn ours_config(sv: i32) -> Config {
    let mut config = Config::new(1);
    if sv < 213 {
        // Offer the text era at once (no redial): the replay answers whatever it captured.
        config.versions = VersionPolicy::Pinned(VersionRange::new(100, 226));
    }
    config
}

// ---- capture ----

/// A proxy in front of the sim that records every byte the server sends to one client session.
async fn capture(sv: i32) {
    let gateway = GatewayConfig {
        historical: HistoricalRules {
            enabled: false,
            ..HistoricalRules::default()
        },
        versions: VersionRange::new(100, sv),
        ..GatewayConfig::default()
    };
    let sim_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = SimServer::start(sim_listener, ServerConfig { gateway, seed: 3 }).unwrap();
    let sim_addr = sim.local_addr();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = proxy.local_addr().unwrap().to_string();
    let recorder = tokio::spawn(async move {
        let (client, _) = proxy.accept().await.unwrap();
        let server = TcpStream::connect(sim_addr).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut cr, &mut sw).await;
            let _ = sw.shutdown().await;
        });
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await.unwrap_or(0);
            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        up.abort();
        seen
    });
    if sv >= 213 {
        let theirs = ibapi::Client::connect(&addr, 2).await.unwrap();
        ibapi_fetch(&theirs).await;
        ibapi_contract(&theirs).await;
        theirs.disconnect().await;
    } else {
        let ours = ibconn_tokio::Client::connect_with(&addr, 1, ours_config(sv))
            .await
            .unwrap();
        ours.historical_data(ours_request()).await.unwrap();
        ours.contract_details(Contract::stock("AAPL"))
            .await
            .unwrap();
        ours.shutdown().await;
    }
    let seen = tokio::time::timeout(STEP, recorder).await.unwrap().unwrap();
    std::fs::create_dir_all(fixture(sv).parent().unwrap()).unwrap();
    std::fs::write(fixture(sv), &seen).unwrap();
    println!("captured {} bytes at server {sv}", seen.len());
    sim.shutdown().await;
}

// ---- replay ----

/// A captured frame whose request id is replaced per answer: `head`, the id, `tail`.
#[derive(Debug, Clone)]
struct Template {
    head: Bytes,
    tail: Bytes,
    form: Form,
}

impl Template {
    /// Find where the captured frame keeps its request id by splicing a probe value in and
    /// decoding: protobuf field 1, or one of the first text fields.
    fn new(body: Bytes, sv: i32) -> Self {
        let frame = Frame::parse(body.clone(), sv).unwrap();
        let candidates: Vec<Self> = match frame.form {
            Form::Protobuf => {
                let header = body.len() - frame.body.len();
                let b = &frame.body;
                assert_eq!(b[0], 0x08, "req_id first");
                // The key byte, then the varint up to its last byte (the first below 0x80).
                let end = 1 + b[1..].iter().position(|&x| x < 0x80).unwrap() + 1;
                vec![Self {
                    head: body.slice(..header),
                    tail: frame.body.slice(end..),
                    form: Form::Protobuf,
                }]
            }
            Form::Text => {
                let nuls: Vec<usize> = body
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c == 0)
                    .map(|(i, _)| i)
                    .take(4)
                    .collect();
                nuls.windows(2)
                    .map(|w| Self {
                        head: body.slice(..=w[0]),
                        tail: body.slice(w[1]..),
                        form: Form::Text,
                    })
                    .collect()
            }
        };
        candidates
            .into_iter()
            .find(|t| {
                let probe = t.frame(987_654);
                Response::decode_payload(probe.slice(4..), sv)
                    .is_ok_and(|r| r.req_id() == Some(987_654))
            })
            .expect("a captured answer carries its request id")
    }

    /// The whole frame (length prefix included) for `req_id`.
    fn frame(&self, req_id: i32) -> Bytes {
        let mut id = Vec::new();
        match self.form {
            Form::Protobuf => {
                id.push(0x08);
                let mut v = i64::from(req_id) as u64;
                loop {
                    let b = (v & 0x7f) as u8;
                    v >>= 7;
                    if v == 0 {
                        id.push(b);
                        break;
                    }
                    id.push(b | 0x80);
                }
            }
            Form::Text => id.extend_from_slice(req_id.to_string().as_bytes()),
        }
        let len = self.head.len() + id.len() + self.tail.len();
        let mut out = BytesMut::with_capacity(4 + len);
        out.put_u32(u32::try_from(len).unwrap());
        out.put_slice(&self.head);
        out.put_slice(&id);
        out.put_slice(&self.tail);
        out.freeze()
    }
}

/// One captured session, split by what each frame answers.
#[derive(Debug)]
struct Script {
    sv: i32,
    hello: Bytes,
    burst: Bytes,
    historical: Vec<Template>,
    contract: Vec<Template>,
    bars: usize,
    historical_bytes: usize,
}

impl Script {
    fn load(sv: i32) -> Self {
        let raw = std::fs::read(fixture(sv)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (capture with `-- --capture`)",
                fixture(sv).display()
            )
        });
        let mut dec = FrameDecoder::new();
        dec.push(&raw);
        let hello_body = dec.next_frame().unwrap().unwrap();
        let mut hello = BytesMut::new();
        hello.put_u32(u32::try_from(hello_body.len()).unwrap());
        hello.put_slice(&hello_body);
        let (mut burst, mut historical, mut contract) = (BytesMut::new(), Vec::new(), Vec::new());
        let (mut bars, mut historical_bytes) = (0, 0);
        while let Some(body) = dec.next_frame().unwrap() {
            let frame = Frame::parse(body.clone(), sv).unwrap();
            match frame.id {
                id::HISTORICAL_DATA | id::HISTORICAL_DATA_END => {
                    if let Ok(Response::HistoricalData { bars: b, .. }) =
                        Response::decode(&frame, sv)
                    {
                        bars += b.len();
                    }
                    historical_bytes += body.len() + 4;
                    historical.push(Template::new(body, sv));
                }
                id::CONTRACT_DATA | id::CONTRACT_DATA_END => {
                    contract.push(Template::new(body, sv));
                }
                _ if historical.is_empty() && contract.is_empty() => {
                    burst.put_u32(u32::try_from(body.len()).unwrap());
                    burst.put_slice(&body);
                }
                // Anything later (notices) is not replayed.
                _ => {}
            }
        }
        assert!(bars > 0 && !contract.is_empty(), "fixture {sv} incomplete");
        Self {
            sv,
            hello: hello.freeze(),
            burst: burst.freeze(),
            historical,
            contract,
            bars,
            historical_bytes,
        }
    }
}

/// One client's frame: the captured hello for its hello, then per request the captured answer of
/// its kind.
fn reply(script: &Script, body: Bytes, hello: bool) -> Vec<Bytes> {
    if hello {
        return vec![script.hello.clone()];
    }
    match Request::decode_payload(body, script.sv) {
        Ok(Request::StartApi { .. }) => vec![script.burst.clone()],
        Ok(r @ Request::ReqHistoricalData(_)) => {
            let req_id = r.req_id().unwrap_or(0);
            script.historical.iter().map(|t| t.frame(req_id)).collect()
        }
        Ok(r @ Request::ReqContractDetails { .. }) => {
            let req_id = r.req_id().unwrap_or(0);
            script.contract.iter().map(|t| t.frame(req_id)).collect()
        }
        _ => Vec::new(),
    }
}

/// Start the replay server for `script`; returns its address.
async fn serve(script: Script) -> String {
    support::serve(script, reply).await
}

/// ibapi's side of the same request; returns the bar count.
async fn ibapi_fetch(c: &ibapi::Client) -> usize {
    let aapl = ibapi::contracts::Contract::stock("AAPL").build();
    let end = time::macros::datetime!(2025-12-31 21:00:00 UTC);
    let got = tokio::time::timeout(
        STEP,
        c.historical_data(&aapl, BarSize::Min)
            .duration(5.days())
            .ending(end)
            .trading_hours(TradingHours::Regular)
            .fetch(),
    )
    .await
    .unwrap()
    .unwrap();
    got.bars.len()
}

/// ibapi's contract-details request for AAPL; returns the match count.
async fn ibapi_contract(c: &ibapi::Client) -> usize {
    let aapl = ibapi::contracts::Contract::stock("AAPL").build();
    tokio::time::timeout(STEP, c.contract_details(&aapl))
        .await
        .unwrap()
        .unwrap()
        .len()
}

/// Wall time of awaiting `f`, and its output.
async fn timed<T>(f: impl std::future::Future<Output = T>) -> (f64, T) {
    let t = Instant::now();
    let out = f.await;
    (t.elapsed().as_secs_f64(), out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--capture") {
        capture(226).await;
        capture(176).await;
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let rounds = if quick { 3 } else { 200 };
    println!("replay of captured sim frames over loopback, {rounds} interleaved rounds (median)");
    // frames/s: frames of the historical answer (bars, and the end marker from 196) per second.
    // ÷ ibapi: ours in speed over theirs (their time ÷ ours), the median of per-round ratios.
    println!(
        "{:<7} {:<13} {:>9} {:>9} {:>10} {:>8} {:>12} {:>8}",
        "server", "client", "hist µs", "frames/s", "bars/s", "÷ ibapi", "contract µs", "÷ ibapi"
    );
    for sv in [226, 176] {
        let script = Script::load(sv);
        let (bars, frames) = (script.bars, script.historical.len());
        let bytes = script.historical_bytes;
        let addr = serve(script).await;
        let ours = ibconn_tokio::Client::connect_with(&addr, 1, ours_config(sv))
            .await
            .unwrap();
        let theirs = if sv >= 213 {
            Some(ibapi::Client::connect(&addr, 2).await.unwrap())
        } else {
            None
        };
        let (mut oh, mut th, mut oc, mut tc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut hist_ratios, mut contract_ratios) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (t, got) = timed(tokio::time::timeout(
                STEP,
                ours.historical_data(ours_request()),
            ))
            .await;
            assert_eq!(got.unwrap().unwrap().bars.len(), bars);
            oh.push(t);
            let (t, got) = timed(tokio::time::timeout(
                STEP,
                ours.contract_details(Contract::stock("AAPL")),
            ))
            .await;
            assert!(!got.unwrap().unwrap().is_empty());
            oc.push(t);
            if let Some(theirs) = &theirs {
                let (t, n) = timed(ibapi_fetch(theirs)).await;
                assert_eq!(n, bars, "both clients get the same bars");
                th.push(t);
                // Ours ÷ ibapi in speed: their time over ours, per round.
                hist_ratios.push(t / oh[oh.len() - 1]);
                let (t, n) = timed(ibapi_contract(theirs)).await;
                assert!(n > 0);
                tc.push(t);
                contract_ratios.push(t / oc[oc.len() - 1]);
            }
        }
        let show = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.2}×"));
        let row = |name: &str, h: Vec<f64>, c: Vec<f64>, ratios: Option<(f64, f64)>| {
            let (h, c) = (median(h), median(c));
            println!(
                "{:<7} {:<13} {:>9.1} {:>9.0} {:>10.0} {:>8} {:>12.1} {:>8}",
                sv,
                name,
                h * 1e6,
                frames as f64 / h,
                bars as f64 / h,
                show(ratios.map(|r| r.0)),
                c * 1e6,
                show(ratios.map(|r| r.1)),
            );
        };
        println!(
            "server {sv}: {bars} bars in {frames} frames, {bytes} bytes per historical answer"
        );
        let ratios =
            (!hist_ratios.is_empty()).then(|| (median(hist_ratios), median(contract_ratios)));
        row("ibconn-tokio", oh, oc, ratios);
        if let Some(theirs) = theirs {
            row("ibapi 5.5.0", th, tc, Some((1.0, 1.0)));
            theirs.disconnect().await;
        }
        ours.shutdown().await;
    }
}
