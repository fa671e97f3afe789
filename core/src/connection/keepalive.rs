//! Keeping the session honest: sleep detection from the two clocks, the `reqCurrentTime` health
//! probe, and the current-time requests IB answers without a request id (sent within its spacing).

use std::time::{Duration, Instant};

use super::{Answer, Connection, ConnectionError, State, TimeChannel};
use crate::deadline::after;
use crate::message::Request;

impl Connection {
    /// Report both clocks: `now` (monotonic, stops while suspended — Linux `CLOCK_MONOTONIC`) and
    /// `boottime` (keeps counting through suspend — `CLOCK_BOOTTIME`). When `boottime` advanced more
    /// than `now` by the sleep threshold since the last call, the machine slept: the socket cannot be
    /// trusted and the connection closes with [`ConnectionError::SleepDetected`].
    pub fn observe_clocks(&mut self, now: Instant, boottime: Duration) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        if let Some((mono0, boot0)) = self.clock_base {
            let mono = now.saturating_duration_since(mono0);
            let boot = boottime.saturating_sub(boot0);
            if boot > mono.saturating_add(self.cfg.sleep_threshold) {
                let gap = boot - mono;
                tracing::info!(
                    client_id = self.cfg.client_id,
                    ?gap,
                    "machine slept; redialing"
                );
                return self.fail(ConnectionError::SleepDetected(gap));
            }
        }
        self.clock_base = Some((now, boottime));
    }

    pub(super) fn answer_time(&mut self, now: Instant, millis: bool, value: i64) {
        let chan = if millis {
            &mut self.millis
        } else {
            &mut self.secs
        };
        chan.outstanding = None;
        if !millis {
            if let Some(sent) = self.probe_sent.take() {
                let rtt = now.saturating_duration_since(sent);
                self.stats.last_probe_rtt_us = Some(rtt.as_micros() as u64);
                tracing::debug!(?rtt, "health probe answered");
            }
        }
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.time_waiters)
            .into_iter()
            .partition(|w| w.millis == millis);
        self.time_waiters = keep;
        for w in done {
            let answer = if millis {
                Answer::CurrentTimeMillis(value)
            } else {
                Answer::CurrentTime(value)
            };
            self.succeed(w.id, answer);
        }
    }

    /// Send what is due: current-time requests (respecting IB's spacing) and nothing else — other
    /// requests go out as soon as they are submitted.
    pub(super) fn pump(&mut self, now: Instant) {
        if self.state != State::Ready {
            return;
        }
        for millis in [false, true] {
            let wanted = self.wants_time(millis);
            let chan = if millis { &self.millis } else { &self.secs };
            if self
                .time_send_due(chan, wanted)
                .is_some_and(|due| due <= now)
            {
                let req = if millis {
                    Request::ReqCurrentTimeInMillis
                } else {
                    Request::ReqCurrentTime
                };
                self.write(now, &req);
                let chan = if millis {
                    &mut self.millis
                } else {
                    &mut self.secs
                };
                chan.outstanding = Some(now);
                chan.last_sent = Some(now);
            }
        }
    }

    /// Whether anyone waits for a current-time answer of this kind (the probe counts for seconds).
    pub(super) fn wants_time(&self, millis: bool) -> bool {
        self.time_waiters.iter().any(|w| w.millis == millis)
            || (!millis && self.probe_sent.is_some())
    }

    /// When the next current-time request of a channel may go out, if one is wanted. An outstanding
    /// request counts as lost after the probe timeout (IB silently drops some).
    pub(super) fn time_send_due(&self, chan: &TimeChannel, wanted: bool) -> Option<Instant> {
        if !wanted {
            return None;
        }
        let spacing_ok = chan
            .last_sent
            .map_or(self.last_now, |t| after(t, self.cfg.current_time_spacing));
        match chan.outstanding {
            Some(sent) => Some(after(sent, self.cfg.probe_timeout).max(spacing_ok)),
            None => Some(spacing_ok),
        }
    }
}
