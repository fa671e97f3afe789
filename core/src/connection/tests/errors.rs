//! IB's error messages: routed to their request and classified; connectivity loss and restore.

use super::*;

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
