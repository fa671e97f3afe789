//! Requests: queued until ready, timed out and cancelled, closed, streamed, collected, and capped
//! in size.

use super::*;

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
    req.end = EndTime::Now;
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
    assert_eq!(
        ev[1],
        Event::Stream {
            id,
            data: crate::stream::StreamData::Bar(bar("2"))
        }
    );
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
    req.end = EndTime::Now;
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
