//! The scenario suite: the real core `Pool` against the simulated gateway in virtual time
//! ([`PoolWorld`]), every scenario parameterised by a seed.
//!
//! - **Swarm** ([`swarm`]): each seed draws a whole scenario — which faults (close, half-open,
//!   delay, split, garbage, link loss, farm flap, nightly reset, restart, host sleep, and IB's
//!   request faults: a spurious "no data", a request never answered, a spurious 322), how often,
//!   how many callers of which purpose, what load (small bars, head timestamps, small bars older
//!   than IB keeps, end dates in the future), a backfill job, squatted client ids, a gateway down
//!   at start.
//! - **Directed**: one scenario each, varied only by the seed: 24 h stability, sleep/wake,
//!   pacing cascade, 326 storms, gateway unavailable at start, half-open sockets, split frames,
//!   slow replies, garbage bytes, HMDS request faults with backfill jobs.
//! - **Shared** (several processes, one pool each, on one gateway and one pacing ledger, on one
//!   or two hosts): the shared swarm ([`shared_swarm`]: the swarm's faults plus the pacing store
//!   down and processes killed and started again), a shared pacing cascade, store outages, killed
//!   processes.
//!
//! Every run has a *safety* phase (load and faults), a *drain* (no new work: every open request
//! must end), a *liveness* phase (faults healed: every caller must get a lease and a successful
//! answer within a bound) and a *shutdown*. Checked after every tick ([`Run::check`]) and at the
//! end ([`Run::shutdown`]):
//!
//! - every ticket submitted ends exactly once (data or a typed error), never past its deadline
//!   plus [`GRACE`]; every acquire likewise;
//! - zero pacing violations at the gateway, all processes together (IB's small-bar rules, which
//!   the sim counts per gateway, the pool's default margin);
//! - per live pool: its live leases are exactly the leases its callers hold, each on one
//!   connection; its host registry's leases of it are exactly its connections' ids, and none is
//!   another holder's; no client id is in use by two live pools at once; a completion arrives
//!   only in the pool that was asked, once;
//! - the shared pacing book: a live process holds no more open requests than its pool has open
//!   tickets, and a killed process holds none (and no unsent slot) once its claim's TTL ran out;
//! - bounded state: connections, sockets, deliveries in flight, held ids, open tickets;
//! - every backfill job finishes, and each of its chunks holds exactly the bars the gateway has
//!   for it, or failed with a typed error — or (tolerated, counted, see [`Run::check_jobs`]) is
//!   held empty because its last answer was a 162 "no data", which the core's job records as
//!   covered (its documented policy) even when the "no data" was spurious;
//! - after shutdown: no leases, no connections, no client ids held, no sockets, no timers, no
//!   open request in the pacing book, and no session left at the gateway.
//!
//! Seeds: CI runs a fixed set per test. `IBCONN_SIM_SEEDS=N` sweeps about N seeds in all (shared
//! by the tests in proportion to their CI counts); `IBCONN_SIM_SEED=S` replays one. A failing
//! seed is printed with the command that replays it, and its full trace (every command, frame
//! and pool event: [`PoolWorld::trace`]) is written to `target/ibsim/<test>-<seed>.log` (the
//! target dir: `CARGO_TARGET_DIR`, else the workspace's); nothing is written on success.
//!
//! Determinism: [`a_seed_replays_identically`] runs a few swarm seeds twice and compares their
//! traces line for line (and every byte delivered); `IBCONN_SIM_CHECK_DETERMINISM=1` does so for
//! every seed of every test, and a mismatch prints the seed, the first differing line of each
//! run, both traces and the replay command.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ibconn_core::backfill::{bar_start_unix, BackfillJob, BackfillSpec, ChunkId, JobConfig};
use ibconn_core::bar_size::BarSize;
use ibconn_core::civil::utc;
use ibconn_core::classify::ErrorClass;
use ibconn_core::client_id::{Purpose, RegistryConfig};
use ibconn_core::connection::{Answer, Query, RequestError};
use ibconn_core::date_format::DateFormat;
use ibconn_core::ib_duration::{DurationUnit, IbDuration};
use ibconn_core::message::Contract;
use ibconn_core::pool::{AcquireId, CallError, LeaseId, PoolConfig, PoolEvent, PoolStats, Ticket};
use ibconn_core::query::{EndTime, HeadTimestampQuery, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::rng::SplitMix64;
use ibconn_sim::{Farm, Fault, GatewayCounters, PoolWorld, PoolWorldConfig, Target};

/// `n` seconds.
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One virtual minute.
const MIN: Duration = secs(60);

/// Slack past a deadline before an open request or acquire counts as hung: the harness looks
/// once per tick (≤ 5 s) and the outcome may still be on the wire.
const GRACE: Duration = secs(10);

/// The pool's default acquire timeout ([`ibconn_core::pool::PoolConfig::acquire_timeout`]).
const ACQUIRE_TIMEOUT: Duration = secs(30);

/// Most client ids of a range squatted at once in the green scenarios: below the registry's
/// `max_conflict_attempts` (5), so a connect never gives up (see
/// [`regression_lease_vanishes_when_326s_exhaust_a_leased_connection`]).
const MAX_SQUAT: usize = 4;

/// Backfill connections a pool opens at most (its default purpose limits): callers of that
/// purpose per process, job callers included, must not exceed it.
const MAX_BACKFILL: usize = 4;

/// The registry's lease TTL ([`ibconn_core::client_id::RegistryConfig::lease_ttl`]).
const LEASE_TTL: Duration = secs(60);

/// How long a pool's pacing claims outlive its last renewal
/// ([`ibconn_core::pool::PoolConfig::pacing_claim_ttl`]).
const PACING_CLAIM_TTL: Duration = secs(60);

/// Timeout of `CurrentTime` requests (the gateway ignores a second one within 1 s).
const PROBE_TIMEOUT: Duration = secs(30);

/// How long after healing every caller must have had a successful answer.
const LIVENESS_BOUND: Duration = Duration::from_secs(40 * 60);

/// The CI seed counts, summed: `IBCONN_SIM_SEEDS=N` gives each test `N × ci / CI_TOTAL` seeds.
const CI_TOTAL: u64 = 442;

/// Stocks the sim's market knows.
const SYMBOLS: [&str; 9] = [
    "AAPL", "MSFT", "SPY", "QQQ", "AMZN", "GOOGL", "META", "NVDA", "TSLA",
];

/// Kinds of fault the script draws a concrete [`Fault`] for when it is due (targets are picked
/// among the connections open then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Close one connection from the gateway side.
    Close,
    /// Freeze one connection with its socket open (resumed only when the run heals).
    HalfOpen,
    /// Delay one connection's replies by 0.5–5 s for 10–60 s.
    Delay,
    /// Split one connection's writes at random points.
    Split,
    /// Write 4–64 garbage bytes on one connection.
    Garbage,
    /// 1100, then 1101/1102 after 5–120 s.
    LinkLoss,
    /// A farm down for 1–60 s.
    FarmFlap,
    /// IB's nightly reset (data silent 1–3 min).
    NightlyReset,
    /// The gateway restarts, its port refusing for 5–120 s.
    Restart,
    /// The host sleeps 1 min–3 h; half of the time the gateway dropped its sockets meanwhile.
    Sleep,
    /// The pacing store becomes unreachable for 1–40 s, at least a claim TTL after it came back
    /// last: short enough that no pool's pacing claim lapses meanwhile (a claim is renewed every
    /// heartbeat, 15 s, and lasts 60 s).
    StoreDown,
    /// The pacing store becomes unreachable for 50 s–3 min: pools' claims lapse meanwhile (see
    /// [`regression_store_outage_longer_than_the_claim_ttl`]).
    LongStoreDown,
    /// The pacing store restarts, losing every book.
    StoreRestart,
    /// A random live process is killed (`kill -9`: no shutdown, the kernel closes its sockets);
    /// it is started again, as a new process on the same host, 5 s–3 min later.
    Kill,
    /// The next 1–3 historical requests with data on one connection get IB's 162 "no data".
    SpuriousNoData,
    /// The next 1–3 historical or head-timestamp requests on one connection are never answered
    /// (they end by the client's request timeout, which cancels them).
    NeverAnswer,
    /// The next 1–3 historical or head-timestamp requests on one connection get 322 "Duplicate
    /// ticker id" (IB holding stale ids).
    DuplicateTicker,
}

impl Kind {
    /// Every kind.
    const ALL: [Self; 13] = [
        Self::Close,
        Self::HalfOpen,
        Self::Delay,
        Self::Split,
        Self::Garbage,
        Self::LinkLoss,
        Self::FarmFlap,
        Self::NightlyReset,
        Self::Restart,
        Self::Sleep,
        Self::SpuriousNoData,
        Self::NeverAnswer,
        Self::DuplicateTicker,
    ];

    /// IB's request faults.
    const REQUESTS: [Self; 3] = [
        Self::SpuriousNoData,
        Self::NeverAnswer,
        Self::DuplicateTicker,
    ];

    /// Every fault of the processes sharing a gateway and their pacing store.
    const SHARED: [Self; 4] = [
        Self::StoreDown,
        Self::Kill,
        Self::StoreRestart,
        Self::LongStoreDown,
    ];
}

/// One scripted step.
#[derive(Debug, Clone)]
enum Action {
    /// Apply this fault.
    Fault(Fault),
    /// Draw a fault of this kind.
    Random(Kind),
    /// Other sessions squat the first `n` ids of the backfill and API ranges for this long.
    Squat(usize, Duration),
    /// The other process of a takeover gives this id back (at the registry; its session at the
    /// gateway ended already).
    GiveBack(i32),
    /// The pacing store is reachable again.
    StoreUp,
    /// The killed process `dead` is started again on `host` (a new process: new pid, new owner
    /// name in the pacing book); its callers move to it.
    Respawn {
        /// The killed process.
        dead: usize,
        /// Its host.
        host: usize,
    },
}

/// A scenario: the load, the faults and their timing. Built from the seed by the scenario
/// functions; printed with a failure.
#[derive(Debug, Clone)]
struct Opts {
    /// Virtual length of the safety phase.
    safety: Duration,
    /// The harness's step: callers act, clocks are reported and invariants checked once per tick.
    tick: Duration,
    /// Processes (one pool each) on the gateway, sharing one pacing ledger.
    processes: usize,
    /// Hosts the processes are spread over (round-robin); processes on one host share a
    /// client-id registry, hosts do not.
    hosts: usize,
    /// Each host leases from its own slice of every id range (else all use the same ranges and
    /// meet at the gateway with 326s).
    disjoint_hosts: bool,
    /// Callers holding exclusive `Backfill` leases, per process (a pool caps them at 4
    /// connections).
    backfill_callers: usize,
    /// Callers sharing the one `Api` connection, per process.
    api_callers: usize,
    /// Requests each caller keeps in flight.
    in_flight: usize,
    /// Mean gap between one caller's submissions.
    think: Duration,
    /// Percent of submissions that are `CurrentTime` (the rest: small-bar historical requests).
    probe_pct: u64,
    /// Percent of the other submissions that are head-timestamp requests (IB paces them and
    /// counts them open, like small bars).
    head_pct: u64,
    /// Percent of historical requests for small bars older than IB keeps them (about six months:
    /// refused with a 162).
    stale_pct: u64,
    /// Percent of historical requests ending in the future (refused with a 162).
    future_pct: u64,
    /// Percent of historical requests for hourly bars (IB paces them only by the open-request
    /// cap; a sim pacing them would show as pacing violations).
    large_pct: u64,
    /// Callers per process running backfill jobs (small bars over a few chunks each) on an
    /// exclusive lease, one after the other through the safety phase (`job_gap` apart) and to
    /// the end of the last in the liveness phase; every job's result is checked against the
    /// gateway's bars at the end.
    jobs: usize,
    /// The pause between one caller's backfill jobs, drawn uniformly in this range.
    job_gap: (Duration, Duration),
    /// Percent of completions after which the caller gives its lease back (and acquires again).
    churn_pct: u64,
    /// Bound on each historical request (pacing wait included).
    request_timeout: Duration,
    /// How many of [`SYMBOLS`] requests are spread over.
    contracts: usize,
    /// Scripted actions at virtual times from the start.
    script: Vec<(Duration, Action)>,
    /// Percent of host sleeps during which another process on the host takes 1–2 backfill ids
    /// from the registry — ids whose leases lapsed meanwhile count as free — and holds them (at
    /// the registry and the gateway) for 1–10 min (see
    /// [`regression_registry_leases_lapse_over_a_long_sleep`]).
    takeover_pct: u64,
    /// Fail on any 326 the pool sees (for scenarios that squat no id at the gateway: a 326 is
    /// then a client id used twice by this host).
    no_conflicts: bool,
    /// Check the pools' own invariants (leases, ids, their open requests in the pacing book)
    /// every this many ticks. Reading a pool's stats is a pacing-ledger step that renews its
    /// claims and refreshes its copy of the book, as a status page does: reading every tick would
    /// keep every copy fresh and hide what stale copies do (after a store restart, say).
    stats_every: u64,
}

impl Opts {
    /// Steady defaults: one backfill caller, one API caller, one request in flight each.
    fn base(safety: Duration) -> Self {
        Self {
            safety,
            tick: secs(1),
            processes: 1,
            hosts: 1,
            disjoint_hosts: false,
            backfill_callers: 1,
            api_callers: 1,
            in_flight: 1,
            think: secs(20),
            probe_pct: 20,
            head_pct: 0,
            stale_pct: 0,
            future_pct: 0,
            large_pct: 0,
            jobs: 0,
            job_gap: (2 * MIN, 8 * MIN),
            churn_pct: 5,
            request_timeout: Duration::from_secs(20 * 60),
            contracts: SYMBOLS.len(),
            script: Vec::new(),
            takeover_pct: 0,
            no_conflicts: false,
            stats_every: 1,
        }
    }

    /// Schedule `action` repeatedly over the safety phase, each gap drawn uniformly from
    /// `gap.0..=gap.1`.
    fn every(&mut self, rng: &mut SplitMix64, gap: (Duration, Duration), action: &Action) {
        let mut at = Duration::ZERO;
        loop {
            at += between(rng, gap.0, gap.1);
            if at >= self.safety {
                break;
            }
            self.script.push((at, action.clone()));
        }
    }
}

/// Uniform in `lo..=hi` at millisecond resolution.
fn between(rng: &mut SplitMix64, lo: Duration, hi: Duration) -> Duration {
    let span = u64::try_from(hi.saturating_sub(lo).as_millis()).unwrap_or(u64::MAX);
    lo + Duration::from_millis(rng.below_or_eq(span))
}

/// Whether a draw at `pct` percent comes up.
fn chance(rng: &mut SplitMix64, pct: u64) -> bool {
    rng.below_or_eq(99) < pct
}

/// What a caller is doing in the current phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Load and faults.
    Safety,
    /// No new work: open requests end.
    Drain,
    /// Healed: every caller needs one successful answer.
    Liveness,
}

/// One user of a pool.
#[derive(Debug)]
struct Caller {
    /// The process whose pool it uses (after a kill: the process that replaces it).
    proc: usize,
    /// The purpose it acquires.
    purpose: Purpose,
    /// An acquire in progress and its deadline.
    acquire: Option<(AcquireId, Instant)>,
    /// The lease it holds.
    lease: Option<LeaseId>,
    /// Its open tickets.
    open: BTreeSet<Ticket>,
    /// Not before this instant does it act again.
    next_at: Instant,
    /// It got a successful answer in the liveness phase (a job's caller: its job finished).
    live: bool,
    /// The backfill job it runs now ([`Run::jobs`]), instead of random queries.
    job: Option<usize>,
}

/// One backfill job a caller drives through its pool, as `PoolWorld::run_backfill` does.
#[derive(Debug)]
struct JobRun {
    /// The job.
    job: BackfillJob,
    /// The chunk each open ticket asks for, by process and ticket.
    open: BTreeMap<(usize, Ticket), ChunkId>,
    /// Chunks whose latest answer was a 162 "no data" (the job then holds them empty).
    no_data: BTreeSet<ChunkId>,
    /// Bars inside the chunk's span of each chunk's latest answer with bars.
    answered: BTreeMap<ChunkId, usize>,
}

impl JobRun {
    fn new(job: BackfillJob) -> Self {
        Self {
            job,
            open: BTreeMap::new(),
            no_data: BTreeSet::new(),
            answered: BTreeMap::new(),
        }
    }

    /// Record `result`, the answer to `chunk`, before the job sees it.
    fn observe(&mut self, chunk: ChunkId, result: &Result<Answer, CallError>) {
        let no_data = matches!(
            result,
            Err(CallError::Request(RequestError::Api {
                class: ErrorClass::NoData,
                ..
            }))
        );
        if no_data {
            self.no_data.insert(chunk);
        } else {
            self.no_data.remove(&chunk);
        }
        if let (Ok(Answer::Bars { bars, .. }), Some(c)) = (result, self.job.chunk(chunk)) {
            let span = c.start_unix..c.end_unix;
            let n = bars
                .iter()
                .filter_map(|b| bar_start_unix(&b.date))
                .filter(|t| span.contains(t))
                .count();
            self.answered.insert(chunk, n);
        }
    }
}

/// What the harness knows about an open ticket.
#[derive(Debug)]
struct Track {
    /// Index of the caller.
    caller: usize,
    /// When the pool must have ended it.
    deadline: Instant,
    /// Submitted in the liveness phase.
    liveness: bool,
}

/// Counts over one run (and, summed, over a sweep).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Summary {
    /// Tickets submitted.
    submitted: u64,
    /// Tickets answered with data.
    ok: u64,
    /// Tickets ended by a typed error, by error variant.
    errors: BTreeMap<String, u64>,
    /// Acquires that failed, by error variant.
    acquire_failed: BTreeMap<String, u64>,
    /// Sessions the pools established.
    established: u64,
    /// Sessions lost.
    disconnects: u64,
    /// Processes killed.
    kills: u64,
    /// Pacing-store outages and restarts.
    store_faults: u64,
    /// `PacingStore` events with an error (a pool noticed the store down).
    store_errors_seen: u64,
    /// What the gateway's rules and request faults did.
    gateway: GatewayCounters,
    /// Backfill jobs run, their chunks, and chunks that failed (typed).
    jobs: u64,
    /// Chunks of the backfill jobs.
    job_chunks: u64,
    /// Chunks that failed for good (with a typed error).
    job_chunks_failed: u64,
    /// Chunks held empty after a spurious "no data" although the gateway has bars for them
    /// (tolerated: the core's documented policy, see [`Run::check_jobs`]).
    no_data_taken: u64,
    /// The bars those chunks lack.
    bars_lost: u64,
    /// Virtual time simulated.
    virtual_time: Duration,
    /// World steps taken.
    steps: u64,
}

impl Summary {
    /// Add `other`'s counts.
    fn add(&mut self, other: &Self) {
        self.submitted += other.submitted;
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.acquire_failed {
            *self.acquire_failed.entry(k.clone()).or_default() += v;
        }
        self.established += other.established;
        self.disconnects += other.disconnects;
        self.kills += other.kills;
        self.store_faults += other.store_faults;
        self.store_errors_seen += other.store_errors_seen;
        let (g, o) = (&mut self.gateway, &other.gateway);
        g.pacing_violations += o.pacing_violations;
        g.duplicate_ids += o.duplicate_ids;
        g.never_answered += o.never_answered;
        g.spurious_no_data += o.spurious_no_data;
        g.small_bars_too_old += o.small_bars_too_old;
        g.end_in_future += o.end_in_future;
        g.head_timestamps += o.head_timestamps;
        self.jobs += other.jobs;
        self.job_chunks += other.job_chunks;
        self.job_chunks_failed += other.job_chunks_failed;
        self.no_data_taken += other.no_data_taken;
        self.bars_lost += other.bars_lost;
        self.virtual_time += other.virtual_time;
        self.steps += other.steps;
    }
}

/// The variant name of an error's `Debug` form (`Timeout { .. }` → `Timeout`), for counting.
fn variant(debug: &str) -> String {
    debug
        .split(['(', ' ', '{', ')'])
        .next()
        .unwrap_or(debug)
        .to_owned()
}

/// A request error's kind for counting: IB errors by code and class (`Api 162 NoData`), the rest
/// by variant.
fn error_kind(error: &CallError) -> String {
    match error {
        CallError::Request(RequestError::Api { code, class, .. }) => {
            format!("Api {code} {class:?}")
        }
        CallError::Request(RequestError::ConnectionClosed(reason)) => {
            format!("ConnectionClosed {}", variant(&format!("{reason:?}")))
        }
        CallError::Request(e) => variant(&format!("{e:?}")),
        e => variant(&format!("{e:?}")),
    }
}

/// Each host's registry policy: the default, or with [`Opts::disjoint_hosts`] host `h` leasing
/// ids `first + 200h ..= first + 200h + 199` of every default range.
fn host_registries(hosts: usize, disjoint: bool) -> Vec<RegistryConfig> {
    (0..hosts.max(1))
        .map(|h| {
            let mut config = RegistryConfig::default();
            if disjoint {
                let shift = 200 * i32::try_from(h).unwrap_or(0);
                for range in config.ranges.values_mut() {
                    range.first += shift;
                    range.last = range.first + 199;
                }
            }
            config
        })
        .collect()
}

/// A backfill job over 2–3 chunks of 5-, 15- or 30-second bars (all hours or regular hours) of
/// one of the first `contracts` symbols, starting at a random hour of 1–19 December 2025:
/// weekdays, weekends and nights (chunks truly without data) and the edges of sessions.
#[allow(clippy::panic)] // a plan that cannot be made is a bug of this test
fn draw_job(rng: &mut SplitMix64, contracts: usize) -> BackfillJob {
    let n = u64::try_from(contracts.clamp(1, SYMBOLS.len())).unwrap_or(1);
    let symbol = SYMBOLS[usize::try_from(rng.below_or_eq(n - 1)).unwrap_or(0)];
    let bar_size = [BarSize::Sec5, BarSize::Sec15, BarSize::Sec30]
        [usize::try_from(rng.below_or_eq(2)).unwrap_or(0)];
    let span = i64::from(bar_size.max_request_secs());
    let chunks = 2 + i64::try_from(rng.below_or_eq(1)).unwrap_or(0);
    let day = 1 + i64::try_from(rng.below_or_eq(18)).unwrap_or(0);
    let hour = i64::try_from(rng.below_or_eq(23)).unwrap_or(0);
    // 2025-12-01 00:00 UTC.
    let from = 1_764_547_200 + (day - 1) * 86_400 + hour * 3600;
    let spec = BackfillSpec {
        contract: Contract::stock(symbol),
        bar_size,
        what_to_show: WhatToShow::Trades,
        use_rth: chance(rng, 50),
    };
    let to = from + chunks * span;
    BackfillJob::new(spec, from, to, Vec::new(), JobConfig::default())
        .unwrap_or_else(|e| panic!("job {symbol} {bar_size} {from}..{to}: {e}"))
}

/// One seeded run of one scenario.
struct Run {
    /// The scenario.
    opts: Opts,
    /// The world.
    w: PoolWorld,
    /// The harness's own draws (queries, churn, fault targets), apart from the world's.
    rng: SplitMix64,
    /// Virtual start.
    start: Instant,
    /// The callers.
    callers: Vec<Caller>,
    /// The backfill jobs, by [`Caller::job`].
    jobs: Vec<JobRun>,
    /// Draws the next backfill jobs.
    job_rng: SplitMix64,
    /// Open tickets, by process and ticket.
    tickets: BTreeMap<(usize, Ticket), Track>,
    /// Script entries not yet applied, soonest last.
    script: Vec<(Duration, Action)>,
    /// Client ids squatted at most at once (bounds the gateway's held ids).
    squatted: usize,
    /// Distinct-request counter.
    seq: u64,
    /// The current phase.
    phase: Phase,
    /// The pacing store is down (until a `StoreUp`).
    store_down: bool,
    /// When the pacing store came back last.
    store_back_at: Option<Instant>,
    /// Every process shut down on purpose (a `ShutDown` event is expected).
    shutting_down: bool,
    /// Ticks so far.
    ticks: u64,
    /// The counts.
    summary: Summary,
}

impl Run {
    /// A world for `seed` with the pools' default config (IB's pacing rules plus its default
    /// margin) against a gateway enforcing IB's small-bar pacing: `opts.processes` pools on
    /// `opts.hosts` hosts, sharing one pacing ledger.
    fn new(seed: u64, mut opts: Opts) -> Self {
        let mut config = PoolWorldConfig::new(seed).with_processes(opts.processes, opts.hosts);
        config.hosts = host_registries(opts.hosts, opts.disjoint_hosts);
        let w = PoolWorld::new(config);
        let start = w.now();
        let mut callers = Vec::new();
        let mut jobs = Vec::new();
        let mut job_rng = SplitMix64::new(seed).child("swarm-jobs");

        for proc in 0..w.processes() {
            let purposes = std::iter::repeat_n(Purpose::Backfill, opts.backfill_callers)
                .chain(std::iter::repeat_n(Purpose::Api, opts.api_callers));
            let caller = |purpose, job| Caller {
                proc,
                purpose,
                acquire: None,
                lease: None,
                open: BTreeSet::new(),
                next_at: start,
                live: false,
                job,
            };
            callers.extend(purposes.map(|purpose| caller(purpose, None)));
            for _ in 0..opts.jobs {
                callers.push(caller(Purpose::Backfill, Some(jobs.len())));
                jobs.push(JobRun::new(draw_job(&mut job_rng, opts.contracts)));
            }
        }
        let mut script = std::mem::take(&mut opts.script);
        script.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        Self {
            opts,
            w,
            rng: SplitMix64::new(seed).child("swarm-harness"),
            start,
            callers,
            jobs,
            job_rng,
            tickets: BTreeMap::new(),
            script,
            squatted: 0,
            seq: 0,
            phase: Phase::Safety,
            store_down: false,
            store_back_at: None,
            shutting_down: false,
            ticks: 0,
            summary: Summary::default(),
        }
    }

    /// Virtual time since the start.
    fn elapsed(&self) -> Duration {
        self.w.now() - self.start
    }

    /// An error message stamped with the virtual time.
    fn fail(&self, what: impl std::fmt::Display) -> String {
        format!("+{:?}: {what}", self.elapsed())
    }

    /// The processes alive now.
    fn live(&self) -> Vec<usize> {
        (0..self.w.processes())
            .filter(|&p| self.w.is_alive(p))
            .collect()
    }

    /// A process's name in messages (`pool` alone in a one-process world).
    fn name(&self, p: usize) -> String {
        if self.w.processes() > 1 {
            format!("process {p}")
        } else {
            "pool".to_owned()
        }
    }

    /// All phases, then shutdown.
    fn run(&mut self) -> Result<Summary, String> {
        let safety_end = self.start + self.opts.safety;
        while self.w.now() < safety_end {
            self.tick()?;
        }
        self.heal();
        self.phase = Phase::Drain;
        let drain_end = self.w.now() + self.opts.request_timeout + GRACE * 2;
        while !self.tickets.is_empty() {
            if self.w.now() > drain_end {
                return Err(self.fail(format!("{} tickets never ended", self.tickets.len())));
            }
            self.tick()?;
        }
        self.phase = Phase::Liveness;
        let healed = self.w.now();
        while !self.callers.iter().all(|c| c.live) {
            if self.w.now() > healed + LIVENESS_BOUND {
                let stuck: Vec<usize> = (0..self.callers.len())
                    .filter(|&i| !self.callers[i].live)
                    .collect();
                let stats: Vec<_> = self
                    .live()
                    .into_iter()
                    .filter_map(|p| self.w.pool_stats_in(p))
                    .collect();
                return Err(self.fail(format!(
                    "callers {stuck:?} got no answer within {LIVENESS_BOUND:?} of healing; pools: {stats:?}"
                )));
            }
            self.tick()?;
        }
        self.check_jobs()?;
        self.summary.gateway = self.w.gateway().counters();
        self.shutdown()?;
        self.summary.virtual_time = self.elapsed();
        self.summary.steps = self.w.steps();
        if self.summary.ok == 0 || self.summary.submitted == 0 {
            return Err(self.fail("vacuous run: nothing answered"));
        }
        Ok(self.summary.clone())
    }

    /// One tick: apply due script actions, report the clocks, let callers act, advance, handle
    /// the events, check the invariants.
    fn tick(&mut self) -> Result<(), String> {
        while self
            .script
            .last()
            .is_some_and(|(at, _)| self.start + *at <= self.w.now())
        {
            if let Some((_, action)) = self.script.pop() {
                self.apply(action);
            }
        }
        self.w.observe_clocks();
        self.events()?;
        self.act()?;
        let until = self.w.now() + self.opts.tick;
        self.w.run_until(until).map_err(|e| self.fail(e))?;
        self.events()?;
        self.check()
    }

    /// Carry out one script action.
    fn apply(&mut self, action: Action) {
        let fault = match action {
            Action::Fault(f) => f,
            Action::Squat(n, dur) => {
                self.squatted = self.squatted.max(2 * n);
                let until = self.w.now() + dur;
                for i in 0..i32::try_from(n).unwrap_or(0) {
                    self.w.gateway_mut().occupy_client_id(2000 + i, until);
                    self.w.gateway_mut().occupy_client_id(1000 + i, until);
                }
                return;
            }
            Action::GiveBack(id) => {
                self.w.give_back_client_id(id);
                return;
            }
            Action::StoreUp => {
                self.store_down = false;
                self.store_back_at = Some(self.w.now());
                self.w.set_store_unavailable(None);
                return;
            }
            Action::Respawn { dead, host } => {
                self.respawn(dead, host);
                return;
            }
            Action::Random(kind) => match self.draw(kind) {
                Some(f) => f,
                None => return,
            },
        };
        self.w.inject(fault);
    }

    /// Start a new process on `host` in place of the killed `dead`; its callers move to it.
    fn respawn(&mut self, dead: usize, host: usize) {
        let p = self.w.spawn(host);
        let now = self.w.now();
        for c in self.callers.iter_mut().filter(|c| c.proc == dead) {
            c.proc = p;
            c.next_at = now;
        }
    }

    /// Kill a random live process: its callers' requests and leases die with it; it comes back
    /// as a new process 5 s–3 min later.
    fn kill(&mut self) {
        let live = self.live();
        let Some(last) = u64::try_from(live.len())
            .ok()
            .and_then(|n| n.checked_sub(1))
        else {
            return;
        };
        let p = live[usize::try_from(self.rng.below_or_eq(last)).unwrap_or(0)];
        let host = self.w.host_of(p).unwrap_or(0);
        self.w.kill(p);
        self.summary.kills += 1;
        self.tickets.retain(|(q, _), _| *q != p);
        // A job's chunks in flight died with the process: the job sends them again (from the
        // process that replaces it), as after a lost connection.
        for run in &mut self.jobs {
            let dead: Vec<(usize, Ticket)> =
                run.open.keys().filter(|(q, _)| *q == p).copied().collect();
            for key in dead {
                if let Some(chunk) = run.open.remove(&key) {
                    run.no_data.remove(&chunk);
                    run.job
                        .on_result(chunk, Err(CallError::Request(RequestError::Cancelled)));
                }
            }
        }
        for c in self.callers.iter_mut().filter(|c| c.proc == p) {
            c.acquire = None;
            c.lease = None;
            c.open.clear();
        }
        let back = self.elapsed() + between(&mut self.rng, secs(5), 3 * MIN);
        self.push_script(back, Action::Respawn { dead: p, host });
    }

    /// A concrete fault of `kind`, against a random open connection where it needs one (`None`
    /// when there is none, or for a host sleep, a kill or a store fault, which are applied here).
    fn draw(&mut self, kind: Kind) -> Option<Fault> {
        let conns = self.w.gateway().connections();
        let rng = &mut self.rng;
        let one = |rng: &mut SplitMix64| {
            let last = u64::try_from(conns.len()).ok()?.checked_sub(1)?;
            let i = usize::try_from(rng.below_or_eq(last)).ok()?;
            conns.get(i).map(|&c| Target::Conn(c))
        };
        Some(match kind {
            Kind::Close => Fault::Close(one(rng)?),
            Kind::HalfOpen => Fault::Pause(one(rng)?),
            Kind::Delay => {
                let target = one(rng)?;
                let by = between(rng, Duration::from_millis(500), secs(5));
                let end = self.w.now() + between(rng, secs(10), secs(60)) - self.start;
                let stop = Fault::Delay {
                    target,
                    by: Duration::ZERO,
                };
                self.push_script(end, Action::Fault(stop));
                Fault::Delay { target, by }
            }
            Kind::Split => Fault::Split {
                target: one(rng)?,
                on: true,
            },
            Kind::Garbage => Fault::Garbage {
                target: one(rng)?,
                len: 4 + usize::try_from(rng.below_or_eq(60)).unwrap_or(0),
            },
            Kind::LinkLoss => Fault::LinkLoss {
                outage: between(rng, secs(5), secs(120)),
                data_lost: chance(rng, 50),
            },
            Kind::FarmFlap => Fault::FarmFlap {
                farm: [Farm::MarketData, Farm::Historical, Farm::SecDef]
                    [usize::try_from(rng.below_or_eq(2)).unwrap_or(0)],
                outage: between(rng, secs(1), secs(60)),
            },
            Kind::NightlyReset => Fault::NightlyReset { pause: None },
            Kind::Restart => Fault::Restart {
                down_for: between(rng, secs(5), secs(120)),
            },
            Kind::Sleep => {
                let slept = between(rng, MIN, secs(3 * 3600));
                let dropped = chance(rng, 50);
                let takeover = chance(rng, self.opts.takeover_pct);
                if dropped {
                    self.w.inject(Fault::Close(Target::All));
                }
                // Every sleep outlives the registry's lease TTL: the pool's leases lapse.
                debug_assert!(slept >= LEASE_TTL);
                self.w.doze(slept);
                if takeover {
                    let n = 1 + self.rng.below_or_eq(1);
                    let holding = between(&mut self.rng, MIN, 10 * MIN);
                    for _ in 0..n {
                        if let Some(id) = self.w.take_client_id(&Purpose::Backfill) {
                            // Its session at the gateway ends first, then it gives the id back
                            // (at the next tick); both by the gateway's clock, which a sleep
                            // of this host does not stop.
                            let until = self.w.now() + holding;
                            self.w.gateway_mut().occupy_client_id(id, until);
                            self.squatted += 1;
                            let at = until - self.start;
                            self.push_script(at, Action::GiveBack(id));
                        }
                    }
                }
                self.w.observe_clocks();
                return None;
            }
            Kind::StoreDown | Kind::LongStoreDown => {
                let short = kind == Kind::StoreDown;
                let settled = self
                    .store_back_at
                    .is_none_or(|at| self.w.now() >= at + PACING_CLAIM_TTL);
                if !self.store_down && (settled || !short) {
                    let (lo, hi) = if short {
                        (secs(1), secs(40))
                    } else {
                        (secs(50), 3 * MIN)
                    };
                    let back = between(rng, lo, hi) + self.elapsed();
                    self.store_down = true;
                    self.summary.store_faults += 1;
                    self.w
                        .set_store_unavailable(Some("connection refused".to_owned()));
                    self.push_script(back, Action::StoreUp);
                }
                return None;
            }
            Kind::StoreRestart => {
                self.summary.store_faults += 1;
                self.w.restart_store();
                return None;
            }
            Kind::Kill => {
                self.kill();
                return None;
            }
            Kind::SpuriousNoData => Fault::SpuriousNoData {
                target: one(rng)?,
                requests: 1 + u32::try_from(rng.below_or_eq(2)).unwrap_or(0),
            },
            Kind::NeverAnswer => Fault::NeverAnswer {
                target: one(rng)?,
                requests: 1 + u32::try_from(rng.below_or_eq(2)).unwrap_or(0),
            },
            Kind::DuplicateTicker => Fault::DuplicateTickerId {
                target: one(rng)?,
                requests: 1 + u32::try_from(rng.below_or_eq(2)).unwrap_or(0),
            },
        })
    }

    /// Insert a script action at `at` from the start, keeping the soonest last.
    fn push_script(&mut self, at: Duration, action: Action) {
        let i = self.script.partition_point(|(t, _)| *t > at);
        self.script.insert(i, (at, action));
    }

    /// End every fault: resume, release, no delay, no splitting, no request faults, port open,
    /// the pacing store up, killed processes back; drop the script (but for ids other processes
    /// give back later). Requests a fault swallowed stay open until their timeout.
    fn heal(&mut self) {
        let respawns: Vec<Action> = self
            .script
            .iter()
            .filter(|(_, a)| matches!(a, Action::Respawn { .. }))
            .map(|(_, a)| a.clone())
            .collect();
        // Other processes keep their ids until they give them back (by the gateway's clock).
        self.script
            .retain(|(_, action)| matches!(action, Action::GiveBack(_)));
        for action in respawns {
            self.apply(action);
        }
        if self.store_down {
            self.apply(Action::StoreUp);
        }
        self.w.inject(Fault::Resume(Target::All));
        self.w.inject(Fault::Release(Target::All));
        self.w.inject(Fault::Delay {
            target: Target::All,
            by: Duration::ZERO,
        });
        self.w.inject(Fault::Split {
            target: Target::All,
            on: false,
        });
        let target = Target::All;
        self.w.inject(Fault::SpuriousNoData {
            target,
            requests: 0,
        });
        self.w.inject(Fault::NeverAnswer {
            target,
            requests: 0,
        });
        self.w.inject(Fault::DuplicateTickerId {
            target,
            requests: 0,
        });
        self.w.inject(Fault::Bounce);
    }

    /// A query: a probe, a head timestamp, or a small-bar historical request (in December 2025;
    /// or, at the scenario's rates, older than IB keeps small bars or ending in the future) on one
    /// of the scenario's contracts. `fresh` requests are never identical to an earlier one, and
    /// always for bars IB has.
    fn query(&mut self, fresh: bool) -> (Query, Duration) {
        if !fresh && chance(&mut self.rng, self.opts.probe_pct) {
            return (Query::CurrentTime, PROBE_TIMEOUT);
        }
        self.seq += 1;
        let n = u64::try_from(self.opts.contracts.clamp(1, SYMBOLS.len())).unwrap_or(1);
        let symbol = SYMBOLS[usize::try_from(self.rng.below_or_eq(n - 1)).unwrap_or(0)];
        let drawn = |pct: u64, rng: &mut SplitMix64| !fresh && pct > 0 && chance(rng, pct);
        if drawn(self.opts.head_pct, &mut self.rng) {
            let what = [
                WhatToShow::Trades,
                WhatToShow::Midpoint,
                WhatToShow::Bid,
                WhatToShow::Ask,
            ][usize::try_from(self.rng.below_or_eq(3)).unwrap_or(0)];
            let req = HeadTimestampQuery {
                contract: Contract::stock(symbol),
                use_rth: chance(&mut self.rng, 50),
                what_to_show: what,
                format_date: DateFormat::Epoch,
            };
            return (Query::HeadTimestamp(req), self.opts.request_timeout);
        }
        // December 2025; June 2025 is past IB's six months of small bars; February 2026 is in
        // the gateway's future.
        let (year, month) = if drawn(self.opts.stale_pct, &mut self.rng) {
            (2025, 6)
        } else if drawn(self.opts.future_pct, &mut self.rng) {
            (2026, 2)
        } else {
            (2025, 12)
        };
        // Small bars (IB's pacing scope), few of them: the sim's bar synthesis dominates the cost.
        // Now and then hourly bars, which IB (and so the sim, over TCP as here) does not pace.
        let (bar, (count, unit)) = if drawn(self.opts.large_pct, &mut self.rng) {
            (BarSize::Hour1, (1, DurationUnit::Days))
        } else {
            [
                (BarSize::Sec5, (60, DurationUnit::Seconds)),
                (BarSize::Sec15, (300, DurationUnit::Seconds)),
                (BarSize::Sec30, (300, DurationUnit::Seconds)),
            ][usize::try_from(self.rng.below_or_eq(2)).unwrap_or(0)]
        };
        // Fresh: a minute no other request used (the sequence number); else a random half hour.
        let (day, minute) = if fresh {
            (1 + self.seq / 600 % 20, self.seq % 600)
        } else {
            (1 + self.rng.below_or_eq(19), self.rng.below_or_eq(11) * 30)
        };
        let small = |n: u64| u32::try_from(n).unwrap_or(0);
        let end = utc(
            year,
            month,
            small(day),
            14 + small(minute / 60),
            small(minute % 60),
            0,
        );
        let req = HistoricalQuery::new(
            Contract::stock(symbol),
            EndTime::At(end),
            // `count` is one of the literals above, all ≥ 1.
            IbDuration::new(NonZeroU32::MIN.saturating_add(count - 1), unit),
            bar,
            WhatToShow::Trades,
        );
        (Query::HistoricalData(req), self.opts.request_timeout)
    }

    /// Callers acquire, submit and (in the liveness phase) ask for their one answer.
    fn act(&mut self) -> Result<(), String> {
        let now = self.w.now();
        for i in 0..self.callers.len() {
            let c = &self.callers[i];
            if self.phase == Phase::Drain || now < c.next_at || !self.w.is_alive(c.proc) {
                continue;
            }
            if self.phase == Phase::Liveness && c.live {
                continue;
            }
            let p = c.proc;
            if let Some(j) = c.job {
                self.act_job(i, j)?;
                continue;
            }
            let Some(lease) = c.lease else {
                if c.acquire.is_none() {
                    let purpose = c.purpose.clone();
                    if let Some(id) = self.w.acquire_in(p, purpose) {
                        self.callers[i].acquire = Some((id, now + ACQUIRE_TIMEOUT));
                    }
                }
                continue;
            };
            let want = match self.phase {
                Phase::Safety => self.opts.in_flight,
                _ => 1,
            };
            if self.callers[i].open.len() >= want {
                continue;
            }
            let liveness = self.phase == Phase::Liveness;
            let (query, timeout) = self.query(liveness);
            let ticket = self
                .w
                .send_in(p, lease, query, Some(timeout))
                .map_err(|e| {
                    self.fail(format!(
                        "caller {i} holds lease {lease:?} of {}, yet: {e}",
                        self.name(p)
                    ))
                })?;
            self.summary.submitted += 1;
            self.tickets.insert(
                (p, ticket),
                Track {
                    caller: i,
                    deadline: now + timeout,
                    liveness,
                },
            );
            let think = self.opts.think;
            let gap = between(&mut self.rng, think / 2, think + think / 2);
            let c = &mut self.callers[i];
            c.open.insert(ticket);
            c.next_at = now + gap;
        }
        Ok(())
    }

    /// A job's caller: acquire a lease, keep `in_flight` of the job's chunks in flight (no think
    /// time, as `PoolWorld::run_backfill` does). Once the job is finished: in the safety phase
    /// the next job starts a think time later; in the liveness phase the caller gives its lease
    /// back and counts as live.
    fn act_job(&mut self, i: usize, j: usize) -> Result<(), String> {
        let now = self.w.now();
        let c = &self.callers[i];
        let p = c.proc;
        if self.jobs[j].job.is_finished() {
            if !c.open.is_empty() {
                return Ok(());
            }
            if self.phase == Phase::Safety {
                let job = draw_job(&mut self.job_rng, self.opts.contracts);
                self.jobs.push(JobRun::new(job));
                let (lo, hi) = self.opts.job_gap;
                let gap = between(&mut self.rng, lo, hi);
                let c = &mut self.callers[i];
                c.job = Some(self.jobs.len() - 1);
                c.next_at = now + gap;
            } else {
                if let Some(lease) = self.callers[i].lease.take() {
                    self.w.release_in(p, lease);
                }
                self.callers[i].live = true;
            }
            return Ok(());
        }
        let Some(lease) = c.lease else {
            if c.acquire.is_none() {
                if let Some(id) = self.w.acquire_in(p, Purpose::Backfill) {
                    self.callers[i].acquire = Some((id, now + ACQUIRE_TIMEOUT));
                }
            }
            return Ok(());
        };
        while self.callers[i].open.len() < self.opts.in_flight {
            let Some((chunk, query)) = self.jobs[j].job.poll_query() else {
                break;
            };
            let timeout = self.opts.request_timeout;
            let ticket = self
                .w
                .send_in(p, lease, query, Some(timeout))
                .map_err(|e| {
                    self.fail(format!(
                        "job caller {i} holds lease {lease:?} of {}, yet: {e}",
                        self.name(p)
                    ))
                })?;
            self.summary.submitted += 1;
            self.tickets.insert(
                (p, ticket),
                Track {
                    caller: i,
                    deadline: now + timeout,
                    liveness: false,
                },
            );
            self.jobs[j].open.insert((p, ticket), chunk);
            self.callers[i].open.insert(ticket);
        }
        Ok(())
    }

    /// Take every process's pool events: match outcomes to what was asked, exactly once and in
    /// the pool it was asked of.
    fn events(&mut self) -> Result<(), String> {
        for p in 0..self.w.processes() {
            while let Some(event) = self.w.poll_event_in(p) {
                self.event(p, event)?;
            }
        }
        Ok(())
    }

    /// Handle one event of process `p`.
    fn event(&mut self, p: usize, event: PoolEvent) -> Result<(), String> {
        let now = self.w.now();
        match event {
            PoolEvent::Acquired { acquire, lease, .. } => {
                let i = self.acquirer(p, acquire)?;
                let c = &mut self.callers[i];
                c.acquire = None;
                c.lease = Some(lease);
            }
            PoolEvent::AcquireFailed { acquire, error } => {
                let i = self.acquirer(p, acquire)?;
                *self
                    .summary
                    .acquire_failed
                    .entry(variant(&format!("{error:?}")))
                    .or_default() += 1;
                let backoff = between(&mut self.rng, secs(1), secs(5));
                let c = &mut self.callers[i];
                c.acquire = None;
                c.next_at = now + backoff;
            }
            PoolEvent::Completed { ticket, result } => {
                let Some(track) = self.tickets.remove(&(p, ticket)) else {
                    return Err(self.fail(format!(
                        "completion in {} for {ticket:?}, which is unknown there or already ended: {result:?}",
                        self.name(p)
                    )));
                };
                let c = &mut self.callers[track.caller];
                c.open.remove(&ticket);
                let job = c.job;
                match &result {
                    Ok(_) => {
                        self.summary.ok += 1;
                        if track.liveness {
                            c.live = true;
                        }
                    }
                    Err(e) => {
                        *self.summary.errors.entry(error_kind(e)).or_default() += 1;
                    }
                }
                if let Some(j) = job {
                    // A job's caller keeps its lease while the job runs (no churn), as a driver
                    // does; the outcome goes to the job.
                    let run = &mut self.jobs[j];
                    if let Some(chunk) = run.open.remove(&(p, ticket)) {
                        run.observe(chunk, &result);
                        run.job.on_result(chunk, result);
                    }
                    return Ok(());
                }
                if self.phase == Phase::Safety && chance(&mut self.rng, self.opts.churn_pct) {
                    if let Some(lease) = self.callers[track.caller].lease.take() {
                        self.w.release_in(p, lease);
                    }
                }
            }
            PoolEvent::RequestDelayed { ticket, .. }
                if !self.tickets.contains_key(&(p, ticket)) =>
            {
                return Err(self.fail(format!(
                    "{ticket:?} delayed but not open in {}",
                    self.name(p)
                )));
            }
            PoolEvent::LeaseLost { lease, .. } => {
                // The pool ended the lease's requests; the caller acquires again.
                if let Some(c) = self
                    .callers
                    .iter_mut()
                    .find(|c| c.proc == p && c.lease == Some(lease))
                {
                    c.lease = None;
                }
            }
            PoolEvent::Connected { .. } => self.summary.established += 1,
            PoolEvent::Disconnected { .. } => self.summary.disconnects += 1,
            PoolEvent::PacingStore {
                error: Some(error), ..
            } => {
                // A store that restarted without its books is up, but settles a while.
                let settling = error.contains("lost this gateway's book");
                if !self.store_down && !settling {
                    return Err(self.fail(format!(
                        "{} says the pacing store failed, but it is up",
                        self.name(p)
                    )));
                }
                self.summary.store_errors_seen += 1;
            }
            PoolEvent::ShutDown if !self.shutting_down => {
                return Err(self.fail(format!("{} shut down before asked to", self.name(p))))
            }
            _ => {}
        }
        Ok(())
    }

    /// The caller of process `p` waiting on `acquire` (an outcome for an unknown or ended
    /// acquire is a bug).
    fn acquirer(&self, p: usize, acquire: AcquireId) -> Result<usize, String> {
        self.callers
            .iter()
            .position(|c| c.proc == p && c.acquire.is_some_and(|(a, _)| a == acquire))
            .ok_or_else(|| {
                self.fail(format!(
                    "outcome in {} for {acquire:?}, which is not pending there",
                    self.name(p)
                ))
            })
    }

    /// The invariants that hold after every tick.
    fn check(&mut self) -> Result<(), String> {
        let now = self.w.now();
        let violations = self.w.gateway().pacing_violations();
        if violations > 0 {
            return Err(self.fail(format!(
                "{violations} pacing violations at the gateway (all processes together)"
            )));
        }
        if let Some(((p, t), track)) = self.tickets.iter().find(|(_, t)| now > t.deadline + GRACE) {
            return Err(self.fail(format!(
                "{t:?} of caller {} in {} hung {:?} past its deadline",
                track.caller,
                self.name(*p),
                now - track.deadline
            )));
        }
        if let Some(i) = self
            .callers
            .iter()
            .position(|c| c.acquire.is_some_and(|(_, d)| now > d + GRACE))
        {
            return Err(self.fail(format!("the acquire of caller {i} hung past its deadline")));
        }
        self.ticks += 1;
        let pools =
            self.ticks.is_multiple_of(self.opts.stats_every.max(1)) || self.phase != Phase::Safety;
        if pools {
            let mut ready: BTreeMap<i32, usize> = BTreeMap::new();
            for p in self.live() {
                let Some(stats) = self.w.pool_stats_in(p) else {
                    continue;
                };
                self.check_pool(p, &stats)?;
                for c in stats.connections.iter().filter(|c| c.state == "ready") {
                    if let Some(q) = ready.insert(c.client_id, p) {
                        return Err(self.fail(format!(
                            "client id {} is in use by {} and {} at once",
                            c.client_id,
                            self.name(q),
                            self.name(p)
                        )));
                    }
                }
            }
        }
        self.check_book(pools)?;
        // Bounded state ("memory flat"): nothing grows with the length of the run.
        let callers = self.callers.len();
        let procs = self.opts.processes.max(1);
        let bounds = [
            (
                "gateway connections",
                self.w.gateway().connections().len(),
                16 * procs,
            ),
            ("sockets", self.w.links(), 16 * procs),
            ("deliveries in flight", self.w.in_flight(), 4096 * procs),
            (
                "held ids at the gateway",
                self.w.gateway().held_client_id_count(),
                self.squatted + 16 * procs,
            ),
            (
                "open tickets",
                self.tickets.len(),
                callers * self.opts.in_flight,
            ),
        ];
        if let Some((what, n, max)) = bounds.iter().find(|(_, n, max)| n > max) {
            return Err(self.fail(format!("{what}: {n} > {max}")));
        }
        Ok(())
    }

    /// One live process's invariants: its leases are its callers', each on one connection; its
    /// registry leases are exactly its connections' ids and none is another holder's.
    fn check_pool(&self, p: usize, stats: &PoolStats) -> Result<(), String> {
        let name = self.name(p);
        if stats.pacing_violations > 0 {
            return Err(self.fail(format!(
                "{name} saw {} pacing violations",
                stats.pacing_violations
            )));
        }
        let held = self
            .callers
            .iter()
            .filter(|c| c.proc == p && c.lease.is_some())
            .count();
        if stats.leases != held {
            return Err(self.fail(format!(
                "{name} has {} leases, its callers hold {held}",
                stats.leases
            )));
        }
        let on_conns: usize = stats.connections.iter().map(|c| c.leases).sum();
        if on_conns != stats.leases {
            return Err(self.fail(format!(
                "{name}: {} leases, {on_conns} on connections: {:?}",
                stats.leases, stats.connections
            )));
        }
        if let Some(c) = stats
            .connections
            .iter()
            .find(|c| c.purpose == Purpose::Backfill && c.leases > 1)
        {
            return Err(self.fail(format!("{name}: exclusive connection shared: {c:?}")));
        }
        let mut conn_ids: Vec<i32> = stats.connections.iter().map(|c| c.client_id).collect();
        conn_ids.sort_unstable();
        let registry = self.w.held_client_ids_in(p);
        if conn_ids != registry {
            return Err(self.fail(format!(
                "the registry holds {registry:?} for {name}, its connections are {conn_ids:?}"
            )));
        }
        let others = self.w.others_client_ids_in(p);
        if let Some(id) = conn_ids.iter().find(|id| others.contains(id)) {
            return Err(self.fail(format!(
                "client id {id} is used by {name} and leased by another process on its host"
            )));
        }
        if self.opts.no_conflicts && stats.client_id_conflicts > 0 {
            return Err(self.fail(format!(
                "{name}: {} client-id conflicts (326) with no id squatted",
                stats.client_id_conflicts
            )));
        }
        let callers = self.callers.iter().filter(|c| c.proc == p).count();
        let bounds = [
            ("connections", stats.connections.len(), 5),
            ("waiters", stats.waiters, callers),
        ];
        if let Some((what, n, max)) = bounds.iter().find(|(_, n, max)| n > max) {
            return Err(self.fail(format!("{name} {what}: {n} > {max}")));
        }
        Ok(())
    }

    /// The shared pacing book: a killed owner holds nothing (no open request, no unsent slot)
    /// once its claim's TTL ran out; with `owners_paid` (read right after every live pool's
    /// stats, which pay what each owes the store) a live owner holds no more open requests than
    /// its pool has open tickets.
    fn check_book(&self, owners_paid: bool) -> Result<(), String> {
        if self.store_down {
            return Ok(());
        }
        let t = self.w.ledger_time();
        let mut book = self.w.pacing_book();
        // As the next reservation sees it: lapsed owners' claims gone.
        book.prune(t);
        let rules = PoolConfig::default().pacing;
        let owners = book.owners(&rules, t);
        let view = |p: usize| {
            let name = self.w.owner_of(p).unwrap_or_default();
            owners.iter().find(|o| o.owner == name)
        };
        for p in 0..self.w.processes() {
            let Some(o) = view(p) else {
                continue;
            };
            if let Some(killed) = self.w.killed_at(p) {
                let lapsed = killed + PACING_CLAIM_TTL + secs(1);
                let since_start = self.w.now() - self.start;
                if since_start >= lapsed && (o.open_requests > 0 || o.scheduled_ahead > 0) {
                    return Err(self.fail(format!(
                        "{} was killed at +{killed:?}, yet after its claim's TTL the pacing book \
                         still gives it {} open requests and {} unsent slots: {o:?}",
                        self.name(p),
                        o.open_requests,
                        o.scheduled_ahead
                    )));
                }
                continue;
            }
            if !owners_paid {
                continue;
            }
            let open = self.tickets.keys().filter(|(q, _)| *q == p).count();
            if usize::try_from(o.open_requests).unwrap_or(usize::MAX) > open {
                return Err(self.fail(format!(
                    "the pacing book gives {} {} open requests, but it has {open} open tickets: {o:?}",
                    self.name(p),
                    o.open_requests
                )));
            }
        }
        Ok(())
    }

    /// Every backfill job finished, and each of its chunks holds exactly the bars the gateway
    /// has for it, or failed for good with a typed error (counted). A chunk answered with bars
    /// holds exactly the bars of its answer (the gateway answers its truth); a chunk held empty
    /// is checked against [`ibconn_sim::Gateway::reference_bars`] (IB's answer without pacing or
    /// faults), so only chunks without bars pay for a second synthesis.
    ///
    /// One exception, tolerated and counted ([`Summary::no_data_taken`]): a chunk held empty
    /// although the gateway has bars for it, when its last answer was a 162 "no data" (only a
    /// [`Fault::SpuriousNoData`] gives one for such a chunk) and the job does not count it as
    /// covered. That is the job's documented policy (core/src/backfill/job.rs, "Empty chunks": one
    /// "no data" is *tentative* — the job finishes with the chunk empty, but reports it apart from
    /// [`BackfillJob::covered_spans`], so a resume asks again — and only a second "no data" in a
    /// later run makes it final; issue #12). A chunk the job counts as covered while the gateway
    /// has bars for it — a spurious "no data" taken as truth for good — fails the run.
    /// `IBCONN_SIM_STRICT_NO_DATA=1` fails tentative ones too.
    fn check_jobs(&mut self) -> Result<(), String> {
        let strict =
            std::env::var("IBCONN_SIM_STRICT_NO_DATA").is_ok_and(|v| !matches!(v.trim(), "" | "0"));
        let now = self.w.now();
        for j in 0..self.jobs.len() {
            let run = &self.jobs[j];
            let job = &run.job;
            if !job.is_finished() {
                return Err(self.fail(format!(
                    "backfill job {j} did not finish: {:?}",
                    job.progress()
                )));
            }
            let held: Vec<i64> = job.bars().iter().map(|(t, _)| t).collect();
            let failed: BTreeSet<usize> = job.failures().iter().map(|f| f.chunk.0).collect();
            let covered = job.covered_spans();
            let is_covered = |span: &std::ops::Range<i64>| {
                covered
                    .iter()
                    .any(|&(s, e)| s <= span.start && span.end <= e)
            };
            let chunks = job.progress().chunks_total;
            let mut mismatch = None;
            let (mut taken, mut lost) = (0, 0);
            for id in (0..chunks).filter(|id| !failed.contains(id)) {
                let Some(chunk) = job.chunk(ChunkId(id)) else {
                    continue;
                };
                let span = chunk.start_unix..chunk.end_unix;
                let mine = held.partition_point(|&t| t < span.end)
                    - held.partition_point(|&t| t < span.start);
                let expected = match run.answered.get(&ChunkId(id)) {
                    Some(&n) if mine > 0 || n > 0 => n,
                    _ => {
                        let request = job.spec().request(chunk).to_wire(0);
                        match self.w.gateway_mut().reference_bars(now, &request) {
                            Ok(bars) => bars
                                .iter()
                                .filter_map(|b| bar_start_unix(&b.date))
                                .filter(|t| span.contains(t))
                                .count(),
                            Err(e) if e.code == 162 && e.text.contains("returned no data") => 0,
                            Err(e) => {
                                mismatch =
                                    Some(format!("chunk {id}: the gateway refuses it: {e:?}"));
                                break;
                            }
                        }
                    }
                };
                if mine == expected {
                    continue;
                }
                let after_no_data = run.no_data.contains(&ChunkId(id));
                let final_ = is_covered(&span);
                if mine == 0 && after_no_data && !final_ && !strict {
                    taken += 1;
                    lost += expected as u64;
                    continue;
                }
                let why = match (after_no_data, final_) {
                    (true, true) => {
                        "its last answer was a spurious 162 \"no data\", and the job counts the \
                         chunk as covered: a resume never asks again"
                    }
                    (true, false) => "its last answer was a spurious 162 \"no data\" (tentative)",
                    (false, _) => "no answer explains it",
                };
                mismatch = Some(format!(
                    "chunk {id} [{}, {}) holds {mine} bars, the gateway has {expected}: {why}",
                    span.start, span.end
                ));
                break;
            }
            if let Some(what) = mismatch {
                let (from, to) = job.range();
                let spec = job.spec();
                return Err(self.fail(format!(
                    "backfill job {j} ({} {} {from}..{to}): {what}",
                    spec.contract.symbol, spec.bar_size
                )));
            }
            self.summary.jobs += 1;
            self.summary.job_chunks += chunks as u64;
            self.summary.job_chunks_failed += failed.len() as u64;
            self.summary.no_data_taken += taken;
            self.summary.bars_lost += lost;
        }
        Ok(())
    }

    /// Shut every live process down and check that nothing is left anywhere.
    fn shutdown(&mut self) -> Result<(), String> {
        self.shutting_down = true;
        let live = self.live();
        for &p in &live {
            self.w.shutdown_in(p);
            let mut shut = false;
            while let Some(event) = self.w.poll_event_in(p) {
                match event {
                    PoolEvent::ShutDown => shut = true,
                    PoolEvent::Completed { ticket, .. }
                        if self.tickets.remove(&(p, ticket)).is_none() =>
                    {
                        return Err(self.fail(format!(
                            "{ticket:?} of {} ended twice at shutdown",
                            self.name(p)
                        )));
                    }
                    _ => {}
                }
            }
            if !shut {
                return Err(self.fail(format!("no ShutDown event from {}", self.name(p))));
            }
        }
        if !self.tickets.is_empty() {
            return Err(self.fail(format!("tickets lost at shutdown: {:?}", self.tickets)));
        }
        let until = self.w.now() + secs(10);
        self.w.run_until(until).map_err(|e| self.fail(e))?;
        let mut left = String::new();
        for &p in &live {
            let stats = self.w.pool_stats_in(p).unwrap_or_default();
            let who = if live.len() > 1 {
                format!(" [{}]", self.name(p))
            } else {
                String::new()
            };
            for (what, n) in [
                ("leases", stats.leases),
                ("waiters", stats.waiters),
                ("connections", stats.connections.len()),
                ("client ids held", self.w.held_client_ids_in(p).len()),
                (
                    "pool timers",
                    usize::from(self.w.pool_in(p).and_then(|x| x.poll_timeout()).is_some()),
                ),
            ] {
                if n > 0 {
                    let _ = write!(left, " {what}{who}={n}");
                }
            }
        }
        let gw = self.w.gateway();
        for (what, n) in [
            ("sockets", self.w.links()),
            ("deliveries in flight", self.w.in_flight()),
            ("gateway connections", gw.connections().len()),
            ("gateway sessions", gw.client_ids().len()),
        ] {
            if n > 0 {
                let _ = write!(left, " {what}={n}");
            }
        }
        // Every process that shut down gave its open requests back to the pacing book.
        let t = self.w.ledger_time();
        let rules = PoolConfig::default().pacing;
        for o in self.w.pacing_book().owners(&rules, t) {
            let mine = live
                .iter()
                .any(|&p| self.w.owner_of(p) == Some(o.owner.as_str()));
            if mine && o.open_requests > 0 {
                let _ = write!(
                    left,
                    " open requests in the pacing book [{}]={}",
                    o.owner, o.open_requests
                );
            }
        }
        if !left.is_empty() {
            return Err(self.fail(format!("left after shutdown:{left}")));
        }
        Ok(())
    }
}

/// One run of one seed: its outcome and, if traced, its trace ([`PoolWorld::trace`]).
struct Outcome {
    /// The counts, or the failure (a panic included).
    result: Result<Summary, String>,
    /// The trace lines (empty unless traced).
    trace: Vec<String>,
    /// The trace's digest (lines and every byte delivered).
    hash: u64,
}

/// Run `scenario` for one seed, traced or not.
fn run_seed(seed: u64, scenario: fn(u64) -> Opts, traced: bool) -> Outcome {
    let opts = scenario(seed);
    let shown = format!("{opts:?}");
    let mut run = Run::new(seed, opts);
    if traced {
        run.w.enable_trace();
    }
    let result = match catch_unwind(AssertUnwindSafe(|| run.run())) {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(e)) => Err(format!("{e}\n  opts: {shown}")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}\n  opts: {shown}"))
        }
    };
    Outcome {
        result,
        trace: run.w.trace().to_vec(),
        hash: run.w.trace_hash(),
    }
}

/// Whether `IBCONN_SIM_CHECK_DETERMINISM` asks every seed to be run twice and compared.
fn check_determinism() -> bool {
    std::env::var("IBCONN_SIM_CHECK_DETERMINISM").is_ok_and(|v| !matches!(v.trim(), "" | "0"))
}

/// The command that replays `seed` of `test`.
fn replay(test: &str, seed: u64, determinism: bool) -> String {
    let check = if determinism {
        "IBCONN_SIM_CHECK_DETERMINISM=1 "
    } else {
        ""
    };
    // An ignored test (an open core bug) runs only when asked for.
    let ignored = if IGNORED.contains(&test) {
        " --include-ignored"
    } else {
        ""
    };
    format!(
        "{check}IBCONN_SIM_SEED={seed} cargo test -p ibconn-sim --test swarm -- {test} --exact{ignored} --nocapture"
    )
}

/// The tests marked `#[ignore]` (open core bugs), for their replay commands.
const IGNORED: [&str; 0] = [];

/// Where failing seeds' traces go: `ibsim/` in `CARGO_TARGET_DIR`, else in the workspace's
/// `target/` (the workspace root: the nearest ancestor of this crate holding `Cargo.lock`).
fn dump_dir() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(&manifest)
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target.join("ibsim")
}

/// Write `header` and `trace` to `name` in `dir` (created if missing); the path.
fn write_dump(dir: &Path, name: &str, header: &str, trace: &[String]) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    let mut text =
        String::with_capacity(header.len() + trace.iter().map(|l| l.len() + 1).sum::<usize>());
    text.push_str(header);
    for line in trace {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Where two runs of one seed first part: `None` if they are identical (trace, digest, outcome).
fn first_difference(a: &Outcome, b: &Outcome) -> Option<String> {
    let shown = |t: &[String], i: usize| {
        t.get(i)
            .cloned()
            .unwrap_or_else(|| "<end of trace>".to_owned())
    };
    let n = a.trace.len().max(b.trace.len());
    if let Some(i) = (0..n).find(|&i| a.trace.get(i) != b.trace.get(i)) {
        return Some(format!(
            "trace line {} differs:\n    run 1: {}\n    run 2: {}",
            i + 1,
            shown(&a.trace, i),
            shown(&b.trace, i)
        ));
    }
    if a.hash != b.hash {
        return Some(format!(
            "same lines, different bytes delivered: digest {:#x} vs {:#x}",
            a.hash, b.hash
        ));
    }
    if a.result != b.result {
        return Some(format!(
            "same trace, different outcome:\n    run 1: {:?}\n    run 2: {:?}",
            a.result, b.result
        ));
    }
    None
}

/// The seeds for `test`: `IBCONN_SIM_SEED=S` alone, else `IBCONN_SIM_SEEDS=N`'s share
/// (`N × ci / CI_TOTAL`, at least one), else the `ci` fixed seeds `1..=ci`. A malformed value
/// fails the test.
#[allow(clippy::panic)] // a usage error of the test, reported as its failure
fn seeds(ci: u64) -> Vec<u64> {
    if let Some(seed) = common::env_u64("IBCONN_SIM_SEED") {
        return vec![seed];
    }
    let n = common::env_u64("IBCONN_SIM_SEEDS").map_or(ci, |total| (total * ci / CI_TOTAL).max(1));
    (1..=n).collect()
}

/// Write the full trace of `seed`, which failed with `error`, to `<test>-<seed>.log` in `dir`
/// ([`dump_dir`]); the report to print: the error, where the trace is, the replay command. Without
/// a `trace` at hand the seed runs again with the trace on (runs are deterministic; a rerun that
/// ends otherwise is noted in the file).
fn dump_failure(
    dir: &Path,
    test: &str,
    seed: u64,
    scenario: fn(u64) -> Opts,
    error: &str,
    trace: Option<Vec<String>>,
) -> String {
    let replay = replay(test, seed, false);
    let (trace, note) = match trace {
        Some(t) => (t, String::new()),
        None => {
            let again = run_seed(seed, scenario, true);
            let note = match &again.result {
                Err(e) if e == error => String::new(),
                other => format!(
                    "# NOTE: the traced rerun ended differently (nondeterminism?): {other:?}\n"
                ),
            };
            (again.trace, note)
        }
    };
    let header = format!(
        "# {test} seed {seed} FAILED: {error}\n# replay: {replay}\n{note}# {} trace lines\n",
        trace.len()
    );
    let dumped = match write_dump(dir, &format!("{test}-{seed}.log"), &header, &trace) {
        Ok(path) => format!("trace: {}", path.display()),
        Err(why) => format!("trace not written ({why})"),
    };
    format!("{test}: seed {seed} FAILED: {error}\n  {dumped}\n  replay: {replay}")
}

/// Failing seeds whose traces are written (the rest are listed).
const MAX_DUMPS: usize = 20;

/// Run `scenario` over this test's seeds; print a summary, and for every failing seed its error,
/// its full trace (written to `target/ibsim/<test>-<seed>.log`, see [`dump_dir`]) and the
/// command that replays it; fail if any seed failed. With `determinism` (or
/// `IBCONN_SIM_CHECK_DETERMINISM=1`) every seed runs twice, traced, and the runs must match line
/// for line.
fn sweep(test: &str, ci: u64, scenario: fn(u64) -> Opts) {
    sweep_checked(test, ci, scenario, check_determinism());
}

/// [`sweep`], running every seed twice and comparing the traces if `determinism`.
fn sweep_checked(test: &str, ci: u64, scenario: fn(u64) -> Opts, determinism: bool) {
    let seeds = seeds(ci);
    let mut total = Summary::default();
    let mut failures: Vec<(u64, String, Option<Vec<String>>)> = Vec::new();
    let mut diverged: Vec<(u64, String, Outcome, Outcome)> = Vec::new();
    for &seed in &seeds {
        let first = run_seed(seed, scenario, determinism);
        match &first.result {
            Ok(s) => total.add(s),
            Err(e) => failures.push((seed, e.clone(), determinism.then(|| first.trace.clone()))),
        }
        if determinism {
            let second = run_seed(seed, scenario, true);
            if let Some(diff) = first_difference(&first, &second) {
                diverged.push((seed, diff, first, second));
            }
        }
    }
    println!(
        "{test}: {} seeds{}, {} failed; {} requests ({} ok), errors {:?}, acquire failures {:?}, \
         {} sessions, {} disconnects, {} kills, {} store faults ({} noticed), {:.1} virtual hours \
         in {} steps; gateway {:?}; {} backfill jobs, {} chunks, {} failed, {} held empty after \
         a spurious \"no data\" ({} bars lost)",
        seeds.len(),
        if determinism { " (each run twice)" } else { "" },
        failures.len(),
        total.submitted,
        total.ok,
        total.errors,
        total.acquire_failed,
        total.established,
        total.disconnects,
        total.kills,
        total.store_faults,
        total.store_errors_seen,
        total.virtual_time.as_secs_f64() / 3600.0,
        total.steps,
        total.gateway,
        total.jobs,
        total.job_chunks,
        total.job_chunks_failed,
        total.no_data_taken,
        total.bars_lost,
    );
    for (n, (seed, e, trace)) in failures.iter().enumerate() {
        let seed = *seed;
        if n >= MAX_DUMPS {
            let replay = replay(test, seed, false);
            eprintln!("{test}: seed {seed} FAILED: {e}\n  replay: {replay}");
            continue;
        }
        eprintln!(
            "{}",
            dump_failure(&dump_dir(), test, seed, scenario, e, trace.clone())
        );
    }
    for (seed, diff, a, b) in &diverged {
        let seed = *seed;
        let replay = replay(test, seed, true);
        let header = format!("# {test} seed {seed}: two runs differ: {diff}\n# replay: {replay}\n");
        let paths: Vec<String> = [(1, a), (2, b)]
            .into_iter()
            .map(|(n, o)| {
                write_dump(
                    &dump_dir(),
                    &format!("{test}-{seed}.run{n}.log"),
                    &header,
                    &o.trace,
                )
                .map_or_else(
                    |why| format!("not written ({why})"),
                    |p| p.display().to_string(),
                )
            })
            .collect();
        eprintln!(
            "{test}: seed {seed} is NOT DETERMINISTIC: {diff}\n  traces: {}\n  replay: {replay}",
            paths.join(" ")
        );
    }
    assert!(
        failures.is_empty() && diverged.is_empty(),
        "{test}: {} of {} seeds failed (first: seed {}), {} not deterministic (first: seed {}); \
         traces and replay commands above",
        failures.len(),
        seeds.len(),
        failures.first().map_or(0, |f| f.0),
        diverged.len(),
        diverged.first().map_or(0, |d| d.0),
    );
}

// ----- scenarios -----

/// Swarm: the seed draws the scenario — fault kinds (each in or out), their rate, the callers,
/// the load, squatted ids, a gateway down at start, the length.
fn swarm_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("swarm-opts");
    let mut o = Opts::base(between(&mut rng, 5 * MIN, 30 * MIN));
    o.tick = secs(2);
    o.backfill_callers = usize::try_from(rng.below_or_eq(4)).unwrap_or(1);
    o.api_callers = usize::try_from(rng.below_or_eq(3)).unwrap_or(1);
    if o.backfill_callers + o.api_callers == 0 {
        o.backfill_callers = 1;
    }
    o.in_flight = 1 + usize::try_from(rng.below_or_eq(3)).unwrap_or(0);
    o.think = between(&mut rng, secs(2), secs(60));
    o.probe_pct = rng.below_or_eq(50);
    o.churn_pct = rng.below_or_eq(20);
    o.contracts = 1 + usize::try_from(rng.below_or_eq(8)).unwrap_or(0);
    ib_load(&mut rng, &mut o, 25);
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|_| chance(&mut rng, 50))
        .collect();
    if !kinds.is_empty() {
        let mean = between(&mut rng, MIN, 15 * MIN);
        let mut at = Duration::ZERO;
        loop {
            at += between(&mut rng, mean / 2, mean + mean / 2);
            if at >= o.safety {
                break;
            }
            let kind = kinds[usize::try_from(rng.below_or_eq(kinds.len() as u64 - 1)).unwrap_or(0)];
            o.script.push((at, Action::Random(kind)));
        }
    }
    if chance(&mut rng, 25) {
        let n = 1 + usize::try_from(rng.below_or_eq(MAX_SQUAT as u64 - 1)).unwrap_or(0);
        o.script.push((
            Duration::ZERO,
            Action::Squat(n, between(&mut rng, MIN, 10 * MIN)),
        ));
    }
    if chance(&mut rng, 20) {
        let down_for = between(&mut rng, secs(1), secs(90));
        o.script
            .push((Duration::ZERO, Action::Fault(Fault::Restart { down_for })));
    }
    o
}

/// The load only IB's rules shape, drawn for a swarm scenario: head timestamps (0–20 % of the
/// requests, half of the scenarios), small bars older than IB keeps and end dates in the future
/// (0–5 % each, a third of the scenarios), hourly bars (0–10 %, half of the scenarios), backfill jobs on one caller per process (`job_pct`
/// percent of the scenarios).
fn ib_load(rng: &mut SplitMix64, o: &mut Opts, job_pct: u64) {
    if chance(rng, 50) {
        o.head_pct = rng.below_or_eq(20);
    }
    if chance(rng, 33) {
        o.stale_pct = rng.below_or_eq(5);
        o.future_pct = rng.below_or_eq(5);
    }
    if chance(rng, 50) {
        o.large_pct = rng.below_or_eq(10);
    }
    o.jobs = usize::from(chance(rng, job_pct));
    // A job's caller holds a backfill lease too: a pool has at most 4 (callers done in the
    // liveness phase keep theirs, so a fifth would never get one).
    o.backfill_callers = o.backfill_callers.min(MAX_BACKFILL.saturating_sub(o.jobs));
}

/// 24 h: probes, a nightly reset, a daily gateway restart, steady load.
fn day_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("day");
    let mut o = Opts::base(secs(24 * 3600));
    o.tick = secs(5);
    o.backfill_callers = 2;
    o.think = between(&mut rng, 3 * MIN, 6 * MIN);
    o.probe_pct = 30;
    let nightly = between(&mut rng, secs(3600), secs(10 * 3600));
    let restart = between(&mut rng, secs(12 * 3600), secs(20 * 3600));
    o.script
        .push((nightly, Action::Fault(Fault::NightlyReset { pause: None })));
    let down_for = between(&mut rng, secs(30), secs(180));
    o.script
        .push((restart, Action::Fault(Fault::Restart { down_for })));
    o
}

/// Sleep/wake: the host sleeps every 5–20 min for 1 min–3 h, half of the time losing its
/// sockets meanwhile.
fn sleep_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("sleep");
    let mut o = Opts::base(between(&mut rng, 30 * MIN, 90 * MIN));
    o.backfill_callers = 2;
    o.every(&mut rng, (5 * MIN, 20 * MIN), &Action::Random(Kind::Sleep));
    o
}

/// Pacing cascade: four backfill and three API callers, several requests in flight each, many
/// contracts, small bars, no think time.
fn pacing_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("pacing");
    let mut o = Opts::base(between(&mut rng, 15 * MIN, 30 * MIN));
    o.backfill_callers = 4;
    o.api_callers = 3;
    o.in_flight = 2 + usize::try_from(rng.below_or_eq(2)).unwrap_or(0);
    o.think = secs(1);
    o.probe_pct = 0;
    o.churn_pct = 2;
    o
}

/// 326 storms: other sessions squat 1–[`MAX_SQUAT`] ids of each range at the start and again
/// after a mid-run restart (which frees the ids the gateway held).
fn storm_opts(seed: u64) -> Opts {
    storm_with(seed, 1, MAX_SQUAT)
}

/// A 326 storm squatting `lo..=hi` ids of each range (see [`storm_opts`]).
fn storm_with(seed: u64, lo: usize, hi: usize) -> Opts {
    let mut rng = SplitMix64::new(seed).child("storm");
    let mut o = Opts::base(between(&mut rng, 20 * MIN, 40 * MIN));
    o.backfill_callers = 1 + usize::try_from(rng.below_or_eq(3)).unwrap_or(0);
    let span = u64::try_from(hi - lo).unwrap_or(0);
    let squat = |rng: &mut SplitMix64| {
        Action::Squat(
            lo + usize::try_from(rng.below_or_eq(span)).unwrap_or(0),
            between(rng, MIN, 10 * MIN),
        )
    };
    o.script.push((Duration::ZERO, squat(&mut rng)));
    let restart = between(&mut rng, 5 * MIN, 15 * MIN);
    let down_for = between(&mut rng, secs(5), secs(30));
    o.script
        .push((restart, Action::Fault(Fault::Restart { down_for })));
    o.script.push((restart + secs(1), squat(&mut rng)));
    o
}

/// The gateway's port refuses for 1 s–5 min at the start.
fn unavailable_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("unavailable");
    let mut o = Opts::base(between(&mut rng, 10 * MIN, 20 * MIN));
    let down_for = between(&mut rng, secs(1), 5 * MIN);
    o.script
        .push((Duration::ZERO, Action::Fault(Fault::Restart { down_for })));
    o
}

/// Half-open sockets: a random connection freezes every 2–6 min with its socket open.
fn half_open_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("half-open");
    let mut o = Opts::base(between(&mut rng, 20 * MIN, 40 * MIN));
    o.backfill_callers = 2;
    o.every(
        &mut rng,
        (2 * MIN, 6 * MIN),
        &Action::Random(Kind::HalfOpen),
    );
    o
}

/// Split frames: every connection's writes are split at random points throughout.
fn split_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("split");
    let mut o = Opts::base(between(&mut rng, 10 * MIN, 20 * MIN));
    o.think = secs(5);
    let on = Action::Fault(Fault::Split {
        target: Target::All,
        on: true,
    });
    o.every(&mut rng, (secs(5), secs(30)), &on);
    o
}

/// Slow replies: a random connection's replies are delayed 0.5–5 s, every 1–3 min.
fn slow_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("slow");
    let mut o = Opts::base(between(&mut rng, 10 * MIN, 30 * MIN));
    o.think = secs(5);
    o.every(&mut rng, (MIN, 3 * MIN), &Action::Random(Kind::Delay));
    o
}

/// Garbage bytes: a random connection receives 4–64 unframeable bytes every 1–5 min.
fn garbage_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("garbage");
    let mut o = Opts::base(between(&mut rng, 10 * MIN, 30 * MIN));
    o.every(&mut rng, (MIN, 5 * MIN), &Action::Random(Kind::Garbage));
    o
}

/// IB's request faults: a spurious "no data", a request never answered or a spurious 322 on a
/// random connection every 1–4 min, against 1–2 callers running backfill jobs back to back
/// (20 s–2 min apart) and callers asking for small bars
/// (some older than IB keeps, some ending in the future) and head timestamps.
fn hmds_faults_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("hmds-faults");
    let mut o = Opts::base(between(&mut rng, 8 * MIN, 16 * MIN));
    o.tick = secs(2);
    o.backfill_callers = count(&mut rng, 0, 1);
    o.api_callers = 1;
    o.jobs = count(&mut rng, 1, 2);
    o.job_gap = (secs(20), 2 * MIN);
    o.in_flight = count(&mut rng, 1, 2);
    o.think = between(&mut rng, secs(5), secs(30));
    o.head_pct = between_pct(&mut rng, 10, 30);
    o.stale_pct = 5;
    o.future_pct = 5;
    o.large_pct = 5;
    o.contracts = count(&mut rng, 1, 4);
    let gap = (MIN, 4 * MIN);
    let mut at = Duration::ZERO;
    loop {
        at += between(&mut rng, gap.0, gap.1);
        if at >= o.safety {
            break;
        }
        let kind = Kind::REQUESTS[count(&mut rng, 0, Kind::REQUESTS.len() - 1)];
        o.script.push((at, Action::Random(kind)));
    }
    o
}

/// A percentage in `lo..=hi`.
fn between_pct(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    lo + rng.below_or_eq(hi - lo)
}

/// A draw in `lo..=hi` as a count.
fn count(rng: &mut SplitMix64, lo: usize, hi: usize) -> usize {
    let span = u64::try_from(hi.saturating_sub(lo)).unwrap_or(0);
    lo + usize::try_from(rng.below_or_eq(span)).unwrap_or(0)
}

/// Several processes on one gateway: 2–`max` processes (one pool each) on one or two hosts
/// (half of the time leasing from disjoint id ranges, else meeting at the gateway with 326s),
/// sharing one pacing ledger.
fn processes(rng: &mut SplitMix64, o: &mut Opts, max: usize) {
    o.processes = count(rng, 2, max);
    o.hosts = count(rng, 1, 2).min(o.processes);
    o.disjoint_hosts = o.hosts > 1 && chance(rng, 50);
}

/// Shared swarm: what [`swarm_opts`] draws (faults, load, squats, a gateway down at start), with
/// 2–4 processes sharing the gateway and its pacing ledger, and their own faults: the pacing
/// store down for up to 40 s or for 50 s–3 min, the store restarting without its books, a
/// process killed (and started again later).
fn shared_swarm_opts(seed: u64) -> Opts {
    shared_swarm_with(seed, &Kind::SHARED)
}

/// [`shared_swarm_opts`] drawing its own faults from `shared` (each in with 70 %).
fn shared_swarm_with(seed: u64, shared: &[Kind]) -> Opts {
    let mut rng = SplitMix64::new(seed).child("shared-swarm");
    let mut o = Opts::base(between(&mut rng, 5 * MIN, 20 * MIN));
    o.tick = secs(2);
    o.stats_every = if chance(&mut rng, 30) {
        1
    } else {
        rng.below_or_eq(60) + 1
    };
    processes(&mut rng, &mut o, 4);
    o.backfill_callers = count(&mut rng, 0, 2);
    o.api_callers = count(&mut rng, 0, 2);
    if o.backfill_callers + o.api_callers == 0 {
        o.backfill_callers = 1;
    }
    o.in_flight = count(&mut rng, 1, 3);
    o.think = between(&mut rng, secs(2), secs(60));
    o.probe_pct = rng.below_or_eq(50);
    o.churn_pct = rng.below_or_eq(20);
    o.contracts = count(&mut rng, 1, SYMBOLS.len());
    ib_load(&mut rng, &mut o, 12);
    let mut kinds: Vec<Kind> = shared
        .iter()
        .copied()
        .filter(|_| chance(&mut rng, 70))
        .collect();
    kinds.extend(Kind::ALL.into_iter().filter(|_| chance(&mut rng, 30)));
    if !kinds.is_empty() {
        let mean = between(&mut rng, MIN, 8 * MIN);
        let mut at = Duration::ZERO;
        loop {
            at += between(&mut rng, mean / 2, mean + mean / 2);
            if at >= o.safety {
                break;
            }
            let kind = kinds[count(&mut rng, 0, kinds.len() - 1)];
            o.script.push((at, Action::Random(kind)));
        }
    }
    if chance(&mut rng, 15) {
        let n = count(&mut rng, 1, MAX_SQUAT);
        o.script.push((
            Duration::ZERO,
            Action::Squat(n, between(&mut rng, MIN, 10 * MIN)),
        ));
    }
    if chance(&mut rng, 10) {
        let down_for = between(&mut rng, secs(1), secs(90));
        o.script
            .push((Duration::ZERO, Action::Fault(Fault::Restart { down_for })));
    }
    o
}

/// Shared pacing cascade: 2–4 processes on one host, each with three backfill callers and one
/// API caller keeping 2–3 small-bar requests in flight on few contracts with no think time, so
/// every process waits on the others' reservations in the shared book; one process is killed
/// (and started again) every 2–8 min.
fn shared_cascade_opts(seed: u64) -> Opts {
    let mut o = cascade_base(seed);
    let mut rng = SplitMix64::new(seed).child("shared-cascade-faults");
    o.every(&mut rng, (2 * MIN, 8 * MIN), &Action::Random(Kind::Kill));
    o
}

/// [`shared_cascade_opts`]'s load, without faults.
fn cascade_base(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("shared-cascade");
    let mut o = Opts::base(between(&mut rng, 10 * MIN, 20 * MIN));
    o.tick = secs(2);
    o.processes = count(&mut rng, 2, 4);
    o.backfill_callers = 3;
    o.api_callers = 1;
    o.in_flight = count(&mut rng, 2, 3);
    o.think = secs(1);
    o.probe_pct = 0;
    o.churn_pct = 2;
    o.contracts = count(&mut rng, 1, 4);
    o.stats_every = 30;
    o
}

/// Pacing store outages: 2–3 processes with steady load; the store is unreachable for 1–40 s
/// every 1–4 min (requests wait for it, none goes out unpaced).
fn store_outage_opts(seed: u64) -> Opts {
    store_outage_with(seed, Kind::StoreDown)
}

/// [`store_outage_opts`] with outages of `kind`.
fn store_outage_with(seed: u64, kind: Kind) -> Opts {
    let mut rng = SplitMix64::new(seed).child("store-outage");
    let mut o = Opts::base(between(&mut rng, 10 * MIN, 25 * MIN));
    o.tick = secs(2);
    processes(&mut rng, &mut o, 3);
    o.backfill_callers = 2;
    o.in_flight = 2;
    o.think = secs(5);
    o.stats_every = 10;
    o.every(&mut rng, (MIN, 4 * MIN), &Action::Random(kind));
    o
}

/// Killed processes: 2–4 processes with steady load; one is killed every 2–6 min (no shutdown:
/// its ids and pacing claims lapse by TTL) and comes back as a new process 5 s–3 min later.
fn killed_opts(seed: u64) -> Opts {
    let mut rng = SplitMix64::new(seed).child("killed");
    let mut o = Opts::base(between(&mut rng, 10 * MIN, 25 * MIN));
    o.tick = secs(2);
    processes(&mut rng, &mut o, 4);
    o.backfill_callers = 2;
    o.in_flight = 2;
    o.think = secs(5);
    o.stats_every = 10;
    o.every(&mut rng, (2 * MIN, 6 * MIN), &Action::Random(Kind::Kill));
    o
}

#[test]
fn swarm() {
    sweep("swarm", 150, swarm_opts);
}

/// Reproduction rests on determinism: the same seed gives the same run, line for line of its
/// trace (every frame, event and command) and byte for byte. A few swarm seeds always;
/// `IBCONN_SIM_CHECK_DETERMINISM=1` checks every seed of every test.
#[test]
fn a_seed_replays_identically() {
    sweep_checked("a_seed_replays_identically", 5, swarm_opts, true);
}

/// The determinism check sees a difference: two seeds' runs part at a named line.
#[test]
fn the_determinism_check_names_the_first_differing_line() {
    let a = run_seed(1, unavailable_opts, true);
    let b = run_seed(2, unavailable_opts, true);
    assert!(a.result.is_ok() && !a.trace.is_empty());
    assert!(first_difference(&a, &run_seed(1, unavailable_opts, true)).is_none());
    let diff = first_difference(&a, &b).unwrap_or_default();
    assert!(diff.starts_with("trace line "), "{diff}");
    assert!(
        diff.contains("run 1: +") && diff.contains("run 2: "),
        "{diff}"
    );
}

/// A failing seed leaves its whole trace in the dump dir (created if missing) and names it with
/// the replay command. (A scenario with no callers fails as vacuous.)
#[test]
fn a_failing_seed_leaves_its_trace_and_replay_command() {
    let vacuous = |seed| Opts {
        backfill_callers: 0,
        api_callers: 0,
        ..unavailable_opts(seed)
    };
    let failed = run_seed(7, vacuous, false);
    let Err(error) = &failed.result else {
        panic!("a run without callers passed")
    };
    let test = "selftest_dump";
    // Not the real dump dir (a passing test writes nothing there): a fresh one, created on demand.
    let dir = std::env::temp_dir()
        .join(format!("ibsim-selftest-{}", std::process::id()))
        .join("ibsim");
    let report = dump_failure(&dir, test, 7, vacuous, error, None);
    let path = dir.join(format!("{test}-7.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir_all(parent);
    }
    assert!(
        report.contains(&format!("trace: {}", path.display())),
        "{report}"
    );
    assert!(report.contains("replay: IBCONN_SIM_SEED=7 cargo test -p ibconn-sim --test swarm -- selftest_dump --exact"), "{report}");
    assert!(
        text.starts_with("# selftest_dump seed 7 FAILED: "),
        "{text}"
    );
    assert!(
        !text.contains("NOTE"),
        "the traced rerun failed the same way: {text}"
    );
    assert!(
        text.contains(" shutdown\n"),
        "the trace runs to the end: {text}"
    );
}

#[test]
fn day_24h() {
    sweep("day_24h", 2, day_opts);
}

#[test]
fn sleep_wake() {
    sweep("sleep_wake", 18, sleep_opts);
}

#[test]
fn pacing_cascade() {
    sweep("pacing_cascade", 16, pacing_opts);
}

#[test]
fn storm_326() {
    sweep("storm_326", 24, storm_opts);
}

#[test]
fn gateway_unavailable_at_start() {
    sweep("gateway_unavailable_at_start", 24, unavailable_opts);
}

#[test]
fn half_open_sockets() {
    sweep("half_open_sockets", 16, half_open_opts);
}

#[test]
fn split_frames() {
    sweep("split_frames", 16, split_opts);
}

#[test]
fn slow_replies() {
    sweep("slow_replies", 16, slow_opts);
}

#[test]
fn garbage_bytes() {
    sweep("garbage_bytes", 16, garbage_opts);
}

#[test]
fn hmds_request_faults() {
    sweep("hmds_request_faults", 12, hmds_faults_opts);
}

// ----- several processes on one gateway, one pacing ledger -----

#[test]
fn shared_swarm() {
    sweep("shared_swarm", 60, shared_swarm_opts);
}

/// Several processes replay identically too: their pools, the shared ledger and its faults.
#[test]
fn a_shared_seed_replays_identically() {
    sweep_checked(
        "a_shared_seed_replays_identically",
        3,
        shared_swarm_opts,
        true,
    );
}

#[test]
fn shared_pacing_cascade() {
    sweep("shared_pacing_cascade", 8, shared_cascade_opts);
}

#[test]
fn pacing_store_outage() {
    sweep("pacing_store_outage", 12, store_outage_opts);
}

#[test]
fn process_killed() {
    sweep("process_killed", 12, killed_opts);
}

// ----- regressions: core bugs this suite found (ignored while the bug is open) -----

/// Was a core bug (found by this suite), fixed: after the pacing store restarts without its
/// books, the pools merge back the copies they last saw, and (1) reservation ids collided — a fresh book
/// continues from the first merger's stale `next_id`, so it hands out ids other processes still
/// hold, and a later merge skips their slots as duplicates: sent requests vanish from the window
/// and the gateway sees a 61st request in 10 minutes; (2) a stale copy resurrects open requests
/// their owner completed since, and the owner renews them forever (its open-request count only
/// grows); (3) a process without requests in flight does not step, so it never merges back what
/// it sent. Here: the cascade's load, the store restarting every 1–5 min.
///
/// Now a recreated book hands out ids from its own range, a process merges back only its own
/// open requests, an idle process with recent sends keeps stepping, and a book made after a
/// loss settles (grants nothing) for a third of the claim TTL while the processes put it back.
#[test]
fn regression_store_restart_loses_and_resurrects_reservations() {
    sweep(
        "regression_store_restart_loses_and_resurrects_reservations",
        8,
        |seed| {
            let mut o = cascade_base(seed);
            let mut rng = SplitMix64::new(seed).child("store-restarts");
            o.every(
                &mut rng,
                (MIN, 5 * MIN),
                &Action::Random(Kind::StoreRestart),
            );
            o
        },
    );
}

/// Was a core bug (found by this suite), fixed: a pacing-store outage longer than the claim TTL (60 s)
/// minus the time since a pool's last renewal (up to a heartbeat, 15 s) lapses that pool's
/// claims; the first pool to reach the store again prunes the lapsed pools' unsent slots, yet
/// they still send on them (a pool only checks its reservations at its next heartbeat renewal),
/// so two processes use one slot and the gateway sees a pacing violation (seconds after the
/// store is back, or later, once the window the lost slot under-counts fills up). Here: 2–3
/// processes, outages of 50 s–3 min. Now a pool whose claim may have lapsed (no step for half
/// the TTL) renews before it sends, and reserves again any request it could not send on time.
#[test]
fn regression_store_outage_longer_than_the_claim_ttl() {
    sweep(
        "regression_store_outage_longer_than_the_claim_ttl",
        8,
        |seed| store_outage_with(seed, Kind::LongStoreDown),
    );
}

/// Was a core bug (found by this suite): when a *leased* connection redialed and hit
/// `max_conflict_attempts` 326s in a row, the pool dropped the slot and its leases silently. Now
/// the holders get `PoolEvent::LeaseLost` and their open requests end with
/// `CallError::LeaseLost`; every invariant holds. Here: ≥ 5 squatted ids after a restart.
#[test]
fn regression_lease_vanishes_when_326s_exhaust_a_leased_connection() {
    sweep(
        "regression_lease_vanishes_when_326s_exhaust_a_leased_connection",
        8,
        |seed| storm_with(seed, MAX_SQUAT + 1, 12),
    );
}

/// Was a core bug (found by this suite): after the host slept longer than the registry's lease
/// TTL, the pool's registry heartbeat failed (`NotHeld`: the leases lapsed by wall time) and the
/// pool only logged it, keeping the ids without a lease, so a later allocation — by this pool or
/// another process — could hand out an id still in use. Now a wall-clock jump (or a failed
/// heartbeat) renews at once: the same id again if it is free, else the connection moves to a
/// fresh id. Here the registry must match the pool's connections exactly, sleeps included.
#[test]
fn regression_registry_leases_lapse_over_a_long_sleep() {
    sweep(
        "regression_registry_leases_lapse_over_a_long_sleep",
        8,
        |seed| Opts {
            takeover_pct: 50,
            no_conflicts: true,
            ..sleep_opts(seed)
        },
    );
}
