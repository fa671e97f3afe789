//! Running a [`PoolWorld`]: one step, running to an instant, and driving a backfill job to
//! completion; split out of `pool_world.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ibconn_core::backfill::{BackfillJob, ChunkId};
use ibconn_core::client_id::Purpose;
use ibconn_core::pool::{PoolEvent, Ticket};

use super::{BackfillRun, PoolWorld, PoolWorldError, RunReport};

impl PoolWorld {
    /// Advance to the next instant anything is scheduled and process it. `Ok(false)` when nothing
    /// is scheduled at all.
    pub fn step(&mut self) -> Result<bool, PoolWorldError> {
        let Some(t) = self.next_instant() else {
            return Ok(false);
        };
        let now = self.net.begin_step(t).map_err(PoolWorldError::StepLimit)?;
        while let Some(what) = self.net.pop_due() {
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
        self.net.advance_to(until);
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
        let start = self.net.now();
        let steps = self.net.steps();
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
            let now = self.net.now();
            if last_progress.is_none_or(|t| now >= t + run.progress_every) {
                last_progress = Some(now);
                progress(job, now - start);
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
        let now = self.net.now();
        progress(job, now - start);
        Ok(RunReport {
            virtual_elapsed: now - start,
            steps: self.net.steps() - steps,
            pool: self.pool_stats(),
            gateway_pacing_violations: self.gateway.pacing_violations(),
        })
    }
}
