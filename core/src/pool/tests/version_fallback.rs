//! The version fallback under `VersionPolicy::Auto`: from the modern offer to the wide one for
//! gateways older than server version 213, and back.

use super::*;

const MODERN: VersionRange = VersionRange::modern();
const WIDE: VersionRange = VersionRange::supported();

#[test]
fn an_old_gateway_gets_the_wide_offer_after_one_immediate_fallback() {
    for (max, closes) in [(176, false), (200, false), (212, false), (176, true)] {
        let what = format!("v{max}, closes on newer: {closes}");
        let mut w = World::new(config(&["gw1:4002"]));
        w.max_version.insert("gw1:4002".into(), max);
        if closes {
            w.closes_on_newer.insert("gw1:4002".into());
        }
        let t0 = w.now;
        let (lease, id) = w.lease(Purpose::Backfill);
        assert_eq!(w.now, t0, "{what}: granted without waiting for a timer");
        assert_eq!(w.offers("gw1:4002"), [MODERN, WIDE], "{what}");
        assert_eq!(w.dialed, [id, id], "{what}: the same client id redialed");
        let t = w.send(lease, Query::CurrentTime);
        assert_eq!(
            w.completed(t),
            Some(&Ok(Answer::CurrentTime(1_767_225_600))),
            "{what}"
        );
        // Not a failure: no failed count, and the breaker (open after one failure here) closed.
        let stats = w.pool.stats(w.now);
        let g = &stats.gateways[0];
        assert_eq!(
            (g.failed, g.version_fallbacks, g.wide_offer, g.established),
            (0, 1, true, 1),
            "{what}"
        );
        assert_eq!(
            (g.breaker.state.as_str(), g.breaker.consecutive_failures),
            ("closed", 0),
            "{what}"
        );
        assert_eq!((stats.failed, stats.reconnects), (0, 0), "{what}");
        assert!(
            !w.events
                .iter()
                .any(|e| matches!(e, PoolEvent::Disconnected { .. })),
            "{what}: the fallback is no session loss"
        );
        // The next connection to this gateway offers the wide range right away; so does a
        // redial of the first.
        let (_, second) = w.lease(Purpose::Backfill);
        assert_ne!(second, id);
        w.drop_all();
        w.advance(SECS(1));
        assert_eq!(
            w.offers("gw1:4002"),
            [MODERN, WIDE, WIDE, WIDE, WIDE],
            "{what}"
        );
        assert_eq!(w.pool.stats(w.now).gateways[0].version_fallbacks, 1);
    }
}

#[test]
fn an_old_gateway_silent_on_the_modern_offer_gets_the_wide_one_after_the_handshake_timeout() {
    let mut cfg = config(&["gw1:4002"]);
    cfg.connection.handshake_timeout = SECS(2);
    let mut w = World::new(cfg);
    w.max_version.insert("gw1:4002".into(), 176);
    w.silent_on_newer.insert("gw1:4002".into());
    let acquire = w.acquire(Purpose::Backfill);
    w.advance(SECS(1));
    assert_eq!(w.offers("gw1:4002"), [MODERN], "still waiting for a hello");
    assert!(w.acquired(acquire).is_none());
    w.advance(SECS(2));
    assert_eq!(
        w.offers("gw1:4002"),
        [MODERN, WIDE],
        "redialed wide at the timeout"
    );
    let (lease, _, _) = w.acquired(acquire).expect("granted on the wide session");
    let t = w.send(lease, Query::CurrentTime);
    assert_eq!(
        w.completed(t),
        Some(&Ok(Answer::CurrentTime(1_767_225_600)))
    );
    let g = &w.pool.stats(w.now).gateways[0];
    assert_eq!(
        (g.failed, g.version_fallbacks, g.wide_offer, g.established),
        (0, 1, true, 1)
    );
}

#[test]
fn a_pinned_range_is_offered_as_is_and_never_falls_back() {
    for (pinned, max) in [(MODERN, 176), (VersionRange::new(100, 178), 226)] {
        let mut cfg = config(&["gw1:4002"]);
        cfg.connection.versions = VersionPolicy::Pinned(pinned);
        let mut w = World::new(cfg);
        w.max_version.insert("gw1:4002".into(), max);
        let acquire = w.acquire(Purpose::Backfill);
        w.advance(SECS(6));
        let g = &w.pool.stats(w.now).gateways[0];
        assert_eq!((g.version_fallbacks, g.wide_offer), (0, false), "{pinned}");
        assert!(
            w.offers("gw1:4002").iter().all(|o| *o == pinned),
            "{pinned}"
        );
        if max >= pinned.min {
            assert!(w.acquired(acquire).is_some(), "{pinned}");
        } else {
            // A gateway below a pinned range is a plain handshake failure: backoff, breaker,
            // and in the end the acquire's typed timeout.
            assert!(g.failed >= 1, "{pinned}: {g:?}");
            assert!(w.events.iter().any(|e| matches!(e,
                PoolEvent::AcquireFailed { acquire: a, error: AcquireError::Timeout { .. } }
                    if *a == acquire)));
        }
    }
}

#[test]
fn an_upgraded_gateway_gets_the_modern_offer_again() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.max_version.insert("gw1:4002".into(), 176);
    let (_lease, _) = w.lease(Purpose::Backfill);
    assert!(w.pool.stats(w.now).gateways[0].wide_offer);
    // The gateway restarts as a newer version: the session's redial (still wide) reports 226.
    w.max_version.insert("gw1:4002".into(), 226);
    w.drop_all();
    w.advance(SECS(1));
    assert_eq!(w.offers("gw1:4002"), [MODERN, WIDE, WIDE]);
    assert!(!w.pool.stats(w.now).gateways[0].wide_offer);
    let (_, _) = w.lease(Purpose::Backfill);
    assert_eq!(w.offers("gw1:4002"), [MODERN, WIDE, WIDE, MODERN]);
    assert_eq!(w.pool.stats(w.now).gateways[0].version_fallbacks, 1);
}

#[test]
fn the_fallback_redial_uses_the_half_open_breakers_admission() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.down.insert("gw1:4002".into());
    let acquire = w.pool.acquire(w.now, Purpose::Backfill, Some(SECS(60)));
    w.settle();
    assert_eq!(
        w.pool.stats(w.now).gateways[0].breaker.state,
        "open",
        "one refused dial opens it here"
    );
    // It comes back as an old gateway; the one probe the half-open breaker admits is the modern
    // offer, and the fallback redial goes through on the same admission.
    w.down.clear();
    w.max_version.insert("gw1:4002".into(), 176);
    w.closes_on_newer.insert("gw1:4002".into());
    w.advance(SECS(11));
    assert!(w.acquired(acquire).is_some(), "{:?}", w.events);
    assert_eq!(w.offers("gw1:4002"), [MODERN, WIDE]);
    let g = &w.pool.stats(w.now).gateways[0];
    assert_eq!((g.failed, g.version_fallbacks), (1, 1), "{g:?}");
    assert_eq!(g.breaker.state, "closed");
}

#[test]
fn a_fallback_whose_wide_dial_fails_counts_one_failure_and_backs_off() {
    let mut w = World::new(config(&["gw1:4002"]));
    w.max_version.insert("gw1:4002".into(), 176);
    w.closes_on_newer.insert("gw1:4002".into());
    // The gateway accepts the first connect, closes it at the modern hello, then refuses.
    w.pool.acquire(w.now, Purpose::Backfill, None);
    let Some(Io::Dial { socket, addr, .. }) = w.pool.poll_io() else {
        panic!("no dial")
    };
    w.peers.insert(
        socket,
        Peer {
            addr,
            decoder: FrameDecoder::server(),
            hello: false,
            version: 0,
            client_id: 0,
            got: Vec::new(),
        },
    );
    w.pool.handle_dialed(w.now, socket);
    w.down.insert("gw1:4002".into());
    w.settle();
    assert_eq!(w.offers("gw1:4002"), [MODERN]);
    let stats = w.pool.stats(w.now);
    let g = &stats.gateways[0];
    assert_eq!((g.failed, g.version_fallbacks, g.wide_offer), (1, 1, true));
    assert_eq!(g.breaker.state, "open");
    assert_eq!(
        w.dialed.len(),
        1,
        "the wide dial was refused; {:?}",
        w.dialed
    );
}
