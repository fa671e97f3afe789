//! `ibconn plan` of several symbols (or with `--out-dir`): every symbol's chunks counted as
//! `plan` counts one symbol's, then timed together — interleaved round-robin through one pacer,
//! as `fetch --out-dir` sends them ([`crate::drive`]) — for one estimate of the whole run.

use std::time::{Duration, Instant};

use ibconn_core::backfill::{
    estimate_requests, BackfillSpec, Chunk, Estimate, HeldCounts, SessionUse,
};
use ibconn_core::bar_size::BarSize;
use ibconn_core::pacer::{Hold, PacedRequest, Pacer, PacerError};
use serde::Serialize;

use crate::args::FetchArgs;
use crate::batch;
use crate::config::Settings;
use crate::fetch::{human, out_path, prepare, CliError};
use crate::output::OutFile;
use crate::plan::{self, PlanReport, SharedView};
use crate::session::EMBEDDED_LABEL;

/// What `ibconn plan` printed: one symbol's plan as it always was, or several.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Planned {
    /// One symbol without `--out-dir`.
    One(PlanReport),
    /// Several symbols, or `--out-dir`.
    Many(BatchPlan),
}

impl Planned {
    /// Human-readable lines.
    pub(crate) fn text(&self) -> String {
        match self {
            Self::One(p) => p.text(),
            Self::Many(p) => p.text(),
        }
    }
}

/// One symbol's share of a [`BatchPlan`].
#[derive(Debug, Serialize)]
pub(crate) struct SymbolPlan {
    /// The contract as given (canonical text).
    pub(crate) symbol: String,
    /// Its file in `--out-dir`, if given.
    pub(crate) file: Option<std::path::PathBuf>,
    /// Requests a fetch would send now for it.
    pub(crate) requests: usize,
    /// Chunks in its plan.
    pub(crate) chunks_total: usize,
    /// Chunks its file already covers.
    pub(crate) chunks_resumed: usize,
    /// Chunks in closed sessions: not asked.
    pub(crate) chunks_closed: usize,
    /// Requests were every chunk asked, closed sessions included.
    pub(crate) requests_all_sessions: usize,
    /// Whether closed sessions are left out, and if not, why.
    pub(crate) sessions: SessionUse,
    /// Why its contract details could not be had (every chunk then counts).
    pub(crate) sessions_error: Option<String>,
}

/// The plan of several symbols fetched together.
#[derive(Debug, Serialize)]
pub(crate) struct BatchPlan {
    /// Requests a fetch would send now, all symbols.
    pub(crate) requests: usize,
    /// Chunks in every symbol's plan.
    pub(crate) chunks_total: usize,
    /// Chunks the files already cover.
    pub(crate) chunks_resumed: usize,
    /// Chunks in closed sessions: not asked.
    pub(crate) chunks_closed: usize,
    /// Requests IB's pacing would hold back.
    pub(crate) delayed: usize,
    /// Those, by the rule that held each (interleaving leaves the per-contract burst rule
    /// little or nothing).
    pub(crate) delayed_by: HeldCounts,
    /// IB-pacing time estimate for all symbols together, seconds (answers assumed to take 1 s).
    pub(crate) estimate_secs: u64,
    /// Requests were every chunk asked, closed sessions included.
    pub(crate) requests_all_sessions: usize,
    /// The estimate for those, seconds.
    pub(crate) estimate_secs_all_sessions: u64,
    /// Where the contract details were asked (none when no symbol needed them).
    pub(crate) sessions_from: Option<String>,
    /// Bar size (IB spelling when serialized).
    pub(crate) bar_size: BarSize,
    /// The gateway's shared pacing book, when planning for a gateway.
    pub(crate) shared: Option<SharedView>,
    /// Per symbol, in the order given.
    pub(crate) symbols: Vec<SymbolPlan>,
    /// The window, burst and identical-request rules in words, as configured (for the text).
    #[serde(skip)]
    pub(crate) rule_words: [String; 3],
}

/// `ibconn plan`: one symbol as [`plan::plan`], several (or `--out-dir`) together.
pub(crate) fn run(args: &FetchArgs, settings: &Settings) -> Result<Planned, CliError> {
    let specs = batch::symbols(args)?;
    match (&args.out_dir, specs.as_slice()) {
        (None, [one]) => plan::plan(args, settings, one).map(Planned::One),
        _ => plan_many(args, settings, &specs).map(Planned::Many),
    }
}

/// One symbol's requests, for the estimate.
struct Work {
    /// What every chunk of it shares.
    spec: BackfillSpec,
    /// The chunks a fetch would ask now.
    pending: Vec<Chunk>,
    /// Every chunk of its grid, closed sessions included.
    every: Vec<Chunk>,
}

/// Plan `specs` together (see the [module docs](self)); no historical request is sent.
fn plan_many(
    args: &FetchArgs,
    settings: &Settings,
    specs: &[ibconn_core::contract_spec::ContractSpec],
) -> Result<BatchPlan, CliError> {
    let mut symbols = Vec::with_capacity(specs.len());
    let mut work: Vec<Work> = Vec::with_capacity(specs.len());
    let mut sessions_from = None;
    for spec in specs {
        let file = match &args.out_dir {
            Some(dir) => Some(dir.join(batch::file_name(spec))),
            None => out_path(args).map(ToOwned::to_owned),
        };
        // Only reads the file: a fetch writing it at the same time does not stop a plan.
        let opened = file.as_deref().map(OutFile::inspect).transpose()?;
        let mut job = prepare(args, settings, spec, opened, args.out_dir.is_some())?.job;
        let every: Vec<Chunk> = job.pending_chunks().cloned().collect();
        let wants = matches!(job.sessions(), SessionUse::Pending) && !every.is_empty();
        let sessions_error = if wants {
            sessions_from = Some(
                args.gateway
                    .clone()
                    .unwrap_or_else(|| EMBEDDED_LABEL.to_owned()),
            );
            match plan::contract_details(args, settings, &job) {
                Ok(found) => {
                    job.use_sessions_of(&found);
                    None
                }
                Err(e) => Some(e),
            }
        } else {
            None
        };
        let pending: Vec<Chunk> = job.pending_chunks().cloned().collect();
        let p = job.progress();
        symbols.push(SymbolPlan {
            symbol: spec.to_string(),
            file,
            requests: pending.len(),
            chunks_total: p.chunks_total,
            chunks_resumed: p.chunks_resumed,
            chunks_closed: p.chunks_closed,
            requests_all_sessions: every.len(),
            sessions: job.sessions().clone(),
            sessions_error,
        });
        work.push(Work {
            spec: job.spec().clone(),
            pending,
            every,
        });
    }
    // One origin instant for the virtual-time estimate; nothing is sent.
    #[allow(clippy::disallowed_methods)]
    let origin = Instant::now();
    let rules = settings.pacing_rules();
    let (pacer, shared) = match &args.gateway {
        Some(addr) => {
            let (book, time, store) =
                plan::read_shared_book(settings, addr).map_err(CliError::Io)?;
            let owners = book.owners(&rules, time);
            let shared = SharedView {
                store,
                historical_weight_in_window: owners
                    .iter()
                    .map(|o| o.historical_weight_in_window)
                    .sum(),
                scheduled_ahead: owners.iter().map(|o| o.scheduled_ahead).sum(),
                owners,
            };
            (Pacer::from_book(rules, book, origin, time), Some(shared))
        }
        None => (Pacer::new(rules), None),
    };
    let estimate = |every: bool| {
        let lists: Vec<(&BackfillSpec, &Vec<Chunk>)> = work
            .iter()
            .map(|w| (&w.spec, if every { &w.every } else { &w.pending }))
            .collect();
        estimate_interleaved(&lists, pacer.clone(), Duration::from_secs(1), origin)
            .map_err(|e| CliError::Io(format!("pacing estimate: {e}")))
    };
    let now = estimate(false)?;
    let all = estimate(true)?;
    Ok(BatchPlan {
        requests: symbols.iter().map(|s| s.requests).sum(),
        chunks_total: symbols.iter().map(|s| s.chunks_total).sum(),
        chunks_resumed: symbols.iter().map(|s| s.chunks_resumed).sum(),
        chunks_closed: symbols.iter().map(|s| s.chunks_closed).sum(),
        delayed: now.delayed,
        delayed_by: now.held_by,
        estimate_secs: now.makespan.as_secs(),
        requests_all_sessions: symbols.iter().map(|s| s.requests_all_sessions).sum(),
        estimate_secs_all_sessions: all.makespan.as_secs(),
        sessions_from,
        bar_size: args.bar,
        shared,
        symbols,
        rule_words: [Hold::HistoricalWindow, Hold::Burst, Hold::Identical]
            .map(|h| h.describe(&settings.pacing_rules())),
    })
}

/// How long `pacer` takes over several symbols' chunks sent round-robin (one of each in turn,
/// as `fetch --out-dir` sends them), each answer taking `latency`.
fn estimate_interleaved(
    lists: &[(&BackfillSpec, &Vec<Chunk>)],
    pacer: Pacer,
    latency: Duration,
    origin: Instant,
) -> Result<Estimate, PacerError> {
    let longest = lists.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let keys: Vec<PacedRequest> = (0..longest)
        .flat_map(|k| {
            lists
                .iter()
                .filter_map(move |(spec, chunks)| chunks.get(k).map(|c| spec.pacing_key(c)))
        })
        .collect();
    estimate_requests(&keys, pacer, latency, origin)
}

impl BatchPlan {
    /// Human-readable lines: the totals, one line per symbol, the estimate.
    pub(crate) fn text(&self) -> String {
        let mut s = format!(
            "{} symbols: {} requests ({} chunks, {} already in the output files, {} in closed \
             sessions)\n",
            self.symbols.len(),
            self.requests,
            self.chunks_total,
            self.chunks_resumed,
            self.chunks_closed,
        );
        let rows: Vec<[String; 3]> = self
            .symbols
            .iter()
            .map(|x| {
                let mut sessions = plan::sessions_text(&x.sessions);
                if let Some(e) = &x.sessions_error {
                    sessions.push_str(&format!(" (contract details unavailable: {e})"));
                }
                [
                    x.symbol.clone(),
                    format!(
                        "{} requests ({} chunks, {} resumed, {} closed)",
                        x.requests, x.chunks_total, x.chunks_resumed, x.chunks_closed
                    ),
                    format!("sessions: {sessions}"),
                ]
            })
            .collect();
        for line in crate::util::table(&rows).lines() {
            s.push_str(&format!("  {line}\n"));
        }
        let d = &self.delayed_by;
        let [window, burst, identical] = &self.rule_words;
        let held: Vec<String> = [
            (d.historical_window, window.as_str()),
            (d.burst, burst.as_str()),
            (d.identical, identical.as_str()),
            (d.other, "other rules or other processes' requests"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} by {why}"))
        .collect();
        let held = if held.is_empty() {
            "no request held back".to_owned()
        } else {
            format!("{} held back: {}", self.delayed, held.join(", "))
        };
        s.push_str(&format!(
            "IB pacing, all symbols interleaved through one pacer: about {} ({held})\n",
            human(Duration::from_secs(self.estimate_secs)),
        ));
        if let Some(from) = &self.sessions_from {
            s.push_str(&format!("contract details from {from}\n"));
        }
        plan::tail_lines(
            &mut s,
            (self.requests, self.requests_all_sessions),
            self.estimate_secs_all_sessions,
            self.shared.as_ref(),
        );
        s
    }
}
