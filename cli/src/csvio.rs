//! The CSV output: `time,open,high,low,close,volume,wap,count`, time as epoch seconds (intraday)
//! or `YYYYMMDD` (daily and longer), oldest first; read back for resuming.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ibconn_core::backfill::bar_start_unix;
use ibconn_core::message::{Bar, BarTime};

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

/// What an earlier run of the same request answered, kept beside the CSV (`FILE.csv.covered.json`)
/// so a resume skips empty chunks (weekends, holidays) as well as fetched ones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Coverage {
    /// Symbol, bar size, whatToShow and RTH of the run: coverage of another request is ignored.
    pub(crate) request: String,
    /// Answered spans, `[start, end)` unix seconds, merged.
    pub(crate) covered: Vec<(i64, i64)>,
}

/// The coverage file beside `csv`.
pub(crate) fn coverage_path(csv: &Path) -> PathBuf {
    let mut p = csv.as_os_str().to_owned();
    p.push(".covered.json");
    PathBuf::from(p)
}

/// The coverage recorded beside `csv`, if there is a readable one (it only saves requests, so a
/// missing or unreadable file just means "unknown").
pub(crate) fn read_coverage(csv: &Path) -> Option<Coverage> {
    let text = fs::read_to_string(coverage_path(csv)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Record `coverage` beside `csv` (atomically).
pub(crate) fn write_coverage(csv: &Path, coverage: &Coverage) -> Result<(), CsvError> {
    let path = coverage_path(csv);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let io_err = |source| CsvError::Io {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_string(coverage).map_err(|e| io_err(io::Error::other(e)))?;
    fs::write(&tmp, text).map_err(io_err)?;
    fs::rename(&tmp, &path).map_err(io_err)
}

/// Bars in an existing file (none if it does not exist). `daily` says how times are written.
pub(crate) fn read(path: &Path, daily: bool) -> Result<Vec<Bar>, CsvError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CsvError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut reader = csv::Reader::from_reader(file);
    let mut bars = Vec::new();
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
        let date = if daily {
            BarTime::Day(row.time.parse().map_err(|_| bad())?)
        } else {
            BarTime::Epoch(row.time.parse().map_err(|_| bad())?)
        };
        if bar_start_unix(&date).is_none() {
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
    Ok(bars)
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

/// Write `bars` to `path` atomically (a temporary file beside it, then a rename), so an
/// interrupted run never leaves a truncated file.
pub(crate) fn write_file(path: &Path, bars: &[Bar]) -> Result<(), CsvError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let io_err = |source| CsvError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::create(&tmp).map_err(io_err)?;
    write_to(io::BufWriter::new(file), bars).map_err(|source| CsvError::Csv {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, path).map_err(io_err)
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
    fn bars_round_trip_through_a_file() {
        let dir = std::env::temp_dir().join(format!("ibconn-csv-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for (daily, date) in [
            (false, BarTime::Epoch(1_767_225_600)),
            (true, BarTime::Day(20_260_102)),
        ] {
            let path = dir.join(format!("b{daily}.csv"));
            write_file(&path, &[bar(date.clone())]).unwrap();
            assert_eq!(read(&path, daily).unwrap(), vec![bar(date)]);
        }
        assert!(read(&dir.join("missing.csv"), false).unwrap().is_empty());
        let bad = dir.join("bad.csv");
        fs::write(
            &bad,
            "time,open,high,low,close,volume,wap,count\nx,1,1,1,1,1,1,1\n",
        )
        .unwrap();
        assert!(matches!(
            read(&bad, false),
            Err(CsvError::Time { line: 2, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
