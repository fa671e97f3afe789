//! The Python client ib_async 2.1.0 (text protocol, offers v157..178) against `ibconn-sim` over
//! real loopback TCP: connect, reqContractDetails, reqHeadTimeStamp, reqHistoricalData.
//!
//! The test runs `tests/python/ib_async_smoke.py PORT` with the interpreter in `IBCONN_PYTHON`
//! (else `<workspace>/.venv-ci/bin/python`) and asserts on the JSON it prints. `.ci/run` installs
//! ib_async into `.venv-ci` and sets `IBCONN_PYTHON`. When the interpreter or the package is
//! missing the test fails under `CI=true` or an explicit `IBCONN_PYTHON`, and is skipped (with a
//! message) otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ib_async_connects_and_fetches_over_tcp() {
    let Some(python) = common::python("ib_async interop") else {
        return;
    };
    let sim = common::start_sim_with(ibconn_sim::GatewayConfig::default(), None).await;
    let port = sim.local_addr().port().to_string();

    let child = tokio::process::Command::new(&python)
        .arg(common::script("ib_async_smoke.py"))
        .arg(&port)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("ib_async script timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let json: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}\n{stderr}"));
    sim.shutdown().await;

    // connect: the highest common version is ib_async's maximum, text protocol.
    assert_eq!(json["ib_async"], "2.1.0");
    assert_eq!(json["server_version"], 178);
    assert_eq!(json["accounts"], serde_json::json!(["DU1234567"]));

    // reqContractDetails
    let details = json["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{json}");
    let d = &details[0];
    assert_eq!(d["conId"], 265_598);
    assert_eq!(d["symbol"], "AAPL");
    assert_eq!(d["secType"], "STK");
    assert_eq!(d["primaryExchange"], "NASDAQ");
    assert_eq!(d["longName"], "APPLE INC");
    assert_eq!(d["minTick"], 0.01);
    assert_eq!(d["timeZoneId"], "US/Eastern");
    assert_eq!(d["stockType"], "COMMON");

    // reqHeadTimeStamp (formatDate 2): 1980-12-12 14:30 UTC.
    assert_eq!(json["head"], 345_479_400);

    // reqHistoricalData: two RTH days of hourly bars ending 2025-12-31 16:00 New York
    // (the same window the ibapi test checks), then a month of daily bars.
    let hourly = &json["hourly"];
    assert_eq!(hourly["count"], 14);
    assert_eq!(hourly["first"], 1_767_105_000, "2025-12-30 09:30 New York");
    assert_eq!(hourly["last"], 1_767_211_200, "2025-12-31 15:00 New York");
    assert_eq!(hourly["ohlc_ok"], true);
    assert!(hourly["volume"].as_f64().unwrap() > 0.0);
    assert!(hourly["barCount"].as_i64().unwrap() > 0);
    let daily = &json["daily"];
    assert_eq!(daily["first"], "2025-12-01");
    assert_eq!(daily["last"], "2025-12-31");
    assert_eq!(
        daily["count"], 22,
        "December 2025 trading days (Christmas closed)"
    );
}
