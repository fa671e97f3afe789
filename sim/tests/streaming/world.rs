//! Keep-up-to-date bars through the core's `Connection` in the virtual-time [`World`]: the
//! updates come at the gateway's deadlines, stop for good on 1101 and resume after 1102.

use std::time::Duration;

use ibconn_core::bar_size::BarSize;
use ibconn_core::classify::Connectivity;
use ibconn_core::connection::{Config, Event, Query};
use ibconn_core::ib_duration::{DurationUnit, IbDuration};
use ibconn_core::message::Contract;
use ibconn_core::query::{EndTime, HistoricalQuery};
use ibconn_core::what_to_show::WhatToShow;
use ibconn_sim::{Fault, World, WorldConfig};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Updates of the stream after `from`, and whether the link came back with `restored`.
fn run(data_lost: bool) -> (usize, usize, bool, World) {
    let mut world = World::new(WorldConfig::new(41));
    let c = world.add_client(Config::new(1));
    world
        .run_until_event(c, secs(5), |e| matches!(e, Event::Connected { .. }))
        .unwrap();
    let query = HistoricalQuery {
        keep_up_to_date: true,
        ..HistoricalQuery::new(
            Contract::stock("AAPL"),
            EndTime::Now,
            IbDuration::try_new(1, DurationUnit::Days).unwrap(),
            BarSize::Min1,
            WhatToShow::Trades,
        )
    };
    world.send(c, Query::HistoricalData(query)).unwrap();
    world.run_for(secs(21)).unwrap();
    assert_eq!(world.gateway().counters().live_subscriptions, 1);
    let lost_at = world.elapsed();
    world.inject(Fault::LinkLoss {
        outage: secs(10),
        data_lost,
    });
    world.run_for(secs(40)).unwrap();
    let updates = |from: Duration, to: Duration| {
        world
            .events(c)
            .iter()
            .filter(|(t, e)| matches!(e, Event::Stream { .. }) && *t > from && *t <= to)
            .count()
    };
    let before = updates(Duration::ZERO, lost_at);
    let after = updates(lost_at + secs(10), world.elapsed());
    let during = updates(lost_at, lost_at + secs(10));
    assert_eq!(during, 0, "no updates while the link is down");
    let expected = if data_lost {
        Connectivity::RestoredDataLost
    } else {
        Connectivity::RestoredDataKept
    };
    let restored = world
        .events(c)
        .iter()
        .any(|(_, e)| *e == Event::Connectivity(expected));
    (before, after, restored, world)
}

#[test]
fn keep_up_to_date_in_the_world_stops_on_1101_and_resumes_after_1102() {
    let (before, after, restored, world) = run(true);
    assert!(restored);
    assert!(before >= 3, "{before} updates every 5 s");
    assert_eq!(after, 0, "1101 dropped the stream");
    let k = world.gateway().counters();
    assert_eq!((k.live_subscriptions, k.subscriptions_dropped), (0, 1));

    let (_, after, restored, world) = run(false);
    assert!(restored);
    assert!(after >= 5, "{after} updates after 1102");
    assert_eq!(world.gateway().counters().live_subscriptions, 1);
}
