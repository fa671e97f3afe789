//! The `error` family: [`ErrorMessage`] and its text layout, which gained fields at server versions
//! 166 (advanced order reject) and 194 (error time).

use crate::wire::{version, DecodeError, FieldReader, FieldWriter};

/// An `error` message: a request failure, a warning or a system notice (id −1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorMessage {
    /// Request (or order) id; −1 for notices not tied to a request.
    pub req_id: i32,
    /// IB's error code, e.g. 162, 2104.
    pub code: i32,
    /// IB's text.
    pub message: String,
    /// Advanced order reject JSON (server version 166+); usually empty.
    pub advanced_order_reject_json: String,
    /// When IB raised it, milliseconds since the epoch (server version 194+).
    pub error_time_ms: Option<i64>,
}

pub(super) fn write_error(w: &mut FieldWriter<'_>, sv: i32, e: &ErrorMessage) {
    if sv < version::ERROR_TIME {
        w.i32("version", 2);
    }
    w.i32("req_id", e.req_id)
        .i32("code", e.code)
        .str("message", &e.message);
    if sv >= version::ADVANCED_ORDER_REJECT {
        w.str("advanced_order_reject_json", &e.advanced_order_reject_json);
    }
    if sv >= version::ERROR_TIME {
        match e.error_time_ms {
            Some(t) => w.i64("error_time", t),
            None => w.str("error_time", ""),
        };
    }
}

pub(super) fn read_error(r: &mut FieldReader<'_>, sv: i32) -> Result<ErrorMessage, DecodeError> {
    if sv < version::ERROR_TIME {
        r.i32("version")?;
    }
    let mut e = ErrorMessage {
        req_id: r.i32("req_id")?,
        code: r.i32("code")?,
        message: r.string("message")?,
        ..ErrorMessage::default()
    };
    if sv >= version::ADVANCED_ORDER_REJECT {
        e.advanced_order_reject_json = r.string("advanced_order_reject_json")?;
    }
    if sv >= version::ERROR_TIME {
        let t = r.str("error_time")?;
        e.error_time_ms = if t.is_empty() {
            None
        } else {
            Some(t.parse().map_err(|_| DecodeError::BadNumber {
                msg: "Error",
                field: "error_time",
                value: t.chars().take(64).collect(),
                kind: "i64",
            })?)
        };
    }
    Ok(e)
}
