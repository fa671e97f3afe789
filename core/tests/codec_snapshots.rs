//! Golden frames: every request and response, encoded at the server versions where its layout
//! differs, as readable insta snapshots; ibapi 5.5.0's captured bytes
//! (docs/ib-facts.md#captured-bytes) checked exactly; IB's per-message form thresholds; messages
//! without a form at a version.
//!
//! Snapshot layout, one section per server version:
//!
//! ```text
//! --- v226 protobuf
//! 00000006 0000010f  # id 71+200          length prefix, binary id header
//! 0864                                    protobuf body, hex
//!   1: 100                                the body's wire fields (tag: value)
//! --- v176 text
//! 0000000b 373100  # id 71                length prefix, text id field
//! 2·100··                                 fields, NUL shown as ·
//! ```
//!
//! Regenerate after an intended change with `INSTA_UPDATE=always cargo test -p ibconn-core --test
//! codec_snapshots` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod codec_fixtures;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use codec_fixtures::{
    encode_request, encode_response, hex, request_cases, request_thresholds, response_cases,
    response_thresholds, unhex, Case, REQ,
};
use ibconn_core::message::{HeadTimestampRequest, Request, Response};
use ibconn_core::wire::{ClientHello, EncodeError, Form, ServerHello, VersionRange, MAX_FRAME_LEN};

// ---------------------------------------------------------------------------------------------
// Rendering

/// One frame as the snapshot shows it (see the module docs).
fn render_frame(frame: &[u8], server_version: i32) -> String {
    let (prefix, payload) = frame.split_at(4);
    let announced = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
    assert_eq!(
        announced,
        payload.len(),
        "length prefix must match the body"
    );
    let mut out = String::new();
    if server_version >= codec_fixtures::PROTOBUF {
        let (id, body) = payload.split_at(4);
        let raw = i32::from_be_bytes(id.try_into().unwrap());
        if raw > 200 {
            writeln!(out, "{} {}  # id {}+200", hex(prefix), hex(id), raw - 200).unwrap();
            out.push_str(&render_protobuf(body));
        } else {
            writeln!(out, "{} {}  # id {raw}", hex(prefix), hex(id)).unwrap();
            writeln!(out, "{}", render_text(body)).unwrap();
        }
    } else {
        let end = payload.iter().position(|&b| b == 0).expect("text id field");
        let id = std::str::from_utf8(&payload[..end]).unwrap();
        writeln!(out, "{} {}  # id {id}", hex(prefix), hex(&payload[..=end])).unwrap();
        writeln!(out, "{}", render_text(&payload[end + 1..])).unwrap();
    }
    out
}

/// Text fields with NUL shown as `·`, printable ASCII as is, anything else as `\xNN`.
fn render_text(fields: &[u8]) -> String {
    if fields.is_empty() {
        return "(no fields)".into();
    }
    fields
        .iter()
        .map(|&b| match b {
            0 => "·".to_owned(),
            b' '..=b'~' => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

/// Protobuf body as hex (32 bytes a line), then its wire fields.
fn render_protobuf(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)\n".into();
    }
    let mut out = String::new();
    for chunk in body.chunks(32) {
        writeln!(out, "{}", hex(chunk)).unwrap();
    }
    match wire_fields(body, 1) {
        Some(lines) => lines.iter().for_each(|l| writeln!(out, "{l}").unwrap()),
        None => writeln!(out, "  (not a protobuf message)").unwrap(),
    }
    out
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A minimal protobuf wire-format reader for display: `tag: value` lines, sub-messages indented.
/// A length-delimited field is shown as a string when it is printable UTF-8, else as a nested
/// message when it parses as one, else as hex.
fn wire_fields(buf: &[u8], depth: usize) -> Option<Vec<String>> {
    let pad = "  ".repeat(depth);
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let tag = key >> 3;
        if tag == 0 {
            return None;
        }
        match key & 7 {
            0 => {
                let v = varint(buf, &mut pos)?;
                lines.push(format!("{pad}{tag}: {}", v as i64));
            }
            1 => {
                let bytes: [u8; 8] = buf.get(pos..pos + 8)?.try_into().ok()?;
                pos += 8;
                lines.push(format!("{pad}{tag}: {:?}", f64::from_le_bytes(bytes)));
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let body = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                let text = std::str::from_utf8(body)
                    .ok()
                    .filter(|s| !s.chars().any(char::is_control));
                match (text, wire_fields(body, depth + 1)) {
                    (Some(s), _) => lines.push(format!("{pad}{tag}: {s:?}")),
                    (None, Some(inner)) => {
                        lines.push(format!("{pad}{tag} {{"));
                        lines.extend(inner);
                        lines.push(format!("{pad}}}"));
                    }
                    (None, None) => lines.push(format!("{pad}{tag}: 0x{}", hex(body))),
                }
            }
            5 => {
                let bytes: [u8; 4] = buf.get(pos..pos + 4)?.try_into().ok()?;
                pos += 4;
                lines.push(format!("{pad}{tag}: fixed32 {}", hex(&bytes)));
            }
            _ => return None,
        }
    }
    Some(lines)
}

fn form_name(form: Form) -> &'static str {
    match form {
        Form::Text => "text",
        Form::Protobuf => "protobuf",
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

/// Encode every fixture at its versions, check the frame is canonical (decode → re-encode gives
/// the same bytes), and snapshot the rendering.
fn snapshot_cases<M: std::fmt::Debug>(
    direction: &str,
    cases: Vec<Case<M>>,
    form: impl Fn(&M, i32) -> Form,
    encode: impl Fn(&M, i32) -> Bytes,
    reencode_decoded: impl Fn(Bytes, i32) -> Bytes,
) {
    for case in cases {
        let mut text = String::new();
        for &sv in &case.versions {
            let frame = encode(&case.msg, sv);
            assert!(frame.len() - 4 <= MAX_FRAME_LEN);
            let again = reencode_decoded(frame.slice(4..), sv);
            assert_eq!(
                hex(&again),
                hex(&frame),
                "{direction} {}: decode → encode at v{sv} is not byte-identical",
                case.name
            );
            writeln!(text, "--- v{sv} {}", form_name(form(&case.msg, sv))).unwrap();
            text.push_str(&render_frame(&frame, sv));
        }
        insta::with_settings!({ description => format!("{:?}", case.msg), omit_expression => true }, {
            insta::assert_snapshot!(format!("{direction}_{}", case.name), text);
        });
    }
}

#[test]
fn request_frames() {
    snapshot_cases(
        "request",
        request_cases(),
        |m, sv| m.form(sv).unwrap(),
        |m, sv| encode_request(m, sv).unwrap(),
        |body, sv| encode_request(&Request::decode_payload(body, sv).unwrap(), sv).unwrap(),
    );
}

#[test]
fn response_frames() {
    snapshot_cases(
        "response",
        response_cases(),
        |m, sv| m.form(sv).unwrap(),
        |m, sv| encode_response(m, sv).unwrap(),
        |body, sv| encode_response(&Response::decode_payload(body, sv).unwrap(), sv).unwrap(),
    );
}

/// The fixtures cover every variant, each in every form it has.
#[test]
fn every_variant_is_snapshotted_in_each_of_its_forms() {
    let mut seen = HashSet::new();
    for c in request_cases() {
        for &sv in &c.versions {
            seen.insert((c.msg.name(), c.msg.form(sv).unwrap()));
        }
    }
    for name in codec_fixtures::REQUEST_NAMES {
        assert!(seen.contains(&(name, Form::Protobuf)), "{name} protobuf");
        if name != "CancelContractData" {
            assert!(seen.contains(&(name, Form::Text)), "{name} text");
        }
    }
    let mut seen = HashSet::new();
    for c in response_cases() {
        for &sv in &c.versions {
            seen.insert((c.msg.name(), c.msg.form(sv).unwrap()));
        }
    }
    for name in codec_fixtures::RESPONSE_NAMES {
        assert!(seen.contains(&(name, Form::Protobuf)), "{name} protobuf");
        assert!(seen.contains(&(name, Form::Text)), "{name} text");
    }
}

// ---------------------------------------------------------------------------------------------
// Exact captures

const AAPL: &str = "1217 12044141504c 1a0353544b 4205534d415254 5203555344";

fn assert_frame(what: &str, frame: &Bytes, expected: &str) {
    assert_eq!(hex(frame), hex(&unhex(expected)), "{what}");
}

/// ibapi 5.5.0's bytes as captured by a mock gateway (docs/ib-facts.md#captured-bytes; lengths
/// and request ids of the captures that elide them filled in).
#[test]
fn requests_match_ibapi_captures_byte_for_byte() {
    let req = |m: Request| encode_request(&m, 226).unwrap();
    let cases = [
        (
            "START_API client 100",
            req(Request::StartApi {
                client_id: 100,
                optional_capabilities: String::new(),
            }),
            "00000006 0000010f 0864".to_owned(),
        ),
        (
            "reqCurrentTime",
            req(Request::ReqCurrentTime),
            "00000004 000000f9".into(),
        ),
        (
            "reqCurrentTimeInMillis",
            req(Request::ReqCurrentTimeInMillis),
            "00000004 00000131".into(),
        ),
        (
            "reqIds",
            req(Request::ReqIds { num_ids: 0 }),
            "00000006 000000d0 0800".into(),
        ),
        (
            "reqManagedAccts",
            req(Request::ReqManagedAccts),
            "00000004 000000d9".into(),
        ),
        (
            "reqHistoricalData hourly",
            req(Request::ReqHistoricalData(codec_fixtures::hourly_request())),
            format!(
                "00000053 000000dc 0880dea0cb05 {AAPL} 1a15\"20251231 21:00:00 UTC\" \
                 2206\"1 hour\" 2a03\"2 D\" 3001 3a06\"TRADES\" 4002"
            ),
        ),
        (
            "reqHistoricalData daily",
            req(Request::ReqHistoricalData(codec_fixtures::daily_request())),
            format!(
                "0000003b 000000dc 0881dea0cb05 {AAPL} 2205\"1 day\" 2a03\"1 M\" \
                 3a08\"MIDPOINT\" 4002"
            ),
        ),
        (
            "historical stream()",
            req(Request::ReqHistoricalData(codec_fixtures::stream_request())),
            format!(
                "0000003e 000000dc 0880dea0cb05 {AAPL} 2206\"5 mins\" 2a03\"1 D\" 3001 \
                 3a06\"TRADES\" 4002 4801"
            ),
        ),
        (
            "cancelHistoricalData",
            req(Request::CancelHistoricalData { req_id: REQ }),
            "0000000a 000000e1 0880dea0cb05".into(),
        ),
        (
            "reqHeadTimestamp",
            req(Request::ReqHeadTimestamp(HeadTimestampRequest {
                req_id: REQ + 2,
                contract: codec_fixtures::aapl(),
                use_rth: true,
                what_to_show: "TRADES".into(),
                format_date: 2,
            })),
            format!("0000002f 0000011f 0882dea0cb05 {AAPL} 1801 2206\"TRADES\" 2802"),
        ),
        (
            "reqContractDetails",
            req(Request::ReqContractDetails {
                req_id: REQ + 3,
                contract: codec_fixtures::aapl(),
            }),
            format!("00000023 000000d1 0883dea0cb05 {AAPL}"),
        ),
        (
            "cancelContractData",
            req(Request::CancelContractData { req_id: REQ }),
            "0000000a 00000132 0880dea0cb05".into(),
        ),
        (
            "reqMatchingSymbols",
            req(Request::ReqMatchingSymbols {
                req_id: REQ + 4,
                pattern: "AAP".into(),
            }),
            "0000000f 00000119 0884dea0cb05 1203\"AAP\"".into(),
        ),
    ];
    for (what, frame, expected) in cases {
        assert_frame(what, &frame, &expected);
    }
}

/// The replies known to work with ibapi 5.5.0 (docs/ib-facts.md#captured-bytes).
#[test]
fn responses_match_protocol_examples_byte_for_byte() {
    let resp = |m: Response| encode_response(&m, 226).unwrap();
    assert_frame(
        "NextValidId 42",
        &resp(Response::NextValidId { order_id: 42 }),
        "00000006 000000d1 082a",
    );
    assert_frame(
        "NextValidId 0 is present, not absent",
        &resp(Response::NextValidId { order_id: 0 }),
        "00000006 000000d1 0800",
    );
    assert_frame(
        "ManagedAccounts",
        &resp(Response::ManagedAccounts {
            accounts: "DU1234567,".into(),
        }),
        "00000010 000000d7 0a0a\"DU1234567,\"",
    );
    assert_frame(
        "CurrentTime",
        &resp(Response::CurrentTime {
            time: 1_767_268_800,
        }),
        "0000000a 000000f9 08c0c3d9ca06",
    );
    assert_frame(
        "Error 162",
        &resp(Response::Error(ibconn_core::message::ErrorMessage {
            req_id: REQ,
            code: 162,
            message: "x".into(),
            advanced_order_reject_json: String::new(),
            error_time_ms: Some(1_767_268_800_000),
        })),
        "00000017 000000cc 0880dea0cb05 1080acb7cbb733 18a201 2201\"x\"",
    );
    assert_frame(
        "Error id -1 is a 10-byte varint",
        &resp(Response::Error(ibconn_core::message::ErrorMessage {
            req_id: -1,
            code: 2104,
            ..Default::default()
        })),
        "00000012 000000cc 08ffffffffffffffffff01 18b810",
    );

    let mut out = BytesMut::new();
    ClientHello::new(VersionRange::new(213, 226)).encode(&mut out);
    assert_frame(
        "client hello",
        &out.freeze(),
        "41504900 00000009 \"v213..226\"",
    );

    let mut out = BytesMut::new();
    ServerHello {
        server_version: 226,
        connection_time: "20260101 12:00:00 America/New_York".into(),
    }
    .encode(&mut out)
    .unwrap();
    assert_frame(
        "server hello",
        &out.freeze(),
        "00000027 \"226\" 00 \"20260101 12:00:00 America/New_York\" 00",
    );
}

// ---------------------------------------------------------------------------------------------
// Form thresholds

/// Above the version where a message exists, its form switches from text to protobuf exactly at
/// IB's per-message threshold (docs/ib-facts.md#server-version-thresholds).
#[test]
fn form_switches_to_protobuf_at_ibs_threshold() {
    for c in request_cases() {
        let Some((proto_from, exists_from)) = request_thresholds(c.msg.name()) else {
            continue;
        };
        for sv in exists_from..=codec_fixtures::MAX_VERSION {
            let expected = if sv >= proto_from {
                Form::Protobuf
            } else {
                Form::Text
            };
            assert_eq!(c.msg.form(sv), Ok(expected), "{} at v{sv}", c.msg.name());
        }
    }
    for c in response_cases() {
        let Some((proto_from, exists_from)) = response_thresholds(c.msg.name()) else {
            continue;
        };
        for sv in exists_from..=codec_fixtures::MAX_VERSION {
            let expected = if sv >= proto_from {
                Form::Protobuf
            } else {
                Form::Text
            };
            assert_eq!(c.msg.form(sv), Ok(expected), "{} at v{sv}", c.msg.name());
        }
    }
}

/// `Unknown` keeps the form it arrived in (protobuf frames exist from 201).
#[test]
fn unknown_keeps_the_form_it_arrived_in() {
    let m = |form| Request::Unknown {
        id: 6,
        form,
        payload: Bytes::new(),
    };
    for sv in [100, 200, 201, 226] {
        assert_eq!(m(Form::Text).form(sv), Ok(Form::Text), "v{sv}");
    }
    for sv in [201, 226] {
        assert_eq!(m(Form::Protobuf).form(sv), Ok(Form::Protobuf), "v{sv}");
    }
}

/// Messages that do not exist below a version refuse to encode there, and leave the output
/// buffer untouched: CancelContractData (protobuf only, 215+), the millisecond clock (197+),
/// HistoricalDataEnd (196+).
#[test]
fn messages_without_a_form_at_a_version_are_unsupported() {
    let requests = [
        (Request::CancelContractData { req_id: 1 }, 215),
        (Request::ReqCurrentTimeInMillis, 197),
    ];
    for (m, min) in requests {
        for sv in [100, 150, min - 1] {
            let mut out = BytesMut::from(&b"kept"[..]);
            assert_eq!(
                m.encode(sv, &mut out),
                Err(EncodeError::Unsupported {
                    msg: m.name(),
                    min,
                    server_version: sv
                }),
                "{} at v{sv}",
                m.name()
            );
            assert_eq!(&out[..], b"kept");
            assert!(m.form(sv).is_err());
        }
        assert!(m.form(min).is_ok());
    }
    let responses = [
        (Response::CurrentTimeInMillis { millis: 1 }, 197),
        (
            Response::HistoricalDataEnd {
                req_id: 1,
                start: String::new(),
                end: String::new(),
            },
            196,
        ),
    ];
    for (m, min) in responses {
        for sv in [100, 150, min - 1] {
            let mut out = BytesMut::from(&b"kept"[..]);
            assert_eq!(
                m.encode(sv, &mut out),
                Err(EncodeError::Unsupported {
                    msg: m.name(),
                    min,
                    server_version: sv
                }),
                "{} at v{sv}",
                m.name()
            );
            assert_eq!(&out[..], b"kept");
        }
        assert!(m.form(min).is_ok());
    }
}

/// `Unknown` relays a message verbatim; encoding one must either refuse or produce a frame that a
/// peer at the same version reads back as the same message. Each case is a way the id or form can
/// be unrepresentable on the wire.
#[test]
fn unknown_messages_never_encode_to_frames_that_read_back_differently() {
    let unknown = |id, form| Response::Unknown {
        id,
        form,
        payload: Bytes::from_static(b"1\x00"),
    };
    let cases = [
        (
            unknown(1, Form::Protobuf),
            176,
            "a protobuf frame below 201, where the id is a text field",
        ),
        (
            unknown(0, Form::Protobuf),
            226,
            "protobuf id 0 travels as 200, which is a text id",
        ),
        (
            unknown(250, Form::Text),
            226,
            "text id 250 travels as a binary id > 200, which means protobuf",
        ),
        (
            unknown(i32::MAX, Form::Text),
            176,
            "text id i32::MAX is written as an empty (unset) field",
        ),
        (
            unknown(i32::MAX - 100, Form::Protobuf),
            226,
            "protobuf id + 200 overflows i32",
        ),
    ];
    let mut failures = Vec::new();
    for (m, sv, why) in cases {
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            let mut out = BytesMut::new();
            m.encode(sv, &mut out).map(|()| out.freeze())
        }));
        match encoded {
            Err(_) => failures.push(format!("{m:?} at v{sv} ({why}): encode panicked")),
            Ok(Err(_)) => {} // refusing is fine
            Ok(Ok(frame)) => match Response::decode_payload(frame.slice(4..), sv) {
                Ok(back) if back == m => {}
                other => failures.push(format!(
                    "{m:?} at v{sv} ({why}): encoded {} reads back as {other:?}",
                    hex(&frame)
                )),
            },
        }
    }
    // Requests share the frame encoder; one case shows it.
    let m = Request::Unknown {
        id: 6,
        form: Form::Protobuf,
        payload: Bytes::new(),
    };
    if let Ok(frame) = encode_request(&m, 100) {
        let back = Request::decode_payload(frame.slice(4..), 100);
        if back.as_ref() != Ok(&m) {
            failures.push(format!(
                "{m:?} at v100: encoded {} reads back as {back:?}",
                hex(&frame)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
