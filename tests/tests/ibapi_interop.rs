//! The third-party `ibapi` 5.5.0 crate (async and blocking clients) against `ibconn-sim` over real
//! loopback TCP. Every await is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::{start_sim, start_sim_with, within};
use ibapi::contracts::Contract;
use ibapi::market_data::historical::{BarSize, BarTimestamp, ToDuration, WhatToShow};
use ibapi::market_data::TradingHours;
use ibapi::Error;
use ibconn_sim::GatewayConfig;
use time::OffsetDateTime;

fn ts(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

/// 2025-12-31 21:00:00 UTC (16:00 in New York).
const DEC31_CLOSE: i64 = 1_767_214_800;
/// AAPL's head timestamp: 1980-12-12 14:30 UTC.
const AAPL_HEAD: i64 = 345_479_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_client_end_to_end() {
    let sim = start_sim().await;
    let addr = sim.local_addr().to_string();
    let client = within("connect", ibapi::Client::connect(&addr, 100))
        .await
        .unwrap();
    assert_eq!(client.server_version(), 226);
    assert_eq!(client.handshake_managed_accounts(), ["DU1234567"]);

    let t = within("server_time", client.server_time()).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert!((now - t).whole_seconds().abs() <= 5, "{t} vs {now}");

    let aapl = Contract::stock("AAPL").build();
    let hourly = within(
        "hourly",
        client
            .historical_data(&aapl, BarSize::Hour)
            .ending(ts(DEC31_CLOSE))
            .duration(2.days())
            .fetch(),
    )
    .await
    .unwrap();
    assert_eq!(hourly.bars.len(), 14, "two RTH days of 7 bars");
    assert_eq!(hourly.end, ts(DEC31_CLOSE));
    assert_eq!(hourly.start, ts(DEC31_CLOSE - 30 * 3600 - 1800));
    match hourly.bars[0].date {
        BarTimestamp::DateTime(dt) => assert_eq!(dt, ts(DEC31_CLOSE - 30 * 3600 - 1800)),
        other => panic!("intraday bar dated {other:?}"),
    }

    let spy = Contract::stock("SPY").build();
    let daily = within(
        "daily",
        client
            .historical_data(&spy, BarSize::Day)
            .duration(1.months())
            .fetch(),
    )
    .await
    .unwrap();
    assert!(daily.bars.len() >= 15, "{} daily bars", daily.bars.len());
    assert!(daily
        .bars
        .iter()
        .all(|b| matches!(b.date, BarTimestamp::Date(_)) && b.low <= b.high));

    let head = within(
        "head_timestamp",
        client.head_timestamp(&aapl, WhatToShow::Trades, TradingHours::Regular),
    )
    .await
    .unwrap();
    assert_eq!(head, ts(AAPL_HEAD));

    let details = within("contract_details", client.contract_details(&aapl))
        .await
        .unwrap();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0].contract.contract_id, 265_598);
    assert_eq!(details[0].long_name, "APPLE INC");

    let symbols = within("matching_symbols", client.matching_symbols("AAP"))
        .await
        .unwrap();
    assert_eq!(symbols[0].contract.symbol.0, "AAPL");

    let unknown = Contract::stock("NOPE").build();
    match within("unknown contract", client.contract_details(&unknown)).await {
        Err(Error::Notice(n)) => assert_eq!(n.code, 200),
        other => panic!("{other:?}"),
    }
    within("disconnect", client.disconnect()).await;
    within("shutdown", sim.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_end_to_end() {
    let sim = start_sim().await;
    let addr = sim.local_addr().to_string();
    let job = tokio::task::spawn_blocking(move || {
        use ibapi::client::blocking::Client;
        let client = Client::connect(&addr, 101).unwrap();
        assert_eq!(client.server_version(), 226);
        client.server_time().unwrap();
        let aapl = Contract::stock("AAPL").build();
        let hourly = client
            .historical_data(&aapl, BarSize::Hour)
            .ending(ts(DEC31_CLOSE))
            .duration(2.days())
            .fetch()
            .unwrap();
        assert_eq!(hourly.bars.len(), 14);
        let msft = Contract::stock("MSFT").build();
        let daily = client
            .historical_data(&msft, BarSize::Day)
            .duration(1.months())
            .fetch()
            .unwrap();
        assert!(matches!(daily.bars[0].date, BarTimestamp::Date(_)));
        let head = client
            .head_timestamp(&aapl, WhatToShow::Trades, TradingHours::Regular)
            .unwrap();
        assert_eq!(head, ts(AAPL_HEAD));
        assert_eq!(client.contract_details(&aapl).unwrap().len(), 1);
        assert!(!client.matching_symbols("MSF").unwrap().is_empty());
        client.disconnect();
    });
    within("blocking client", job).await.unwrap();
    within("shutdown", sim.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_with_same_client_id_is_refused() {
    let sim = start_sim().await;
    let addr = sim.local_addr().to_string();
    let first = within("first connect", ibapi::Client::connect(&addr, 200))
        .await
        .unwrap();
    match within("second connect", ibapi::Client::connect(&addr, 200)).await {
        Err(Error::ClientIdInUse { client_id }) => assert_eq!(client_id, 200),
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("second session with client id 200 was accepted"),
    }
    // The first session is unaffected.
    within("server_time", first.server_time()).await.unwrap();
    within("shutdown", sim.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_past_the_pacing_rules_gets_162() {
    // Hourly bars: IB lifted its pacing rules for bars of a minute and more, so the sim paces
    // them only under its strict rules.
    let gateway = GatewayConfig {
        historical: ibconn_sim::HistoricalRules::strict(),
        ..GatewayConfig::default()
    };
    let sim = start_sim_with(gateway, None).await;
    let addr = sim.local_addr().to_string();
    let client = within("connect", ibapi::Client::connect(&addr, 300))
        .await
        .unwrap();
    let aapl = Contract::stock("AAPL").build();
    let mut outcomes = Vec::new();
    for days in 1..=6 {
        let r = within(
            "fetch",
            client
                .historical_data(&aapl, BarSize::Hour)
                .ending(ts(DEC31_CLOSE))
                .duration(days.days())
                .fetch(),
        )
        .await;
        outcomes.push(r);
    }
    assert!(outcomes[..5].iter().all(Result::is_ok), "{outcomes:?}");
    match &outcomes[5] {
        Err(Error::Notice(n)) => {
            assert_eq!(n.code, 162);
            assert_eq!(
                n.message,
                "Historical Market Data Service error message:Historical data request pacing violation"
            );
        }
        other => panic!("6th request in 2 s: {other:?}"),
    }
    within("shutdown", sim.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibapi_reconnects_after_the_sim_drops_the_socket() {
    let sim = start_sim().await;
    let addr = sim.local_addr().to_string();
    let client = within("connect", ibapi::Client::connect(&addr, 400))
        .await
        .unwrap();
    within("server_time", client.server_time()).await.unwrap();
    sim.drop_connections();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ibapi notices the EOF, reconnects after ~1 s with the same client id, and the request
    // completes on the new session.
    within("server_time after drop", client.server_time())
        .await
        .unwrap();
    let aapl = Contract::stock("AAPL").build();
    let head = within(
        "head_timestamp after drop",
        client.head_timestamp(&aapl, WhatToShow::Trades, TradingHours::Regular),
    )
    .await
    .unwrap();
    assert_eq!(head, ts(AAPL_HEAD));
    assert!(client.is_connected());
    within("shutdown", sim.shutdown()).await;
}
