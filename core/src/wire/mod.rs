//! The wire layer: how bytes on a TWS API socket become frames and fields, and back.
//!
//! - [`frame`]: the `u32` big-endian length prefix, incremental decoding under any chunking, and the
//!   message-id header (binary 4-byte id from server version 201, a text field before that).
//! - [`fields`]: NUL-terminated text fields with typed getters and "unset" handling.
//! - [`handshake`]: the `API\0` client hello, the server hello and version negotiation.
//! - [`version`]: named server versions and the range this crate speaks.

pub mod fields;
pub mod frame;
pub mod handshake;
pub mod version;

pub use fields::{FieldReader, FieldWriter};
pub use frame::{
    DecodeError, Form, Frame, FrameDecoder, FrameEncoder, FrameError, MAX_FRAME_LEN, MAX_REPEATED,
};
pub use handshake::{
    check_server_choice, negotiate, ClientHello, ConnectionTime, HandshakeError, ServerHello,
    VersionRange,
};
pub mod error;
pub use error::EncodeError;
