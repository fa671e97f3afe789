//! Keepalive: the idle health probe, current-time spacing and sleep detection.

use super::*;

#[test]
fn idle_probe_detects_a_half_open_socket() {
    let (mut conn, mut peer, t0) = connected(226);
    let idle = t0 + Duration::from_secs(30);
    assert_eq!(conn.poll_timeout(), Some(idle));
    conn.handle_timeout(idle);
    peer.read(&mut conn);
    assert_eq!(peer.take(), vec![Request::ReqCurrentTime]);
    assert_eq!(conn.poll_timeout(), Some(idle + Duration::from_secs(10)));
    // An answered probe records its round trip and re-arms the idle timer.
    let t = idle + Duration::from_millis(20);
    peer.reply(&mut conn, t, &[Response::CurrentTime { time: 1 }]);
    assert_eq!(conn.stats().last_probe_rtt_us, Some(20_000));
    assert!(events(&mut conn).is_empty(), "probes are internal");
    // Next idle period: the probe goes unanswered (half-open) and the connection is declared dead.
    let idle2 = t + Duration::from_secs(30);
    conn.handle_timeout(idle2);
    peer.read(&mut conn);
    assert_eq!(peer.take(), vec![Request::ReqCurrentTime]);
    conn.handle_timeout(idle2 + Duration::from_secs(10));
    assert_eq!(
        events(&mut conn),
        vec![Event::Disconnected {
            reason: ConnectionError::ProbeTimeout(Duration::from_secs(10))
        }]
    );
}

#[test]
fn current_time_requests_respect_ibs_one_second_spacing() {
    let (mut conn, mut peer, t0) = connected(226);
    let a = conn.send(t0, Query::CurrentTime, None).unwrap();
    let b = conn.send(t0, Query::CurrentTime, None).unwrap();
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::ReqCurrentTime],
        "one send for both"
    );
    let t1 = t0 + Duration::from_millis(100);
    peer.reply(&mut conn, t1, &[Response::CurrentTime { time: 99 }]);
    let ev = events(&mut conn);
    assert_eq!(ev.len(), 2);
    assert!(ev.contains(&Event::Completed {
        id: a,
        result: Ok(Answer::CurrentTime(99))
    }));
    assert!(ev.contains(&Event::Completed {
        id: b,
        result: Ok(Answer::CurrentTime(99))
    }));
    // A third one 0.2 s later must wait until 1 s after the previous send.
    let c = conn
        .send(t0 + Duration::from_millis(200), Query::CurrentTime, None)
        .unwrap();
    peer.read(&mut conn);
    assert!(peer.take().is_empty());
    assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    conn.handle_timeout(t0 + Duration::from_secs(1));
    peer.read(&mut conn);
    assert_eq!(peer.take(), vec![Request::ReqCurrentTime]);
    peer.reply(
        &mut conn,
        t0 + Duration::from_secs(1),
        &[Response::CurrentTime { time: 100 }],
    );
    assert_eq!(
        events(&mut conn),
        vec![Event::Completed {
            id: c,
            result: Ok(Answer::CurrentTime(100))
        }]
    );
}

#[test]
fn sleep_is_detected_from_diverging_clocks() {
    let (mut conn, _peer, t0) = connected(226);
    conn.observe_clocks(t0, Duration::from_secs(1000));
    // Ten seconds pass on both clocks: awake.
    conn.observe_clocks(t0 + Duration::from_secs(10), Duration::from_secs(1010));
    assert!(events(&mut conn).is_empty());
    // One monotonic second, but the boot clock moved an hour: the laptop slept.
    conn.observe_clocks(t0 + Duration::from_secs(11), Duration::from_secs(4611));
    assert_eq!(
        events(&mut conn),
        vec![Event::Disconnected {
            reason: ConnectionError::SleepDetected(Duration::from_secs(3600))
        }]
    );
}
