//! The CSV output: `[symbol,]time,open,high,low,close,volume,wap,count`, oldest first; read back
//! for resuming.
//!
//! How the rows look is a [`Layout`], fixed when a file is created and kept for its life:
//!
//! - `time` ([`TimeFormat`]): `iso` (the default for new files) writes ISO-8601 UTC,
//!   `2025-12-01T14:30:05Z`, and a plain date, `2025-12-01`, for daily and longer bars; `epoch`
//!   writes unix seconds, and IB's `YYYYMMDD` for daily and longer bars (the only form files
//!   had before `--time-format`).
//! - `symbol`: with `--out-dir` or `--with-symbol` a first column holding the contract as given
//!   (canonical form, e.g. `EUR.USD`), so concatenated files stay loadable.
//! - [`Missing`]: IB sends `-1` for volume, WAP and count where a series has none (MIDPOINT, BID,
//!   ASK, BID_ASK, volatility); new files leave those cells empty, files written before (sidecar
//!   version 2) keep their `-1`.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ibconn_core::backfill::bar_start_unix;
use ibconn_core::civil::{Date, SECS_PER_DAY};
use ibconn_core::message::{Bar, BarTime};
use serde::{Deserialize, Serialize};

pub(crate) use crate::output::Fingerprint;

/// Why the CSV could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CsvError {
    /// I/O on the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A malformed file.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The error.
        source: csv::Error,
    },
    /// Not a CSV this tool wrote: never overwritten.
    #[error(
        "{path} is not an ibconn CSV (its header is {header:?}); refusing to overwrite it — \
         choose another --out"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its first line.
        header: String,
    },
    /// A row whose time cannot be read.
    #[error(
        "{path}: line {line}: bad time {time:?} (expected one form in every row: \
         2025-12-01T14:30:05Z, 2025-12-01, epoch seconds or YYYYMMDD)"
    )]
    Time {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// The text.
        time: String,
    },
    /// A row whose price, volume or count cannot be read.
    #[error("{path}: line {line}: bad {column} {value:?}")]
    Number {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// The column.
        column: &'static str,
        /// The text.
        value: String,
    },
    /// Rows of two symbols: a file holds one contract.
    #[error("{path}: line {line}: symbol {found:?}, but the first row has {first:?}")]
    Symbol {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// The first row's symbol.
        first: String,
        /// This row's.
        found: String,
    },
}

impl CsvError {
    /// The documented exit code: 2 for a file we will not use, 1 for I/O.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Io { .. } => 1,
            Self::Csv { .. }
            | Self::Time { .. }
            | Self::Foreign { .. }
            | Self::Number { .. }
            | Self::Symbol { .. } => 2,
        }
    }
}

/// The columns after the optional `symbol`.
const HEADER: [&str; 8] = [
    "time", "open", "high", "low", "close", "volume", "wap", "count",
];

/// The name of the optional first column.
const SYMBOL: &str = "symbol";

/// How the `time` column is written (`--time-format`); see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TimeFormat {
    /// ISO-8601 UTC: `2025-12-01T14:30:05Z`, or `2025-12-01` for daily and longer bars.
    Iso,
    /// Unix seconds, or `YYYYMMDD` for daily and longer bars.
    Epoch,
}

impl TimeFormat {
    /// The `--time-format` value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Iso => "iso",
            Self::Epoch => "epoch",
        }
    }
}

impl fmt::Display for TimeFormat {
    /// The `--time-format` value, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a volume, WAP or count IB sends as `-1` (none for the series) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Missing {
    /// An empty cell (new files).
    #[serde(rename = "empty")]
    Empty,
    /// IB's `-1`, as files written before sidecar version 3 have it.
    #[serde(rename = "-1")]
    MinusOne,
}

/// How a file's rows are written; fixed for the life of a file (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Layout {
    /// The `time` column.
    pub(crate) time_format: TimeFormat,
    /// The `symbol` column's value; `None`: no such column.
    pub(crate) symbol: Option<String>,
    /// Volume, WAP and count that IB sends as `-1`.
    pub(crate) missing: Missing,
}

impl Layout {
    /// The layout of files written before sidecar version 3: epoch / `YYYYMMDD`, no symbol
    /// column, `-1` kept.
    pub(crate) const LEGACY: Self = Self {
        time_format: TimeFormat::Epoch,
        symbol: None,
        missing: Missing::MinusOne,
    };
}

/// The form a time cell has: a [`TimeFormat`] for intraday or for daily-and-longer bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeForm {
    /// `1764599405`.
    Epoch,
    /// `20251201`.
    Yyyymmdd,
    /// `2025-12-01T14:30:05Z`.
    IsoDateTime,
    /// `2025-12-01`.
    IsoDate,
}

impl TimeForm {
    /// What `format` writes for intraday (`daily` false) or daily-and-longer bars.
    pub(crate) const fn of(format: TimeFormat, daily: bool) -> Self {
        match (format, daily) {
            (TimeFormat::Epoch, false) => Self::Epoch,
            (TimeFormat::Epoch, true) => Self::Yyyymmdd,
            (TimeFormat::Iso, false) => Self::IsoDateTime,
            (TimeFormat::Iso, true) => Self::IsoDate,
        }
    }

    /// The `--time-format` that writes this form.
    pub(crate) const fn format(self) -> TimeFormat {
        match self {
            Self::Epoch | Self::Yyyymmdd => TimeFormat::Epoch,
            Self::IsoDateTime | Self::IsoDate => TimeFormat::Iso,
        }
    }

    /// Whether this is the form of daily and longer bars.
    pub(crate) const fn is_daily(self) -> bool {
        matches!(self, Self::Yyyymmdd | Self::IsoDate)
    }

    /// A name for messages.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Epoch => "epoch seconds",
            Self::Yyyymmdd => "YYYYMMDD dates",
            Self::IsoDateTime => "ISO-8601 date-times",
            Self::IsoDate => "ISO-8601 dates",
        }
    }
}

/// `t` as `form` writes it (a bar time of the other kind is written in the nearest form).
fn time_text(t: &BarTime, format: TimeFormat) -> String {
    match (t, format) {
        (BarTime::Epoch(s), TimeFormat::Epoch) => s.to_string(),
        (BarTime::Epoch(s), TimeFormat::Iso) => {
            let (days, secs) = (s.div_euclid(SECS_PER_DAY), s.rem_euclid(SECS_PER_DAY));
            format!(
                "{}T{:02}:{:02}:{:02}Z",
                Date::from_days(days),
                secs / 3_600,
                secs / 60 % 60,
                secs % 60
            )
        }
        (BarTime::Day(d), TimeFormat::Epoch) => format!("{d:08}"),
        (BarTime::Day(d), TimeFormat::Iso) => {
            format!("{:04}-{:02}-{:02}", d / 10_000, d / 100 % 100, d % 100)
        }
        (BarTime::Text(s), _) => s.clone(),
    }
}

/// A cell's time in any of the four forms, with the form.
fn parse_time(text: &str) -> Option<(BarTime, TimeForm)> {
    if let Some(day) = as_day(text) {
        return Some((BarTime::Day(day), TimeForm::Yyyymmdd));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
        return Some((BarTime::Epoch(text.parse().ok()?), TimeForm::Epoch));
    }
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (text, None),
    };
    let date = iso_date(date)?;
    match time {
        None => Some((
            BarTime::Day(u32::try_from(date.year).ok()? * 10_000 + date.month * 100 + date.day),
            TimeForm::IsoDate,
        )),
        Some(t) => {
            let b = t.as_bytes();
            // ASCII first: slicing below is by byte.
            if !t.is_ascii() || b.len() != 8 || b[2] != b':' || b[5] != b':' {
                return None;
            }
            let (h, m, s) = (digits(&t[..2])?, digits(&t[3..5])?, digits(&t[6..])?);
            if h > 23 || m > 59 || s > 59 {
                return None;
            }
            let secs = date.days() * SECS_PER_DAY + i64::from(h * 3_600 + m * 60 + s);
            Some((BarTime::Epoch(secs), TimeForm::IsoDateTime))
        }
    }
}

/// `YYYY-MM-DD`, a real day.
fn iso_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    // ASCII first: slicing below is by byte.
    if !text.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(&text[..4])?).ok()?;
    let date = Date::new(year, digits(&text[5..7])?, digits(&text[8..])?);
    date.is_valid().then_some(date)
}

/// ASCII digits only, as a number.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The coverage file beside `csv`.
pub(crate) fn coverage_path(csv: &Path) -> PathBuf {
    let mut p = csv.as_os_str().to_owned();
    p.push(".covered.json");
    PathBuf::from(p)
}

/// An existing CSV: its bars, fingerprint and how its rows are written.
#[derive(Debug)]
pub(crate) struct Held {
    /// The bars, as in the file.
    pub(crate) bars: Vec<Bar>,
    /// The bytes read.
    pub(crate) fingerprint: Fingerprint,
    /// The form of its times (`None` without rows).
    pub(crate) time_form: Option<TimeForm>,
    /// Whether its first column is `symbol`.
    pub(crate) symbol_column: bool,
    /// The symbol of its rows (`None` without that column or without rows).
    pub(crate) symbol: Option<String>,
    /// How its rows write a missing volume, WAP or count (`None`: no row has one).
    pub(crate) missing: Option<Missing>,
}

impl Held {
    /// The first bar start (unix seconds) off the `step`-second grid: the file holds bars of
    /// another (finer) size.
    pub(crate) fn off_grid(&self, step: i64) -> Option<i64> {
        if step <= 0 {
            return None;
        }
        self.bars
            .iter()
            .filter_map(|b| bar_start_unix(&b.date))
            .find(|t| t.rem_euclid(step) != 0)
    }
}

/// A `YYYYMMDD` day (a date between 1900 and 2999), or `None`: tells daily files from epoch
/// seconds (whose 8-digit values would be 1970).
fn as_day(text: &str) -> Option<u32> {
    let v: u32 = text.parse().ok()?;
    let (y, m, d) = (v / 10_000, v / 100 % 100, v % 100);
    (text.len() == 8 && (1900..3000).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d))
        .then_some(v)
}

/// The bars in an existing file (`None` if there is none, or it is empty). A file that is not
/// this tool's CSV — another header, a row that does not parse, times of two forms, rows of two
/// symbols — is an error: it is never overwritten.
pub(crate) fn read(path: &Path) -> Result<Option<Held>, CsvError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CsvError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    let fingerprint = Fingerprint::of(&bytes);
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header = reader.headers().map_err(|source| CsvError::Csv {
        path: path.to_owned(),
        source,
    })?;
    let symbol_column = header.get(0) == Some(SYMBOL);
    let skip = usize::from(symbol_column);
    if header.len() != HEADER.len() + skip || header.iter().skip(skip).ne(HEADER) {
        return Err(CsvError::Foreign {
            path: path.to_owned(),
            header: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    let mut held = Held {
        bars: Vec::new(),
        fingerprint,
        time_form: None,
        symbol_column,
        symbol: None,
        missing: None,
    };
    for record in reader.records() {
        let record = record.map_err(|source| CsvError::Csv {
            path: path.to_owned(),
            source,
        })?;
        let line = held.bars.len() as u64 + 2;
        let cell = |i: usize| record.get(i + skip).unwrap_or_default();
        if symbol_column {
            let found = record.get(0).unwrap_or_default();
            match &held.symbol {
                None => held.symbol = Some(found.to_owned()),
                Some(first) if first != found => {
                    return Err(CsvError::Symbol {
                        path: path.to_owned(),
                        line,
                        first: first.clone(),
                        found: found.to_owned(),
                    })
                }
                Some(_) => {}
            }
        }
        let bad_time = || CsvError::Time {
            path: path.to_owned(),
            line,
            time: cell(0).to_owned(),
        };
        let (date, form) = parse_time(cell(0)).ok_or_else(bad_time)?;
        if *held.time_form.get_or_insert(form) != form || bar_start_unix(&date).is_none() {
            return Err(bad_time());
        }
        let number = |i: usize, column: &'static str| -> Result<Option<f64>, CsvError> {
            let text = cell(i);
            if text.is_empty() && i >= 5 {
                return Ok(None);
            }
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| CsvError::Number {
                    path: path.to_owned(),
                    line,
                    column,
                    value: text.to_owned(),
                })
        };
        let price = |i: usize, column| number(i, column).map(|v| v.unwrap_or(-1.0));
        let (volume, wap, count) = (number(5, "volume")?, number(6, "wap")?, number(7, "count")?);
        if volume.is_none() || wap.is_none() || count.is_none() {
            held.missing = Some(Missing::Empty);
        } else if held.missing.is_none() && (cell(5) == "-1" || cell(7) == "-1") {
            held.missing = Some(Missing::MinusOne);
        }
        let count = match count {
            None => -1,
            Some(c) if c.fract() == 0.0 && c >= f64::from(i32::MIN) && c <= f64::from(i32::MAX) => {
                c as i32
            }
            Some(_) => {
                return Err(CsvError::Number {
                    path: path.to_owned(),
                    line,
                    column: "count",
                    value: cell(7).to_owned(),
                })
            }
        };
        held.bars.push(Bar {
            date,
            open: price(1, "open")?,
            high: price(2, "high")?,
            low: price(3, "low")?,
            close: price(4, "close")?,
            volume: volume.unwrap_or(-1.0),
            wap: wap.unwrap_or(-1.0),
            count,
        });
    }
    Ok(Some(held))
}

/// Write `bars` (already sorted and unique) as CSV in `layout`.
pub(crate) fn write_to<W: Write>(out: W, bars: &[Bar], layout: &Layout) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    let symbol = layout.symbol.as_deref();
    let mut header: Vec<&str> = symbol.map(|_| SYMBOL).into_iter().collect();
    header.extend(HEADER);
    w.write_record(&header)?;
    let empty = layout.missing == Missing::Empty;
    for b in bars {
        // IB's -1 says "none for this series"; a WAP of -1 only means that without volume.
        let no_volume = empty && b.volume == -1.0;
        let cell = |missing: bool, v: String| if missing { String::new() } else { v };
        let mut row: Vec<String> = symbol.map(str::to_owned).into_iter().collect();
        row.extend([
            time_text(&b.date, layout.time_format),
            b.open.to_string(),
            b.high.to_string(),
            b.low.to_string(),
            b.close.to_string(),
            cell(no_volume, b.volume.to_string()),
            cell(no_volume && b.wap == -1.0, b.wap.to_string()),
            cell(empty && b.count == -1, b.count.to_string()),
        ]);
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(date: BarTime) -> Bar {
        Bar {
            date,
            open: 1.5,
            high: 2.0,
            low: 1.0,
            close: 1.25,
            volume: 100.0,
            wap: 1.4,
            count: 7,
        }
    }

    fn layout(time_format: TimeFormat, symbol: Option<&str>, missing: Missing) -> Layout {
        Layout {
            time_format,
            symbol: symbol.map(str::to_owned),
            missing,
        }
    }

    #[test]
    fn bars_round_trip_in_every_layout_and_foreign_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("ibconn-csv-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let quote = Bar {
            volume: -1.0,
            wap: -1.0,
            count: -1,
            ..bar(BarTime::Epoch(1_764_599_405))
        };
        for (i, (l, date, form, first)) in [
            (
                layout(TimeFormat::Epoch, None, Missing::MinusOne),
                BarTime::Epoch(1_767_225_600),
                TimeForm::Epoch,
                "1767225600,",
            ),
            (
                layout(TimeFormat::Epoch, None, Missing::Empty),
                BarTime::Day(20_260_102),
                TimeForm::Yyyymmdd,
                "20260102,",
            ),
            (
                layout(TimeFormat::Iso, Some("EUR.USD"), Missing::Empty),
                BarTime::Epoch(1_764_599_405),
                TimeForm::IsoDateTime,
                "EUR.USD,2025-12-01T14:30:05Z,",
            ),
            (
                layout(TimeFormat::Iso, None, Missing::Empty),
                BarTime::Day(20_251_201),
                TimeForm::IsoDate,
                "2025-12-01,",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.join(format!("b-{i}.csv"));
            let mut bytes = Vec::new();
            let bars = [bar(date.clone()), quote.clone()];
            let mut bars = bars.to_vec();
            bars.truncate(if form.is_daily() { 1 } else { 2 });
            write_to(&mut bytes, &bars, &l).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(text.lines().nth(1).unwrap().starts_with(first), "{text}");
            fs::write(&path, &bytes).unwrap();
            let held = read(&path).unwrap().unwrap();
            assert_eq!(held.bars, bars);
            assert_eq!(held.time_form, Some(form));
            assert_eq!(held.symbol, l.symbol);
            assert_eq!(held.symbol_column, l.symbol.is_some());
            assert_eq!(held.fingerprint, Fingerprint::of(&bytes));
            if bars.len() == 2 {
                assert_eq!(held.missing, Some(l.missing));
                let quote_row = text.lines().nth(2).unwrap();
                let tail = if l.missing == Missing::Empty {
                    ",,,"
                } else {
                    ",-1,-1,-1"
                };
                assert!(quote_row.ends_with(tail), "{quote_row}");
            }
        }
        assert!(read(&dir.join("missing.csv")).unwrap().is_none());
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            fs::write(&p, text).unwrap();
            p
        };
        let bad = write(
            "bad.csv",
            "time,open,high,low,close,volume,wap,count\nx,1,1,1,1,1,1,1\n",
        );
        assert!(matches!(read(&bad), Err(CsvError::Time { line: 2, .. })));
        // A one-line file of someone else's is not "an empty CSV" to overwrite.
        let notes = write("notes.csv", "remember the milk\n");
        assert!(matches!(read(&notes), Err(CsvError::Foreign { .. })));
        let mixed = write(
            "mixed.csv",
            "time,open,high,low,close,volume,wap,count\n20260102,1,1,1,1,1,1,1\n1767225600,1,1,1,1,1,1,1\n",
        );
        assert!(matches!(read(&mixed), Err(CsvError::Time { line: 3, .. })));
        let two = write(
            "two.csv",
            "symbol,time,open,high,low,close,volume,wap,count\n\
             AAPL,2026-01-02,1,1,1,1,1,1,1\nMSFT,2026-01-05,1,1,1,1,1,1,1\n",
        );
        assert!(matches!(read(&two), Err(CsvError::Symbol { line: 3, .. })));
        let price = write(
            "price.csv",
            "time,open,high,low,close,volume,wap,count\n2026-01-02,,1,1,1,1,1,1\n",
        );
        assert!(matches!(
            read(&price),
            Err(CsvError::Number { line: 2, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn iso_times_are_strict() {
        for bad in [
            "2025-12-01T14:30:05",
            "2025-12-01 14:30:05Z",
            "2025-02-30",
            "2025-12-01T24:00:00Z",
            "2025-12-1",
            "-5",
            "2025-12-01T1é:00:0Z",
            "2025-1é-01",
        ] {
            assert!(parse_time(bad).is_none(), "{bad}");
        }
        assert_eq!(
            parse_time("1970-01-02T00:00:01Z"),
            Some((BarTime::Epoch(86_401), TimeForm::IsoDateTime))
        );
    }
}
