//! Command-line arguments and their parsers (dates, bar sizes).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::{Date, SECS_PER_DAY};
use ibconn_sim::cli::SimArgs;

/// Exit codes, stated once for `--help` and the docs.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  runtime or gateway failure (connection, pacing that never clears, I/O)
  2  usage or configuration error (bad arguments, unreadable input)
  3  partial result: some chunks failed; everything fetched was written";

/// ibconn: Interactive Brokers historical data without the pacing headaches.
///
/// Without `--gateway`, `fetch` runs against an embedded simulated IB Gateway in virtual time,
/// so a backfill that IB's pacing would stretch over an hour finishes in seconds.
#[derive(Debug, Parser)]
#[command(name = "ibconn", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Backfill historical bars for a symbol into CSV (resumes from an existing --out file).
    #[command(after_help = EXIT_CODES)]
    Fetch(FetchArgs),
    /// How many requests a fetch needs and how long IB's pacing makes it; sends nothing.
    #[command(after_help = EXIT_CODES)]
    Plan(PlanArgs),
    /// Classify an IB error code and message: what it means and what to do.
    #[command(after_help = EXIT_CODES)]
    Explain(ExplainArgs),
    /// Run the simulated IB Gateway on a TCP port (same as the `ibconn-sim` binary).
    #[command(after_help = EXIT_CODES)]
    Sim(SimArgs),
    /// Check a gateway: handshake plus one reqCurrentTime round trip; exit 0 healthy, 1 not
    /// (usable as a container healthcheck).
    #[command(after_help = EXIT_CODES)]
    Health(HealthArgs),
    /// Serve the HTTP status API (pool, pacing, health, Prometheus /metrics) over a pool.
    #[command(after_help = EXIT_CODES)]
    Serve(ServeArgs),
}

/// `health`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HealthArgs {
    /// The TWS / IB Gateway (or `ibconn sim`) to check.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub(crate) gateway: String,
    /// Overall deadline in seconds (connect, handshake and probe together).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub(crate) timeout: Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// The TWS / IB Gateway (or `ibconn sim`) the pool connects to.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub(crate) gateway: String,
    /// Address of the HTTP API (port 0: any free port; the bound address is printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8787")]
    pub(crate) listen: std::net::SocketAddr,
    /// Bearer token every request must carry (`Authorization: Bearer TOKEN`); default: the
    /// IBCONN_HTTP_TOKEN environment variable; without either, no authentication.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// Deadline in seconds of the live probe behind /api/ib/pool/health.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    pub(crate) probe_timeout: Duration,
}

/// Parse `HOST:PORT` (a host name or IP, and a port 1–65535).
pub(crate) fn parse_host_port(s: &str) -> Result<String, String> {
    let bad = || format!("invalid gateway {s:?}: expected HOST:PORT, e.g. 127.0.0.1:4002");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok(s.to_owned()),
        _ => Err(bad()),
    }
}

/// Parse a positive number of seconds (at most an hour).
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected seconds, > 0 and <= 3600");
    let secs: f64 = s.parse().map_err(|_| bad())?;
    if secs > 0.0 && secs <= 3_600.0 {
        Duration::try_from_secs_f64(secs).map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// What to fetch (shared by `fetch` and `plan`).
#[derive(Debug, Clone, Args)]
pub(crate) struct FetchArgs {
    /// Symbol of a US stock on SMART, e.g. AAPL.
    pub(crate) symbol: String,
    /// Bar size: 1s 5s 10s 15s 30s 1m 2m 3m 5m 10m 15m 20m 30m 1h 2h 3h 4h 8h 1d 1w 1mo, or IB's
    /// spelling ("5 mins").
    #[arg(long, value_parser = parse_bar)]
    pub(crate) bar: BarSize,
    /// Range start (inclusive), UTC: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long, value_parser = parse_date)]
    pub(crate) from: i64,
    /// Range end (exclusive), UTC: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long, value_parser = parse_date)]
    pub(crate) to: i64,
    /// IB's whatToShow.
    #[arg(long, default_value = "TRADES")]
    pub(crate) what: String,
    /// Regular trading hours only.
    #[arg(long)]
    pub(crate) rth: bool,
    /// CSV output file; bars already in it are kept and not fetched again (FILE.covered.json
    /// beside it records the spans answered, so empty ones are not asked again). Default: stdout.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Also write the run's summary as JSON to this file.
    #[arg(long)]
    pub(crate) summary_json: Option<PathBuf>,
    /// Seed of the embedded simulator (bar paths, latency jitter).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// A real TWS / IB Gateway (or an `ibconn sim`) at HOST:PORT, on wall time. Default: the
    /// embedded simulator in virtual time.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) gateway: Option<String>,
    /// Chunk requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub(crate) concurrency: u16,
}

/// `plan`: the fetch arguments plus an output format.
#[derive(Debug, Clone, Args)]
pub(crate) struct PlanArgs {
    /// What a fetch with the same arguments would do.
    #[command(flatten)]
    pub(crate) fetch: FetchArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `explain`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ExplainArgs {
    /// IB's error code, e.g. 162.
    #[arg(allow_negative_numbers = true)]
    pub(crate) code: i32,
    /// IB's message text, verbatim.
    pub(crate) message: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Parse a bar size: short aliases or IB's spelling.
pub(crate) fn parse_bar(s: &str) -> Result<BarSize, String> {
    let alias = match s {
        "1s" => Some(BarSize::Sec1),
        "5s" => Some(BarSize::Sec5),
        "10s" => Some(BarSize::Sec10),
        "15s" => Some(BarSize::Sec15),
        "30s" => Some(BarSize::Sec30),
        "1m" | "1min" => Some(BarSize::Min1),
        "2m" => Some(BarSize::Min2),
        "3m" => Some(BarSize::Min3),
        "5m" => Some(BarSize::Min5),
        "10m" => Some(BarSize::Min10),
        "15m" => Some(BarSize::Min15),
        "20m" => Some(BarSize::Min20),
        "30m" => Some(BarSize::Min30),
        "1h" => Some(BarSize::Hour1),
        "2h" => Some(BarSize::Hour2),
        "3h" => Some(BarSize::Hour3),
        "4h" => Some(BarSize::Hour4),
        "8h" => Some(BarSize::Hour8),
        "1d" => Some(BarSize::Day1),
        "1w" => Some(BarSize::Week1),
        "1mo" | "1M" => Some(BarSize::Month1),
        _ => None,
    };
    match alias {
        Some(b) => Ok(b),
        None => s.parse().map_err(|_| {
            format!("unknown bar size {s:?} (use e.g. 5s, 1m, 5m, 1h, 1d, or IB's \"5 mins\")")
        }),
    }
}

/// Parse a UTC date: `YYYY-MM-DD` (midnight) or `YYYY-MM-DDTHH:MM:SSZ`, to unix seconds.
pub(crate) fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid date {s:?}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)");
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let num = |part: &str, len: usize| -> Result<u32, String> {
        if part.len() == len && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let mut d = date.split('-');
    let (Some(y), Some(m), Some(day), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let (y, m, day) = (num(y, 4)?, num(m, 2)?, num(day, 2)?);
    let date = Date::new(i32::try_from(y).map_err(|_| bad())?, m, day);
    if !date.is_valid() {
        return Err(bad());
    }
    let mut secs = date.days() * SECS_PER_DAY;
    if let Some(t) = time {
        let mut p = t.split(':');
        let (Some(h), Some(mi), Some(sec), None) = (p.next(), p.next(), p.next(), p.next()) else {
            return Err(bad());
        };
        let (h, mi, sec) = (num(h, 2)?, num(mi, 2)?, num(sec, 2)?);
        if h > 23 || mi > 59 || sec > 59 {
            return Err(bad());
        }
        secs += i64::from(h * 3_600 + mi * 60 + sec);
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_in_utc() {
        assert_eq!(parse_date("2026-01-01"), Ok(1_767_225_600));
        assert_eq!(
            parse_date("2026-01-01T01:00:05Z"),
            Ok(1_767_225_600 + 3_605)
        );
        assert_eq!(parse_date("2024-02-29"), Ok(1_709_164_800));
        for bad in [
            "2026-1-01",
            "2026-02-30",
            "2023-02-29",
            "2026-01-01T25:00:00Z",
            "2026-01-01T01:00:00",
            "yesterday",
            "2026-01-01-01",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bar_sizes_accept_aliases_and_ib_spelling() {
        assert_eq!(parse_bar("1h"), Ok(BarSize::Hour1));
        assert_eq!(parse_bar("5 mins"), Ok(BarSize::Min5));
        assert_eq!(parse_bar("1mo"), Ok(BarSize::Month1));
        assert!(parse_bar("7h").is_err());
    }

    #[test]
    fn gateways_and_seconds_parse() {
        assert_eq!(
            parse_host_port("127.0.0.1:4002"),
            Ok("127.0.0.1:4002".to_owned())
        );
        assert_eq!(
            parse_host_port("gw.local:7497"),
            Ok("gw.local:7497".to_owned())
        );
        for bad in ["4002", ":4002", "host:", "host:0", "host:70000", "host:x"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "nan", "inf", "3601", "soon"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
