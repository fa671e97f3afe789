//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the corpus replay in
//! `cargo test` (so every committed corpus file runs on stable in CI). Each function takes raw fuzz
//! input, must never panic on it, and checks the invariants named in its doc.
#![doc(hidden)]
// Invariant violations are the point of a fuzz entry: they must abort loudly.
#![allow(clippy::panic)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::connection::{Config, Connection, Event};
use crate::message::{Request, Response};
use crate::wire::{Frame, FrameDecoder, ServerHello, MAX_FRAME_LEN};

/// A server version in the supported range chosen by one input byte.
fn version_from(byte: u8) -> i32 {
    100 + i32::from(byte) % 127
}

/// Frame decoder, client and server side: input split into chunks whose sizes come from the
/// input itself. Invariants: no frame over the cap; never more bytes out than in.
pub fn frame_decoder(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    for mut decoder in [FrameDecoder::new(), FrameDecoder::server()] {
        let mut out = 0usize;
        for chunk in rest.chunks(step) {
            decoder.push(chunk);
            while let Ok(Some(frame)) = decoder.next_frame() {
                assert!(frame.len() <= MAX_FRAME_LEN, "frame over the cap");
                out += frame.len() + 4;
            }
        }
        assert!(
            out <= rest.len(),
            "decoder produced more bytes than it was given"
        );
    }
}

/// Message decoding in both directions at a version chosen by the first byte. Invariant: whatever
/// decodes re-encodes, and the re-encoding is a fixpoint (decode → encode gives the same bytes).
pub fn messages(data: &[u8]) {
    let Some((&v, body)) = data.split_first() else {
        return;
    };
    let sv = version_from(v);
    let Ok(frame) = Frame::parse(Bytes::copy_from_slice(body), sv) else {
        return;
    };
    if let Ok(req) = Request::decode(&frame, sv) {
        fixpoint(
            sv,
            &req,
            |m, out| m.encode(sv, out),
            |b| Request::decode_payload(b, sv).ok(),
        );
    }
    if let Ok(resp) = Response::decode(&frame, sv) {
        fixpoint(
            sv,
            &resp,
            |m, out| m.encode(sv, out),
            |b| Response::decode_payload(b, sv).ok(),
        );
    }
}

fn fixpoint<M: std::fmt::Debug>(
    sv: i32,
    msg: &M,
    encode: impl Fn(&M, &mut BytesMut) -> Result<(), crate::wire::EncodeError>,
    decode: impl Fn(Bytes) -> Option<M>,
) {
    let mut first = BytesMut::new();
    // A decoded message may lack a form at this version (e.g. a reply that does not exist yet);
    // refusing to encode it is correct.
    if encode(msg, &mut first).is_err() {
        return;
    }
    let first = first.freeze();
    let Some(again) = decode(first.slice(4..)) else {
        panic!("v{sv}: our own encoding of {msg:?} does not decode: {first:02x?}");
    };
    let mut second = BytesMut::new();
    if let Err(e) = encode(&again, &mut second) {
        panic!("v{sv}: re-decoded {again:?} does not encode: {e}");
    }
    assert_eq!(first, second.freeze(), "v{sv}: encoding is not a fixpoint");
}

/// A client connection fed arbitrary server bytes after a valid hello, with time advancing by
/// amounts taken from the input. Invariants: after `Disconnected` no event follows; every request
/// id completes at most once; `poll_timeout` is never in the past after `handle_timeout`.
pub fn connection(data: &[u8]) {
    let Some((&v, rest)) = data.split_first() else {
        return;
    };
    // The origin only anchors virtual time (every later instant is derived from it), so reading the
    // clock here does not make the run depend on it.
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    let mut conn = Connection::new(Config::new(1), now);
    let mut hello = BytesMut::new();
    let _ = ServerHello {
        server_version: version_from(v),
        connection_time: "20260101 12:00:00 UTC".into(),
    }
    .encode(&mut hello);
    conn.handle_input(now, &hello);
    let _ = conn.send(now, crate::connection::Query::CurrentTime, None);
    let mut completed = std::collections::BTreeSet::new();
    let mut disconnected = false;
    for chunk in rest.chunks(13) {
        let (&dt, bytes) = chunk.split_first().unwrap_or((&0, &[]));
        now += Duration::from_millis(u64::from(dt) * 40);
        conn.handle_input(now, bytes);
        conn.handle_timeout(now);
        while conn.poll_transmit().is_some() {}
        while let Some(event) = conn.poll_event() {
            assert!(!disconnected, "event after Disconnected: {event:?}");
            match event {
                Event::Completed { id, .. } => {
                    assert!(completed.insert(id), "request {id:?} completed twice");
                }
                Event::Disconnected { .. } => disconnected = true,
                _ => {}
            }
        }
        if let Some(t) = conn.poll_timeout() {
            assert!(
                t > now || conn.is_closed(),
                "timer in the past after handle_timeout"
            );
        }
    }
}
