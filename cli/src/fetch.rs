//! `ibconn fetch` and `ibconn plan`: one [`BackfillJob`] driven on the embedded simulator (virtual
//! time, [`PoolWorld`]) or on a real gateway (wall time, [`ibconn_tokio::Pool`]).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ibconn_core::backfill::{
    aligned_range, bar_start_unix, estimate, BackfillJob, BackfillSpec, JobConfig, PlanError,
    Summary,
};
use ibconn_core::civil::SECS_PER_DAY;
use ibconn_core::client_id::Purpose;
use ibconn_core::message::{Bar, Contract};
use ibconn_core::pool::{CallError, PoolConfig, PoolStats};
use ibconn_sim::{BackfillRun, PoolWorld, PoolWorldConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::args::FetchArgs;
use crate::config::{secs, Settings};
use crate::coordination;
use crate::csvio::{self, CsvError};
use crate::probe;

/// Exit code: partial result.
pub(crate) const EXIT_PARTIAL: u8 = 3;

/// Why a command could not run at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad arguments or input (exit 2).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The output file cannot be read (exit 2) or written (exit 1).
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// Writing the summary or the bars failed (exit 1).
    #[error("{0}")]
    Io(String),
}

impl CliError {
    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Plan(_) => 2,
            Self::Csv(CsvError::Csv { .. } | CsvError::Time { .. }) => 2,
            Self::Csv(CsvError::Io { .. }) | Self::Io(_) => 1,
        }
    }
}

/// The job for `args`, resumed from `--out` if it exists, and the file's bars outside the range
/// (kept when the file is rewritten).
fn prepare(args: &FetchArgs) -> Result<(BackfillJob, Vec<Bar>), CliError> {
    let spec = BackfillSpec {
        contract: Contract::stock(&args.symbol.to_uppercase()),
        bar_size: args.bar,
        what_to_show: args.what.clone(),
        use_rth: args.rth,
    };
    let daily = args.bar.is_daily_or_longer();
    let held = match &args.out {
        Some(path) => csvio::read(path, daily)?,
        None => Vec::new(),
    };
    let to_unix = effective_to(args);
    let (from, to) = aligned_range(args.bar, args.from, to_unix);
    let (inside, outside): (Vec<Bar>, Vec<Bar>) = held
        .into_iter()
        .partition(|b| bar_start_unix(&b.date).is_some_and(|t| t >= from && t < to));
    let mut job = BackfillJob::new(spec, args.from, to_unix, inside, JobConfig::default())?;
    if let Some(coverage) = args.out.as_deref().and_then(csvio::read_coverage) {
        if coverage.request == request_key(args) {
            job.skip_covered(&coverage.covered);
        }
    }
    Ok((job, outside))
}

/// `--to`, or for a real gateway (wall time) at most the start of the current bar: IB answers an
/// end date in the future with an error, and a bar still forming would change later.
fn effective_to(args: &FetchArgs) -> i64 {
    if args.gateway.is_none() {
        return args.to;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(i64::MAX, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let step = if args.bar.is_daily_or_longer() {
        SECS_PER_DAY
    } else {
        i64::from(args.bar.seconds())
    };
    args.to.min(now - now.rem_euclid(step))
}

/// What makes two runs the same request (their coverage is interchangeable).
fn request_key(args: &FetchArgs) -> String {
    format!(
        "{}|{}|{}|{}",
        args.symbol.to_uppercase(),
        args.bar.as_str(),
        args.what,
        args.rth
    )
}

/// What `plan` prints.
#[derive(Debug, Serialize)]
pub(crate) struct PlanReport {
    /// Requests a fetch would send now (chunks not covered by `--out`).
    pub(crate) requests: usize,
    /// Chunks in the whole plan.
    pub(crate) chunks_total: usize,
    /// Chunks already covered by `--out`.
    pub(crate) chunks_resumed: usize,
    /// Requests IB's pacing would hold back.
    pub(crate) delayed: usize,
    /// IB-pacing time estimate, seconds (answers assumed to take 1 s).
    pub(crate) estimate_secs: u64,
    /// Bar size, IB spelling.
    pub(crate) bar_size: String,
    /// Aligned range, unix seconds.
    pub(crate) from_unix: i64,
    /// Aligned range end (exclusive), unix seconds.
    pub(crate) to_unix: i64,
}

/// `ibconn plan`: count and time the requests under the configured pacing rules; nothing is
/// sent.
pub(crate) fn plan(args: &FetchArgs, settings: &Settings) -> Result<PlanReport, CliError> {
    let (job, _) = prepare(args)?;
    let pending: Vec<_> = job.pending_chunks().cloned().collect();
    // One origin instant for the virtual-time estimate; nothing is sent.
    #[allow(clippy::disallowed_methods)]
    let origin = Instant::now();
    let est = estimate(
        job.spec(),
        &pending,
        settings.pacing_rules(),
        Duration::from_secs(1),
        origin,
    )
    .map_err(|e| CliError::Io(format!("pacing estimate: {e}")))?;
    let p = job.progress();
    let (from_unix, to_unix) = job.range();
    Ok(PlanReport {
        requests: pending.len(),
        chunks_total: p.chunks_total,
        chunks_resumed: p.chunks_resumed,
        delayed: est.delayed,
        estimate_secs: est.makespan.as_secs(),
        bar_size: args.bar.as_str().to_owned(),
        from_unix,
        to_unix,
    })
}

impl PlanReport {
    /// Human-readable lines.
    pub(crate) fn text(&self) -> String {
        format!(
            "requests: {} ({} chunks, {} already in the output file)\n\
             IB pacing: about {} ({} requests held back by the 60-per-10-minutes rule)\n",
            self.requests,
            self.chunks_total,
            self.chunks_resumed,
            human(Duration::from_secs(self.estimate_secs)),
            self.delayed
        )
    }
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
        let mut s = format!(
            "{} {} {}: {} bars ({} new) from {} requests in {time} on {}\n\
             chunks: {} total, {} resumed, {} empty, {} failed; retries {}\n\
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
            p.chunks_empty,
            p.chunks_failed,
            p.retries,
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

struct Progress {
    bar: ProgressBar,
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

/// Where the bars go: `--out` (rewritten atomically, with the file's bars outside the range kept)
/// or stdout at the end.
struct Output {
    path: Option<PathBuf>,
    outside: Vec<Bar>,
    request: String,
    /// Spans an earlier run covered (kept: this run's plan may cover less).
    earlier: Vec<(i64, i64)>,
}

impl Output {
    fn bars(&self, job: &BackfillJob) -> Vec<Bar> {
        let mut bars = self.outside.clone();
        bars.extend(job.bars().iter().map(|(_, b)| b.clone()));
        bars.sort_by_key(|b| bar_start_unix(&b.date));
        bars
    }

    /// Write what the job holds now to `--out` and its coverage beside it (a no-op for stdout).
    fn checkpoint(&self, job: &BackfillJob) -> Result<(), CsvError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        csvio::write_file(path, &self.bars(job))?;
        let mut spans = self.earlier.clone();
        spans.extend(job.covered_spans());
        spans.sort_unstable();
        let mut covered: Vec<(i64, i64)> = Vec::new();
        for (s, e) in spans {
            match covered.last_mut() {
                Some(last) if last.1 >= s => last.1 = last.1.max(e),
                _ => covered.push((s, e)),
            }
        }
        let coverage = csvio::Coverage {
            request: self.request.clone(),
            covered,
        };
        csvio::write_coverage(path, &coverage)
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
    let (mut job, outside) = prepare(args)?;
    let request = request_key(args);
    let earlier = args
        .out
        .as_deref()
        .and_then(csvio::read_coverage)
        .filter(|c| c.request == request)
        .map(|c| c.covered)
        .unwrap_or_default();
    let output = Output {
        path: args.out.clone(),
        outside,
        request,
        earlier,
    };
    let held = job.progress().bars;
    #[allow(clippy::disallowed_methods)] // wall time of the run, for the summary only
    let started = Instant::now();
    let progress = Progress::new(job.progress().chunks_total, args.gateway.is_none());
    let ran = match &args.gateway {
        None => run_embedded(args, settings, &mut job, &progress),
        Some(addr) => run_gateway(args, settings, addr, &mut job, &progress, &output),
    };
    progress.bar.finish_and_clear();
    let wall = started.elapsed();

    let bars = output.bars(&job);
    match &args.out {
        Some(_) => output.checkpoint(&job)?,
        None => {
            let stdout = std::io::stdout();
            csvio::write_to(stdout.lock(), &bars)
                .map_err(|e| CliError::Io(format!("stdout: {e}")))?;
        }
    }

    let summary = job.summary();
    let failed = !summary.failures.is_empty();
    let exit_code = if ran.error.is_some() && summary.progress.bars_added == 0 && held == 0 {
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

fn run_embedded(
    args: &FetchArgs,
    settings: &Settings,
    job: &mut BackfillJob,
    progress: &Progress,
) -> Ran {
    let mut cfg = PoolWorldConfig::new(args.seed);
    // The configured pool (purposes, pacing, timeouts); the simulator's gateway label and seed.
    cfg.pool = PoolConfig {
        rng_seed: cfg.pool.rng_seed,
        ..settings.pool_config(cfg.pool.gateways.clone())
    };
    // The simulated gateway's clock: its default, or a day past the range, whichever is later,
    // so the whole range lies in its past (the same for every run with these arguments).
    let (_, to) = job.range();
    let after_range = to.saturating_add(SECS_PER_DAY).saturating_mul(1000);
    cfg.wall_unix_ms = cfg.wall_unix_ms.max(after_range);
    cfg.gateway.start_unix_ms = cfg.wall_unix_ms;
    let mut world = PoolWorld::new(cfg);
    let run = BackfillRun {
        concurrency: concurrency(args, settings),
        request_timeout: secs(settings.fetch.request_timeout_secs),
        ..BackfillRun::default()
    };
    let result = world.run_backfill(job, run, |job, elapsed| {
        progress.update(job, Some(elapsed), None);
    });
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
    rt.block_on(drive_gateway(args, settings, addr, job, progress, output))
}

/// Interval of `--out` checkpoints during a wall-time fetch.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// Drive `job` on a real gateway. Ctrl-C stops it: what was fetched is written and the exit code
/// says "partial". `--out` is rewritten every [`CHECKPOINT_EVERY`], so even a killed process keeps
/// most of its work.
async fn drive_gateway(
    args: &FetchArgs,
    settings: &Settings,
    addr: &str,
    job: &mut BackfillJob,
    progress: &Progress,
    output: &Output,
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
                    _ = tokio::signal::ctrl_c() => {
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
