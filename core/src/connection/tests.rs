//! Connection behaviour under virtual time, against a scripted peer built from the codec's server
//! side (`FrameDecoder::server`, `Request::decode_payload`, `Response::encode`).

// One arbitrary origin per test; every later instant is derived from it (virtual time).
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::*;
use crate::classify::Advice;
use crate::message::{BarTime, ErrorMessage, HistoricalDataRequest};
use crate::wire::{ClientHello, HandshakeError, ServerHello, VersionRange};

/// The gateway side of a test: decodes what the client wrote, encodes what the test answers.
struct Peer {
    version: i32,
    decoder: FrameDecoder,
    hello: Option<ClientHello>,
    received: Vec<Request>,
}

impl Peer {
    fn new(version: i32) -> Self {
        Self {
            version,
            decoder: FrameDecoder::server(),
            hello: None,
            received: Vec::new(),
        }
    }

    /// Take everything the client wrote and decode it.
    fn read(&mut self, conn: &mut Connection) {
        while let Some(bytes) = conn.poll_transmit() {
            self.decoder.push(&bytes);
        }
        while let Some(body) = self.decoder.next_frame().unwrap() {
            if self.hello.is_none() {
                self.hello = Some(ClientHello::decode(&body).unwrap());
            } else {
                self.received
                    .push(Request::decode_payload(body, self.version).unwrap());
            }
        }
    }

    fn reply(&self, conn: &mut Connection, now: Instant, msgs: &[Response]) {
        let mut out = BytesMut::new();
        for m in msgs {
            m.encode(self.version, &mut out).unwrap();
        }
        conn.handle_input(now, &out);
    }

    fn hello_reply(&self, conn: &mut Connection, now: Instant) {
        let mut out = BytesMut::new();
        ServerHello {
            server_version: self.version,
            connection_time: "20260101 12:00:00 America/New_York".into(),
        }
        .encode(&mut out)
        .unwrap();
        conn.handle_input(now, &out);
    }

    fn take(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.received)
    }
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn startup() -> Vec<Response> {
    vec![
        Response::ManagedAccounts {
            accounts: "DU1234567,".into(),
        },
        Response::NextValidId { order_id: 42 },
        Response::Error(ErrorMessage {
            req_id: -1,
            code: 2104,
            message: "Market data farm connection is OK:usfarm".into(),
            ..ErrorMessage::default()
        }),
    ]
}

/// Settings that reach a gateway at `version`: the default offer for the protobuf era, the wide
/// offer pinned for a text-era gateway (under the default a pool would fall back to it).
fn config_for(version: i32, client_id: i32) -> Config {
    let mut cfg = Config::new(client_id);
    if version < 213 {
        cfg.versions = VersionPolicy::Pinned(VersionRange::supported());
    }
    cfg
}

/// A connected session at `version`, its peer, and the virtual clock.
fn connected(version: i32) -> (Connection, Peer, Instant) {
    connected_with(config_for(version, 7), version)
}

/// As [`connected`], with the settings `cfg` (client id 7).
fn connected_with(cfg: Config, version: i32) -> (Connection, Peer, Instant) {
    let t0 = Instant::now();
    let mut conn = Connection::new(cfg, t0);
    let mut peer = Peer::new(version);
    peer.read(&mut conn);
    peer.hello_reply(&mut conn, t0);
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::StartApi {
            client_id: 7,
            optional_capabilities: String::new()
        }]
    );
    peer.reply(&mut conn, t0, &startup());
    let ev = events(&mut conn);
    assert!(
        matches!(&ev[0], Event::Connected { server_version, next_valid_id: 42, accounts, .. }
            if *server_version == version && accounts == &vec!["DU1234567".to_string()]),
        "{ev:?}"
    );
    assert!(matches!(&ev[1], Event::Notice { code: 2104, .. }), "{ev:?}");
    (conn, peer, t0)
}

fn hourly() -> HistoricalDataRequest {
    HistoricalDataRequest {
        contract: Contract::stock("AAPL"),
        end_date_time: "20251231-21:00:00".into(),
        bar_size: "1 hour".into(),
        duration: "2 D".into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        ..HistoricalDataRequest::default()
    }
}

fn bar(date: &str) -> Bar {
    Bar {
        date: BarTime::parse(date),
        open: 1.0,
        high: 2.0,
        low: 0.5,
        close: 1.5,
        volume: 10.0,
        wap: 1.2,
        count: 3,
    }
}

#[test]
fn hello_offers_the_configured_range() {
    let t0 = Instant::now();
    // The default: the modern range, as ibapi offers it.
    let mut conn = Connection::new(Config::new(1), t0);
    assert_eq!(Config::new(1).versions, VersionPolicy::Auto);
    let mut peer = Peer::new(226);
    peer.read(&mut conn);
    assert_eq!(peer.hello.unwrap().versions, VersionRange::new(213, 226));
    assert_eq!(conn.offered(), VersionRange::new(213, 226));
    assert!(!conn.is_ready());
    // A pinned range is offered as it is.
    for range in [VersionRange::new(100, 226), VersionRange::new(157, 178)] {
        let cfg = Config {
            versions: range.into(),
            ..Config::new(1)
        };
        let mut conn = Connection::new(cfg, t0);
        let mut peer = Peer::new(178);
        peer.read(&mut conn);
        assert_eq!(peer.hello.unwrap().versions, range);
        assert_eq!(conn.offered(), range);
    }
}

#[test]
fn handshake_and_historical_request_in_protobuf_and_text_eras() {
    for version in [226, 200, 176, 150] {
        let (mut conn, mut peer, t0) = connected(version);
        let id = conn
            .send(t0, Query::HistoricalData(hourly()), None)
            .unwrap();
        peer.read(&mut conn);
        let sent = peer.take();
        let Request::ReqHistoricalData(r) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!(r.req_id, id.0);
        assert_eq!(r.bar_size, "1 hour");
        let mut replies = vec![Response::HistoricalData {
            req_id: id.0,
            start: if version < 196 {
                "s".into()
            } else {
                String::new()
            },
            end: if version < 196 {
                "e".into()
            } else {
                String::new()
            },
            bars: vec![bar("1767128400"), bar("1767132000")],
        }];
        if version >= 196 {
            replies.push(Response::HistoricalDataEnd {
                req_id: id.0,
                start: "s".into(),
                end: "e".into(),
            });
        }
        peer.reply(&mut conn, t0, &replies);
        let ev = events(&mut conn);
        assert_eq!(
            ev,
            vec![Event::Completed {
                id,
                result: Ok(Answer::Bars {
                    bars: vec![bar("1767128400"), bar("1767132000")],
                    start: "s".into(),
                    end: "e".into()
                })
            }],
            "server version {version}"
        );
        assert_eq!(conn.in_flight(), 0);
    }
}

#[test]
fn handshake_in_one_byte_chunks_gives_the_same_events() {
    let t0 = Instant::now();
    let mut whole = Connection::new(Config::new(3), t0);
    let mut split = Connection::new(Config::new(3), t0);
    let mut stream = BytesMut::new();
    ServerHello {
        server_version: 226,
        connection_time: "20260101 12:00:00 UTC".into(),
    }
    .encode(&mut stream)
    .unwrap();
    for m in startup() {
        m.encode(226, &mut stream).unwrap();
    }
    whole.handle_input(t0, &stream);
    for b in stream.iter() {
        split.handle_input(t0, std::slice::from_ref(b));
    }
    let a = events(&mut whole);
    assert_eq!(a, events(&mut split));
    assert!(matches!(a[0], Event::Connected { .. }));
    assert_eq!(whole.poll_transmit(), split.poll_transmit());
}

#[test]
fn requests_submitted_before_ready_wait_for_it() {
    let t0 = Instant::now();
    let mut conn = Connection::new(Config::new(9), t0);
    let mut peer = Peer::new(226);
    let id = conn
        .send(t0, Query::MatchingSymbols("AAP".into()), None)
        .unwrap();
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::StartApi {
            client_id: 9,
            optional_capabilities: String::new()
        }],
        "nothing but the hello and START_API before ready"
    );
    peer.hello_reply(&mut conn, t0);
    peer.read(&mut conn);
    assert!(peer.take().is_empty(), "still nothing before ready");
    peer.reply(&mut conn, t0, &startup());
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::ReqMatchingSymbols {
            req_id: id.0,
            pattern: "AAP".into()
        }]
    );
    peer.reply(
        &mut conn,
        t0,
        &[Response::SymbolSamples {
            req_id: id.0,
            descriptions: vec![],
        }],
    );
    assert!(events(&mut conn).contains(&Event::Completed {
        id,
        result: Ok(Answer::Symbols(vec![]))
    }));
}

#[test]
fn a_timed_out_request_is_cancelled_and_its_late_reply_ignored() {
    let (mut conn, mut peer, t0) = connected(226);
    let id = conn
        .send(
            t0,
            Query::HistoricalData(hourly()),
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    peer.read(&mut conn);
    peer.take();
    assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    conn.handle_timeout(t0 + Duration::from_millis(4999));
    assert!(events(&mut conn).is_empty());
    let t = t0 + Duration::from_secs(5);
    conn.handle_timeout(t);
    assert_eq!(
        events(&mut conn),
        vec![Event::Completed {
            id,
            result: Err(RequestError::Timeout {
                after: Duration::from_secs(5)
            })
        }]
    );
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::CancelHistoricalData { req_id: id.0 }]
    );
    // IB confirms the cancel with a 162; it is ours, so nothing is reported.
    peer.reply(
        &mut conn,
        t,
        &[Response::Error(ErrorMessage {
            req_id: id.0,
            code: 162,
            message: format!(
                "Historical Market Data Service error message:API historical data query cancelled: {}",
                id.0
            ),
            ..ErrorMessage::default()
        })],
    );
    assert!(events(&mut conn).is_empty());
}

#[test]
fn errors_are_routed_to_their_request_and_classified() {
    let (mut conn, mut peer, t0) = connected(226);
    let id = conn
        .send(t0, Query::HistoricalData(hourly()), None)
        .unwrap();
    peer.read(&mut conn);
    peer.reply(
        &mut conn,
        t0,
        &[Response::Error(ErrorMessage {
            req_id: id.0,
            code: 162,
            message: "Historical Market Data Service error message:Historical data request pacing violation".into(),
            ..ErrorMessage::default()
        })],
    );
    let ev = events(&mut conn);
    assert!(
        matches!(&ev[..], [Event::Completed { id: got, result: Err(RequestError::Api { code: 162, class: ErrorClass::Pacing, advice: Advice::RetryWhenPacerAllows, .. }) }] if *got == id),
        "{ev:?}"
    );
    assert_eq!(conn.stats().failed, 1);
}

#[test]
fn client_id_in_use_closes_with_a_typed_reason() {
    let t0 = Instant::now();
    let mut conn = Connection::new(Config::new(5), t0);
    let peer = Peer::new(226);
    peer.hello_reply(&mut conn, t0);
    peer.reply(
        &mut conn,
        t0,
        &[Response::Error(ErrorMessage {
            req_id: -1,
            code: 326,
            message:
                "Unable to connect as the client id is already in use. Retry with a unique client id."
                    .into(),
            ..ErrorMessage::default()
        })],
    );
    assert_eq!(
        events(&mut conn),
        vec![Event::Disconnected {
            reason: ConnectionError::ClientIdInUse { client_id: 5 }
        }]
    );
    assert!(conn.is_closed());
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn handshake_times_out() {
    let t0 = Instant::now();
    let mut conn = Connection::new(Config::new(5), t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    conn.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(
        events(&mut conn),
        vec![Event::Disconnected {
            reason: ConnectionError::HandshakeTimeout(Duration::from_secs(10))
        }]
    );
}

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
fn connectivity_loss_and_data_lost_restore_ask_for_resubscription() {
    let (mut conn, peer, t0) = connected(226);
    let notice = |code: i32, message: &str| {
        Response::Error(ErrorMessage {
            req_id: -1,
            code,
            message: message.into(),
            ..ErrorMessage::default()
        })
    };
    peer.reply(
        &mut conn,
        t0,
        &[notice(
            1100,
            "Connectivity between IBKR and Trader Workstation has been lost.",
        )],
    );
    assert!(conn.is_degraded());
    assert_eq!(
        events(&mut conn),
        vec![Event::Connectivity(Connectivity::Lost)]
    );
    peer.reply(
        &mut conn,
        t0,
        &[notice(
            1101,
            "Connectivity between IBKR and Trader Workstation has been restored - data lost.",
        )],
    );
    assert!(!conn.is_degraded());
    assert_eq!(
        events(&mut conn),
        vec![
            Event::Connectivity(Connectivity::RestoredDataLost),
            Event::Resubscribe
        ]
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

#[test]
fn closing_ends_every_open_request_exactly_once() {
    let (mut conn, _peer, t0) = connected(226);
    let a = conn
        .send(t0, Query::HistoricalData(hourly()), None)
        .unwrap();
    let b = conn.send(t0, Query::CurrentTime, None).unwrap();
    conn.close(t0);
    let ev = events(&mut conn);
    let closed = || {
        Err(RequestError::ConnectionClosed(
            ConnectionError::LocallyClosed,
        ))
    };
    assert_eq!(
        ev,
        vec![
            Event::Completed {
                id: a,
                result: closed()
            },
            Event::Completed {
                id: b,
                result: closed()
            },
            Event::Disconnected {
                reason: ConnectionError::LocallyClosed
            }
        ]
    );
    assert_eq!(
        conn.send(t0, Query::CurrentTime, None),
        Err(SendError::Closed)
    );
}

#[test]
fn keep_up_to_date_streams_updates_until_cancelled() {
    let (mut conn, mut peer, t0) = connected(226);
    let mut req = hourly();
    req.end_date_time.clear();
    req.keep_up_to_date = true;
    let id = conn.send(t0, Query::HistoricalData(req), None).unwrap();
    peer.read(&mut conn);
    peer.take();
    peer.reply(
        &mut conn,
        t0,
        &[
            Response::HistoricalData {
                req_id: id.0,
                start: String::new(),
                end: String::new(),
                bars: vec![bar("1")],
            },
            Response::HistoricalDataEnd {
                req_id: id.0,
                start: "a".into(),
                end: "b".into(),
            },
            Response::HistoricalDataUpdate {
                req_id: id.0,
                bar: bar("2"),
            },
        ],
    );
    let ev = events(&mut conn);
    assert!(matches!(ev[0], Event::Completed { result: Ok(_), .. }));
    assert_eq!(ev[1], Event::BarUpdate { id, bar: bar("2") });
    // Streams have no deadline once completed.
    assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    conn.cancel(t0, id);
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::CancelHistoricalData { req_id: id.0 }]
    );
    assert!(events(&mut conn).is_empty(), "no second Completed");
    assert_eq!(conn.in_flight(), 0);
}

#[test]
fn contract_details_collects_every_match() {
    let (mut conn, mut peer, t0) = connected(176);
    let id = conn
        .send(t0, Query::ContractDetails(Contract::stock("AAPL")), None)
        .unwrap();
    peer.read(&mut conn);
    let details = ContractDetails {
        long_name: "APPLE INC".into(),
        ..ContractDetails::default()
    };
    let data = |con_id| Response::ContractData {
        req_id: id.0,
        contract: Box::new(Contract {
            con_id,
            ..Contract::stock("AAPL")
        }),
        details: Box::new(details.clone()),
    };
    peer.reply(
        &mut conn,
        t0,
        &[data(1), data(2), Response::ContractDataEnd { req_id: id.0 }],
    );
    let ev = events(&mut conn);
    let [Event::Completed {
        result: Ok(Answer::ContractDetails(found)),
        ..
    }] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        found.iter().map(|(c, _)| c.con_id).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn start_api_waits_for_the_server_hello_under_a_wide_offer() {
    let t0 = Instant::now();
    let cfg = Config {
        versions: VersionPolicy::Pinned(VersionRange::supported()),
        ..Config::new(11)
    };
    let mut conn = Connection::new(cfg, t0);
    let mut peer = Peer::new(176);
    peer.read(&mut conn);
    assert!(peer.take().is_empty(), "only the hello");
    peer.hello_reply(&mut conn, t0);
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::StartApi {
            client_id: 11,
            optional_capabilities: String::new()
        }],
        "START_API in the text form v176 implies"
    );
}

#[test]
fn a_gateway_below_the_offer_ends_the_handshake_with_a_typed_reason() {
    for (versions, server) in [
        (VersionPolicy::Auto, 176),
        (VersionPolicy::Auto, 212),
        (VersionPolicy::Pinned(VersionRange::new(157, 178)), 150),
    ] {
        let t0 = Instant::now();
        let offered_min = versions.offer().min;
        let mut conn = Connection::new(
            Config {
                versions,
                ..Config::new(12)
            },
            t0,
        );
        let _ = conn.poll_transmit();
        Peer::new(server).hello_reply(&mut conn, t0);
        let reason = ConnectionError::VersionBelowOffer {
            offered_min,
            server,
        };
        assert_eq!(reason.fault(), Fault::Gateway);
        assert_eq!(events(&mut conn), vec![Event::Disconnected { reason }]);
        assert!(conn.is_closed());
        assert_eq!(conn.server_version(), 0);
    }
    // Above the offer stays a handshake error.
    let t0 = Instant::now();
    let cfg = Config {
        versions: VersionRange::new(157, 178).into(),
        ..Config::new(12)
    };
    let mut conn = Connection::new(cfg, t0);
    Peer::new(200).hello_reply(&mut conn, t0);
    assert_eq!(
        events(&mut conn),
        vec![Event::Disconnected {
            reason: ConnectionError::Handshake(HandshakeError::VersionNotOffered {
                chosen: 200,
                offered: VersionRange::new(157, 178)
            })
        }]
    );
}

#[test]
fn a_close_before_the_server_hello_is_told_apart_from_a_later_one() {
    let t0 = Instant::now();
    for cause in [None, Some("connection reset by peer".to_owned())] {
        let mut conn = Connection::new(Config::new(13), t0);
        let _ = conn.poll_transmit();
        conn.handle_eof(t0, cause.clone());
        assert_eq!(
            events(&mut conn),
            vec![Event::Disconnected {
                reason: ConnectionError::ClosedBeforeHello { cause }
            }]
        );
    }
    // After the hello (START_API pending) a close is the usual one.
    let mut conn = Connection::new(Config::new(13), t0);
    Peer::new(226).hello_reply(&mut conn, t0);
    conn.handle_eof(t0, None);
    assert_eq!(
        events(&mut conn),
        vec![Event::Disconnected {
            reason: ConnectionError::PeerClosed
        }]
    );
}

#[test]
fn start_api_is_pipelined_when_every_offered_version_speaks_protobuf() {
    for versions in [
        VersionPolicy::Auto,
        VersionPolicy::Pinned(VersionRange::new(213, 226)),
    ] {
        start_api_is_pipelined(Config {
            versions,
            ..Config::new(11)
        });
    }
}

fn start_api_is_pipelined(cfg: Config) {
    let t0 = Instant::now();
    let mut conn = Connection::new(cfg, t0);
    let mut peer = Peer::new(226);
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::StartApi {
            client_id: 11,
            optional_capabilities: String::new()
        }],
        "START_API travels with the hello"
    );
    peer.hello_reply(&mut conn, t0);
    peer.read(&mut conn);
    assert!(peer.take().is_empty(), "and is not sent twice");
    peer.reply(&mut conn, t0, &startup());
    assert!(matches!(
        events(&mut conn)[0],
        Event::Connected {
            server_version: 226,
            ..
        }
    ));
}

/// A connected session at `version` whose requests may buffer at most `max` items.
fn capped(version: i32, max: usize) -> (Connection, Peer, Instant) {
    let cfg = Config {
        max_answer_items: max,
        ..config_for(version, 7)
    };
    connected_with(cfg, version)
}

fn bars_frame(id: RequestId, n: usize) -> Response {
    Response::HistoricalData {
        req_id: id.0,
        start: String::new(),
        end: String::new(),
        bars: vec![bar("1767128400"); n],
    }
}

#[test]
fn bars_past_the_item_cap_cancel_the_request_with_a_typed_error() {
    let (mut conn, mut peer, t0) = capped(226, 5);
    let id = conn
        .send(t0, Query::HistoricalData(hourly()), None)
        .unwrap();
    peer.read(&mut conn);
    peer.take();
    // Five bars fit; the sixth would not.
    peer.reply(&mut conn, t0, &[bars_frame(id, 2), bars_frame(id, 3)]);
    assert!(events(&mut conn).is_empty());
    peer.reply(&mut conn, t0, &[bars_frame(id, 1)]);
    assert_eq!(
        events(&mut conn),
        vec![Event::Completed {
            id,
            result: Err(RequestError::AnswerTooLarge { max: 5 })
        }]
    );
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::CancelHistoricalData { req_id: id.0 }]
    );
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(conn.stats().failed, 1);
    // What the gateway sent before it saw the cancel is dropped; the session lives on.
    peer.reply(
        &mut conn,
        t0,
        &[
            bars_frame(id, 4),
            Response::HistoricalDataEnd {
                req_id: id.0,
                start: "s".into(),
                end: "e".into(),
            },
        ],
    );
    assert!(events(&mut conn).is_empty());
    assert!(conn.is_ready());
}

#[test]
fn a_gateway_streaming_bars_forever_is_stopped_at_the_default_cap() {
    let (mut conn, mut peer, t0) = connected(226);
    assert_eq!(conn.cfg.max_answer_items, crate::wire::MAX_REPEATED);
    let id = conn
        .send(t0, Query::HistoricalData(hourly()), None)
        .unwrap();
    peer.read(&mut conn);
    peer.take();
    let frame = {
        let mut out = BytesMut::new();
        bars_frame(id, 10_000).encode(226, &mut out).unwrap();
        out.freeze()
    };
    let mut sent = 0;
    let ev = loop {
        conn.handle_input(t0, &frame);
        sent += 10_000;
        let ev = events(&mut conn);
        if !ev.is_empty() || sent > 1_000_000 {
            break ev;
        }
    };
    assert_eq!(
        sent,
        crate::wire::MAX_REPEATED + 10_000,
        "stopped at the first frame past the cap"
    );
    assert_eq!(
        ev,
        vec![Event::Completed {
            id,
            result: Err(RequestError::AnswerTooLarge {
                max: crate::wire::MAX_REPEATED
            })
        }]
    );
    peer.read(&mut conn);
    assert_eq!(
        peer.take(),
        vec![Request::CancelHistoricalData { req_id: id.0 }]
    );
}

#[test]
fn contract_matches_past_the_item_cap_end_the_request_with_or_without_a_cancel() {
    // 226 has cancelContractData; 176 does not, so the later matches are just dropped.
    for (version, cancel) in [(226, true), (176, false)] {
        let (mut conn, mut peer, t0) = capped(version, 2);
        let id = conn
            .send(t0, Query::ContractDetails(Contract::stock("AAPL")), None)
            .unwrap();
        peer.read(&mut conn);
        peer.take();
        let data = |con_id| Response::ContractData {
            req_id: id.0,
            contract: Box::new(Contract {
                con_id,
                ..Contract::stock("AAPL")
            }),
            details: Box::new(ContractDetails::default()),
        };
        peer.reply(&mut conn, t0, &[data(1), data(2), data(3), data(4)]);
        assert_eq!(
            events(&mut conn),
            vec![Event::Completed {
                id,
                result: Err(RequestError::AnswerTooLarge { max: 2 })
            }],
            "server version {version}"
        );
        peer.read(&mut conn);
        let expected = if cancel {
            vec![Request::CancelContractData { req_id: id.0 }]
        } else {
            vec![]
        };
        assert_eq!(peer.take(), expected, "server version {version}");
        peer.reply(&mut conn, t0, &[Response::ContractDataEnd { req_id: id.0 }]);
        assert!(events(&mut conn).is_empty(), "server version {version}");
        assert_eq!(conn.in_flight(), 0);
    }
}

#[test]
fn a_stream_buffers_no_bars_after_its_answer() {
    let (mut conn, mut peer, t0) = connected(226);
    let mut req = hourly();
    req.end_date_time.clear();
    req.keep_up_to_date = true;
    let id = conn.send(t0, Query::HistoricalData(req), None).unwrap();
    peer.read(&mut conn);
    peer.take();
    let end = Response::HistoricalDataEnd {
        req_id: id.0,
        start: "a".into(),
        end: "b".into(),
    };
    peer.reply(&mut conn, t0, &[bars_frame(id, 1), end.clone()]);
    assert!(matches!(
        &events(&mut conn)[..],
        [Event::Completed { result: Ok(_), .. }]
    ));
    // A confused gateway repeats the answer: no second Completed, nothing kept.
    peer.reply(&mut conn, t0, &[bars_frame(id, 3), end]);
    assert!(events(&mut conn).is_empty(), "no second Completed");
    assert!(conn.pending.values().all(|p| p.bars.is_empty()));
}

#[test]
fn a_duration_max_request_timeout_still_completes() {
    let (mut conn, mut peer, t0) = connected(226);
    let id = conn
        .send(t0, Query::HistoricalData(hourly()), Some(Duration::MAX))
        .unwrap();
    peer.read(&mut conn);
    peer.take();
    let due = conn.poll_timeout().unwrap();
    assert!(due > t0, "a deadline, not a panic");
    // Not due within the far future's first decade.
    conn.handle_timeout(t0 + Duration::from_secs(10 * 365 * 86_400));
    assert!(events(&mut conn)
        .iter()
        .all(|e| !matches!(e, Event::Completed { .. })));
    let t = t0 + Duration::from_secs(10 * 365 * 86_400);
    peer.reply(
        &mut conn,
        t,
        &[
            bars_frame(id, 2),
            Response::HistoricalDataEnd {
                req_id: id.0,
                start: "s".into(),
                end: "e".into(),
            },
        ],
    );
    assert_eq!(
        events(&mut conn),
        vec![Event::Completed {
            id,
            result: Ok(Answer::Bars {
                bars: vec![bar("1767128400"); 2],
                start: "s".into(),
                end: "e".into()
            })
        }]
    );
}
