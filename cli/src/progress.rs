//! What a fetch shows while it runs, on stderr.
//!
//! - On a terminal: a progress bar (chunks, bars, pacing waits; on a gateway the time left, from
//!   the pacer's plan, and what the next request waits for).
//! - Otherwise (a log file, a container, CI): a line every `fetch.progress_every_secs` (30 s) of
//!   the run's clock — wall time on a gateway, virtual time on the embedded simulator, so those
//!   lines are the same on every run — and a line whenever a request has to wait more than
//!   [`LONG_WAIT`] for IB's pacing, saying for which rule and until when.
//!
//! The time left is the pacer's plan, not a rate: every request sent is recorded in a private
//! [`Pacer`] with the configured rules (the pool's pacer decides the same), and the requests
//! still to send are run through it by [`estimate_requests`] — the estimate `ibconn plan` prints
//! — so a run that waits ten minutes for IB's window says so from the start.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ibconn_core::backfill::estimate_requests;
use ibconn_core::civil::{Date, SECS_PER_DAY};
use ibconn_core::connection::Query;
use ibconn_core::pacer::{Hold, PacedRequest, Pacer, PacingRules};
use ibconn_core::pool::paced;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{secs, Settings};
use crate::fetch::{human, Unit};

/// A pacing wait longer than this gets its own line.
pub(crate) const LONG_WAIT: Duration = Duration::from_secs(10);

/// On a terminal, the time left is recomputed at most this often (wall time).
const ETA_EVERY: Duration = Duration::from_secs(2);

/// Assumed time of one answer in the plan (as `ibconn plan` assumes).
const ANSWER: Duration = Duration::from_secs(1);

/// The progress of one fetch (every symbol of it), on stderr.
pub(crate) struct Progress {
    /// The bar (hidden when stderr is not a terminal).
    pub(crate) bar: ProgressBar,
    /// Lines instead of a bar.
    lines: bool,
    /// The run is in virtual time (the embedded simulator).
    virtual_time: bool,
    /// Interval of the progress lines.
    every: Duration,
    /// What is kept between calls.
    state: Mutex<State>,
}

/// What the progress keeps between calls.
struct State {
    /// The configured pacing rules (for the plan and for naming a rule).
    rules: PacingRules,
    /// Every request sent so far, as the pool's pacer saw them (see the module docs).
    shadow: Pacer,
    /// The run's clock: an instant and the unix milliseconds it stands for (the wall clock, or
    /// the simulator's).
    clock: Option<(Instant, i64)>,
    /// When the run started, on its clock.
    start: Option<Instant>,
    /// When the last progress line was printed.
    last_line: Option<Instant>,
    /// The last time left computed, and when.
    eta: Option<(Instant, Duration)>,
    /// Pacing waits seen (or the pool's count).
    waits: u64,
    /// The end of the last long wait reported (later waits ending close to it are the same).
    reported_until: Option<Instant>,
    /// The last long wait, for the bar's message: until, rule.
    waiting: Option<(Instant, Option<Hold>)>,
}

impl Progress {
    /// The progress of a fetch of `total` chunks; `virtual_time`: on the embedded simulator.
    pub(crate) fn new(total: usize, virtual_time: bool, settings: &Settings) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} chunks · {msg}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        let rules = settings.pacing_rules();
        Self {
            bar,
            lines: !tty,
            virtual_time,
            every: secs(settings.fetch.progress_every_secs),
            state: Mutex::new(State {
                shadow: Pacer::new(rules.clone()),
                rules,
                clock: None,
                start: None,
                last_line: None,
                eta: None,
                waits: 0,
                reported_until: None,
                waiting: None,
            }),
        }
    }

    /// The state, also after a panic elsewhere held the lock (it stays consistent: every
    /// change is one assignment).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The run starts at `now` on its clock, which reads `unix_secs` then (the embedded
    /// simulator's clock; a gateway's run uses the wall clock without this call).
    pub(crate) fn start_clock(&self, now: Instant, unix_secs: i64) {
        let mut st = self.state();
        st.clock = Some((now, unix_secs.saturating_mul(1000)));
        st.start = Some(now);
    }

    /// `now` on the run's clock: `elapsed` since [`Progress::start_clock`] in virtual time, else
    /// the wall clock (fixing the mapping to unix time at the first call).
    fn now(&self, st: &mut State, elapsed: Option<Duration>) -> Instant {
        let now = match (elapsed, st.start) {
            (Some(e), Some(start)) => start + e,
            _ => Instant::now(),
        };
        if st.clock.is_none() {
            st.clock = Some((now, crate::dates::wall_now().saturating_mul(1000)));
        }
        st.start.get_or_insert(now);
        now
    }

    /// A request was handed to the pool at `now` (on the run's clock, `None`: the wall clock).
    pub(crate) fn sent(&self, query: &Query, now: Option<Instant>) {
        let mut st = self.state();
        let now = match now {
            Some(n) => n,
            None => self.now(&mut st, None),
        };
        // Sent and answered as far as the plan cares: its slot stays in the windows.
        if let Ok(r) = st.shadow.reserve(now, &paced(query)) {
            let _ = st.shadow.complete(r.id);
        }
    }

    /// The pool holds a request back until `until` for `held_by` (`now`: on the run's clock,
    /// `None`: the wall clock). A wait over [`LONG_WAIT`] is reported, once per wait (several
    /// requests waiting for the same window are one wait).
    pub(crate) fn waiting(&self, until: Instant, held_by: Option<Hold>, now: Option<Instant>) {
        let mut st = self.state();
        let now = match now {
            Some(n) => n,
            None => self.now(&mut st, None),
        };
        st.waits += 1;
        let wait = until.saturating_duration_since(now);
        if wait <= LONG_WAIT || st.reported_until.is_some_and(|r| until <= r + LONG_WAIT) {
            return;
        }
        st.reported_until = Some(until);
        st.waiting = Some((until, held_by));
        let what =
            held_by.map_or_else(|| "IB's pacing rules".to_owned(), |h| h.describe(&st.rules));
        let line = format!(
            "pacing: the next request waits {} for {what}, until {}",
            human(wait),
            self.clock_text(&st, until)
        );
        drop(st);
        if self.lines {
            self.print(&line);
        } else {
            self.bar.set_message(line);
        }
    }

    /// Show how far `units` are (`elapsed`: virtual time since [`Progress::start_clock`]; `None`
    /// on a gateway; `waits`: the pool's count of pacing waits, when known); print a line when
    /// one is due.
    pub(crate) fn update(&self, units: &[Unit], elapsed: Option<Duration>, waits: Option<u64>) {
        let mut st = self.state();
        let now = self.now(&mut st, elapsed);
        if let Some(w) = waits {
            st.waits = w;
        }
        let (done, total, bars) = units.iter().fold((0, 0, 0), |(d, t, b), u| {
            let p = u.job.progress();
            (d + p.chunks_done, t + p.chunks_total, b + p.bars)
        });
        let finished = units.iter().all(|u| u.job.is_finished());
        let run_time = now.saturating_duration_since(st.start.unwrap_or(now));
        if !self.lines {
            self.bar.set_position(done as u64);
            let mut msg = format!("{bars} bars · {} pacing waits", st.waits);
            if self.virtual_time {
                msg.push_str(&format!(" · {} virtual", human(run_time)));
            } else {
                let stale = st.eta.is_none_or(|(at, _)| now >= at + ETA_EVERY);
                if stale {
                    let planned = eta(&st, units, now);
                    st.eta = Some((now, planned));
                }
                if let Some((at, planned)) = st.eta {
                    let left = planned.saturating_sub(now.saturating_duration_since(at));
                    msg.push_str(&format!(" · ETA {}", human(left)));
                }
                if let Some((until, hold)) = st.waiting.filter(|(u, _)| *u > now) {
                    msg.push_str(&format!(
                        " · waiting for {} until {}",
                        hold.map_or_else(|| "IB's pacing".to_owned(), |h| h.describe(&st.rules)),
                        self.clock_text(&st, until)
                    ));
                }
            }
            self.bar.set_message(msg);
            return;
        }
        let due = st.last_line.is_none_or(|t| now >= t + self.every);
        if !due || finished {
            return;
        }
        // The first line after one interval, not at once.
        if st.last_line.is_none() && run_time < self.every {
            return;
        }
        st.last_line = Some(now);
        let left = eta(&st, units, now);
        let clock = if self.virtual_time { " virtual" } else { "" };
        let line = format!(
            "progress: {done}/{total} chunks, {bars} bars, {} pacing waits; {}{clock} elapsed, \
             about {} left (the pacer's plan)",
            st.waits,
            human(run_time),
            human(left),
        );
        drop(st);
        self.print(&line);
    }

    /// Resolves when the next progress line (on a terminal: a refresh of the time left) is due
    /// on the wall clock; a gateway's run then calls [`Progress::update`], so lines keep coming
    /// while every request waits for IB's pacing.
    pub(crate) async fn tick(&self) {
        let soonest = Instant::now() + Duration::from_secs(1);
        let at = if self.lines {
            let st = self.state();
            st.last_line
                .or(st.start)
                .map_or(soonest, |t| t + self.every)
                .max(soonest)
        } else {
            soonest
        };
        tokio::time::sleep_until(at.into()).await;
    }

    /// `until` as the time the run's clock shows then (UTC; the simulator's clock is marked).
    fn clock_text(&self, st: &State, until: Instant) -> String {
        let Some((at, unix_ms)) = st.clock else {
            return format!(
                "in {}",
                human(until.saturating_duration_since(Instant::now()))
            );
        };
        let ms = i64::try_from(until.saturating_duration_since(at).as_millis()).unwrap_or(0);
        let unix = (unix_ms + ms).div_euclid(1000);
        let (days, s) = (unix.div_euclid(SECS_PER_DAY), unix.rem_euclid(SECS_PER_DAY));
        let text = format!(
            "{}T{:02}:{:02}:{:02}Z",
            Date::from_days(days),
            s / 3_600,
            s / 60 % 60,
            s % 60
        );
        if self.virtual_time {
            format!("{text} on the simulator's clock")
        } else {
            text
        }
    }

    /// One line on stderr, above the bar when there is one.
    fn print(&self, line: &str) {
        self.bar.suspend(|| {
            let _ = writeln!(std::io::stderr().lock(), "ibconn: {line}");
        });
    }
}

/// The time left: the requests still to send, one chunk of each symbol in turn (as the drivers
/// send them), run through the pacer behind every request sent so far; at least until the last
/// one sent is answered.
fn eta(st: &State, units: &[Unit], now: Instant) -> Duration {
    let mut queues: Vec<Vec<PacedRequest>> = units
        .iter()
        .map(|u| {
            u.job
                .pending_chunks()
                .map(|c| u.job.spec().pacing_key(c))
                .collect()
        })
        .collect();
    let mut keys = Vec::with_capacity(queues.iter().map(Vec::len).sum());
    let longest = queues.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for q in &mut queues {
            if let Some(k) = q.get_mut(i) {
                keys.push(std::mem::replace(k, PacedRequest::Message));
            }
        }
    }
    let planned = estimate_requests(&keys, st.shadow.clone(), ANSWER, now)
        .map(|e| e.makespan)
        .unwrap_or_default();
    let last_sent = Duration::from_millis(st.shadow.snapshot(now).horizon_ms);
    let unfinished = units.iter().any(|u| !u.job.is_finished());
    let in_flight = if unfinished {
        last_sent + ANSWER
    } else {
        Duration::ZERO
    };
    planned.max(in_flight)
}
