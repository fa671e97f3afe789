//! One scenario per fault: a core client `Connection` against the gateway in a `World`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use ibconn_core::bar_size::BarSize;
use ibconn_core::classify::{Connectivity, ErrorClass};
use ibconn_core::connection::{Answer, Config, ConnectionError, Event, Query, RequestError};
use ibconn_core::ib_duration::{DurationUnit, IbDuration};
use ibconn_core::message::Contract;
use ibconn_core::query::HeadTimestampQuery;
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{Farm, Fault, Locale, PortState, Target, World, WorldConfig, WorldError};

fn head() -> Query {
    Query::HeadTimestamp(HeadTimestampQuery {
        use_rth: true,
        ..HeadTimestampQuery::new(Contract::stock("AAPL"), WhatToShow::Trades)
    })
}

fn disconnected(
    world: &mut World,
    c: ibconn_sim::ClientId,
    within: Duration,
) -> (Duration, ConnectionError) {
    match world
        .run_until_event(c, within, |e| matches!(e, Event::Disconnected { .. }))
        .unwrap()
    {
        (t, Event::Disconnected { reason }) => (t, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn close_ends_the_session_from_the_gateway_side() {
    let (mut world, c) = connected(1, 1);
    world.inject(Fault::Close(Target::All));
    let (_, reason) = disconnected(&mut world, c, secs(1));
    assert_eq!(reason, ConnectionError::PeerClosed);
    assert!(world.gateway().client_ids().is_empty());
}

#[test]
fn half_open_is_declared_dead_by_the_probe_within_its_bound() {
    let (mut world, c) = connected(2, 1);
    let conn = world.conn_of(c).unwrap();
    let paused_at = world.elapsed();
    world.inject(Fault::Pause(Target::Conn(conn)));
    let (t, reason) = disconnected(&mut world, c, secs(120));
    assert_eq!(reason, ConnectionError::ProbeTimeout(secs(10)));
    // probe_idle (30 s) after the last inbound byte, then probe_timeout (10 s).
    let bound = Config::new(1).probe_idle + Config::new(1).probe_timeout + SEC;
    assert!(
        t - paused_at <= bound,
        "declared dead after {:?}",
        t - paused_at
    );
    assert!(t - paused_at >= secs(39), "{t:?}");
    let trace = world.trace().join("\n");
    assert!(trace.contains("C1→G ReqCurrentTime"), "{trace}");
}

#[test]
fn resume_processes_what_arrived_during_the_pause() {
    let (mut world, c) = connected(3, 1);
    let conn = world.conn_of(c).unwrap();
    world.inject(Fault::Pause(Target::Conn(conn)));
    let id = world.send(c, head()).unwrap();
    world.run_for(secs(5)).unwrap();
    assert_eq!(world.connection(c).unwrap().in_flight(), 1);
    world.inject(Fault::Resume(Target::Conn(conn)));
    let (t, result) = world.run_until_completed(c, id, secs(1)).unwrap();
    assert_eq!(result.unwrap(), Answer::HeadTimestamp("345479400".into()));
    assert!(t >= secs(5));
}

#[test]
fn delay_holds_every_reply_back_in_order() {
    let (mut world, c) = connected(4, 1);
    world.inject(Fault::Delay {
        target: Target::All,
        by: secs(3),
    });
    let sent = world.elapsed();
    let a = world.send(c, head()).unwrap();
    let b = world.send(c, Query::HistoricalData(hourly())).unwrap();
    let (ta, ra) = world.run_until_completed(c, a, secs(10)).unwrap();
    let (tb, rb) = world.run_until_completed(c, b, secs(10)).unwrap();
    assert!(ra.is_ok() && rb.is_ok());
    assert!(
        ta - sent >= secs(3) && ta - sent < secs(4),
        "{:?}",
        ta - sent
    );
    assert!(tb >= ta);
    world.inject(Fault::Delay {
        target: Target::All,
        by: Duration::ZERO,
    });
    let sent = world.elapsed();
    let c2 = world.send(c, head()).unwrap();
    let (t, _) = world.run_until_completed(c, c2, secs(1)).unwrap();
    assert!(t - sent < Duration::from_millis(10));
}

#[test]
fn hold_buffers_until_release() {
    let (mut world, c) = connected(5, 1);
    world.inject(Fault::Hold(Target::All));
    let id = world.send(c, head()).unwrap();
    world.run_for(secs(20)).unwrap();
    assert!(!world
        .events(c)
        .iter()
        .any(|(_, e)| matches!(e, Event::Completed { .. })));
    world.inject(Fault::Release(Target::All));
    let (_, result) = world.run_until_completed(c, id, secs(1)).unwrap();
    assert!(result.is_ok());
}

#[test]
fn split_frames_are_reassembled_by_the_client() {
    let (mut world, c) = connected(6, 1);
    world.inject(Fault::Split {
        target: Target::All,
        on: true,
    });
    let id = world.send(c, Query::HistoricalData(hourly())).unwrap();
    let (_, result) = world.run_until_completed(c, id, secs(5)).unwrap();
    match result.unwrap() {
        Answer::Bars { bars, .. } => assert_eq!(bars.len(), 14),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_bytes_are_a_framing_error() {
    let (mut world, c) = connected(7, 1);
    world.inject(Fault::Garbage {
        target: Target::All,
        len: 16,
    });
    let (_, reason) = disconnected(&mut world, c, secs(1));
    assert!(matches!(reason, ConnectionError::Framing(_)), "{reason:?}");
}

#[test]
fn link_loss_then_data_lost_makes_the_client_resubscribe() {
    let (mut world, c) = connected(8, 1);
    let start = world.elapsed();
    world.inject(Fault::LinkLoss {
        outage: secs(20),
        data_lost: true,
    });
    let (_, lost) = world
        .run_until_event(c, secs(1), |e| matches!(e, Event::Connectivity(_)))
        .unwrap();
    assert_eq!(lost, Event::Connectivity(Connectivity::Lost));
    assert!(world.connection(c).unwrap().is_degraded());
    let (t, _) = world
        .run_until_event(c, secs(30), |e| matches!(e, Event::Resubscribe))
        .unwrap();
    assert!(t - start >= secs(20), "{t:?}");
    assert!(!world.connection(c).unwrap().is_degraded());
    let trace = world.trace().join("\n");
    assert!(trace.contains("1100 Connectivity between IBKR and Trader Workstation has been lost."));
    assert!(trace.contains(
        "1101 Connectivity between IBKR and Trader Workstation has been restored - data lost."
    ));
}

#[test]
fn link_loss_with_data_maintained_does_not_resubscribe() {
    let (mut world, c) = connected(9, 1);
    world.inject(Fault::LinkLoss {
        outage: secs(5),
        data_lost: false,
    });
    world.run_for(secs(10)).unwrap();
    let evs: Vec<&Event> = world.events(c).iter().map(|(_, e)| e).collect();
    assert!(evs.contains(&&Event::Connectivity(Connectivity::RestoredDataKept)));
    assert!(!evs.contains(&&Event::Resubscribe));
}

#[test]
fn hmds_farm_flap_delays_historical_replies_until_the_farm_is_back() {
    let (mut world, c) = connected(10, 1);
    world.inject(Fault::FarmFlap {
        farm: Farm::Historical,
        outage: secs(15),
    });
    let sent = world.elapsed();
    let id = world.send(c, Query::HistoricalData(hourly())).unwrap();
    let (t, result) = world.run_until_completed(c, id, secs(30)).unwrap();
    assert!(result.is_ok());
    assert!(t - sent >= secs(15), "{:?}", t - sent);
    let codes: Vec<i32> = world
        .events(c)
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Notice { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert!(codes.ends_with(&[2105, 2106]), "{codes:?}");
}

#[test]
fn nightly_reset_pauses_historical_data_for_one_to_three_minutes() {
    let (mut world, c) = connected(11, 1);
    world.inject(Fault::NightlyReset { pause: None });
    let sent = world.elapsed();
    let id = world
        .send_with_timeout(c, Query::HistoricalData(hourly()), Some(secs(300)))
        .unwrap();
    let (t, result) = world.run_until_completed(c, id, secs(300)).unwrap();
    assert!(result.is_ok());
    let waited = t - sent;
    assert!(waited >= secs(60) && waited <= secs(181), "{waited:?}");
    // The socket stayed up throughout.
    assert!(world.connection(c).unwrap().is_ready());
    // With the default 60 s timeout a request during the reset times out (and is cancelled).
    world.inject(Fault::NightlyReset {
        pause: Some(secs(90)),
    });
    let id = world.send(c, Query::HistoricalData(hourly())).unwrap();
    let (_, result) = world.run_until_completed(c, id, secs(120)).unwrap();
    assert!(
        matches!(result, Err(RequestError::Timeout { .. })),
        "{result:?}"
    );
}

#[test]
fn restart_disconnects_and_refuses_redials_until_the_port_reopens() {
    let (mut world, c) = connected(12, 1);
    world.inject(Fault::Restart { down_for: secs(30) });
    let reopen = world.now() + secs(30);
    assert_eq!(
        world.gateway().port(),
        PortState::Refusing {
            until: Some(reopen)
        }
    );
    let (_, reason) = disconnected(&mut world, c, secs(1));
    assert_eq!(reason, ConnectionError::PeerClosed);

    world.run_for(secs(10)).unwrap();
    world.dial(c).unwrap();
    let (_, reason) = disconnected(&mut world, c, secs(1));
    // The World's session exists before its connect: a refused dial ends it before any hello.
    assert_eq!(
        reason,
        ConnectionError::ClosedBeforeHello {
            cause: Some("connection refused".into())
        }
    );

    world.run_until(world.elapsed() + secs(25)).unwrap();
    assert_eq!(world.gateway().port(), PortState::Open);
    world.dial(c).unwrap();
    world
        .run_until_event(c, secs(1), |e| matches!(e, Event::Connected { .. }))
        .unwrap();
    let trace = world.trace().join("\n");
    assert!(trace.contains("G refuses C1"), "{trace}");
}

#[test]
fn crash_refuses_until_bounce() {
    let (mut world, c) = connected(13, 1);
    world.inject(Fault::Crash);
    disconnected(&mut world, c, secs(1));
    world.run_for(secs(3600)).unwrap();
    assert!(world.gateway().is_refusing(world.now()));
    world.inject(Fault::Bounce);
    world.dial(c).unwrap();
    world
        .run_until_event(c, secs(1), |e| matches!(e, Event::Connected { .. }))
        .unwrap();
}

#[test]
fn localized_162_is_spanish_and_not_classified_as_pacing() {
    let (mut world, c) = connected(14, 1);
    world.inject(Fault::Locale(Locale::Spanish));
    let mut req = hourly();
    req.bar_size = BarSize::Sec1;
    req.duration = IbDuration::try_new(1, DurationUnit::Weeks).unwrap();
    let id = world.send(c, Query::HistoricalData(req)).unwrap();
    let (_, result) = world.run_until_completed(c, id, secs(1)).unwrap();
    match result {
        Err(RequestError::Api {
            code: 162,
            message,
            class,
            ..
        }) => {
            assert_eq!(
                message,
                "Mensaje de error de los servicios de datos de mercado históricos:La duración supera el máximo"
            );
            assert_eq!(class, ErrorClass::Unknown);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn emit_error_reaches_ready_sessions_as_a_notice() {
    let (mut world, c) = connected(15, 1);
    world.inject(Fault::EmitError {
        target: Target::All,
        code: 2110,
        text: "Connectivity between TWS and server is broken. It will be restored automatically."
            .into(),
    });
    world.run_for(secs(1)).unwrap();
    assert!(world
        .events(c)
        .iter()
        .any(|(_, e)| matches!(e, Event::Connectivity(Connectivity::ServerLinkBroken))));
}

#[test]
fn scheduled_faults_apply_at_their_time() {
    let mut world = World::new(WorldConfig::new(16));
    let c = world.add_client(Config::new(1));
    world.schedule_fault(secs(100), Fault::Close(Target::All));
    let (t, reason) = disconnected(&mut world, c, secs(200));
    assert_eq!(reason, ConnectionError::PeerClosed);
    assert!(t >= secs(100) && t < secs(101), "{t:?}");
}

#[test]
fn run_until_event_reports_deadlock_and_timeout() {
    let mut world = World::new(WorldConfig::new(17));
    let c = world.add_client(Config::new(1));
    world.close(c);
    let err = world
        .run_until_event(c, secs(10), |e| matches!(e, Event::Connected { .. }))
        .unwrap_err();
    assert!(matches!(err, WorldError::Deadlock(_)), "{err}");
    let (mut world, c) = connected(17, 1);
    let err = world
        .run_until_event(c, secs(10), |e| matches!(e, Event::Resubscribe))
        .unwrap_err();
    assert!(matches!(err, WorldError::Timeout(_)), "{err}");
}
