//! Model-based property test of the client-id registry (pure state, no files).
//!
//! A model tracks every grant handed out and decides, independently of the registry, which grants are
//! still *live*: not released, not lost to a 326, holder process alive, heartbeat within the TTL.
//! After every operation: no two live grants share an id, every live grant is still held, and an
//! allocation returns exactly the lowest id that is neither live-leased nor foreign (or fails when
//! there is none). Purpose ranges overlap on purpose (id 12), which must not matter.

use std::collections::BTreeMap;
use std::time::Duration;

use ibconn_core::client_id::{
    ClientId, Grant, Holder, IdRange, Liveness, Purpose, RegistryConfig, RegistryError,
    RegistryState, UnixMillis,
};
use proptest::prelude::*;

const TTL_MS: u64 = 10_000;
const COOLDOWN_MS: u64 = 20_000;

fn config() -> RegistryConfig {
    let mut ranges = BTreeMap::new();
    ranges.insert(Purpose::Custom("a".to_owned()), IdRange::new(10, 12));
    ranges.insert(Purpose::Custom("b".to_owned()), IdRange::new(12, 14));
    RegistryConfig {
        ranges,
        lease_ttl: Duration::from_millis(TTL_MS),
        foreign_cooldown: Duration::from_millis(COOLDOWN_MS),
        max_conflict_attempts: 5,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Allocate { holder: usize, purpose_b: bool },
    Release(usize),
    Heartbeat(usize),
    Conflict(usize),
    Advance(u64),
    Kill(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0_usize..4, any::<bool>()).prop_map(|(holder, purpose_b)| Op::Allocate { holder, purpose_b }),
        2 => any::<usize>().prop_map(Op::Release),
        3 => any::<usize>().prop_map(Op::Heartbeat),
        1 => any::<usize>().prop_map(Op::Conflict),
        3 => (0_u64..6_000).prop_map(Op::Advance),
        1 => (0_usize..4).prop_map(Op::Kill),
    ]
}

struct Held {
    grant: Grant,
    holder: usize,
    heartbeat_at: u64,
    gone: bool,
}

struct Model {
    now: u64,
    alive: [bool; 4],
    held: Vec<Held>,
    foreign_until: BTreeMap<ClientId, u64>,
}

impl Model {
    fn is_live(&self, h: &Held) -> bool {
        !h.gone && self.alive[h.holder] && self.now < h.heartbeat_at + TTL_MS
    }

    fn live_ids(&self) -> Vec<ClientId> {
        self.held
            .iter()
            .filter(|h| self.is_live(h))
            .map(|h| h.grant.id)
            .collect()
    }

    fn lowest_free(&self, range: IdRange) -> Option<ClientId> {
        let live = self.live_ids();
        (range.first..=range.last).find(|id| {
            !live.contains(id)
                && self
                    .foreign_until
                    .get(id)
                    .is_none_or(|until| self.now >= *until)
        })
    }

    /// Index (into `held`) of the n-th grant whose holder is alive and that was not given up.
    fn pick(&self, n: usize) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.held.len())
            .filter(|&i| !self.held[i].gone && self.alive[self.held[i].holder])
            .collect();
        candidates.get(n % candidates.len().max(1)).copied()
    }
}

fn holder(i: usize) -> Holder {
    Holder::from_pid(u32::try_from(100 + i).unwrap_or(0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_two_live_leases_share_an_id(ops in prop::collection::vec(arb_op(), 1..80)) {
        let config = config();
        let mut state = RegistryState::new();
        let mut m = Model { now: 1_000_000, alive: [true; 4], held: Vec::new(), foreign_until: BTreeMap::new() };
        for op in ops {
            let alive = m.alive;
            let liveness = move |h: &Holder| {
                let i = usize::try_from(h.pid).unwrap_or(0).wrapping_sub(100);
                if alive.get(i).copied().unwrap_or(false) { Liveness::Alive } else { Liveness::Dead }
            };
            let now = UnixMillis(m.now);
            match op {
                Op::Advance(ms) => m.now += ms,
                Op::Kill(i) => m.alive[i] = false,
                Op::Allocate { holder: h, purpose_b } => {
                    if !m.alive[h] { continue; }
                    let purpose = Purpose::Custom(if purpose_b { "b" } else { "a" }.to_owned());
                    let range = config.ranges[&purpose];
                    let expected = m.lowest_free(range);
                    match state.allocate(&config, &purpose, &holder(h), now, &liveness) {
                        Ok(grant) => {
                            prop_assert_eq!(Some(grant.id), expected, "not the lowest free id");
                            m.held.push(Held { grant, holder: h, heartbeat_at: m.now, gone: false });
                        }
                        Err(RegistryError::RangeExhausted { .. }) => prop_assert_eq!(expected, None, "free id not handed out"),
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Op::Release(n) => {
                    if let Some(i) = m.pick(n) {
                        let live = m.is_live(&m.held[i]);
                        let result = state.release(&m.held[i].grant);
                        // A live lease is always releasable; an expired one may already be reclaimed.
                        prop_assert!(!live || result.is_ok());
                        m.held[i].gone = true;
                    }
                }
                Op::Heartbeat(n) => {
                    if let Some(i) = m.pick(n) {
                        let live = m.is_live(&m.held[i]);
                        let result = state.heartbeat(&m.held[i].grant, now);
                        prop_assert_eq!(result.is_ok(), live, "heartbeat disagrees with the model");
                        if live { m.held[i].heartbeat_at = m.now; } else { m.held[i].gone = true; }
                    }
                }
                Op::Conflict(n) => {
                    if let Some(i) = m.pick(n) {
                        let h = m.held[i].holder;
                        let grant = m.held[i].grant.clone();
                        m.held[i].gone = true;
                        m.foreign_until.insert(grant.id, m.now + COOLDOWN_MS);
                        let expected = m.lowest_free(config.ranges[&grant.purpose]);
                        match state.on_client_id_in_use(&config, &grant, 0, &holder(h), now, &liveness) {
                            Ok(next) => {
                                prop_assert_eq!(Some(next.id), expected);
                                prop_assert_ne!(next.id, grant.id, "the conflicting id came back");
                                m.held.push(Held { grant: next, holder: h, heartbeat_at: m.now, gone: false });
                            }
                            Err(RegistryError::RangeExhausted { .. }) => prop_assert_eq!(expected, None),
                            Err(e) => return Err(TestCaseError::fail(e.to_string())),
                        }
                    }
                }
            }
            // Invariants.
            let mut live = m.live_ids();
            let n = live.len();
            live.sort_unstable();
            live.dedup();
            prop_assert_eq!(live.len(), n, "two live leases share an id");
            for h in m.held.iter().filter(|h| m.is_live(h)) {
                prop_assert!(state.holds(&h.grant), "live lease {} lost", h.grant.id);
            }
        }
    }
}

#[test]
fn conflicts_are_bounded_and_typed() {
    let config = RegistryConfig {
        max_conflict_attempts: 3,
        ..RegistryConfig::default()
    };
    let mut state = RegistryState::new();
    let me = holder(0);
    let now = UnixMillis(5_000);
    let live = |_: &Holder| Liveness::Alive;
    let mut grant = state.allocate(&config, &Purpose::Api, &me, now, &live).ok();
    let mut ids = Vec::new();
    let mut conflicts = 0;
    let outcome = loop {
        let Some(g) = grant.take() else { break None };
        ids.push(g.id);
        match state.on_client_id_in_use(&config, &g, conflicts, &me, now, &live) {
            Ok(next) => grant = Some(next),
            Err(e) => break Some(e),
        }
        conflicts += 1;
    };
    assert_eq!(ids, [1000, 1001, 1002]);
    assert_eq!(
        outcome,
        Some(RegistryError::TooManyConflicts {
            purpose: Purpose::Api,
            attempts: 3
        })
    );
    // Foreign marks expire after the cool-down.
    let later = now.plus(config.foreign_cooldown);
    assert_eq!(
        state
            .allocate(&config, &Purpose::Api, &me, later, &live)
            .map(|g| g.id),
        Ok(1000)
    );
}

#[test]
fn state_round_trips_through_json_with_schema_version() {
    let config = RegistryConfig::default();
    let mut state = RegistryState::new();
    let live = |_: &Holder| Liveness::Alive;
    let _ = state.allocate(
        &config,
        &Purpose::Streaming,
        &holder(1),
        UnixMillis(1),
        &live,
    );
    let json = serde_json::to_string(&state).unwrap_or_default();
    assert!(
        json.contains("\"schema_version\":1") && json.contains("\"streaming\""),
        "{json}"
    );
    let back: Result<RegistryState, _> = serde_json::from_str(&json);
    assert_eq!(back.ok(), Some(state));
}
