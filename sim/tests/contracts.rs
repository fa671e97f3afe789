//! Every contract type through the sans-IO gateway's wire: contract details (one row, or several
//! for an ambiguous request), head timestamps and bars for stocks, forex, indices, futures (by
//! month, date, local symbol and contract id) and options, and IB's per-type whatToShow rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// Tests start from a real instant: the sim's determinism rules are for the library.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use bytes::BytesMut;
use ibconn_core::contract_spec::ContractSpec;
use ibconn_core::message::request::HistoricalDataRequest;
use ibconn_core::message::{Contract, HeadTimestampRequest, Request, Response};
use ibconn_core::wire::{ClientHello, FrameDecoder, ServerHello, VersionRange};
use ibconn_sim::calendar::utc;
use ibconn_sim::{ConnId, Gateway, GatewayConfig};

/// One session on a gateway whose clock reads Thursday 2026-11-05 15:00 UTC.
struct Session {
    gw: Gateway,
    now: Instant,
    conn: ConnId,
    dec: FrameDecoder,
    sv: i32,
}

impl Session {
    fn new() -> Self {
        let config = GatewayConfig {
            start_unix_ms: utc(2026, 11, 5, 15, 0, 0) * 1000,
            ..GatewayConfig::default()
        };
        let mut gw = Gateway::new(config, 3);
        let now = Instant::now();
        let conn = gw.accept(now);
        let mut hello = BytesMut::new();
        ClientHello::new(VersionRange::new(213, 226)).encode(&mut hello);
        gw.handle_input(conn, now, &hello);
        let mut s = Self {
            gw,
            now,
            conn,
            dec: FrameDecoder::new(),
            sv: 0,
        };
        s.pump();
        s.sv = ServerHello::decode(&s.dec.next_frame().unwrap().unwrap())
            .unwrap()
            .server_version;
        s.ask(&Request::StartApi {
            client_id: 1,
            optional_capabilities: String::new(),
        });
        s
    }

    fn pump(&mut self) {
        while let Some(b) = self.gw.poll_transmit(self.conn) {
            self.dec.push(&b);
        }
    }

    /// Send `req` and collect the answers (replies wait no latency by default).
    fn ask(&mut self, req: &Request) -> Vec<Response> {
        let mut out = BytesMut::new();
        req.encode(self.sv, &mut out).unwrap();
        self.gw.handle_input(self.conn, self.now, &out);
        self.gw.handle_timeout(self.now);
        self.pump();
        let mut got = Vec::new();
        while let Some(body) = self.dec.next_frame().unwrap() {
            got.push(Response::decode_payload(body, self.sv).unwrap());
        }
        got
    }

    fn details(&mut self, spec: &str) -> Result<Vec<Contract>, (i32, String)> {
        let answers = self.ask(&Request::ReqContractDetails {
            req_id: 7,
            contract: contract(spec),
        });
        let mut rows = Vec::new();
        for a in answers {
            match a {
                Response::ContractData { contract, .. } => rows.push(*contract),
                Response::Error(e) if e.req_id == 7 => return Err((e.code, e.message)),
                _ => {}
            }
        }
        Ok(rows)
    }

    fn head(&mut self, spec: &str, what: &str) -> Result<String, (i32, String)> {
        let answers = self.ask(&Request::ReqHeadTimestamp(HeadTimestampRequest {
            req_id: 8,
            contract: contract(spec),
            use_rth: false,
            what_to_show: what.into(),
            format_date: 2,
        }));
        first_answer(answers, 8, |r| match r {
            Response::HeadTimestamp { timestamp, .. } => Some(timestamp),
            _ => None,
        })
    }

    fn bars(&mut self, spec: &str, what: &str, bar: &str) -> Result<usize, (i32, String)> {
        // A new id each time, and a pause between: the pacing rules still apply.
        self.now += std::time::Duration::from_secs(16);
        let answers = self.ask(&Request::ReqHistoricalData(HistoricalDataRequest {
            req_id: 9,
            contract: contract(spec),
            end_date_time: "20261104 21:00:00 UTC".into(),
            bar_size: bar.into(),
            duration: "2 D".into(),
            use_rth: false,
            what_to_show: what.into(),
            format_date: 2,
            keep_up_to_date: false,
            chart_options: Vec::new(),
        }));
        first_answer(answers, 9, |r| match r {
            Response::HistoricalData { bars, .. } => Some(bars.len()),
            _ => None,
        })
    }
}

fn contract(spec: &str) -> Contract {
    ContractSpec::parse(spec).unwrap().to_contract()
}

fn first_answer<T>(
    answers: Vec<Response>,
    req_id: i32,
    pick: impl Fn(Response) -> Option<T>,
) -> Result<T, (i32, String)> {
    for a in answers {
        if let Response::Error(e) = &a {
            if e.req_id == req_id {
                return Err((e.code, e.message.clone()));
            }
        }
        if let Some(v) = pick(a) {
            return Ok(v);
        }
    }
    panic!("no answer to {req_id}")
}

#[test]
fn each_contract_type_resolves_and_has_history() {
    let mut s = Session::new();
    for (spec, con_id, what) in [
        ("AAPL", 265_598, "TRADES"),
        ("EUR.USD", 12_087_792, "MIDPOINT"),
        ("SPX:IND", 416_904, "TRADES"),
        ("ES:FUT:202612", 495_002_612, "TRADES"),
        ("ESZ6", 495_002_612, "TRADES"),
        ("NQ:FUT:20270319", 496_002_703, "BID_ASK"),
        ("@265598", 265_598, "TRADES"),
    ] {
        let rows = s.details(spec).unwrap();
        assert_eq!(rows.len(), 1, "{spec}");
        assert_eq!(rows[0].con_id, con_id, "{spec}");
        assert!(s.head(spec, what).is_ok(), "{spec}");
        let n = s.bars(spec, what, "1 hour").unwrap();
        assert!(n > 0, "{spec}");
    }
    let call = s.details("AAPL:OPT:20261218:200:C").unwrap();
    assert_eq!(call.len(), 1);
    assert_eq!(call[0].local_symbol, "AAPL  261218C00200000");
    assert_eq!(s.details("AAPL  261218C00200000").unwrap(), call);
    assert!(
        s.bars("AAPL:OPT:20261218:200:C", "TRADES", "1 hour")
            .unwrap()
            > 0
    );
    // Hours per type: two days of hourly bars ending Wednesday 16:00 New York.
    let fx = s.bars("EUR.USD", "MIDPOINT", "1 hour").unwrap();
    let index = s.bars("SPX:IND", "TRADES", "1 hour").unwrap();
    let future = s.bars("ESZ6", "TRADES", "1 hour").unwrap();
    assert_eq!(index, 14, "09:30–16:00 on two days: 7 bars each");
    assert_eq!(
        future,
        23 + 22,
        "Tuesday from Monday 18:00, Wednesday to 16:00 minus the break"
    );
    assert_eq!(fx, 24 + 23, "24×5: no break");
}

#[test]
fn ambiguous_requests_get_every_candidate_and_bars_refuse() {
    let mut s = Session::new();
    let rows = s.details("ES:FUT").unwrap();
    let locals: Vec<&str> = rows.iter().map(|c| c.local_symbol.as_str()).collect();
    assert_eq!(locals, ["ESZ6", "ESH7", "ESM7", "ESU7"]);
    assert_eq!(s.details("AAPL:OPT:20261218:200").unwrap().len(), 2);
    assert_eq!(
        s.bars("ES:FUT", "TRADES", "1 hour"),
        Err((
            200,
            "The contract description specified for ES is ambiguous".into()
        ))
    );
    assert_eq!(
        s.details("ES:FUT:202609"),
        Err((
            200,
            "No security definition has been found for the request.".into()
        )),
        "expired"
    );
}

#[test]
fn series_a_type_does_not_have_are_refused_as_ib_does() {
    let mut s = Session::new();
    let prefix = "Historical Market Data Service error message:";
    assert_eq!(
        s.bars("EUR.USD", "TRADES", "1 day"),
        Err((
            162,
            format!("{prefix}No historical market data for EUR/CASH@FXSUBPIP Last 1d")
        ))
    );
    assert_eq!(
        s.bars("EUR.USD", "TRADES", "1 min"),
        Err((
            162,
            format!("{prefix}No historical market data for EUR/CASH@FXSUBPIP Last 60")
        ))
    );
    assert_eq!(
        s.bars("SPX:IND", "MIDPOINT", "1 hour"),
        Err((
            162,
            format!("{prefix}No historical market data for SPX/IND@CBOE Midpoint 3600")
        ))
    );
    assert!(s.head("EUR.USD", "TRADES").is_err());
    assert!(s.head("SPX:IND", "BID_ASK").is_err());
    assert!(s.bars("AAPL", "MIDPOINT", "1 hour").is_ok());
}
