//! NUL-terminated text fields, as in every pre-protobuf TWS message.
//!
//! "Unset" follows IB (docs/ib-facts.md#wire-format-and-handshake): an empty field reads as
//! `None` (or 0 for the plain getters), `i32::MAX` and `f64::MAX` write as an empty field, and
//! `Infinity` round-trips.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::frame::MAX_REPEATED;

/// IB's `UNSET_INTEGER`.
pub const UNSET_INTEGER: i32 = i32::MAX;
/// IB's `UNSET_DOUBLE`.
pub const UNSET_DOUBLE: f64 = f64::MAX;

/// Reads typed fields from a text message body; errors name the message and field.
#[derive(Debug, Clone)]
pub struct FieldReader<'a> {
    buf: &'a [u8],
    pos: usize,
    msg: &'static str,
    /// Repeated elements this frame may still announce (starts at [`MAX_REPEATED`]).
    items_left: usize,
}

impl<'a> FieldReader<'a> {
    /// A reader over `buf` (the fields after the message id) for message `msg`.
    pub fn new(buf: &'a [u8], msg: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            msg,
            items_left: MAX_REPEATED,
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every field has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Number of whole fields left (counts NULs; used to reject trailing data).
    pub fn remaining_fields(&self) -> usize {
        memchr::memchr_iter(0, &self.buf[self.pos..]).count()
    }

    /// Fail with [`DecodeError::TrailingFields`] unless every field was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingFields {
                msg: self.msg,
                extra: self.remaining_fields().max(1),
            })
        }
    }

    /// The next field's raw bytes.
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let rest = &self.buf[self.pos..];
        // Most fields are a few bytes long: a plain scan beats memchr's set-up cost there.
        let head = &rest[..rest.len().min(16)];
        let end = match head.iter().position(|&b| b == 0) {
            Some(end) => end,
            None => match memchr::memchr(0, &rest[head.len()..]) {
                Some(end) => head.len() + end,
                None => {
                    return Err(DecodeError::MissingField {
                        msg: self.msg,
                        field,
                    })
                }
            },
        };
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    /// The next field as text.
    pub fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let raw = self.bytes(field)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::Utf8 {
            msg: self.msg,
            field,
        })
    }

    /// The next field as an owned `String`.
    pub fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.str(field).map(str::to_owned)
    }

    /// The next field as `i32`; an empty field is 0 (IB's decoder default).
    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(self.opt_i32(field)?.unwrap_or(0))
    }

    /// The next field as `i32`; empty → `None`.
    pub fn opt_i32(&mut self, field: &'static str) -> Result<Option<i32>, DecodeError> {
        let raw = self.bytes(field)?;
        if raw.is_empty() {
            return Ok(None);
        }
        match parse_int(raw).and_then(|v| i32::try_from(v).ok()) {
            Some(v) => Ok(Some(v)),
            None => Err(self.bad(field, raw, "i32")),
        }
    }

    /// The next field as `i64`; an empty field is 0.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let raw = self.bytes(field)?;
        if raw.is_empty() {
            return Ok(0);
        }
        parse_int(raw).ok_or_else(|| self.bad(field, raw, "i64"))
    }

    /// The next field as `f64`; an empty field is 0.0.
    pub fn f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        Ok(self.opt_f64(field)?.unwrap_or(0.0))
    }

    /// The next field as `f64`; empty → `None`. Accepts IB's `Infinity`.
    pub fn opt_f64(&mut self, field: &'static str) -> Result<Option<f64>, DecodeError> {
        // Hot path: a plain decimal parsed in the same pass that finds its NUL.
        let rest = &self.buf[self.pos..];
        if let Some((v, end)) = scan_decimal(rest) {
            if rest.get(end) == Some(&0) {
                self.pos += end + 1;
                return Ok(Some(v));
            }
        }
        let raw = self.bytes(field)?;
        if raw.is_empty() {
            return Ok(None);
        }
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::Utf8 {
            msg: self.msg,
            field,
        })?;
        parse_f64(s).map_err(|()| self.bad(field, raw, "f64"))
    }

    /// The next field as a bool (`"1"`/`"0"`, also `"true"`/`"false"`; empty = false).
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let raw = self.bytes(field)?;
        match raw {
            b"1" | b"true" | b"True" => Ok(true),
            b"0" | b"" | b"false" | b"False" => Ok(false),
            _ => parse_int(raw)
                .map(|v| v != 0)
                .ok_or_else(|| self.bad(field, raw, "bool")),
        }
    }

    /// The next field as a repeat count, checked against what the rest of the frame can hold
    /// (`fields_per_item` fields of at least one byte each) and against what is left of the
    /// frame's [`MAX_REPEATED`] elements, so a hostile count cannot force a large allocation.
    pub fn count(
        &mut self,
        field: &'static str,
        fields_per_item: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.i64(field)?;
        let max = self.remaining_bytes() / fields_per_item.max(1);
        match usize::try_from(n) {
            Ok(n) if n <= max => {
                self.items_left = self.items_left.checked_sub(n).ok_or(DecodeError::TooMany {
                    msg: self.msg,
                    field,
                    max: MAX_REPEATED,
                })?;
                Ok(n)
            }
            _ => Err(DecodeError::BadCount {
                msg: self.msg,
                field,
                count: n,
            }),
        }
    }

    fn bad(&self, field: &'static str, raw: &[u8], kind: &'static str) -> DecodeError {
        DecodeError::BadNumber {
            msg: self.msg,
            field,
            value: String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned(),
            kind,
        }
    }
}

/// A decimal integer (optional sign, 1–19 digits) without going through `str`.
fn parse_int(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d))?;
    }
    // Accumulated negatively so that i64::MIN parses.
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// Parse IB's text form of a double: empty → `None`, `Infinity`/`-Infinity`, else a decimal.
fn parse_f64(s: &str) -> Result<Option<f64>, ()> {
    match s {
        "" => Ok(None),
        "Infinity" => Ok(Some(f64::INFINITY)),
        "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
        _ => {
            if let Some(v) = parse_decimal_fast(s.as_bytes()) {
                return Ok(Some(v));
            }
            // Rust's parser also accepts "inf"/"nan"; IB never sends them, so reject.
            let first = s.as_bytes()[0];
            if first.is_ascii_digit() || first == b'-' || first == b'.' || first == b'+' {
                s.parse().map(Some).map_err(|_| ())
            } else {
                Err(())
            }
        }
    }
}

/// Exact powers of ten up to 10^22 (all representable as `f64`).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Fast path for plain decimals such as `185.25` or `-3`, the shape of nearly every price IB
/// sends: when the digits form an integer `m < 2^53` with at most 22 fractional digits, `m / 10^k`
/// is a division of two exact doubles and so correctly rounded — the same value `str::parse`
/// returns. Anything else (exponents, long mantissas) returns `None` for the general parser.
pub fn parse_decimal_fast(b: &[u8]) -> Option<f64> {
    match scan_decimal(b) {
        Some((v, end)) if end == b.len() => Some(v),
        _ => None,
    }
}

/// Parse a plain decimal at the start of `b`, stopping at the first NUL or the end; returns the
/// value and where it stopped. `None` for anything the exact fast path cannot take.
fn scan_decimal(b: &[u8]) -> Option<(f64, usize)> {
    let neg = b.first() == Some(&b'-');
    let mut i = usize::from(neg);
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0usize;
    let mut seen_dot = false;
    while let Some(&c) = b.get(i) {
        if c == 0 {
            break;
        }
        if c == b'.' {
            if seen_dot {
                return None;
            }
            seen_dot = true;
        } else {
            let d = c.wrapping_sub(b'0');
            if d > 9 || digits == 19 {
                return None;
            }
            // ≤ 19 digits cannot overflow a u64.
            mantissa = mantissa * 10 + u64::from(d);
            digits += 1;
            frac_digits += usize::from(seen_dot);
        }
        i += 1;
    }
    if digits == 0 || mantissa > (1u64 << 53) {
        return None;
    }
    let v = mantissa as f64 / *POW10.get(frac_digits)?;
    Some((if neg { -v } else { v }, i))
}

/// Appends NUL-terminated fields to a buffer. Errors (a NUL inside a string) are sticky and
/// reported once by [`FieldWriter::finish`], so encoders stay linear.
#[derive(Debug)]
pub struct FieldWriter<'a> {
    out: &'a mut BytesMut,
    msg: &'static str,
    error: Option<EncodeError>,
}

impl<'a> FieldWriter<'a> {
    /// A writer appending to `out` for message `msg`.
    pub fn new(out: &'a mut BytesMut, msg: &'static str) -> Self {
        Self {
            out,
            msg,
            error: None,
        }
    }

    /// The first error recorded, if any.
    pub fn finish(self) -> Result<(), EncodeError> {
        self.error.map_or(Ok(()), Err)
    }

    /// A text field.
    pub fn str(&mut self, field: &'static str, value: &str) -> &mut Self {
        if memchr::memchr(0, value.as_bytes()).is_some() && self.error.is_none() {
            self.error = Some(EncodeError::NulInField {
                msg: self.msg,
                field,
            });
        }
        self.out.put_slice(value.as_bytes());
        self.out.put_u8(0);
        self
    }

    /// An integer field; [`UNSET_INTEGER`] writes as empty.
    pub fn i32(&mut self, field: &'static str, value: i32) -> &mut Self {
        if value == UNSET_INTEGER {
            return self.str(field, "");
        }
        let mut b = itoa_buf();
        self.str(field, fmt_int(&mut b, i64::from(value)))
    }

    /// An optional integer field; `None` writes as empty.
    pub fn opt_i32(&mut self, field: &'static str, value: Option<i32>) -> &mut Self {
        match value {
            Some(v) => self.i32(field, v),
            None => self.str(field, ""),
        }
    }

    /// A 64-bit integer field.
    pub fn i64(&mut self, field: &'static str, value: i64) -> &mut Self {
        let mut b = itoa_buf();
        self.str(field, fmt_int(&mut b, value))
    }

    /// A double; [`UNSET_DOUBLE`] writes as empty, infinity as `Infinity`.
    pub fn f64(&mut self, field: &'static str, value: f64) -> &mut Self {
        self.opt_f64(field, Some(value))
    }

    /// An optional double; `None` writes as empty.
    pub fn opt_f64(&mut self, field: &'static str, value: Option<f64>) -> &mut Self {
        match value {
            None => self.str(field, ""),
            Some(v) if v == UNSET_DOUBLE => self.str(field, ""),
            Some(v) if v == f64::INFINITY => self.str(field, "Infinity"),
            Some(v) if v == f64::NEG_INFINITY => self.str(field, "-Infinity"),
            Some(v) => self.str(field, &format_f64(v)),
        }
    }

    /// Already-encoded fields, appended verbatim (an unknown message relayed as received).
    pub fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.out.put_slice(encoded);
        self
    }

    /// A bool as `"1"`/`"0"`.
    pub fn bool(&mut self, field: &'static str, value: bool) -> &mut Self {
        self.str(field, if value { "1" } else { "0" })
    }
}

/// Shortest text that parses back to the same `f64` (Rust's `Display`, e.g. `185.5`, `100`).
pub fn format_f64(v: f64) -> String {
    format!("{v}")
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Format an integer into a stack buffer (avoids a heap `String` per field).
fn fmt_int(buf: &mut [u8; 20], value: i64) -> &str {
    let neg = value < 0;
    let mut n = value.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        // 19 digits + sign = 20 bytes: i64::MIN fits exactly.
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_typed_fields_and_unset() {
        let mut r = FieldReader::new(b"42\x00\x00-7\x001.5\x00Infinity\x001\x00abc\x00", "test");
        assert_eq!(r.i32("a").unwrap(), 42);
        assert_eq!(r.opt_i32("b").unwrap(), None);
        assert_eq!(r.i64("c").unwrap(), -7);
        assert_eq!(r.f64("d").unwrap(), 1.5);
        assert_eq!(r.f64("e").unwrap(), f64::INFINITY);
        assert!(r.bool("f").unwrap());
        assert_eq!(r.str("g").unwrap(), "abc");
        assert!(r.is_empty());
        assert!(matches!(
            r.str("h"),
            Err(DecodeError::MissingField { field: "h", .. })
        ));
    }

    #[test]
    fn fast_decimal_path_agrees_with_the_standard_parser() {
        for s in [
            "0",
            "-0",
            "1",
            "185.25",
            "0.1",
            "0.3",
            "-12.5",
            "9007199254740992",
            "123456.789012",
            "0.00000000000000001",
            "5.",
            ".5",
        ] {
            let fast = parse_decimal_fast(s.as_bytes());
            let std: f64 = s.parse().unwrap();
            assert_eq!(fast.map(f64::to_bits), Some(std.to_bits()), "{s}");
        }
        for s in [
            "",
            "-",
            ".",
            "1e5",
            "1.2.3",
            "abc",
            "9007199254740993",
            "12345678901234567890",
            "1.7976931348623157",
        ] {
            assert_eq!(parse_decimal_fast(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn bad_numbers_name_the_field() {
        let mut r = FieldReader::new(b"x1\0nan\0", "Msg");
        assert_eq!(
            r.i32("req_id"),
            Err(DecodeError::BadNumber {
                msg: "Msg",
                field: "req_id",
                value: "x1".into(),
                kind: "i32"
            })
        );
        assert!(r.f64("open").is_err(), "nan is not an IB double");
    }

    #[test]
    fn counts_are_bounded_by_the_frame() {
        let mut r = FieldReader::new(b"1000000\0a\0b\0", "Msg");
        assert!(matches!(
            r.count("n", 2),
            Err(DecodeError::BadCount { count: 1000000, .. })
        ));
        let mut r = FieldReader::new(b"-1\0", "Msg");
        assert!(r.count("n", 1).is_err());
    }

    #[test]
    fn writes_unset_and_special_values() {
        let mut out = BytesMut::new();
        let mut w = FieldWriter::new(&mut out, "t");
        w.i32("a", UNSET_INTEGER)
            .f64("b", UNSET_DOUBLE)
            .f64("c", f64::INFINITY)
            .f64("d", 100.0)
            .f64("e", 0.25)
            .i64("f", i64::MIN)
            .bool("g", true);
        w.finish().unwrap();
        assert_eq!(
            &out[..],
            b"\x00\x00Infinity\x00100\x000.25\x00-9223372036854775808\x001\x00"
        );
    }

    #[test]
    fn nul_inside_a_string_is_an_error() {
        let mut out = BytesMut::new();
        let mut w = FieldWriter::new(&mut out, "t");
        w.str("sym", "A\0B");
        assert_eq!(
            w.finish(),
            Err(EncodeError::NulInField {
                msg: "t",
                field: "sym"
            })
        );
    }
}
