//! The handshake: the offered range, both protocol eras, any chunking, START_API pipelined or
//! not, and every way it can end early (326, timeout, a gateway below the offer, an early close).

use super::*;

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
