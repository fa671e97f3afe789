//! `ibconn stream SYMBOL… (--bars SIZE | --ticks [--what …])`: live data as CSV rows (or JSON
//! lines) until Ctrl-C or `--for`, through the pool's streams — so a lost session, 1101 or a
//! gateway restart costs a gap, reported as one, not the stream.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use ibconn_core::bar_size::BarSize;
use ibconn_core::classify::ErrorClass;
use ibconn_core::client_id::Purpose;
use ibconn_core::connection::RequestError;
use ibconn_core::contract_spec::ContractSpec;
use ibconn_core::message::{BarTime, Contract, TickByTick};
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::stream::{
    MarketDataType, StreamData, StreamItem, StreamQuery, Tick, TickByTickKind,
};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::GatewayConfig;
use ibconn_tokio::{CallError, Error as PoolError, Subscription};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::args::{parse_gateway, parse_what};
use crate::config::Settings;
use crate::contract::{self, ContractArgs, ContractError};
use crate::dates;
use crate::probe::{self, ProbeError};
use crate::session::{self, Session};
use crate::signals::Stop;
use crate::util::{iso_utc, iso_utc_ms};
use crate::validate::resolve_gateway;

/// `stream`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("series").required(true).args(["bars", "ticks"])))]
pub(crate) struct StreamArgs {
    /// Contracts, e.g. AAPL EUR.USD ES:FUT:202612 (see the README's Contracts section).
    #[arg(required = true, value_name = "SYMBOL", value_parser = contract::parse_spec)]
    pub(crate) symbols: Vec<ContractSpec>,
    /// Overrides applied to every contract.
    #[command(flatten)]
    pub(crate) contract: ContractArgs,
    /// Bars: 5s are IB's real-time bars; any other size (1m, 5m, 1h, …) is the forming bar of a
    /// keep-up-to-date historical request (the last ten bars first, then each update).
    #[arg(long, value_name = "SIZE", value_parser = dates::parse_bar)]
    pub(crate) bars: Option<BarSize>,
    /// Ticks: level-1 quotes and trades (bid, ask, last, sizes, volume), or with --what one
    /// tick-by-tick series.
    #[arg(long)]
    pub(crate) ticks: bool,
    /// With --ticks: a tick-by-tick series instead of level-1 ticks. With --bars: IB's
    /// whatToShow (TRADES, MIDPOINT, BID, ASK; default MIDPOINT for forex, TRADES otherwise).
    #[arg(long, value_name = "WHAT")]
    pub(crate) what: Option<String>,
    /// Regular trading hours only (bars).
    #[arg(long)]
    pub(crate) rth: bool,
    /// With --ticks: delayed data (free, 15–20 minutes late) where the account has no
    /// market-data subscription for the exchange (IB would refuse live data with 354).
    #[arg(long, requires = "ticks")]
    pub(crate) delayed: bool,
    /// Append rows to this CSV file (a header first if it is new); default: stdout.
    #[arg(long, value_name = "FILE.csv")]
    pub(crate) out: Option<PathBuf>,
    /// One JSON object per line instead of CSV (gaps and notices included as their own lines).
    #[arg(long)]
    pub(crate) json: bool,
    /// Stop after this span (90s, 5m, 1h); default: until Ctrl-C.
    #[arg(long = "for", value_name = "SPAN", value_parser = parse_for)]
    pub(crate) duration: Option<Duration>,
    /// A real TWS / IB Gateway (or an `ibconn sim`) at HOST:PORT; `embedded` for the embedded
    /// simulator (its clock starts at 2026-01-06T15:00:00Z, a trading day, and runs in real
    /// time). Default: `gateway` from the config, else the embedded simulator.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_gateway)]
    pub(crate) gateway: Option<String>,
    /// Seed of the embedded simulator.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

/// A tick-by-tick series (`--ticks --what`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TickSeries {
    /// Trades.
    Last,
    /// Every trade, odd lots included.
    #[value(alias = "alllast")]
    AllLast,
    /// Quote changes.
    #[value(alias = "bidask")]
    BidAsk,
    /// Midpoint changes.
    #[value(alias = "midpoint")]
    Mid,
}

fn parse_for(s: &str) -> Result<Duration, String> {
    match dates::parse_span(s).map_err(|e| e.to_string())? {
        dates::Span::Secs(n) if n > 0 => Ok(Duration::from_secs(n.unsigned_abs())),
        _ => Err(format!(
            "--for wants a positive fixed span (90s, 5m, 1h, 2d), not {s:?}"
        )),
    }
}

/// Why `stream` could not run (its exit code says which kind).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A contract cannot be asked for.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The gateway could not be reached or refused.
    #[error("{0}")]
    Gateway(String),
    /// The output could not be written.
    #[error("cannot write {what}: {error}")]
    Output {
        /// Where.
        what: String,
        /// Why.
        error: io::Error,
    },
}

impl StreamError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Contract(_) => 2,
            Self::Gateway(_) | Self::Output { .. } => 1,
        }
    }
}

/// What kind of rows the run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    Bars,
    Ticks,
    TickByTick,
}

impl Rows {
    fn header(self) -> &'static str {
        match self {
            Self::Bars => "time,symbol,open,high,low,close,volume,wap,count",
            Self::Ticks => "time,symbol,field,price,size,value",
            Self::TickByTick => "time,symbol,type,price,size,bid,ask,bid_size,ask_size,exchange",
        }
    }
}

/// The query for `contract` the arguments ask for.
fn query_for(args: &StreamArgs, contract: Contract) -> Result<(StreamQuery, Rows), StreamError> {
    if let Some(bar) = args.bars {
        let what = match args.what.as_deref() {
            Some(w) => parse_what(w).map_err(StreamError::Usage)?,
            None if contract.sec_type == "CASH" => WhatToShow::Midpoint,
            None => WhatToShow::Trades,
        };
        if bar == BarSize::Sec5 {
            // IB's real-time bars take these four only (else 321 after the request went out).
            let served = [
                WhatToShow::Trades,
                WhatToShow::Midpoint,
                WhatToShow::Bid,
                WhatToShow::Ask,
            ];
            if !served.contains(&what) {
                return Err(StreamError::Usage(format!(
                    "--bars 5s (IB's real-time bars) takes --what TRADES, MIDPOINT, BID or ASK, \
                     not {what}"
                )));
            }
            let q = StreamQuery::RealTimeBars {
                contract,
                what_to_show: what,
                use_rth: args.rth,
            };
            return Ok((q, Rows::Bars));
        }
        // The last ten bars first, in seconds (IB's "N S" takes up to a day's worth).
        let secs = (u64::from(bar.seconds()) * 10).clamp(60, 86_400);
        let duration = format!("{secs} S")
            .parse()
            .map_err(|e| StreamError::Usage(format!("--bars {bar}: {e}")))?;
        let mut q = HistoricalQuery::new(contract, EndTime::Now, duration, bar, what);
        q.use_rth = args.rth;
        return Ok((StreamQuery::BarUpdates(q), Rows::Bars));
    }
    let Some(what) = args.what.as_deref() else {
        let data_type = if args.delayed {
            MarketDataType::Delayed
        } else {
            MarketDataType::Live
        };
        let q = StreamQuery::MarketData {
            contract,
            generic_ticks: String::new(),
            snapshot: false,
            data_type,
        };
        return Ok((q, Rows::Ticks));
    };
    if args.delayed {
        return Err(StreamError::Usage(
            "--delayed is for level-1 ticks (--ticks without --what): IB has no delayed \
             tick-by-tick data"
                .into(),
        ));
    }
    let series = TickSeries::from_str(what, true).map_err(|_| {
        StreamError::Usage(format!(
            "--what {what:?} with --ticks: one of last, all-last, bid-ask (or bidask), mid"
        ))
    })?;
    let kind = match series {
        TickSeries::Last => TickByTickKind::Last,
        TickSeries::AllLast => TickByTickKind::AllLast,
        TickSeries::BidAsk => TickByTickKind::BidAsk { ignore_size: false },
        TickSeries::Mid => TickByTickKind::MidPoint,
    };
    Ok((StreamQuery::TickByTick { contract, kind }, Rows::TickByTick))
}

/// `ibconn stream`: runs until Ctrl-C, `--for`, or every stream ended.
pub(crate) fn stream(args: &StreamArgs, settings: &Settings) -> Result<ExitCode, StreamError> {
    let mut queries = Vec::new();
    let mut rows = Rows::Ticks;
    for spec in &args.symbols {
        let contract = contract::resolve(spec, &args.contract)?;
        if contract::is_partial(&contract) {
            return Err(StreamError::Usage(format!(
                "{spec} names several contracts; name one (ibconn validate {spec} lists them)"
            )));
        }
        let (q, r) = query_for(args, contract)?;
        rows = r;
        queries.push((spec.to_string(), q));
    }
    let gateway = resolve_gateway(args.gateway.as_deref(), settings);
    let sim_start = gateway
        .is_none()
        .then(|| GatewayConfig::default().start_unix_ms);
    let rt = session::runtime().map_err(StreamError::Gateway)?;
    let stop = Stop::install();
    rt.block_on(async {
        let session =
            Session::open_at(gateway.as_deref(), args.seed, settings, "stream", sim_start)
                .await
                .map_err(|e| StreamError::Gateway(e.to_string()))?;
        if sim_start.is_some() {
            eprintln!(
                "ibconn: embedded simulator: its clock starts at 2026-01-06T15:00:00Z and runs \
                 in real time"
            );
        }
        let result = run(&session, queries, args, rows, &stop).await;
        session.close().await;
        result
    })
}

/// Subscribe to every query on one streaming lease, then write what arrives.
async fn run(
    session: &Session,
    queries: Vec<(String, StreamQuery)>,
    args: &StreamArgs,
    rows: Rows,
    stop: &Stop,
) -> Result<ExitCode, StreamError> {
    let timeout = session.acquire_timeout();
    let conn = probe::acquire_fast(session.pool(), Purpose::Streaming, session.addr(), timeout)
        .await
        .map_err(|e: ProbeError| StreamError::Gateway(e.to_string()))?;
    let (tx, mut rx) = mpsc::channel::<(usize, Option<Result<StreamItem, PoolError>>)>(1024);
    let mut names = Vec::new();
    for (i, (name, query)) in queries.into_iter().enumerate() {
        let sub = conn
            .subscribe(query)
            .await
            .map_err(|e| StreamError::Gateway(format!("{name}: {e}")))?;
        tokio::spawn(forward(i, sub, tx.clone()));
        names.push(name);
    }
    drop(tx);
    // Opened once every stream is requested: a run that cannot start writes nothing.
    let out = &mut Output::open(args, rows)?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let (mut open, mut failed, mut unknown) = (names.len(), 0usize, 0usize);
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            () = stop.wait() => break,
            () = sleep_until(deadline) => break,
        };
        let Some((i, item)) = next else { break };
        let name = names.get(i).map_or("?", String::as_str);
        match item {
            Some(Ok(item)) => {
                if !out.item(name, &item)? {
                    // The reader of stdout left (`| head`): stop quietly.
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Some(Err(e)) => {
                open -= 1;
                failed += 1;
                unknown += usize::from(is_unknown_symbol(&e));
                out.note(&format!("{name}: stream ended: {e}"));
            }
            None => open -= 1,
        }
        if open == 0 {
            break;
        }
    }
    out.flush()?;
    Ok(match failed {
        0 => ExitCode::SUCCESS,
        n if n == names.len() && unknown == n => ExitCode::from(4),
        n if n == names.len() => ExitCode::FAILURE,
        _ => ExitCode::from(3),
    })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Move one subscription's items to the writer; its end (`None` or an error) last.
async fn forward(
    i: usize,
    mut sub: Subscription,
    tx: mpsc::Sender<(usize, Option<Result<StreamItem, PoolError>>)>,
) {
    loop {
        let next = sub.next().await;
        let end = !matches!(next, Some(Ok(_)));
        if tx.send((i, next)).await.is_err() || end {
            return;
        }
    }
}

/// Error 200: IB has no such contract.
fn is_unknown_symbol(e: &PoolError) -> bool {
    matches!(
        e,
        PoolError::Call(CallError::Request(RequestError::Api {
            class: ErrorClass::NoSecurityDefinition,
            ..
        }))
    )
}

/// Where rows go: stdout or a CSV file, as CSV or JSON lines; notes go to stderr (or, as JSON
/// lines, with the rows).
struct Output {
    sink: Box<dyn Write>,
    what: String,
    json: bool,
}

impl Output {
    fn open(args: &StreamArgs, rows: Rows) -> Result<Self, StreamError> {
        let (sink, what, fresh): (Box<dyn Write>, String, bool) = match &args.out {
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|error| StreamError::Output {
                        what: path.display().to_string(),
                        error,
                    })?;
                let fresh = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
                (
                    Box::new(io::BufWriter::new(file)),
                    path.display().to_string(),
                    fresh,
                )
            }
            None => (Box::new(io::stdout()), "stdout".to_owned(), true),
        };
        let mut out = Self {
            sink,
            what,
            json: args.json,
        };
        if fresh && !args.json {
            out.line(rows.header())?;
        }
        Ok(out)
    }

    /// Write one line; `false` when stdout's reader left.
    fn line(&mut self, line: &str) -> Result<bool, StreamError> {
        match writeln!(self.sink, "{line}").and_then(|()| self.sink.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(error) => Err(StreamError::Output {
                what: self.what.clone(),
                error,
            }),
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        match self.sink.flush() {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(StreamError::Output {
                what: self.what.clone(),
                error: e,
            }),
            _ => Ok(()),
        }
    }

    fn note(&mut self, text: &str) {
        eprintln!("ibconn: {text}");
    }

    /// One item: a row (or JSON line), or a note for gaps and the like.
    fn item(&mut self, symbol: &str, item: &StreamItem) -> Result<bool, StreamError> {
        let line = if self.json {
            json_line(symbol, item)
        } else {
            match csv_row(symbol, item) {
                Some(row) => row,
                None => {
                    if let Some(note) = note(symbol, item) {
                        self.note(&note);
                    }
                    return Ok(true);
                }
            }
        };
        self.line(&line)
    }
}

fn bar_time(t: &BarTime) -> String {
    match t {
        BarTime::Epoch(s) => iso_utc(*s),
        other => other.to_string(),
    }
}

fn now_ms() -> u64 {
    ibconn_core::client_id::UnixMillis::from_system_time(std::time::SystemTime::now()).0
}

/// Received now, to the millisecond (level-1 ticks carry no time of their own).
fn received() -> String {
    let ms = now_ms();
    let base = iso_utc_ms(ms);
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms % 1000)
}

fn num(v: f64) -> String {
    ibconn_core::wire::fields::format_f64(v)
}

/// A bar's volume, WAP or count: IB's -1 (no value, e.g. forex) as an empty cell.
fn opt_num(v: f64) -> String {
    if v < 0.0 {
        String::new()
    } else {
        num(v)
    }
}

/// The same for JSON: `null`.
fn opt_json(v: f64) -> Value {
    if v < 0.0 {
        Value::Null
    } else {
        json!(v)
    }
}

/// A CSV row for data items; `None` for the stream's own items (gaps, notices).
fn csv_row(symbol: &str, item: &StreamItem) -> Option<String> {
    let StreamItem::Data(data) = item else {
        return None;
    };
    let sym = csv_field(symbol);
    Some(match data {
        StreamData::RealTimeBar(b) => bar_row(
            &iso_utc(b.time),
            &sym,
            [b.open, b.high, b.low, b.close],
            [b.volume, b.wap, f64::from(b.count)],
        ),
        StreamData::Bar(b) => bar_row(
            &bar_time(&b.date),
            &sym,
            [b.open, b.high, b.low, b.close],
            [b.volume, b.wap, f64::from(b.count)],
        ),
        StreamData::Tick(t) => {
            let (price, size, value) = match t {
                Tick::Price { price, size, .. } => (
                    num(*price),
                    size.map(num).unwrap_or_default(),
                    String::new(),
                ),
                Tick::Size { size, .. } => (String::new(), num(*size), String::new()),
                Tick::Text { value, .. } => (String::new(), String::new(), csv_field(value)),
                Tick::Generic { value, .. } => (String::new(), String::new(), num(*value)),
            };
            format!("{},{sym},{},{price},{size},{value}", received(), t.field())
        }
        StreamData::TickByTick(t) => match t {
            TickByTick::Last {
                all,
                time,
                price,
                size,
                exchange,
                ..
            } => format!(
                "{},{sym},{},{},{},,,,,{}",
                iso_utc(*time),
                if *all { "all_last" } else { "last" },
                num(*price),
                num(*size),
                csv_field(exchange)
            ),
            TickByTick::BidAsk {
                time,
                bid,
                ask,
                bid_size,
                ask_size,
                ..
            } => format!(
                "{},{sym},bid_ask,,,{},{},{},{},",
                iso_utc(*time),
                num(*bid),
                num(*ask),
                num(*bid_size),
                num(*ask_size)
            ),
            TickByTick::MidPoint { time, mid } => {
                format!("{},{sym},mid,{},,,,,,", iso_utc(*time), num(*mid))
            }
        },
        // The data type, tick parameters and notices are no rows (notes, or JSON lines).
        _ => return None,
    })
}

/// `time,symbol,open,high,low,close,volume,wap,count` (IB's -1 for the last three as empty).
fn bar_row(time: &str, sym: &str, ohlc: [f64; 4], vwc: [f64; 3]) -> String {
    let [o, h, l, c] = ohlc.map(num);
    let [v, w, n] = vwc.map(opt_num);
    format!("{time},{sym},{o},{h},{l},{c},{v},{w},{n}")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The stderr line for an item that is not a row.
fn note(symbol: &str, item: &StreamItem) -> Option<String> {
    Some(match item {
        StreamItem::Interrupted { at, reason } => {
            format!("{symbol}: interrupted at {}: {reason}", iso_utc_ms(at.0))
        }
        StreamItem::Gap { from, to } => format!(
            "{symbol}: gap {} .. {} ({}s without data; requested again)",
            iso_utc_ms(from.0),
            iso_utc_ms(to.0),
            to.0.saturating_sub(from.0) / 1000
        ),
        StreamItem::Lagged { dropped } => {
            format!("{symbol}: output too slow: {dropped} ticks conflated or dropped")
        }
        StreamItem::Data(StreamData::Notice { code, message }) => {
            format!("{symbol}: IB {code}: {message}")
        }
        StreamItem::Data(StreamData::MarketDataType(t)) if *t != 1 => {
            format!("{symbol}: market data type {t} (2 frozen, 3 delayed, 4 delayed-frozen)")
        }
        _ => return None,
    })
}

/// One JSON object for any item.
fn json_line(symbol: &str, item: &StreamItem) -> String {
    let value = match item {
        StreamItem::Data(StreamData::RealTimeBar(b)) => json!({
            "type": "bar", "symbol": symbol, "time": iso_utc(b.time), "open": b.open,
            "high": b.high, "low": b.low, "close": b.close, "volume": b.volume, "wap": b.wap,
            "count": b.count,
        }),
        StreamItem::Data(StreamData::Bar(b)) => json!({
            "type": "bar", "symbol": symbol, "time": bar_time(&b.date), "open": b.open,
            "high": b.high, "low": b.low, "close": b.close, "volume": opt_json(b.volume),
            "wap": opt_json(b.wap), "count": opt_json(f64::from(b.count)),
        }),
        StreamItem::Data(StreamData::Tick(t)) => {
            let mut v = json!({"type": "tick", "symbol": symbol, "time": received(),
                "field": t.field().to_string()});
            match t {
                Tick::Price { price, size, .. } => {
                    v["price"] = json!(price);
                    if let Some(s) = size {
                        v["size"] = json!(s);
                    }
                }
                Tick::Size { size, .. } => v["size"] = json!(size),
                Tick::Text { value, .. } => v["value"] = json!(value),
                Tick::Generic { value, .. } => v["value"] = json!(value),
            }
            v
        }
        StreamItem::Data(StreamData::TickByTick(t)) => match t {
            TickByTick::Last {
                all,
                time,
                price,
                size,
                exchange,
                ..
            } => json!({"type": if *all { "all_last" } else { "last" }, "symbol": symbol,
                "time": iso_utc(*time), "price": price, "size": size, "exchange": exchange}),
            TickByTick::BidAsk {
                time,
                bid,
                ask,
                bid_size,
                ask_size,
                ..
            } => json!({"type": "bid_ask", "symbol": symbol, "time": iso_utc(*time), "bid": bid,
                "ask": ask, "bid_size": bid_size, "ask_size": ask_size}),
            TickByTick::MidPoint { time, mid } => {
                json!({"type": "mid", "symbol": symbol, "time": iso_utc(*time), "mid": mid})
            }
        },
        StreamItem::Data(StreamData::Notice { code, message }) => {
            json!({"type": "notice", "symbol": symbol, "code": code, "message": message})
        }
        StreamItem::Data(StreamData::MarketDataType(t)) => {
            json!({"type": "market_data_type", "symbol": symbol, "market_data_type": t})
        }
        StreamItem::Data(StreamData::TickParams {
            min_tick,
            bbo_exchange,
            ..
        }) => {
            json!({"type": "tick_params", "symbol": symbol, "min_tick": min_tick,
                "bbo_exchange": bbo_exchange})
        }
        StreamItem::Interrupted { at, reason } => json!({"type": "interrupted", "symbol": symbol,
            "at": iso_utc_ms(at.0), "reason": reason}),
        StreamItem::Gap { from, to } => json!({"type": "gap", "symbol": symbol,
            "from": iso_utc_ms(from.0), "to": iso_utc_ms(to.0),
            "seconds": to.0.saturating_sub(from.0) as f64 / 1000.0}),
        StreamItem::Lagged { dropped } => {
            json!({"type": "lagged", "symbol": symbol, "dropped": dropped})
        }
        other => json!({"type": "other", "symbol": symbol, "debug": format!("{other:?}")}),
    };
    value.to_string()
}
