//! Counting protobuf repeated-field elements before prost decodes them.
//!
//! prost decodes eagerly: each element of a repeated field becomes a struct in a `Vec` as it is
//! read, so a frame of tiny elements would allocate gigabytes before any check on the result.
//! [`check`] walks the raw bytes first (keys and lengths only, nothing allocated) and refuses a
//! frame whose repeated fields hold more than [`MAX_REPEATED`] elements together, the cap the text
//! decoder's counts obey too.

use super::proto;
use crate::wire::{DecodeError, MAX_REPEATED};

/// Where a protobuf message keeps its repeated fields (by tag), including inside nested messages.
#[derive(Debug)]
pub(crate) struct Shape {
    /// Repeated fields at this level (messages, strings, map entries): tag and name.
    repeated: &'static [(u64, &'static str)],
    /// Message fields at this level that hold repeated fields themselves: tag and their shape.
    nested: &'static [(u64, &'static Shape)],
}

impl Shape {
    /// A message without repeated fields anywhere inside it.
    const FLAT: Self = Self {
        repeated: &[],
        nested: &[],
    };
}

/// A message decoded from the wire, with the [`Shape`] of its repeated fields (every message
/// `decode_proto` accepts must have one, so a new message cannot skip the cap).
pub(crate) trait Repeated {
    /// Its repeated fields.
    const SHAPE: Shape;
}

macro_rules! flat {
    ($($t:ident),* $(,)?) => {
        $(impl Repeated for proto::$t {
            const SHAPE: Shape = Shape::FLAT;
        })*
    };
}

flat!(
    StartApiRequest,
    IdsRequest,
    Empty,
    ReqIdOnly,
    HeadTimestampRequest,
    ContractDataRequest,
    MatchingSymbolsRequest,
    NextValidId,
    ManagedAccounts,
    ErrorMessage,
    CurrentTime,
    CurrentTimeInMillis,
    HistoricalDataEnd,
    HistoricalDataUpdate,
    HeadTimestamp,
    MarketDataTypeRequest,
    TickByTickRequest,
    TickPrice,
    TickSize,
    TickString,
    TickGeneric,
    MarketDataType,
    TickReqParams,
    RealTimeBarTick,
    TickByTickData,
);

impl Repeated for proto::MarketDataRequest {
    const SHAPE: Shape = Shape {
        repeated: &[(6, "market_data_options")],
        nested: &[],
    };
}

impl Repeated for proto::RealTimeBarsRequest {
    const SHAPE: Shape = Shape {
        repeated: &[(6, "real_time_bars_options")],
        nested: &[],
    };
}

impl Repeated for proto::HistoricalDataRequest {
    const SHAPE: Shape = Shape {
        repeated: &[(10, "chart_options")],
        nested: &[],
    };
}

impl Repeated for proto::HistoricalData {
    const SHAPE: Shape = Shape {
        repeated: &[(2, "historical_data_bars")],
        nested: &[],
    };
}

impl Repeated for proto::ContractDetails {
    const SHAPE: Shape = Shape {
        repeated: &[(17, "sec_id_list"), (58, "ineligibility_reason_list")],
        nested: &[],
    };
}

impl Repeated for proto::ContractData {
    const SHAPE: Shape = Shape {
        repeated: &[],
        nested: &[(3, &<proto::ContractDetails as Repeated>::SHAPE)],
    };
}

impl Repeated for proto::ContractDescription {
    const SHAPE: Shape = Shape {
        repeated: &[(2, "derivative_sec_types")],
        nested: &[],
    };
}

impl Repeated for proto::SymbolSamples {
    const SHAPE: Shape = Shape {
        repeated: &[(2, "contract_descriptions")],
        nested: &[(2, &<proto::ContractDescription as Repeated>::SHAPE)],
    };
}

/// Refuse `body` if the repeated fields of `M` in it hold more than [`MAX_REPEATED`] elements in
/// all. Costs one pass over the keys (and one more inside each nested message that has repeated
/// fields); bytes prost would reject are left for prost to report.
pub(crate) fn check<M: Repeated>(msg: &'static str, body: &[u8]) -> Result<(), DecodeError> {
    check_count::<M>(msg, body).map(drop)
}

/// [`check`], returning how many repeated elements it counted (an upper bound on what a valid
/// body holds, at most [`MAX_REPEATED`]): the capacity a decoder can reserve up front.
pub(crate) fn check_count<M: Repeated>(
    msg: &'static str,
    body: &[u8],
) -> Result<usize, DecodeError> {
    let mut left = MAX_REPEATED;
    count(msg, body, &M::SHAPE, &mut left)?;
    Ok(MAX_REPEATED - left)
}

fn count(
    msg: &'static str,
    mut buf: &[u8],
    shape: &Shape,
    left: &mut usize,
) -> Result<(), DecodeError> {
    while let Some((key, rest)) = varint(buf) {
        let (tag, wire_type) = (key >> 3, key & 7);
        // A field's bytes (a length-delimited payload, or the scalar), then what follows it.
        let (payload, rest) = match wire_type {
            0 => match varint(rest) {
                Some((_, after)) => (&[][..], Some(after)),
                None => return Ok(()),
            },
            1 => split(rest, 8),
            2 => match varint(rest) {
                Some((len, after)) => split(after, usize::try_from(len).unwrap_or(usize::MAX)),
                None => return Ok(()),
            },
            5 => split(rest, 4),
            // Group markers: walk on through the group's fields rather than skip the group as prost
            // does, so nothing after it can escape the count (at worst it counts a few too many).
            3 | 4 => (&[][..], Some(rest)),
            _ => return Ok(()),
        };
        let Some(rest) = rest else {
            return Ok(());
        };
        if let Some((_, field)) = shape.repeated.iter().find(|(t, _)| *t == tag) {
            *left = left.checked_sub(1).ok_or(DecodeError::TooMany {
                msg,
                field,
                max: MAX_REPEATED,
            })?;
        }
        if wire_type == 2 {
            if let Some((_, inner)) = shape.nested.iter().find(|(t, _)| *t == tag) {
                count(msg, payload, inner, left)?;
            }
        }
        buf = rest;
    }
    Ok(())
}

/// `buf` split after `len` bytes; `None` for the rest when it is shorter.
fn split(buf: &[u8], len: usize) -> (&[u8], Option<&[u8]>) {
    match buf.split_at_checked(len) {
        Some((head, rest)) => (head, Some(rest)),
        None => (&[], None),
    }
}

/// A base-128 varint and the bytes after it; `None` if truncated or longer than ten bytes.
fn varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &buf[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn bars(n: usize) -> proto::HistoricalData {
        proto::HistoricalData {
            req_id: Some(1),
            historical_data_bars: vec![proto::HistoricalDataBar::default(); n],
        }
    }

    #[test]
    fn counts_top_level_and_nested_repeated_fields_up_to_the_cap() {
        let ok = bars(MAX_REPEATED).encode_to_vec();
        assert_eq!(
            check::<proto::HistoricalData>("HistoricalData", &ok),
            Ok(())
        );
        let over = bars(MAX_REPEATED + 1).encode_to_vec();
        assert_eq!(
            check::<proto::HistoricalData>("HistoricalData", &over),
            Err(DecodeError::TooMany {
                msg: "HistoricalData",
                field: "historical_data_bars",
                max: MAX_REPEATED
            })
        );
        // Half the cap in descriptions, the other half (plus one) in their derivative types.
        let half = MAX_REPEATED / 2;
        let samples = |types: usize| proto::SymbolSamples {
            req_id: Some(1),
            contract_descriptions: vec![
                proto::ContractDescription {
                    contract: None,
                    derivative_sec_types: vec![String::new(); types],
                },
                proto::ContractDescription::default(),
            ]
            .into_iter()
            .cycle()
            .take(half)
            .collect(),
        };
        let fits = samples(1).encode_to_vec();
        assert_eq!(
            check::<proto::SymbolSamples>("SymbolSamples", &fits),
            Ok(())
        );
        let over = samples(3).encode_to_vec();
        assert!(matches!(
            check::<proto::SymbolSamples>("SymbolSamples", &over),
            Err(DecodeError::TooMany {
                field: "derivative_sec_types" | "contract_descriptions",
                ..
            })
        ));
    }

    #[test]
    fn every_repeated_field_of_contract_data_counts() {
        let details = |n: usize| proto::ContractData {
            req_id: Some(1),
            contract: None,
            contract_details: Some(proto::ContractDetails {
                sec_id_list: (0..n).map(|i| (i.to_string(), String::new())).collect(),
                ineligibility_reason_list: vec![proto::IneligibilityReason::default(); n],
                ..proto::ContractDetails::default()
            }),
        };
        let fits = details(MAX_REPEATED / 2).encode_to_vec();
        assert_eq!(check::<proto::ContractData>("ContractData", &fits), Ok(()));
        let over = details(MAX_REPEATED / 2 + 1).encode_to_vec();
        assert!(check::<proto::ContractData>("ContractData", &over).is_err());
        let options = proto::HistoricalDataRequest {
            chart_options: (0..=MAX_REPEATED)
                .map(|i| (i.to_string(), String::new()))
                .collect(),
            ..proto::HistoricalDataRequest::default()
        };
        assert!(check::<proto::HistoricalDataRequest>(
            "ReqHistoricalData",
            &options.encode_to_vec()
        )
        .is_err());
    }

    #[test]
    fn malformed_bytes_are_left_to_prost_and_groups_are_walked_through() {
        for junk in [&[0xff][..], &[0x12, 0x05, 0x00], &[0x0e], &[0x80; 11]] {
            assert_eq!(
                check::<proto::HistoricalData>("HistoricalData", junk),
                Ok(())
            );
        }
        // Elements inside an (unknown) group count too: the walk never loses its place.
        let mut body = vec![(9 << 3) | 3];
        body.extend(std::iter::repeat_n([0x12, 0x00], MAX_REPEATED + 1).flatten());
        body.push((9 << 3) | 4);
        assert!(check::<proto::HistoricalData>("HistoricalData", &body).is_err());
    }
}
