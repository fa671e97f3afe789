//! Decode throughput of a 2,000-bar `HistoricalData` frame, text and protobuf forms, against a
//! `memchr` scan of the same bytes measured in the same run (the baseline ratio in BENCHMARKS.md).
//!
//! Run: `cargo bench -p ibconn-core --bench decode`
// A bench measures wall time and aborts on broken fixtures: both are fine outside the core.
#![allow(missing_docs, clippy::expect_used, clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ibconn_core::message::{Bar, BarTime, Response};
use ibconn_core::wire::FrameDecoder;

const BARS: usize = 2_000;

/// A realistic day of 1-minute-ish bars: epoch dates, prices with cents, decimal volumes.
fn frame(server_version: i32) -> Bytes {
    let bars = (0..BARS)
        .map(|i| {
            let i = i as f64;
            let base = 180.0 + (i * 0.37).sin() * 4.0;
            Bar {
                date: BarTime::Epoch(1_767_200_000 + (i as i64) * 60),
                open: (base * 100.0).round() / 100.0,
                high: ((base + 0.42) * 100.0).round() / 100.0,
                low: ((base - 0.31) * 100.0).round() / 100.0,
                close: ((base + 0.05) * 100.0).round() / 100.0,
                volume: (1000.0 + (i * 7.0) % 5000.0).round(),
                wap: ((base + 0.02) * 1000.0).round() / 1000.0,
                count: 100 + (i as i32 % 900),
            }
        })
        .collect();
    let msg = Response::HistoricalData {
        req_id: 1,
        start: String::new(),
        end: String::new(),
        bars,
    };
    let mut out = BytesMut::new();
    msg.encode(server_version, &mut out)
        .expect("a 2,000-bar frame encodes");
    out.freeze()
}

/// Seconds per call of `f`, averaged over a batch of `iters` calls.
fn batch(iters: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / iters as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn decode(frame: &Bytes, server_version: i32) -> usize {
    let mut dec = FrameDecoder::new();
    dec.push(frame);
    let body = dec
        .next_frame()
        .expect("valid frame")
        .expect("complete frame");
    match Response::decode_payload(body, server_version).expect("decodes") {
        Response::HistoricalData { bars, .. } => bars.len(),
        _ => 0,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let (rounds, iters) = if quick { (3, 5) } else { (15, 60) };
    println!("decode of one {BARS}-bar HistoricalData frame (median of {rounds} interleaved rounds × {iters})");
    println!(
        "{:<10} {:>9} {:>10} {:>12} {:>14} {:>11}",
        "form", "bytes", "µs/frame", "MB/s", "bars/s", "÷ memchr"
    );
    // An optional argument picks one form, e.g. `cargo bench --bench decode -- text`.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for (form, sv) in [("text", 176), ("protobuf", 226)] {
        if !only.is_empty() && !only.iter().any(|o| o == form) {
            continue;
        }
        let f = frame(sv);
        assert_eq!(decode(&f, sv), BARS);
        // Decode and baseline batches alternate within each round, and the ratio is taken per
        // round, so a noisy neighbour slows both sides of a ratio alike.
        let (mut decode_s, mut memchr_s, mut count_s, mut ratios) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let d = batch(iters, || {
                black_box(decode(black_box(&f), sv));
            });
            // Baseline: visit every NUL in the same bytes, i.e. split the frame into its fields —
            // the least any text decoder must do. (`memchr_iter(..).count()` is specialised to a
            // SIMD popcount that never yields a position; printed for reference only.)
            let m = batch(iters * 4, || {
                for pos in memchr::memchr_iter(0, black_box(&f[..])) {
                    black_box(pos);
                }
            });
            let c = batch(iters * 10, || {
                black_box(memchr::memchr_iter(0, black_box(&f[..])).count());
            });
            decode_s.push(d);
            memchr_s.push(m);
            count_s.push(c);
            ratios.push(m / d);
        }
        let (t_decode, t_memchr, t_count, ratio) = (
            median(decode_s),
            median(memchr_s),
            median(count_s),
            median(ratios),
        );
        let mb_s = f.len() as f64 / t_decode / 1e6;
        println!(
            "{:<10} {:>9} {:>10.1} {:>12.1} {:>14.0} {:>10.1}%",
            form,
            f.len(),
            t_decode * 1e6,
            mb_s,
            BARS as f64 / t_decode,
            100.0 * ratio
        );
        println!(
            "{:<10} {:>9} {:>10.2} {:>12.1}   (baseline: memchr_iter visiting each NUL)",
            "",
            f.len(),
            t_memchr * 1e6,
            f.len() as f64 / t_memchr / 1e6
        );
        println!(
            "{:<10} {:>9} {:>10.2} {:>12.1}   (reference: memchr_iter(..).count(), SIMD count)",
            "",
            f.len(),
            t_count * 1e6,
            f.len() as f64 / t_count / 1e6
        );
    }
}
