//! Circuit breaker: stop hammering a gateway that keeps failing, then probe it carefully.
//!
//! Reconnect storms (repeated handshake failures, 326 loops, 100/162 pacing bursts) make IB Gateway
//! worse, not better. The breaker counts consecutive failures; at the threshold it *opens* and rejects
//! work until a cool-down passes, then goes *half-open* and lets a bounded number of probes through.
//! Enough probe successes close it again; any probe failure reopens it.
//!
//! Sans-IO: `now` is passed in; the open → half-open transition happens lazily on the next call.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Breaker thresholds. Defaults: open after 5 consecutive failures, stay open 30 s, allow 1 probe at a
/// time while half-open, close after 2 probe successes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Consecutive failures (while closed) that open the breaker (≥ 1).
    pub failure_threshold: u32,
    /// How long the breaker stays open before it lets probes through.
    pub open_for: Duration,
    /// Concurrent probes allowed while half-open (≥ 1).
    pub half_open_probes_max: u32,
    /// Probe successes needed to close again (≥ 1).
    pub success_threshold: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            half_open_probes_max: 1,
            success_threshold: 2,
        }
    }
}

/// The breaker's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Normal operation; counts consecutive failures.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// Rejecting all work until `until`.
    Open {
        /// When probes become allowed.
        until: Instant,
    },
    /// Letting a bounded number of probes through.
    HalfOpen {
        /// Probes allowed and not yet reported back.
        probes_in_flight: u32,
        /// Probe successes so far.
        successes: u32,
    },
}

/// Why [`CircuitBreaker::try_acquire`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerRejection {
    /// The breaker is open; try again at `retry_at`.
    #[error("circuit open; retry at the given instant")]
    Open {
        /// When the breaker turns half-open.
        retry_at: Instant,
    },
    /// Half-open and the probe budget is in use; wait for a probe to report.
    #[error("circuit half-open and all probe slots are in use")]
    ProbesBusy,
}

/// Serializable status for dashboards and health endpoints (times relative to the `now` passed in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerSnapshot {
    /// `"closed"`, `"open"` or `"half_open"`.
    pub state: String,
    /// Failures since the last success (closed state).
    pub consecutive_failures: u32,
    /// Milliseconds until the breaker turns half-open (open state), else 0.
    pub open_remaining_ms: u64,
    /// Probes in flight (half-open state).
    pub probes_in_flight: u32,
    /// Times the breaker has opened since creation.
    pub times_opened: u64,
}

/// A closed → open → half-open circuit breaker; see the module docs.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    times_opened: u64,
}

impl CircuitBreaker {
    /// A closed breaker with the given thresholds (zero thresholds are treated as 1).
    pub fn new(config: BreakerConfig) -> Self {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            half_open_probes_max: config.half_open_probes_max.max(1),
            success_threshold: config.success_threshold.max(1),
            ..config
        };
        Self {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
            times_opened: 0,
        }
    }

    /// The current state as of `now` (an expired open state reads as half-open).
    pub fn state(&mut self, now: Instant) -> BreakerState {
        self.advance(now);
        self.state
    }

    /// Asks to do one unit of work (connect attempt, request). On `Ok` the caller must report the
    /// outcome with [`CircuitBreaker::on_success`] or [`CircuitBreaker::on_failure`].
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), BreakerRejection> {
        self.advance(now);
        match &mut self.state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } => Err(BreakerRejection::Open { retry_at: *until }),
            BreakerState::HalfOpen {
                probes_in_flight, ..
            } => {
                if *probes_in_flight >= self.config.half_open_probes_max {
                    Err(BreakerRejection::ProbesBusy)
                } else {
                    *probes_in_flight += 1;
                    Ok(())
                }
            }
        }
    }

    /// Reports a success: resets the failure count, or counts towards closing when half-open.
    pub fn on_success(&mut self, now: Instant) {
        self.advance(now);
        match &mut self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => *consecutive_failures = 0,
            BreakerState::Open { .. } => {}
            BreakerState::HalfOpen {
                probes_in_flight,
                successes,
            } => {
                *probes_in_flight = probes_in_flight.saturating_sub(1);
                *successes += 1;
                if *successes >= self.config.success_threshold {
                    self.state = BreakerState::Closed {
                        consecutive_failures: 0,
                    };
                }
            }
        }
    }

    /// Reports a failure: may open the breaker; any failure while half-open reopens it.
    pub fn on_failure(&mut self, now: Instant) {
        self.advance(now);
        match &mut self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                *consecutive_failures += 1;
                if *consecutive_failures >= self.config.failure_threshold {
                    self.open(now);
                }
            }
            BreakerState::Open { .. } => {}
            BreakerState::HalfOpen { .. } => self.open(now),
        }
    }

    /// Serializable status as of `now`.
    pub fn snapshot(&mut self, now: Instant) -> BreakerSnapshot {
        self.advance(now);
        let (state, consecutive_failures, open_remaining, probes_in_flight) = match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => ("closed", consecutive_failures, Duration::ZERO, 0),
            BreakerState::Open { until } => ("open", 0, until.saturating_duration_since(now), 0),
            BreakerState::HalfOpen {
                probes_in_flight, ..
            } => ("half_open", 0, Duration::ZERO, probes_in_flight),
        };
        BreakerSnapshot {
            state: state.to_owned(),
            consecutive_failures,
            open_remaining_ms: u64::try_from(open_remaining.as_millis()).unwrap_or(u64::MAX),
            probes_in_flight,
            times_opened: self.times_opened,
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open {
            until: crate::deadline::after(now, self.config.open_for),
        };
        self.times_opened += 1;
    }

    fn advance(&mut self, now: Instant) {
        if let BreakerState::Open { until } = self.state {
            if now >= until {
                self.state = BreakerState::HalfOpen {
                    probes_in_flight: 0,
                    successes: 0,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One arbitrary base instant; every other time in the tests is an offset from it.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn opens_after_threshold_then_half_opens_then_closes() {
        let t0 = base();
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: secs(30),
            half_open_probes_max: 1,
            success_threshold: 2,
        });
        for _ in 0..2 {
            assert_eq!(b.try_acquire(t0), Ok(()));
            b.on_failure(t0);
        }
        assert_eq!(
            b.state(t0),
            BreakerState::Closed {
                consecutive_failures: 2
            }
        );
        b.on_failure(t0);
        assert_eq!(
            b.try_acquire(t0 + secs(29)),
            Err(BreakerRejection::Open {
                retry_at: t0 + secs(30)
            })
        );
        // Half-open: one probe at a time.
        assert_eq!(b.try_acquire(t0 + secs(30)), Ok(()));
        assert_eq!(
            b.try_acquire(t0 + secs(30)),
            Err(BreakerRejection::ProbesBusy)
        );
        b.on_success(t0 + secs(31));
        assert_eq!(b.try_acquire(t0 + secs(31)), Ok(()));
        b.on_success(t0 + secs(32));
        assert_eq!(
            b.state(t0 + secs(32)),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
        assert_eq!(b.snapshot(t0 + secs(32)).times_opened, 1);
    }

    #[test]
    fn probe_failure_reopens() {
        let t0 = base();
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            ..BreakerConfig::default()
        });
        b.on_failure(t0);
        let t1 = t0 + secs(30);
        assert_eq!(b.try_acquire(t1), Ok(()));
        b.on_failure(t1);
        let snap = b.snapshot(t1);
        assert_eq!(
            (
                snap.state.as_str(),
                snap.open_remaining_ms,
                snap.times_opened
            ),
            ("open", 30_000, 2)
        );
    }

    #[test]
    fn success_resets_the_failure_count() {
        let t0 = base();
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 2,
            ..BreakerConfig::default()
        });
        b.on_failure(t0);
        b.on_success(t0);
        b.on_failure(t0);
        assert_eq!(
            b.state(t0),
            BreakerState::Closed {
                consecutive_failures: 1
            }
        );
    }
}
