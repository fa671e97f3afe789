//! Driving a fetch's [`Unit`]s (one per symbol) to completion through one pool, and so one
//! pacer: on the embedded simulator in virtual time ([`PoolWorld`]) or on a real gateway in wall
//! time ([`ibconn_tokio::Pool`]).
//!
//! Requests are taken from the units round-robin ([`RoundRobin`]): one chunk of each symbol in
//! turn, the order the pacer bench (`core/benches/pacer.rs`) shows reaching IB's minimum. IB's
//! per-contract burst rule (6 requests for one contract and tick type within 2 s) then spaces
//! each symbol's requests by the others' instead of holding the run back; only the 60-per-10-
//! minutes rule, shared by every symbol, bounds a long run. With one unit this is the plain
//! one-symbol fetch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ibconn_core::backfill::{ChunkId, HeldCounts};
use ibconn_core::client_id::Purpose;
use ibconn_core::connection::Query;
use ibconn_core::pool::{CallError, PoolEvent, PoolNotice, PoolStats, Ticket};
use ibconn_sim::{PoolWorld, PoolWorldError};

use crate::args::FetchArgs;
use crate::config::{secs, Settings};
use crate::coordination;
use crate::fetch::{concurrency, embedded_config, Progress, Unit};
use crate::probe;
use crate::signals::Stop;
use crate::watch::GatewayWatch;

/// What a run left behind besides the units' own state.
pub(crate) struct Ran {
    /// The pool's counters at the end.
    pub(crate) pool: Option<PoolStats>,
    /// Virtual time the run took (embedded simulator only).
    pub(crate) virtual_elapsed: Option<Duration>,
    /// Pacing violations the embedded simulator counted.
    pub(crate) gateway_violations: Option<u64>,
    /// A runtime failure that stopped the run early.
    pub(crate) error: Option<String>,
    /// Requests that waited for their pacing slot, by the rule that held each (as the pool
    /// reported them: on a gateway, notices a full queue dropped are not counted).
    pub(crate) held_by: HeldCounts,
}

impl Ran {
    /// A run that failed before anything happened.
    fn failed(error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::nothing()
        }
    }

    /// A run that had nothing to do.
    fn nothing() -> Self {
        Self {
            pool: None,
            virtual_elapsed: None,
            gateway_violations: None,
            error: None,
            held_by: HeldCounts::default(),
        }
    }
}

/// Which unit is asked for the next request: each in turn, skipping those with nothing to send.
#[derive(Debug, Default)]
struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// The next request of the next unit in turn that has one: `(unit, chunk, query)`.
    fn poll(&mut self, units: &mut [Unit]) -> Option<(usize, ChunkId, Query)> {
        self.next_of(units.len(), |i| {
            units.get_mut(i).and_then(|u| u.job.poll_query())
        })
        .map(|(i, (chunk, query))| (i, chunk, query))
    }

    /// The first of `n` sources, starting after the one served last, that `ask` gets an item
    /// from (a source without one now, e.g. waiting for its contract lookup, keeps its turn).
    fn next_of<T>(
        &mut self,
        n: usize,
        mut ask: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        for k in 0..n {
            let i = (self.next + k) % n;
            if let Some(item) = ask(i) {
                self.next = (i + 1) % n;
                return Some((i, item));
            }
        }
        None
    }
}

/// Every unit is finished (fetched, empty, skipped, failed, or its symbol unknown).
fn all_finished(units: &[Unit]) -> bool {
    units.iter().all(|u| u.job.is_finished())
}

/// Drive `units` to completion: on the embedded simulator without `--gateway`, else on the
/// gateway. A stop request (SIGINT, SIGTERM) ends the run with the error `interrupted`.
pub(crate) fn run(
    args: &FetchArgs,
    settings: &Settings,
    units: &mut [Unit],
    progress: &Progress,
    stop: &Stop,
) -> Ran {
    match &args.gateway {
        None => run_embedded(args, settings, units, progress, stop),
        Some(addr) => match crate::session::runtime() {
            Ok(rt) => rt.block_on(drive_gateway(args, settings, addr, units, progress, stop)),
            Err(error) => Ran::failed(error),
        },
    }
}

/// Drive `units` on a fresh embedded simulator ([`PoolWorld`]) in virtual time.
fn run_embedded(
    args: &FetchArgs,
    settings: &Settings,
    units: &mut [Unit],
    progress: &Progress,
    stop: &Stop,
) -> Ran {
    // The gateway's clock a day past the latest range: every unit's range lies in its past.
    let Some(latest) = units.iter().max_by_key(|u| u.job.range().1) else {
        return Ran::failed("nothing to fetch".to_owned());
    };
    let cfg = embedded_config(args, settings, &latest.job);
    let clock = cfg.wall_unix_ms.div_euclid(1000);
    let mut world = PoolWorld::new(cfg);
    let started = world.now();
    progress.start_clock(started, clock);
    let mut held_by = HeldCounts::default();
    let result = drive_world(
        &mut world,
        units,
        (
            concurrency(args, settings),
            secs(settings.fetch.request_timeout_secs),
        ),
        &mut held_by,
        progress,
        stop,
    );
    Ran {
        pool: Some(world.pool_stats()),
        virtual_elapsed: Some(world.now() - started),
        gateway_violations: Some(world.gateway().pacing_violations()),
        error: result.err().map(|e| e.to_string()),
        held_by,
    }
}

/// Call the progress callback at most this often (virtual time).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// [`PoolWorld::run_backfill_until`] over several jobs: one lease of purpose `Backfill`, up to
/// `concurrency` chunk requests in flight taken round-robin (each bounded by `timeout`), every
/// outcome fed back to its job, every pacing wait counted in `held_by`. Bounded: the world's
/// step limit, and `stop`, checked every step.
fn drive_world(
    world: &mut PoolWorld,
    units: &mut [Unit],
    (concurrency, timeout): (usize, Duration),
    held_by: &mut HeldCounts,
    progress: &Progress,
    stop: &Stop,
) -> Result<(), PoolWorldError> {
    let start = world.now();
    if all_finished(units) {
        progress.update(units, Some(Duration::ZERO), None);
        return Ok(());
    }
    let acquire = world.acquire(Purpose::Backfill);
    let mut lease = None;
    let mut open: std::collections::BTreeMap<Ticket, (usize, ChunkId)> = Default::default();
    let mut turn = RoundRobin::default();
    let mut last_progress: Option<Instant> = None;
    loop {
        while let Some(event) = world.poll_event() {
            match event {
                PoolEvent::Acquired {
                    acquire: a,
                    lease: l,
                    ..
                } if a == acquire => lease = Some(l),
                PoolEvent::AcquireFailed { acquire: a, error } if a == acquire => {
                    return Err(PoolWorldError::Acquire(error));
                }
                PoolEvent::Completed { ticket, result } => {
                    if let Some((u, chunk)) = open.remove(&ticket) {
                        if let Some(unit) = units.get_mut(u) {
                            unit.job.on_result(chunk, result);
                        }
                    }
                }
                PoolEvent::RequestDelayed {
                    held_by: hold,
                    until,
                    ..
                } => {
                    held_by.add(hold);
                    progress.waiting(until, hold, Some(world.now()));
                }
                _ => {}
            }
        }
        if let Some(l) = lease {
            while open.len() < concurrency.max(1) {
                let Some((u, chunk, query)) = turn.poll(units) else {
                    break;
                };
                progress.sent(&query, Some(world.now()));
                let ticket = world.send(l, query, Some(timeout))?;
                open.insert(ticket, (u, chunk));
            }
        }
        let now = world.now();
        if last_progress.is_none_or(|t| now >= t + PROGRESS_EVERY) {
            last_progress = Some(now);
            progress.update(units, Some(now - start), None);
        }
        if all_finished(units) {
            break;
        }
        if stop.requested() {
            return Err(PoolWorldError::Interrupted);
        }
        if !world.step()? {
            return Err(PoolWorldError::Deadlock(world.elapsed()));
        }
    }
    if let Some(l) = lease {
        world.release(l);
    }
    progress.update(units, Some(world.now() - start), None);
    Ok(())
}

/// Interval of file checkpoints during a wall-time fetch.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// Drive `units` on a real gateway. SIGINT or SIGTERM stops it: what was fetched is written and
/// the exit code says "partial". Every file that changed is rewritten every
/// [`CHECKPOINT_EVERY`], so even a killed process keeps most of its work.
async fn drive_gateway(
    args: &FetchArgs,
    settings: &Settings,
    addr: &str,
    units: &mut [Unit],
    progress: &Progress,
    stop: &Stop,
) -> Ran {
    if all_finished(units) {
        return Ran::nothing();
    }
    let cfg = settings.pool_config(vec![addr.to_owned()]);
    let acquire_timeout = cfg.acquire_timeout;
    let pool = match coordination::start_pool(settings, cfg, "ibconn fetch") {
        Ok(pool) => pool,
        Err(e) => return Ran::failed(e),
    };
    let mut error = None;
    let mut held_by = HeldCounts::default();
    // Subscribed before the first acquire, so no notice of this run is missed.
    let mut notices = pool.events();
    let mut watch = GatewayWatch::new(addr, secs(settings.fetch.gateway_down_secs));
    // A refused or failing dial ends the fetch at once (no waiting out the acquire timeout).
    match probe::acquire_fast(&pool, Purpose::Backfill, addr, acquire_timeout).await {
        Ok(conn) => {
            let conn = Arc::new(conn);
            let timeout = secs(settings.fetch.request_timeout_secs);
            let mut set = tokio::task::JoinSet::new();
            let mut turn = RoundRobin::default();
            // Units with answers not yet checkpointed.
            let mut dirty = vec![false; units.len()];
            #[allow(clippy::disallowed_methods)] // wall time between checkpoints
            let mut saved = Instant::now();
            loop {
                while error.is_none() && set.len() < concurrency(args, settings) {
                    let Some((u, chunk, query)) = turn.poll(units) else {
                        break;
                    };
                    let conn = Arc::clone(&conn);
                    progress.sent(&query, None);
                    set.spawn(async move { (u, chunk, conn.request(query, Some(timeout)).await) });
                }
                let joined = tokio::select! {
                    joined = set.join_next() => joined,
                    notice = notices.recv(), if !watch.closed => {
                        match notice {
                            Some(n) => {
                                if let PoolNotice::PacingWait { held_by: hold, .. } = &n {
                                    held_by.add(*hold);
                                }
                                watch.on_notice(&n, progress);
                            }
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
                    // Progress lines also while every request waits for IB's pacing.
                    () = progress.tick() => {
                        progress.update(units, None, None);
                        continue;
                    }
                };
                let Some(joined) = joined else {
                    break;
                };
                match joined {
                    Ok((u, chunk, outcome)) => {
                        let result = match outcome {
                            Ok(answer) => Ok(answer),
                            Err(ibconn_tokio::Error::Call(e)) => Err(e),
                            Err(e) => {
                                error.get_or_insert_with(|| e.to_string());
                                Err(CallError::ShuttingDown)
                            }
                        };
                        if let Some(unit) = units.get_mut(u) {
                            unit.job.on_result(chunk, result);
                        }
                        if let Some(d) = dirty.get_mut(u) {
                            *d = true;
                        }
                    }
                    Err(e) => {
                        error.get_or_insert_with(|| format!("request task: {e}"));
                    }
                }
                let waits = pool.stats().await.ok().map(|s| s.pacing_waits);
                progress.update(units, None, waits);
                if saved.elapsed() >= CHECKPOINT_EVERY {
                    #[allow(clippy::disallowed_methods)]
                    {
                        saved = Instant::now();
                    }
                    for (unit, d) in units.iter().zip(dirty.iter_mut()) {
                        if !std::mem::take(d) {
                            continue;
                        }
                        if let Err(e) = unit.output.checkpoint(&unit.job) {
                            tracing::warn!(symbol = %unit.label, error = %e, "checkpoint failed");
                        }
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
        error,
        held_by,
        ..Ran::nothing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_one_of_each_in_turn_and_skips_the_empty() {
        let mut queues = [vec!["a0", "a1"], vec!["b0"], vec!["c0", "c1", "c2"]];
        let mut turn = RoundRobin::default();
        let mut order = Vec::new();
        while let Some((_, item)) = turn.next_of(queues.len(), |i| {
            let q = &mut queues[i];
            (!q.is_empty()).then(|| q.remove(0))
        }) {
            order.push(item);
        }
        assert_eq!(order, ["a0", "b0", "c0", "a1", "c1", "c2"]);
        // A source with nothing now (its lookup in flight) is passed over, not dropped.
        let mut turn = RoundRobin::default();
        assert_eq!(turn.next_of(3, |i| (i != 0).then_some(i)), Some((1, 1)));
        assert_eq!(turn.next_of(3, Some), Some((2, 2)));
        assert_eq!(turn.next_of(3, Some), Some((0, 0)));
        assert_eq!(turn.next_of(0, Some), None);
    }
}
