//! Connectivity faults on streams, as IB has them: no data during an outage, 1101 drops every
//! subscription, 1102 keeps them, a restart or a dropped socket ends them; chaos with streams
//! open; same seed, same bytes.

use std::time::Duration;

use ibconn_core::message::{Contract, Response};
use ibconn_sim::{Chaos, Farm, Fault, GatewayConfig, Target};

use crate::harness::*;

/// One subscription of every kind on `c`: market data 1, real-time bars 2, tick-by-tick 3,
/// keep-up-to-date 4.
fn subscribe_all(sim: &mut Sim, c: &mut Client) {
    let aapl = Contract::stock("AAPL");
    sim.send(c, &mkt_data(1, aapl.clone()));
    sim.send(c, &rt_bars(2, aapl.clone(), "TRADES"));
    sim.send(c, &tbt(3, aapl.clone(), "Last"));
    sim.send(c, &keep_up(4, aapl, "1 min"));
    sim.recv(c);
    assert_eq!(sim.gw.counters().live_subscriptions, 4);
}

/// Streaming messages (ticks, bars, updates) among `rs`, by request id.
fn streamed(rs: &[Response]) -> Vec<i32> {
    rs.iter()
        .filter_map(|r| match r {
            Response::Market(m) => Some(m.req_id()),
            Response::HistoricalDataUpdate { req_id, .. } => Some(*req_id),
            _ => None,
        })
        .collect()
}

fn codes(rs: &[Response]) -> Vec<i32> {
    errors(rs).iter().map(|e| e.1).collect()
}

fn link_loss(data_lost: bool) -> (Sim, Client, Vec<Response>) {
    let mut sim = Sim::at(OPEN, 31);
    let mut c = sim.connect(1);
    subscribe_all(&mut sim, &mut c);
    sim.advance(Duration::from_secs(6));
    assert!(!streamed(&sim.recv(&mut c)).is_empty());
    sim.gw.inject(
        sim.now,
        Fault::LinkLoss {
            outage: Duration::from_secs(20),
            data_lost,
        },
    );
    assert_eq!(codes(&sim.recv(&mut c)), [1100]);
    sim.advance(Duration::from_millis(19_900));
    let outage = sim.recv(&mut c);
    assert!(streamed(&outage).is_empty(), "no data during the outage");
    sim.advance(Duration::from_millis(100));
    let back = sim.recv(&mut c);
    (sim, c, back)
}

/// 1101: every subscription of the session is gone — nothing more arrives, the lines are free,
/// the ids can be used again (a cancel of one is a 300).
#[test]
fn data_lost_drops_every_subscription() {
    let (mut sim, mut c, back) = link_loss(true);
    assert_eq!(codes(&back), [1101]);
    assert!(streamed(&back).is_empty(), "{back:?}");
    let k = sim.gw.counters();
    assert_eq!(
        (k.live_subscriptions, k.lines_in_use, k.tick_by_tick_in_use),
        (0, 0, 0)
    );
    assert_eq!(k.subscriptions_dropped, 4);
    sim.advance(Duration::from_secs(30));
    assert!(streamed(&sim.recv(&mut c)).is_empty());
    assert_eq!(codes(&sim.request(&mut c, &cancel_mkt(1))), [300]);
    // Subscribing again works, under the same ids.
    subscribe_all(&mut sim, &mut c);
    sim.advance(Duration::from_secs(6));
    let again = streamed(&sim.recv(&mut c));
    for id in 1..=4 {
        assert!(again.contains(&id), "{id} streams again");
    }
}

/// 1102: the subscriptions stay and data flows again once the link is back.
#[test]
fn data_maintained_keeps_them() {
    let (mut sim, mut c, back) = link_loss(false);
    assert_eq!(codes(&back), [1102]);
    sim.advance(Duration::from_secs(6));
    let after = streamed(&sim.recv(&mut c));
    for id in 1..=4 {
        assert!(after.contains(&id), "{id} streams after 1102: {after:?}");
    }
    let k = sim.gw.counters();
    assert_eq!((k.live_subscriptions, k.subscriptions_dropped), (4, 0));
}

/// A market-data farm outage stops the ticks (the subscriptions stay); historical
/// keep-up-to-date bars come from the HMDS farm and go on.
#[test]
fn a_market_data_farm_outage_pauses_ticks_only() {
    let mut sim = Sim::at(OPEN, 32);
    let mut c = sim.connect(1);
    subscribe_all(&mut sim, &mut c);
    sim.gw.inject(
        sim.now,
        Fault::FarmFlap {
            farm: Farm::MarketData,
            outage: Duration::from_secs(30),
        },
    );
    sim.advance(Duration::from_secs(29));
    let during = sim.recv(&mut c);
    assert_eq!(codes(&during), [2103]);
    assert!(streamed(&during).iter().all(|&id| id == 4), "{during:?}");
    assert!(streamed(&during).contains(&4));
    sim.advance(Duration::from_secs(2));
    let after = sim.recv(&mut c);
    assert_eq!(codes(&after), [2104]);
    assert!(streamed(&after).contains(&1));
}

/// A restart closes every socket and forgets every subscription; a socket the gateway drops
/// takes its own with it, and another session's streams carry on.
#[test]
fn restarts_and_dropped_sockets_end_their_subscriptions() {
    let mut sim = Sim::at(OPEN, 33);
    let mut a = sim.connect(1);
    let mut b = sim.connect(2);
    subscribe_all(&mut sim, &mut a);
    sim.send(&mut b, &mkt_data(1, Contract::stock("MSFT")));
    sim.advance(Duration::from_secs(2));
    sim.gw.inject(sim.now, Fault::Close(Target::Conn(a.conn)));
    sim.recv(&mut a);
    assert!(a.closed);
    assert_eq!(sim.gw.counters().live_subscriptions, 1);
    assert_eq!(sim.gw.counters().lines_in_use, 1);
    sim.recv(&mut b);
    sim.advance(Duration::from_secs(1));
    assert!(!streamed(&sim.recv(&mut b)).is_empty());
    sim.gw.inject(
        sim.now,
        Fault::Restart {
            down_for: Duration::from_secs(10),
        },
    );
    sim.recv(&mut b);
    assert!(b.closed);
    let k = sim.gw.counters();
    assert_eq!((k.live_subscriptions, k.lines_in_use), (0, 0));
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.gw.poll_timeout(), None);
}

/// A scripted streaming session's bytes: every kind, a cancel, a link loss with data lost and a
/// resubscription.
fn script(seed: u64) -> Vec<u8> {
    let mut sim = Sim::at(OPEN - 3_000, seed);
    let mut c = sim.connect(1);
    subscribe_all(&mut sim, &mut c);
    sim.send(&mut c, &tbt(5, Contract::stock("MSFT"), "BidAsk"));
    sim.send(&mut c, &snapshot(6, Contract::stock("SPY")));
    sim.advance(Duration::from_secs(12));
    sim.send(&mut c, &cancel_tbt(3));
    sim.gw.inject(
        sim.now,
        Fault::LinkLoss {
            outage: Duration::from_secs(7),
            data_lost: true,
        },
    );
    sim.advance(Duration::from_secs(10));
    sim.send(&mut c, &mkt_data(7, Contract::stock("QQQ")));
    sim.advance(Duration::from_secs(20));
    sim.recv(&mut c);
    sim.trace.clone()
}

#[test]
fn same_seed_same_bytes() {
    let a = script(5);
    assert!(a.len() > 10_000, "{}", a.len());
    assert_eq!(a, script(5));
    assert_ne!(a, script(6), "another seed, another path");
}

/// Random faults of every kind every ~20 s for an hour while a client keeps one subscription of
/// each kind (resubscribing after 1101, reconnecting after a close): the gateway never holds
/// more lines than its budget, nor the same subscription twice, and ends with none.
#[test]
fn chaos_with_streams_open() {
    let config = GatewayConfig {
        start_unix_ms: OPEN,
        max_market_data_lines: 2,
        chaos: Some(Chaos::every(Duration::from_secs(20))),
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(config, 34);
    let mut c: Option<Client> = None;
    let (mut subscribed, mut reconnects) = (0, 0);
    while sim.elapsed() < Duration::from_secs(3600) {
        sim.advance(Duration::from_millis(700));
        let mut resubscribe = false;
        if let Some(client) = c.as_mut() {
            let rs = sim.recv_or_drop(client);
            resubscribe = codes(&rs).contains(&1101);
            if client.closed {
                c = None;
            }
        }
        if c.is_none() && !sim.gw.is_refusing(sim.now) {
            let mut client = sim.connect(1);
            if !client.closed {
                reconnects += 1;
                resubscribe = true;
            }
            sim.recv_or_drop(&mut client);
            c = Some(client).filter(|c| !c.closed);
        }
        if let (true, Some(client)) = (resubscribe, c.as_mut()) {
            for cancel in [cancel_mkt(1), cancel_rt(2), cancel_tbt(3)] {
                sim.send(client, &cancel);
            }
            sim.send(
                client,
                &ibconn_core::message::Request::CancelHistoricalData { req_id: 4 },
            );
            let aapl = Contract::stock("AAPL");
            sim.send(client, &mkt_data(1, aapl.clone()));
            sim.send(client, &rt_bars(2, aapl.clone(), "TRADES"));
            sim.send(client, &tbt(3, aapl.clone(), "AllLast"));
            sim.send(client, &keep_up(4, aapl, "1 min"));
            subscribed += 1;
        }
        let k = sim.gw.counters();
        assert!(k.lines_in_use <= 2 && k.tick_by_tick_in_use <= 5, "{k:?}");
    }
    let k = sim.gw.counters();
    println!("{subscribed} subscriptions, {reconnects} reconnects: {k:?}");
    assert_eq!(k.duplicate_subscriptions, 0, "{k:?}");
    // A subscription leaked by a dead session would hold a line: the next would get 101.
    assert_eq!(
        (k.max_tickers_refused, k.tick_by_tick_refused),
        (0, 0),
        "{k:?}"
    );
    assert!(
        subscribed >= 2 && reconnects >= 1,
        "{subscribed} {reconnects} {k:?}"
    );
    assert!(k.stream_messages > 1000, "{k:?}");
    sim.gw.inject(
        sim.now,
        Fault::Restart {
            down_for: Duration::from_secs(1),
        },
    );
    assert_eq!(sim.gw.counters().live_subscriptions, 0);
}
