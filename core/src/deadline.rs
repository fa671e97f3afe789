//! Instants a timeout away, without the overflow panic of `Instant + Duration`.
//!
//! Timeouts come from callers and config files: `Duration::MAX` ("wait forever") must give a
//! deadline, not a panic. Every deadline the core derives from a caller's duration goes through
//! [`after`].

use std::time::{Duration, Instant};

/// The longest wait a deadline stands for: 30 years, as Tokio's own far-future sleep, so every
/// runtime's timer accepts the instant. A longer timeout (up to `Duration::MAX`) is this long.
pub const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `now + timeout`, with `timeout` capped at [`FAR_FUTURE`]; never panics (on a platform whose
/// `Instant` cannot reach that far, the furthest instant it can reach, halving the wait).
pub fn after(now: Instant, timeout: Duration) -> Instant {
    let mut wait = timeout.min(FAR_FUTURE);
    loop {
        if let Some(at) = now.checked_add(wait) {
            return at;
        }
        wait /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn a_huge_timeout_is_the_far_future_and_a_small_one_is_exact() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(after(now, FAR_FUTURE * 2), now + FAR_FUTURE);
        let secs = Duration::from_secs(5);
        assert_eq!(after(now, secs), now + secs);
        assert_eq!(after(now, Duration::ZERO), now);
    }
}
