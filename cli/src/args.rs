//! Command-line arguments and their parsers (dates, bar sizes).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::{Date, SECS_PER_DAY};
use ibconn_core::contract_spec::ContractSpec;
use ibconn_core::what_to_show::{ParseWhatToShowError, WhatToShow};
use ibconn_sim::cli::SimArgs;

use crate::contract::{self, ContractArgs};

/// Exit codes, stated once for `--help` and the docs.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  runtime or gateway failure (connection, pacing that never clears, I/O, a symbol that
     could not be checked, a lease `ids release` refused)
  2  usage or configuration error (bad arguments, bad ibconn.toml or IBCONN_* variable,
     unreadable input)
  3  partial result: some chunks failed; everything fetched was written
  4  validate / head: a symbol does not exist (IB error 200, no security definition)
validate exits 2 when a contract matches several (their table is printed): name one.";

/// ibconn: Interactive Brokers historical data without the pacing headaches.
///
/// Without `--gateway`, `fetch` runs against an embedded simulated IB Gateway in virtual time,
/// so a backfill that IB's pacing would stretch over an hour finishes in seconds.
#[derive(Debug, Parser)]
#[command(name = "ibconn", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// Configuration file (default: $IBCONN_CONFIG, else ./ibconn.toml if present, else the
    /// built-in defaults; IBCONN_* variables override it, flags override both).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Backfill historical bars for a symbol into CSV (resumes from an existing --out file).
    #[command(after_help = EXIT_CODES)]
    Fetch(FetchCmdArgs),
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
    /// Check symbols: contract details (and head timestamp) from the gateway, through a cache.
    ///
    /// A symbol IB answers with error 200 (no security definition) is invalid, and that answer
    /// is cached; a failure that says nothing about the symbol (connection refused, timeout) is
    /// reported as an error and never cached. Exit 0 all valid, 4 some invalid, 1 some could
    /// not be checked.
    #[command(after_help = EXIT_CODES)]
    Validate(ValidateArgs),
    /// The earliest data point IB has for a symbol (head timestamp).
    #[command(after_help = EXIT_CODES)]
    Head(HeadArgs),
    /// List or release client-id leases in the shared registry file.
    #[command(after_help = EXIT_CODES)]
    Ids(IdsArgs),
    /// Print the effective configuration (defaults < ibconn.toml < IBCONN_* variables).
    #[command(after_help = EXIT_CODES)]
    Config(ConfigArgs),
}

/// `fetch`: what to fetch plus an output format.
#[derive(Debug, Clone, Args)]
pub(crate) struct FetchCmdArgs {
    /// What to fetch.
    #[command(flatten)]
    pub(crate) fetch: FetchArgs,
    /// Print the final summary as JSON on stdout (instead of text on stderr); needs --out,
    /// since without it the bars go to stdout.
    #[arg(long, requires = "out")]
    pub(crate) json: bool,
}

/// `validate`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ValidateArgs {
    /// Contracts, e.g. AAPL EUR.USD SPX:IND ES:FUT:202612 ESZ6 AAPL:OPT:20261218:200:C @265598
    /// (see the README's Contracts section). One that matches several lists them (exit 2).
    #[arg(required = true, value_name = "SYMBOL", value_parser = contract::parse_spec)]
    pub(crate) symbols: Vec<ContractSpec>,
    /// Overrides applied to every contract.
    #[command(flatten)]
    pub(crate) contract: ContractArgs,
    /// A real TWS / IB Gateway (or an `ibconn sim`) at HOST:PORT; `embedded` for the embedded
    /// simulator. Default: `gateway` from the config, else the embedded simulator.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_gateway)]
    pub(crate) gateway: Option<String>,
    /// The cache file (default: validate.cache_file from the config).
    #[arg(long, value_name = "FILE")]
    pub(crate) cache: Option<PathBuf>,
    /// Ask the gateway even for symbols with a fresh cache entry.
    #[arg(long)]
    pub(crate) refresh: bool,
    /// Seed of the embedded simulator.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `head`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HeadArgs {
    /// The contract, e.g. AAPL, EUR.USD, SPX:IND, ESZ6 (see the README's Contracts section).
    #[arg(value_name = "SYMBOL", value_parser = contract::parse_spec)]
    pub(crate) symbol: ContractSpec,
    /// Overrides of the contract's defaults.
    #[command(flatten)]
    pub(crate) contract: ContractArgs,
    /// IB's whatToShow: TRADES, MIDPOINT, BID, ASK, BID_ASK, ADJUSTED_LAST, … (any case).
    /// Default: MIDPOINT for forex, TRADES otherwise.
    #[arg(long, value_parser = parse_what)]
    pub(crate) what: Option<WhatToShow>,
    /// Regular trading hours only.
    #[arg(long)]
    pub(crate) rth: bool,
    /// A real TWS / IB Gateway (or an `ibconn sim`) at HOST:PORT; `embedded` for the embedded
    /// simulator. Default: `gateway` from the config, else the embedded simulator.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_gateway)]
    pub(crate) gateway: Option<String>,
    /// Seed of the embedded simulator.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ids`.
#[derive(Debug, Clone, Args)]
pub(crate) struct IdsArgs {
    /// The registry file (default: client_ids.registry_file from the config).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) registry: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// What to do (default: list).
    #[command(subcommand)]
    pub(crate) action: Option<IdsAction>,
}

/// `ids` actions.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum IdsAction {
    /// List leases (id, purpose, owner pid, liveness, expiry) and ids IB reported in use (326).
    #[command(after_help = EXIT_CODES)]
    List,
    /// Release leases. A lease whose holder is alive (or cannot be checked) and whose TTL has
    /// not run out is only released with --force: its process may still be connected with that
    /// id, and another process taking it would be refused by IB (error 326).
    #[command(after_help = EXIT_CODES)]
    Release(ReleaseArgs),
}

/// `ids release`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReleaseArgs {
    /// Client ids to release.
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub(crate) ids: Vec<i32>,
    /// Release every lease (stale ones; live ones too with --force) and forget 326 marks.
    #[arg(long)]
    pub(crate) all: bool,
    /// Also release leases held by a live process.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `config`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArgs {
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The `--gateway` of `fetch`, `validate` and `head`: `HOST:PORT` or `embedded`.
pub(crate) fn parse_gateway(s: &str) -> Result<String, String> {
    if s == EMBEDDED {
        Ok(s.to_owned())
    } else {
        parse_host_port(s)
    }
}

/// The `--gateway` value selecting the embedded simulator.
pub(crate) const EMBEDDED: &str = "embedded";

/// `health`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HealthArgs {
    /// The TWS / IB Gateway (or `ibconn sim`) to check (default: `gateway` from the config).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub(crate) gateway: Option<String>,
    /// Overall deadline in seconds (connect, handshake and probe together; default:
    /// health.timeout_secs from the config, 5).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) timeout: Option<Duration>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// The TWS / IB Gateway (or `ibconn sim`) the pool connects to (default: `gateway` from
    /// the config).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub(crate) gateway: Option<String>,
    /// Address of the HTTP API: IP:PORT, [IPv6]:PORT or localhost:PORT (port 0: any free port;
    /// the bound address is printed; default: http.listen from the config, 127.0.0.1:8787).
    /// Anything but loopback (127.0.0.0/8, ::1, localhost) needs a token, or
    /// --insecure-no-token.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub(crate) listen: Option<std::net::SocketAddr>,
    /// Bearer token every request must carry (`Authorization: Bearer TOKEN`); default: the
    /// IBCONN_HTTP_TOKEN environment variable, else http.token from the config; without any,
    /// no authentication (allowed on a loopback address only, unless --insecure-no-token).
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// Serve on a non-loopback address without a token: anyone who reaches the port reads the
    /// pool's state. Without this flag `serve` refuses such a bind (exit 2). Use it only when
    /// something in front (a firewall, an authenticating proxy) restricts access.
    #[arg(long)]
    pub(crate) insecure_no_token: bool,
    /// Deadline in seconds of the live probe behind /api/ib/pool/health (default:
    /// health.probe_timeout_secs from the config, 2).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) probe_timeout: Option<Duration>,
    /// Deadline in seconds for one request: its headers and body must arrive, and the answer
    /// be ready, within it; else 408 (client too slow) or 503 (answer too slow) in the JSON
    /// envelope. Also how long an idle keep-alive connection stays open. Default: 10, or the
    /// probe timeout + 2 when that is longer, so a health call can wait out its probe.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) request_timeout: Option<Duration>,
    /// Requests handled at once; one more is answered 503 `overloaded` (with Retry-After) at
    /// once instead of queueing. Default: 64.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub(crate) max_concurrent_requests: Option<u32>,
}

/// Parse the listen address: `IP:PORT`, `[IPv6]:PORT`, or `localhost:PORT` (127.0.0.1).
pub(crate) fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let bad = || format!("invalid listen address {s:?}: expected ADDR:PORT, e.g. 127.0.0.1:8787");
    match s.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => port
            .parse::<u16>()
            .map(|p| std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, p)))
            .map_err(|_| bad()),
        _ => Err(bad()),
    }
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
    /// The contract, e.g. AAPL, EUR.USD, SPX:IND, ES:FUT:202612, ESZ6,
    /// AAPL:OPT:20261218:200:C, @265598 (see the README's Contracts section).
    #[arg(value_name = "SYMBOL", value_parser = contract::parse_spec)]
    pub(crate) symbol: ContractSpec,
    /// Overrides of the contract's defaults.
    #[command(flatten)]
    pub(crate) contract: ContractArgs,
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
    /// IB's whatToShow: TRADES, MIDPOINT, BID, ASK, BID_ASK, ADJUSTED_LAST, … (any case).
    /// Default: MIDPOINT for forex, TRADES otherwise.
    #[arg(long, value_parser = parse_what)]
    pub(crate) what: Option<WhatToShow>,
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
    /// A real TWS / IB Gateway (or an `ibconn sim`) at HOST:PORT, on wall time; `embedded` for
    /// the embedded simulator. Default: `gateway` from the config, else the embedded simulator
    /// in virtual time.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_gateway)]
    pub(crate) gateway: Option<String>,
    /// Chunk requests in flight at once (default: fetch.concurrency from the config, 4).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub(crate) concurrency: Option<u16>,
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

/// Parse IB's `whatToShow` (case-insensitive).
pub(crate) fn parse_what(s: &str) -> Result<WhatToShow, String> {
    s.parse().map_err(|e: ParseWhatToShowError| e.to_string())
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
    fn listen_addresses_take_ips_and_localhost() {
        assert_eq!(
            parse_listen("localhost:8787"),
            Ok("127.0.0.1:8787".parse().unwrap())
        );
        assert_eq!(parse_listen("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        assert_eq!(
            parse_listen("0.0.0.0:80"),
            Ok("0.0.0.0:80".parse().unwrap())
        );
        for bad in [
            "localhost",
            "localhost:x",
            "example.com:80",
            ":80",
            "127.0.0.1",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
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
    fn what_to_show_takes_ibs_words_in_any_case() {
        assert_eq!(parse_what("TRADES"), Ok(WhatToShow::Trades));
        assert_eq!(parse_what("bid_ask"), Ok(WhatToShow::BidAsk));
        assert!(parse_what("BIDASK").is_err());
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
