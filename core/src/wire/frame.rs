//! Length-prefixed frames: `u32` big-endian body length, then the body.
//!
//! From server version 201 every body starts with a 4-byte big-endian message id; an id above 200 means
//! the rest is protobuf and the real id is `id - 200`. Before 201 the id is the first NUL-terminated
//! text field. [`FrameDecoder`] only splits the stream; [`Frame::parse`] reads the id header.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use super::error::{DecodeError, EncodeError, FrameError};
use super::fields::FieldWriter;
use super::version;

/// IB's `MAX_MSG_LEN`: the largest body a frame may announce (16 MiB − 1).
pub const MAX_FRAME_LEN: usize = 0x00FF_FFFF;

/// Most elements the repeated fields of one frame may hold together (bars, symbol matches,
/// derivative types, sec-id pairs, ineligibility reasons), in either form: the text decoder's
/// counts and the protobuf pre-scan (`message::repeated`) both draw on it, and the simulator's
/// largest answer (`MAX_BARS` bars) fits exactly.
///
/// Memory: prost decodes eagerly, and a 16 MiB frame of two-byte empty elements would become 8 M
/// structs of 144 bytes (bars) to 408 bytes (symbol matches) — 1 to 3.4 GB, twice that while the
/// `Vec` grows. Capped, one frame decodes into at most about `MAX_REPEATED` × 1.7 KiB (≈ 350 MB,
/// the worst case: symbol matches with every contract string set, counting `Vec` growth and the
/// typed copy) plus the frame's own bytes, and a bar frame into about 100 MB.
pub const MAX_REPEATED: usize = 200_000;

/// Protobuf message ids are sent as `id + PROTOBUF_ID_OFFSET`.
pub const PROTOBUF_ID_OFFSET: i32 = 200;

const API_PREFIX: [u8; 4] = *b"API\0";

/// Incremental frame splitter: feed bytes in any chunking, take whole frame bodies out.
///
/// The length prefix is checked against the cap before any buffer is grown for the body, and the
/// internal buffer never holds more than one partial frame beyond what the caller pushed.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_len: usize,
    expect_api_prefix: bool,
    poisoned: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder for the client side: every frame is length-prefixed from the first byte.
    pub fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            max_len: MAX_FRAME_LEN,
            expect_api_prefix: false,
            poisoned: None,
        }
    }

    /// A decoder for the server side: the stream starts with the raw `API\0` prefix, then frames.
    pub fn server() -> Self {
        Self {
            expect_api_prefix: true,
            ..Self::new()
        }
    }

    /// Lower the body cap (never above [`MAX_FRAME_LEN`]).
    #[must_use]
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.min(MAX_FRAME_LEN);
        self
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.poisoned.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame body, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is desynchronised: every later call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        if self.expect_api_prefix {
            if self.buf.len() < API_PREFIX.len() {
                // Reject a wrong prefix as soon as its first wrong byte arrives.
                if !API_PREFIX.starts_with(&self.buf) {
                    return Err(self.poison_prefix());
                }
                return Ok(None);
            }
            if self.buf[..4] != API_PREFIX {
                return Err(self.poison_prefix());
            }
            self.buf.advance(4);
            self.expect_api_prefix = false;
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max_len {
            return Err(self.poison(FrameError::TooLarge {
                len,
                max: self.max_len,
            }));
        }
        if len == 0 {
            return Err(self.poison(FrameError::Empty));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    fn poison_prefix(&mut self) -> FrameError {
        let mut found = [0u8; 4];
        for (dst, src) in found.iter_mut().zip(self.buf.iter()) {
            *dst = *src;
        }
        self.poison(FrameError::BadPrefix { found })
    }

    fn poison(&mut self, err: FrameError) -> FrameError {
        self.buf.clear();
        self.poisoned = Some(err.clone());
        err
    }
}

/// Which encoding a message body uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// NUL-terminated text fields.
    Text,
    /// A protobuf message.
    Protobuf,
}

/// A frame body split into its message id and the encoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message id (for protobuf frames, already reduced by 200).
    pub id: i32,
    /// How `body` is encoded.
    pub form: Form,
    /// Text fields after the id, or protobuf bytes.
    pub body: Bytes,
}

impl Frame {
    /// Read the message-id header of a frame body. `server_version` decides whether the id is a
    /// 4-byte binary (≥ 201) or a text field.
    pub fn parse(mut payload: Bytes, server_version: i32) -> Result<Self, DecodeError> {
        if server_version >= version::PROTOBUF {
            if payload.len() < 4 {
                return Err(DecodeError::NoMessageId { len: payload.len() });
            }
            let raw = payload.get_i32();
            if raw > PROTOBUF_ID_OFFSET {
                Ok(Self {
                    id: raw - PROTOBUF_ID_OFFSET,
                    form: Form::Protobuf,
                    body: payload,
                })
            } else {
                Ok(Self {
                    id: raw,
                    form: Form::Text,
                    body: payload,
                })
            }
        } else {
            let Some(end) = memchr::memchr(0, &payload) else {
                return Err(DecodeError::NoMessageId { len: payload.len() });
            };
            let id = std::str::from_utf8(&payload[..end])
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
                .ok_or_else(|| DecodeError::BadMessageId {
                    value: String::from_utf8_lossy(&payload[..end.min(64)]).into_owned(),
                })?;
            payload.advance(end + 1);
            Ok(Self {
                id,
                form: Form::Text,
                body: payload,
            })
        }
    }
}

/// Writes whole frames (length prefix, id header, body) into a caller-owned buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameEncoder {
    server_version: i32,
}

impl FrameEncoder {
    /// An encoder for a session at `server_version` (decides the id header form).
    pub fn new(server_version: i32) -> Self {
        Self { server_version }
    }

    /// The server version this encoder writes for.
    pub fn server_version(&self) -> i32 {
        self.server_version
    }

    /// Append one text-form frame with message id `id`; `fill` writes the fields after the id.
    pub fn text(
        &self,
        out: &mut BytesMut,
        msg: &'static str,
        id: i32,
        fill: impl FnOnce(&mut FieldWriter<'_>),
    ) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_u32(0);
        if self.server_version >= version::PROTOBUF {
            out.put_i32(id);
        } else {
            let mut w = FieldWriter::new(out, msg);
            w.i64("msg_id", i64::from(id));
            w.finish()?;
        }
        let mut w = FieldWriter::new(out, msg);
        fill(&mut w);
        let result = w.finish();
        finish_frame(out, start, msg, result)
    }

    /// Append one protobuf-form frame with message id `id` (sent as `id + 200`).
    pub fn protobuf(
        &self,
        out: &mut BytesMut,
        msg: &'static str,
        id: i32,
        body: &impl prost::Message,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_u32(0);
        out.put_i32(id + PROTOBUF_ID_OFFSET);
        out.reserve(body.encoded_len());
        // Encoding into a BytesMut that was just reserved cannot run out of space.
        let result = body.encode(out).map_err(|_| EncodeError::TooLarge {
            msg,
            len: body.encoded_len(),
            max: MAX_FRAME_LEN,
        });
        finish_frame(out, start, msg, result)
    }

    /// Append one protobuf-form frame whose body is already encoded (an unknown message relayed
    /// verbatim).
    pub fn protobuf_bytes(
        &self,
        out: &mut BytesMut,
        msg: &'static str,
        id: i32,
        body: &[u8],
    ) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_u32(0);
        out.put_i32(id + PROTOBUF_ID_OFFSET);
        out.put_slice(body);
        finish_frame(out, start, msg, Ok(()))
    }

    /// Append a frame without a message id (the server's handshake reply).
    pub fn raw_text(
        out: &mut BytesMut,
        msg: &'static str,
        fill: impl FnOnce(&mut FieldWriter<'_>),
    ) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_u32(0);
        let mut w = FieldWriter::new(out, msg);
        fill(&mut w);
        let result = w.finish();
        finish_frame(out, start, msg, result)
    }
}

/// Patch the length prefix at `start`, or roll the buffer back if encoding failed or is too large.
fn finish_frame(
    out: &mut BytesMut,
    start: usize,
    msg: &'static str,
    result: Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    if let Err(err) = result {
        out.truncate(start);
        return Err(err);
    }
    let len = out.len() - start - 4;
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(EncodeError::TooLarge {
            msg,
            len,
            max: MAX_FRAME_LEN,
        });
    }
    // len ≤ 0x00FF_FFFF, so it fits in a u32.
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(dec: &mut FrameDecoder) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Ok(Some(f)) = dec.next_frame() {
            out.push(f);
        }
        out
    }

    #[test]
    fn splits_frames_byte_by_byte() {
        let stream = [0, 0, 0, 2, b'a', 0, 0, 0, 0, 1, b'b'];
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for b in stream {
            dec.push(&[b]);
            got.extend(frames(&mut dec));
        }
        assert_eq!(
            got,
            vec![Bytes::from_static(b"a\0"), Bytes::from_static(b"b")]
        );
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn rejects_oversized_length_before_buffering_the_body() {
        let mut dec = FrameDecoder::new();
        dec.push(&[0x01, 0x00, 0x00, 0x00]);
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge {
                len: 0x0100_0000,
                max: MAX_FRAME_LEN
            })
        );
        dec.push(&[0; 100]);
        assert_eq!(dec.buffered(), 0, "a poisoned decoder keeps nothing");
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn accepts_the_maximum_length_exactly() {
        let mut dec = FrameDecoder::new();
        dec.push(&(MAX_FRAME_LEN as u32).to_be_bytes());
        assert_eq!(dec.next_frame(), Ok(None));
    }

    #[test]
    fn server_side_checks_the_api_prefix() {
        let mut dec = FrameDecoder::server();
        dec.push(b"AP");
        assert_eq!(dec.next_frame(), Ok(None));
        dec.push(b"I\0\0\0\0\x09v213..226");
        assert_eq!(dec.next_frame(), Ok(Some(Bytes::from_static(b"v213..226"))));

        let mut bad = FrameDecoder::server();
        bad.push(b"GET ");
        assert_eq!(
            bad.next_frame(),
            Err(FrameError::BadPrefix { found: *b"GET " })
        );
    }

    #[test]
    fn parses_binary_and_text_ids() {
        let f = Frame::parse(Bytes::from_static(&[0, 0, 0, 0xF9]), 226).unwrap();
        assert_eq!((f.id, f.form, f.body.len()), (49, Form::Protobuf, 0));
        let f = Frame::parse(Bytes::from_static(&[0, 0, 0, 4, b'x', 0]), 226).unwrap();
        assert_eq!((f.id, f.form), (4, Form::Text));
        let f = Frame::parse(Bytes::from_static(b"49\x001\x00"), 176).unwrap();
        assert_eq!((f.id, f.form, &f.body[..]), (49, Form::Text, &b"1\0"[..]));
        assert!(Frame::parse(Bytes::from_static(b"x\0"), 176).is_err());
        assert!(Frame::parse(Bytes::from_static(&[0, 1]), 226).is_err());
    }
}
