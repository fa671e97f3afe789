//! Property tests for backoff (bounds, determinism) and the circuit breaker (a reference model).

use std::time::{Duration, Instant};

use ibconn_core::backoff::{Backoff, BackoffConfig, SplitMix64};
use ibconn_core::breaker::{BreakerConfig, BreakerRejection, CircuitBreaker};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn backoff_stays_within_the_capped_exponential_ceiling(
        seed in any::<u64>(),
        base_ms in 1_u64..5_000,
        factor in 1_u32..5,
        cap_ms in 1_u64..120_000,
        attempts in 1_u32..40,
    ) {
        let config = BackoffConfig {
            base: Duration::from_millis(base_ms),
            factor,
            cap: Duration::from_millis(cap_ms),
            max_attempts: Some(attempts),
        };
        let (mut a, mut b) = (Backoff::new(config), Backoff::new(config));
        let (mut ra, mut rb) = (SplitMix64::new(seed), SplitMix64::new(seed));
        for n in 0..attempts {
            let ceiling = Duration::from_millis(
                (base_ms as u128 * (factor as u128).pow(n.min(60))).min(cap_ms as u128) as u64,
            );
            prop_assert_eq!(a.ceiling(), ceiling);
            let delay = a.next_delay(&mut ra);
            prop_assert!(delay.is_some_and(|d| d <= ceiling));
            prop_assert_eq!(delay, b.next_delay(&mut rb), "same seed, same delays");
        }
        prop_assert_eq!(a.next_delay(&mut ra), None);
    }

    /// The breaker against a tiny reference model driven by random outcomes and time steps.
    #[test]
    fn breaker_matches_its_model(
        threshold in 1_u32..5,
        successes_needed in 1_u32..4,
        probes in 1_u32..3,
        steps in prop::collection::vec((0_u8..4, 0_u64..20_000), 1..120),
    ) {
        let open_for = Duration::from_secs(10);
        let config = BreakerConfig { failure_threshold: threshold, open_for, half_open_probes_max: probes, success_threshold: successes_needed };
        let mut breaker = CircuitBreaker::new(config);
        #[allow(clippy::disallowed_methods)] // one arbitrary base instant
        let mut now = Instant::now();
        // Model: Closed(fails) | Open(until) | HalfOpen(in_flight, ok).
        #[derive(Debug)]
        enum M { Closed(u32), Open(Instant), Half(u32, u32) }
        let mut m = M::Closed(0);
        let mut outstanding = 0_u32; // permits granted and not yet reported
        for (action, dt) in steps {
            now += Duration::from_millis(dt);
            if let M::Open(until) = m { if now >= until { m = M::Half(0, 0); } }
            match action {
                0 | 1 => {
                    let got = breaker.try_acquire(now);
                    let want = match &mut m {
                        M::Closed(_) => Ok(()),
                        M::Open(until) => Err(BreakerRejection::Open { retry_at: *until }),
                        M::Half(in_flight, _) if *in_flight >= probes => Err(BreakerRejection::ProbesBusy),
                        M::Half(in_flight, _) => { *in_flight += 1; Ok(()) }
                    };
                    prop_assert_eq!(got, want);
                    if got.is_ok() { outstanding += 1; }
                }
                2 if outstanding > 0 => {
                    outstanding -= 1;
                    breaker.on_success(now);
                    m = match m {
                        M::Closed(_) => M::Closed(0),
                        M::Half(i, ok) if ok + 1 >= successes_needed => { let _ = i; M::Closed(0) }
                        M::Half(i, ok) => M::Half(i.saturating_sub(1), ok + 1),
                        other => other,
                    };
                }
                3 if outstanding > 0 => {
                    outstanding -= 1;
                    breaker.on_failure(now);
                    m = match m {
                        M::Closed(f) if f + 1 >= threshold => M::Open(now + open_for),
                        M::Closed(f) => M::Closed(f + 1),
                        M::Half(..) => M::Open(now + open_for),
                        other => other,
                    };
                }
                _ => {}
            }
            let state = breaker.snapshot(now).state;
            let want = match m { M::Closed(_) => "closed", M::Open(_) => "open", M::Half(..) => "half_open" };
            prop_assert_eq!(state.as_str(), want);
        }
    }
}
