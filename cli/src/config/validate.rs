//! Range checks of the effective settings, naming the key and where its value came from.

use std::collections::BTreeMap;

use ibconn_core::client_id::IdRange;

use super::settings::{parse_store, parse_versions, Settings};
use super::ConfigError;
use crate::args::parse_host_port;

/// Longest duration any `*_secs` key accepts (a week).
const MAX_SECS: f64 = 7.0 * 86_400.0;

/// Range checks, naming the key and its source.
pub(super) fn validate(
    s: &Settings,
    sources: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.to_owned(),
        source_: sources
            .get(key)
            .cloned()
            .unwrap_or_else(|| "default".to_owned()),
        message,
    };
    let positive_secs = |key: &str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= MAX_SECS {
            Ok(())
        } else {
            Err(invalid(
                key,
                format!("{v} is not a duration in seconds (> 0 and <= {MAX_SECS})"),
            ))
        }
    };
    let at_least = |key: &str, v: u64, min: u64| {
        if v >= min {
            Ok(())
        } else {
            Err(invalid(key, format!("{v} is below the minimum {min}")))
        }
    };
    if let Some(g) = s.gateway.as_deref().filter(|g| *g != crate::args::EMBEDDED) {
        parse_host_port(g).map_err(|e| invalid("gateway", format!("{e}, or \"embedded\"")))?;
    }
    parse_versions(&s.connection.versions).map_err(|e| invalid("connection.versions", e))?;
    for (key, v) in [
        ("streams.market_data_lines", s.streams.market_data_lines),
        ("streams.tick_by_tick", s.streams.tick_by_tick),
        ("streams.bar_updates", s.streams.bar_updates),
    ] {
        at_least(key, v as u64, 1)?;
    }
    parse_store(&s.coordination.store).map_err(|e| invalid("coordination.store", e))?;
    let p = &s.pool;
    for (key, v) in [
        ("pool.acquire_timeout_secs", p.acquire_timeout_secs),
        ("pool.dial_timeout_secs", p.dial_timeout_secs),
        ("pool.idle_timeout_secs", p.idle_timeout_secs),
        ("pool.heartbeat_interval_secs", p.heartbeat_interval_secs),
        ("pool.reconnect_base_secs", p.reconnect_base_secs),
        ("pool.reconnect_cap_secs", p.reconnect_cap_secs),
        ("pool.breaker_open_secs", p.breaker_open_secs),
        ("client_ids.lease_ttl_secs", s.client_ids.lease_ttl_secs),
        (
            "coordination.lock_timeout_secs",
            s.coordination.lock_timeout_secs,
        ),
        ("coordination.claim_ttl_secs", s.coordination.claim_ttl_secs),
        (
            "client_ids.foreign_cooldown_secs",
            s.client_ids.foreign_cooldown_secs,
        ),
        (
            "connection.handshake_timeout_secs",
            s.connection.handshake_timeout_secs,
        ),
        (
            "connection.request_timeout_secs",
            s.connection.request_timeout_secs,
        ),
        ("connection.probe_idle_secs", s.connection.probe_idle_secs),
        (
            "connection.probe_timeout_secs",
            s.connection.probe_timeout_secs,
        ),
        (
            "pacing.message_rate_window_secs",
            s.pacing.message_rate_window_secs,
        ),
        (
            "pacing.historical_window_secs",
            s.pacing.historical_window_secs,
        ),
        ("pacing.burst_window_secs", s.pacing.burst_window_secs),
        ("pacing.identical_gap_secs", s.pacing.identical_gap_secs),
        ("health.timeout_secs", s.health.timeout_secs),
        ("health.probe_timeout_secs", s.health.probe_timeout_secs),
        ("fetch.request_timeout_secs", s.fetch.request_timeout_secs),
        ("fetch.gateway_down_secs", s.fetch.gateway_down_secs),
        ("fetch.progress_every_secs", s.fetch.progress_every_secs),
    ] {
        positive_secs(key, v)?;
    }
    if p.reconnect_cap_secs < p.reconnect_base_secs {
        return Err(invalid(
            "pool.reconnect_cap_secs",
            format!(
                "{} is below pool.reconnect_base_secs ({})",
                p.reconnect_cap_secs, p.reconnect_base_secs
            ),
        ));
    }
    if p.heartbeat_interval_secs * 3.0 > s.client_ids.lease_ttl_secs {
        // Blame the key that was set (the other one is a default).
        let key = if sources.contains_key("client_ids.lease_ttl_secs") {
            "client_ids.lease_ttl_secs"
        } else {
            "pool.heartbeat_interval_secs"
        };
        return Err(invalid(
            key,
            format!(
                "pool.heartbeat_interval_secs ({}) is more than a third of \
                 client_ids.lease_ttl_secs ({}): leases would expire between heartbeats",
                p.heartbeat_interval_secs, s.client_ids.lease_ttl_secs
            ),
        ));
    }
    if p.heartbeat_interval_secs * 3.0 > s.coordination.claim_ttl_secs {
        return Err(invalid(
            "coordination.claim_ttl_secs",
            format!(
                "{} is less than three pool.heartbeat_interval_secs ({}): pacing claims would \
                 lapse between renewals",
                s.coordination.claim_ttl_secs, p.heartbeat_interval_secs
            ),
        ));
    }
    let m = s.pacing.margin_secs;
    if !(m.is_finite() && (0.0..=60.0).contains(&m)) {
        return Err(invalid(
            "pacing.margin_secs",
            format!("{m} is not between 0 and 60 seconds"),
        ));
    }
    for (key, v) in [
        (
            "pool.breaker_failure_threshold",
            p.breaker_failure_threshold,
        ),
        (
            "client_ids.max_conflict_attempts",
            s.client_ids.max_conflict_attempts,
        ),
        ("pacing.message_rate_max", s.pacing.message_rate_max),
        ("pacing.historical_max", s.pacing.historical_max),
        ("pacing.burst_max", s.pacing.burst_max),
        ("pacing.open_max", s.pacing.open_max),
        ("pacing.bid_ask_weight", s.pacing.bid_ask_weight),
    ] {
        at_least(key, u64::from(v), 1)?;
    }
    at_least("fetch.concurrency", u64::from(s.fetch.concurrency), 1)?;
    if s.fetch.concurrency > 50 {
        return Err(invalid(
            "fetch.concurrency",
            format!("{} is above IB's 50 open requests", s.fetch.concurrency),
        ));
    }
    for (key, v) in [
        ("validate.valid_ttl_secs", s.validate.valid_ttl_secs),
        ("validate.unknown_ttl_secs", s.validate.unknown_ttl_secs),
    ] {
        if v <= 0 {
            return Err(invalid(
                key,
                format!("{v} is not a positive number of seconds"),
            ));
        }
    }
    // Purposes: a sane size and an id range each.
    for (name, purpose) in &s.purposes {
        let key = format!("purposes.{name}.max_connections");
        if !(1..=64).contains(&purpose.max_connections) {
            return Err(invalid(
                &key,
                format!("{} is not between 1 and 64", purpose.max_connections),
            ));
        }
        if !s.client_ids.ranges.contains_key(name) {
            return Err(invalid(
                &format!("purposes.{name}"),
                format!("purpose {name:?} has no client-id range (add client_ids.ranges.{name})"),
            ));
        }
    }
    // Ranges: ordered, non-negative, disjoint.
    let ranges: Vec<(&String, &IdRange)> = s.client_ids.ranges.iter().collect();
    for (i, (name, r)) in ranges.iter().enumerate() {
        let key = format!("client_ids.ranges.{name}");
        let src_key = |field: &str| format!("{key}.{field}");
        if r.first < 0 || r.first > r.last {
            return Err(ConfigError::Invalid {
                source_: sources
                    .get(&src_key("first"))
                    .or_else(|| sources.get(&src_key("last")))
                    .cloned()
                    .unwrap_or_else(|| "default".to_owned()),
                key,
                message: format!(
                    "{}..={} is not a range of client ids (0 <= first <= last)",
                    r.first, r.last
                ),
            });
        }
        for (other, o) in &ranges[i + 1..] {
            if r.first <= o.last && o.first <= r.last {
                return Err(ConfigError::Invalid {
                    source_: sources
                        .get(&src_key("first"))
                        .or_else(|| sources.get(&format!("client_ids.ranges.{other}.first")))
                        .cloned()
                        .unwrap_or_else(|| "default".to_owned()),
                    key,
                    message: format!(
                        "{}..={} overlaps client_ids.ranges.{other} ({}..={})",
                        r.first, r.last, o.first, o.last
                    ),
                });
            }
        }
    }
    if s.http_listen().is_none() {
        return Err(invalid(
            "http.listen",
            format!("{:?} is not an ADDRESS:PORT", s.http.listen),
        ));
    }
    if s.http.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(invalid(
            "http.token",
            "the bearer token is empty (leave it out for no authentication)".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ibconn_core::client_id::Purpose;
    use ibconn_core::pool::{PurposeConfig, Sharing};

    use super::*;
    use crate::config::load::tests::load_text;

    #[test]
    fn unknown_keys_wrong_types_and_bad_ranges_are_named() {
        let e = load_text("[pool]\nacquire_timeout = 3\n", &[]).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("t.toml") && m.contains("acquire_timeout"), "{m}");
        let m = load_text("[fetch]\nconcurrency = \"four\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("t.toml") && m.contains("concurrency"), "{m}");
        let m = load_text(
            "[client_ids.ranges.backfill]\nfirst = 2500\nlast = 2000\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            m.contains("client_ids.ranges.backfill") && m.contains("t.toml"),
            "{m}"
        );
        let m = load_text(
            "[client_ids.ranges.backfill]\nfirst = 1500\nlast = 2500\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(m.contains("overlaps"), "{m}");
        let m = load_text("", &[("IBCONN_POOL_ACQUIRE_TIMEOUT", "3")])
            .unwrap_err()
            .to_string();
        assert!(m.contains("IBCONN_POOL_ACQUIRE_TIMEOUT"), "{m}");
        let m = load_text("", &[("IBCONN_FETCH_CONCURRENCY", "lots")])
            .unwrap_err()
            .to_string();
        assert!(m.contains("IBCONN_FETCH_CONCURRENCY"), "{m}");
        let m = load_text("", &[("IBCONN_FETCH_CONCURRENCY", "99")])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("fetch.concurrency") && m.contains("$IBCONN_FETCH_CONCURRENCY"),
            "{m}"
        );
        let m = load_text("[purposes.reports]\nmax_connections = 2\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("client_ids.ranges.reports"), "{m}");
        let m = load_text("[pool]\nheartbeat_interval_secs = 30\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("lease_ttl_secs"), "{m}");
        let m = load_text("gateway = \"nohost\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("gateway"), "{m}");
        let m = load_text("", &[("IBCONN_HTTP_TOKEN", " ")])
            .unwrap_err()
            .to_string();
        assert!(m.contains("IBCONN_HTTP_TOKEN"), "{m}");
    }

    #[test]
    fn a_custom_purpose_with_a_range_is_accepted() {
        let s = load_text(
            "[purposes.reports]\nmax_connections = 2\nmax_in_flight = 8\n\
             [client_ids.ranges.reports]\nfirst = 7000\nlast = 7099\n",
            &[("IBCONN_PURPOSES_REPORTS_MAX_IN_FLIGHT", "4")],
        )
        .unwrap();
        let pool = s.pool_config(Vec::new());
        assert_eq!(
            pool.purposes.get(&Purpose::Custom("reports".to_owned())),
            Some(&PurposeConfig {
                max_connections: 2,
                sharing: Sharing::Shared { max_in_flight: 4 }
            })
        );
        assert_eq!(
            s.registry_config()
                .ranges
                .get(&Purpose::Custom("reports".to_owned())),
            Some(&IdRange::new(7000, 7099))
        );
    }
}
