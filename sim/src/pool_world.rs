//! The core [`Pool`] wired to one simulated [`Gateway`] under virtual time — [`World`](crate::World)
//! one level up: the pool dials, writes and closes sockets ([`Io`]), and this harness carries them
//! over simulated links to the sans-IO gateway.
//!
//! Nothing here sleeps or reads a clock after [`PoolWorld::new`] captures its epoch: each step
//! jumps to the earliest of the next delivery, [`Gateway::poll_timeout`] and
//! [`Pool::poll_timeout`], so a backfill that IB's pacing stretches over an hour runs in
//! wall-clock milliseconds to seconds.
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
//! fault at once; [`PoolWorld::observe_clocks`] and [`PoolWorld::sleep`] feed the pool's sleep
//! detection (boot time ahead of monotonic time); [`PoolWorld::shutdown`] shuts the pool down;
//! [`PoolWorld::held_client_ids`], [`PoolWorld::links`] and [`PoolWorld::in_flight`] expose what
//! leak checks count (the registry is the pool's own [`MemoryRegistry`], shared with the world).
//!
//! # Trace
//!
//! After [`PoolWorld::enable_trace`], every caller command (acquire, send, release, clocks,
//! sleeps, faults), every socket command of the pool, every frame delivered (decoded, both ways)
//! and every pool event is one line of [`PoolWorld::trace`], e.g. `+12.345s S7→G StartApi
//! client_id=2000`; times are relative to the epoch, never absolute instants.
//! [`PoolWorld::trace_hash`] digests the lines and every byte delivered, so two runs from one seed
//! can be compared. Tracing is off by default (it formats every frame).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ibconn_core::backfill::{BackfillJob, ChunkId};
use ibconn_core::client_id::{ttl_only, Grant, Holder, Purpose, RegistryConfig, UnixMillis};
use ibconn_core::connection::{Answer, Query};
use ibconn_core::pool::{
    AcquireError, IdRegistry, IdRegistryError, Io, LeaseId, MemoryRegistry, Pool, PoolConfig,
    PoolEvent, PoolStats, SocketId, SubmitError, Ticket,
};

use ibconn_core::pacer::PacingRules;

use crate::gateway::{ConnId, Gateway, GatewayConfig};
use crate::rng::SplitMix64;
use crate::rules::HistoricalRules;
use crate::schedule::Schedule;
use crate::tap::Tap;

/// What shapes a [`PoolWorld`].
#[derive(Debug, Clone)]
pub struct PoolWorldConfig {
    /// The one seed: gateway randomness and link jitter.
    pub seed: u64,
    /// The gateway.
    pub gateway: GatewayConfig,
    /// The pool (its gateway addresses are labels only: every dial reaches the one gateway).
    pub pool: PoolConfig,
    /// Wall time at the epoch, Unix milliseconds, for both the gateway and the pool.
    pub wall_unix_ms: i64,
    /// One-way link latency.
    pub latency: Duration,
    /// Extra one-way delay, uniform in `0..=jitter`, drawn from the seed.
    pub jitter: Duration,
    /// Bound on steps over the world's life.
    pub max_steps: u64,
}

impl PoolWorldConfig {
    /// Defaults with `seed`: the default gateway with IB's documented pacing scope (small bars
    /// only, [`HistoricalRules::small_bars_only`]), the default pool with IB's pacing rules plus
    /// a 50 ms margin (one-way jitter reorders arrivals at the gateway: without a margin a request
    /// sent exactly one window after another can arrive a hair inside it), wall time = the
    /// gateway's `start_unix_ms`, 1 ms latency, 1 ms jitter, 10 M steps.
    pub fn new(seed: u64) -> Self {
        let gateway = GatewayConfig {
            historical: HistoricalRules::small_bars_only(),
            ..GatewayConfig::default()
        };
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
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            max_steps: 10_000_000,
        }
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

#[derive(Debug)]
enum Delivery {
    Syn { socket: SocketId },
    SynAck { socket: SocketId },
    Refused { socket: SocketId },
    ToGateway { conn: ConnId, bytes: Bytes },
    ToPool { socket: SocketId, bytes: Bytes },
    FinToGateway { conn: ConnId },
    FinToPool { socket: SocketId },
}

/// One socket between the pool and the gateway.
#[derive(Debug)]
struct Link {
    /// The gateway side, while the gateway has it open.
    gw: Option<ConnId>,
    /// The pool still owns the socket (no `Io::Close`, no EOF delivered).
    pool_open: bool,
    last_up: Instant,
    last_down: Instant,
}

/// The registry holder the pool leases ids as.
const POOL_PROCESS: Holder = Holder::from_pid(1);

/// The registry holder of [`PoolWorld::take_client_id`]: another process on the host.
const OTHER_PROCESS: Holder = Holder::from_pid(2);

/// The pool's [`MemoryRegistry`], shared with the world so tests can see which client ids are
/// leased ([`PoolWorld::held_client_ids`]); every call goes straight to the inner registry.
#[derive(Debug, Clone)]
struct SharedRegistry(Arc<Mutex<MemoryRegistry>>);

impl SharedRegistry {
    fn with<T>(&self, f: impl FnOnce(&mut MemoryRegistry) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl IdRegistry for SharedRegistry {
    fn allocate(&mut self, purpose: &Purpose, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        self.with(|r| r.allocate(purpose, now))
    }

    fn on_client_id_in_use(
        &mut self,
        grant: &Grant,
        conflicts_so_far: u32,
        now: UnixMillis,
    ) -> Result<Grant, IdRegistryError> {
        self.with(|r| r.on_client_id_in_use(grant, conflicts_so_far, now))
    }

    fn heartbeat(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        self.with(|r| r.heartbeat(grant, now))
    }

    fn reacquire(&mut self, grant: &Grant, now: UnixMillis) -> Result<Grant, IdRegistryError> {
        self.with(|r| r.reacquire(grant, now))
    }

    fn release(&mut self, grant: &Grant, now: UnixMillis) -> Result<(), IdRegistryError> {
        self.with(|r| r.release(grant, now))
    }
}

/// The simulated pool-and-gateway world. See the [module docs](self).
#[derive(Debug)]
pub struct PoolWorld {
    epoch: Instant,
    now: Instant,
    latency: Duration,
    jitter: Duration,
    max_steps: u64,
    steps: u64,
    rng: SplitMix64,
    pool: Pool,
    registry: SharedRegistry,
    wall_unix_ms: i64,
    slept: Duration,
    gateway: Gateway,
    links: BTreeMap<SocketId, Link>,
    queue: Schedule<Delivery>,
    events: VecDeque<PoolEvent>,
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
    taps: BTreeMap<SocketId, Taps>,
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
    /// A world whose epoch (virtual `+0`) is captured here once.
    #[allow(clippy::disallowed_methods)] // the one origin instant; everything after is virtual
    pub fn new(config: PoolWorldConfig) -> Self {
        let epoch = Instant::now();
        let mut gateway = Gateway::new(config.gateway, config.seed);
        gateway.set_clock(epoch, config.wall_unix_ms);
        let registry = SharedRegistry(Arc::new(Mutex::new(MemoryRegistry::new(
            RegistryConfig::default(),
            POOL_PROCESS,
        ))));
        let wall = UnixMillis(u64::try_from(config.wall_unix_ms).unwrap_or(0));
        let pool = Pool::new(config.pool, Box::new(registry.clone()), epoch, wall);
        Self {
            epoch,
            now: epoch,
            latency: config.latency,
            jitter: config.jitter,
            max_steps: config.max_steps,
            steps: 0,
            rng: SplitMix64::new(config.seed).child("pool-links"),
            pool,
            registry,
            wall_unix_ms: config.wall_unix_ms,
            slept: Duration::ZERO,
            gateway,
            links: BTreeMap::new(),
            queue: Schedule::new(),
            events: VecDeque::new(),
            trace: None,
        }
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

    /// Trace the frames `bytes` completes on `socket` (`up`: pool → gateway).
    fn tap(&mut self, socket: SocketId, up: bool, bytes: &[u8]) {
        let Some(trace) = &mut self.trace else {
            return;
        };
        trace.hash = fnv(trace.hash, bytes);
        let taps = trace.taps.entry(socket).or_insert_with(|| Taps {
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
                    format!("S{}→G {text}", socket.0)
                } else {
                    format!("G→S{} {text}", socket.0)
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

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool's counters now.
    pub fn pool_stats(&mut self) -> PoolStats {
        let now = self.now;
        self.pool.stats(now)
    }

    /// Ask the pool for a lease (the outcome arrives as an event; see [`PoolWorld::poll_event`]).
    pub fn acquire(&mut self, purpose: Purpose) -> ibconn_core::pool::AcquireId {
        let now = self.now;
        let shown = purpose.to_string();
        let id = self.pool.acquire(now, purpose, None);
        self.log(|| format!("acquire {} {shown}", id.0));
        self.drain_pool();
        id
    }

    /// Submit a query on a lease.
    pub fn send(
        &mut self,
        lease: LeaseId,
        query: Query,
        timeout: Option<Duration>,
    ) -> Result<Ticket, SubmitError> {
        let now = self.now;
        let shown = self.trace.is_some().then(|| describe_query(&query));
        let ticket = self.pool.send(now, lease, query, timeout);
        self.log(|| {
            let outcome = match &ticket {
                Ok(t) => format!("T{}", t.0),
                Err(e) => format!("refused ({e})"),
            };
            format!(
                "send on L{} {} timeout {timeout:?}: {outcome}",
                lease.0,
                shown.unwrap_or_default()
            )
        });
        self.drain_pool();
        ticket
    }

    /// Give a lease back.
    pub fn release(&mut self, lease: LeaseId) {
        self.log(|| format!("release L{}", lease.0));
        let now = self.now;
        self.pool.release(now, lease);
        self.drain_pool();
    }

    /// The next pool event not taken yet.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// Shut the pool down (see [`Pool::shutdown`]); keep stepping to let the closes reach the
    /// gateway.
    pub fn shutdown(&mut self) {
        self.log(|| "shutdown".to_owned());
        let now = self.now;
        self.pool.shutdown(now);
        self.drain_pool();
    }

    /// Report the host's clocks to the pool ([`Pool::observe_clocks`]) as a runtime does every
    /// [`PoolConfig::clock_interval`]: boot time is virtual time plus everything
    /// [`PoolWorld::sleep`] added, and so is the wall clock. The world never calls this itself.
    pub fn observe_clocks(&mut self) {
        let now = self.now;
        let since = self.elapsed() + self.slept;
        let wall = self.wall();
        self.log(|| format!("clocks boot +{since:?} wall {}", wall.0));
        self.pool.observe_clocks(now, since, wall);
        self.drain_pool();
    }

    /// The host slept for `slept`: the boot-time and wall clocks jump ahead of the monotonic
    /// clock (which stops during suspend) by that much, and the pool is told at once
    /// ([`PoolWorld::observe_clocks`]). The gateway and the links are not affected: inject a
    /// fault for what the gateway did meanwhile.
    pub fn sleep(&mut self, slept: Duration) {
        self.doze(slept);
        self.observe_clocks();
    }

    /// [`PoolWorld::sleep`] without telling the pool yet: the clocks jump, and the pool hears of
    /// it at the next [`PoolWorld::observe_clocks`]. In between, other processes on the host may
    /// act on the registry ([`PoolWorld::take_client_id`]), as they do while a laptop sleeps.
    pub fn doze(&mut self, slept: Duration) {
        self.log(|| format!("host sleeps {slept:?}"));
        self.slept += slept;
    }

    /// Wall time now, as the host sees it (sleeps included).
    fn wall(&self) -> UnixMillis {
        let since = self.elapsed() + self.slept;
        let wall = self
            .wall_unix_ms
            .saturating_add(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        UnixMillis(u64::try_from(wall).unwrap_or(0))
    }

    /// Another process on the host (pid 2) leases the lowest free id of `purpose` from the
    /// pool's registry — an id whose lease lapsed counts as free — and holds it until
    /// [`PoolWorld::give_back_client_id`] (its lease never lapses). The id, or `None` when the
    /// range is full.
    pub fn take_client_id(&mut self, purpose: &Purpose) -> Option<i32> {
        let now = self.wall();
        let id = self.registry.with(|r| {
            let config = r.config().clone();
            let state = r.state_mut();
            let grant = state
                .allocate(&config, purpose, &OTHER_PROCESS, now, &ttl_only)
                .ok()?;
            if let Some(lease) = state.leases.get_mut(&grant.id) {
                lease.ttl_ms = u64::MAX;
            }
            Some(grant.id)
        });
        self.log(|| format!("another process leases {purpose} id {id:?}"));
        id
    }

    /// The other process of [`PoolWorld::take_client_id`] gives `id` back (if it holds it).
    pub fn give_back_client_id(&mut self, id: i32) {
        self.log(|| format!("another process releases id {id}"));
        self.registry.with(|r| {
            let state = r.state_mut();
            if state
                .leases
                .get(&id)
                .is_some_and(|l| l.holder == OTHER_PROCESS)
            {
                state.leases.remove(&id);
            }
        });
    }

    /// Client ids the pool holds a registry lease on, sorted (lapsed leases not yet reclaimed
    /// included; other processes' leases excluded).
    pub fn held_client_ids(&self) -> Vec<i32> {
        self.registry.with(|r| {
            r.state()
                .leases
                .iter()
                .filter(|(_, l)| l.holder == POOL_PROCESS)
                .map(|(id, _)| *id)
                .collect()
        })
    }

    /// Client ids other processes hold a live registry lease on ([`PoolWorld::take_client_id`]),
    /// sorted.
    pub fn others_client_ids(&self) -> Vec<i32> {
        let now = self.wall();
        self.registry.with(|r| {
            r.state()
                .leases
                .iter()
                .filter(|(_, l)| l.holder != POOL_PROCESS && !l.is_expired(now))
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
        if self.pool.poll_timeout().is_some_and(|p| p <= now) {
            self.pool.handle_timeout(now);
            self.drain_pool();
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

    /// Drive `job` to completion: one lease of purpose `Backfill`, up to `run.concurrency` chunk
    /// requests in flight, every outcome fed back to the job. `progress` is called as the job
    /// advances (at most every `run.progress_every` of virtual time, and once at the end) with the
    /// job and the virtual time elapsed. On error the job keeps every bar fetched so far.
    pub fn run_backfill(
        &mut self,
        job: &mut BackfillJob,
        run: BackfillRun,
        mut progress: impl FnMut(&BackfillJob, Duration),
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
        queue
            .into_iter()
            .chain(self.gateway.poll_timeout())
            .chain(self.pool.poll_timeout())
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

    /// Arrival time of the next delivery on `socket`, in order per direction.
    fn arrival(&mut self, socket: SocketId, up: bool) -> Instant {
        let at = self.now + self.trip();
        let Some(link) = self.links.get_mut(&socket) else {
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

    fn forget_if_closed(&mut self, socket: SocketId) {
        if self
            .links
            .get(&socket)
            .is_some_and(|l| !l.pool_open && l.gw.is_none())
        {
            self.links.remove(&socket);
        }
    }

    fn deliver(&mut self, what: Delivery) {
        let now = self.now;
        match what {
            Delivery::Syn { socket } => {
                if !self.links.get(&socket).is_some_and(|l| l.pool_open) {
                    self.links.remove(&socket);
                    return;
                }
                if self.gateway.is_refusing(now) {
                    self.log(|| format!("S{} refused", socket.0));
                    let at = self.arrival(socket, false);
                    self.push(at, Delivery::Refused { socket });
                    return;
                }
                let conn = self.gateway.accept(now);
                self.log(|| format!("S{} accepted as {conn:?}", socket.0));
                if let Some(link) = self.links.get_mut(&socket) {
                    link.gw = Some(conn);
                }
                let at = self.arrival(socket, false);
                self.push(at, Delivery::SynAck { socket });
                self.drain_gateway();
            }
            Delivery::SynAck { socket } => {
                if self.links.get(&socket).is_some_and(|l| l.pool_open) {
                    self.log(|| format!("S{} connected", socket.0));
                    self.pool.handle_dialed(now, socket);
                    self.drain_pool();
                }
            }
            Delivery::Refused { socket } => {
                if self.links.remove(&socket).is_some_and(|l| l.pool_open) {
                    self.log(|| format!("S{} connection refused", socket.0));
                    self.pool
                        .handle_dial_failed(now, socket, "connection refused".to_owned());
                    self.drain_pool();
                }
            }
            Delivery::ToGateway { conn, bytes } => {
                if let Some(socket) = self.socket_of(conn) {
                    self.tap(socket, true, &bytes);
                }
                self.gateway.handle_input(conn, now, &bytes);
                self.drain_gateway();
            }
            Delivery::ToPool { socket, bytes } => {
                if self.links.get(&socket).is_some_and(|l| l.pool_open) {
                    self.tap(socket, false, &bytes);
                    self.pool.handle_input(now, socket, &bytes);
                    self.drain_pool();
                }
            }
            Delivery::FinToGateway { conn } => {
                self.log(|| format!("FIN→G {conn:?}"));
                self.gateway.handle_eof(conn, now);
                self.drain_gateway();
            }
            Delivery::FinToPool { socket } => {
                let open = self.links.get(&socket).is_some_and(|l| l.pool_open);
                if let Some(link) = self.links.get_mut(&socket) {
                    link.pool_open = false;
                }
                self.forget_if_closed(socket);
                if open {
                    self.log(|| format!("G FIN→S{}", socket.0));
                    self.pool.handle_eof(now, socket, None);
                    self.drain_pool();
                }
            }
        }
    }

    fn drain_pool(&mut self) {
        while let Some(io) = self.pool.poll_io() {
            match io {
                Io::Dial {
                    socket,
                    addr,
                    client_id,
                } => {
                    self.log(|| format!("S{} dial {addr} client_id={client_id}", socket.0));
                    self.links.insert(
                        socket,
                        Link {
                            gw: None,
                            pool_open: true,
                            last_up: self.now,
                            last_down: self.now,
                        },
                    );
                    let at = self.arrival(socket, true);
                    self.push(at, Delivery::Syn { socket });
                }
                Io::Write { socket, bytes } => {
                    if let Some(conn) = self.links.get(&socket).and_then(|l| l.gw) {
                        let at = self.arrival(socket, true);
                        self.push(at, Delivery::ToGateway { conn, bytes });
                    }
                }
                Io::Close { socket } => {
                    self.log(|| format!("S{} close", socket.0));
                    if let Some(trace) = &mut self.trace {
                        trace.taps.remove(&socket);
                    }
                    let gw = self.links.get_mut(&socket).and_then(|l| {
                        l.pool_open = false;
                        l.gw.take()
                    });
                    if let Some(conn) = gw {
                        let at = self.arrival(socket, true);
                        self.push(at, Delivery::FinToGateway { conn });
                    }
                    self.forget_if_closed(socket);
                }
            }
        }
        while let Some(event) = self.pool.poll_event() {
            if self.trace.is_some() {
                let line = self.describe_event(&event);
                self.log(|| line);
            }
            self.events.push_back(event);
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

    /// The pool's socket whose gateway side is `conn`.
    fn socket_of(&self, conn: ConnId) -> Option<SocketId> {
        self.links
            .iter()
            .find(|(_, l)| l.gw == Some(conn))
            .map(|(s, _)| *s)
    }

    fn drain_gateway(&mut self) {
        let sockets: Vec<(SocketId, ConnId)> = self
            .links
            .iter()
            .filter_map(|(s, l)| l.gw.map(|c| (*s, c)))
            .collect();
        for (socket, conn) in sockets {
            while let Some(bytes) = self.gateway.poll_transmit(conn) {
                let at = self.arrival(socket, false);
                self.push(at, Delivery::ToPool { socket, bytes });
            }
            if self.gateway.poll_close(conn) {
                if let Some(link) = self.links.get_mut(&socket) {
                    link.gw = None;
                }
                let at = self.arrival(socket, false);
                self.push(at, Delivery::FinToPool { socket });
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

        // Interrupted after a third: resume from those bars.
        let held: Vec<_> = job
            .bars()
            .iter()
            .take(expected / 3)
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
        assert_eq!(p.bars_added, expected - expected / 3);
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
        let acquire = w.acquire(Purpose::Backfill);
        let lease = loop {
            match w.poll_event() {
                Some(PoolEvent::Acquired {
                    acquire: a, lease, ..
                }) if a == acquire => break lease,
                Some(PoolEvent::AcquireFailed { error, .. }) => panic!("{error}"),
                Some(_) => {}
                None => assert!(w.step().unwrap()),
            }
        };
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
}
