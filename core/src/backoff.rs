//! Exponential backoff with full jitter, driven by a seeded RNG the caller owns.
//!
//! Retries of reconnects, client-id conflicts and failed requests must spread out (so many clients do
//! not retry in lock-step) yet stay reproducible in tests. [`Backoff`] therefore draws its jitter from a
//! [`RandomSource`] passed in on every call — usually a [`SplitMix64`] seeded from configuration — and
//! never touches a global RNG or the clock.
//!
//! Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): attempt `n` (0-based) waits a
//! uniformly random duration in `[0, min(cap, base · factorⁿ)]`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A source of uniformly distributed 64-bit values, passed in so randomness stays explicit and seedable.
pub trait RandomSource {
    /// Returns the next uniformly distributed `u64`.
    fn next_u64(&mut self) -> u64;
}

/// A tiny, fast, seedable PRNG (Steele, Lea & Flood's SplitMix64); not cryptographic.
///
/// Used for jitter only. Two instances with the same seed produce the same sequence on every platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Creates a generator from a seed; every seed (including 0) is valid.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A uniformly distributed integer in `0..=max` (Lemire's multiply-shift; bias < 2⁻⁶⁴·max).
    pub fn below_inclusive(&mut self, max: u64) -> u64 {
        uniform_inclusive(self, max)
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A uniformly distributed integer in `0..=max` drawn from `rng`.
fn uniform_inclusive<R: RandomSource + ?Sized>(rng: &mut R, max: u64) -> u64 {
    if max == u64::MAX {
        return rng.next_u64();
    }
    let range = u128::from(max) + 1;
    // The product of two values < 2^64 and ≤ 2^64 fits in u128; the high half is < range ≤ 2^64.
    u64::try_from((u128::from(rng.next_u64()) * range) >> 64).unwrap_or(max)
}

/// Backoff limits. Defaults: 1 s base, doubling, 60 s cap, unlimited attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffConfig {
    /// Upper bound of the first wait (attempt 0).
    pub base: Duration,
    /// Multiplier applied to the upper bound per attempt (≥ 1).
    pub factor: u32,
    /// Upper bound never exceeds this.
    pub cap: Duration,
    /// Give up after this many delays (`None` = never give up).
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            factor: 2,
            cap: Duration::from_secs(60),
            max_attempts: None,
        }
    }
}

/// Exponential backoff state for one retry loop: call [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// Starts a fresh retry loop with the given limits.
    pub const fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// The limits this backoff uses.
    pub const fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// How many delays have been handed out since the last reset.
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the wait for the next attempt: `min(cap, base · factor^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let mut bound = self.config.base.min(self.config.cap);
        for _ in 0..self.attempt {
            bound = bound
                .saturating_mul(self.config.factor.max(1))
                .min(self.config.cap);
            if bound == self.config.cap {
                break;
            }
        }
        bound
    }

    /// The next wait, drawn uniformly from `[0, ceiling]` (full jitter); `None` once attempts are used up.
    pub fn next_delay<R: RandomSource + ?Sized>(&mut self, rng: &mut R) -> Option<Duration> {
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        let ceiling = self.ceiling();
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        self.attempt = self.attempt.saturating_add(1);
        Some(Duration::from_nanos(uniform_inclusive(rng, nanos)))
    }

    /// Like [`Backoff::next_delay`], but as an absolute deadline `now + delay`.
    pub fn next_at<R: RandomSource + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
    ) -> Option<Instant> {
        self.next_delay(rng)
            .map(|delay| crate::deadline::after(now, delay))
    }

    /// Forgets past failures; the next delay is drawn from `[0, base]` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_matches_reference() {
        // Reference values for seed 1234567 from the public-domain C implementation.
        let mut rng = SplitMix64::new(1_234_567);
        let first = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
        let mut again = SplitMix64::new(1_234_567);
        assert_eq!(again.next_u64(), first[0]);
    }

    #[test]
    fn delays_stay_under_the_growing_capped_ceiling() {
        let config = BackoffConfig {
            base: Duration::from_millis(100),
            factor: 2,
            cap: Duration::from_secs(1),
            max_attempts: Some(8),
        };
        let mut backoff = Backoff::new(config);
        let mut rng = SplitMix64::new(7);
        let expected_ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for ceiling_ms in expected_ceilings {
            assert_eq!(backoff.ceiling(), Duration::from_millis(ceiling_ms));
            let delay = backoff.next_delay(&mut rng);
            assert!(delay.is_some_and(|d| d <= Duration::from_millis(ceiling_ms)));
        }
        assert_eq!(backoff.next_delay(&mut rng), None, "attempts are bounded");
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn full_jitter_covers_the_range() {
        let mut rng = SplitMix64::new(42);
        let mut backoff = Backoff::new(BackoffConfig {
            base: Duration::from_secs(10),
            ..BackoffConfig::default()
        });
        let samples: Vec<Duration> = (0..2000)
            .filter_map(|_| {
                backoff.reset();
                backoff.next_delay(&mut rng)
            })
            .collect();
        let low = samples
            .iter()
            .filter(|d| **d < Duration::from_secs(1))
            .count();
        let high = samples
            .iter()
            .filter(|d| **d > Duration::from_secs(9))
            .count();
        assert!(low > 100 && high > 100, "low {low} high {high}");
    }
}
