//! NUL-terminated text fields, as in every pre-protobuf TWS message.
//!
//! "Unset" follows IB (protocol.md §1.4): an empty field reads as `None` (or 0 for the plain getters),
//! `i32::MAX` and `f64::MAX` write as an empty field, and `Infinity` round-trips.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};

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
}

impl<'a> FieldReader<'a> {
    /// A reader over `buf` (the fields after the message id) for message `msg`.
    pub fn new(buf: &'a [u8], msg: &'static str) -> Self {
        Self { buf, pos: 0, msg }
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
        let Some(end) = memchr::memchr(0, rest) else {
            return Err(DecodeError::MissingField {
                msg: self.msg,
                field,
            });
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
        let s = self.str(field)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| self.bad(field, s, "i32"))
    }

    /// The next field as `i64`; an empty field is 0.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let s = self.str(field)?;
        if s.is_empty() {
            return Ok(0);
        }
        s.parse().map_err(|_| self.bad(field, s, "i64"))
    }

    /// The next field as `f64`; an empty field is 0.0.
    pub fn f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        Ok(self.opt_f64(field)?.unwrap_or(0.0))
    }

    /// The next field as `f64`; empty → `None`. Accepts IB's `Infinity`.
    pub fn opt_f64(&mut self, field: &'static str) -> Result<Option<f64>, DecodeError> {
        let s = self.str(field)?;
        parse_f64(s).map_err(|()| self.bad(field, s, "f64"))
    }

    /// The next field as a bool (`"1"`/`"0"`, also `"true"`/`"false"`; empty = false).
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let s = self.str(field)?;
        match s {
            "1" | "true" | "True" => Ok(true),
            "0" | "" | "false" | "False" => Ok(false),
            _ => s
                .parse::<i64>()
                .map(|v| v != 0)
                .map_err(|_| self.bad(field, s, "bool")),
        }
    }

    /// The next field as a repeat count, checked against what the rest of the frame can hold
    /// (`fields_per_item` fields of at least one byte each), so a hostile count cannot force a
    /// large allocation.
    pub fn count(
        &mut self,
        field: &'static str,
        fields_per_item: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.i64(field)?;
        let max = self.remaining_bytes() / fields_per_item.max(1);
        match usize::try_from(n) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(DecodeError::BadCount {
                msg: self.msg,
                field,
                count: n,
            }),
        }
    }

    fn bad(&self, field: &'static str, value: &str, kind: &'static str) -> DecodeError {
        let mut end = value.len().min(64);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        DecodeError::BadNumber {
            msg: self.msg,
            field,
            value: value[..end].to_owned(),
            kind,
        }
    }
}

/// Parse IB's text form of a double: empty → `None`, `Infinity`/`-Infinity`, else a decimal.
fn parse_f64(s: &str) -> Result<Option<f64>, ()> {
    match s {
        "" => Ok(None),
        "Infinity" => Ok(Some(f64::INFINITY)),
        "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
        _ => {
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
