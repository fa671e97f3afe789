//! Client ids through the registry: 326 conflicts, lapsed leases renewed or taken by another
//! process.

use super::*;

#[test]
fn client_id_in_use_moves_to_the_next_id_and_marks_it_foreign() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.taken.insert(2000);
    let (_, id) = w.lease(Purpose::Backfill);
    assert_eq!(id, 2001);
    let state = w.registry.state();
    assert!(state.foreign.contains_key(&2000));
    assert!(state.leases.contains_key(&2001) && !state.leases.contains_key(&2000));
    assert_eq!(w.pool.stats(w.now).client_id_conflicts, 1);
    // The foreign id is avoided by the next connection too.
    let (_, second) = w.lease(Purpose::Backfill);
    assert_eq!(second, 2002);
}

#[test]
fn a_lapsed_lease_is_taken_again_and_the_session_kept() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    let socket = w.socket_of(id);
    let before = w.registry.state().leases[&id].generation;
    w.oversleep(Oversleep::Stall, |_, _| {});
    let wall = WALL0.plus(w.now - w.origin);
    assert_eq!(
        w.registry.holder(id, wall),
        Some((1, true)),
        "the lapsed lease is live again"
    );
    assert_ne!(w.registry.state().leases[&id].generation, before);
    assert_eq!(w.pool.lease_client_id(lease), Some(id));
    assert_eq!(w.socket_of(id), socket, "the same session carries on");
    assert!(!w.closed.contains(&socket));
    let t = w.send(lease, Query::CurrentTime);
    // (The connection's own probe just asked for the time: IB allows one a second.)
    w.advance(SECS(2));
    assert_eq!(
        w.completed(t),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    assert_eq!(w.pool.stats(w.now).established, 1);
    assert!(!w.events.iter().any(|e| matches!(
        e,
        PoolEvent::Disconnected { .. } | PoolEvent::LeaseLost { .. }
    )));
    // And it stays renewed: the regular heartbeats hold it from here on.
    w.advance(SECS(200));
    let wall = WALL0.plus(w.now - w.origin);
    assert_eq!(w.registry.holder(id, wall), Some((1, true)));
}

#[test]
fn a_suspend_past_the_lease_ttl_renews_before_the_redial() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    w.oversleep(Oversleep::Suspend, |_, _| {});
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Disconnected { client_id, reason: ConnectionError::SleepDetected(_) } if *client_id == id)));
    // A second connection wanted right after waking must not get the first one's id.
    let other = w.acquire(Purpose::Backfill);
    w.advance(SECS(6));
    let (_, second, _) = w.acquired(other).expect("a second connection");
    assert_ne!(second, id);
    assert_eq!(
        w.pool.lease_client_id(lease),
        Some(id),
        "redialed with its own id"
    );
    let wall = WALL0.plus(w.now - w.origin);
    assert_eq!(w.registry.holder(id, wall), Some((1, true)));
    assert_eq!(w.registry.holder(second, wall), Some((1, true)));
    assert_eq!(w.pool.stats(w.now).client_id_conflicts, 0);
}

#[test]
fn a_lapsed_id_taken_by_another_process_moves_the_connection_to_a_fresh_id() {
    for how in [Oversleep::Stall, Oversleep::Suspend] {
        let mut w = World::new(config(&["gw1:4002"]));
        let (lease, id) = w.lease(Purpose::Backfill);
        assert_eq!(id, 2000);
        let socket = w.socket_of(id);
        // A request in flight when the host stops (the gateway has it, no answer yet).
        w.mute.insert("gw1:4002".into());
        let t = w
            .pool
            .send(w.now, lease, Query::CurrentTime, Some(SECS(600)))
            .unwrap();
        w.settle();
        w.mute.clear();
        w.oversleep(how, |w, wall| {
            // Meanwhile another process leases the lapsed id and connects with it.
            assert_eq!(w.registry.take(&Purpose::Backfill, wall), Some(id));
            w.taken.insert(id);
        });
        // The pool let go of the id at once: its session on it is closed, and no session of the
        // pool uses an id another process holds.
        assert!(w.closed.contains(&socket), "{how:?}");
        assert!(
            w.peers.values().all(|p| p.client_id != id),
            "{how:?}: still a session on {id}"
        );
        assert!(w.events.iter().any(|e| matches!(e,
            PoolEvent::Disconnected { client_id, .. } if *client_id == id)));
        let wall = WALL0.plus(w.now - w.origin);
        assert_eq!(w.registry.holder(id, wall), Some((2, true)), "{how:?}");
        let fresh = w.pool.lease_client_id(lease).unwrap();
        assert_eq!(fresh, 2001, "{how:?}");
        assert_eq!(w.registry.holder(fresh, wall), Some((1, true)), "{how:?}");
        assert!(
            w.completed(t).is_none(),
            "{how:?}: the request waits for the redial"
        );
        // The redial uses the fresh id; the request is sent again and answered there.
        w.advance(SECS(6));
        assert_eq!(
            w.completed(t),
            Some(&Ok(Answer::CurrentTime(1_767_225_600))),
            "{how:?}"
        );
        let _ = w.socket_of(fresh);
        assert_eq!(
            w.dialed.iter().filter(|d| **d == id).count(),
            1,
            "{how:?}: {id} dialed again: {:?}",
            w.dialed
        );
        let stats = w.pool.stats(w.now);
        assert_eq!(
            stats.client_id_conflicts, 0,
            "{how:?}: a 326 means an id used twice"
        );
        assert_eq!(stats.leases, 1);
        assert!(!w
            .events
            .iter()
            .any(|e| matches!(e, PoolEvent::LeaseLost { .. })));
        let held: Vec<i32> = w
            .registry
            .state()
            .leases
            .iter()
            .filter(|(_, l)| l.holder == ME)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            held,
            [fresh],
            "{how:?}: the registry holds exactly the pool's ids"
        );
    }
}

#[test]
fn a_fixed_id_taken_by_another_process_loses_the_lease_with_typed_errors() {
    let (cfg, ids) = PoolConfig::single_session("gw1:4002", 42, Config::new(0));
    let purpose = PoolConfig::single_session_purpose();
    let mut w = World::with_ids(cfg, ids);
    let (lease, id) = w.lease(purpose.clone());
    assert_eq!(id, 42);
    w.mute.insert("gw1:4002".into());
    let t = w
        .pool
        .send(w.now, lease, Query::CurrentTime, Some(SECS(600)))
        .unwrap();
    w.settle();
    w.mute.clear();
    w.oversleep(Oversleep::Stall, |w, wall| {
        assert_eq!(w.registry.take(&purpose, wall), Some(42));
    });
    let lost = w.events.iter().find_map(|e| match e {
        PoolEvent::LeaseLost {
            lease: l,
            client_id,
            error: AcquireError::ClientId(_),
        } => Some((*l, *client_id)),
        _ => None,
    });
    assert_eq!(lost, Some((lease, 42)));
    assert_eq!(w.completed(t), Some(&Err(CallError::LeaseLost)));
    assert!(w.peers.is_empty(), "the session on 42 is closed");
    assert_eq!(w.pool.lease_client_id(lease), None);
    assert_eq!(
        w.pool.send(w.now, lease, Query::CurrentTime, None),
        Err(SubmitError::LeaseLost(lease)),
        "a call on a lost lease says so"
    );
    w.pool.release(w.now, lease);
    assert_eq!(
        w.pool.send(w.now, lease, Query::CurrentTime, None),
        Err(SubmitError::UnknownLease(lease)),
        "once released, the lease is forgotten"
    );
    assert!(w.events.iter().any(|e| matches!(
        PoolNotice::from_event(e),
        Some(PoolNotice::LeaseLost { client_id: 42, .. })
    )));
    let wall = WALL0.plus(w.now - w.origin);
    assert_eq!(w.registry.holder(42, wall), Some((2, true)));
    assert_eq!(w.pool.stats(w.now).connections.len(), 0);
}
