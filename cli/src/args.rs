//! Command-line arguments and their parsers (dates and bar sizes: [`crate::dates`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use ibconn_core::bar_size::BarSize;
use ibconn_core::contract_spec::ContractSpec;
use ibconn_core::what_to_show::{ParseWhatToShowError, WhatToShow};
use ibconn_sim::cli::SimArgs;

use crate::contract::{self, ContractArgs};
use crate::csvio::TimeFormat;
use crate::dates;

/// Exit codes, stated once for `--help` and the docs.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  runtime or gateway failure (connection, pacing that never clears, I/O, a symbol that
     could not be checked, a lease `ids release` refused)
  2  usage or configuration error (bad arguments, bad ibconn.toml or IBCONN_* variable,
     unreadable input)
  3  partial result: some chunks failed; everything fetched was written (several symbols:
     some files written, some symbol incomplete or unknown)
  4  validate / head / fetch: a symbol does not exist (IB error 200, no security
     definition); a fetch of several symbols only when none exists
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
    /// Explain an IB error code and message in plain words: what happened, what ibconn does
    /// about it, what you can do.
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
    /// Stream live bars or ticks of symbols until Ctrl-C (or --for): one CSV row (or JSON line)
    /// each; a lost session is requested again and reported as a gap.
    #[command(after_help = EXIT_CODES)]
    Stream(crate::stream::StreamArgs),
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
    /// Print the final summary as JSON on stdout (instead of text on stderr); needs --out or
    /// --out-dir, since without them the bars go to stdout.
    #[arg(long, requires = "destination")]
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
    /// Seconds between the dashboard's history samples (default 10: an hour of 360 samples and
    /// a day of one a minute). Shorter fills the rings quickly, for tests and benchmarks.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, hide = true)]
    pub(crate) history_interval: Option<Duration>,
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
#[command(group(ArgGroup::new("destination").args(["out", "out_dir"])))]
pub(crate) struct FetchArgs {
    /// The contracts, e.g. AAPL, EUR.USD, SPX:IND, ES:FUT:202612, ESZ6,
    /// AAPL:OPT:20261218:200:C, @265598 (see the README's Contracts section). Several need
    /// --out-dir (fetch); they share one pacer, their requests interleaved.
    #[arg(
        value_name = "SYMBOL",
        value_parser = contract::parse_spec,
        required_unless_present = "symbols_file"
    )]
    pub(crate) symbols: Vec<ContractSpec>,
    /// Read more contracts from FILE: one per line, `#` starts a comment, blank lines skipped.
    #[arg(long, value_name = "FILE")]
    pub(crate) symbols_file: Option<PathBuf>,
    /// Overrides of the contract's defaults.
    #[command(flatten)]
    pub(crate) contract: ContractArgs,
    /// Bar size: 1s 5s 10s 15s 30s, 1m (or 1min) 2m 3m 5m 10m 15m 20m 30m, 1h (or 60m, 1H) 2h
    /// 3h 4h 8h, 1d, 1w, 1mo, or IB's spelling ("5 mins"). 1M is refused: 1mo or 1min?
    #[arg(long, value_parser = dates::parse_bar)]
    pub(crate) bar: BarSize,
    /// Range start (inclusive): YYYY-MM-DD (UTC midnight), YYYY-MM-DDTHH:MM[:SS]Z, with a UTC
    /// offset (2025-12-01T09:30:00-05:00) or a zone name ("2025-12-01T09:30 America/New_York").
    /// This or --last is needed.
    #[arg(
        long = "from",
        value_name = "DATE",
        value_parser = dates::parse_date,
        conflicts_with = "last"
    )]
    pub(crate) from_date: Option<i64>,
    /// Range end (exclusive), in the same forms. Default: now (on the embedded simulator, its
    /// clock: 2026-01-06T15:00:00Z).
    #[arg(long = "to", value_name = "DATE", value_parser = dates::parse_date)]
    pub(crate) to_date: Option<i64>,
    /// The range as a span ending at --to (or now): 90m, 6h, 30d, 2w, 3mo, 1y.
    #[arg(long, value_name = "SPAN", value_parser = dates::parse_span)]
    pub(crate) last: Option<dates::Span>,
    /// Range start, unix seconds ([`FetchArgs::resolve_range`]).
    #[arg(skip)]
    pub(crate) from: i64,
    /// Range end (exclusive), unix seconds ([`FetchArgs::resolve_range`]).
    #[arg(skip)]
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
    #[arg(long, conflicts_with = "out_dir")]
    pub(crate) out: Option<PathBuf>,
    /// One CSV per contract in DIR (created if missing), named after it: AAPL.csv,
    /// EUR.USD.csv, ES-FUT-202612.csv (see the README); each resumes like --out, and has the
    /// symbol column.
    #[arg(long, value_name = "DIR")]
    pub(crate) out_dir: Option<PathBuf>,
    /// How the time column is written: iso (2025-12-01T14:30:05Z, 2025-12-01 for daily and
    /// longer bars) or epoch (unix seconds, YYYYMMDD for daily and longer bars). Default: an
    /// existing file's own format, iso for a new one; the other format than a file's is refused.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) time_format: Option<TimeFormat>,
    /// Start every row with the contract (a first column `symbol`); always on with --out-dir.
    #[arg(long)]
    pub(crate) with_symbol: bool,
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

impl FetchArgs {
    /// Fill [`FetchArgs::from`] and [`FetchArgs::to`] from `--from`, `--to` and `--last`, `now`
    /// (unix seconds) standing for a missing `--to`: the gateway's now — the wall clock, or the
    /// embedded simulator's clock ([`dates::now_for`]).
    pub(crate) fn resolve_range(&mut self, now: i64) -> Result<(), dates::DateError> {
        (self.from, self.to) = dates::resolve(self.from_date, self.to_date, self.last, now)?;
        Ok(())
    }
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

/// Parse IB's `whatToShow` (case-insensitive).
pub(crate) fn parse_what(s: &str) -> Result<WhatToShow, String> {
    s.parse().map_err(|e: ParseWhatToShowError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
