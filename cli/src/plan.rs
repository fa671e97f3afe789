//! `ibconn plan`: how many requests a fetch would send and how long IB's pacing would make them
//! take; no historical request is sent. The contract's sessions (which chunks a fetch would not
//! ask) come from the contract details the fetch would get: the embedded simulator's, computed
//! in-process at the clock the fetch would run it on, or, with `--gateway`, one contract-details
//! request (not paced by IB's historical rules). Without them the plan counts every chunk and
//! says why.

use std::time::{Duration, Instant};

use ibconn_core::backfill::{estimate_behind, BackfillJob, Chunk, HeldCounts, SessionUse};
use ibconn_core::bar_size::BarSize;
use ibconn_core::client_id::Purpose;
use ibconn_core::contract_spec::ContractSpec;
use ibconn_core::message::{Contract, ContractDetails};
use ibconn_core::pacer::{Hold, OwnerView, PaceBook, PaceTime, Pacer, PacingRules};
use serde::Serialize;

use crate::args::FetchArgs;
use crate::config::Settings;
use crate::coordination;
use crate::fetch::{embedded_config, human, out_path, prepare, CliError};
use crate::output::OutFile;
use crate::session::{self, Session, EMBEDDED_LABEL};

/// What `plan` prints.
#[derive(Debug, Serialize)]
pub(crate) struct PlanReport {
    /// Requests a fetch would send now (chunks not covered by `--out`, not closed).
    pub(crate) requests: usize,
    /// Chunks in the whole plan.
    pub(crate) chunks_total: usize,
    /// Chunks already covered by `--out`.
    pub(crate) chunks_resumed: usize,
    /// Chunks no open session of the contract meets: not asked.
    pub(crate) chunks_closed: usize,
    /// Requests IB's pacing would hold back.
    pub(crate) delayed: usize,
    /// Those, by the rule that would hold each: the 10-minute window, the per-contract burst
    /// rule, the identical-request gap, anything else.
    pub(crate) delayed_by: HeldCounts,
    /// The limits those rules have in this configuration, in words (for the text).
    #[serde(skip)]
    pub(crate) rule_words: RuleWords,
    /// IB-pacing time estimate, seconds (answers assumed to take 1 s).
    pub(crate) estimate_secs: u64,
    /// Requests were every chunk asked, closed sessions included (what a fetch sent before
    /// sessions were used, or sends with `fetch.skip_closed_sessions = false`).
    pub(crate) requests_all_sessions: usize,
    /// The IB-pacing estimate for those, seconds.
    pub(crate) estimate_secs_all_sessions: u64,
    /// Whether closed sessions are left out, and if not, why.
    pub(crate) sessions: SessionUse,
    /// Where the contract details were asked: `embedded-sim` or the gateway address (none when
    /// the plan did not need them: filter off, daily bars, nothing left to ask).
    pub(crate) sessions_from: Option<String>,
    /// Why the contract details could not be had (every chunk then counts).
    pub(crate) sessions_error: Option<String>,
    /// Bar size (IB spelling when serialized).
    pub(crate) bar_size: BarSize,
    /// Aligned range, unix seconds.
    pub(crate) from_unix: i64,
    /// Aligned range end (exclusive), unix seconds.
    pub(crate) to_unix: i64,
    /// The gateway's shared pacing book, when planning for a gateway (`--gateway`): the
    /// estimate starts behind what other processes and hosts hold in it.
    pub(crate) shared: Option<SharedView>,
}

/// What other processes (and hosts) hold in a gateway's shared pacing book.
#[derive(Debug, Serialize)]
pub(crate) struct SharedView {
    /// Where the book lives (`file /path`, `redis://…`).
    pub(crate) store: String,
    /// Every owner with a live claim.
    pub(crate) owners: Vec<OwnerView>,
    /// Historical weight they sent in the window ending now.
    pub(crate) historical_weight_in_window: u32,
    /// Their requests still scheduled ahead.
    pub(crate) scheduled_ahead: u32,
}

/// A copy of `addr`'s shared pacing book and the ledger's time, read (never written) through
/// the configured coordination store.
pub(crate) fn read_shared_book(
    settings: &Settings,
    addr: &str,
) -> Result<(PaceBook, PaceTime, String), String> {
    let mut shared = coordination::open(settings, "ibconn plan")?;
    let key = settings.pool_config(vec![addr.to_owned()]).pacing_key(addr);
    let mut copy = None;
    #[allow(clippy::disallowed_methods)] // the ledger maps its clock to this instant
    let now = Instant::now();
    shared
        .ledger
        .transact(&key, now, &mut |book, clock| {
            copy = Some((book.clone(), clock.time))
        })
        .map_err(|e| e.to_string())?;
    let (book, time) = copy.ok_or("the pacing store answered without a book")?;
    Ok((book, time, shared.ledger.describe()))
}

/// The contract details a fetch of `job` would get: from the embedded simulator at the clock the
/// fetch would run it on, or from `--gateway` (one request).
pub(crate) fn contract_details(
    args: &FetchArgs,
    settings: &Settings,
    job: &BackfillJob,
) -> Result<Vec<(Contract, ContractDetails)>, String> {
    let contract = job.spec().contract.clone();
    match &args.gateway {
        None => {
            let cfg = embedded_config(args, settings, job);
            let market = &cfg.gateway.market;
            let now = cfg.gateway.start_unix_ms.div_euclid(1000);
            let found: Vec<_> = market
                .find_all(&contract, now)
                .iter()
                .map(|inst| market.contract_details(inst, now))
                .collect();
            if found.is_empty() {
                return Err("the embedded simulator has no such contract".to_owned());
            }
            Ok(found)
        }
        Some(addr) => {
            let rt = session::runtime()?;
            rt.block_on(async {
                let s = Session::open(Some(addr), args.seed, settings, "ibconn plan")
                    .await
                    .map_err(|e| e.to_string())?;
                let found = match s.acquire(Purpose::Validation).await {
                    Ok(conn) => conn
                        .contract_details(contract)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                s.close().await;
                found
            })
        }
    }
}

/// `ibconn plan`: count and time the requests under the configured pacing rules, with and
/// without the contract's closed sessions; no historical request is sent.
pub(crate) fn plan(
    args: &FetchArgs,
    settings: &Settings,
    symbol: &ContractSpec,
) -> Result<PlanReport, CliError> {
    // Only reads the file: a fetch writing it at the same time does not stop a plan.
    let file = out_path(args).map(OutFile::inspect).transpose()?;
    let mut job = prepare(args, settings, symbol, file, false)?.job;
    let every: Vec<Chunk> = job.pending_chunks().cloned().collect();
    let wants_sessions = matches!(job.sessions(), SessionUse::Pending) && !every.is_empty();
    let sessions_error = if wants_sessions {
        match contract_details(args, settings, &job) {
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
    // One origin instant for the virtual-time estimate; nothing is sent.
    #[allow(clippy::disallowed_methods)]
    let origin = Instant::now();
    let rules = settings.pacing_rules();
    let (pacer, shared) = match &args.gateway {
        Some(addr) => {
            let (book, time, store) = read_shared_book(settings, addr).map_err(CliError::Io)?;
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
            (
                Pacer::from_book(rules.clone(), book, origin, time),
                Some(shared),
            )
        }
        None => (Pacer::new(rules.clone()), None),
    };
    let estimate = |chunks: &[Chunk]| {
        estimate_behind(
            job.spec(),
            chunks,
            pacer.clone(),
            Duration::from_secs(1),
            origin,
        )
        .map_err(|e| CliError::Io(format!("pacing estimate: {e}")))
    };
    let est = estimate(&pending)?;
    let all = estimate(&every)?;
    let p = job.progress();
    let (from_unix, to_unix) = job.range();
    Ok(PlanReport {
        requests: pending.len(),
        chunks_total: p.chunks_total,
        chunks_resumed: p.chunks_resumed,
        chunks_closed: p.chunks_closed,
        delayed: est.delayed,
        delayed_by: est.held_by,
        rule_words: RuleWords::of(&rules),
        estimate_secs: est.makespan.as_secs(),
        requests_all_sessions: every.len(),
        estimate_secs_all_sessions: all.makespan.as_secs(),
        sessions: job.sessions().clone(),
        sessions_from: wants_sessions.then(|| {
            args.gateway
                .clone()
                .unwrap_or_else(|| EMBEDDED_LABEL.to_owned())
        }),
        sessions_error,
        bar_size: args.bar,
        from_unix,
        to_unix,
        shared,
    })
}

impl PlanReport {
    /// Human-readable lines.
    pub(crate) fn text(&self) -> String {
        let mut s = format!(
            "requests: {} ({} chunks, {} already in the output file, {} in closed sessions)\n\
             IB pacing: about {}{}\n",
            self.requests,
            self.chunks_total,
            self.chunks_resumed,
            self.chunks_closed,
            human(Duration::from_secs(self.estimate_secs)),
            self.held_text(),
        );
        s.push_str(&format!("sessions: {}", sessions_text(&self.sessions)));
        if let Some(from) = &self.sessions_from {
            s.push_str(&format!(" (contract details from {from}"));
            if let Some(e) = &self.sessions_error {
                s.push_str(&format!(": unavailable: {e}"));
            }
            s.push(')');
        }
        s.push('\n');
        tail_lines(
            &mut s,
            (self.requests, self.requests_all_sessions),
            self.estimate_secs_all_sessions,
            self.shared.as_ref(),
        );
        s
    }
}

/// The pacing rules a plan names, in words ([`Hold::describe`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleWords {
    /// The historical window (IB: 60 per 10 minutes).
    window: String,
    /// The per-contract burst rule (IB: 5 per 2 seconds).
    burst: String,
    /// The identical-request gap (IB: 15 seconds).
    identical: String,
}

impl RuleWords {
    /// The words for `rules`.
    fn of(rules: &PacingRules) -> Self {
        Self {
            window: Hold::HistoricalWindow.describe(rules),
            burst: Hold::Burst.describe(rules),
            identical: Hold::Identical.describe(rules),
        }
    }
}

impl PlanReport {
    /// "(75 requests held back: 20 by …, 55 by …)": each wait blamed on the rule that set it.
    fn held_text(&self) -> String {
        if self.delayed == 0 {
            return " (no request held back)".to_owned();
        }
        let d = &self.delayed_by;
        let w = &self.rule_words;
        let parts: Vec<String> = [
            (d.historical_window, w.window.as_str()),
            (d.burst, w.burst.as_str()),
            (d.identical, w.identical.as_str()),
            (d.other, "other rules or other processes' requests"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} by {why}"))
        .collect();
        format!(
            " ({} {} held back: {})",
            self.delayed,
            if self.delayed == 1 {
                "request"
            } else {
                "requests"
            },
            parts.join(", ")
        )
    }
}

/// One phrase for how sessions are used, for the plan and the fetch summary.
pub(crate) fn sessions_text(sessions: &SessionUse) -> String {
    match sessions {
        SessionUse::Pending => "not known (no contract details): every chunk asked".to_owned(),
        SessionUse::Applied { zone, hours } => {
            format!("{} in {zone}; closed ones not asked", hours.ib_name())
        }
        SessionUse::Off(why) => format!("not used ({why}): every chunk asked"),
    }
}

/// The lines every plan ends with: what asking closed sessions too would cost (`requests` is
/// `(planned, with closed sessions)`), and whom a shared pacing book makes us wait behind.
pub(crate) fn tail_lines(
    s: &mut String,
    requests: (usize, usize),
    estimate_secs_all_sessions: u64,
    shared: Option<&SharedView>,
) {
    if requests.0 != requests.1 {
        s.push_str(&format!(
            "every chunk asked, closed sessions included: {} requests, about {}\n",
            requests.1,
            human(Duration::from_secs(estimate_secs_all_sessions))
        ));
    }
    if let Some(shared) = shared {
        s.push_str(&format!(
            "shared pacing ({}): {} other processes hold {} requests of the last 10 minutes \
             and {} scheduled ahead; the estimate waits behind them\n",
            shared.store,
            shared.owners.len(),
            shared.historical_weight_in_window,
            shared.scheduled_ahead
        ));
    }
}
