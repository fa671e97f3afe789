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

mod client_ids;
mod clocks;
mod links;
mod processes;
mod registry;
mod run;
mod trace;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ibconn_core::client_id::{Holder, RegistryConfig};
use ibconn_core::pacer::{MemoryLedger, PaceBook, PaceLedger, PacingRules};
use ibconn_core::pool::{
    AcquireError, Pool, PoolConfig, PoolEvent, PoolStats, SocketId, SubmitError,
};

use crate::gateway::{ConnId, Gateway, GatewayConfig};
use crate::rng::SplitMix64;
use crate::virtual_net::{Lanes, VirtualNet};

use self::registry::{HostRegistry, ProcessRegistry};
use self::trace::Trace;

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
    /// In-order arrival per direction.
    lanes: Lanes,
}

/// A book no pool uses, stepped once at the epoch to start the ledger's clock there.
const EPOCH_BOOK: &str = "(sim epoch)";

/// The registry holder process 0 leases ids as (other processes: pid `100 + index`).
const POOL_PROCESS: Holder = Holder::from_pid(1);

/// The registry holder of [`PoolWorld::take_client_id`]: another process on host 0.
const OTHER_PROCESS: Holder = Holder::from_pid(2);

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
    /// Virtual time, the links' timing and the deliveries in flight.
    net: VirtualNet<Delivery>,
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
    trace: Option<Box<Trace>>,
}

impl PoolWorld {
    /// A world whose epoch (virtual `+0`) is captured here once, with its processes started.
    pub fn new(config: PoolWorldConfig) -> Self {
        let net = VirtualNet::start(
            SplitMix64::new(config.seed).child("pool-links"),
            config.latency,
            config.jitter,
            config.max_steps,
        );
        let epoch = net.epoch();
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
            net,
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
            self.net.now(),
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

    /// Virtual time since the epoch.
    pub fn elapsed(&self) -> Duration {
        self.net.elapsed()
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.net.steps()
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
        let now = self.net.now();
        self.gateway.inject(now, fault);
        self.drain_gateway();
    }
}

#[cfg(test)]
mod tests;
