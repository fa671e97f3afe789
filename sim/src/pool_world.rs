//! The core [`Pool`] wired to one simulated [`Gateway`] under virtual time — [`World`](crate::World)
//! one level up: each pool dials, writes and closes sockets ([`Io`]), and this harness carries them
//! over simulated links to the sans-IO gateway.
//!
//! Nothing here sleeps or reads a clock after [`PoolWorld::new`] captures its epoch: each step
//! jumps to the earliest of the next delivery, [`Gateway::poll_timeout`] and every
//! [`Pool::poll_timeout`], so a backfill that IB's pacing stretches over an hour runs in
//! wall-clock milliseconds to seconds.
//!
//! # Processes, hosts and the shared pacing ledger
//!
//! A world runs one or more *processes*, each one [`Pool`] ([`PoolWorldConfig::processes`]; the
//! default is one). They all talk to the one gateway, and all pace through handles of one
//! [`MemoryLedger`] ([`Pool::with_ledger`]), so IB's gateway-wide rules are shared as they would
//! be through a file or Redis. Each process runs on a *host*: processes on one host lease client
//! ids from one registry (as from the per-user registry file), hosts have a registry each
//! ([`PoolWorldConfig::hosts`]), and their ids meet only at the gateway (error 326). All hosts
//! share one clock (a sleep is world-wide, see [`PoolWorld::sleep`]).
//!
//! Processes can be killed ([`PoolWorld::kill`]: the pool is dropped without a shutdown, the
//! kernel closes its sockets, its registry leases and pacing claims stay until their TTLs run
//! out) and started ([`PoolWorld::spawn`]). The pacing store can fail
//! ([`PoolWorld::set_store_unavailable`]) or restart losing every book
//! ([`PoolWorld::restart_store`]). Methods without a process argument act on process 0.
//!
//! # Links
//!
//! Every delivery takes `latency` plus a seeded jitter in `0..=jitter`, in order per direction.
//! [`Io::Dial`] reaches the gateway one trip later: if its port refuses
//! ([`Gateway::is_refusing`]) the pool hears `handle_dial_failed` one trip after that; otherwise the
//! gateway accepts and the pool hears `handle_dialed`. [`Io::Close`] travels as a FIN after the
//! socket's bytes; a gateway close reaches the pool as `handle_eof`.
//!
//! [`PoolWorld::run_backfill`] drives a [`BackfillJob`] to completion on the world.
//!
//! # Hooks for scenario tests
//!
//! [`PoolWorld::run_until`] advances to a fixed instant; [`PoolWorld::inject`] applies a gateway
//! fault at once; [`PoolWorld::observe_clocks`] and [`PoolWorld::sleep`] feed the pools' sleep
//! detection (boot time ahead of monotonic time); [`PoolWorld::shutdown`] shuts a pool down;
//! [`PoolWorld::held_client_ids`], [`PoolWorld::links`] and [`PoolWorld::in_flight`] expose what
//! leak checks count (the registries are shared with the world); [`PoolWorld::pacing_book`] reads
//! the shared pacing book.
//!
//! # Trace
//!
//! After [`PoolWorld::enable_trace`], every caller command (acquire, send, release, clocks,
//! sleeps, faults, kills, store faults), every socket command of a pool, every frame delivered
//! (decoded, both ways) and every pool event is one line of [`PoolWorld::trace`], e.g.
//! `+12.345s S7→G StartApi client_id=2000`; with more than one process, lines name it
//! (`P1 acquire …`, `P1.S7→G …`). Times are relative to the epoch, never absolute instants.
//! [`PoolWorld::trace_hash`] digests the lines and every byte delivered, so two runs from one seed
//! can be compared. Tracing is off by default (it formats every frame).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ibconn_core::backfill::{BackfillJob, ChunkId};
use ibconn_core::client_id::{
    ttl_only, Grant, Holder, Purpose, RegistryConfig, RegistryState, UnixMillis,
};
use ibconn_core::connection::{Answer, Query};
use ibconn_core::pacer::{MemoryLedger, PaceBook, PaceLedger, PaceTime, PacingRules};
use ibconn_core::pool::{
    AcquireError, AcquireId, IdRegistry, IdRegistryError, Io, LeaseId, Pool, PoolConfig, PoolEvent,
    PoolStats, SocketId, SubmitError, Ticket,
};

use crate::gateway::{ConnId, Gateway, GatewayConfig};
use crate::rng::SplitMix64;
use crate::schedule::Schedule;
use crate::tap::Tap;

/// What shapes a [`PoolWorld`].
#[derive(Debug, Clone)]
pub struct PoolWorldConfig {
    /// The one seed: gateway randomness and link jitter.
    pub seed: u64,
    /// The gateway.
    pub gateway: GatewayConfig,
    /// Every pool's configuration (its gateway addresses are labels only: every dial reaches the
    /// one gateway). Process 0 uses it as is; the others with an `rng_seed` of their own.
    pub pool: PoolConfig,
    /// Client-id registry policy per host (ranges, lease TTL, …): one registry per host, shared
    /// by the processes on it. Default: one host with the default policy.
    pub hosts: Vec<RegistryConfig>,
    /// The host of each process at the start (one pool per process). Default `[0]`: a single
    /// pool. A host index past [`PoolWorldConfig::hosts`] gets the default policy.
    pub processes: Vec<usize>,
    /// Wall time at the epoch, Unix milliseconds, for both the gateway and the pools.
    pub wall_unix_ms: i64,
    /// One-way link latency.
    pub latency: Duration,
    /// Extra one-way delay, uniform in `0..=jitter`, drawn from the seed.
    pub jitter: Duration,
    /// Bound on steps over the world's life.
    pub max_steps: u64,
}

impl PoolWorldConfig {
    /// Defaults with `seed`: the default gateway (IB's rules, the same as over TCP: pacing on
    /// small bars and head timestamps, [`crate::HistoricalRules::default`]), one pool (the default config with IB's pacing
    /// rules plus a 50 ms margin: one-way jitter reorders arrivals at the gateway, so without a
    /// margin a request sent exactly one window after another can arrive a hair inside it) on one
    /// host, wall time = the gateway's `start_unix_ms`, 1 ms latency, 1 ms jitter, 10 M steps.
    pub fn new(seed: u64) -> Self {
        let gateway = GatewayConfig::default();
        Self {
            seed,
            wall_unix_ms: gateway.start_unix_ms,
            gateway,
            pool: PoolConfig {
                gateways: vec!["sim:4002".to_owned()],
                rng_seed: seed,
                pacing: PacingRules::default().with_margin(Duration::from_millis(50)),
                ..PoolConfig::default()
            },
            hosts: vec![RegistryConfig::default()],
            processes: vec![0],
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            max_steps: 10_000_000,
        }
    }

    /// `n` processes (at least one) spread over `hosts` hosts (at least one) round-robin:
    /// process `i` runs on host `i % hosts`, every host with the default registry policy.
    #[must_use]
    pub fn with_processes(mut self, n: usize, hosts: usize) -> Self {
        let hosts = hosts.max(1);
        self.processes = (0..n.max(1)).map(|i| i % hosts).collect();
        self.hosts = vec![RegistryConfig::default(); hosts];
        self
    }
}

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolWorldError {
    /// The step bound was reached (a livelock, or a far too long run).
    #[error("step limit of {0} reached")]
    StepLimit(u64),
    /// Nothing is scheduled any more, but the run is not finished.
    #[error("deadlock at +{0:?}: nothing is scheduled")]
    Deadlock(Duration),
    /// The pool gave no connection.
    #[error("no connection: {0}")]
    Acquire(AcquireError),
    /// The pool refused a request.
    #[error("request refused: {0}")]
    Submit(#[from] SubmitError),
    /// The caller asked the run to stop (a signal): what the job holds is kept.
    #[error("interrupted")]
    Interrupted,
}

/// How [`PoolWorld::run_backfill`] drives a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillRun {
    /// Chunk requests in flight at once (at least 1).
    pub concurrency: usize,
    /// Bound on each request, pacing wait included (keep it above IB's 10-minute window).
    pub request_timeout: Duration,
    /// Call the progress callback at most this often (virtual time).
    pub progress_every: Duration,
}

impl Default for BackfillRun {
    fn default() -> Self {
        Self {
            concurrency: 4,
            request_timeout: Duration::from_secs(20 * 60),
            progress_every: Duration::from_secs(1),
        }
    }
}

/// What a finished run cost.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Virtual time the run took.
    pub virtual_elapsed: Duration,
    /// Steps the run took.
    pub steps: u64,
    /// The pool's counters at the end (pacing waits, violations, retries, …).
    pub pool: PoolStats,
    /// Pacing violations the gateway reported over the world's life.
    pub gateway_pacing_violations: u64,
}

/// One socket of one process: the process's index and the pool's socket id (each pool numbers
/// its sockets on its own).
type Sock = (usize, SocketId);

#[derive(Debug)]
enum Delivery {
    Syn { sock: Sock },
    SynAck { sock: Sock },
    Refused { sock: Sock },
    ToGateway { conn: ConnId, bytes: Bytes },
    ToPool { sock: Sock, bytes: Bytes },
    FinToGateway { conn: ConnId },
    FinToPool { sock: Sock },
}

/// One socket between a pool and the gateway.
#[derive(Debug)]
struct Link {
    /// The gateway side, while the gateway has it open.
    gw: Option<ConnId>,
    /// The pool still owns the socket (no `Io::Close`, no EOF delivered, process alive).
    pool_open: bool,
    last_up: Instant,
    last_down: Instant,
}

/// A book no pool uses, stepped once at the epoch to start the ledger's clock there.
const EPOCH_BOOK: &str = "(sim epoch)";

/// The registry holder process 0 leases ids as (other processes: pid `100 + index`).
const POOL_PROCESS: Holder = Holder::from_pid(1);

/// The registry holder of [`PoolWorld::take_client_id`]: another process on host 0.
const OTHER_PROCESS: Holder = Holder::from_pid(2);

/// One host's client-id registry (as the per-user registry file): its policy and its state,
/// shared by the processes on the host and by the world.
#[derive(Debug, Clone)]
struct HostRegistry {
    config: RegistryConfig,
    state: Arc<Mutex<RegistryState>>,
}

impl HostRegistry {
    fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            state: Arc::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut RegistryState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One process's view of its host's registry: every call goes straight to the shared state as
/// this process's holder (liveness by TTL only, as for a holder in another container).
#[derive(Debug, Clone)]
struct ProcessRegistry {
    host: HostRegistry,
    holder: Holder,
}

impl IdRegistry for ProcessRegistry {
    fn allocate(&mut self, purpose: &Purpose, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        let (config, holder) = (&self.host.config, &self.holder);
        Ok(self
            .host
            .with(|s| s.allocate(config, purpose, holder, now, &ttl_only))?)
    }

    fn on_client_id_in_use(
        &mut self,
        grant: &Grant,
        conflicts_so_far: u32,
        now: UnixMillis,
    ) -> Result<Grant, IdRegistryError> {
        let (config, holder) = (&self.host.config, &self.holder);
        Ok(self.host.with(|s| {
            s.on_client_id_in_use(config, grant, conflicts_so_far, holder, now, &ttl_only)
        })?)
    }

    fn heartbeat(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        Ok(self.host.with(|s| s.heartbeat(grant, now))?)
    }

    fn reacquire(&mut self, grant: &Grant, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        let (config, holder) = (&self.host.config, &self.holder);
        Ok(self
            .host
            .with(|s| s.reacquire(config, grant, holder, now, &ttl_only))?)
    }

    fn release(&mut self, grant: &Grant, _now: UnixMillis) -> Result<(), IdRegistryError> {
        Ok(self.host.with(|s| s.release(grant))?)
    }
}

/// One simulated process: a pool on a host, until it is killed.
#[derive(Debug)]
struct Process {
    host: usize,
    holder: Holder,
    /// Its owner name in the pacing books.
    owner: String,
    /// `None` once killed.
    pool: Option<Pool>,
    /// When it was killed.
    killed_at: Option<Instant>,
    /// Its events not taken yet.
    events: VecDeque<PoolEvent>,
}

/// The simulated pools-and-gateway world. See the [module docs](self).
#[derive(Debug)]
pub struct PoolWorld {
    epoch: Instant,
    now: Instant,
    latency: Duration,
    jitter: Duration,
    max_steps: u64,
    steps: u64,
    rng: SplitMix64,
    pool_config: PoolConfig,
    procs: Vec<Process>,
    hosts: Vec<HostRegistry>,
    ledger: MemoryLedger,
    /// Trace lines name the process (more than one process was ever started).
    labelled: bool,
    wall_unix_ms: i64,
    slept: Duration,
    /// Wall-clock steps ([`PoolWorld::step_wall_clock`]).
    wall_step: Duration,
    gateway: Gateway,
    links: BTreeMap<Sock, Link>,
    queue: Schedule<Delivery>,
    trace: Option<Box<Trace>>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Both directions of one socket, and the server version its hello announced.
#[derive(Debug)]
struct Taps {
    up: Tap,
    down: Tap,
    server_version: i32,
}

/// The trace of a [`PoolWorld`]: its lines, their digest, and a frame decoder per socket and
/// direction.
#[derive(Debug)]
struct Trace {
    lines: Vec<String>,
    hash: u64,
    taps: BTreeMap<Sock, Taps>,
}

/// A query in a few words.
fn describe_query(q: &Query) -> String {
    match q {
        Query::HistoricalData(r) => format!(
            "historical {} {} {} {} {}",
            r.contract.symbol, r.end_date_time, r.bar_size, r.duration, r.what_to_show
        ),
        other => other.name().to_owned(),
    }
}

/// An answer in a few words (bars by count and ends).
fn describe_answer(a: &Answer) -> String {
    match a {
        Answer::Bars { bars, start, end } => match (bars.first(), bars.last()) {
            (Some(first), Some(last)) => format!(
                "{} bars {start}..{end} first {:?} last {:?}",
                bars.len(),
                first.date,
                last.date
            ),
            _ => format!("0 bars {start}..{end}"),
        },
        other => format!("{other:?}"),
    }
}

impl PoolWorld {
    /// A world whose epoch (virtual `+0`) is captured here once, with its processes started.
    #[allow(clippy::disallowed_methods)] // the one origin instant; everything after is virtual
    pub fn new(config: PoolWorldConfig) -> Self {
        let epoch = Instant::now();
        let mut gateway = Gateway::new(config.gateway, config.seed);
        gateway.set_clock(epoch, config.wall_unix_ms);
        let mut hosts: Vec<HostRegistry> =
            config.hosts.into_iter().map(HostRegistry::new).collect();
        let needed = config.processes.iter().max().map_or(1, |h| h + 1);
        while hosts.len() < needed {
            hosts.push(HostRegistry::new(RegistryConfig::default()));
        }
        let processes = if config.processes.is_empty() {
            vec![0]
        } else {
            config.processes
        };
        let mut world = Self {
            epoch,
            now: epoch,
            latency: config.latency,
            jitter: config.jitter,
            max_steps: config.max_steps,
            steps: 0,
            rng: SplitMix64::new(config.seed).child("pool-links"),
            pool_config: config.pool,
            procs: Vec::new(),
            hosts,
            ledger: MemoryLedger::new("sim-world"),
            labelled: processes.len() > 1,
            wall_unix_ms: config.wall_unix_ms,
            slept: Duration::ZERO,
            wall_step: Duration::ZERO,
            gateway,
            links: BTreeMap::new(),
            queue: Schedule::new(),
            trace: None,
        };
        // Pin the ledger's clock to the epoch: its time is monotonic time since its first step.
        let _ = world.ledger.transact(
            EPOCH_BOOK,
            epoch,
            &mut |_: &mut PaceBook, _: ibconn_core::pacer::LedgerNow| {},
        );
        for host in processes {
            world.start_process(host);
        }
        world
    }

    /// A new process on `host` (its pool made now); its index.
    fn start_process(&mut self, host: usize) -> usize {
        let index = self.procs.len();
        let host = host.min(self.hosts.len().saturating_sub(1));
        let holder = if index == 0 {
            POOL_PROCESS
        } else {
            Holder::from_pid(100 + u32::try_from(index).unwrap_or(u32::MAX - 100))
        };
        let owner = format!("host{host}/pid{}", holder.pid);
        let mut config = self.pool_config.clone();
        if index > 0 {
            config.rng_seed = SplitMix64::new(config.rng_seed)
                .child(&format!("process-{index}"))
                .next_u64();
        }
        let registry = ProcessRegistry {
            host: self.hosts[host].clone(),
            holder: holder.clone(),
        };
        let ledger = self.ledger.handle(owner.clone());
        let pool = Pool::with_ledger(
            config,
            Box::new(registry),
            Box::new(ledger),
            self.now,
            self.wall(),
        );
        self.procs.push(Process {
            host,
            holder,
            owner,
            pool: Some(pool),
            killed_at: None,
            events: VecDeque::new(),
        });
        index
    }

    /// Record the [trace](self#trace) from now on (call it first thing for a whole run).
    pub fn enable_trace(&mut self) {
        if self.trace.is_none() {
            self.trace = Some(Box::new(Trace {
                lines: Vec::new(),
                hash: FNV_OFFSET,
                taps: BTreeMap::new(),
            }));
        }
    }

    /// Every trace line so far (none unless [`PoolWorld::enable_trace`] was called).
    pub fn trace(&self) -> &[String] {
        self.trace.as_ref().map_or(&[], |t| &t.lines)
    }

    /// A digest of every trace line and every byte delivered (a constant without a trace).
    pub fn trace_hash(&self) -> u64 {
        self.trace.as_ref().map_or(FNV_OFFSET, |t| t.hash)
    }

    /// Add a trace line (built only when tracing).
    fn log(&mut self, line: impl FnOnce() -> String) {
        let d = self.now - self.epoch;
        if let Some(trace) = &mut self.trace {
            let mut text = format!("+{}.{:03}s ", d.as_secs(), d.subsec_millis());
            text.push_str(&line());
            trace.hash = fnv(trace.hash, text.as_bytes());
            trace.lines.push(text);
        }
    }

    /// The prefix of a trace line about process `p` (empty in a one-process world).
    fn who(&self, p: usize) -> String {
        if self.labelled {
            format!("P{p} ")
        } else {
            String::new()
        }
    }

    /// A socket's name in the trace: `S7`, or `P1.S7` with several processes.
    fn sock_name(&self, (p, socket): Sock) -> String {
        if self.labelled {
            format!("P{p}.S{}", socket.0)
        } else {
            format!("S{}", socket.0)
        }
    }

    /// Trace the frames `bytes` completes on `sock` (`up`: pool → gateway).
    fn tap(&mut self, sock: Sock, up: bool, bytes: &[u8]) {
        let name = self.sock_name(sock);
        let Some(trace) = &mut self.trace else {
            return;
        };
        trace.hash = fnv(trace.hash, bytes);
        let taps = trace.taps.entry(sock).or_insert_with(|| Taps {
            up: Tap::up(),
            down: Tap::down(),
            server_version: 0,
        });
        let sv = taps.server_version;
        let tap = if up { &mut taps.up } else { &mut taps.down };
        let (lines, new_sv) = tap.frames(up, bytes, sv);
        if let Some(v) = new_sv {
            taps.server_version = v;
        }
        for text in lines {
            self.log(|| {
                if up {
                    format!("{name}→G {text}")
                } else {
                    format!("G→{name} {text}")
                }
            });
        }
    }

    /// Virtual time since the epoch.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The gateway, to inject faults (call [`PoolWorld::step`] afterwards).
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gateway
    }

    /// Apply `fault` at the gateway now and carry out what it caused at once (bytes, closes).
    pub fn inject(&mut self, fault: crate::fault::Fault) {
        self.log(|| format!("fault {fault:?}"));
        let now = self.now;
        self.gateway.inject(now, fault);
        self.drain_gateway();
    }

    // ----- processes -----

    /// Processes started so far, killed ones included (indices are never reused).
    pub fn processes(&self) -> usize {
        self.procs.len()
    }

    /// Whether process `p` runs (it was started and not killed; a shut-down pool still counts).
    pub fn is_alive(&self, p: usize) -> bool {
        self.procs.get(p).is_some_and(|x| x.pool.is_some())
    }

    /// The host process `p` runs (ran) on.
    pub fn host_of(&self, p: usize) -> Option<usize> {
        self.procs.get(p).map(|x| x.host)
    }

    /// Process `p`'s owner name in the pacing books (`host0/pid1`).
    pub fn owner_of(&self, p: usize) -> Option<&str> {
        self.procs.get(p).map(|x| x.owner.as_str())
    }

    /// When process `p` was killed, as virtual time since the epoch.
    pub fn killed_at(&self, p: usize) -> Option<Duration> {
        self.procs
            .get(p)
            .and_then(|x| x.killed_at)
            .map(|t| t - self.epoch)
    }

    /// Start another process on `host` (a fresh pool, a pid and owner name of its own); its index.
    pub fn spawn(&mut self, host: usize) -> usize {
        self.labelled = true;
        let p = self.start_process(host);
        let owner = self.procs[p].owner.clone();
        self.log(|| format!("P{p} starts as {owner}"));
        p
    }

    /// Kill process `p` (as `kill -9`): its pool is dropped without a shutdown, the kernel
    /// closes its sockets (the gateway sees FINs), and its events are gone. Its registry leases
    /// and pacing claims stay until their TTLs run out. Killing a dead process does nothing.
    pub fn kill(&mut self, p: usize) {
        let Some(process) = self.procs.get_mut(p) else {
            return;
        };
        let Some(pool) = process.pool.take() else {
            return;
        };
        drop(pool);
        process.killed_at = Some(self.now);
        process.events.clear();
        let who = self.who(p);
        self.log(|| format!("{who}killed"));
        let socks: Vec<Sock> = self
            .links
            .range((p, SocketId(0))..)
            .map(|(s, _)| *s)
            .take_while(|s| s.0 == p)
            .collect();
        for sock in socks {
            self.close_socket(sock);
        }
    }

    fn pool_mut(&mut self, p: usize) -> Option<&mut Pool> {
        self.procs.get_mut(p).and_then(|x| x.pool.as_mut())
    }

    /// Process 0's pool (`None` once killed).
    pub fn pool(&self) -> Option<&Pool> {
        self.pool_in(0)
    }

    /// Process `p`'s pool (`None` once killed).
    pub fn pool_in(&self, p: usize) -> Option<&Pool> {
        self.procs.get(p).and_then(|x| x.pool.as_ref())
    }

    /// Process 0's counters now (all zero once killed).
    pub fn pool_stats(&mut self) -> PoolStats {
        self.pool_stats_in(0).unwrap_or_default()
    }

    /// Process `p`'s counters now (`None` once killed). Reads the shared pacing book (a ledger
    /// step, which renews the process's pacing claims, as a status page would).
    pub fn pool_stats_in(&mut self, p: usize) -> Option<PoolStats> {
        let now = self.now;
        self.pool_mut(p).map(|pool| pool.stats(now))
    }

    /// Ask process 0's pool for a lease (the outcome arrives as an event; see
    /// [`PoolWorld::poll_event`]). Once process 0 is killed: `AcquireId(0)`, never answered.
    pub fn acquire(&mut self, purpose: Purpose) -> AcquireId {
        self.acquire_in(0, purpose).unwrap_or(AcquireId(0))
    }

    /// Ask process `p`'s pool for a lease (`None`: the process is dead).
    pub fn acquire_in(&mut self, p: usize, purpose: Purpose) -> Option<AcquireId> {
        let now = self.now;
        let shown = purpose.to_string();
        let id = self.pool_mut(p)?.acquire(now, purpose, None);
        let who = self.who(p);
        self.log(|| format!("{who}acquire {} {shown}", id.0));
        self.drain_pool(p);
        Some(id)
    }

    /// Submit a query on a lease of process 0.
    pub fn send(
        &mut self,
        lease: LeaseId,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<Ticket, SubmitError> {
        self.send_in(0, lease, query, timeout)
    }

    /// Submit a query on a lease of process `p` (a dead process refuses as shutting down).
    pub fn send_in(
        &mut self,
        p: usize,
        lease: LeaseId,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<Ticket, SubmitError> {
        let now = self.now;
        let shown = self.trace.is_some().then(|| describe_query(&query));
        let ticket = match self.pool_mut(p) {
            Some(pool) => pool.send(now, lease, query, timeout),
            None => Err(SubmitError::ShuttingDown),
        };
        let who = self.who(p);
        self.log(|| {
            let outcome = match &ticket {
                Ok(t) => format!("T{}", t.0),
                Err(e) => format!("refused ({e})"),
            };
            format!(
                "{who}send on L{} {} timeout {timeout:?}: {outcome}",
                lease.0,
                shown.unwrap_or_default()
            )
        });
        self.drain_pool(p);
        ticket
    }

    /// Give a lease of process 0 back.
    pub fn release(&mut self, lease: LeaseId) {
        self.release_in(0, lease);
    }

    /// Give a lease of process `p` back.
    pub fn release_in(&mut self, p: usize, lease: LeaseId) {
        let who = self.who(p);
        self.log(|| format!("{who}release L{}", lease.0));
        let now = self.now;
        if let Some(pool) = self.pool_mut(p) {
            pool.release(now, lease);
        }
        self.drain_pool(p);
    }

    /// Process 0's next event not taken yet.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.poll_event_in(0)
    }

    /// Process `p`'s next event not taken yet.
    pub fn poll_event_in(&mut self, p: usize) -> Option<PoolEvent> {
        self.procs.get_mut(p)?.events.pop_front()
    }

    /// Shut process 0's pool down (see [`Pool::shutdown`]); keep stepping to let the closes reach
    /// the gateway.
    pub fn shutdown(&mut self) {
        self.shutdown_in(0);
    }

    /// Shut process `p`'s pool down.
    pub fn shutdown_in(&mut self, p: usize) {
        let who = self.who(p);
        self.log(|| format!("{who}shutdown"));
        let now = self.now;
        if let Some(pool) = self.pool_mut(p) {
            pool.shutdown(now);
        }
        self.drain_pool(p);
    }

    // ----- clocks -----

    /// Report the host's clocks to every pool ([`Pool::observe_clocks`]) as a runtime does every
    /// [`PoolConfig::clock_interval`]: boot time is virtual time plus everything
    /// [`PoolWorld::sleep`] added, and so is the wall clock. The world never calls this itself.
    pub fn observe_clocks(&mut self) {
        let now = self.now;
        let since = self.elapsed() + self.slept;
        let wall = self.wall();
        self.log(|| format!("clocks boot +{since:?} wall {}", wall.0));
        for p in 0..self.procs.len() {
            if let Some(pool) = self.pool_mut(p) {
                pool.observe_clocks(now, since, wall);
                self.drain_pool(p);
            }
        }
    }

    /// The hosts slept for `slept` (every host: they share one clock): the boot-time and wall
    /// clocks jump ahead of the monotonic clock (which stops during suspend) by that much, and
    /// the pools are told at once ([`PoolWorld::observe_clocks`]). IB's servers lived through
    /// the sleep, so the gateway's historical pacing windows age by `slept`
    /// ([`Gateway::age_pacing`]); its sessions and the links are not affected: inject a fault for
    /// what the gateway did meanwhile.
    pub fn sleep(&mut self, slept: Duration) {
        self.doze(slept);
        self.observe_clocks();
    }

    /// [`PoolWorld::sleep`] without telling the pools yet: the clocks jump, and the pools hear of
    /// it at the next [`PoolWorld::observe_clocks`]. In between, other processes may act on the
    /// registry ([`PoolWorld::take_client_id`]), as they do while a laptop sleeps.
    pub fn doze(&mut self, slept: Duration) {
        self.log(|| format!("host sleeps {slept:?}"));
        self.slept += slept;
        self.gateway.age_pacing(slept);
    }

    /// The hosts' wall clocks step ahead by `by` with no time passing (an NTP step, a clock set
    /// by hand): unlike [`PoolWorld::doze`], neither boot time, monotonic time nor IB's servers
    /// move. The pools hear of it at the next [`PoolWorld::observe_clocks`].
    pub fn step_wall_clock(&mut self, by: Duration) {
        self.log(|| format!("wall clock steps ahead {by:?}"));
        self.wall_step += by;
    }

    /// Wall time now, as the hosts see it (sleeps and clock steps included).
    fn wall(&self) -> UnixMillis {
        let since = self.elapsed() + self.slept + self.wall_step;
        let wall = self
            .wall_unix_ms
            .saturating_add(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        UnixMillis(u64::try_from(wall).unwrap_or(0))
    }

    /// The pacing ledger's clock now: the [`MemoryLedger`] measures monotonic time from its
    /// first step, which the world takes at the epoch, so this is virtual time since the epoch
    /// (a host sleep does not count; neither does a wall-clock step).
    pub fn ledger_time(&self) -> PaceTime {
        PaceTime(0).plus(self.elapsed())
    }

    // ----- the pacing store -----

    /// The pacing ledger every process shares (a handle that is never an owner in the books).
    pub fn pacing_ledger(&self) -> &MemoryLedger {
        &self.ledger
    }

    /// The key of the gateway's pacing book ([`PoolConfig::pacing_key`] of the first address).
    pub fn pacing_key(&self) -> String {
        let addr = self
            .pool_config
            .gateways
            .first()
            .cloned()
            .unwrap_or_default();
        self.pool_config.pacing_key(&addr)
    }

    /// A copy of the gateway's pacing book as the store holds it now.
    pub fn pacing_book(&self) -> PaceBook {
        self.ledger.book(&self.pacing_key())
    }

    /// The pacing store becomes unreachable (`Some(reason)`) or reachable again (`None`).
    pub fn set_store_unavailable(&mut self, reason: Option<String>) {
        self.log(|| match &reason {
            Some(r) => format!("pacing store unavailable: {r}"),
            None => "pacing store available".to_owned(),
        });
        self.ledger.set_unavailable(reason);
    }

    /// The pacing store restarts and loses every book (the pools merge back what they saw).
    pub fn restart_store(&mut self) {
        self.log(|| "pacing store restarts, losing every book".to_owned());
        self.ledger.forget_all();
    }

    // ----- client-id registries -----

    /// Another process on host 0 (pid 2) leases the lowest free id of `purpose` from the
    /// host's registry — an id whose lease lapsed counts as free — and holds it until
    /// [`PoolWorld::give_back_client_id`] (its lease never lapses). The id, or `None` when the
    /// range is full.
    pub fn take_client_id(&mut self, purpose: &Purpose) -> Option<i32> {
        let now = self.wall();
        let host = self.hosts.first().cloned();
        let id = host.and_then(|host| {
            host.with(|state| {
                let grant = state
                    .allocate(&host.config, purpose, &OTHER_PROCESS, now, &ttl_only)
                    .ok()?;
                if let Some(lease) = state.leases.get_mut(&grant.id) {
                    lease.ttl_ms = u64::MAX;
                }
                Some(grant.id)
            })
        });
        self.log(|| format!("another process leases {purpose} id {id:?}"));
        id
    }

    /// The other process of [`PoolWorld::take_client_id`] gives `id` back (if it holds it).
    pub fn give_back_client_id(&mut self, id: i32) {
        self.log(|| format!("another process releases id {id}"));
        if let Some(host) = self.hosts.first() {
            host.with(|state| {
                if state
                    .leases
                    .get(&id)
                    .is_some_and(|l| l.holder == OTHER_PROCESS)
                {
                    state.leases.remove(&id);
                }
            });
        }
    }

    /// Client ids process 0 holds a registry lease on, sorted (see
    /// [`PoolWorld::held_client_ids_in`]).
    pub fn held_client_ids(&self) -> Vec<i32> {
        self.held_client_ids_in(0)
    }

    /// Client ids process `p` holds a lease on in its host's registry, sorted (lapsed leases not
    /// yet reclaimed included; killed processes' too).
    pub fn held_client_ids_in(&self, p: usize) -> Vec<i32> {
        let Some(process) = self.procs.get(p) else {
            return Vec::new();
        };
        self.hosts[process.host].with(|state| {
            state
                .leases
                .iter()
                .filter(|(_, l)| l.holder == process.holder)
                .map(|(id, _)| *id)
                .collect()
        })
    }

    /// Client ids other holders than process 0 (other processes on its host, killed ones
    /// included, and [`PoolWorld::take_client_id`]'s) hold a live lease on, sorted.
    pub fn others_client_ids(&self) -> Vec<i32> {
        self.others_client_ids_in(0)
    }

    /// Client ids other holders than process `p` hold a live lease on in `p`'s host's registry,
    /// sorted: ids `p` must not use.
    pub fn others_client_ids_in(&self, p: usize) -> Vec<i32> {
        let Some(process) = self.procs.get(p) else {
            return Vec::new();
        };
        let now = self.wall();
        self.hosts[process.host].with(|state| {
            state
                .leases
                .iter()
                .filter(|(_, l)| l.holder != process.holder && !l.is_expired(now))
                .map(|(id, _)| *id)
                .collect()
        })
    }

    /// Sockets the world tracks (open on either side), for leak checks.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Deliveries in flight, for leak checks.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    // ----- running -----

    /// Advance to the next instant anything is scheduled and process it. `Ok(false)` when nothing
    /// is scheduled at all.
    pub fn step(&mut self) -> Result<bool, PoolWorldError> {
        let Some(t) = self.next_instant() else {
            return Ok(false);
        };
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(PoolWorldError::StepLimit(self.max_steps));
        }
        self.now = self.now.max(t);
        let now = self.now;
        while let Some(what) = self.queue.pop_due(now) {
            self.deliver(what);
        }
        if self.gateway.poll_timeout().is_some_and(|g| g <= now) {
            self.gateway.handle_timeout(now);
            self.drain_gateway();
        }
        for p in 0..self.procs.len() {
            if let Some(pool) = self.pool_mut(p) {
                if pool.poll_timeout().is_some_and(|t| t <= now) {
                    pool.handle_timeout(now);
                    self.drain_pool(p);
                }
            }
        }
        Ok(true)
    }

    /// Process everything scheduled up to `until`, then move the clock to `until` (if it is
    /// later), so a caller can act at fixed virtual instants even when nothing is scheduled.
    pub fn run_until(&mut self, until: Instant) -> Result<(), PoolWorldError> {
        while self.next_instant().is_some_and(|t| t <= until) {
            self.step()?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Drive `job` to completion on process 0: one lease of purpose `Backfill`, up to
    /// `run.concurrency` chunk requests in flight, every outcome fed back to the job. `progress`
    /// is called as the job advances (at most every `run.progress_every` of virtual time, and
    /// once at the end) with the job and the virtual time elapsed. On error the job keeps every
    /// bar fetched so far.
    pub fn run_backfill(
        &mut self,
        job: &mut BackfillJob,
        run: BackfillRun,
        progress: impl FnMut(&BackfillJob, Duration),
    ) -> Result<RunReport, PoolWorldError> {
        self.run_backfill_until(
            job,
            run,
            progress,
            &std::sync::atomic::AtomicBool::new(false),
        )
    }

    /// [`PoolWorld::run_backfill`] that ends with [`PoolWorldError::Interrupted`] once `stop`
    /// is set (checked every step; e.g. by a signal handler).
    pub fn run_backfill_until(
        &mut self,
        job: &mut BackfillJob,
        run: BackfillRun,
        mut progress: impl FnMut(&BackfillJob, Duration),
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<RunReport, PoolWorldError> {
        let start = self.now;
        let steps = self.steps;
        if job.is_finished() {
            progress(job, Duration::ZERO);
            return Ok(RunReport {
                virtual_elapsed: Duration::ZERO,
                steps: 0,
                pool: self.pool_stats(),
                gateway_pacing_violations: self.gateway.pacing_violations(),
            });
        }
        let acquire = self.acquire(Purpose::Backfill);
        let mut lease = None;
        let mut open: BTreeMap<Ticket, ChunkId> = BTreeMap::new();
        let mut last_progress: Option<Instant> = None;
        loop {
            while let Some(event) = self.poll_event() {
                match event {
                    PoolEvent::Acquired {
                        acquire: a,
                        lease: l,
                        ..
                    } if a == acquire => {
                        lease = Some(l);
                    }
                    PoolEvent::AcquireFailed { acquire: a, error } if a == acquire => {
                        return Err(PoolWorldError::Acquire(error));
                    }
                    PoolEvent::Completed { ticket, result } => {
                        if let Some(chunk) = open.remove(&ticket) {
                            job.on_result(chunk, result);
                        }
                    }
                    _ => {}
                }
            }
            if let Some(l) = lease {
                while open.len() < run.concurrency.max(1) {
                    let Some((chunk, query)) = job.poll_query() else {
                        break;
                    };
                    let ticket = self.send(l, query, Some(run.request_timeout))?;
                    open.insert(ticket, chunk);
                }
            }
            if last_progress.is_none_or(|t| self.now >= t + run.progress_every) {
                last_progress = Some(self.now);
                progress(job, self.now - start);
            }
            if job.is_finished() {
                break;
            }
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(PoolWorldError::Interrupted);
            }
            if !self.step()? {
                return Err(PoolWorldError::Deadlock(self.elapsed()));
            }
        }
        if let Some(l) = lease {
            self.release(l);
        }
        progress(job, self.now - start);
        Ok(RunReport {
            virtual_elapsed: self.now - start,
            steps: self.steps - steps,
            pool: self.pool_stats(),
            gateway_pacing_violations: self.gateway.pacing_violations(),
        })
    }

    fn next_instant(&self) -> Option<Instant> {
        let queue = self.queue.next_at();
        let pools = self
            .procs
            .iter()
            .filter_map(|x| x.pool.as_ref().and_then(Pool::poll_timeout));
        queue
            .into_iter()
            .chain(self.gateway.poll_timeout())
            .chain(pools)
            .min()
            .map(|t| t.max(self.now))
    }

    fn push(&mut self, at: Instant, what: Delivery) {
        self.queue.push(at, what);
    }

    fn trip(&mut self) -> Duration {
        let jitter_ns = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        self.latency + Duration::from_nanos(self.rng.below_or_eq(jitter_ns))
    }

    /// Arrival time of the next delivery on `sock`, in order per direction.
    fn arrival(&mut self, sock: Sock, up: bool) -> Instant {
        let at = self.now + self.trip();
        let Some(link) = self.links.get_mut(&sock) else {
            return at;
        };
        let last = if up {
            &mut link.last_up
        } else {
            &mut link.last_down
        };
        *last = (*last).max(at);
        *last
    }

    fn forget_if_closed(&mut self, sock: Sock) {
        if self
            .links
            .get(&sock)
            .is_some_and(|l| !l.pool_open && l.gw.is_none())
        {
            self.links.remove(&sock);
        }
    }

    /// The pool side of `sock` closes (its pool's `Io::Close`, or its process died): a FIN
    /// follows the socket's bytes to the gateway.
    fn close_socket(&mut self, sock: Sock) {
        let name = self.sock_name(sock);
        self.log(|| format!("{name} close"));
        if let Some(trace) = &mut self.trace {
            trace.taps.remove(&sock);
        }
        let gw = self.links.get_mut(&sock).and_then(|l| {
            l.pool_open = false;
            l.gw.take()
        });
        if let Some(conn) = gw {
            let at = self.arrival(sock, true);
            self.push(at, Delivery::FinToGateway { conn });
        }
        self.forget_if_closed(sock);
    }

    /// Whether the pool side of `sock` is still open.
    fn pool_open(&self, sock: Sock) -> bool {
        self.links.get(&sock).is_some_and(|l| l.pool_open)
    }

    fn deliver(&mut self, what: Delivery) {
        let now = self.now;
        match what {
            Delivery::Syn { sock } => {
                if !self.pool_open(sock) {
                    self.links.remove(&sock);
                    return;
                }
                let name = self.sock_name(sock);
                if self.gateway.is_refusing(now) {
                    self.log(|| format!("{name} refused"));
                    let at = self.arrival(sock, false);
                    self.push(at, Delivery::Refused { sock });
                    return;
                }
                let conn = self.gateway.accept(now);
                self.log(|| format!("{name} accepted as {conn:?}"));
                if let Some(link) = self.links.get_mut(&sock) {
                    link.gw = Some(conn);
                }
                let at = self.arrival(sock, false);
                self.push(at, Delivery::SynAck { sock });
                self.drain_gateway();
            }
            Delivery::SynAck { sock } => {
                if self.pool_open(sock) {
                    let name = self.sock_name(sock);
                    self.log(|| format!("{name} connected"));
                    if let Some(pool) = self.pool_mut(sock.0) {
                        pool.handle_dialed(now, sock.1);
                    }
                    self.drain_pool(sock.0);
                }
            }
            Delivery::Refused { sock } => {
                if self.links.remove(&sock).is_some_and(|l| l.pool_open) {
                    let name = self.sock_name(sock);
                    self.log(|| format!("{name} connection refused"));
                    if let Some(pool) = self.pool_mut(sock.0) {
                        pool.handle_dial_failed(now, sock.1, "connection refused".to_owned());
                    }
                    self.drain_pool(sock.0);
                }
            }
            Delivery::ToGateway { conn, bytes } => {
                if let Some(sock) = self.socket_of(conn) {
                    self.tap(sock, true, &bytes);
                }
                self.gateway.handle_input(conn, now, &bytes);
                self.drain_gateway();
            }
            Delivery::ToPool { sock, bytes } => {
                if self.pool_open(sock) {
                    self.tap(sock, false, &bytes);
                    if let Some(pool) = self.pool_mut(sock.0) {
                        pool.handle_input(now, sock.1, &bytes);
                    }
                    self.drain_pool(sock.0);
                }
            }
            Delivery::FinToGateway { conn } => {
                self.log(|| format!("FIN→G {conn:?}"));
                self.gateway.handle_eof(conn, now);
                self.drain_gateway();
            }
            Delivery::FinToPool { sock } => {
                let open = self.pool_open(sock);
                if let Some(link) = self.links.get_mut(&sock) {
                    link.pool_open = false;
                }
                self.forget_if_closed(sock);
                if open {
                    let name = self.sock_name(sock);
                    self.log(|| format!("G FIN→{name}"));
                    if let Some(pool) = self.pool_mut(sock.0) {
                        pool.handle_eof(now, sock.1, None);
                    }
                    self.drain_pool(sock.0);
                }
            }
        }
    }

    /// Carry out process `p`'s socket commands and take its events.
    fn drain_pool(&mut self, p: usize) {
        while let Some(io) = self.pool_mut(p).and_then(Pool::poll_io) {
            match io {
                Io::Dial {
                    socket,
                    addr,
                    client_id,
                } => {
                    let sock = (p, socket);
                    let name = self.sock_name(sock);
                    self.log(|| format!("{name} dial {addr} client_id={client_id}"));
                    self.links.insert(
                        sock,
                        Link {
                            gw: None,
                            pool_open: true,
                            last_up: self.now,
                            last_down: self.now,
                        },
                    );
                    let at = self.arrival(sock, true);
                    self.push(at, Delivery::Syn { sock });
                }
                Io::Write { socket, bytes } => {
                    let sock = (p, socket);
                    if let Some(conn) = self.links.get(&sock).and_then(|l| l.gw) {
                        let at = self.arrival(sock, true);
                        self.push(at, Delivery::ToGateway { conn, bytes });
                    }
                }
                Io::Close { socket } => self.close_socket((p, socket)),
            }
        }
        while let Some(event) = self.pool_mut(p).and_then(Pool::poll_event) {
            if self.trace.is_some() {
                let line = format!("{}{}", self.who(p), self.describe_event(&event));
                self.log(|| line);
            }
            if let Some(process) = self.procs.get_mut(p) {
                process.events.push_back(event);
            }
        }
    }

    /// A pool event for the trace: instants as offsets from the epoch, answers in a few words.
    fn describe_event(&self, event: &PoolEvent) -> String {
        let mut line = String::from("event ");
        let _ = match event {
            PoolEvent::RequestDelayed { ticket, until } => write!(
                line,
                "RequestDelayed T{} until +{:?}",
                ticket.0,
                until.saturating_duration_since(self.epoch)
            ),
            PoolEvent::Completed {
                ticket,
                result: Ok(answer),
            } => write!(
                line,
                "Completed T{} Ok {}",
                ticket.0,
                describe_answer(answer)
            ),
            PoolEvent::Completed {
                ticket,
                result: Err(e),
            } => write!(line, "Completed T{} Err {e:?}", ticket.0),
            other => write!(line, "{other:?}"),
        };
        line
    }

    /// The socket whose gateway side is `conn`.
    fn socket_of(&self, conn: ConnId) -> Option<Sock> {
        self.links
            .iter()
            .find(|(_, l)| l.gw == Some(conn))
            .map(|(s, _)| *s)
    }

    fn drain_gateway(&mut self) {
        let socks: Vec<(Sock, ConnId)> = self
            .links
            .iter()
            .filter_map(|(s, l)| l.gw.map(|c| (*s, c)))
            .collect();
        for (sock, conn) in socks {
            while let Some(bytes) = self.gateway.poll_transmit(conn) {
                let at = self.arrival(sock, false);
                self.push(at, Delivery::ToPool { sock, bytes });
            }
            if self.gateway.poll_close(conn) {
                if let Some(link) = self.links.get_mut(&sock) {
                    link.gw = None;
                }
                let at = self.arrival(sock, false);
                self.push(at, Delivery::FinToPool { sock });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar;
    use ibconn_core::backfill::{plan_chunks, BackfillSpec, JobConfig};
    use ibconn_core::bar_size::BarSize;
    use ibconn_core::connection::Query;
    use ibconn_core::message::Contract;

    fn spec(bar_size: BarSize) -> BackfillSpec {
        BackfillSpec {
            contract: Contract::stock("AAPL"),
            bar_size,
            what_to_show: "TRADES".into(),
            use_rth: false,
        }
    }

    fn world(seed: u64) -> PoolWorld {
        PoolWorld::new(PoolWorldConfig::new(seed))
    }

    /// One request per chunk on a fresh world, no pacer in the way of counting: the bars the
    /// gateway has for `[from, to)`, fetched chunk by chunk, merged.
    fn direct_count(bar: BarSize, from: i64, to: i64) -> usize {
        let mut job =
            BackfillJob::new(spec(bar), from, to, Vec::new(), JobConfig::default()).unwrap();
        let mut w = world(7);
        let acquire = w.acquire(Purpose::Backfill);
        let lease = loop {
            match w.poll_event() {
                Some(PoolEvent::Acquired {
                    acquire: a, lease, ..
                }) if a == acquire => break lease,
                Some(_) => {}
                None => assert!(w.step().unwrap()),
            }
        };
        while let Some((chunk, query)) = job.poll_query() {
            let ticket = w.send(lease, query, None).unwrap();
            let result = loop {
                match w.poll_event() {
                    Some(PoolEvent::Completed { ticket: t, result }) if t == ticket => {
                        break result
                    }
                    Some(_) => {}
                    None => assert!(w.step().unwrap()),
                }
            };
            job.on_result(chunk, result);
            // Keep this reference run clear of IB's 10-minute window.
            let until = w.now() + Duration::from_secs(11);
            while w.now() < until && w.step().unwrap() {}
        }
        assert!(job.is_complete(), "{:?}", job.failures());
        job.progress().bars
    }

    #[test]
    fn a_pacing_bound_backfill_completes_in_virtual_time_without_violations() {
        // Five trading days of 5-second bars, all hours: 24 × 5 + 24 × 2 = 168 one-hour requests,
        // at IB's 60 per 10 minutes more than 20 virtual minutes.
        let from = calendar::utc(2025, 12, 1, 0, 0, 0);
        let to = calendar::utc(2025, 12, 8, 0, 0, 0);
        let chunks = plan_chunks(BarSize::Sec5, from, to).unwrap();
        assert_eq!(chunks.len(), 168);
        let mut job = BackfillJob::new(
            spec(BarSize::Sec5),
            from,
            to,
            Vec::new(),
            JobConfig::default(),
        )
        .unwrap();
        let mut w = world(7);
        let mut calls = 0;
        let report = w
            .run_backfill(&mut job, BackfillRun::default(), |_, _| calls += 1)
            .unwrap();
        assert!(job.is_complete(), "{:?}", job.failures());
        assert!(
            report.virtual_elapsed > Duration::from_secs(20 * 60),
            "{:?}",
            report.virtual_elapsed
        );
        assert_eq!(report.gateway_pacing_violations, 0);
        assert_eq!(report.pool.pacing_violations, 0);
        assert!(report.pool.pacing_waits > 0);
        assert!(calls > 1);
        let p = job.progress();
        assert_eq!(p.requests, 168);
        assert!(p.chunks_empty > 0, "the weekend has no data");
        assert_eq!(p.bars, direct_count(BarSize::Sec5, from, to));
        let bars: Vec<i64> = job.bars().iter().map(|(t, _)| t).collect();
        assert!(bars.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_backfill_matches_a_direct_fetch_and_a_resume_adds_no_duplicates() {
        let from = calendar::utc(2025, 12, 4, 12, 0, 0);
        let to = calendar::utc(2025, 12, 6, 0, 0, 0);
        let expected = direct_count(BarSize::Sec30, from, to);
        assert!(expected > 0);

        let mut job = BackfillJob::new(
            spec(BarSize::Sec30),
            from,
            to,
            Vec::new(),
            JobConfig::default(),
        )
        .unwrap();
        let report = world(7)
            .run_backfill(&mut job, BackfillRun::default(), |_, _| {})
            .unwrap();
        assert_eq!(report.gateway_pacing_violations, 0);
        assert_eq!(job.progress().bars, expected);

        // Interrupted after two thirds: resume from those bars (the chunks holding the oldest
        // and the newest held bar are asked again, the ones between are skipped).
        let kept = expected * 2 / 3;
        let held: Vec<_> = job
            .bars()
            .iter()
            .take(kept)
            .map(|(_, b)| b.clone())
            .collect();
        let mut resumed =
            BackfillJob::new(spec(BarSize::Sec30), from, to, held, JobConfig::default()).unwrap();
        let skipped = resumed.progress().chunks_resumed;
        assert!(skipped > 0);
        world(7)
            .run_backfill(&mut resumed, BackfillRun::default(), |_, _| {})
            .unwrap();
        let p = resumed.progress();
        assert_eq!(p.bars, expected);
        assert_eq!(p.bars_added, expected - kept);
        assert!(p.requests < job.progress().requests);
        let times: Vec<i64> = resumed.bars().iter().map(|(t, _)| t).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_backfill_survives_a_gateway_restart_without_losing_or_duplicating_bars() {
        let from = calendar::utc(2025, 12, 4, 12, 0, 0);
        let to = calendar::utc(2025, 12, 5, 12, 0, 0);
        let expected = direct_count(BarSize::Sec5, from, to);
        let mut job = BackfillJob::new(
            spec(BarSize::Sec5),
            from,
            to,
            Vec::new(),
            JobConfig::default(),
        )
        .unwrap();
        let mut w = world(11);
        let at = w.now() + Duration::from_secs(4);
        w.gateway_mut().schedule_fault(
            at,
            crate::fault::Fault::Restart {
                down_for: Duration::from_secs(5),
            },
        );
        let report = w
            .run_backfill(&mut job, BackfillRun::default(), |_, _| {})
            .unwrap();
        assert!(job.is_complete(), "{:?}", job.failures());
        assert_eq!(job.progress().bars, expected);
        assert_eq!(job.progress().duplicates, 0);
        assert!(
            report.virtual_elapsed > Duration::from_secs(9),
            "{:?}",
            report.virtual_elapsed
        );
        assert!(report.pool.disconnects > 0, "{:?}", report.pool);
        assert_eq!(report.gateway_pacing_violations, 0);
    }

    #[test]
    fn refused_dials_are_retried_until_the_port_opens() {
        let mut w = world(3);
        let now = w.now();
        w.gateway_mut().inject(
            now,
            crate::fault::Fault::Restart {
                down_for: Duration::from_secs(3),
            },
        );
        let lease = lease_in(&mut w, 0, Purpose::Backfill);
        assert!(w.elapsed() >= Duration::from_secs(3));
        let ticket = w.send(lease, Query::CurrentTime, None).unwrap();
        loop {
            match w.poll_event() {
                Some(PoolEvent::Completed { ticket: t, result }) if t == ticket => {
                    assert!(result.is_ok());
                    break;
                }
                Some(_) => {}
                None => assert!(w.step().unwrap()),
            }
        }
        assert!(w.pool_stats().failed > 0);
    }

    /// Process `p`'s lease of `purpose`, stepping until granted.
    fn lease_in(w: &mut PoolWorld, p: usize, purpose: Purpose) -> LeaseId {
        let acquire = w.acquire_in(p, purpose).unwrap();
        loop {
            match w.poll_event_in(p) {
                Some(PoolEvent::Acquired {
                    acquire: a, lease, ..
                }) if a == acquire => break lease,
                Some(PoolEvent::AcquireFailed { error, .. }) => panic!("{error}"),
                Some(_) => {}
                None => assert!(w.step().unwrap()),
            }
        }
    }

    fn small(minute: u32) -> Query {
        Query::HistoricalData(ibconn_core::message::HistoricalDataRequest {
            contract: Contract::stock("AAPL"),
            end_date_time: format!("20251204-15:{minute:02}:00"),
            bar_size: "5 secs".into(),
            duration: "60 S".into(),
            what_to_show: "TRADES".into(),
            format_date: 2,
            ..Default::default()
        })
    }

    #[test]
    fn processes_share_the_gateway_with_distinct_ids_and_one_pacing_book() {
        let mut w = PoolWorld::new(PoolWorldConfig::new(3).with_processes(3, 2));
        w.enable_trace();
        assert_eq!((w.processes(), w.host_of(2)), (3, Some(0)));
        let leases: Vec<LeaseId> = (0..3)
            .map(|p| lease_in(&mut w, p, Purpose::Backfill))
            .collect();
        // Processes 0 and 2 share host 0's registry; process 1 (host 1) met them at the gateway.
        let (a, b, c) = (
            w.held_client_ids_in(0),
            w.held_client_ids_in(1),
            w.held_client_ids_in(2),
        );
        assert_eq!(a.len() + c.len(), 2);
        assert!(a.iter().all(|id| !c.contains(id)), "{a:?} {c:?}");
        assert_eq!(b.len(), 1);
        assert_eq!(w.gateway().client_ids().len(), 3);
        // The identical request from two processes: the second waits IB's 15 s in the shared book.
        let t0 = w.send_in(0, leases[0], small(1), None).unwrap();
        let t1 = w.send_in(2, leases[2], small(1), None).unwrap();
        let start = w.now();
        let mut ended = Vec::new();
        while ended.len() < 2 {
            for p in [0, 2] {
                while let Some(e) = w.poll_event_in(p) {
                    if let PoolEvent::Completed { ticket, result } = e {
                        assert!(ticket == t0 || ticket == t1);
                        ended.push((p, result.is_ok(), w.now() - start));
                    }
                }
            }
            assert!(w.step().unwrap());
        }
        assert_eq!(w.gateway().pacing_violations(), 0);
        assert!(ended[1].2 >= Duration::from_secs(15), "{ended:?}");
        let owners: Vec<String> = w
            .pacing_book()
            .owners(&PacingRules::default(), w.ledger_time())
            .into_iter()
            .map(|o| o.owner)
            .collect();
        // Owners are the processes that paced something (process 1 sent nothing).
        assert_eq!(owners, ["host0/pid1", "host0/pid102"]);
        assert!(
            w.trace().iter().any(|l| l.contains("P2.S")),
            "lines name the process"
        );
    }

    #[test]
    fn a_killed_process_closes_its_sockets_and_its_claims_lapse() {
        let mut w = PoolWorld::new(PoolWorldConfig::new(4).with_processes(2, 1));
        let l0 = lease_in(&mut w, 0, Purpose::Backfill);
        let l1 = lease_in(&mut w, 1, Purpose::Backfill);
        // Process 1 reserves a slot 15 s ahead (an identical request), then dies.
        let _ = w.send_in(1, l1, small(2), None).unwrap();
        let _ = w.send_in(1, l1, small(2), None).unwrap();
        let until = w.now() + Duration::from_secs(2);
        w.run_until(until).unwrap();
        let owner = w.owner_of(1).unwrap().to_owned();
        let view = |w: &PoolWorld| {
            let mut book = w.pacing_book();
            book.prune(w.ledger_time());
            book.owners(&PacingRules::default(), w.ledger_time())
                .into_iter()
                .find(|o| o.owner == owner)
                .map_or((0, 0), |o| (o.open_requests, o.scheduled_ahead))
        };
        // The first was answered; the second waits for its slot, open.
        assert_eq!(view(&w), (1, 1));
        let dead_ids = w.held_client_ids_in(1);
        w.kill(1);
        assert!(!w.is_alive(1) && w.pool_in(1).is_none());
        assert!(w.send_in(1, l1, small(3), None).is_err());
        let until = w.now() + Duration::from_secs(1);
        w.run_until(until).unwrap();
        assert_eq!(
            w.gateway().client_ids().len(),
            1,
            "the kernel closed its socket"
        );
        // Its lease and claims stay until their TTLs run out.
        assert_eq!(w.others_client_ids_in(0), dead_ids);
        assert_eq!(view(&w), (1, 1));
        let until = w.now() + Duration::from_secs(61);
        w.run_until(until).unwrap();
        w.observe_clocks();
        assert!(w.others_client_ids_in(0).is_empty());
        assert_eq!(view(&w), (0, 0));
        // The survivor carries on; a new process starts with a name of its own.
        let t = w.send_in(0, l0, small(4), None).unwrap();
        let p = w.spawn(0);
        assert_eq!((p, w.owner_of(p)), (2, Some("host0/pid102")));
        loop {
            match w.poll_event_in(0) {
                Some(PoolEvent::Completed { ticket, result }) if ticket == t => {
                    assert!(result.is_ok());
                    break;
                }
                Some(_) => {}
                None => assert!(w.step().unwrap()),
            }
        }
        assert_eq!(w.gateway().pacing_violations(), 0);
    }

    #[test]
    fn the_store_fails_and_restarts_in_the_trace() {
        let mut w = world(1);
        w.enable_trace();
        w.set_store_unavailable(Some("down".to_owned()));
        w.set_store_unavailable(None);
        w.restart_store();
        let lines = w.trace().join("\n");
        assert!(lines.contains("pacing store unavailable: down"), "{lines}");
        assert!(lines.contains("pacing store restarts"), "{lines}");
        assert!(!lines.contains("P0"), "one process: lines name none");
    }
}
