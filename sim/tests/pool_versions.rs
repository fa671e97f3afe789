//! The pool's version fallback in virtual time against the simulated gateway ([`PoolWorld`]): a
//! text-era gateway gets one modern attempt, then the wide offer for every connection, and a
//! backfill runs through in text form; a modern gateway never sees the wide offer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ibconn_core::backfill::{BackfillJob, BackfillSpec, JobConfig};
use ibconn_core::bar_size::BarSize;
use ibconn_core::message::Contract;
use ibconn_core::wire::VersionRange;
use ibconn_sim::calendar::utc;
use ibconn_sim::{BackfillRun, PoolWorld, PoolWorldConfig};

/// A day of hourly bars on a pool of (up to) four backfill connections; the trace and the pool's
/// gateway stats.
fn backfill(server_max: i32) -> (Vec<String>, ibconn_core::pool::GatewayStats) {
    let mut config = PoolWorldConfig::new(11);
    config.gateway.versions = VersionRange::new(100, server_max);
    let mut world = PoolWorld::new(config);
    world.enable_trace();
    let spec = BackfillSpec {
        contract: Contract::stock("AAPL"),
        bar_size: BarSize::Min5,
        what_to_show: ibconn_core::what_to_show::WhatToShow::Trades,
        use_rth: false,
    };
    let from = utc(2025, 12, 1, 0, 0, 0);
    let to = utc(2025, 12, 3, 0, 0, 0);
    let mut job = BackfillJob::new(spec, from, to, Vec::new(), JobConfig::default()).unwrap();
    let report = world
        .run_backfill(&mut job, BackfillRun::default(), |_, _| {})
        .unwrap();
    assert!(job.is_complete(), "v{server_max}: {:?}", job.failures());
    assert!(job.progress().bars > 0, "v{server_max}");
    assert_eq!(report.gateway_pacing_violations, 0);
    let stats = world.pool_stats();
    (world.trace().to_vec(), stats.gateways[0].clone())
}

fn count(trace: &[String], what: &str) -> usize {
    trace.iter().filter(|l| l.contains(what)).count()
}

#[test]
fn a_text_era_gateway_costs_one_modern_attempt_per_pool() {
    for max in [176, 200] {
        let (trace, gateway) = backfill(max);
        assert_eq!(
            count(&trace, "→G API v213..226"),
            1,
            "v{max}: one modern attempt"
        );
        assert!(count(&trace, "→G API v100..226") >= 1, "v{max}");
        assert!(
            trace.iter().any(|l| l.contains("→G ReqHistoricalData")),
            "v{max}"
        );
        assert_eq!(
            (
                gateway.version_fallbacks,
                gateway.wide_offer,
                gateway.failed
            ),
            (1, true, 0),
            "v{max}: {gateway:?}"
        );
        assert_eq!(
            gateway.established as usize,
            count(&trace, "→G API v100..226")
        );
    }
}

#[test]
fn a_modern_gateway_never_sees_the_wide_offer() {
    let (trace, gateway) = backfill(226);
    assert_eq!(count(&trace, "→G API v100..226"), 0);
    assert_eq!(
        count(&trace, "→G API v213..226") as u64,
        gateway.established
    );
    assert_eq!((gateway.version_fallbacks, gateway.wide_offer), (0, false));
}
