//! Sessions lost and regained: redials with backoff, failover between gateways, half-open
//! sockets, lost links and sleep.

use super::*;

#[test]
fn gateway_restart_redials_with_backoff_and_retries_the_request() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.mute.insert("gw1:4002".into());
    let (lease, id) = w.lease(Purpose::Backfill);
    let t = w.send(lease, Query::CurrentTime);
    w.mute.clear();
    w.drop_all();
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Disconnected { client_id, reason: ConnectionError::PeerClosed } if *client_id == id)));
    assert!(
        w.completed(t).is_none(),
        "the request waits for the next session"
    );
    assert!(w.peers.is_empty(), "no redial before the backoff");
    // A caller arriving while reconnecting waits for Ready instead of failing.
    let other = w.acquire(Purpose::Backfill);
    w.advance(SECS(1));
    assert_eq!(
        w.completed(t),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    assert!(w.acquired(other).is_some());
    let stats = w.pool.stats(w.now);
    assert_eq!((stats.reconnects, stats.requests_retried), (1, 1));
}

#[test]
fn failover_to_the_second_gateway_and_back() {
    let mut w = World::new(config(&["gw1:4002", "gw2:4002"]));
    w.down.insert("gw1:4002".into());
    let first = w.acquire(Purpose::Backfill);
    w.advance(SECS(1));
    let (lease, _, gw) = w.acquired(first).expect("served by the second gateway");
    assert_eq!(gw, 1);
    w.pool.release(w.now, lease);
    // The first gateway returns; after its breaker's open period new connections go back to it.
    w.down.clear();
    w.advance(SECS(11));
    let (_busy, _) = w.lease(Purpose::Backfill);
    let back = w.acquire(Purpose::Backfill);
    w.advance(SECS(1));
    assert_eq!(w.acquired(back).map(|a| a.2), Some(0));
    let stats = w.pool.stats(w.now);
    assert_eq!(stats.gateways[0].failed, 1);
    assert!(serde_json::to_string(&stats)
        .unwrap()
        .contains("handshake_latency"));
}

#[test]
fn half_open_socket_is_detected_by_the_probe_and_redialed() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (_lease, id) = w.lease(Purpose::Backfill);
    w.mute.insert("gw1:4002".into());
    // probe_idle 30 s + probe_timeout 10 s.
    w.advance(SECS(41));
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Disconnected { client_id, reason: ConnectionError::ProbeTimeout(_) } if *client_id == id)));
    w.mute.clear();
    w.advance(SECS(1));
    assert_eq!(
        w.pool.stats(w.now).established,
        2,
        "redialed with the same id"
    );
    assert_eq!(w.socket_of(id), *w.peers.keys().next().unwrap());
}

#[test]
fn lost_link_then_data_lost_emits_resubscribe_for_the_leases() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (lease, id) = w.lease(Purpose::Backfill);
    w.push(
        id,
        err(-1, 1100, "Connectivity between IB and TWS has been lost."),
    );
    w.push(
        id,
        err(
            -1,
            1101,
            "Connectivity between IB and TWS has been restored- data lost.",
        ),
    );
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Resubscribe { client_id, leases } if *client_id == id && leases == &vec![lease])));
}

#[test]
fn sleep_detected_redials() {
    let mut w = World::new(config(&["gw1:4002"]));
    let (_lease, id) = w.lease(Purpose::Backfill);
    let wall = UnixMillis(1_767_225_600_000);
    w.pool.observe_clocks(w.now, SECS(100), wall);
    w.advance(SECS(1));
    w.pool
        .observe_clocks(w.now, SECS(200), wall.plus(SECS(100)));
    w.settle();
    assert!(w.events.iter().any(|e| matches!(e,
        PoolEvent::Disconnected { client_id, reason: ConnectionError::SleepDetected(_) } if *client_id == id)));
    w.advance(SECS(1));
    assert_eq!(w.pool.stats(w.now).established, 2);
}

/// A gateway with one session: after an outage its breaker is half-open once the redial
/// succeeds, and the session's answered health probes close it (there is no second dial).
#[test]
fn a_half_open_breaker_closes_on_the_sessions_answered_probes() {
    let mut cfg = config(&["gw1:4002"]);
    cfg.breaker.success_threshold = 2;
    let mut w = World::new(cfg);
    let (_lease, _) = w.lease(Purpose::Backfill);
    w.down.insert("gw1:4002".into());
    w.drop_all();
    w.advance(SECS(2));
    let state = |w: &mut World| w.pool.stats(w.now).gateways[0].breaker.state.clone();
    assert_eq!(state(&mut w), "open", "the redial failed");
    w.down.clear();
    w.advance(SECS(11));
    assert_eq!(state(&mut w), "half_open", "one success of two");
    // Idle past the probe interval: the probe goes out and is answered.
    w.advance(SECS(40));
    assert!(w.pool.stats(w.now).probe_rtt.count > 0);
    assert_eq!(state(&mut w), "closed");
}
