//! Fault mechanics and the output path: applying injected, scheduled and chaos faults, crashes
//! and restarts, and committing a connection's output; split out of `gateway.rs`.

use std::time::{Duration, Instant};

use crate::errors::{self, IbError};
use crate::fault::{Farm, Fault, Target};
use crate::rules::HistoricalPacer;

use super::{Conn, ConnId, Gateway, Phase, PortState};

/// Fault mechanics and the output path.
impl Gateway {
    /// Record `now` (monotonic) and start the chaos timer on first use.
    pub(super) fn touch(&mut self, now: Instant) {
        self.unix_ms(now);
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        if self.next_chaos.is_none() {
            if let Some(chaos) = self.config.chaos.as_ref().filter(|c| !c.kinds.is_empty()) {
                self.next_chaos = Some(now + chaos.next_gap(&mut self.fault_rng));
            }
        }
    }

    /// Move what `c` encoded into its outbox, applying delay and splitting.
    pub(super) fn commit(&mut self, c: &mut Conn, now: Instant) {
        if c.out.is_empty() {
            return;
        }
        let mut bytes = c.out.split().freeze();
        let due = c.last_due.map_or(now + c.delay, |d| d.max(now + c.delay));
        c.last_due = Some(due);
        if !c.split {
            c.outbox.push_back((due, bytes));
            return;
        }
        while bytes.len() > 1 {
            let cap = u64::try_from(bytes.len().min(32) - 1).unwrap_or(0);
            let n = 1 + usize::try_from(self.fault_rng.below_or_eq(cap)).unwrap_or(0);
            c.outbox.push_back((due, bytes.split_to(n)));
        }
        if !bytes.is_empty() {
            c.outbox.push_back((due, bytes));
        }
    }

    /// Run `f` on every connection `target` hits (in accept order), then commit its output.
    fn each(&mut self, now: Instant, target: Target, mut f: impl FnMut(&mut Self, &mut Conn)) {
        let ids: Vec<ConnId> = self
            .conns
            .keys()
            .copied()
            .filter(|&id| target.hits(id))
            .collect();
        for id in ids {
            if let Some(mut c) = self.conns.remove(&id) {
                f(self, &mut c);
                self.commit(&mut c, now);
                self.conns.insert(id, c);
            }
        }
    }

    /// Send a request-less error to the ready, unpaused sessions `target` hits. A 1101 (restored,
    /// data lost) also drops every subscription of the ready sessions it hits, paused ones
    /// included: the data is lost at the gateway whether or not the client reads the notice.
    fn emit(&mut self, now: Instant, target: Target, err: &IbError) {
        self.each(now, target, |gw, c| {
            if matches!(c.phase, Phase::Ready { .. }) && !c.closing {
                if !c.paused {
                    gw.send_error(c, now, -1, err.clone());
                }
                if err.code == 1101 {
                    gw.drop_streams(c);
                }
            }
        });
    }

    /// Hold HMDS replies until `until` (extending any pause in force).
    fn pause_data(&mut self, until: Instant) {
        self.data_paused_until = Some(self.data_paused_until.map_or(until, |t| t.max(until)));
    }

    /// Stop streaming data until `until` (extending any pause in force).
    fn pause_market_data(&mut self, until: Instant) {
        self.md_paused_until = Some(self.md_paused_until.map_or(until, |t| t.max(until)));
    }

    pub(super) fn apply(&mut self, now: Instant, fault: Fault) {
        tracing::debug!(?fault, "fault");
        match fault {
            Fault::Close(t) => self.each(now, t, |_, c| c.closing = true),
            Fault::Pause(t) => self.each(now, t, |_, c| c.paused = true),
            Fault::Resume(t) => self.each(now, t, |gw, c| {
                if c.paused {
                    c.paused = false;
                    let inbox = std::mem::take(&mut c.inbox);
                    gw.process_input(c, now, &inbox);
                }
            }),
            Fault::Delay { target, by } => self.each(now, target, |_, c| c.delay = by),
            Fault::Hold(t) => self.each(now, t, |_, c| c.held = true),
            Fault::Release(t) => self.each(now, t, |_, c| c.held = false),
            Fault::Split { target, on } => self.each(now, target, |_, c| c.split = on),
            Fault::Garbage { target, len } => self.each(now, target, |gw, c| {
                if c.closing {
                    return;
                }
                let first = 1 + (gw.fault_rng.next_u64() % 255) as u8;
                c.out.extend_from_slice(&[first]);
                for _ in 1..len.max(4) {
                    c.out.extend_from_slice(&[gw.fault_rng.next_u64() as u8]);
                }
            }),
            Fault::EmitError { target, code, text } => {
                self.emit(now, target, &IbError { code, text });
            }
            Fault::LinkLoss { outage, data_lost } => {
                self.emit(now, Target::All, &errors::link_lost());
                self.pause_data(now + outage);
                self.pause_market_data(now + outage);
                let back = errors::link_restored(data_lost);
                self.schedule_error(now + outage, back);
            }
            Fault::FarmFlap { farm, outage } => {
                self.emit(now, Target::All, &errors::farm_status(farm, false));
                match farm {
                    Farm::Historical => self.pause_data(now + outage),
                    Farm::MarketData => self.pause_market_data(now + outage),
                    Farm::SecDef => {}
                }
                self.schedule_error(now + outage, errors::farm_status(farm, true));
            }
            Fault::NightlyReset { pause } => {
                let pause = pause.unwrap_or_else(|| {
                    Duration::from_millis(60_000 + self.fault_rng.below_or_eq(120_000))
                });
                for farm in [Farm::MarketData, Farm::Historical] {
                    self.emit(now, Target::All, &errors::farm_status(farm, false));
                }
                self.pause_data(now + pause);
                self.pause_market_data(now + pause);
                for farm in [Farm::MarketData, Farm::Historical] {
                    self.schedule_error(now + pause, errors::farm_status(farm, true));
                }
            }
            Fault::Restart { down_for } => self.crash(Some(now + down_for)),
            Fault::Crash => self.crash(None),
            Fault::Bounce => self.port = PortState::Open,
            Fault::Locale(locale) => self.config.locale = locale,
            Fault::SpuriousNoData { target, requests } => {
                self.each(now, target, |_, c| c.faults.spurious_no_data = requests);
            }
            Fault::NeverAnswer { target, requests } => {
                self.each(now, target, |_, c| c.faults.never_answer = requests);
            }
            Fault::DuplicateTickerId { target, requests } => {
                self.each(now, target, |_, c| c.faults.duplicate_ids = requests);
            }
        }
    }

    fn schedule_error(&mut self, at: Instant, err: IbError) {
        let fault = Fault::EmitError {
            target: Target::All,
            code: err.code,
            text: err.text,
        };
        self.schedule_fault(at, fault);
    }

    /// The process dies: every socket closes now with nothing more sent, state is forgotten, and
    /// the port refuses until `until` (`None`: until [`Fault::Bounce`]).
    fn crash(&mut self, until: Option<Instant>) {
        tracing::debug!(?until, "gateway crash");
        for c in self.conns.values_mut() {
            c.out.clear();
            c.outbox.clear();
            c.closing = true;
            c.paused = false;
            c.held = false;
            c.subs.clear();
        }
        self.port = PortState::Refusing { until };
        self.held_ids.clear();
        self.pacer = HistoricalPacer::new(self.config.historical.clone());
        self.data_paused_until = None;
        self.md_paused_until = None;
    }

    /// Draw and apply a random fault; schedule the next draw.
    pub(super) fn chaos(&mut self, now: Instant) {
        let Some(chaos) = self.config.chaos.clone() else {
            self.next_chaos = None;
            return;
        };
        let ready: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Ready { .. }) && !c.closing)
            .map(|(id, _)| *id)
            .collect();
        if let Some((fault, end)) = chaos.draw(&mut self.fault_rng, &ready) {
            if let Some((after, end)) = end {
                self.schedule_fault(now + after, end);
            }
            self.apply(now, fault);
        }
        self.next_chaos = Some(now + chaos.next_gap(&mut self.fault_rng));
    }
}
