//! Replays every committed `sim_gateway` fuzz corpus file through the entry point the fuzz target
//! calls, on stable, in `cargo test`. Regenerate the seeds with
//! `cargo test -p ibconn-sim --test fuzz_corpus -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use ibconn_core::message::{Contract, HistoricalDataRequest, Request};
use ibconn_core::wire::{ClientHello, VersionRange};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sim_gateway")
}

#[test]
fn replay_sim_gateway_corpus() {
    let mut files: Vec<PathBuf> = fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "seed corpus missing");
    for f in files {
        println!("replaying {}", f.display());
        ibconn_sim::fuzzing::gateway(&fs::read(&f).unwrap());
    }
}

/// A client session at `offer`, encoded at the version the sim will answer.
fn session(offer: VersionRange, sv: i32) -> BytesMut {
    let mut out = BytesMut::new();
    ClientHello::new(offer).encode(&mut out);
    let reqs = [
        Request::StartApi {
            client_id: 7,
            optional_capabilities: String::new(),
        },
        Request::ReqCurrentTime,
        Request::ReqHistoricalData(HistoricalDataRequest {
            req_id: 1,
            contract: Contract::stock("AAPL"),
            end_date_time: "20251231-21:00:00".into(),
            bar_size: "1 hour".into(),
            duration: "2 D".into(),
            use_rth: true,
            what_to_show: "TRADES".into(),
            format_date: 2,
            ..HistoricalDataRequest::default()
        }),
        Request::ReqContractDetails {
            req_id: 2,
            contract: Contract::stock("MSFT"),
        },
        Request::ReqMatchingSymbols {
            req_id: 3,
            pattern: "SP".into(),
        },
        Request::CancelHistoricalData { req_id: 1 },
    ];
    for r in reqs {
        r.encode(sv, &mut out).unwrap();
    }
    out
}

#[test]
#[ignore = "writes the seed corpus; run on purpose"]
fn write_seed_corpus() {
    fs::create_dir_all(corpus()).unwrap();
    for (name, offer, sv, control) in [
        ("protobuf-v226", VersionRange::new(213, 226), 226, 0u8),
        ("text-v178", VersionRange::new(157, 178), 178, 2),
        ("two-clients-v226", VersionRange::new(100, 226), 226, 40),
    ] {
        let stream = session(offer, sv);
        let mut seed = vec![7u8];
        for (i, piece) in stream.chunks(16).enumerate() {
            // Bit 0 picks the connection; the rest advances time in 25 ms steps.
            seed.push(control | u8::from(control == 40 && i % 2 == 1));
            seed.extend_from_slice(piece);
        }
        fs::write(corpus().join(name), seed).unwrap();
    }
}
