//! The sans-IO gateway under virtual time, driven by the core's client-side codec.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// Tests and benches start from a real instant, wait on real processes or use maps freely:
// the sim's determinism rules are for the library.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use ibconn_core::message::request::HistoricalDataRequest;
use ibconn_core::message::{BarTime, Contract, HeadTimestampRequest, Request, Response};
use ibconn_core::wire::{ClientHello, Form, FrameDecoder, ServerHello, VersionRange};
use ibconn_sim::calendar::utc;
use ibconn_sim::{
    Chaos, ConnId, Fault, Gateway, GatewayConfig, HistoricalRules, Locale, PortState, Target,
};

struct Client {
    conn: ConnId,
    dec: FrameDecoder,
    sv: i32,
    closed: bool,
}

struct Sim {
    gw: Gateway,
    now: Instant,
    trace: Vec<u8>,
}

impl Sim {
    fn new(config: GatewayConfig, seed: u64) -> Self {
        Self {
            gw: Gateway::new(config, seed),
            now: Instant::now(),
            trace: Vec::new(),
        }
    }

    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.gw.poll_timeout().filter(|&t| t <= target) {
            self.now = self.now.max(t);
            self.gw.handle_timeout(self.now);
        }
        self.now = target;
        self.gw.handle_timeout(self.now);
    }

    fn open(&mut self, versions: VersionRange) -> Client {
        let conn = self.gw.accept(self.now);
        let mut hello = BytesMut::new();
        ClientHello::new(versions).encode(&mut hello);
        self.gw.handle_input(conn, self.now, &hello);
        let mut c = Client {
            conn,
            dec: FrameDecoder::new(),
            sv: 0,
            closed: false,
        };
        self.pump(&mut c);
        if let Ok(Some(body)) = c.dec.next_frame() {
            c.sv = ServerHello::decode(&body).unwrap().server_version;
        }
        c
    }

    /// Handshake + START_API; returns the startup burst.
    fn connect(&mut self, client_id: i32) -> (Client, Vec<Response>) {
        let mut c = self.open(VersionRange::new(213, 226));
        let burst = self.request(
            &mut c,
            &Request::StartApi {
                client_id,
                optional_capabilities: String::new(),
            },
        );
        (c, burst)
    }

    fn pump(&mut self, c: &mut Client) {
        while let Some(b) = self.gw.poll_transmit(c.conn) {
            self.trace.extend_from_slice(&b);
            c.dec.push(&b);
        }
        if self.gw.poll_close(c.conn) {
            c.closed = true;
        }
    }

    fn send(&mut self, c: &mut Client, req: &Request) {
        let mut out = BytesMut::new();
        req.encode(c.sv, &mut out).unwrap();
        self.gw.handle_input(c.conn, self.now, &out);
    }

    fn recv(&mut self, c: &mut Client) -> Vec<Response> {
        self.pump(c);
        let mut out = Vec::new();
        while let Some(body) = c.dec.next_frame().unwrap() {
            out.push(Response::decode_payload(body, c.sv).unwrap());
        }
        out
    }

    fn request(&mut self, c: &mut Client, req: &Request) -> Vec<Response> {
        self.send(c, req);
        self.recv(c)
    }
}

fn errors(rs: &[Response]) -> Vec<(i32, i32, String)> {
    rs.iter()
        .filter_map(|r| match r {
            Response::Error(e) => Some((e.req_id, e.code, e.message.clone())),
            _ => None,
        })
        .collect()
}

fn hist(req_id: i32, contract: Contract, end: &str, bar: &str, dur: &str) -> Request {
    Request::ReqHistoricalData(HistoricalDataRequest {
        req_id,
        contract,
        end_date_time: end.into(),
        bar_size: bar.into(),
        duration: dur.into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        keep_up_to_date: false,
        chart_options: Vec::new(),
    })
}

fn es() -> Contract {
    Contract {
        symbol: "ES".into(),
        sec_type: "FUT".into(),
        exchange: "CME".into(),
        currency: "USD".into(),
        ..Contract::default()
    }
}

#[test]
fn handshake_and_startup_burst_in_protobuf() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (c, burst) = sim.connect(100);
    assert_eq!(c.sv, 226);
    assert_eq!(
        burst[..2],
        [
            Response::ManagedAccounts {
                accounts: "DU1234567,".into()
            },
            Response::NextValidId { order_id: 1 },
        ]
    );
    let notices: Vec<(i32, i32, String)> = errors(&burst);
    assert_eq!(
        notices,
        [
            (-1, 2104, "Market data farm connection is OK:usfarm".into()),
            (-1, 2106, "HMDS data farm connection is OK:ushmds".into()),
            (
                -1,
                2158,
                "Sec-def data farm connection is OK:secdefnj".into()
            ),
        ]
    );
    assert_eq!(sim.gw.client_ids(), [100]);
}

#[test]
fn startup_bytes_match_the_ibapi_capture() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(100);
    sim.trace.clear();
    sim.send(&mut c, &Request::ReqManagedAccts);
    sim.pump(&mut c);
    // docs/ib-facts.md#captured-bytes: 00 00 00 10 00 00 00 D7 0A 0A "DU1234567,".
    let mut want = vec![0, 0, 0, 0x10, 0, 0, 0, 0xD7, 0x0A, 0x0A];
    want.extend_from_slice(b"DU1234567,");
    assert_eq!(sim.trace, want);
}

#[test]
fn version_negotiation_and_refusal() {
    let mut sim = Sim::new(
        GatewayConfig {
            versions: VersionRange::new(150, 200),
            ..GatewayConfig::default()
        },
        1,
    );
    // Overlap: highest common version.
    assert_eq!(sim.open(VersionRange::new(100, 178)).sv, 178);
    // Client entirely below the gateway's minimum: closed without a reply.
    let mut old = sim.open(VersionRange::new(100, 140));
    assert_eq!(old.sv, 0);
    assert!(old.closed);
    sim.pump(&mut old);
    // Client entirely above: the gateway answers its own maximum (the client refuses it).
    assert_eq!(sim.open(VersionRange::new(213, 226)).sv, 200);
    // Garbage instead of API\0.
    let conn = sim.gw.accept(sim.now);
    sim.gw.handle_input(conn, sim.now, b"GET / HTTP/1.1\r\n");
    assert!(sim.gw.poll_close(conn));
}

#[test]
fn text_client_gets_text_replies_with_inline_window() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let mut c = sim.open(VersionRange::new(157, 178));
    assert_eq!(c.sv, 178);
    let burst = sim.request(
        &mut c,
        &Request::StartApi {
            client_id: 7,
            optional_capabilities: String::new(),
        },
    );
    assert_eq!(burst[1], Response::NextValidId { order_id: 1 });
    assert_eq!(errors(&burst).len(), 3);
    let replies = sim.request(
        &mut c,
        &hist(
            5,
            Contract::stock("AAPL"),
            "20260105 16:00:00 America/New_York",
            "1 hour",
            "1 D",
        ),
    );
    assert_eq!(replies.len(), 1, "no HistoricalDataEnd below 196");
    let Response::HistoricalData {
        req_id,
        start,
        end,
        bars,
    } = &replies[0]
    else {
        panic!("{replies:?}");
    };
    assert_eq!(*req_id, 5);
    assert_eq!(start, "20260105-14:30:00");
    assert_eq!(end, "20260105-21:00:00");
    assert_eq!(bars.len(), 7);
}

#[test]
fn duplicate_client_id_gets_326_and_the_socket_closes() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (first, _) = sim.connect(100);
    let (second, burst) = sim.connect(100);
    assert_eq!(
        errors(&burst),
        [(
            -1,
            326,
            "Unable to connect as the client id is already in use. Retry with a unique client id."
                .into()
        )]
    );
    assert!(second.closed);
    // A clean close frees the id at once.
    sim.gw.handle_eof(first.conn, sim.now);
    let (third, burst) = sim.connect(100);
    assert!(errors(&burst).iter().all(|e| e.1 != 326));
    // An abrupt close holds it for client_id_hold (5 s).
    sim.gw.handle_reset(third.conn, sim.now);
    sim.advance(Duration::from_millis(4999));
    let (refused, burst) = sim.connect(100);
    assert!(refused.closed && errors(&burst)[0].1 == 326);
    sim.advance(Duration::from_millis(1));
    let (ok, _) = sim.connect(100);
    assert!(!ok.closed);
}

#[test]
fn at_most_32_api_clients() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    for id in 0..32 {
        assert!(!sim.connect(id).0.closed);
    }
    let (extra, burst) = sim.connect(32);
    assert!(extra.closed);
    assert!(burst.is_empty());
    assert_eq!(sim.gw.client_ids().len(), 32);
}

#[test]
fn second_current_time_within_a_second_is_never_answered() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    let first = sim.request(&mut c, &Request::ReqCurrentTime);
    assert_eq!(
        first,
        [Response::CurrentTime {
            time: utc(2026, 1, 6, 15, 0, 0)
        }]
    );
    sim.advance(Duration::from_millis(999));
    assert!(sim.request(&mut c, &Request::ReqCurrentTime).is_empty());
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.request(&mut c, &Request::ReqCurrentTime).len(), 1);
    let ms = sim.request(&mut c, &Request::ReqCurrentTimeInMillis);
    assert_eq!(
        ms,
        [Response::CurrentTimeInMillis {
            millis: utc(2026, 1, 6, 15, 0, 1) * 1000
        }]
    );
    assert_eq!(
        sim.request(&mut c, &Request::ReqIds { num_ids: 0 }),
        [Response::NextValidId { order_id: 1 }]
    );
}

#[test]
fn historical_hourly_with_end_date_and_daily_without() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    let replies = sim.request(
        &mut c,
        &hist(
            1_500_000_000,
            Contract::stock("AAPL"),
            "20251231 21:00:00 UTC",
            "1 hour",
            "2 D",
        ),
    );
    let [Response::HistoricalData { bars, .. }, Response::HistoricalDataEnd { req_id, start, end }] =
        &replies[..]
    else {
        panic!("{replies:?}");
    };
    assert_eq!(*req_id, 1_500_000_000);
    assert_eq!(
        (start.as_str(), end.as_str()),
        ("20251230-14:30:00", "20251231-21:00:00")
    );
    assert_eq!(bars.len(), 14);
    assert_eq!(bars[0].date, BarTime::Epoch(utc(2025, 12, 30, 14, 30, 0)));

    let daily = sim.request(&mut c, &hist(2, Contract::stock("SPY"), "", "1 day", "1 M"));
    let Response::HistoricalData { bars, .. } = &daily[0] else {
        panic!("{daily:?}");
    };
    // 2025-12-06 .. 2026-01-06 (now): weekends, Christmas and New Year's Day excluded.
    assert_eq!(bars.first().unwrap().date, BarTime::Day(20251208));
    assert_eq!(bars.last().unwrap().date, BarTime::Day(20260106));
    assert!(bars
        .iter()
        .all(|b| b.date != BarTime::Day(20251225) && b.date != BarTime::Day(20260101)));
    assert_eq!(bars.len(), 20);
}

#[test]
fn historical_errors_like_ib() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    let mut ask = |sim: &mut Sim, req: Request| errors(&sim.request(&mut c, &req));
    assert_eq!(
        ask(
            &mut sim,
            hist(1, Contract::stock("NOPE"), "", "1 hour", "1 D")
        ),
        [(
            1,
            200,
            "No security definition has been found for the request.".into()
        )]
    );
    assert_eq!(
        ask(&mut sim, hist(2, es(), "", "1 hour", "1 D")),
        [(
            2,
            200,
            "The contract description specified for ES is ambiguous".into()
        )]
    );
    assert_eq!(
        ask(
            &mut sim,
            hist(3, Contract::stock("KO"), "", "1 hour", "1 D")
        ),
        [(
            3,
            162,
            "Historical Market Data Service error message:No market data permissions for NYSE STK"
                .into()
        )]
    );
    assert_eq!(
        ask(&mut sim, hist(4, Contract::stock("AAPL"), "19800101 16:00:00 UTC", "1 day", "1 M")),
        [(
            4,
            162,
            "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades"
                .into()
        )]
    );
    assert_eq!(
        ask(
            &mut sim,
            hist(5, Contract::stock("AAPL"), "", "1 secs", "1 D")
        ),
        [(
            5,
            162,
            "Historical Market Data Service error message:Time length exceed max".into()
        )]
    );
    // A weekend window has no data either.
    let weekend = ask(
        &mut sim,
        hist(
            6,
            Contract::stock("MSFT"),
            "20260104 12:00:00 UTC",
            "1 min",
            "3600 S",
        ),
    );
    assert_eq!(weekend[0].1, 162);
    assert!(weekend[0]
        .2
        .ends_with("HMDS query returned no data: MSFT@SMART Trades"));
    let bad_end = ask(
        &mut sim,
        hist(7, Contract::stock("MSFT"), "yesterday", "1 hour", "1 D"),
    );
    assert_eq!(bad_end[0].1, 321);
}

#[test]
fn cancel_and_keep_up_to_date() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    assert_eq!(
        errors(&sim.request(&mut c, &Request::CancelHistoricalData { req_id: 9 })),
        [(
            9,
            366,
            "No historical data query found for ticker id:9".into()
        )]
    );
    let Request::ReqHistoricalData(mut stream) =
        hist(10, Contract::stock("AAPL"), "", "5 mins", "1 D")
    else {
        unreachable!()
    };
    stream.keep_up_to_date = true;
    let first = sim.request(&mut c, &Request::ReqHistoricalData(stream.clone()));
    assert!(matches!(
        first[..],
        [
            Response::HistoricalData { .. },
            Response::HistoricalDataEnd { .. }
        ]
    ));
    sim.advance(Duration::from_secs(12));
    let updates = sim.recv(&mut c);
    assert_eq!(updates.len(), 2, "updates every 5 s");
    let Response::HistoricalDataUpdate { req_id, bar } = &updates[0] else {
        panic!("{updates:?}");
    };
    assert_eq!(*req_id, 10);
    assert_eq!(
        bar.date,
        BarTime::Epoch(utc(2026, 1, 6, 15, 0, 0)),
        "the forming 10:00 bar"
    );
    assert!(sim
        .request(&mut c, &Request::CancelHistoricalData { req_id: 10 })
        .is_empty());
    sim.advance(Duration::from_secs(30));
    assert!(sim.recv(&mut c).is_empty());
    assert_eq!(sim.gw.poll_timeout(), None);
    // An end date with keepUpToDate is refused.
    stream.req_id = 11;
    stream.end_date_time = "20260105 16:00:00 UTC".into();
    assert_eq!(
        errors(&sim.request(&mut c, &Request::ReqHistoricalData(stream)))[0].1,
        321
    );
}

#[test]
fn replies_wait_for_latency_and_pending_cancel_answers_162() {
    let config = GatewayConfig {
        reply_latency: Duration::from_millis(200),
        reply_jitter: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(config, 3);
    let (mut c, _) = sim.connect(1);
    assert!(sim
        .request(
            &mut c,
            &hist(1, Contract::stock("AAPL"), "", "1 hour", "1 D")
        )
        .is_empty());
    let due = sim.gw.poll_timeout().unwrap();
    let wait = due - sim.now;
    assert!(wait >= Duration::from_millis(200) && wait <= Duration::from_millis(300));
    sim.advance(wait);
    assert_eq!(sim.recv(&mut c).len(), 2);
    assert!(sim
        .request(
            &mut c,
            &hist(2, Contract::stock("MSFT"), "", "1 hour", "1 D")
        )
        .is_empty());
    assert_eq!(
        errors(&sim.request(&mut c, &Request::CancelHistoricalData { req_id: 2 })),
        [(
            2,
            162,
            "Historical Market Data Service error message:API historical data query cancelled: 2"
                .into()
        )]
    );
    sim.advance(Duration::from_secs(1));
    assert!(sim.recv(&mut c).is_empty());
}

#[test]
fn head_timestamp_contract_details_and_symbols() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    let head = sim.request(
        &mut c,
        &Request::ReqHeadTimestamp(HeadTimestampRequest {
            req_id: 1,
            contract: Contract::stock("AAPL"),
            use_rth: true,
            what_to_show: "TRADES".into(),
            format_date: 2,
        }),
    );
    assert_eq!(
        head,
        [Response::HeadTimestamp {
            req_id: 1,
            timestamp: "345479400".into()
        }]
    );
    let details = sim.request(
        &mut c,
        &Request::ReqContractDetails {
            req_id: 2,
            contract: Contract::stock("AAPL"),
        },
    );
    let [Response::ContractData {
        contract, details, ..
    }, Response::ContractDataEnd { req_id: 2 }] = &details[..]
    else {
        panic!("{details:?}");
    };
    assert_eq!(
        (contract.con_id, contract.primary_exchange.as_str()),
        (265_598, "NASDAQ")
    );
    assert_eq!(details.long_name, "APPLE INC");
    let es_details = sim.request(
        &mut c,
        &Request::ReqContractDetails {
            req_id: 3,
            contract: es(),
        },
    );
    assert_eq!(es_details.len(), 5, "four listed ES expiries + end");
    assert_eq!(
        errors(&sim.request(
            &mut c,
            &Request::ReqContractDetails {
                req_id: 4,
                contract: Contract::stock("NOPE"),
            }
        )),
        [(
            4,
            200,
            "No security definition has been found for the request.".into()
        )]
    );
    assert!(sim
        .request(&mut c, &Request::CancelContractData { req_id: 4 })
        .is_empty());
    let symbols = sim.request(
        &mut c,
        &Request::ReqMatchingSymbols {
            req_id: 5,
            pattern: "MS".into(),
        },
    );
    let [Response::SymbolSamples {
        req_id: 5,
        descriptions,
    }] = &symbols[..]
    else {
        panic!("{symbols:?}");
    };
    assert_eq!(descriptions[0].contract.symbol, "MSFT");
}

#[test]
fn fifty_messages_per_second_then_error_100_and_drop_on_third_breach() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    // START_API was message 1 of this second: 49 more are allowed.
    let mut replies = Vec::new();
    for _ in 0..60 {
        replies.extend(sim.request(&mut c, &Request::ReqIds { num_ids: 0 }));
    }
    let ids = replies
        .iter()
        .filter(|r| matches!(r, Response::NextValidId { .. }))
        .count();
    assert_eq!(ids, 49);
    assert_eq!(
        errors(&replies),
        [(
            -1,
            100,
            "Max rate of messages per second has been exceeded.".into()
        )]
    );
    for _ in 0..2 {
        sim.advance(Duration::from_secs(1));
        for _ in 0..60 {
            sim.send(&mut c, &Request::ReqIds { num_ids: 0 });
        }
    }
    let rest = sim.recv(&mut c);
    assert_eq!(errors(&rest).iter().filter(|e| e.1 == 100).count(), 2);
    assert!(c.closed, "dropped at the third breach");
}

#[test]
fn historical_pacing_through_the_gateway() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    // Small bars (IB's pacing scope), six distinct requests on one contract within 2 s.
    let durations = ["600 S", "1200 S", "1800 S", "2400 S", "3000 S", "3600 S"];
    let mut codes = Vec::new();
    for (i, d) in durations.iter().enumerate() {
        let r = sim.request(
            &mut c,
            &hist(i as i32, Contract::stock("AAPL"), "", "30 secs", d),
        );
        codes.push(errors(&r).first().map(|e| e.1));
    }
    assert_eq!(codes, [None, None, None, None, None, Some(162)]);
    let r = sim.request(
        &mut c,
        &hist(9, Contract::stock("AAPL"), "", "30 secs", "3600 S"),
    );
    assert!(errors(&r)[0]
        .2
        .ends_with("Historical data request pacing violation"));
    // Identical request 15 s later is fine again (and the 2 s window has passed).
    sim.advance(Duration::from_secs(15));
    let r = sim.request(
        &mut c,
        &hist(10, Contract::stock("AAPL"), "", "30 secs", "600 S"),
    );
    assert!(errors(&r).is_empty());
    assert_eq!(sim.gw.pacing_violations(), 2);
}

/// IB lifted the pacing rules for bars of a minute and more: the default gateway (the one every
/// driver uses) does not pace them; the strict rules still do.
#[test]
fn hourly_bars_are_not_paced_by_default_but_are_by_the_strict_rules() {
    for (rules, refused) in [
        (HistoricalRules::default(), None),
        (HistoricalRules::strict(), Some(162)),
    ] {
        let config = GatewayConfig {
            historical: rules,
            ..GatewayConfig::default()
        };
        let mut sim = Sim::new(config, 1);
        let (mut c, _) = sim.connect(1);
        let mut codes = Vec::new();
        for i in 0..6 {
            let d = format!("{} D", i + 1);
            let r = sim.request(&mut c, &hist(i, Contract::stock("AAPL"), "", "1 hour", &d));
            codes.push(errors(&r).first().map(|e| e.1));
        }
        assert_eq!(codes[..5], [None; 5]);
        assert_eq!(codes[5], refused);
    }
}

fn head(req_id: i32, contract: Contract, what: &str, use_rth: bool) -> Request {
    Request::ReqHeadTimestamp(HeadTimestampRequest {
        req_id,
        contract,
        use_rth,
        what_to_show: what.into(),
        format_date: 2,
    })
}

/// Head-timestamp requests are paced like historical ones and count among IB's 50 open requests
/// (docs/ib-facts.md#historical-data-pacing): identical within 15 s, the same-contract burst and
/// the 10-minute window refuse them; 50 of them waiting for their answers block a 51st request.
#[test]
fn head_timestamps_are_paced_and_count_as_open_requests() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    let aapl = || Contract::stock("AAPL");
    assert_eq!(
        sim.request(&mut c, &head(1, aapl(), "TRADES", true)).len(),
        1
    );
    let again = errors(&sim.request(&mut c, &head(2, aapl(), "TRADES", true)));
    assert_eq!(
        again,
        [(
            2,
            162,
            "Historical Market Data Service error message:Historical data request pacing violation"
                .into()
        )],
        "identical within 15 s"
    );
    // Bars and head timestamps of one contract and tick type share the 6-in-2-s rule.
    sim.advance(Duration::from_secs(15));
    for (i, d) in ["600 S", "1200 S", "1800 S"].iter().enumerate() {
        let r = sim.request(&mut c, &hist(10 + i as i32, aapl(), "", "5 secs", d));
        assert!(errors(&r).is_empty(), "{r:?}");
    }
    assert!(errors(&sim.request(&mut c, &head(13, aapl(), "TRADES", false))).is_empty());
    assert!(errors(&sim.request(&mut c, &head(14, aapl(), "TRADES", true))).is_empty());
    assert_eq!(
        errors(&sim.request(&mut c, &head(15, aapl(), "TRADES", true)))[0].1,
        162,
        "the 6th request for AAPL TRADES within 2 s"
    );
    assert_eq!(sim.gw.pacing_violations(), 2);

    // The window: 60 requests in 10 minutes, head timestamps included.
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    let whats = ["TRADES", "MIDPOINT", "BID", "ASK"];
    let symbols = [
        "AAPL", "MSFT", "SPY", "QQQ", "AMZN", "GOOGL", "META", "NVDA",
    ];
    let mut id = 0;
    for symbol in symbols {
        for what in whats {
            for rth in [false, true] {
                sim.advance(Duration::from_millis(500));
                id += 1;
                let r = sim.request(&mut c, &head(id, Contract::stock(symbol), what, rth));
                let refused = !errors(&r).is_empty();
                assert_eq!(refused, id > 60, "request {id}: {r:?}");
            }
        }
    }
    assert_eq!(sim.gw.pacing_violations(), 4);

    // Open requests: 50 head timestamps waiting for their answers block a 51st request.
    let config = GatewayConfig {
        reply_latency: Duration::from_secs(30),
        historical: HistoricalRules {
            window_max: 1000,
            ..HistoricalRules::default()
        },
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(config, 1);
    let (mut c, _) = sim.connect(1);
    let mut id = 0;
    'fill: for symbol in symbols {
        for what in whats {
            for rth in [false, true] {
                if id == 50 {
                    break 'fill;
                }
                sim.advance(Duration::from_millis(500));
                id += 1;
                let r = sim.request(&mut c, &head(id, Contract::stock(symbol), what, rth));
                assert!(r.is_empty(), "request {id} waits for its answer: {r:?}");
            }
        }
    }
    let r = sim.request(
        &mut c,
        &hist(51, Contract::stock("TSLA"), "", "1 hour", "1 D"),
    );
    assert_eq!(
        errors(&r),
        [(
            51,
            322,
            "Error processing request:-'wd' : cause - Only 50 simultaneous API historical data requests allowed."
                .into()
        )],
        "a 51st open request"
    );
    // Answered, they free their slots.
    sim.advance(Duration::from_secs(30));
    assert_eq!(sim.recv(&mut c).len(), 50);
    let r = sim.request(
        &mut c,
        &hist(52, Contract::stock("TSLA"), "", "1 hour", "1 D"),
    );
    assert!(r.is_empty(), "{r:?}");
}

/// IB has bars of 30 seconds or less for about six months back only
/// (docs/ib-facts.md#data-availability); bigger bars go further. The gateway's clock is 2026-01-06.
#[test]
fn small_bars_older_than_six_months_are_refused_with_162() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    let no_data =
        "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades";
    let cases = [
        // (bar size, duration, end, refused)
        ("5 secs", "3600 S", "20250602-16:00:00", true),
        // 183 days before the gateway's now: 2025-07-07 15:00 UTC.
        ("30 secs", "3600 S", "20250703-16:00:00", true),
        ("30 secs", "3600 S", "20250708-16:00:00", false),
        ("5 secs", "3600 S", "20251201-16:00:00", false),
        ("1 min", "3600 S", "20250602-16:00:00", false),
        ("1 hour", "1 D", "20240603-20:00:00", false),
    ];
    for (i, (bar, duration, end, refused)) in cases.into_iter().enumerate() {
        sim.advance(Duration::from_secs(20));
        let r = sim.request(
            &mut c,
            &hist(i as i32, Contract::stock("AAPL"), end, bar, duration),
        );
        if refused {
            assert_eq!(
                errors(&r),
                [(i as i32, 162, no_data.into())],
                "{bar} ending {end}"
            );
        } else {
            assert!(
                matches!(r.first(), Some(Response::HistoricalData { bars, .. }) if !bars.is_empty()),
                "{bar} ending {end}: {r:?}"
            );
        }
    }
    // The limit is a setting (on by default, as at IB).
    let forever = GatewayConfig {
        small_bar_history: None,
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(forever, 1);
    let (mut c, _) = sim.connect(1);
    let r = sim.request(
        &mut c,
        &hist(
            1,
            Contract::stock("AAPL"),
            "20250602-16:00:00",
            "5 secs",
            "3600 S",
        ),
    );
    assert!(errors(&r).is_empty(), "{r:?}");
}

/// A request ending in the future gets no bars: a 162 (docs/ib-facts.md#data-availability), the
/// "no data" text.
#[test]
fn an_end_date_in_the_future_gets_no_bars() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut c, _) = sim.connect(1);
    let no_data =
        "Historical Market Data Service error message:HMDS query returned no data: MSFT@SMART Trades";
    // The gateway's clock: 2026-01-06 15:00 UTC.
    for (i, (end, bar, duration)) in [
        ("20260106-15:10:00", "1 min", "3600 S"),
        ("20260107-15:00:00", "1 hour", "2 D"),
        ("20260301 12:00:00 US/Eastern", "1 day", "1 M"),
    ]
    .into_iter()
    .enumerate()
    {
        sim.advance(Duration::from_secs(20));
        let r = sim.request(
            &mut c,
            &hist(i as i32, Contract::stock("MSFT"), end, bar, duration),
        );
        assert_eq!(
            errors(&r),
            [(i as i32, 162, no_data.into())],
            "{end}: {r:?}"
        );
    }
    // Now itself is not the future.
    sim.advance(Duration::from_secs(20));
    let now = "20260106-15:01:00";
    let r = sim.request(
        &mut c,
        &hist(9, Contract::stock("MSFT"), now, "1 min", "3600 S"),
    );
    assert!(errors(&r).is_empty(), "{r:?}");
}

/// A request reusing the id of one still open gets IB's 322 (stoqey/ib#240); the
/// open one is answered as usual. Answered, the id is free again.
#[test]
fn a_reused_open_request_id_gets_322_duplicate_ticker_id() {
    let config = GatewayConfig {
        reply_latency: Duration::from_millis(200),
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(config, 1);
    let (mut c, _) = sim.connect(1);
    let dup = |id: i32| {
        (
            id,
            322,
            "Error processing request.-'bO' : cause - Duplicate ticker id".to_owned(),
        )
    };
    assert!(sim
        .request(
            &mut c,
            &hist(7, Contract::stock("AAPL"), "", "1 hour", "1 D")
        )
        .is_empty());
    let r = sim.request(
        &mut c,
        &hist(7, Contract::stock("MSFT"), "", "1 hour", "2 D"),
    );
    assert_eq!(errors(&r), [dup(7)]);
    let r = sim.request(&mut c, &head(7, Contract::stock("SPY"), "TRADES", true));
    assert_eq!(errors(&r), [dup(7)]);
    assert!(sim
        .request(&mut c, &head(8, Contract::stock("SPY"), "TRADES", true))
        .is_empty());
    let r = sim.request(
        &mut c,
        &hist(8, Contract::stock("QQQ"), "", "1 hour", "1 D"),
    );
    assert_eq!(errors(&r), [dup(8)]);
    sim.advance(Duration::from_millis(300));
    let answers = sim.recv(&mut c);
    assert!(
        matches!(
            answers[..],
            [
                Response::HistoricalData { req_id: 7, .. },
                Response::HistoricalDataEnd { req_id: 7, .. },
                Response::HeadTimestamp { req_id: 8, .. },
            ]
        ),
        "the first requests are answered: {answers:?}"
    );
    assert!(sim
        .request(
            &mut c,
            &hist(7, Contract::stock("MSFT"), "", "1 hour", "2 D")
        )
        .is_empty());
    assert_eq!(sim.gw.counters().duplicate_ids, 3);
}

/// The request faults: a spurious "no data" for a request that has bars, a request never
/// answered (open until cancelled), a 322 for a fresh id. Each hits the next `requests`
/// requests of its target only.
#[test]
fn request_faults_spurious_no_data_never_answered_and_duplicate_id() {
    let mut sim = Sim::new(GatewayConfig::default(), 1);
    let (mut a, _) = sim.connect(1);
    let (mut b, _) = sim.connect(2);
    let aapl = |id: i32, d: &str| hist(id, Contract::stock("AAPL"), "", "1 hour", d);
    sim.gw.inject(
        sim.now,
        Fault::SpuriousNoData {
            target: Target::Conn(a.conn),
            requests: 1,
        },
    );
    let r = sim.request(&mut b, &aapl(1, "1 D"));
    assert!(errors(&r).is_empty(), "another connection is not hit");
    let r = sim.request(&mut a, &aapl(2, "2 D"));
    assert_eq!(
        errors(&r),
        [(
            2,
            162,
            "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades"
                .into()
        )]
    );
    let r = sim.request(&mut a, &aapl(3, "2 D"));
    assert!(errors(&r).is_empty(), "asked again, it has its bars: {r:?}");

    sim.gw.inject(
        sim.now,
        Fault::NeverAnswer {
            target: Target::All,
            requests: 1,
        },
    );
    assert!(sim.request(&mut a, &aapl(4, "3 D")).is_empty());
    assert!(sim
        .request(&mut b, &head(5, Contract::stock("MSFT"), "TRADES", true))
        .is_empty());
    sim.advance(Duration::from_secs(60));
    assert!(sim.recv(&mut a).is_empty() && sim.recv(&mut b).is_empty());
    // Still open: its id is taken, and a cancel is answered as for a pending query.
    assert_eq!(errors(&sim.request(&mut a, &aapl(4, "4 D")))[0].1, 322);
    assert_eq!(
        errors(&sim.request(&mut a, &Request::CancelHistoricalData { req_id: 4 })),
        [(
            4,
            162,
            "Historical Market Data Service error message:API historical data query cancelled: 4"
                .into()
        )]
    );
    assert!(sim
        .request(&mut b, &Request::CancelHeadTimestamp { req_id: 5 })
        .is_empty());
    assert_eq!(
        sim.request(&mut a, &aapl(6, "5 D")).len(),
        2,
        "answered again"
    );

    sim.gw.inject(
        sim.now,
        Fault::DuplicateTickerId {
            target: Target::Conn(b.conn),
            requests: 2,
        },
    );
    for id in [7, 8] {
        let r = sim.request(&mut b, &aapl(id, "6 D"));
        assert_eq!(errors(&r)[0].1, 322, "{r:?}");
    }
    assert!(errors(&sim.request(&mut b, &aapl(9, "6 D"))).is_empty());
    let counters = sim.gw.counters();
    assert_eq!(
        (
            counters.spurious_no_data,
            counters.never_answered,
            counters.duplicate_ids,
            counters.pacing_violations
        ),
        (1, 2, 3, 0)
    );
}

fn scripted_trace(seed: u64) -> Vec<u8> {
    let config = GatewayConfig {
        reply_latency: Duration::from_millis(50),
        reply_jitter: Duration::from_millis(500),
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(config, seed);
    let (mut a, _) = sim.connect(1);
    let (mut b, _) = sim.connect(2);
    for i in 0..4 {
        sim.send(
            &mut a,
            &hist(
                i,
                Contract::stock("AAPL"),
                "",
                "30 mins",
                &format!("{} D", i + 1),
            ),
        );
        sim.send(
            &mut b,
            &hist(
                100 + i,
                Contract::stock("MSFT"),
                "",
                "1 day",
                &format!("{} M", i + 1),
            ),
        );
        sim.send(
            &mut b,
            &Request::ReqMatchingSymbols {
                req_id: 200 + i,
                pattern: "A".into(),
            },
        );
    }
    let Request::ReqHistoricalData(mut s) = hist(300, Contract::stock("SPY"), "", "1 min", "1 D")
    else {
        unreachable!()
    };
    s.keep_up_to_date = true;
    sim.send(&mut a, &Request::ReqHistoricalData(s));
    for _ in 0..20 {
        sim.advance(Duration::from_millis(700));
        sim.pump(&mut a);
        sim.pump(&mut b);
    }
    sim.trace
}

#[test]
fn same_seed_same_byte_trace() {
    let one = scripted_trace(42);
    let two = scripted_trace(42);
    assert!(one.len() > 10_000);
    assert_eq!(one, two);
    assert_ne!(one, scripted_trace(43), "the seed shapes bars and latency");
}

#[test]
fn byte_by_byte_input_gives_the_same_output() {
    let run = |chunk: usize| {
        let mut sim = Sim::new(GatewayConfig::default(), 5);
        let conn = sim.gw.accept(sim.now);
        let mut input = BytesMut::new();
        ClientHello::new(VersionRange::new(213, 226)).encode(&mut input);
        Request::StartApi {
            client_id: 3,
            optional_capabilities: String::new(),
        }
        .encode(226, &mut input)
        .unwrap();
        hist(1, Contract::stock("AAPL"), "", "1 hour", "2 D")
            .encode(226, &mut input)
            .unwrap();
        for part in input.chunks(chunk) {
            sim.gw.handle_input(conn, sim.now, part);
        }
        let mut out = Vec::new();
        while let Some(b) = sim.gw.poll_transmit(conn) {
            out.extend_from_slice(&b);
        }
        out
    };
    let whole = run(usize::MAX);
    assert!(!whole.is_empty());
    assert_eq!(run(1), whole);
    assert_eq!(run(7), whole);
}

// ----- faults at the gateway level -----

#[test]
fn split_writes_come_in_pieces_that_reassemble() {
    let mut whole = Sim::new(GatewayConfig::default(), 3);
    let (mut a, _) = whole.connect(1);
    let expected = whole.request(
        &mut a,
        &hist(1, Contract::stock("AAPL"), "", "1 hour", "2 D"),
    );

    let mut sim = Sim::new(GatewayConfig::default(), 3);
    let (mut c, _) = sim.connect(1);
    sim.gw.inject(
        sim.now,
        Fault::Split {
            target: Target::All,
            on: true,
        },
    );
    sim.send(
        &mut c,
        &hist(1, Contract::stock("AAPL"), "", "1 hour", "2 D"),
    );
    let mut pieces = 0;
    while let Some(b) = sim.gw.poll_transmit(c.conn) {
        assert!(!b.is_empty() && b.len() <= 32);
        pieces += 1;
        c.dec.push(&b);
    }
    assert!(pieces > 10, "{pieces}");
    let got: Vec<Response> = std::iter::from_fn(|| c.dec.next_frame().unwrap())
        .map(|body| Response::decode_payload(body, c.sv).unwrap())
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn garbage_is_an_impossible_frame_length() {
    let mut sim = Sim::new(GatewayConfig::default(), 4);
    let (mut c, _) = sim.connect(1);
    sim.gw.inject(
        sim.now,
        Fault::Garbage {
            target: Target::Conn(c.conn),
            len: 2,
        },
    );
    let bytes = sim.gw.poll_transmit(c.conn).unwrap();
    assert_eq!(bytes.len(), 4, "at least a length prefix");
    assert_ne!(bytes[0], 0);
    c.dec.push(&bytes);
    assert!(c.dec.next_frame().is_err());
}

#[test]
fn restart_closes_every_socket_and_the_port_refuses_until_it_reopens() {
    let mut sim = Sim::new(GatewayConfig::default(), 5);
    let (a, _) = sim.connect(1);
    let (b, _) = sim.connect(2);
    sim.gw.inject(
        sim.now,
        Fault::Restart {
            down_for: Duration::from_secs(30),
        },
    );
    let reopen = sim.now + Duration::from_secs(30);
    assert!(sim.gw.poll_transmit(a.conn).is_none());
    assert!(sim.gw.poll_close(a.conn) && sim.gw.poll_close(b.conn));
    assert_eq!(
        sim.gw.port(),
        PortState::Refusing {
            until: Some(reopen)
        }
    );
    assert_eq!(sim.gw.poll_timeout(), Some(reopen));
    // A connection accepted while refusing is closed at once, without a byte.
    let late = sim.gw.accept(sim.now);
    assert!(sim.gw.poll_transmit(late).is_none());
    assert!(sim.gw.poll_close(late));
    sim.advance(Duration::from_secs(30));
    assert_eq!(sim.gw.port(), PortState::Open);
    assert!(!sim.gw.is_refusing(sim.now));
    // Client ids are free after the restart.
    let (_, burst) = sim.connect(1);
    assert!(burst
        .iter()
        .any(|r| matches!(r, Response::NextValidId { .. })));
}

#[test]
fn pause_keeps_the_socket_and_answers_nothing_until_resume() {
    let mut sim = Sim::new(GatewayConfig::default(), 6);
    let (mut c, _) = sim.connect(1);
    sim.gw.inject(sim.now, Fault::Pause(Target::All));
    assert!(sim.request(&mut c, &Request::ReqCurrentTime).is_empty());
    sim.advance(Duration::from_secs(60));
    assert!(!sim.gw.poll_close(c.conn));
    sim.gw.inject(sim.now, Fault::Resume(Target::All));
    let replies = sim.recv(&mut c);
    assert!(
        matches!(replies[..], [Response::CurrentTime { .. }]),
        "{replies:?}"
    );
}

#[test]
fn localized_162_texts() {
    let config = GatewayConfig {
        locale: Locale::Spanish,
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(config, 7);
    let (mut c, _) = sim.connect(1);
    let replies = sim.request(
        &mut c,
        &hist(1, Contract::stock("AAPL"), "", "1 secs", "1 W"),
    );
    assert_eq!(
        errors(&replies),
        [(
            1,
            162,
            "Mensaje de error de los servicios de datos de mercado históricos:La duración supera el máximo".into()
        )]
    );
    // Other codes stay in English.
    let replies = sim.request(
        &mut c,
        &hist(2, Contract::stock("NOPE"), "", "1 hour", "1 D"),
    );
    assert_eq!(errors(&replies)[0].1, 200);
    assert!(errors(&replies)[0].2.starts_with("No security definition"));
}

#[test]
fn text_client_startup_sync_gets_end_messages() {
    let mut sim = Sim::new(GatewayConfig::default(), 8);
    let mut c = sim.open(VersionRange::new(157, 178));
    sim.request(
        &mut c,
        &Request::StartApi {
            client_id: 3,
            optional_capabilities: String::new(),
        },
    );
    let unknown = |id: i32, payload: &'static [u8]| Request::Unknown {
        id,
        form: Form::Text,
        payload: bytes::Bytes::from_static(payload),
    };
    let cases: [(Request, i32, &[u8]); 6] = [
        (unknown(61, b"1\0"), 62, b"1\0"),
        (unknown(5, b"1\0"), 53, b"1\0"),
        (unknown(99, b"0\0"), 102, b""),
        (unknown(6, b"2\x001\0DU1234567\0"), 54, b"1\0DU1234567\0"),
        (unknown(76, b"1\x009\0DU1234567\0\x000\0"), 74, b"1\x009\0"),
        (unknown(7, b"3\x0012\x000\0\0\0\0\0\0"), 55, b"1\x0012\0"),
    ];
    for (req, id, payload) in cases {
        let replies = sim.request(&mut c, &req);
        match &replies[..] {
            [Response::Unknown {
                id: got,
                payload: p,
                ..
            }] => {
                assert_eq!(*got, id);
                assert_eq!(&p[..], payload, "reply to {req:?}");
            }
            other => panic!("{req:?} → {other:?}"),
        }
        sim.advance(Duration::from_secs(1));
    }
}

#[test]
fn link_loss_then_restore_reaches_every_session() {
    let mut sim = Sim::new(GatewayConfig::default(), 9);
    let (mut a, _) = sim.connect(1);
    let (mut b, _) = sim.connect(2);
    sim.gw.inject(
        sim.now,
        Fault::LinkLoss {
            outage: Duration::from_secs(10),
            data_lost: false,
        },
    );
    for c in [&mut a, &mut b] {
        let codes: Vec<i32> = errors(&sim.recv(c)).iter().map(|e| e.1).collect();
        assert_eq!(codes, [1100]);
    }
    assert!(sim.gw.is_data_paused(sim.now));
    sim.advance(Duration::from_secs(10));
    for c in [&mut a, &mut b] {
        let codes: Vec<i32> = errors(&sim.recv(c)).iter().map(|e| e.1).collect();
        assert_eq!(codes, [1102]);
    }
    assert!(!sim.gw.is_data_paused(sim.now));
}

#[test]
fn chaos_is_drawn_from_the_seed() {
    let run = |seed: u64| {
        let config = GatewayConfig {
            chaos: Some(Chaos::every(Duration::from_secs(600))),
            ..GatewayConfig::default()
        };
        let mut sim = Sim::new(config, seed);
        let (mut c, _) = sim.connect(1);
        let mut seen = Vec::new();
        for _ in 0..(6 * 60) {
            sim.advance(Duration::from_secs(60));
            sim.pump(&mut c);
            seen.append(&mut sim.trace);
            if c.closed {
                let (again, _) = sim.connect(1);
                c = again;
            }
        }
        seen
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
}
