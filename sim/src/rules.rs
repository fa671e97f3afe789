//! IB's request limits, as data, enforced exactly under caller-supplied time.
//!
//! - [`MessageRate`]: at most `msgs_per_sec_max` (50) client messages in any sliding window of
//!   `window` (1 s); the excess is refused with error 100 and the session is dropped at the
//!   `breaches_max`-th (3rd) breach. A *breach* is a run of refusals: the first refusal at least one
//!   window after the previous breach began starts a new one (and sends one error 100); further
//!   refusals inside it are dropped silently.
//! - [`HistoricalPacer`]: IB's historical-data pacing (docs/ib-facts.md#historical-data-pacing).
//!   Each violation → error 162 "Historical Market Data Service error message:Historical data
//!   request pacing violation". A refused request is not recorded, so it does not count against
//!   later ones. Head-timestamp requests are judged like small-bar requests, whatever the scope,
//!   and count among the ≤ 50 open requests. Real-time-bars requests count in the 10-minute
//!   window only ([`PacedKind::RealTimeBars`]).
//!
//! One rule set serves every driver: [`HistoricalRules::default`] is IB's documented scope, used
//! alike by the TCP server and by the virtual-time worlds ([`crate::PoolWorld`], [`crate::World`]).
//!
//! Windows are half-open: an event at `t` counts at `now` while `now - t < window`, so a request
//! exactly one window later is free again.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The global message-rate rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateRules {
    /// Enforce at all.
    pub enabled: bool,
    /// Messages allowed per window (IB: 50).
    pub msgs_per_sec_max: u32,
    /// The sliding window (IB: 1 s).
    pub window: Duration,
    /// The breach at which the session is dropped (IB: 3).
    pub breaches_max: u32,
}

impl Default for RateRules {
    fn default() -> Self {
        Self {
            enabled: true,
            msgs_per_sec_max: 50,
            window: Duration::from_secs(1),
            breaches_max: 3,
        }
    }
}

/// What to do with one client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Process it.
    Accept,
    /// Drop it.
    Reject {
        /// This refusal starts a breach: send error 100.
        notify: bool,
        /// This breach is the last allowed: close the session (after the error).
        disconnect: bool,
    },
}

/// Per-session sliding-window message counter.
#[derive(Debug, Clone)]
pub struct MessageRate {
    rules: RateRules,
    accepted: VecDeque<Instant>,
    breaches: u32,
    breach_started: Option<Instant>,
}

impl MessageRate {
    /// A counter enforcing `rules`.
    pub fn new(rules: RateRules) -> Self {
        Self {
            rules,
            accepted: VecDeque::new(),
            breaches: 0,
            breach_started: None,
        }
    }

    /// Breaches so far.
    pub fn breaches(&self) -> u32 {
        self.breaches
    }

    /// Judge one message arriving at `now` (and record it if accepted).
    pub fn check(&mut self, now: Instant) -> RateVerdict {
        if !self.rules.enabled {
            return RateVerdict::Accept;
        }
        let window = self.rules.window;
        while self
            .accepted
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            self.accepted.pop_front();
        }
        if self.accepted.len() < self.rules.msgs_per_sec_max as usize {
            self.accepted.push_back(now);
            return RateVerdict::Accept;
        }
        let new_breach = self
            .breach_started
            .is_none_or(|start| now.saturating_duration_since(start) >= window);
        if new_breach {
            self.breaches += 1;
            self.breach_started = Some(now);
        }
        RateVerdict::Reject {
            notify: new_breach,
            disconnect: new_breach && self.breaches >= self.rules.breaches_max,
        }
    }
}

/// Bars of at most this many seconds are IB's "small bars": the hard pacing rules apply to them
/// ("Pacing Violations for Small Bars (30 secs or less)"), and their history reaches back only
/// about six months (docs/ib-facts.md#historical-data-pacing, #data-availability).
pub const SMALL_BAR_SECS: i64 = 30;

/// The historical-data pacing rules (IB "Historical Data Limitations").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoricalRules {
    /// Enforce at all.
    pub enabled: bool,
    /// Apply the window, identical and same-contract rules only to bars of at most this many
    /// seconds (IB documents 30 s, [`SMALL_BAR_SECS`]: "Pacing Violations for Small Bars"; the
    /// default). `None` = every bar size ([`HistoricalRules::strict`]). The open-request cap
    /// applies to every size, and head-timestamp requests are under every rule either way.
    pub max_bar_secs: Option<i64>,
    /// The long window (IB: 10 min) …
    pub window: Duration,
    /// … and the weight allowed in it (IB: 60; the 61st request in any 10 minutes is refused).
    pub window_max: u32,
    /// No identical request within this (IB: 15 s).
    pub identical_within: Duration,
    /// The same contract + exchange + tick type window (IB: 2 s) …
    pub same_contract_within: Duration,
    /// … and the weight allowed in it (IB: 6 or more is a violation, so 5).
    pub same_contract_max: u32,
    /// How much a `BID_ASK` request weighs (IB: counts twice).
    pub bid_ask_weight: u32,
    /// Open (unanswered or streaming) requests allowed (IB: 50; the 51st is refused).
    pub max_open: u32,
}

impl Default for HistoricalRules {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bar_secs: Some(SMALL_BAR_SECS),
            window: Duration::from_secs(600),
            window_max: 60,
            identical_within: Duration::from_secs(15),
            same_contract_within: Duration::from_secs(2),
            same_contract_max: 5,
            bid_ask_weight: 2,
            max_open: 50,
        }
    }
}

impl HistoricalRules {
    /// Stricter than IB: the window, identical and same-contract rules on every bar size (IB
    /// lifted them for bars of a minute and more). For clients that want a margin; not a default
    /// anywhere.
    pub fn strict() -> Self {
        Self {
            max_bar_secs: None,
            ..Self::default()
        }
    }
}

/// What kind of HMDS request the pacer judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacedKind {
    /// `reqHistoricalData` with bars of this many seconds (nominal for a day and longer): the
    /// window, identical and same-contract rules apply only within
    /// [`HistoricalRules::max_bar_secs`].
    Bars {
        /// Bar length in seconds.
        secs: i64,
    },
    /// `reqHeadTimeStamp`: under every rule, whatever the bar-size scope
    /// (docs/ib-facts.md#historical-data-pacing).
    HeadTimestamp,
    /// `reqRealTimeBars`: IB counts each new request in the 10-minute window ("60 new requests
    /// per 10 minutes", also under historical pacing); the open-request cap, identical and
    /// same-contract rules do not apply (a subscription is not an open HMDS query).
    RealTimeBars,
}

/// One historical or head-timestamp request as the pacer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacedRequest {
    /// Every parameter that makes two requests "identical".
    pub identity: String,
    /// Contract + exchange + tick type (shared by bars and head timestamps of one contract).
    pub contract_tick: String,
    /// Whether it is a `BID_ASK` request.
    pub bid_ask: bool,
    /// Bars (of which size) or a head timestamp.
    pub kind: PacedKind,
}

impl PacedRequest {
    /// Whether the window, identical and same-contract rules apply to it under `rules`.
    fn in_scope(&self, rules: &HistoricalRules) -> bool {
        match self.kind {
            PacedKind::Bars { secs } => rules.max_bar_secs.is_none_or(|max| secs <= max),
            PacedKind::HeadTimestamp | PacedKind::RealTimeBars => true,
        }
    }
}

/// Which pacing rule a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacingViolation {
    /// More open requests than allowed.
    TooManyOpen,
    /// An identical request within `identical_within`.
    Identical,
    /// Too many for the same contract, exchange and tick type within `same_contract_within`.
    SameContract,
    /// Too many in the long window.
    Window,
}

/// Gateway-wide historical pacing state.
#[derive(Debug, Clone)]
pub struct HistoricalPacer {
    rules: HistoricalRules,
    window: VecDeque<(Instant, u32)>,
    identical: BTreeMap<String, Instant>,
    same_contract: BTreeMap<String, VecDeque<(Instant, u32)>>,
    /// Time IB's servers lived through that the caller's clock skipped ([`HistoricalPacer::age`]):
    /// every rule is judged at `now + aged`.
    aged: Duration,
}

fn prune(q: &mut VecDeque<(Instant, u32)>, now: Instant, window: Duration) -> u32 {
    while q
        .front()
        .is_some_and(|&(t, _)| now.saturating_duration_since(t) >= window)
    {
        q.pop_front();
    }
    q.iter().map(|&(_, w)| w).sum()
}

impl HistoricalPacer {
    /// A pacer enforcing `rules`.
    pub fn new(rules: HistoricalRules) -> Self {
        Self {
            rules,
            window: VecDeque::new(),
            identical: BTreeMap::new(),
            same_contract: BTreeMap::new(),
            aged: Duration::ZERO,
        }
    }

    /// `by` passed for IB's servers but not on the caller's clock (the simulated host slept, its
    /// monotonic clock stopped, while the real HMDS kept counting): every window ages by `by`.
    pub fn age(&mut self, by: Duration) {
        self.aged = self.aged.saturating_add(by);
    }

    /// The rules in force.
    pub fn rules(&self) -> &HistoricalRules {
        &self.rules
    }

    /// Judge a request at `now` with `open` requests already open; record it if allowed.
    pub fn check(
        &mut self,
        now: Instant,
        req: &PacedRequest,
        open: usize,
    ) -> Result<(), PacingViolation> {
        let now = now + self.aged;
        let r = &self.rules;
        if !r.enabled {
            return Ok(());
        }
        if req.kind == PacedKind::RealTimeBars {
            if prune(&mut self.window, now, r.window) + 1 > r.window_max {
                return Err(PacingViolation::Window);
            }
            self.window.push_back((now, 1));
            return Ok(());
        }
        if open >= r.max_open as usize {
            return Err(PacingViolation::TooManyOpen);
        }
        if !req.in_scope(r) {
            return Ok(());
        }
        let weight = if req.bid_ask { r.bid_ask_weight } else { 1 };
        let identical_within = r.identical_within;
        self.identical
            .retain(|_, t| now.saturating_duration_since(*t) < identical_within);
        if self.identical.contains_key(&req.identity) {
            return Err(PacingViolation::Identical);
        }
        let same = self
            .same_contract
            .entry(req.contract_tick.clone())
            .or_default();
        if prune(same, now, r.same_contract_within) + weight > r.same_contract_max {
            return Err(PacingViolation::SameContract);
        }
        if prune(&mut self.window, now, r.window) + weight > r.window_max {
            return Err(PacingViolation::Window);
        }
        same.push_back((now, weight));
        self.window.push_back((now, weight));
        self.identical.insert(req.identity.clone(), now);
        let within = r.same_contract_within;
        self.same_contract.retain(|_, q| {
            prune(q, now, within);
            !q.is_empty()
        });
        Ok(())
    }
}

#[cfg(test)]
// One arbitrary origin instant per test; everything after is derived from it.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn req(id: usize, contract: &str) -> PacedRequest {
        PacedRequest {
            identity: format!("{contract}/{id}"),
            contract_tick: contract.to_owned(),
            bid_ask: false,
            kind: PacedKind::Bars { secs: 5 },
        }
    }

    fn head(id: usize, contract: &str) -> PacedRequest {
        PacedRequest {
            identity: format!("head {contract}/{id}"),
            kind: PacedKind::HeadTimestamp,
            ..req(id, contract)
        }
    }

    /// Rules with only the rule under test active (others set out of the way).
    fn only(f: impl FnOnce(&mut HistoricalRules)) -> HistoricalPacer {
        let mut r = HistoricalRules {
            window_max: 10_000,
            identical_within: Duration::ZERO,
            same_contract_max: 10_000,
            max_open: 10_000,
            ..HistoricalRules::default()
        };
        f(&mut r);
        HistoricalPacer::new(r)
    }

    #[test]
    fn fifty_messages_per_second_then_error_100_then_drop_at_third_breach() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(RateRules::default());
        for i in 0..50 {
            assert_eq!(rate.check(t0 + ms(i)), RateVerdict::Accept, "message {i}");
        }
        assert_eq!(
            rate.check(t0 + ms(999)),
            RateVerdict::Reject {
                notify: true,
                disconnect: false
            },
            "51st within the second"
        );
        assert_eq!(
            rate.check(t0 + ms(999)),
            RateVerdict::Reject {
                notify: false,
                disconnect: false
            },
            "same breach"
        );
        // At 1.000 s the first message leaves the window: exactly one slot frees up.
        assert_eq!(rate.check(t0 + ms(1000)), RateVerdict::Accept);
        assert!(matches!(
            rate.check(t0 + ms(1000)),
            RateVerdict::Reject { notify: false, .. }
        ));
        // A second breach one window after the first began.
        let mut t = t0 + ms(1999);
        for _ in 0..60 {
            let _ = rate.check(t);
        }
        assert_eq!(rate.breaches(), 2);
        t += ms(1000);
        let verdicts: Vec<RateVerdict> = (0..60).map(|_| rate.check(t)).collect();
        assert!(verdicts.contains(&RateVerdict::Reject {
            notify: true,
            disconnect: true
        }));
        assert_eq!(rate.breaches(), 3);
    }

    #[test]
    fn sixty_requests_per_ten_minutes() {
        let t0 = Instant::now();
        let mut p = only(|r| r.window_max = 60);
        for i in 0..60 {
            let at = t0 + Duration::from_secs(i as u64 * 9);
            assert_eq!(p.check(at, &req(i, "c"), 0), Ok(()), "request {}", i + 1);
        }
        let last = t0 + Duration::from_secs(599);
        assert_eq!(
            p.check(last, &req(60, "c"), 0),
            Err(PacingViolation::Window),
            "61st within 10 min"
        );
        // The first request leaves the window at exactly 600 s.
        let free = t0 + Duration::from_secs(600);
        assert_eq!(
            p.check(free - ms(1), &req(61, "c"), 0),
            Err(PacingViolation::Window)
        );
        assert_eq!(p.check(free, &req(62, "c"), 0), Ok(()));
    }

    #[test]
    fn bid_ask_counts_twice() {
        let t0 = Instant::now();
        let mut p = only(|r| r.window_max = 60);
        for i in 0..59 {
            assert_eq!(p.check(t0, &req(i, "c"), 0), Ok(()));
        }
        let mut ba = req(100, "c");
        ba.bid_ask = true;
        assert_eq!(
            p.check(t0, &ba, 0),
            Err(PacingViolation::Window),
            "59 + 2 > 60"
        );
        assert_eq!(p.check(t0, &req(101, "c"), 0), Ok(()), "59 + 1 = 60");

        let mut p = only(|r| r.same_contract_max = 5);
        for i in 0..3 {
            assert_eq!(p.check(t0, &req(i, "c"), 0), Ok(()));
        }
        assert_eq!(p.check(t0, &ba, 0), Ok(()), "3 + 2 = 5");
        assert_eq!(
            p.check(t0, &req(9, "c"), 0),
            Err(PacingViolation::SameContract)
        );
    }

    #[test]
    fn identical_request_within_15_seconds() {
        let t0 = Instant::now();
        let mut p = only(|r| r.identical_within = Duration::from_secs(15));
        assert_eq!(p.check(t0, &req(1, "c"), 0), Ok(()));
        assert_eq!(
            p.check(t0 + ms(14_900), &req(1, "c"), 0),
            Err(PacingViolation::Identical)
        );
        assert_eq!(
            p.check(t0 + ms(14_900), &req(2, "c"), 0),
            Ok(()),
            "not identical"
        );
        assert_eq!(p.check(t0 + ms(15_000), &req(1, "c"), 0), Ok(()));
    }

    #[test]
    fn six_for_the_same_contract_within_2_seconds() {
        let t0 = Instant::now();
        let mut p = only(|r| r.same_contract_max = 5);
        for i in 0..5 {
            assert_eq!(p.check(t0 + ms(i as u64 * 100), &req(i, "aapl"), 0), Ok(()));
        }
        assert_eq!(
            p.check(t0 + ms(1999), &req(5, "aapl"), 0),
            Err(PacingViolation::SameContract),
            "6th within 2 s"
        );
        assert_eq!(
            p.check(t0 + ms(1999), &req(6, "msft"), 0),
            Ok(()),
            "other contract"
        );
        // The first leaves the 2 s window at exactly 2.000 s.
        assert_eq!(p.check(t0 + ms(2000), &req(7, "aapl"), 0), Ok(()));
    }

    #[test]
    fn time_the_caller_skipped_ages_every_window() {
        let t0 = Instant::now();
        let mut p = only(|r| {
            r.window_max = 2;
            r.identical_within = Duration::from_secs(15);
        });
        assert_eq!(p.check(t0, &req(1, "c"), 0), Ok(()));
        assert_eq!(p.check(t0, &req(2, "c"), 0), Ok(()));
        assert_eq!(p.check(t0, &req(3, "c"), 0), Err(PacingViolation::Window));
        // The host slept 10 minutes: IB's servers counted them, the caller's clock did not.
        p.age(Duration::from_secs(600));
        assert_eq!(p.check(t0, &req(3, "c"), 0), Ok(()));
        assert_eq!(p.check(t0, &req(4, "c"), 0), Ok(()));
        assert_eq!(
            p.check(t0, &req(4, "c"), 0),
            Err(PacingViolation::Identical)
        );
    }

    #[test]
    fn more_than_fifty_open_requests() {
        let t0 = Instant::now();
        let mut p = only(|r| r.max_open = 50);
        assert_eq!(p.check(t0, &req(1, "c"), 49), Ok(()), "50th open");
        assert_eq!(
            p.check(t0, &req(2, "c"), 50),
            Err(PacingViolation::TooManyOpen),
            "51st open"
        );
    }

    #[test]
    fn real_time_bars_count_in_the_window_only() {
        let t0 = Instant::now();
        let rtb = |id: usize| PacedRequest {
            kind: PacedKind::RealTimeBars,
            ..req(id, "c")
        };
        let mut p = HistoricalPacer::new(HistoricalRules::default());
        // Not open requests, not identical, not a same-contract burst: the window alone.
        for _ in 0..59 {
            assert_eq!(p.check(t0, &rtb(1), 1000), Ok(()));
        }
        assert_eq!(p.check(t0, &req(2, "c"), 0), Ok(()), "the 60th request");
        assert_eq!(p.check(t0, &rtb(3), 0), Err(PacingViolation::Window));
        assert_eq!(p.check(t0 + ms(600_000), &rtb(3), 0), Ok(()));
    }

    #[test]
    fn the_default_scope_is_ibs_small_bars_and_strict_covers_every_size() {
        let t0 = Instant::now();
        assert_eq!(
            HistoricalRules::default().max_bar_secs,
            Some(SMALL_BAR_SECS)
        );
        let mut p = HistoricalPacer::new(HistoricalRules::default());
        let mut hourly = req(1, "c");
        hourly.kind = PacedKind::Bars { secs: 3600 };
        assert_eq!(p.check(t0, &hourly, 0), Ok(()));
        assert_eq!(
            p.check(t0, &hourly, 0),
            Ok(()),
            "identical, but 1-hour bars are exempt"
        );
        let small = req(2, "c");
        assert_eq!(p.check(t0, &small, 0), Ok(()));
        assert_eq!(p.check(t0, &small, 0), Err(PacingViolation::Identical));
        let mut strict = HistoricalPacer::new(HistoricalRules::strict());
        assert_eq!(strict.check(t0, &hourly, 0), Ok(()));
        assert_eq!(
            strict.check(t0, &hourly, 0),
            Err(PacingViolation::Identical)
        );
        let mut off = HistoricalPacer::new(HistoricalRules {
            enabled: false,
            ..HistoricalRules::default()
        });
        assert_eq!(off.check(t0, &small, 1000), Ok(()));
    }

    #[test]
    fn head_timestamps_are_paced_like_small_bars_whatever_the_scope() {
        let t0 = Instant::now();
        // Even a scope that exempts every bar size keeps head timestamps under the rules.
        let mut p = HistoricalPacer::new(HistoricalRules {
            max_bar_secs: Some(0),
            ..HistoricalRules::default()
        });
        assert_eq!(p.check(t0, &head(1, "c"), 0), Ok(()));
        assert_eq!(
            p.check(t0 + ms(14_999), &head(1, "c"), 0),
            Err(PacingViolation::Identical)
        );
        // They share the same-contract burst with bars of that contract and tick type …
        let mut p = only(|r| r.same_contract_max = 5);
        for i in 0..3 {
            assert_eq!(p.check(t0, &req(i, "c"), 0), Ok(()));
        }
        assert_eq!(p.check(t0, &head(3, "c"), 0), Ok(()));
        assert_eq!(p.check(t0, &head(4, "c"), 0), Ok(()));
        assert_eq!(
            p.check(t0, &req(5, "c"), 0),
            Err(PacingViolation::SameContract)
        );
        // … fill the 10-minute window …
        let mut p = only(|r| r.window_max = 60);
        for i in 0..60 {
            assert_eq!(p.check(t0, &head(i, &format!("c{i}")), 0), Ok(()));
        }
        assert_eq!(p.check(t0, &req(60, "x"), 0), Err(PacingViolation::Window));
        // … and are refused past the open-request cap.
        let mut p = only(|r| r.max_open = 50);
        assert_eq!(
            p.check(t0, &head(1, "c"), 50),
            Err(PacingViolation::TooManyOpen)
        );
    }
}
