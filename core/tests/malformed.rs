//! Malformed input: valid frames of every message, truncated at every position and mutated byte
//! by byte, go through every decoder; nothing may panic (all panics are collected and reported
//! together). Then table tests pin the typed error each kind of damage produces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod codec_fixtures;

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use codec_fixtures::{encode_request, encode_response, hex, request_cases, response_cases};
use ibconn_core::message::{Request, Response};
use ibconn_core::wire::{
    ClientHello, DecodeError, EncodeError, Form, Frame, FrameDecoder, FrameError, HandshakeError,
    ServerHello,
};

/// A valid frame (length prefix included) of some fixture, and how to read it.
struct Sample {
    what: String,
    frame: Bytes,
    sv: i32,
    form: Form,
    /// `Unknown` keeps any bytes verbatim, so a damaged one may still decode.
    unknown: bool,
}

fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    for c in request_cases() {
        for &sv in &c.versions {
            out.push(Sample {
                what: format!("request {} v{sv}", c.name),
                frame: encode_request(&c.msg, sv).unwrap(),
                sv,
                form: c.msg.form(sv).unwrap(),
                unknown: c.msg.name() == "Unknown",
            });
        }
    }
    for c in response_cases() {
        for &sv in &c.versions {
            out.push(Sample {
                what: format!("response {} v{sv}", c.name),
                frame: encode_response(&c.msg, sv).unwrap(),
                sv,
                form: c.msg.form(sv).unwrap(),
                unknown: c.msg.name() == "Unknown",
            });
        }
    }
    out
}

/// Run every decoder on one frame body; re-encode whatever decodes. Returns whether the
/// direction-appropriate decode succeeded (`None` if something panicked).
fn decode_all(payload: &Bytes, sv: i32, is_request: bool) -> Option<bool> {
    catch_unwind(AssertUnwindSafe(|| {
        let _ = Frame::parse(payload.clone(), sv);
        let req = Request::decode_payload(payload.clone(), sv);
        let resp = Response::decode_payload(payload.clone(), sv);
        if let Ok(m) = &req {
            let _ = m.encode(sv, &mut BytesMut::new());
        }
        if let Ok(m) = &resp {
            let _ = m.encode(sv, &mut BytesMut::new());
        }
        if is_request {
            req.is_ok()
        } else {
            resp.is_ok()
        }
    }))
    .ok()
}

/// Push a whole stream into a client and a server decoder and decode every frame that comes out.
fn decode_stream(stream: &[u8], sv: i32) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        let mut dec = FrameDecoder::new();
        dec.push(stream);
        while let Ok(Some(body)) = dec.next_frame() {
            let _ = Request::decode_payload(body.clone(), sv);
            let _ = Response::decode_payload(body, sv);
        }
        let mut server = FrameDecoder::server();
        server.push(b"API\0");
        server.push(stream);
        while let Ok(Some(body)) = server.next_frame() {
            let _ = ClientHello::decode(&body);
            let _ = ServerHello::decode(&body);
        }
    }))
    .is_ok()
}

fn report(panics: &[String]) {
    assert!(
        panics.is_empty(),
        "{} input(s) panicked a decoder; first ones:\n{}",
        panics.len(),
        panics
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_truncation_of_every_frame_returns_without_panicking() {
    let mut panics = Vec::new();
    let mut accepted = Vec::new();
    for s in samples() {
        let is_request = s.what.starts_with("request");
        let payload = s.frame.slice(4..);
        for k in 0..payload.len() {
            let cut = payload.slice(..k);
            match decode_all(&cut, s.sv, is_request) {
                None => panics.push(format!("{} cut at {k}: {}", s.what, hex(&cut))),
                // Every field of a text message we model is required: a strict prefix of it
                // must never decode (protobuf prefixes may well be valid messages).
                Some(true) if s.form == Form::Text && !s.unknown => {
                    accepted.push(format!("{} cut at {k}: {}", s.what, hex(&cut)));
                }
                Some(_) => {}
            }
        }
        // Through the frame decoder: an incomplete frame is "need more bytes", never a frame.
        for k in 0..s.frame.len() {
            let mut dec = FrameDecoder::new();
            dec.push(&s.frame[..k]);
            assert_eq!(dec.next_frame(), Ok(None), "{} cut at {k}", s.what);
            assert_eq!(dec.buffered(), k);
        }
    }
    report(&panics);
    assert!(
        accepted.is_empty(),
        "truncated text frames decoded as if whole:\n{}",
        accepted.join("\n")
    );
}

/// Replacement values tried at every byte position.
fn replacements(orig: u8) -> Vec<u8> {
    let mut v = vec![
        0x00,
        0xff,
        0x80,
        b'0',
        b'9',
        b'-',
        b'.',
        b'e',
        orig ^ 0x01,
        orig ^ 0x80,
        orig.wrapping_add(1),
    ];
    v.sort_unstable();
    v.dedup();
    v.retain(|&b| b != orig);
    v
}

#[test]
fn every_byte_mutation_of_every_frame_returns_without_panicking() {
    let mut panics = Vec::new();
    for s in samples() {
        let is_request = s.what.starts_with("request");
        let payload = s.frame.slice(4..);
        for i in 0..payload.len() {
            let mut variants = Vec::new();
            for b in replacements(payload[i]) {
                let mut m = payload.to_vec();
                m[i] = b;
                variants.push((format!("byte {i} = {b:02x}"), m));
            }
            let mut deleted = payload.to_vec();
            deleted.remove(i);
            variants.push((format!("byte {i} deleted"), deleted));
            let mut inserted = payload.to_vec();
            inserted.insert(i, 0);
            variants.push((format!("NUL inserted at {i}"), inserted));
            for (how, m) in variants {
                let m = Bytes::from(m);
                if decode_all(&m, s.sv, is_request).is_none() {
                    panics.push(format!("{} {how}: {}", s.what, hex(&m)));
                }
            }
        }
        // Damage to the length prefix and the body together, through the frame decoders.
        for i in 0..s.frame.len() {
            for b in [0x00, 0x01, 0x7f, 0xff] {
                let mut m = s.frame.to_vec();
                m[i] = b;
                m.extend_from_slice(&s.frame);
                if !decode_stream(&m, s.sv) {
                    panics.push(format!("{} stream byte {i} = {b:02x}: {}", s.what, hex(&m)));
                }
            }
        }
    }
    report(&panics);
}

/// The same body decoded at every version: a frame from one version read as another must fail
/// cleanly, never panic.
#[test]
fn frames_read_at_the_wrong_version_return_without_panicking() {
    let mut panics = Vec::new();
    for s in samples() {
        let payload = s.frame.slice(4..);
        for sv in codec_fixtures::GATE_VERSIONS {
            if decode_all(&payload, sv, s.what.starts_with("request")).is_none() {
                panics.push(format!("{} read at v{sv}", s.what));
            }
        }
    }
    report(&panics);
}

// ---------------------------------------------------------------------------------------------
// Typed errors

/// A text frame body at a version below 201: `"id\0field\0field\0…"`.
fn text(id: &str, fields: &[&[u8]]) -> Bytes {
    let mut out = id.as_bytes().to_vec();
    out.push(0);
    for f in fields {
        out.extend_from_slice(f);
        out.push(0);
    }
    Bytes::from(out)
}

/// A protobuf frame body: 4-byte id (+200), then `body`.
fn proto(id: i32, body: &[u8]) -> Bytes {
    let mut out = (id + 200).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn response_err(payload: Bytes, sv: i32) -> DecodeError {
    match Response::decode_payload(payload.clone(), sv) {
        Err(e) => e,
        Ok(m) => panic!("{} at v{sv} decoded to {m:?}", hex(&payload)),
    }
}

fn request_err(payload: Bytes, sv: i32) -> DecodeError {
    match Request::decode_payload(payload.clone(), sv) {
        Err(e) => e,
        Ok(m) => panic!("{} at v{sv} decoded to {m:?}", hex(&payload)),
    }
}

#[test]
fn bad_numbers_name_the_message_and_field() {
    let err = response_err(text("9", &[b"1", b"4x2"]), 176);
    assert_eq!(
        err,
        DecodeError::BadNumber {
            msg: "NextValidId",
            field: "order_id",
            value: "4x2".into(),
            kind: "i32"
        }
    );
    assert_eq!(
        err.to_string(),
        "NextValidId: field `order_id` = \"4x2\" is not a valid i32"
    );
    assert_eq!(
        response_err(text("49", &[b"1", b"soon"]), 176),
        DecodeError::BadNumber {
            msg: "CurrentTime",
            field: "time",
            value: "soon".into(),
            kind: "i64"
        }
    );
    assert_eq!(
        response_err(text("9", &[b"1", b"2147483648"]), 176),
        DecodeError::BadNumber {
            msg: "NextValidId",
            field: "order_id",
            value: "2147483648".into(),
            kind: "i32"
        },
        "out of i32 range"
    );
    let bar = |open: &'static [u8]| {
        text(
            "17",
            &[
                b"5",
                b"1",
                b"1767105000",
                open,
                b"2",
                b"1",
                b"1.5",
                b"100",
                b"1.2",
                b"3",
            ],
        )
    };
    for bad in [&b"abc"[..], b"nan", b"inf", b"1,5"] {
        assert_eq!(
            response_err(bar(bad), 196),
            DecodeError::BadNumber {
                msg: "HistoricalData",
                field: "open",
                value: String::from_utf8(bad.to_vec()).unwrap(),
                kind: "f64"
            }
        );
    }
    assert!(Response::decode_payload(bar(b"Infinity"), 196).is_ok());
    assert_eq!(
        response_err(text("4", &[b"1", b"162", b"msg", b"", b"later"]), 196),
        DecodeError::BadNumber {
            msg: "Error",
            field: "error_time",
            value: "later".into(),
            kind: "i64"
        }
    );
    assert_eq!(
        request_err(text("71", &[b"2", b"client", b""]), 176),
        DecodeError::BadNumber {
            msg: "StartApi",
            field: "client_id",
            value: "client".into(),
            kind: "i32"
        }
    );
    // The raw value in the error is cut to 64 bytes.
    let long = vec![b'x'; 500];
    match response_err(text("9", &[b"1", &long]), 176) {
        DecodeError::BadNumber { value, .. } => assert_eq!(value.len(), 64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn counts_larger_than_the_frame_are_bad_counts() {
    assert_eq!(
        response_err(text("17", &[b"5", b"1000"]), 196),
        DecodeError::BadCount {
            msg: "HistoricalData",
            field: "count",
            count: 1000
        }
    );
    assert_eq!(
        response_err(text("17", &[b"5", b"-1"]), 196),
        DecodeError::BadCount {
            msg: "HistoricalData",
            field: "count",
            count: -1
        }
    );
    assert_eq!(
        response_err(text("17", &[b"5", b"9223372036854775807", b"a", b"b"]), 196),
        DecodeError::BadCount {
            msg: "HistoricalData",
            field: "count",
            count: i64::MAX
        }
    );
    assert_eq!(
        response_err(text("79", &[b"5", b"3", b"1", b"A"]), 176),
        DecodeError::BadCount {
            msg: "SymbolSamples",
            field: "count",
            count: 3
        }
    );
    // The security-id list count inside an otherwise valid contract-details frame.
    let (c, d) = codec_fixtures::aapl_details();
    let frame = encode_response(
        &Response::ContractData {
            req_id: 1,
            contract: Box::new(c),
            details: Box::new(d),
        },
        196,
    )
    .unwrap();
    let body = frame.slice(4..).to_vec();
    let at = body
        .windows(7)
        .position(|w| w == b"\x001\x00ISIN")
        .expect("sec id count");
    let mut damaged = body[..at].to_vec();
    damaged.extend_from_slice(b"\x0099");
    damaged.extend_from_slice(&body[at + 2..]);
    assert_eq!(
        response_err(Bytes::from(damaged), 196),
        DecodeError::BadCount {
            msg: "ContractData",
            field: "sec_id_list",
            count: 99
        }
    );
}

#[test]
fn missing_and_trailing_text_fields_are_named() {
    assert_eq!(
        response_err(text("9", &[b"1"]), 176),
        DecodeError::MissingField {
            msg: "NextValidId",
            field: "order_id"
        }
    );
    assert_eq!(
        response_err(text("9", &[b"1", b"42", b"extra", b"more"]), 176),
        DecodeError::TrailingFields {
            msg: "NextValidId",
            extra: 2
        }
    );
    // A last field without its NUL is missing, not silently accepted.
    assert_eq!(
        response_err(Bytes::from_static(b"9\x001\x0042"), 176),
        DecodeError::MissingField {
            msg: "NextValidId",
            field: "order_id"
        }
    );
    // Bytes after the last NUL are trailing data.
    assert_eq!(
        response_err(Bytes::from_static(b"9\x001\x0042\x00x"), 176),
        DecodeError::TrailingFields {
            msg: "NextValidId",
            extra: 1
        }
    );
    assert_eq!(
        request_err(text("20", &[b"1"]), 176),
        DecodeError::MissingField {
            msg: "ReqHistoricalData",
            field: "con_id"
        }
    );
    // Error below 194 has a version field first; read at 194+ the layout is one field short.
    assert_eq!(
        response_err(text("4", &[b"2", b"-1", b"2104", b"ok"]), 196),
        DecodeError::MissingField {
            msg: "Error",
            field: "error_time"
        }
    );
}

#[test]
fn invalid_utf8_names_the_field() {
    assert_eq!(
        response_err(text("15", &[b"1", b"DU\xff"]), 176),
        DecodeError::Utf8 {
            msg: "ManagedAccounts",
            field: "accounts"
        }
    );
    assert_eq!(
        request_err(text("81", &[b"7", b"\xc3("]), 176),
        DecodeError::Utf8 {
            msg: "ReqMatchingSymbols",
            field: "pattern"
        }
    );
}

#[test]
fn bad_message_ids_are_typed() {
    assert_eq!(
        response_err(text("x9", &[b"1"]), 176),
        DecodeError::BadMessageId { value: "x9".into() }
    );
    assert_eq!(
        response_err(Bytes::from_static(b"17"), 176),
        DecodeError::NoMessageId { len: 2 }
    );
    assert_eq!(
        response_err(Bytes::from_static(&[0, 0, 0]), 226),
        DecodeError::NoMessageId { len: 3 }
    );
    assert_eq!(
        Frame::parse(Bytes::new(), 226),
        Err(DecodeError::NoMessageId { len: 0 })
    );
}

#[test]
fn absent_required_protobuf_fields_are_named() {
    assert_eq!(
        response_err(proto(9, &[]), 226),
        DecodeError::Absent {
            msg: "NextValidId",
            field: "order_id"
        }
    );
    assert_eq!(
        response_err(proto(15, &[]), 226),
        DecodeError::Absent {
            msg: "ManagedAccounts",
            field: "accounts_list"
        }
    );
    assert_eq!(
        response_err(proto(90, &[0x08, 0x01]), 226),
        DecodeError::Absent {
            msg: "HistoricalDataUpdate",
            field: "historical_data_bar"
        }
    );
    // A bar with an open price but no date.
    let mut bar = vec![0x11];
    bar.extend_from_slice(&1.5f64.to_le_bytes());
    let mut body = vec![0x08, 0x01, 0x12, bar.len() as u8];
    body.extend_from_slice(&bar);
    assert_eq!(
        response_err(proto(17, &body), 226),
        DecodeError::Absent {
            msg: "HistoricalData",
            field: "date"
        }
    );
    assert_eq!(
        response_err(proto(10, &[0x08, 0x01, 0x1a, 0x00]), 226),
        DecodeError::Absent {
            msg: "ContractData",
            field: "contract"
        }
    );
    assert_eq!(
        response_err(proto(10, &[0x08, 0x01, 0x12, 0x00]), 226),
        DecodeError::Absent {
            msg: "ContractData",
            field: "contract_details"
        }
    );
    // Present but zero is not absent (ibapi waits forever for an absent id).
    assert_eq!(
        Response::decode_payload(proto(9, &[0x08, 0x00]), 226),
        Ok(Response::NextValidId { order_id: 0 })
    );
}

#[test]
fn bad_protobuf_decimals_name_the_field() {
    // HistoricalData { req_id: 1, bars: [{ date: "1", volume: <bad> }] }
    let with_volume = |v: &[u8]| {
        let mut bar = vec![0x0a, 0x01, b'1', 0x32, v.len() as u8];
        bar.extend_from_slice(v);
        let mut body = vec![0x08, 0x01, 0x12, bar.len() as u8];
        body.extend_from_slice(&bar);
        proto(17, &body)
    };
    for bad in [&b"abc"[..], b"1,5", b"0x10", b"12 500"] {
        assert_eq!(
            response_err(with_volume(bad), 226),
            DecodeError::BadNumber {
                msg: "HistoricalData",
                field: "volume",
                value: String::from_utf8(bad.to_vec()).unwrap(),
                kind: "decimal"
            }
        );
    }
    // IB's decimal "unset" sentinels read as the default.
    for unset in [&b""[..], b"2147483647", b"9223372036854775807"] {
        match Response::decode_payload(with_volume(unset), 226) {
            Ok(Response::HistoricalData { bars, .. }) => assert_eq!(bars[0].volume, 0.0),
            other => panic!("{other:?}"),
        }
    }
    // ContractData { req_id: 1, contract: {}, contract_details: { min_tick: "x" } }
    assert_eq!(
        response_err(
            proto(10, &[0x08, 0x01, 0x12, 0x00, 0x1a, 0x03, 0x12, 0x01, b'x']),
            226
        ),
        DecodeError::BadNumber {
            msg: "ContractData",
            field: "min_tick",
            value: "x".into(),
            kind: "decimal"
        }
    );
}

#[test]
fn invalid_protobuf_is_a_typed_error_naming_the_message() {
    let cases: [(Bytes, &str); 4] = [
        // Truncated varint.
        (proto(9, &[0x08, 0x80]), "NextValidId"),
        // Length-delimited field running past the end.
        (proto(15, &[0x0a, 0x05, b'D']), "ManagedAccounts"),
        // Wire type 3 (start group) is not accepted.
        (proto(4, &[0x0b]), "Error"),
        // Tag 1 sent with the wrong wire type.
        (proto(49, &[0x0a, 0x01, b'1']), "CurrentTime"),
    ];
    for (payload, name) in cases {
        match response_err(payload.clone(), 226) {
            DecodeError::Protobuf { msg, .. } => assert_eq!(msg, name, "{}", hex(&payload)),
            other => panic!("{name}: {other:?}"),
        }
    }
    match request_err(proto(71, &[0x12, 0x09, b'a']), 226) {
        DecodeError::Protobuf { msg, .. } => assert_eq!(msg, "StartApi"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_ids_are_values_not_errors() {
    assert_eq!(
        Response::decode_payload(text("3", &[b"7", b"Filled"]), 176),
        Ok(Response::Unknown {
            id: 3,
            form: Form::Text,
            payload: Bytes::from_static(b"7\x00Filled\x00"),
        })
    );
    assert_eq!(
        Response::decode_payload(proto(98, &[0xff, 0xff]), 226),
        Ok(Response::Unknown {
            id: 98,
            form: Form::Protobuf,
            payload: Bytes::from_static(&[0xff, 0xff]),
        })
    );
    assert_eq!(
        Request::decode_payload(Bytes::from_static(&[0, 0, 0, 6, b'1', 0]), 226),
        Ok(Request::Unknown {
            id: 6,
            form: Form::Text,
            payload: Bytes::from_static(b"1\x00"),
        })
    );
}

#[test]
fn framing_errors_are_typed() {
    let mut dec = FrameDecoder::new();
    dec.push(&[0, 0, 0, 0, 0, 0, 0, 1, b'x']);
    assert_eq!(dec.next_frame(), Err(FrameError::Empty));
    assert_eq!(dec.buffered(), 0);

    let mut dec = FrameDecoder::new();
    dec.push(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        dec.next_frame(),
        Err(FrameError::TooLarge {
            len: 0xffff_ffff,
            max: ibconn_core::wire::MAX_FRAME_LEN
        })
    );

    // A wrong prefix is refused at its first wrong byte.
    let mut dec = FrameDecoder::server();
    dec.push(b"AX");
    assert_eq!(
        dec.next_frame(),
        Err(FrameError::BadPrefix {
            found: [b'A', b'X', 0, 0]
        })
    );
    let mut dec = FrameDecoder::server();
    dec.push(b"\x00\x00\x00\x09v100..226");
    assert_eq!(
        dec.next_frame(),
        Err(FrameError::BadPrefix {
            found: [0, 0, 0, 9]
        }),
        "a client that forgets API\\0"
    );
}

#[test]
fn handshake_errors_are_typed() {
    for bad in [
        &b"v226..100"[..],
        b"226..100",
        b"v..",
        b"v1..x",
        b"",
        b"v",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(
                ClientHello::decode(bad),
                Err(HandshakeError::MalformedHello { .. })
            ),
            "{bad:?}"
        );
    }
    for bad in [
        &b"0\x0020260101 12:00:00 UTC\x00"[..],
        b"-5\x00x\x00",
        b"abc\x00x\x00",
        b"",
        b"226",
    ] {
        assert!(
            matches!(
                ServerHello::decode(&Bytes::from_static(bad)),
                Err(HandshakeError::MalformedReply { .. })
            ),
            "{bad:?}"
        );
    }
    // A server too old to send a time still says its version.
    assert_eq!(
        ServerHello::decode(&Bytes::from_static(b"19\x00")),
        Ok(ServerHello {
            server_version: 19,
            connection_time: String::new()
        })
    );
}

#[test]
fn nul_inside_a_text_field_is_refused_and_the_buffer_rolled_back() {
    let m = Request::ReqMatchingSymbols {
        req_id: 1,
        pattern: "AA\0PL".into(),
    };
    let mut out = BytesMut::from(&b"earlier frame"[..]);
    assert_eq!(
        m.encode(176, &mut out),
        Err(EncodeError::NulInField {
            msg: "ReqMatchingSymbols",
            field: "pattern"
        })
    );
    assert_eq!(&out[..], b"earlier frame");
    // Protobuf strings may hold NUL.
    let frame = encode_request(&m, 226).unwrap();
    assert_eq!(Request::decode_payload(frame.slice(4..), 226), Ok(m));

    let m = Response::ManagedAccounts {
        accounts: "DU1\0".into(),
    };
    assert_eq!(
        m.encode(176, &mut BytesMut::new()),
        Err(EncodeError::NulInField {
            msg: "ManagedAccounts",
            field: "accounts"
        })
    );
}

/// The encoder enforces the same cap as the decoder: a body of exactly `MAX_FRAME_LEN` bytes is
/// written (and reads back), one byte more is refused with the buffer rolled back.
#[test]
fn encoded_frames_respect_the_cap() {
    use ibconn_core::wire::MAX_FRAME_LEN;
    // Text ManagedAccounts at v176: "15\0" "1\0" accounts "\0" = accounts + 6 bytes.
    let at_cap = Response::ManagedAccounts {
        accounts: "D".repeat(MAX_FRAME_LEN - 6),
    };
    let frame = encode_response(&at_cap, 176).unwrap();
    assert_eq!(frame.len(), 4 + MAX_FRAME_LEN);
    let mut dec = FrameDecoder::new();
    dec.push(&frame);
    let body = dec.next_frame().unwrap().unwrap();
    assert_eq!(Response::decode_payload(body, 176), Ok(at_cap));

    let over = Response::ManagedAccounts {
        accounts: "D".repeat(MAX_FRAME_LEN - 5),
    };
    let mut out = BytesMut::from(&b"earlier"[..]);
    assert_eq!(
        over.encode(176, &mut out),
        Err(EncodeError::TooLarge {
            msg: "ManagedAccounts",
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
    assert_eq!(&out[..], b"earlier");
    // Protobuf: 4-byte id, tag, 4-byte length varint, then the string.
    let mut out = BytesMut::new();
    assert!(matches!(
        over.encode(226, &mut out),
        Err(EncodeError::TooLarge {
            msg: "ManagedAccounts",
            ..
        })
    ));
    assert!(out.is_empty());
}
