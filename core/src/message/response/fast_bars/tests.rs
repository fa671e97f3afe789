//! The fast path against prost: on valid encodings of random bar lists (unknown fields, fields out
//! of order, repeated scalars, absent fields, non-canonical varints), on mutations of them and on
//! arbitrary bytes, both must succeed or fail together and, on success, give the same bars.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::message::ids::incoming as id;
use crate::message::proto;
use crate::message::response::Response;
use crate::wire::frame::PROTOBUF_ID_OFFSET;
use crate::wire::{version, Frame};

const MSG: &str = "HistoricalData";

/// A bar compared bit for bit (raw doubles may be NaN, which `PartialEq` never equates).
type BarBits = (BarTime, [u64; 6], i32);

/// A decoded body: request id and bars, bit for bit.
type Decoded = Result<(i32, Vec<BarBits>), Fallback>;

fn bits(b: &Bar) -> BarBits {
    let f = [b.open, b.high, b.low, b.close, b.volume, b.wap].map(f64::to_bits);
    (b.date.clone(), f, b.count)
}

/// The fast path under test.
fn fast(body: &[u8]) -> Decoded {
    historical_data(body, 0, MSG).map(|(r, bars)| (r, bars.iter().map(bits).collect()))
}

/// prost's decoding and the `Bar::from_proto` conversion, as the codec did before the fast path.
fn reference(body: &[u8]) -> Decoded {
    let p = proto::HistoricalData::decode(body).map_err(|_| Fallback)?;
    let bars = p
        .historical_data_bars
        .into_iter()
        .map(|b| Bar::from_proto(b, MSG).map(|b| bits(&b)))
        .collect::<Result<_, _>>()
        .map_err(|_| Fallback)?;
    Ok((p.req_id.unwrap_or(0), bars))
}

/// The public decoder (fast path, prost fallback) against the prost-only decoder, errors included.
fn same_through_the_codec(body: &[u8]) -> Result<(), TestCaseError> {
    let mut payload = BytesMut::new();
    payload.put_i32(id::HISTORICAL_DATA + PROTOBUF_ID_OFFSET);
    payload.put_slice(body);
    let frame = Frame::parse(payload.freeze(), version::MAX_SUPPORTED).unwrap();
    let got = Response::decode(&frame, version::MAX_SUPPORTED);
    let want = Response::historical_data_prost(body);
    // Debug output compares NaN payload-insensitively but equal values equal; good enough here
    // since the bar-level comparison above is bitwise.
    prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
    Ok(())
}

/// Fast path, prost and the public decoder all agree on `body`.
fn check(body: &[u8]) -> Result<(), TestCaseError> {
    let (f, r) = (fast(body), reference(body));
    prop_assert_eq!(&f, &r, "body {:02x?}", body);
    same_through_the_codec(body)
}

// ---- a tiny protobuf writer for the generated encodings ----

/// A varint, padded with `pad` redundant continuation bytes (still valid: prost accepts up to 10).
fn put_varint(out: &mut Vec<u8>, mut v: u64, pad: u8) {
    let mut bytes = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            bytes.push(b);
            break;
        }
        bytes.push(b | 0x80);
    }
    for _ in 0..pad {
        if bytes.len() >= 10 {
            break;
        }
        if let Some(last) = bytes.last_mut() {
            *last |= 0x80;
        }
        bytes.push(0);
    }
    out.extend_from_slice(&bytes);
}

/// One field, as it will be written: a key (with padding) and a payload by wire type.
#[derive(Debug, Clone)]
enum Field {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Bytes(u32, Vec<u8>),
    /// A group: its tag and the fields inside.
    Group(u32, Vec<Field>),
}

/// Append one field (keys and lengths padded by `pad`).
fn put_field(out: &mut Vec<u8>, f: &Field, pad: u8) {
    let key = |out: &mut Vec<u8>, tag: u32, wt: u32| put_varint(out, u64::from(key(tag, wt)), pad);
    match f {
        Field::Varint(t, v) => {
            key(out, *t, VARINT);
            put_varint(out, *v, pad);
        }
        Field::Fixed64(t, v) => {
            key(out, *t, FIXED64);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Field::Fixed32(t, v) => {
            key(out, *t, FIXED32);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Field::Bytes(t, b) => {
            key(out, *t, LEN);
            put_varint(out, b.len() as u64, pad);
            out.extend_from_slice(b);
        }
        Field::Group(t, inner) => {
            key(out, *t, START_GROUP);
            for i in inner {
                put_field(out, i, pad);
            }
            key(out, *t, END_GROUP);
        }
    }
}

/// A message body of `fields` in order.
fn encode(fields: &[Field], pad: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        put_field(&mut out, f, pad);
    }
    out
}

// ---- strategies ----

/// Bar times: epoch seconds, days, IB's text form, anything, non-UTF-8.
fn date() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0i64..2_000_000_000).prop_map(|t| t.to_string().into_bytes()),
        (19_000_101u32..21_001_231).prop_map(|d| d.to_string().into_bytes()),
        Just(b"20231019 16:11:48 America/New_York".to_vec()),
        "[0-9 :/A-Za-z-]{0,24}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

/// Decimal strings: plain, IB's sentinels, exponents, junk, non-UTF-8.
fn decimal_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u32..10_000_000).prop_map(|v| v.to_string().into_bytes()),
        any::<f64>().prop_map(|v| v.to_string().into_bytes()),
        Just(b"2147483647".to_vec()),
        Just(b"9223372036854775807".to_vec()),
        Just(b"Infinity".to_vec()),
        Just(Vec::new()),
        "[-+0-9.eE]{0,12}".prop_map(String::into_bytes),
        "[a-z]{1,4}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..6),
    ]
}

/// A value for a varint field: small, near the i32 limits, or anything.
fn varint_value() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..2000, Just(u64::MAX), Just(1 << 31), any::<u64>()]
}

/// An unknown field (tag ≥ `min_tag`) of any wire type, groups nested up to three deep.
fn unknown_field(min_tag: u32) -> impl Strategy<Value = Field> {
    let tag = prop_oneof![min_tag..min_tag + 8, min_tag..(1 << 29) - 1];
    let leaf = (
        tag,
        0u8..4,
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(t, kind, v, b)| match kind {
            0 => Field::Varint(t, v),
            1 => Field::Fixed64(t, v),
            2 => Field::Fixed32(t, v as u32),
            _ => Field::Bytes(t, b),
        });
    leaf.prop_recursive(3, 12, 4, move |inner| {
        // Fields inside a group may use any tag, even the message's own.
        ((1u32..(1 << 29) - 1), prop::collection::vec(inner, 0..4))
            .prop_map(|(t, fs)| Field::Group(t, fs))
    })
}

/// One bar's fields: each known field zero to three times, some unknown ones, shuffled.
fn bar_fields() -> impl Strategy<Value = Vec<Field>> {
    let many = |s: BoxedStrategy<Field>| prop::collection::vec(s, 0..3);
    let date = date().prop_map(|d| Field::Bytes(1, d)).boxed();
    let doubles = (2u32..=5, any::<f64>())
        .prop_map(|(t, v)| Field::Fixed64(t, v.to_bits()))
        .boxed();
    let decimals = (6u32..=7, decimal_text())
        .prop_map(|(t, s)| Field::Bytes(t, s))
        .boxed();
    let count = varint_value().prop_map(|v| Field::Varint(8, v)).boxed();
    (
        prop::collection::vec(date, 0..3).prop_map(|mut d| {
            // Most bars carry a date (else every case fails the same way).
            if d.is_empty() {
                d.push(Field::Bytes(1, b"1767200000".to_vec()));
            }
            d
        }),
        prop::collection::vec(doubles, 0..6),
        many(decimals),
        many(count),
        prop::collection::vec(unknown_field(9), 0..2),
    )
        .prop_map(|(a, b, c, d, e)| [a, b, c, d, e].concat())
        .prop_shuffle()
}

/// A `HistoricalData` body: request ids, bars and unknown fields in any order; key and length
/// varints padded (non-canonical) by the second value.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let pads = prop_oneof![4 => Just(0u8), 1 => 0u8..6];
    (
        prop::collection::vec(varint_value().prop_map(|v| Field::Varint(1, v)), 0..3),
        prop::collection::vec(bar_fields(), 0..6),
        prop::collection::vec(unknown_field(3), 0..3),
        pads.clone(),
        pads,
    )
        .prop_flat_map(|(ids, bars, unknown, outer_pad, bar_pad)| {
            let bars = bars
                .iter()
                .map(|fs| Field::Bytes(2, encode(fs, bar_pad)))
                .collect::<Vec<_>>();
            Just([ids, bars, unknown].concat())
                .prop_shuffle()
                .prop_map(move |fs| encode(&fs, outer_pad))
        })
}

/// A valid body with a few bytes overwritten, inserted, removed or cut off.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        body(),
        prop::collection::vec((0u8..4, any::<prop::sample::Index>(), any::<u8>()), 1..4),
    )
        .prop_map(|(mut b, edits)| {
            for (kind, at, byte) in edits {
                let i = at.index(b.len() + 1);
                match kind {
                    0 if i < b.len() => b[i] = byte,
                    1 => b.insert(i, byte),
                    2 if i < b.len() => {
                        b.remove(i);
                    }
                    _ => b.truncate(i),
                }
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn agrees_with_prost_on_valid_encodings(b in body()) {
        check(&b)?;
    }

    #[test]
    fn agrees_with_prost_on_mutated_encodings(b in mutated()) {
        check(&b)?;
    }

    #[test]
    fn agrees_with_prost_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..96)) {
        check(&b)?;
    }
}

/// Groups `depth` deep around one varint, at the top level and inside a bar: prost's recursion
/// limit (100, one level spent on the bar message) decides, and the fast path follows it.
#[test]
fn group_nesting_follows_the_recursion_limit() {
    let nest = |depth: usize| {
        let mut f = Field::Varint(20, 1);
        for _ in 0..depth {
            f = Field::Group(21, vec![f]);
        }
        f
    };
    for depth in [0, 1, 97, 98, 99, 100, 101] {
        let top = encode(&[nest(depth)], 0);
        let bar = encode(
            &[Field::Bytes(
                2,
                encode(&[Field::Bytes(1, b"1".to_vec()), nest(depth)], 0),
            )],
            0,
        );
        for b in [top, bar] {
            assert_eq!(fast(&b), reference(&b), "depth {depth}");
            same_through_the_codec(&b).unwrap();
        }
    }
    // And the limit is really reached somewhere in that range.
    assert!(reference(&encode(&[nest(101)], 0)).is_err());
    assert!(reference(&encode(&[nest(98)], 0)).is_ok());
}

#[test]
fn hand_picked_edge_cases_agree() {
    let cases: &[&[u8]] = &[
        &[],
        // A ten-byte varint whose last byte is 1 (fits) and 2 (overflows), as req_id.
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ],
        &[
            0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ],
        // A key over 32 bits; tag 0; wire types 6 and 7; a lone end-group.
        &[0x80, 0x80, 0x80, 0x80, 0x10, 0x00],
        &[0x00, 0x00],
        &[0x0e],
        &[0x0f],
        &[0x1c],
        // A bar whose double runs past the bar's own length (prost: delimited length exceeded).
        &[
            0x12, 0x05, 0x0a, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ],
        // A bar without a date; a bar with an empty date.
        &[0x12, 0x00],
        &[0x12, 0x02, 0x0a, 0x00],
        // Non-UTF-8 date, later replaced by a valid one (prost still rejects).
        &[0x12, 0x06, 0x0a, 0x01, 0xff, 0x0a, 0x01, 0x31],
        // A bad decimal volume, then a good one (last wins).
        &[
            0x12, 0x09, 0x0a, 0x01, 0x31, 0x32, 0x01, 0x78, 0x32, 0x01, 0x35,
        ],
        // req_id in the wrong wire type; bars in the wrong wire type.
        &[0x0a, 0x00],
        &[0x10, 0x00],
    ];
    for b in cases {
        assert_eq!(fast(b), reference(b), "{b:02x?}");
        same_through_the_codec(b).unwrap();
    }
}

#[test]
fn the_codecs_own_frames_take_the_fast_path() {
    let bars: Vec<Bar> = (0..50)
        .map(|i| Bar {
            date: BarTime::Epoch(1_767_200_000 + i * 60),
            open: 180.25,
            high: 181.0,
            low: 179.5,
            close: 180.75,
            volume: 1234.0,
            wap: 180.5,
            count: 7,
        })
        .collect();
    let reply = Response::HistoricalData {
        req_id: 9,
        start: String::new(),
        end: String::new(),
        bars: bars.clone(),
    };
    let mut out = BytesMut::new();
    reply.encode(version::MAX_SUPPORTED, &mut out).unwrap();
    let frame = Frame::parse(Bytes::from(out.split_off(4)), version::MAX_SUPPORTED).unwrap();
    let (req_id, got) = historical_data(&frame.body, bars.len(), MSG).unwrap();
    assert_eq!((req_id, got), (9, bars));
}
