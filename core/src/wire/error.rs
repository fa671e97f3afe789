//! Errors of the wire layer. Decoding untrusted bytes never panics; it returns one of these, naming
//! the message and field that was wrong.

/// A length-prefix violation found by [`FrameDecoder`](super::FrameDecoder) before any allocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the cap (IB's `MAX_MSG_LEN`, 16 MiB − 1).
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLarge {
        /// Announced body length.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// A zero-length frame: no message id, nothing to decode.
    #[error("empty frame (length 0)")]
    Empty,
    /// The first four bytes of a client connection were not `API\0`.
    #[error("bad handshake prefix {found:02x?}: expected \"API\\0\"")]
    BadPrefix {
        /// The four bytes received instead.
        found: [u8; 4],
    },
}

/// Why a frame could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The framing itself was invalid.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame too short to hold a message id.
    #[error("frame of {len} bytes is too short for a message id")]
    NoMessageId {
        /// Body length.
        len: usize,
    },
    /// The text message id was not a number.
    #[error("text message id {value:?} is not a number")]
    BadMessageId {
        /// The raw id field.
        value: String,
    },
    /// A text frame ended before a required field.
    #[error("{msg}: frame ended before field `{field}`")]
    MissingField {
        /// Message name.
        msg: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A text field was not valid UTF-8.
    #[error("{msg}: field `{field}` is not valid UTF-8")]
    Utf8 {
        /// Message name.
        msg: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A text field did not parse as the number it must be.
    #[error("{msg}: field `{field}` = {value:?} is not a valid {kind}")]
    BadNumber {
        /// Message name.
        msg: &'static str,
        /// Field name.
        field: &'static str,
        /// The raw text (truncated to 64 bytes).
        value: String,
        /// Expected type, e.g. `i32`.
        kind: &'static str,
    },
    /// A repeat count larger than the frame can possibly hold.
    #[error("{msg}: count `{field}` = {count} exceeds what the frame can hold")]
    BadCount {
        /// Message name.
        msg: &'static str,
        /// Field name.
        field: &'static str,
        /// The count received.
        count: i64,
    },
    /// More repeated elements than one frame may carry
    /// ([`MAX_REPEATED`](super::frame::MAX_REPEATED)), found before they are decoded.
    #[error("{msg}: more than {max} repeated elements in one frame (at `{field}`)")]
    TooMany {
        /// Message name.
        msg: &'static str,
        /// The repeated field that went over.
        field: &'static str,
        /// The cap.
        max: usize,
    },
    /// Protobuf bytes that `prost` rejected.
    #[error("{msg}: invalid protobuf: {reason}")]
    Protobuf {
        /// Message name.
        msg: &'static str,
        /// prost's description.
        reason: String,
    },
    /// A protobuf field that must be present was absent.
    #[error("{msg}: required field `{field}` is absent")]
    Absent {
        /// Message name.
        msg: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// Trailing bytes after the last field of a text message we fully understand.
    #[error("{msg}: {extra} unexpected trailing field(s)")]
    TrailingFields {
        /// Message name.
        msg: &'static str,
        /// How many fields were left over.
        extra: usize,
    },
}

/// Why a message could not be encoded for the negotiated server version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message does not exist at this server version (e.g. `cancelContractData` below 215).
    #[error("{msg} needs server version {min} or later; the session negotiated {server_version}")]
    Unsupported {
        /// Message name.
        msg: &'static str,
        /// First server version that has it.
        min: i32,
        /// The negotiated version.
        server_version: i32,
    },
    /// An `Unknown` message whose id cannot travel in its form at this version (it would read back
    /// as a different message).
    #[error("message id {id} cannot be sent as {form:?} at server version {server_version}")]
    BadMessageId {
        /// The id.
        id: i32,
        /// The requested form.
        form: super::Form,
        /// The negotiated version.
        server_version: i32,
    },
    /// The encoded body would exceed the frame cap.
    #[error("encoded {msg} is {len} bytes, over the frame cap {max}")]
    TooLarge {
        /// Message name.
        msg: &'static str,
        /// Body length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A text field contains a NUL byte, which would split it on the wire.
    #[error("{msg}: field `{field}` contains a NUL byte")]
    NulInField {
        /// Message name.
        msg: &'static str,
        /// Field name.
        field: &'static str,
    },
}
