//! Small formatting helpers shared by the commands.

use std::path::Path;

use ibconn_core::civil::{Date, SECS_PER_DAY};

/// Unix seconds as ISO 8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn iso_utc(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(SECS_PER_DAY), unix.rem_euclid(SECS_PER_DAY));
    let d = Date::from_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year,
        d.month,
        d.day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix milliseconds as ISO 8601 UTC (whole seconds).
pub(crate) fn iso_utc_ms(ms: u64) -> String {
    iso_utc(i64::try_from(ms / 1000).unwrap_or(i64::MAX))
}

/// Rows as left-aligned columns separated by two spaces (the first row is the header).
pub(crate) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(r).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// Write `bytes` to `path` atomically (temp file beside it, then rename), creating the
/// directory if needed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    ensure_parent(path)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Create `path`'s parent directory if it is missing.
pub(crate) fn ensure_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(345_479_400), "1980-12-12T14:30:00Z");
        assert_eq!(iso_utc_ms(1_767_225_605_999), "2026-01-01T00:00:05Z");
    }

    #[test]
    fn tables_align() {
        let t = table(&[
            ["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            ["long".to_owned(), "x".to_owned(), "y".to_owned()],
        ]);
        assert_eq!(t, "A     BB  C\nlong  x   y\n");
    }
}
