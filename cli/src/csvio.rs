//! The CSV output: `time,open,high,low,close,volume,wap,count`, time as epoch seconds (intraday)
//! or `YYYYMMDD` (daily and longer), oldest first; read back for resuming.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ibconn_core::backfill::bar_start_unix;
use ibconn_core::message::{Bar, BarTime};

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
    #[error("{path}: line {line}: bad time {time:?} (expected epoch seconds or YYYYMMDD)")]
    Time {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// The text.
        time: String,
    },
}

impl CsvError {
    /// The documented exit code: 2 for a file we will not use, 1 for I/O.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Io { .. } => 1,
            Self::Csv { .. } | Self::Time { .. } | Self::Foreign { .. } => 2,
        }
    }
}

const HEADER: [&str; 8] = [
    "time", "open", "high", "low", "close", "volume", "wap", "count",
];

#[derive(Debug, serde::Deserialize)]
struct Row {
    time: String,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    wap: f64,
    count: i32,
}

fn time_text(t: &BarTime) -> String {
    match t {
        BarTime::Epoch(s) => s.to_string(),
        BarTime::Day(d) => format!("{d:08}"),
        BarTime::Text(s) => s.clone(),
    }
}

/// The coverage file beside `csv`.
pub(crate) fn coverage_path(csv: &Path) -> PathBuf {
    let mut p = csv.as_os_str().to_owned();
    p.push(".covered.json");
    PathBuf::from(p)
}

/// An existing CSV: its bars, fingerprint and how its times are written.
#[derive(Debug)]
pub(crate) struct Held {
    /// The bars, as in the file.
    pub(crate) bars: Vec<Bar>,
    /// The bytes read.
    pub(crate) fingerprint: Fingerprint,
    /// `epoch` or `yyyymmdd` (`None` without rows).
    pub(crate) time_format: Option<&'static str>,
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
/// this tool's CSV — another header, a row that does not parse, times of two formats — is an
/// error: it is never overwritten.
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
    if header.iter().ne(HEADER) {
        return Err(CsvError::Foreign {
            path: path.to_owned(),
            header: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    let mut bars = Vec::new();
    let mut format = None;
    for row in reader.deserialize::<Row>() {
        let row = row.map_err(|source| CsvError::Csv {
            path: path.to_owned(),
            source,
        })?;
        let bad = || CsvError::Time {
            path: path.to_owned(),
            line: bars.len() as u64 + 2,
            time: row.time.clone(),
        };
        let (date, this) = match as_day(&row.time) {
            Some(day) => (BarTime::Day(day), "yyyymmdd"),
            None => (
                BarTime::Epoch(row.time.parse().map_err(|_| bad())?),
                "epoch",
            ),
        };
        if *format.get_or_insert(this) != this || bar_start_unix(&date).is_none() {
            return Err(bad());
        }
        bars.push(Bar {
            date,
            open: row.open,
            high: row.high,
            low: row.low,
            close: row.close,
            volume: row.volume,
            wap: row.wap,
            count: row.count,
        });
    }
    Ok(Some(Held {
        bars,
        fingerprint,
        time_format: format,
    }))
}

/// Write `bars` (already sorted and unique) as CSV.
pub(crate) fn write_to<W: Write>(out: W, bars: &[Bar]) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    for b in bars {
        w.write_record([
            time_text(&b.date),
            b.open.to_string(),
            b.high.to_string(),
            b.low.to_string(),
            b.close.to_string(),
            b.volume.to_string(),
            b.wap.to_string(),
            b.count.to_string(),
        ])?;
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

    #[test]
    fn bars_round_trip_and_foreign_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("ibconn-csv-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for (format, date) in [
            ("epoch", BarTime::Epoch(1_767_225_600)),
            ("yyyymmdd", BarTime::Day(20_260_102)),
        ] {
            let path = dir.join(format!("b-{format}.csv"));
            let mut bytes = Vec::new();
            write_to(&mut bytes, &[bar(date.clone())]).unwrap();
            fs::write(&path, &bytes).unwrap();
            let held = read(&path).unwrap().unwrap();
            assert_eq!(held.bars, vec![bar(date)]);
            assert_eq!(held.time_format, Some(format));
            assert_eq!(held.fingerprint, Fingerprint::of(&bytes));
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
        fs::remove_dir_all(&dir).unwrap();
    }
}
