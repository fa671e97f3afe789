//! Small helpers shared by the protobuf conversions: IB's "absent = unset" rule in both directions.

use crate::wire::fields::parse_decimal_fast;
use crate::wire::DecodeError;

/// `None` for the empty string (an unset text value), else the string.
pub(crate) fn opt_str(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// `None` for zero (an unset id or count), else the value.
pub(crate) fn opt_nz(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

/// `Some(true)` or absent, as ibapi encodes booleans.
pub(crate) fn opt_true(v: bool) -> Option<bool> {
    v.then_some(true)
}

/// An absent string reads as empty.
pub(crate) fn str_or_empty(s: Option<String>) -> String {
    s.unwrap_or_default()
}

/// Parse a protobuf decimal-as-string: absent, empty, one of IB's unset sentinels or a non-finite
/// value reads as `default` (as ibapi does); anything else must be a number.
pub(crate) fn decimal(
    s: Option<&str>,
    default: f64,
    msg: &'static str,
    field: &'static str,
) -> Result<f64, DecodeError> {
    match s {
        None | Some("" | "2147483647" | "9223372036854775807" | "-9223372036854775808") => {
            Ok(default)
        }
        Some(s) => match parse_decimal_fast(s.as_bytes()).map_or_else(|| s.parse::<f64>(), Ok) {
            // IB's unset sentinel, and (as ibapi reads them) infinities and NaN: no value.
            Ok(v) if v == f64::MAX || !v.is_finite() => Ok(default),
            Ok(v) => Ok(v),
            _ => Err(DecodeError::BadNumber {
                msg,
                field,
                value: s.chars().take(64).collect(),
                kind: "decimal",
            }),
        },
    }
}
