//! The bars family: [`BarTime`], [`Bar`] and the historical-data layouts that changed with the
//! server version (text `historicalData` below 124 and 196), shared by both forms' codecs.

use super::Response;
use crate::message::convert::decimal;
use crate::message::proto;
use crate::wire::fields::format_f64;
use crate::wire::{version, DecodeError, FieldReader, FieldWriter};

/// When a bar starts, typed from the form IB sent it in; writes back byte-identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BarTime {
    /// Epoch seconds (`formatDate=2`, intraday bars).
    Epoch(i64),
    /// A trading day, `YYYYMMDD` as a number (daily and longer bars: IB sends only the date).
    Day(u32),
    /// Any other form (e.g. `formatDate=1`: `20231019 16:11:48 America/New_York`), verbatim.
    Text(String),
}

impl Default for BarTime {
    fn default() -> Self {
        Self::Epoch(0)
    }
}

impl BarTime {
    /// Classify IB's text: exactly 8 digits is a day (as ibapi reads it), a canonical integer is
    /// epoch seconds, anything else is kept as text.
    pub fn parse(s: &str) -> Self {
        Self::from_bytes(s.as_bytes()).unwrap_or_else(|| Self::Text(s.to_owned()))
    }

    /// The allocation-free cases of [`parse`](Self::parse); `None` means "text".
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() == 8 && b.iter().all(u8::is_ascii_digit) {
            return b
                .iter()
                .try_fold(0u32, |n, d| {
                    n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
                })
                .map(Self::Day);
        }
        let digits = b.strip_prefix(b"-").unwrap_or(b);
        let canonical = match digits {
            [] => false,
            [b'0'] => b.len() == 1,
            [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
        };
        if !canonical {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok().map(Self::Epoch)
    }

    /// Epoch seconds, for the epoch form.
    pub fn epoch_seconds(&self) -> Option<i64> {
        match self {
            Self::Epoch(t) => Some(*t),
            _ => None,
        }
    }
}

impl std::fmt::Display for BarTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Epoch(t) => write!(f, "{t}"),
            Self::Day(d) => write!(f, "{d:08}"),
            Self::Text(s) => f.write_str(s),
        }
    }
}

impl From<&str> for BarTime {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

/// Read a bar time field without allocating for the numeric forms.
pub(super) fn read_bar_time(r: &mut FieldReader<'_>) -> Result<BarTime, DecodeError> {
    let mut probe = r.clone();
    let raw = probe.bytes("date")?;
    match BarTime::from_bytes(raw) {
        Some(t) => {
            *r = probe;
            Ok(t)
        }
        None => r.string("date").map(BarTime::Text),
    }
}

/// One historical bar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bar {
    /// When the bar starts.
    pub date: BarTime,
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Volume (IB sends a decimal; −1 where not applicable).
    pub volume: f64,
    /// Volume-weighted average price.
    pub wap: f64,
    /// Number of trades; −1 where not applicable.
    pub count: i32,
}

impl Bar {
    pub(super) fn to_proto(&self) -> proto::HistoricalDataBar {
        proto::HistoricalDataBar {
            date: Some(self.date.to_string()),
            open: Some(self.open),
            high: Some(self.high),
            low: Some(self.low),
            close: Some(self.close),
            volume: Some(format_f64(self.volume)),
            wap: Some(format_f64(self.wap)),
            bar_count: Some(self.count),
        }
    }

    pub(super) fn from_proto(
        p: proto::HistoricalDataBar,
        msg: &'static str,
    ) -> Result<Self, DecodeError> {
        Ok(Self {
            date: BarTime::parse(&p.date.ok_or(DecodeError::Absent { msg, field: "date" })?),
            open: p.open.unwrap_or(0.0),
            high: p.high.unwrap_or(0.0),
            low: p.low.unwrap_or(0.0),
            close: p.close.unwrap_or(0.0),
            volume: decimal(p.volume.as_deref(), 0.0, msg, "volume")?,
            wap: decimal(p.wap.as_deref(), 0.0, msg, "wap")?,
            count: p.bar_count.unwrap_or(-1),
        })
    }
}

/// Text `historicalData` (17): below 124 a version and `hasGaps` per bar; below 196 the window
/// dates travel here instead of in `historicalDataEnd`.
pub(super) fn write_historical_data(
    w: &mut FieldWriter<'_>,
    sv: i32,
    req_id: i32,
    start: &str,
    end: &str,
    bars: &[Bar],
) {
    if sv < version::SYNT_REALTIME_BARS {
        w.i32("version", 3);
    }
    w.i32("req_id", req_id);
    if sv < version::HISTORICAL_DATA_END {
        w.str("start", start).str("end", end);
    }
    w.i32("count", i32::try_from(bars.len()).unwrap_or(i32::MAX));
    for b in bars {
        w.str("date", &b.date.to_string())
            .f64("open", b.open)
            .f64("high", b.high)
            .f64("low", b.low)
            .f64("close", b.close)
            .f64("volume", b.volume)
            .f64("wap", b.wap);
        if sv < version::SYNT_REALTIME_BARS {
            w.str("has_gaps", "false");
        }
        w.i32("count", b.count);
    }
}

pub(super) fn read_historical_data(
    r: &mut FieldReader<'_>,
    sv: i32,
) -> Result<Response, DecodeError> {
    if sv < version::SYNT_REALTIME_BARS {
        r.i32("version")?;
    }
    let req_id = r.i32("req_id")?;
    let (start, end) = if sv < version::HISTORICAL_DATA_END {
        (r.string("start")?, r.string("end")?)
    } else {
        (String::new(), String::new())
    };
    let fields_per_bar = if sv < version::SYNT_REALTIME_BARS {
        9
    } else {
        8
    };
    let n = r.count("count", fields_per_bar)?;
    let mut bars = Vec::with_capacity(n);
    for _ in 0..n {
        let date = read_bar_time(r)?;
        let open = r.f64("open")?;
        let high = r.f64("high")?;
        let low = r.f64("low")?;
        let close = r.f64("close")?;
        let volume = r.f64("volume")?;
        let wap = r.f64("wap")?;
        if sv < version::SYNT_REALTIME_BARS {
            r.str("has_gaps")?;
        }
        let count = r.i32("count")?;
        bars.push(Bar {
            date,
            open,
            high,
            low,
            close,
            volume,
            wap,
            count,
        });
    }
    Ok(Response::HistoricalData {
        req_id,
        start,
        end,
        bars,
    })
}
