//! Prometheus text exposition (format 0.0.4) of a [`PoolStats`] snapshot: the same counters the
//! JSON endpoints serve, with `# HELP` and `# TYPE` for every family.

use ibconn_core::stream::StreamKind;
use std::fmt::{Display, Write as _};

use ibconn_core::pool::PoolStats;

/// The content type of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The last health probe, as `/metrics` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastProbe {
    /// Whether it succeeded.
    pub(crate) ok: bool,
    /// Its round trip in microseconds (when it succeeded).
    pub(crate) rtt_us: Option<u64>,
}

/// A text buffer that writes metric families.
struct Exposition {
    out: String,
}

impl Exposition {
    /// Start a family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Escape a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Microseconds or milliseconds as seconds.
#[allow(clippy::cast_precision_loss)] // counters far below 2^53
fn secs(value: u64, per_sec: f64) -> f64 {
    value as f64 / per_sec
}

/// Render `stats` (and the last probe, if any) as Prometheus text.
pub(crate) fn render(stats: &PoolStats, last_probe: Option<LastProbe>) -> String {
    let mut e = Exposition { out: String::new() };
    let counters: [(&str, &str, u64); 16] = [
        (
            "ibconn_pool_sessions_established_total",
            "Sessions established (handshake finished).",
            stats.established,
        ),
        (
            "ibconn_pool_dial_failures_total",
            "Dials or handshakes that failed.",
            stats.failed,
        ),
        (
            "ibconn_pool_disconnects_total",
            "Established sessions that later dropped.",
            stats.disconnects,
        ),
        (
            "ibconn_pool_reconnects_total",
            "Redials after a drop.",
            stats.reconnects,
        ),
        (
            "ibconn_pool_client_id_conflicts_total",
            "Client id conflicts (IB error 326).",
            stats.client_id_conflicts,
        ),
        (
            "ibconn_pool_acquired_total",
            "Acquires granted.",
            stats.acquired,
        ),
        (
            "ibconn_pool_acquire_timeouts_total",
            "Acquires that timed out.",
            stats.acquire_timeouts,
        ),
        (
            "ibconn_pool_requests_total",
            "Requests submitted.",
            stats.requests,
        ),
        (
            "ibconn_pool_requests_retried_total",
            "Requests sent again after a drop or a pacing violation.",
            stats.requests_retried,
        ),
        (
            "ibconn_pacing_waits_total",
            "Requests that waited for a pacing slot.",
            stats.pacing_waits,
        ),
        (
            "ibconn_pacing_violations_total",
            "Pacing violations (IB error 162) reported to the pacer.",
            stats.pacing_violations,
        ),
        (
            "ibconn_pacing_rate_limited_total",
            "Message rate limits (IB error 100) reported to the pacer.",
            stats.rate_limited,
        ),
        (
            "ibconn_pool_probes_total",
            "Health-probe round trips observed.",
            stats.probe_rtt.count,
        ),
        (
            "ibconn_streams_interrupted_total",
            "Streams interrupted (lost session, 1101, bust) and queued to be requested again.",
            stats.streams.interrupted,
        ),
        (
            "ibconn_streams_resubscribed_total",
            "Streams requested again after an interruption.",
            stats.streams.resubscribed,
        ),
        (
            "ibconn_stream_items_total",
            "Stream items handed to consumers.",
            stats.streams.items,
        ),
    ];
    for (name, help, value) in counters {
        e.single(name, "counter", help, value);
    }
    e.single(
        "ibconn_pacing_wait_seconds_total",
        "counter",
        "Total time requests waited for pacing slots.",
        secs(stats.pacing_wait_ms, 1e3),
    );
    e.single(
        "ibconn_pool_leases",
        "gauge",
        "Leases held now.",
        stats.leases,
    );
    e.single(
        "ibconn_pool_waiters",
        "gauge",
        "Acquires waiting now.",
        stats.waiters,
    );

    for (name, help, lat) in [
        (
            "ibconn_pool_handshake_seconds",
            "Dial to ready latency.",
            stats.handshake_latency,
        ),
        (
            "ibconn_pool_probe_rtt_seconds",
            "Health-probe round trip.",
            stats.probe_rtt,
        ),
    ] {
        e.family(name, "summary", help);
        e.sample(&format!("{name}_sum"), &[], secs(lat.total, 1e6));
        e.sample(&format!("{name}_count"), &[], lat.count);
    }

    e.family(
        "ibconn_ib_errors_total",
        "counter",
        "IB errors and notices by class.",
    );
    // The pool keys its counts by the class's Rust form (`FarmStatus(Historical, Ok)`);
    // Prometheus gets plain snake_case values: class="farm_status", detail="historical_ok".
    let mut by_label: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for (class, n) in &stats.errors_by_class {
        *by_label.entry(class_labels(class)).or_default() += n;
    }
    for ((class, detail), n) in &by_label {
        if detail.is_empty() {
            e.sample("ibconn_ib_errors_total", &[("class", class)], n);
        } else {
            e.sample(
                "ibconn_ib_errors_total",
                &[("class", class), ("detail", detail)],
                n,
            );
        }
    }

    e.family(
        "ibconn_pool_connections",
        "gauge",
        "Pooled connections by state.",
    );
    for state in ["dialing", "handshaking", "ready", "waiting"] {
        let n = stats
            .connections
            .iter()
            .filter(|c| c.state == state)
            .count();
        e.sample("ibconn_pool_connections", &[("state", state)], n);
    }

    e.family("ibconn_streams_open", "gauge", "Streams open now, by kind.");
    for kind in StreamKind::ALL {
        let n = stats.streams.open.get(&kind).copied().unwrap_or(0);
        e.sample("ibconn_streams_open", &[("kind", kind.name())], n);
    }

    gateways(&mut e, stats);

    if let Some(p) = last_probe {
        e.single(
            "ibconn_health_probe_ok",
            "gauge",
            "1 if the last health probe of the HTTP API succeeded, else 0.",
            u8::from(p.ok),
        );
        if let Some(rtt) = p.rtt_us {
            e.single(
                "ibconn_health_probe_rtt_seconds",
                "gauge",
                "Round trip of the last successful health probe.",
                secs(rtt, 1e6),
            );
        }
    }
    e.out
}

/// An error class as the pool names it (`FarmStatus(Historical, Ok)`, `Pacing`) as two label
/// values in snake_case: the class (`farm_status`) and its detail (`historical_ok`, or empty).
pub(crate) fn class_labels(name: &str) -> (String, String) {
    let (head, args) = match name.split_once('(') {
        Some((head, rest)) => (head, rest.trim_end_matches(')')),
        None => (name, ""),
    };
    let detail: Vec<String> = args
        .split(',')
        .map(snake_case)
        .filter(|s| !s.is_empty())
        .collect();
    (snake_case(head), detail.join("_"))
}

/// `RestoredDataLost` → `restored_data_lost`; anything but ASCII letters and digits dropped.
fn snake_case(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars().filter(char::is_ascii_alphanumeric) {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Per-gateway families: counters, breaker state, pacer.
fn gateways(e: &mut Exposition, stats: &PoolStats) {
    type Pick = fn(&ibconn_core::pool::GatewayStats) -> f64;
    #[allow(clippy::cast_precision_loss)]
    let families: [(&str, &str, &str, Pick); 14] = [
        (
            "ibconn_gateway_sessions_established_total",
            "counter",
            "Sessions established per gateway.",
            |g| g.established as f64,
        ),
        (
            "ibconn_gateway_dial_failures_total",
            "counter",
            "Dials or handshakes that failed per gateway.",
            |g| g.failed as f64,
        ),
        (
            "ibconn_gateway_breaker_opened_total",
            "counter",
            "Times the gateway's circuit breaker opened.",
            |g| g.breaker.times_opened as f64,
        ),
        (
            "ibconn_gateway_breaker_consecutive_failures",
            "gauge",
            "Failures since the last success.",
            |g| f64::from(g.breaker.consecutive_failures),
        ),
        (
            "ibconn_pacer_open_requests",
            "gauge",
            "Open-request slots held.",
            |g| f64::from(g.pacer.open_requests),
        ),
        (
            "ibconn_pacer_open_requests_max",
            "gauge",
            "Configured maximum of open requests.",
            |g| f64::from(g.pacer.open_max),
        ),
        (
            "ibconn_pacer_historical_weight",
            "gauge",
            "Historical request weight sent in the current window.",
            |g| f64::from(g.pacer.historical_weight_in_window),
        ),
        (
            "ibconn_pacer_historical_weight_max",
            "gauge",
            "Historical window capacity.",
            |g| f64::from(g.pacer.historical_weight_max),
        ),
        (
            "ibconn_pacer_messages_in_window",
            "gauge",
            "Messages sent in the last message-rate window.",
            |g| f64::from(g.pacer.messages_in_window),
        ),
        (
            "ibconn_pacer_scheduled_ahead",
            "gauge",
            "Reservations whose slot is still in the future.",
            |g| f64::from(g.pacer.scheduled_ahead),
        ),
        (
            "ibconn_pacer_horizon_seconds",
            "gauge",
            "Time until the last reserved slot.",
            |g| g.pacer.horizon_ms as f64 / 1e3,
        ),
        (
            "ibconn_pacer_paused_seconds",
            "gauge",
            "Adaptive pause left after a pacing violation.",
            |g| g.pacer.paused_for_ms as f64 / 1e3,
        ),
        (
            "ibconn_pacer_violations_total",
            "counter",
            "Pacing violations reported to the gateway's pacer.",
            |g| g.pacer.violations_total as f64,
        ),
        (
            "ibconn_pacer_reservations_total",
            "counter",
            "Pacing reservations made.",
            |g| g.pacer.reservations_total as f64,
        ),
    ];
    for (name, kind, help, pick) in families {
        e.family(name, kind, help);
        for g in &stats.gateways {
            e.sample(name, &[("gateway", &g.addr)], pick(g));
        }
    }
    e.family(
        "ibconn_gateway_breaker_state",
        "gauge",
        "1 for the gateway's current circuit-breaker state.",
    );
    for g in &stats.gateways {
        for state in ["closed", "open", "half_open"] {
            e.sample(
                "ibconn_gateway_breaker_state",
                &[("gateway", &g.addr), ("state", state)],
                u8::from(g.breaker.state == state),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_belongs_to_a_typed_family() {
        let text = render(
            &PoolStats::default(),
            Some(LastProbe {
                ok: true,
                rtt_us: Some(1_500),
            }),
        );
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                assert!(
                    typed.iter().any(|f| name == f
                        || name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| s == "_sum" || s == "_count")),
                    "{line}"
                );
            }
        }
        assert!(text.contains("ibconn_health_probe_rtt_seconds 0.0015\n"));
    }

    #[test]
    fn open_streams_are_a_gauge_per_kind_zeros_included() {
        let mut stats = PoolStats::default();
        stats.streams.open.insert(StreamKind::RealTimeBars, 3);
        stats.streams.resubscribed = 2;
        let text = render(&stats, None);
        assert!(
            text.contains("ibconn_streams_open{kind=\"real_time_bars\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("ibconn_streams_open{kind=\"market_data\"} 0\n"));
        assert!(text.contains("ibconn_streams_resubscribed_total 2\n"));
    }

    #[test]
    fn error_classes_are_plain_snake_case_labels() {
        use ibconn_core::classify::{classify, RequestContext};
        let pair = |c: &str, d: &str| (c.to_owned(), d.to_owned());
        assert_eq!(
            class_labels("FarmStatus(Historical, Ok)"),
            pair("farm_status", "historical_ok")
        );
        assert_eq!(class_labels("Pacing"), pair("pacing", ""));
        assert_eq!(
            class_labels("Connectivity(RestoredDataLost)"),
            pair("connectivity", "restored_data_lost")
        );
        // Every class the classifier gives, as the pool keys it: letters, digits, underscores.
        for code in [
            100, 162, 165, 200, 326, 354, 1100, 1101, 1300, 2104, 2106, 2158, 10197, 9,
        ] {
            let class = classify(code, "x", &RequestContext::default()).class;
            let (c, d) = class_labels(&format!("{class:?}"));
            for v in [&c, &d] {
                assert!(
                    v.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                    "{class:?} -> {v}"
                );
            }
            assert!(!c.is_empty());
        }
        let mut stats = PoolStats::default();
        stats
            .errors_by_class
            .insert("FarmStatus(Historical, Ok)".to_owned(), 2);
        stats.errors_by_class.insert("Pacing".to_owned(), 1);
        let text = render(&stats, None);
        assert!(
            text.contains(
                "ibconn_ib_errors_total{class=\"farm_status\",detail=\"historical_ok\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("ibconn_ib_errors_total{class=\"pacing\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("FarmStatus"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
