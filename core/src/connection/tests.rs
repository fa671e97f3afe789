//! Connection behaviour under virtual time, against a scripted peer built from the codec's server
//! side (`FrameDecoder::server`, `Request::decode_payload`, `Response::encode`).
//!
//! This file is the harness (the peer, a connected session, sample requests); the scenarios live in
//! the child modules, one per file of the connection.

// One arbitrary origin per test; every later instant is derived from it (virtual time).
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::*;
use crate::classify::{Advice, Connectivity, ErrorClass};
use crate::message::{BarTime, ErrorMessage};
use crate::query::{EndTime, HistoricalQuery};
use crate::wire::{ClientHello, HandshakeError, ServerHello, VersionRange};

mod errors;
mod handshake;
mod keepalive;
mod requests;

/// The gateway side of a test: decodes what the client wrote, encodes what the test answers.
struct Peer {
    version: i32,
    decoder: FrameDecoder,
    hello: Option<ClientHello>,
    received: Vec<Request>,
}

impl Peer {
    fn new(version: i32) -> Self {
        Self {
            version,
            decoder: FrameDecoder::server(),
            hello: None,
            received: Vec::new(),
        }
    }

    /// Take everything the client wrote and decode it.
    fn read(&mut self, conn: &mut Connection) {
        while let Some(bytes) = conn.poll_transmit() {
            self.decoder.push(&bytes);
        }
        while let Some(body) = self.decoder.next_frame().unwrap() {
            if self.hello.is_none() {
                self.hello = Some(ClientHello::decode(&body).unwrap());
            } else {
                self.received
                    .push(Request::decode_payload(body, self.version).unwrap());
            }
        }
    }

    fn reply(&self, conn: &mut Connection, now: Instant, msgs: &[Response]) {
        let mut out = BytesMut::new();
        for m in msgs {
            m.encode(self.version, &mut out).unwrap();
        }
        conn.handle_input(now, &out);
    }

    fn hello_reply(&self, conn: &mut Connection, now: Instant) {
        let mut out = BytesMut::new();
        ServerHello {
            server_version: self.version,
            connection_time: "20260101 12:00:00 America/New_York".into(),
        }
        .encode(&mut out)
        .unwrap();
        conn.handle_input(now, &out);
    }

    fn take(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.received)
    }
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn startup() -> Vec<Response> {
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
    ]
}

/// Settings that reach a gateway at `version`: the default offer for the protobuf era, the wide
/// offer pinned for a text-era gateway (under the default a pool would fall back to it).
fn config_for(version: i32, client_id: i32) -> Config {
    let mut cfg = Config::new(client_id);
    if version < 213 {
        cfg.versions = VersionPolicy::Pinned(VersionRange::supported());
    }
    cfg
}

/// A connected session at `version`, its peer, and the virtual clock.
fn connected(version: i32) -> (Connection, Peer, Instant) {
    connected_with(config_for(version, 7), version)
}

/// As [`connected`], with the settings `cfg` (client id 7).
fn connected_with(cfg: Config, version: i32) -> (Connection, Peer, Instant) {
    let t0 = Instant::now();
    let mut conn = Connection::new(cfg, t0);
    let mut peer = Peer::new(version);
    peer.read(&mut conn);
    peer.hello_reply(&mut conn, t0);
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::StartApi {
            client_id: 7,
            optional_capabilities: String::new()
        }]
    );
    peer.reply(&mut conn, t0, &startup());
    let ev = events(&mut conn);
    assert!(
        matches!(&ev[0], Event::Connected { server_version, next_valid_id: 42, accounts, .. }
            if *server_version == version && accounts == &vec!["DU1234567".to_string()]),
        "{ev:?}"
    );
    assert!(matches!(&ev[1], Event::Notice { code: 2104, .. }), "{ev:?}");
    (conn, peer, t0)
}

/// AAPL hourly TRADES bars, two RTH days ending 2025-12-31 21:00 UTC.
fn hourly() -> HistoricalQuery {
    HistoricalQuery {
        use_rth: true,
        ..HistoricalQuery::new(
            Contract::stock("AAPL"),
            EndTime::At(crate::civil::utc(2025, 12, 31, 21, 0, 0)),
            "2 D".parse().unwrap(),
            crate::bar_size::BarSize::Hour1,
            crate::what_to_show::WhatToShow::Trades,
        )
    }
}

fn bar(date: &str) -> Bar {
    Bar {
        date: BarTime::parse(date),
        open: 1.0,
        high: 2.0,
        low: 0.5,
        close: 1.5,
        volume: 10.0,
        wap: 1.2,
        count: 3,
    }
}
