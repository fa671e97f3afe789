//! The hot path of the protobuf form: `HistoricalData` (17) decoded straight from the wire bytes
//! into [`Bar`]s, without prost's intermediate structs (three `String`s per bar).
//!
//! A small hand-written reader — varints, keys, length-delimited payloads, fixed64 doubles, and
//! unknown fields skipped by wire type exactly as prost 0.14 skips them (groups matched by tag,
//! the same recursion limit) — accepts exactly the bytes prost accepts and yields the same values:
//! the last occurrence of a scalar field wins, every occurrence of a string must be UTF-8, an
//! absent scalar takes its default. Bar times and decimal strings are parsed in place with the
//! text decoder's numeric fast paths ([`BarTime::parse`], `parse_decimal_fast`).
//!
//! Anything the fast path refuses ([`Fallback`]) — malformed bytes, an absent date, a bad decimal
//! — is decoded again by the prost path, which reports the error exactly as before; the property
//! tests in this file check that the two agree on every input.

use super::{Bar, BarTime};
use crate::message::convert::decimal;

/// The fast path declined: the bytes are not a `HistoricalData` prost would accept, or a bar
/// would not convert. The caller decodes them with prost, which names the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fallback;

/// prost's `RECURSION_LIMIT`: how deep unknown groups may nest below the top level.
const RECURSION_LIMIT: u32 = 100;

/// Wire type (the low three bits of a key): base-128 varint.
const VARINT: u32 = 0;
/// Wire type: eight little-endian bytes.
const FIXED64: u32 = 1;
/// Wire type: length varint, then that many bytes.
const LEN: u32 = 2;
/// Wire type: start of a (deprecated) group.
const START_GROUP: u32 = 3;
/// Wire type: end of a group.
const END_GROUP: u32 = 4;
/// Wire type: four little-endian bytes.
const FIXED32: u32 = 5;

/// A key: `(tag << 3) | wire_type`.
const fn key(tag: u32, wire_type: u32) -> u32 {
    (tag << 3) | wire_type
}

/// Decode a `HistoricalData` body into its request id (0 when absent) and bars. `capacity` is the
/// element count [`check_count`](crate::message::repeated::check_count) found, already held to
/// the repeated-field cap, so the vector is allocated once and never past the cap.
pub(super) fn historical_data(
    body: &[u8],
    capacity: usize,
    msg: &'static str,
) -> Result<(i32, Vec<Bar>), Fallback> {
    let mut buf = body;
    let mut req_id = 0i32;
    let mut bars = Vec::with_capacity(capacity);
    while !buf.is_empty() {
        let (tag, wire_type) = read_key(&mut buf)?;
        match key(tag, wire_type) {
            // proto3 `int32`: the varint truncated to 32 bits, as prost reads it.
            k if k == key(1, VARINT) => req_id = varint(&mut buf)? as i32,
            k if k == key(2, LEN) => {
                let payload = length_delimited(&mut buf)?;
                bars.push(bar(payload, msg)?);
            }
            // A known field in the wrong wire type is an error in prost, not an unknown field.
            _ if tag <= 2 => return Err(Fallback),
            _ => skip(wire_type, tag, &mut buf, RECURSION_LIMIT)?,
        }
    }
    Ok((req_id, bars))
}

/// One `HistoricalDataBar` message (its payload), converted as `Bar::from_proto` converts it.
fn bar(mut buf: &[u8], msg: &'static str) -> Result<Bar, Fallback> {
    let mut date: Option<&str> = None;
    let (mut open, mut high, mut low, mut close) = (0.0, 0.0, 0.0, 0.0);
    let (mut volume, mut wap): (Option<&str>, Option<&str>) = (None, None);
    let mut count = -1i32;
    while !buf.is_empty() {
        let (tag, wire_type) = read_key(&mut buf)?;
        match key(tag, wire_type) {
            k if k == key(1, LEN) => date = Some(string(&mut buf)?),
            k if k == key(2, FIXED64) => open = double(&mut buf)?,
            k if k == key(3, FIXED64) => high = double(&mut buf)?,
            k if k == key(4, FIXED64) => low = double(&mut buf)?,
            k if k == key(5, FIXED64) => close = double(&mut buf)?,
            k if k == key(6, LEN) => volume = Some(string(&mut buf)?),
            k if k == key(7, LEN) => wap = Some(string(&mut buf)?),
            k if k == key(8, VARINT) => count = varint(&mut buf)? as i32,
            _ if tag <= 8 => return Err(Fallback),
            // prost enters one recursion level for the bar message itself.
            _ => skip(wire_type, tag, &mut buf, RECURSION_LIMIT - 1)?,
        }
    }
    Ok(Bar {
        date: BarTime::parse(date.ok_or(Fallback)?),
        open,
        high,
        low,
        close,
        volume: decimal(volume, 0.0, msg, "volume").map_err(|_| Fallback)?,
        wap: decimal(wap, 0.0, msg, "wap").map_err(|_| Fallback)?,
        count,
    })
}

/// A base-128 varint as prost reads it: at most ten bytes, the tenth 0 or 1 (no overflow).
#[inline]
fn varint(buf: &mut &[u8]) -> Result<u64, Fallback> {
    let bytes = *buf;
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if i == 9 && b > 1 {
                return Err(Fallback);
            }
            *buf = bytes.get(i + 1..).ok_or(Fallback)?;
            return Ok(value);
        }
    }
    Err(Fallback)
}

/// A field key as prost's `decode_key` checks it: fits in 32 bits, wire type 0–5, tag ≥ 1.
#[inline]
fn read_key(buf: &mut &[u8]) -> Result<(u32, u32), Fallback> {
    // The common case, a one-byte key, skips the general varint loop.
    let k = match buf.split_first() {
        Some((&b, rest)) if b < 0x80 => {
            *buf = rest;
            u32::from(b)
        }
        _ => u32::try_from(varint(buf)?).map_err(|_| Fallback)?,
    };
    let (tag, wire_type) = (k >> 3, k & 7);
    if tag == 0 || wire_type > FIXED32 {
        return Err(Fallback);
    }
    Ok((tag, wire_type))
}

/// `n` bytes off the front of `buf`.
#[inline]
fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8], Fallback> {
    let n = usize::try_from(n).map_err(|_| Fallback)?;
    let (head, rest) = buf.split_at_checked(n).ok_or(Fallback)?;
    *buf = rest;
    Ok(head)
}

/// A length-delimited payload (length varint, then that many bytes).
#[inline]
fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Fallback> {
    let len = varint(buf)?;
    take(buf, len)
}

/// A `string` field, borrowed: prost rejects every occurrence that is not UTF-8, even one a later
/// occurrence would replace.
#[inline]
fn string<'a>(buf: &mut &'a [u8]) -> Result<&'a str, Fallback> {
    std::str::from_utf8(length_delimited(buf)?).map_err(|_| Fallback)
}

/// A `double` field: eight little-endian bytes.
#[inline]
fn double(buf: &mut &[u8]) -> Result<f64, Fallback> {
    let (head, rest) = buf.split_first_chunk::<8>().ok_or(Fallback)?;
    *buf = rest;
    Ok(f64::from_le_bytes(*head))
}

/// Skip an unknown field as prost's `skip_field` does, `depth` being prost's recursion budget at
/// this level: groups nest until the budget runs out and must close with their own tag; a lone
/// end-group marker is an error.
fn skip(wire_type: u32, tag: u32, buf: &mut &[u8], depth: u32) -> Result<(), Fallback> {
    if depth == 0 {
        return Err(Fallback);
    }
    let len = match wire_type {
        VARINT => varint(buf).map(|_| 0)?,
        FIXED64 => 8,
        LEN => varint(buf)?,
        START_GROUP => loop {
            let (inner_tag, inner_wire_type) = read_key(buf)?;
            if inner_wire_type == END_GROUP {
                if inner_tag != tag {
                    return Err(Fallback);
                }
                break 0;
            }
            skip(inner_wire_type, inner_tag, buf, depth - 1)?;
        },
        FIXED32 => 4,
        _ => return Err(Fallback),
    };
    take(buf, len).map(drop)
}

#[cfg(test)]
mod tests;
