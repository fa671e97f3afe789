//! `ibconn fetch` of one symbol, and what every fetch shares: a [`Unit`] per symbol (its
//! [`BackfillJob`] and where its bars go), the summary, the progress bar. The drivers (embedded
//! simulator in virtual time, or a real gateway) are in [`crate::drive`]; several symbols
//! (`--out-dir`) in [`crate::batch`].

use std::path::Path;
use std::time::{Duration, Instant};

use ibconn_core::backfill::{
    aligned_range, bar_start_unix, spans, BackfillJob, BackfillSpec, HeldCounts, JobConfig,
    PlanError, Summary,
};
use ibconn_core::civil::SECS_PER_DAY;
use ibconn_core::contract_spec::ContractSpec;
use ibconn_core::message::{Bar, Contract};
use ibconn_core::pool::PoolConfig;
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::PoolWorldConfig;
use serde::Serialize;

use crate::args::FetchArgs;
use crate::config::Settings;
use crate::csvio::{self, Layout, Missing, TimeFormat};
use crate::drive::{self, Ran};
use crate::output::{Identity, OutError, OutFile, Resume, Wanted};
use crate::signals::Stop;

/// Exit code: partial result.
pub(crate) const EXIT_PARTIAL: u8 = 3;

/// Exit code: the symbol does not exist (IB error 200).
pub(crate) const EXIT_NO_SUCH_SYMBOL: u8 = 4;

/// Why a command could not run at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad arguments or input (exit 2).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The output file cannot be used (exit 2) or written (exit 1).
    #[error(transparent)]
    Out(#[from] OutError),
    /// Writing the summary or the bars failed (exit 1).
    #[error("{0}")]
    Io(String),
    /// Arguments that cannot make a fetch (exit 2).
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Plan(_) => 2,
            Self::Out(e) => e.exit_code(),
            Self::Usage(_) => 2,
            Self::Io(_) => 1,
        }
    }
}

/// What `args` asks of the output of `spec` (`contract`, `what`: as resolved from it): the
/// request as recorded beside a file (the full contract, so two futures months never share a
/// file) and the layout a new file gets. `in_dir`: the file is one of `--out-dir`'s, which have
/// the symbol column.
fn wanted(
    args: &FetchArgs,
    spec: &ContractSpec,
    contract: &Contract,
    what: WhatToShow,
    in_dir: bool,
) -> Wanted {
    let symbol = spec.to_string();
    let volatility = matches!(
        what,
        WhatToShow::HistoricalVolatility | WhatToShow::OptionImpliedVolatility
    );
    Wanted {
        identity: Identity {
            contract: crate::contract::describe(contract),
            bar_size: args.bar.as_str().to_owned(),
            what_to_show: what.as_str().to_owned(),
            rth: args.rth,
            layout: Layout {
                time_format: args.time_format.unwrap_or(TimeFormat::Iso),
                symbol: (args.with_symbol || in_dir).then(|| symbol.clone()),
                missing: Missing::Empty,
            },
        },
        time_format: args.time_format,
        symbol_required: args.with_symbol,
        symbol,
        no_volume: what.is_quotes() || volatility,
        step: (!args.bar.is_daily_or_longer()).then(|| i64::from(args.bar.seconds())),
    }
}

/// `--out`, unless it is `-` (stdout).
pub(crate) fn out_path(args: &FetchArgs) -> Option<&Path> {
    args.out.as_deref().filter(|p| p.as_os_str() != "-")
}

/// One symbol of a fetch: its job, resumed from its file, and where its bars go.
pub(crate) struct Unit {
    /// The contract as given (canonical text), for the summary.
    pub(crate) label: String,
    /// The backfill.
    pub(crate) job: BackfillJob,
    /// Where its bars go.
    pub(crate) output: Output,
    /// Bars of the range it held before this run (from its file).
    pub(crate) held: usize,
}

/// The unit fetching `spec` for `args`, resumed from `file` if it holds the same request. `file`
/// is `None` for stdout; `in_dir`: the file is one of `--out-dir`'s.
pub(crate) fn prepare(
    args: &FetchArgs,
    settings: &Settings,
    symbol: &ContractSpec,
    file: Option<OutFile>,
    in_dir: bool,
) -> Result<Unit, CliError> {
    // One contract, and a series IB keeps for its type: refused here, before any request.
    let (contract, what) = crate::contract::for_bars(symbol, &args.contract, args.what)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let wanted = wanted(args, symbol, &contract, what, in_dir);
    let spec = BackfillSpec {
        contract,
        bar_size: args.bar,
        what_to_show: what,
        use_rth: args.rth,
    };
    let resume = match &file {
        Some(f) => f.resume(&wanted)?,
        None => Resume::fresh(wanted.identity.layout.clone()),
    };
    if let Some(note) = &resume.note {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "ibconn: warning: {note}");
    }
    let to_unix = effective_to(args);
    if args.from >= to_unix && args.to > to_unix {
        return Err(CliError::Usage(format!(
            "--from {} is in the future: IB has no bars there yet",
            ibconn_core::civil::format_utc(args.from)
        )));
    }
    let (from, to) = aligned_range(args.bar, args.from, to_unix);
    let (inside, outside): (Vec<Bar>, Vec<Bar>) = resume
        .bars
        .into_iter()
        .partition(|b| bar_start_unix(&b.date).is_some_and(|t| t >= from && t < to));
    let cfg = JobConfig {
        // An exact record of what was answered beats guessing from the bars.
        infer_coverage_from_bars: resume.covered.is_none(),
        // One request tells an unknown symbol; the head timestamp clips the range; the contract
        // details give the sessions, so closed ones cost no request.
        lookup: true,
        skip_closed_sessions: settings.fetch.skip_closed_sessions,
        ..JobConfig::default()
    };
    let mut job = BackfillJob::new(spec, args.from, to_unix, inside, cfg)?;
    let earlier = resume.covered.unwrap_or_default();
    job.skip_covered(&earlier);
    job.note_empty_before(&resume.empty_once);
    let held = job.progress().bars;
    let mut identity = wanted.identity;
    identity.layout = resume.layout;
    let output = Output {
        file,
        identity,
        outside,
        earlier,
        empty_before: resume.empty_once,
    };
    Ok(Unit {
        label: symbol.to_string(),
        job,
        output,
        held,
    })
}

/// `--to`, at most the start of the current bar: IB answers an end date in the future with an
/// error, and a bar still forming would change later.
fn effective_to(args: &FetchArgs) -> i64 {
    // The embedded simulator too: a range in the future has no bars, not invented ones; and
    // its own clock (its "today", or a day past the range) is the now of its bars.
    let wall = crate::dates::wall_now();
    let now = match &args.gateway {
        None => wall.min(crate::dates::embedded_clock(args.to.min(wall))),
        Some(_) => wall,
    };
    let step = if args.bar.is_daily_or_longer() {
        SECS_PER_DAY
    } else {
        i64::from(args.bar.seconds())
    };
    args.to.min(now - now.rem_euclid(step))
}

/// The account of one fetch (`--summary-json`): the run's totals, then the job's own account.
#[derive(Debug, Serialize)]
pub(crate) struct FetchSummary {
    /// What every fetch summary says of the run (its fields at the top level of the JSON).
    #[serde(flatten)]
    pub(crate) run: RunTotals,
    /// The job's own account.
    pub(crate) job: Summary,
}

impl FetchSummary {
    /// Human-readable lines for stderr.
    pub(crate) fn text(&self) -> String {
        let run = &self.run;
        let time = match run.virtual_secs {
            Some(v) => format!(
                "{} virtual ({} wall)",
                human(Duration::from_secs_f64(v)),
                human(Duration::from_secs_f64(run.wall_secs))
            ),
            None => format!("{} wall", human(Duration::from_secs_f64(run.wall_secs))),
        };
        let p = &self.job.progress;
        if let (Some(e), 0) = (&run.error, run.requests) {
            // Nothing was asked (e.g. the gateway refused the connection): only why.
            return format!("error: {e}\n");
        }
        let mut s = format!(
            "{} {} {}: {} bars ({} new) from {} requests in {time} on {}\n\
             chunks: {} total, {} resumed, {} closed (not asked), {} empty, {} failed; retries {}\n\
             sessions: {}\n\
             pacing: {} requests waited ({} in total), {} violations",
            self.job.symbol,
            self.job.bar_size,
            self.job.what_to_show,
            run.bars,
            run.bars_added,
            run.requests,
            run.gateway,
            p.chunks_total,
            p.chunks_resumed,
            p.chunks_closed,
            p.chunks_empty,
            p.chunks_failed,
            p.retries,
            crate::plan::sessions_text(&self.job.sessions),
            run.pacing_waits,
            human(Duration::from_millis(run.pacing_wait_ms)),
            run.pacing_violations,
        );
        if let Some(g) = run.gateway_violations {
            s.push_str(&format!(" (gateway counted {g})"));
        }
        s.push('\n');
        for f in &self.job.failures {
            s.push_str(&format!(
                "failed chunk {} [{}, {}): {}\n",
                f.chunk, f.start_unix, f.end_unix, f.error
            ));
        }
        if let Some(e) = &self.job.lookup_error {
            s.push_str(&format!("error: {e}\n"));
        }
        if let Some(e) = &run.error {
            s.push_str(&format!("error: {e}\n"));
        }
        s
    }
}

/// `1h 02m 03s`-style durations.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3_600, s / 60 % 60, s % 60) {
        (0, 0, _) => format!("{:.1}s", d.as_secs_f64()),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}

pub(crate) use crate::progress::Progress;

/// Where the bars go: `--out` (rewritten durably, with the file's bars outside the range kept)
/// or stdout at the end.
pub(crate) struct Output {
    file: Option<OutFile>,
    identity: Identity,
    outside: Vec<Bar>,
    /// Spans an earlier run covered (kept: this run's plan may cover less).
    earlier: Vec<(i64, i64)>,
    /// Spans an earlier run saw empty once.
    empty_before: Vec<(i64, i64)>,
}

impl Output {
    /// Every bar the output will hold: the file's outside the range and the job's, sorted.
    pub(crate) fn bars(&self, job: &BackfillJob) -> Vec<Bar> {
        let mut bars = self.outside.clone();
        bars.extend(job.bars().iter().map(|(_, b)| b.clone()));
        bars.sort_by_key(|b| bar_start_unix(&b.date));
        bars
    }

    /// Write what the job holds now to `--out` and its coverage beside it (a no-op for stdout).
    pub(crate) fn checkpoint(&self, job: &BackfillJob) -> Result<(), OutError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut covered = self.earlier.clone();
        covered.extend(job.covered_spans());
        let covered = spans::merge(covered);
        // Empty once before and not answered since: still to be asked again.
        let mut empty_once = spans::subtract(&self.empty_before, &covered);
        empty_once.extend(job.tentative_empty_spans());
        let empty_once = spans::merge(empty_once);
        file.write(&self.bars(job), &self.identity, covered, empty_once)
    }
}

/// Whether a CSV write failed because the reading end of stdout was closed.
fn is_broken_pipe(e: &csv::Error) -> bool {
    matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
}

impl Unit {
    /// After the run (`error`: what stopped it early): write the file, or the CSV to stdout.
    /// A symbol that does not exist leaves no file behind (and no header-only CSV on stdout);
    /// a unit that asked nothing before the run failed (no gateway, say) creates and rewrites
    /// none. Returns the bars the output holds.
    pub(crate) fn finish(&self, error: bool) -> Result<usize, CliError> {
        let bars = self.output.bars(&self.job);
        let nothing_asked = error && self.job.progress().requests == 0;
        match &self.output.file {
            _ if self.job.lookup_error().is_some() => {}
            Some(_) if nothing_asked => {}
            Some(_) => self.output.checkpoint(&self.job)?,
            None => {
                let stdout = std::io::stdout();
                match csvio::write_to(stdout.lock(), &bars, &self.output.identity.layout) {
                    // The reader left (`| head`): what it wanted it got; not a failure.
                    Err(e) if is_broken_pipe(&e) => {}
                    written => written.map_err(|e| CliError::Io(format!("stdout: {e}")))?,
                }
            }
        }
        Ok(bars.len())
    }

    /// The exit code of this symbol alone (`error`: a runtime failure stopped the run before
    /// this unit finished): 4 the symbol does not exist, 1 nothing could be fetched, 3 partial.
    pub(crate) fn exit_code(&self, error: bool) -> u8 {
        let summary = self.job.summary();
        let failed = !summary.failures.is_empty();
        if let Some(e) = &summary.lookup_error {
            if e.is_unknown_contract() {
                EXIT_NO_SUCH_SYMBOL
            } else {
                1
            }
        } else if error && summary.progress.bars_added == 0 && self.held == 0 {
            1
        } else if error || failed {
            if summary.progress.bars == 0 {
                1
            } else {
                EXIT_PARTIAL
            }
        } else {
            0
        }
    }
}

/// `ibconn fetch` of one symbol to `--out` or stdout: run, write the CSV (also on failure:
/// nothing fetched is lost), summarise.
pub(crate) fn fetch(
    args: &FetchArgs,
    settings: &Settings,
    symbol: &ContractSpec,
) -> Result<FetchSummary, CliError> {
    let file = out_path(args).map(OutFile::open).transpose()?;
    let unit = prepare(args, settings, symbol, file, false)?;
    let stop = Stop::install();
    #[allow(clippy::disallowed_methods)] // wall time of the run, for the summary only
    let started = Instant::now();
    let mut units = [unit];
    let progress = Progress::new(
        units[0].job.progress().chunks_total,
        args.gateway.is_none(),
        settings,
    );
    let ran = drive::run(args, settings, &mut units, &progress, &stop);
    progress.bar.finish_and_clear();
    let wall = started.elapsed();
    let [unit] = units;
    let bars = unit.finish(ran.error.is_some())?;
    let exit_code = unit.exit_code(ran.error.is_some());
    let job = unit.job.summary();
    let counts = (job.progress.requests, bars, job.progress.bars_added);
    let out = FetchSummary {
        run: run_totals(args, &ran, wall, counts, exit_code),
        job,
    };
    if let Some(path) = &args.summary_json {
        write_json(path, &out)?;
    }
    Ok(out)
}

/// What every fetch summary says of the run, whatever the number of symbols.
#[derive(Debug, Serialize)]
pub(crate) struct RunTotals {
    /// `embedded-sim` or the gateway address.
    pub(crate) gateway: String,
    /// `virtual` (embedded simulator) or `wall`.
    pub(crate) time: &'static str,
    /// Virtual time the backfill took (embedded simulator only), seconds.
    pub(crate) virtual_secs: Option<f64>,
    /// Wall time the backfill took, seconds.
    pub(crate) wall_secs: f64,
    /// Historical requests sent (retries included), every symbol.
    pub(crate) requests: u64,
    /// Bars in the output.
    pub(crate) bars: usize,
    /// Bars this run added.
    pub(crate) bars_added: usize,
    /// Requests the pool held back for pacing.
    pub(crate) pacing_waits: u64,
    /// Total pacing wait, milliseconds.
    pub(crate) pacing_wait_ms: u64,
    /// 162 pacing violations the pool received.
    pub(crate) pacing_violations: u64,
    /// Pacing violations the embedded simulator counted (embedded simulator only).
    #[serde(rename = "gateway_pacing_violations")]
    pub(crate) gateway_violations: Option<u64>,
    /// A runtime failure that stopped the run early.
    pub(crate) error: Option<String>,
    /// The process's exit code.
    pub(crate) exit_code: u8,
    /// Requests that waited for their pacing slot, by the rule that held each (several
    /// symbols only: interleaved, the per-contract burst rule should hold none).
    #[serde(skip)]
    pub(crate) held_by: HeldCounts,
}

/// The totals of `ran` (taking `wall`): `requests` sent, `bars` in the output, `bars_added`.
pub(crate) fn run_totals(
    args: &FetchArgs,
    ran: &Ran,
    wall: Duration,
    (requests, bars, bars_added): (u64, usize, usize),
    exit_code: u8,
) -> RunTotals {
    let pool = ran.pool.clone().unwrap_or_default();
    RunTotals {
        gateway: args
            .gateway
            .clone()
            .unwrap_or_else(|| "embedded-sim".to_owned()),
        time: if args.gateway.is_none() {
            "virtual"
        } else {
            "wall"
        },
        virtual_secs: ran.virtual_elapsed.map(|d| d.as_secs_f64()),
        wall_secs: wall.as_secs_f64(),
        requests,
        bars,
        bars_added,
        pacing_waits: pool.pacing_waits,
        pacing_wait_ms: pool.pacing_wait_ms,
        pacing_violations: pool.pacing_violations,
        gateway_violations: ran.gateway_violations,
        error: ran.error.clone(),
        exit_code,
        held_by: ran.held_by,
    }
}

/// Write `value` as pretty JSON to `path` (`--summary-json`).
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
    std::fs::write(path, text + "\n").map_err(|e| CliError::Io(format!("{}: {e}", path.display())))
}

/// Chunk requests in flight: `--concurrency`, else the config's.
pub(crate) fn concurrency(args: &FetchArgs, settings: &Settings) -> usize {
    usize::from(args.concurrency.unwrap_or(settings.fetch.concurrency))
}

/// The embedded simulator's world for `job`: the configured pool (purposes, pacing, timeouts)
/// with the simulator's gateway label and seed, and the simulated gateway's clock at its default
/// ("today", what `--to` defaults to) when the range ends by then, else a day past the range, so
/// the whole range lies in its past (the same for every run with these arguments, and for
/// `plan`; [`crate::dates::embedded_clock`]).
pub(crate) fn embedded_config(
    args: &FetchArgs,
    settings: &Settings,
    job: &BackfillJob,
) -> PoolWorldConfig {
    let mut cfg = PoolWorldConfig::new(args.seed);
    cfg.pool = PoolConfig {
        rng_seed: cfg.pool.rng_seed,
        ..settings.pool_config(cfg.pool.gateways.clone())
    };
    let (_, to) = job.range();
    cfg.wall_unix_ms = crate::dates::embedded_clock(to).saturating_mul(1000);
    cfg.gateway.start_unix_ms = cfg.wall_unix_ms;
    cfg
}
