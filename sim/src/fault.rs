//! Faults the gateway can suffer, scheduled by a test or drawn at random from the gateway seed.
//!
//! Names follow the simulators we learn from: `pause`/`resume` (madsim: a frozen peer with the socket
//! still open, i.e. half-open), `hold`/`release` (turmoil: bytes buffered in flight),
//! `crash`/`bounce` (turmoil: the process dies / comes back) and a `restart` that is both. IB-specific
//! faults ([`Fault::LinkLoss`], [`Fault::FarmFlap`], [`Fault::NightlyReset`]) send IB's live texts
//! (docs/ib-facts.md#error-texts). Request faults ([`Fault::SpuriousNoData`],
//! [`Fault::NeverAnswer`], [`Fault::DuplicateTickerId`]) mistreat a connection's next few HMDS
//! requests the ways IB sometimes does.
//!
//! Apply one now with [`Gateway::inject`](crate::Gateway::inject), later with
//! [`Gateway::schedule_fault`](crate::Gateway::schedule_fault), or let [`Chaos`] draw them.

use std::time::Duration;

use crate::conn_id::ConnId;
pub use crate::errors::{Farm, Locale};
use crate::rng::SplitMix64;

/// Which connections a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every connection open when the fault applies.
    All,
    /// One connection.
    Conn(ConnId),
}

impl Target {
    /// Whether `conn` is hit.
    pub fn hits(self, conn: ConnId) -> bool {
        match self {
            Self::All => true,
            Self::Conn(c) => c == conn,
        }
    }
}

/// A fault. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Close the socket from the gateway side (bytes already queued are sent first).
    Close(Target),
    /// Half-open: the gateway stops answering and stops reading, the socket stays open. Input is
    /// buffered and processed on [`Fault::Resume`].
    Pause(Target),
    /// End a [`Fault::Pause`].
    Resume(Target),
    /// Delay every later write by `by` (zero ends it); order is kept.
    Delay {
        /// Which connections.
        target: Target,
        /// The extra delay.
        by: Duration,
    },
    /// Buffer every write until [`Fault::Release`].
    Hold(Target),
    /// Send what [`Fault::Hold`] buffered.
    Release(Target),
    /// Split every later write at random points (seeded) into several transmits, or stop.
    Split {
        /// Which connections.
        target: Target,
        /// On or off.
        on: bool,
    },
    /// Write `len` random bytes (at least 4) between two frames. The first byte is non-zero, so the
    /// length prefix the client reads is over IB's 16 MiB limit: a clean framing error.
    Garbage {
        /// Which connections.
        target: Target,
        /// How many bytes.
        len: usize,
    },
    /// Send any IB error with request id −1 to the ready sessions.
    EmitError {
        /// Which connections.
        target: Target,
        /// IB's code.
        code: i32,
        /// IB's text.
        text: String,
    },
    /// 1100 ("Connectivity between IBKR and Trader Workstation has been lost."), then after `outage`
    /// 1101 (`data_lost`) or 1102. Historical data waits meanwhile.
    LinkLoss {
        /// How long the link stays down.
        outage: Duration,
        /// 1101 ("data lost": resubscribe) instead of 1102 ("data maintained").
        data_lost: bool,
    },
    /// A farm reports broken, then OK after `outage`.
    FarmFlap {
        /// Which farm.
        farm: Farm,
        /// How long it stays down.
        outage: Duration,
    },
    /// IB's nightly server reset: the sockets stay, the market-data and HMDS farms report broken
    /// and historical replies wait for `pause` (`None`: drawn from the seed in 1–3 min), then the
    /// farms report OK.
    NightlyReset {
        /// How long data pauses.
        pause: Option<Duration>,
    },
    /// The gateway process restarts: every socket closes at once (queued bytes are lost), all
    /// state (held client ids, pacing history) is forgotten, and the port refuses connections for
    /// `down_for`.
    Restart {
        /// How long the port refuses.
        down_for: Duration,
    },
    /// The gateway process dies: like [`Fault::Restart`] but the port refuses until
    /// [`Fault::Bounce`].
    Crash,
    /// The gateway process is back: the port accepts again.
    Bounce,
    /// Send 162 texts in this language from now on.
    Locale(Locale),
    /// Answer the next `requests` historical requests on the target connections that have data
    /// with IB's 162 "HMDS query returned no data" instead: IB does this now and then, and the
    /// same request asked again later returns its bars. Pacing counts them as usual. Zero ends
    /// a fault in force.
    SpuriousNoData {
        /// Which connections.
        target: Target,
        /// How many requests per connection.
        requests: u32,
    },
    /// Accept the next `requests` historical or head-timestamp requests on the target
    /// connections and never answer them, as IB sometimes does
    /// (docs/ib-facts.md#request-quirks). Each stays open — counted against the open-request cap
    /// — until the client cancels it (a historical cancel is answered with 162 "query
    /// cancelled") or the connection closes. Zero ends a fault in force.
    NeverAnswer {
        /// Which connections.
        target: Target,
        /// How many requests per connection.
        requests: u32,
    },
    /// Refuse the next `requests` historical or head-timestamp requests on the target
    /// connections with 322 "Duplicate ticker id", as IB does while it still holds a request
    /// under that id (stale ids after a reconnect or restart: stoqey/ib#240). A client that
    /// really reuses an open id gets the 322 without a fault. Zero ends a fault in force.
    DuplicateTickerId {
        /// Which connections.
        target: Target,
        /// How many requests per connection.
        requests: u32,
    },
}

/// Kinds of fault [`Chaos`] may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChaosKind {
    /// [`Fault::Close`] of one random connection.
    Close,
    /// [`Fault::Pause`] of one random connection (never resumed: a dead half-open socket).
    HalfOpen,
    /// [`Fault::Delay`] of 0.5–5 s on one random connection for 10–60 s.
    Delay,
    /// [`Fault::Split`] on one random connection.
    Split,
    /// [`Fault::Garbage`] of 4–64 bytes on one random connection.
    Garbage,
    /// [`Fault::LinkLoss`] of 5–120 s, data lost half of the time.
    LinkLoss,
    /// [`Fault::FarmFlap`] of a random farm for 1–60 s.
    FarmFlap,
    /// [`Fault::NightlyReset`] with a seeded 1–3 min pause.
    NightlyReset,
    /// [`Fault::Restart`] with the port down 5–120 s.
    Restart,
    /// [`Fault::SpuriousNoData`] for the next 1–3 requests of one random connection.
    SpuriousNoData,
    /// [`Fault::NeverAnswer`] for the next 1–3 requests of one random connection.
    NeverAnswer,
    /// [`Fault::DuplicateTickerId`] for the next 1–3 requests of one random connection.
    DuplicateTickerId,
}

impl ChaosKind {
    /// Every kind.
    pub const ALL: [Self; 12] = [
        Self::Close,
        Self::HalfOpen,
        Self::Delay,
        Self::Split,
        Self::Garbage,
        Self::LinkLoss,
        Self::FarmFlap,
        Self::NightlyReset,
        Self::Restart,
        Self::SpuriousNoData,
        Self::NeverAnswer,
        Self::DuplicateTickerId,
    ];
}

/// Random faults: one every `mean_interval` on average (uniform in 0.5–1.5 ×), of a kind drawn
/// from `kinds`, all from the gateway seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chaos {
    /// Mean time between faults.
    pub mean_interval: Duration,
    /// The kinds to draw from (empty: none).
    pub kinds: Vec<ChaosKind>,
}

impl Chaos {
    /// Every kind, one every `mean_interval` on average.
    pub fn every(mean_interval: Duration) -> Self {
        Self {
            mean_interval,
            kinds: ChaosKind::ALL.to_vec(),
        }
    }

    /// The gap before the next fault.
    pub(crate) fn next_gap(&self, rng: &mut SplitMix64) -> Duration {
        let mean = u64::try_from(self.mean_interval.as_millis()).unwrap_or(u64::MAX);
        let ms = mean / 2 + rng.below_or_eq(mean);
        Duration::from_millis(ms.max(1))
    }

    /// Draw one fault and, for faults that end, the fault that ends them with its delay.
    /// `conns` are the candidate connections (in order); `None` when there is nothing to hit.
    pub(crate) fn draw(
        &self,
        rng: &mut SplitMix64,
        conns: &[ConnId],
    ) -> Option<(Fault, Option<(Duration, Fault)>)> {
        let n = u64::try_from(self.kinds.len()).ok()?.checked_sub(1)?;
        let kind = *self.kinds.get(usize::try_from(rng.below_or_eq(n)).ok()?)?;
        let secs = |rng: &mut SplitMix64, lo: u64, hi: u64| {
            Duration::from_millis(lo * 1000 + rng.below_or_eq((hi - lo) * 1000))
        };
        let one = |rng: &mut SplitMix64| -> Option<Target> {
            let last = u64::try_from(conns.len()).ok()?.checked_sub(1)?;
            let i = usize::try_from(rng.below_or_eq(last)).ok()?;
            conns.get(i).map(|&c| Target::Conn(c))
        };
        Some(match kind {
            ChaosKind::Close => (Fault::Close(one(rng)?), None),
            ChaosKind::HalfOpen => (Fault::Pause(one(rng)?), None),
            ChaosKind::Delay => {
                let target = one(rng)?;
                let by = Duration::from_millis(500 + rng.below_or_eq(4_500));
                let end = Fault::Delay {
                    target,
                    by: Duration::ZERO,
                };
                (Fault::Delay { target, by }, Some((secs(rng, 10, 60), end)))
            }
            ChaosKind::Split => (
                Fault::Split {
                    target: one(rng)?,
                    on: true,
                },
                None,
            ),
            ChaosKind::Garbage => {
                let target = one(rng)?;
                let len = 4 + usize::try_from(rng.below_or_eq(60)).unwrap_or(0);
                (Fault::Garbage { target, len }, None)
            }
            ChaosKind::LinkLoss => (
                Fault::LinkLoss {
                    outage: secs(rng, 5, 120),
                    data_lost: rng.next_u64() & 1 == 1,
                },
                None,
            ),
            ChaosKind::FarmFlap => {
                let farm = [Farm::MarketData, Farm::Historical, Farm::SecDef]
                    [usize::try_from(rng.below_or_eq(2)).unwrap_or(0)];
                let outage = secs(rng, 1, 60);
                (Fault::FarmFlap { farm, outage }, None)
            }
            ChaosKind::NightlyReset => (Fault::NightlyReset { pause: None }, None),
            ChaosKind::Restart => (
                Fault::Restart {
                    down_for: secs(rng, 5, 120),
                },
                None,
            ),
            ChaosKind::SpuriousNoData => {
                let target = one(rng)?;
                let requests = 1 + u32::try_from(rng.below_or_eq(2)).unwrap_or(0);
                (Fault::SpuriousNoData { target, requests }, None)
            }
            ChaosKind::NeverAnswer => {
                let target = one(rng)?;
                let requests = 1 + u32::try_from(rng.below_or_eq(2)).unwrap_or(0);
                (Fault::NeverAnswer { target, requests }, None)
            }
            ChaosKind::DuplicateTickerId => {
                let target = one(rng)?;
                let requests = 1 + u32::try_from(rng.below_or_eq(2)).unwrap_or(0);
                (Fault::DuplicateTickerId { target, requests }, None)
            }
        })
    }
}
