//! The text form of every reply (NUL-separated fields): one match over the variants each way; the
//! version-dependent layouts of the larger families live in their own files.

use bytes::BytesMut;

use super::error::{read_error, write_error};
use super::historical::{read_bar_time, read_historical_data, write_historical_data};
use super::{text_name, Bar, Response};
use crate::message::contract::{read_contract_data, write_contract_data, ContractDescription};
use crate::message::ids::incoming as id;
use crate::message::market::MarketReply;
use crate::wire::{DecodeError, EncodeError, FieldReader, Form, Frame, FrameEncoder};

impl Response {
    pub(super) fn encode_text(
        &self,
        enc: &FrameEncoder,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let sv = enc.server_version();
        let (name, id) = (self.name(), self.id());
        enc.text(out, name, id, |w| match self {
            Self::NextValidId { order_id } => {
                w.i32("version", 1).i32("order_id", *order_id);
            }
            Self::ManagedAccounts { accounts } => {
                w.i32("version", 1).str("accounts", accounts);
            }
            Self::Error(e) => write_error(w, sv, e),
            Self::CurrentTime { time } => {
                w.i32("version", 1).i64("time", *time);
            }
            Self::CurrentTimeInMillis { millis } => {
                w.i64("millis", *millis);
            }
            Self::HistoricalData {
                req_id,
                start,
                end,
                bars,
            } => write_historical_data(w, sv, *req_id, start, end, bars),
            Self::HistoricalDataEnd { req_id, start, end } => {
                w.i32("req_id", *req_id).str("start", start).str("end", end);
            }
            Self::HistoricalDataUpdate { req_id, bar } => {
                w.i32("req_id", *req_id)
                    .i32("count", bar.count)
                    .str("date", &bar.date.to_string())
                    .f64("open", bar.open)
                    .f64("close", bar.close)
                    .f64("high", bar.high)
                    .f64("low", bar.low)
                    .f64("wap", bar.wap)
                    .f64("volume", bar.volume);
            }
            Self::HeadTimestamp { req_id, timestamp } => {
                w.i32("req_id", *req_id).str("timestamp", timestamp);
            }
            Self::ContractData {
                req_id,
                contract,
                details,
            } => write_contract_data(w, sv, *req_id, contract, details),
            Self::ContractDataEnd { req_id } => {
                w.i32("version", 1).i32("req_id", *req_id);
            }
            Self::SymbolSamples {
                req_id,
                descriptions,
            } => {
                w.i32("req_id", *req_id).i32(
                    "count",
                    i32::try_from(descriptions.len()).unwrap_or(i32::MAX),
                );
                for d in descriptions {
                    d.write_text(w, sv);
                }
            }
            Self::Market(m) => m.write_text(w, sv),
            Self::Unknown { payload, .. } => {
                w.raw(payload);
            }
        })
    }

    pub(super) fn decode_text(frame: &Frame, sv: i32) -> Result<Self, DecodeError> {
        let name = text_name(frame.id);
        let mut r = FieldReader::new(&frame.body, name);
        let msg = match frame.id {
            id::NEXT_VALID_ID => {
                r.i32("version")?;
                Self::NextValidId {
                    order_id: r.i32("order_id")?,
                }
            }
            id::MANAGED_ACCTS => {
                r.i32("version")?;
                Self::ManagedAccounts {
                    accounts: r.string("accounts")?,
                }
            }
            id::ERR_MSG => Self::Error(read_error(&mut r, sv)?),
            id::CURRENT_TIME => {
                r.i32("version")?;
                Self::CurrentTime {
                    time: r.i64("time")?,
                }
            }
            id::CURRENT_TIME_IN_MILLIS => Self::CurrentTimeInMillis {
                millis: r.i64("millis")?,
            },
            id::HISTORICAL_DATA => read_historical_data(&mut r, sv)?,
            id::HISTORICAL_DATA_END => Self::HistoricalDataEnd {
                req_id: r.i32("req_id")?,
                start: r.string("start")?,
                end: r.string("end")?,
            },
            id::HISTORICAL_DATA_UPDATE => {
                let req_id = r.i32("req_id")?;
                let count = r.i32("count")?;
                let date = read_bar_time(&mut r)?;
                let open = r.f64("open")?;
                let close = r.f64("close")?;
                let high = r.f64("high")?;
                let low = r.f64("low")?;
                let wap = r.f64("wap")?;
                let volume = r.f64("volume")?;
                Self::HistoricalDataUpdate {
                    req_id,
                    bar: Bar {
                        date,
                        open,
                        high,
                        low,
                        close,
                        volume,
                        wap,
                        count,
                    },
                }
            }
            id::HEAD_TIMESTAMP => Self::HeadTimestamp {
                req_id: r.i32("req_id")?,
                timestamp: r.string("timestamp")?,
            },
            id::CONTRACT_DATA => {
                let (req_id, contract, details) = read_contract_data(&mut r, sv)?;
                Self::ContractData {
                    req_id,
                    contract: Box::new(contract),
                    details: Box::new(details),
                }
            }
            id::CONTRACT_DATA_END => {
                r.i32("version")?;
                Self::ContractDataEnd {
                    req_id: r.i32("req_id")?,
                }
            }
            id::SYMBOL_SAMPLES => {
                let req_id = r.i32("req_id")?;
                let n = r.count("count", 6)?;
                let mut descriptions = Vec::with_capacity(n);
                for _ in 0..n {
                    descriptions.push(ContractDescription::read_text(&mut r, sv)?);
                }
                Self::SymbolSamples {
                    req_id,
                    descriptions,
                }
            }
            other if MarketReply::is_id(other) => {
                Self::Market(MarketReply::read_text(other, &mut r)?)
            }
            other => {
                return Ok(Self::Unknown {
                    id: other,
                    form: Form::Text,
                    payload: frame.body.clone(),
                })
            }
        };
        r.finish()?;
        Ok(msg)
    }
}
