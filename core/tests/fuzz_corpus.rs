//! Replays every committed fuzz corpus file through the same entry points the cargo-fuzz targets
//! call, on stable, as part of `cargo test` — so a crash once found stays fixed.
//!
//! Seeds are regenerated with `cargo test -p ibconn-core --test fuzz_corpus -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// A test reads its corpus files: the core's no-file-I/O rule is for the library.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use ibconn_core::fuzzing;
use ibconn_core::message::{
    Bar, BarTime, Contract, ContractDetails, ErrorMessage, HistoricalDataRequest, Request, Response,
};
use ibconn_core::wire::{ClientHello, VersionRange};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let data = fs::read(f).unwrap();
        // A panic here names the file to reproduce with `cargo fuzz run <target> <file>`.
        println!("replaying {}", f.display());
        entry(&data);
    }
    files.len()
}

#[test]
fn replay_frame_decoder_corpus() {
    assert!(replay("frame_decoder", fuzzing::frame_decoder) >= 5);
}

#[test]
fn replay_messages_corpus() {
    assert!(replay("messages", fuzzing::messages) >= 20);
}

#[test]
fn replay_connection_corpus() {
    assert!(replay("connection", fuzzing::connection) >= 3);
}

// ----- seed generation -----

fn responses() -> Vec<Response> {
    let bar = Bar {
        date: BarTime::Epoch(1_767_128_400),
        open: 250.0,
        high: 251.5,
        low: 249.25,
        close: 251.0,
        volume: 1200.0,
        wap: 250.5,
        count: 17,
    };
    vec![
        Response::ManagedAccounts {
            accounts: "DU1234567,".into(),
        },
        Response::NextValidId { order_id: 42 },
        Response::Error(ErrorMessage {
            req_id: -1,
            code: 2104,
            message: "Market data farm connection is OK:usfarm".into(),
            ..ErrorMessage::default()
        }),
        Response::CurrentTime {
            time: 1_767_268_800,
        },
        Response::HistoricalData {
            req_id: 1,
            start: "20251230-21:00:00".into(),
            end: "20251231-21:00:00".into(),
            bars: vec![bar.clone(), bar.clone()],
        },
        Response::HistoricalDataEnd {
            req_id: 1,
            start: "20251230-21:00:00".into(),
            end: "20251231-21:00:00".into(),
        },
        Response::HistoricalDataUpdate { req_id: 1, bar },
        Response::HeadTimestamp {
            req_id: 2,
            timestamp: "345479400".into(),
        },
        Response::ContractData {
            req_id: 3,
            contract: Box::new(Contract {
                con_id: 265_598,
                ..Contract::stock("AAPL")
            }),
            details: Box::new(ContractDetails {
                long_name: "APPLE INC".into(),
                min_tick: 0.01,
                sec_id_list: vec![("ISIN".into(), "US0378331005".into())],
                ..ContractDetails::default()
            }),
        },
        Response::ContractDataEnd { req_id: 3 },
        Response::SymbolSamples {
            req_id: 4,
            descriptions: vec![],
        },
    ]
}

fn requests() -> Vec<Request> {
    vec![
        Request::StartApi {
            client_id: 100,
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
            req_id: 3,
            contract: Contract::stock("MSFT"),
        },
        Request::ReqMatchingSymbols {
            req_id: 4,
            pattern: "AAP".into(),
        },
        Request::CancelHistoricalData { req_id: 1 },
    ]
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = corpus_dir(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), data).unwrap();
}

#[test]
#[ignore = "writes the seed corpus; run on purpose"]
fn write_seed_corpus() {
    for sv in [100, 123, 150, 176, 195, 200, 210, 226] {
        let selector = u8::try_from(sv - 100).unwrap();
        for (i, m) in responses().iter().enumerate() {
            let mut out = BytesMut::new();
            if m.encode(sv, &mut out).is_ok() {
                let mut seed = vec![selector];
                seed.extend_from_slice(&out[4..]);
                write("messages", &format!("resp-v{sv}-{i:02}"), &seed);
            }
        }
        for (i, m) in requests().iter().enumerate() {
            let mut out = BytesMut::new();
            if m.encode(sv, &mut out).is_ok() {
                let mut seed = vec![selector];
                seed.extend_from_slice(&out[4..]);
                write("messages", &format!("req-v{sv}-{i:02}"), &seed);
            }
        }
    }
    // Frame streams: a client hello then requests (server side), and replies (client side).
    for (step, sv) in [(1u8, 226), (7, 176), (255, 226)] {
        let mut stream = BytesMut::new();
        ClientHello::new(VersionRange::new(100, 226)).encode(&mut stream);
        for m in requests() {
            let _ = m.encode(sv, &mut stream);
        }
        let mut seed = vec![step];
        seed.extend_from_slice(&stream);
        write(
            "frame_decoder",
            &format!("client-stream-{step}-v{sv}"),
            &seed,
        );
        let mut stream = BytesMut::new();
        for m in responses() {
            let _ = m.encode(sv, &mut stream);
        }
        let mut seed = vec![step];
        seed.extend_from_slice(&stream);
        write(
            "frame_decoder",
            &format!("server-stream-{step}-v{sv}"),
            &seed,
        );
    }
    // Connections: the startup burst and replies, in 13-byte chunks (1 time byte + 12 bytes).
    for sv in [150, 176, 226] {
        // The entry point sends its own server hello; the stream starts after it.
        let mut stream = BytesMut::new();
        for m in responses() {
            let _ = m.encode(sv, &mut stream);
        }
        let mut seed = vec![u8::try_from(sv - 100).unwrap()];
        for (i, chunk) in stream.chunks(12).enumerate() {
            seed.push(u8::try_from(i % 3).unwrap());
            seed.extend_from_slice(chunk);
        }
        write("connection", &format!("startup-v{sv}"), &seed);
    }
}
