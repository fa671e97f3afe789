//! Leases: reuse, caps and FIFO waiters, shared connections, idle expiry and shutdown.

use super::*;

#[test]
fn acquire_release_reuse() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    assert_eq!(id, 2000);
    let t = w.send(lease, Query::CurrentTime);
    assert_eq!(
        w.completed(t),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    w.pool.release(w.now, lease);
    w.settle();
    let (_, again) = w.lease(Purpose::Backfill);
    assert_eq!(again, 2000, "the idle connection is reused");
    assert_eq!(w.pool.stats(w.now).established, 1);
    assert_eq!(w.registry.state().leases.len(), 1);
}

#[test]
fn caps_fifo_and_typed_acquire_timeout() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (a, _) = w.lease(Purpose::Backfill);
    let (_b, _) = w.lease(Purpose::Backfill);
    let third = w.acquire(Purpose::Backfill);
    let fourth = w.acquire(Purpose::Backfill);
    assert_eq!(w.peers.len(), 2, "capped at two connections");
    assert!(w.acquired(third).is_none());
    w.advance(SECS(1));
    w.pool.release(w.now, a);
    w.settle();
    assert!(
        w.acquired(third).is_some(),
        "FIFO: the first waiter gets it"
    );
    assert!(w.acquired(fourth).is_none());
    w.advance(SECS(5));
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::AcquireFailed { acquire, error: AcquireError::Timeout { after, .. } }
            if *acquire == fourth && *after == SECS(5))));
    assert_eq!(w.pool.stats(w.now).acquire_timeouts, 1);
}

#[test]
fn shared_connections_admit_max_in_flight_leases() {
    let mut cfg = config(&["gw1:4002"]);
    cfg.purposes.insert(
        Purpose::Api,
        PurposeConfig {
            max_connections: 1,
            sharing: Sharing::Shared { max_in_flight: 3 },
        },
    );
    let mut w = World::new(cfg);
    let ids: Vec<i32> = (0..3).map(|_| w.lease(Purpose::Api).1).collect();
    assert_eq!(ids, [1000, 1000, 1000]);
    let fourth = w.acquire(Purpose::Api);
    assert!(w.acquired(fourth).is_none());
    assert_eq!(w.peers.len(), 1);
}

#[test]
fn single_session_shares_one_connection_with_its_fixed_id() {
    let (cfg, ids) = PoolConfig::single_session("gw1:4002", 42, Config::new(0));
    let purpose = PoolConfig::single_session_purpose();
    let mut w = World::with_ids(cfg.clone(), ids.clone());
    let got: Vec<i32> = (0..3).map(|_| w.lease(purpose.clone()).1).collect();
    assert_eq!(got, [42, 42, 42]);
    assert_eq!(w.peers.len(), 1);
    // The id is the user's: a 326 fails the acquire instead of moving on.
    let mut w = World::with_ids(cfg, ids);
    w.taken.insert(42);
    let acquire = w.acquire(purpose);
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::AcquireFailed { acquire: a, error: AcquireError::ClientId(_) } if *a == acquire)));
}

#[test]
fn idle_connections_expire_and_release_their_id() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, _) = w.lease(Purpose::Backfill);
    w.pool.release(w.now, lease);
    w.advance(SECS(301));
    assert!(w.peers.is_empty());
    assert!(w.registry.state().leases.is_empty());
}

#[test]
fn shutdown_releases_every_lease_and_closes_every_socket() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (a, _) = w.lease(Purpose::Backfill);
    let _ = w.lease(Purpose::Backfill);
    let waiting = w.acquire(Purpose::Backfill);
    w.mute.insert("gw1:4002".into());
    let t = w.send(a, Query::CurrentTime);
    w.pool.shutdown(w.now);
    w.settle();
    assert!(w.peers.is_empty() && w.closed.len() == 2);
    assert!(w.registry.state().leases.is_empty());
    assert!(matches!(w.completed(t), Some(Err(_))));
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::AcquireFailed { acquire, error: AcquireError::ShuttingDown } if *acquire == waiting)));
    assert_eq!(w.events.last(), Some(&PoolEvent::ShutDown));
    assert_eq!(w.pool.poll_timeout(), None);
    let _ = BarTime::Epoch(0);
}
