//! `ibconn fetch` and `ibconn plan`: one [`BackfillJob`] driven on the embedded simulator (virtual
//! time, [`PoolWorld`]) or on a real gateway (wall time, [`ibconn_tokio::Pool`]).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ibconn_core::backfill::{
    aligned_range, bar_start_unix, spans, BackfillJob, BackfillSpec, JobConfig, PlanError, Summary,
};
use ibconn_core::civil::SECS_PER_DAY;
use ibconn_core::client_id::{Purpose, UnixMillis};
use ibconn_core::message::{Bar, Contract};
use ibconn_core::pool::{CallError, PoolConfig, PoolStats};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{BackfillRun, PoolWorld, PoolWorldConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::args::FetchArgs;
use crate::config::{secs, Settings};
use crate::coordination;
use crate::csvio;
use crate::output::{Identity, OutError, OutFile, Resume};
use crate::probe;
use crate::signals::Stop;
use crate::watch::GatewayWatch;

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

/// What `args` asks for (`contract`, `what`: as resolved from it), as recorded beside an
/// `--out` file: the full contract, so two futures months never share a file.
fn identity(args: &FetchArgs, contract: &Contract, what: WhatToShow) -> Identity {
    Identity {
        contract: crate::contract::describe(contract),
        bar_size: args.bar.as_str().to_owned(),
        what_to_show: what.as_str().to_owned(),
        rth: args.rth,
        time_format: if args.bar.is_daily_or_longer() {
            "yyyymmdd"
        } else {
            "epoch"
        }
        .to_owned(),
    }
}

/// `--out`, unless it is `-` (stdout).
pub(crate) fn out_path(args: &FetchArgs) -> Option<&Path> {
    args.out.as_deref().filter(|p| p.as_os_str() != "-")
}

/// The job for `args`, resumed from `file` if it holds the same request, and the output. `file`
/// is `None` for stdout.
pub(crate) fn prepare(
    args: &FetchArgs,
    settings: &Settings,
    file: Option<OutFile>,
) -> Result<(BackfillJob, Output), CliError> {
    // One contract, and a series IB keeps for its type: refused here, before any request.
    let (contract, what) = crate::contract::for_bars(&args.symbol, &args.contract, args.what)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let identity = identity(args, &contract, what);
    let spec = BackfillSpec {
        contract,
        bar_size: args.bar,
        what_to_show: what,
        use_rth: args.rth,
    };
    let step = (!args.bar.is_daily_or_longer()).then(|| i64::from(args.bar.seconds()));
    let resume = match &file {
        Some(f) => f.resume(&identity, what.is_quotes(), step)?,
        None => Resume::default(),
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
    let output = Output {
        file,
        identity,
        outside,
        earlier,
        empty_before: resume.empty_once,
    };
    Ok((job, output))
}

/// `--to`, at most the start of the current bar: IB answers an end date in the future with an
/// error, and a bar still forming would change later.
fn effective_to(args: &FetchArgs) -> i64 {
    // The embedded simulator too: a range in the future has no bars, not invented ones.
    let now = UnixMillis::from_system_time(SystemTime::now()).as_unix_secs();
    let step = if args.bar.is_daily_or_longer() {
        SECS_PER_DAY
    } else {
        i64::from(args.bar.seconds())
    };
    args.to.min(now - now.rem_euclid(step))
}

/// The account of one fetch (`--summary-json`).
#[derive(Debug, Serialize)]
pub(crate) struct FetchSummary {
    /// `embedded-sim` or the gateway address.
    pub(crate) gateway: String,
    /// `virtual` (embedded simulator) or `wall`.
    pub(crate) time: &'static str,
    /// Virtual time the backfill took (embedded simulator only), seconds.
    pub(crate) virtual_secs: Option<f64>,
    /// Wall time the backfill took, seconds.
    pub(crate) wall_secs: f64,
    /// Historical requests sent (retries included).
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
    pub(crate) gateway_pacing_violations: Option<u64>,
    /// A runtime failure that stopped the run early.
    pub(crate) error: Option<String>,
    /// The process's exit code.
    pub(crate) exit_code: u8,
    /// The job's own account.
    pub(crate) job: Summary,
}

impl FetchSummary {
    /// Human-readable lines for stderr.
    pub(crate) fn text(&self) -> String {
        let time = match self.virtual_secs {
            Some(v) => format!(
                "{} virtual ({} wall)",
                human(Duration::from_secs_f64(v)),
                human(Duration::from_secs_f64(self.wall_secs))
            ),
            None => format!("{} wall", human(Duration::from_secs_f64(self.wall_secs))),
        };
        let p = &self.job.progress;
        if let (Some(e), 0) = (&self.error, self.requests) {
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
            self.bars,
            self.bars_added,
            self.requests,
            self.gateway,
            p.chunks_total,
            p.chunks_resumed,
            p.chunks_closed,
            p.chunks_empty,
            p.chunks_failed,
            p.retries,
            crate::plan::sessions_text(&self.job.sessions),
            self.pacing_waits,
            human(Duration::from_millis(self.pacing_wait_ms)),
            self.pacing_violations,
        );
        if let Some(g) = self.gateway_pacing_violations {
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
        if let Some(e) = &self.error {
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

pub(crate) struct Progress {
    pub(crate) bar: ProgressBar,
}

impl Progress {
    fn new(total: usize, virtual_time: bool) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let template = if virtual_time {
                "{bar:30} {pos}/{len} chunks · {msg}"
            } else {
                "{bar:30} {pos}/{len} chunks · {msg} · ETA {eta}"
            };
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { bar }
    }

    fn update(&self, job: &BackfillJob, elapsed: Option<Duration>, waits: Option<u64>) {
        let p = job.progress();
        self.bar.set_position(p.chunks_done as u64);
        let mut msg = format!("{} bars", p.bars);
        if let Some(e) = elapsed {
            msg.push_str(&format!(" · {} virtual", human(e)));
        }
        if let Some(w) = waits {
            msg.push_str(&format!(" · {w} pacing waits"));
        }
        self.bar.set_message(msg);
    }
}

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
    fn bars(&self, job: &BackfillJob) -> Vec<Bar> {
        let mut bars = self.outside.clone();
        bars.extend(job.bars().iter().map(|(_, b)| b.clone()));
        bars.sort_by_key(|b| bar_start_unix(&b.date));
        bars
    }

    /// Write what the job holds now to `--out` and its coverage beside it (a no-op for stdout).
    fn checkpoint(&self, job: &BackfillJob) -> Result<(), OutError> {
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

struct Ran {
    pool: Option<PoolStats>,
    virtual_elapsed: Option<Duration>,
    gateway_violations: Option<u64>,
    error: Option<String>,
}

/// `ibconn fetch`: run, write the CSV (also on failure: nothing fetched is lost), summarise.
pub(crate) fn fetch(args: &FetchArgs, settings: &Settings) -> Result<FetchSummary, CliError> {
    let file = out_path(args).map(OutFile::open).transpose()?;
    let (mut job, output) = prepare(args, settings, file)?;
    let stop = Stop::install();
    let held = job.progress().bars;
    #[allow(clippy::disallowed_methods)] // wall time of the run, for the summary only
    let started = Instant::now();
    let progress = Progress::new(job.progress().chunks_total, args.gateway.is_none());
    let ran = match &args.gateway {
        None => run_embedded(args, settings, &mut job, &progress, &stop),
        Some(addr) => run_gateway(args, settings, addr, &mut job, &progress, &output, &stop),
    };
    progress.bar.finish_and_clear();
    let wall = started.elapsed();

    let bars = output.bars(&job);
    // A run that failed before any request (no gateway, say) changed nothing: it creates no file
    // and rewrites none.
    let nothing_asked = ran.error.is_some() && job.progress().requests == 0;
    match &output.file {
        // A symbol that does not exist leaves no file behind, and no header-only CSV on stdout.
        _ if job.lookup_error().is_some() => {}
        Some(_) if nothing_asked => {}
        Some(_) => output.checkpoint(&job)?,
        None => {
            let stdout = std::io::stdout();
            csvio::write_to(stdout.lock(), &bars)
                .map_err(|e| CliError::Io(format!("stdout: {e}")))?;
        }
    }

    let summary = job.summary();
    let failed = !summary.failures.is_empty();
    let exit_code = if let Some(e) = &summary.lookup_error {
        if e.is_unknown_contract() {
            EXIT_NO_SUCH_SYMBOL
        } else {
            1
        }
    } else if ran.error.is_some() && summary.progress.bars_added == 0 && held == 0 {
        1
    } else if ran.error.is_some() || failed {
        if summary.progress.bars == 0 {
            1
        } else {
            EXIT_PARTIAL
        }
    } else {
        0
    };
    let pool = ran.pool.unwrap_or_default();
    let out = FetchSummary {
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
        requests: summary.progress.requests,
        bars: bars.len(),
        bars_added: summary.progress.bars_added,
        pacing_waits: pool.pacing_waits,
        pacing_wait_ms: pool.pacing_wait_ms,
        pacing_violations: pool.pacing_violations,
        gateway_pacing_violations: ran.gateway_violations,
        error: ran.error,
        exit_code,
        job: summary,
    };
    if let Some(path) = &args.summary_json {
        write_json(path, &out)?;
    }
    Ok(out)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
    std::fs::write(path, text + "\n").map_err(|e| CliError::Io(format!("{}: {e}", path.display())))
}

/// Chunk requests in flight: `--concurrency`, else the config's.
fn concurrency(args: &FetchArgs, settings: &Settings) -> usize {
    usize::from(args.concurrency.unwrap_or(settings.fetch.concurrency))
}

/// The embedded simulator's world for `job`: the configured pool (purposes, pacing, timeouts)
/// with the simulator's gateway label and seed, and the simulated gateway's clock at its default
/// or a day past the range, whichever is later, so the whole range lies in its past (the same
/// for every run with these arguments, and for `plan`).
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
    let after_range = to.saturating_add(SECS_PER_DAY).saturating_mul(1000);
    cfg.wall_unix_ms = cfg.wall_unix_ms.max(after_range);
    cfg.gateway.start_unix_ms = cfg.wall_unix_ms;
    cfg
}

fn run_embedded(
    args: &FetchArgs,
    settings: &Settings,
    job: &mut BackfillJob,
    progress: &Progress,
    stop: &Stop,
) -> Ran {
    let mut world = PoolWorld::new(embedded_config(args, settings, job));
    let run = BackfillRun {
        concurrency: concurrency(args, settings),
        request_timeout: secs(settings.fetch.request_timeout_secs),
        ..BackfillRun::default()
    };
    let result = world.run_backfill_until(
        job,
        run,
        |job, elapsed| progress.update(job, Some(elapsed), None),
        stop.flag(),
    );
    match result {
        Ok(report) => Ran {
            pool: Some(report.pool),
            virtual_elapsed: Some(report.virtual_elapsed),
            gateway_violations: Some(report.gateway_pacing_violations),
            error: None,
        },
        Err(e) => Ran {
            pool: Some(world.pool_stats()),
            virtual_elapsed: Some(world.elapsed()),
            gateway_violations: Some(world.gateway().pacing_violations()),
            error: Some(e.to_string()),
        },
    }
}

fn run_gateway(
    args: &FetchArgs,
    settings: &Settings,
    addr: &str,
    job: &mut BackfillJob,
    progress: &Progress,
    output: &Output,
    stop: &Stop,
) -> Ran {
    let rt = match crate::session::runtime() {
        Ok(rt) => rt,
        Err(error) => {
            return Ran {
                pool: None,
                virtual_elapsed: None,
                gateway_violations: None,
                error: Some(error),
            }
        }
    };
    rt.block_on(drive_gateway(
        args, settings, addr, job, progress, output, stop,
    ))
}

/// Interval of `--out` checkpoints during a wall-time fetch.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// Drive `job` on a real gateway. SIGINT or SIGTERM stops it: what was fetched is written and the
/// exit code says "partial". `--out` is rewritten every [`CHECKPOINT_EVERY`], so even a killed process keeps
/// most of its work.
async fn drive_gateway(
    args: &FetchArgs,
    settings: &Settings,
    addr: &str,
    job: &mut BackfillJob,
    progress: &Progress,
    output: &Output,
    stop: &Stop,
) -> Ran {
    if job.is_finished() {
        return Ran {
            pool: None,
            virtual_elapsed: None,
            gateway_violations: None,
            error: None,
        };
    }
    let cfg = settings.pool_config(vec![addr.to_owned()]);
    let acquire_timeout = cfg.acquire_timeout;
    let pool = match coordination::start_pool(settings, cfg, "ibconn fetch") {
        Ok(pool) => pool,
        Err(e) => {
            return Ran {
                pool: None,
                virtual_elapsed: None,
                gateway_violations: None,
                error: Some(e),
            }
        }
    };
    let mut error = None;
    // Subscribed before the first acquire, so no notice of this run is missed.
    let mut notices = pool.events();
    let mut watch = GatewayWatch::new(addr, secs(settings.fetch.gateway_down_secs));
    // A refused or failing dial ends the fetch at once (no waiting out the acquire timeout).
    match probe::acquire_fast(&pool, Purpose::Backfill, addr, acquire_timeout).await {
        Ok(conn) => {
            let conn = Arc::new(conn);
            let timeout = secs(settings.fetch.request_timeout_secs);
            let mut set = tokio::task::JoinSet::new();
            #[allow(clippy::disallowed_methods)] // wall time between checkpoints
            let mut saved = Instant::now();
            loop {
                while error.is_none() && set.len() < concurrency(args, settings) {
                    let Some((id, query)) = job.poll_query() else {
                        break;
                    };
                    let conn = Arc::clone(&conn);
                    set.spawn(async move { (id, conn.request(query, Some(timeout)).await) });
                }
                let joined = tokio::select! {
                    joined = set.join_next() => joined,
                    notice = notices.recv(), if !watch.closed => {
                        match notice {
                            Some(n) => watch.on_notice(&n, progress),
                            None => watch.closed = true,
                        }
                        continue;
                    }
                    () = watch.given_up() => {
                        error = Some(watch.give_up_message());
                        break;
                    }
                    () = stop.wait() => {
                        error = Some("interrupted".to_owned());
                        break;
                    }
                };
                let Some(joined) = joined else {
                    break;
                };
                match joined {
                    Ok((id, Ok(answer))) => job.on_result(id, Ok(answer)),
                    Ok((id, Err(ibconn_tokio::Error::Call(e)))) => job.on_result(id, Err(e)),
                    Ok((id, Err(e))) => {
                        job.on_result(id, Err(CallError::ShuttingDown));
                        error.get_or_insert_with(|| e.to_string());
                    }
                    Err(e) => {
                        error.get_or_insert_with(|| format!("request task: {e}"));
                    }
                }
                let waits = pool.stats().await.ok().map(|s| s.pacing_waits);
                progress.update(job, None, waits);
                if saved.elapsed() >= CHECKPOINT_EVERY {
                    #[allow(clippy::disallowed_methods)]
                    {
                        saved = Instant::now();
                    }
                    if let Err(e) = output.checkpoint(job) {
                        tracing::warn!(error = %e, "checkpoint failed");
                    }
                }
            }
        }
        Err(e @ probe::ProbeError::Unreachable { .. }) => error = Some(e.to_string()),
        Err(e) => error = Some(format!("cannot connect to {addr}: {e}")),
    }
    let stats = pool.stats().await.ok();
    pool.shutdown().await;
    Ran {
        pool: stats,
        virtual_elapsed: None,
        gateway_violations: None,
        error,
    }
}
