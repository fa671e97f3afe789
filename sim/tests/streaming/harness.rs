//! A virtual-time driver for the streaming tests: one gateway, clients speaking the core's
//! codec, time advanced only to the instants [`Gateway::poll_timeout`] names (so a stream that
//! forgot to schedule itself sends nothing).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use ibconn_core::message::market::{MarketDataRequest, RealTimeBarsRequest, TickByTickRequest};
use ibconn_core::message::request::HistoricalDataRequest;
use ibconn_core::message::{Bar, Contract, MarketReply, MarketRequest, Request, Response};
use ibconn_core::wire::{ClientHello, FrameDecoder, ServerHello, VersionRange};
use ibconn_sim::{ConnId, Gateway, GatewayConfig};

pub struct Client {
    pub conn: ConnId,
    dec: FrameDecoder,
    pub sv: i32,
    pub closed: bool,
}

pub struct Sim {
    pub gw: Gateway,
    pub now: Instant,
    /// Every byte any client received, in order (the determinism check).
    pub trace: Vec<u8>,
    start: Instant,
}

impl Sim {
    pub fn new(config: GatewayConfig, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            gw: Gateway::new(config, seed),
            now,
            trace: Vec::new(),
            start: now,
        }
    }

    /// A gateway whose clock starts at `unix_ms`.
    pub fn at(unix_ms: i64, seed: u64) -> Self {
        Self::new(
            GatewayConfig {
                start_unix_ms: unix_ms,
                ..GatewayConfig::default()
            },
            seed,
        )
    }

    /// Wall time now, Unix milliseconds.
    pub fn wall_ms(&mut self) -> i64 {
        self.gw.unix_ms(self.now)
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Run the gateway's timers up to `d` from now, stopping only where it asks to.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.gw.poll_timeout().filter(|&t| t <= target) {
            self.now = self.now.max(t);
            self.gw.handle_timeout(self.now);
        }
        self.now = target;
        self.gw.handle_timeout(self.now);
    }

    /// Handshake (offering `versions`) and START_API; the startup burst is discarded.
    pub fn connect_with(&mut self, client_id: i32, versions: VersionRange) -> Client {
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
        let body = c.dec.next_frame().unwrap().unwrap();
        c.sv = ServerHello::decode(&body).unwrap().server_version;
        self.send(
            &mut c,
            &Request::StartApi {
                client_id,
                optional_capabilities: String::new(),
            },
        );
        self.recv(&mut c);
        c
    }

    /// A protobuf client at server version 226.
    pub fn connect(&mut self, client_id: i32) -> Client {
        self.connect_with(client_id, VersionRange::new(213, 226))
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

    pub fn send(&mut self, c: &mut Client, req: &Request) {
        let mut out = BytesMut::new();
        req.encode(c.sv, &mut out).unwrap();
        self.gw.handle_input(c.conn, self.now, &out);
    }

    /// Everything `c` received since the last call, decoded.
    pub fn recv(&mut self, c: &mut Client) -> Vec<Response> {
        self.pump(c);
        let mut out = Vec::new();
        while let Some(body) = c.dec.next_frame().unwrap() {
            out.push(Response::decode_payload(body, c.sv).unwrap());
        }
        out
    }

    /// Like [`Sim::recv`], but a frame the client cannot take (a garbage fault) closes the
    /// socket as a client would, and ends the list.
    pub fn recv_or_drop(&mut self, c: &mut Client) -> Vec<Response> {
        self.pump(c);
        let mut out = Vec::new();
        loop {
            match c.dec.next_frame() {
                Ok(Some(body)) => match Response::decode_payload(body, c.sv) {
                    Ok(r) => out.push(r),
                    Err(_) => continue,
                },
                Ok(None) => return out,
                Err(_) => {
                    self.gw.handle_reset(c.conn, self.now);
                    c.closed = true;
                    return out;
                }
            }
        }
    }

    pub fn request(&mut self, c: &mut Client, req: &Request) -> Vec<Response> {
        self.send(c, req);
        self.recv(c)
    }

    /// The 5-second bars `reqHistoricalData` answers now for the last `secs` seconds.
    pub fn five_second_bars(&mut self, contract: Contract, what: &str, secs: u32) -> Vec<Bar> {
        let r = HistoricalDataRequest {
            req_id: 0,
            contract,
            end_date_time: String::new(),
            bar_size: "5 secs".into(),
            duration: format!("{secs} S"),
            use_rth: false,
            what_to_show: what.into(),
            format_date: 2,
            keep_up_to_date: false,
            chart_options: Vec::new(),
        };
        self.gw.reference_bars(self.now, &r).unwrap()
    }
}

pub fn mkt_data(req_id: i32, contract: Contract) -> Request {
    Request::Market(MarketRequest::MktData(MarketDataRequest {
        req_id,
        contract,
        ..MarketDataRequest::default()
    }))
}

pub fn snapshot(req_id: i32, contract: Contract) -> Request {
    Request::Market(MarketRequest::MktData(MarketDataRequest {
        req_id,
        contract,
        snapshot: true,
        ..MarketDataRequest::default()
    }))
}

pub fn rt_bars(req_id: i32, contract: Contract, what: &str) -> Request {
    Request::Market(MarketRequest::RealTimeBars(RealTimeBarsRequest {
        req_id,
        contract,
        bar_size: 5,
        what_to_show: what.into(),
        use_rth: false,
    }))
}

pub fn tbt(req_id: i32, contract: Contract, tick_type: &str) -> Request {
    Request::Market(MarketRequest::TickByTick(TickByTickRequest {
        req_id,
        contract,
        tick_type: tick_type.into(),
        number_of_ticks: 0,
        ignore_size: false,
    }))
}

pub fn cancel_mkt(req_id: i32) -> Request {
    Request::Market(MarketRequest::CancelMktData { req_id })
}

pub fn cancel_rt(req_id: i32) -> Request {
    Request::Market(MarketRequest::CancelRealTimeBars { req_id })
}

pub fn cancel_tbt(req_id: i32) -> Request {
    Request::Market(MarketRequest::CancelTickByTick { req_id })
}

pub fn market_data_type(t: i32) -> Request {
    Request::Market(MarketRequest::MarketDataType {
        market_data_type: t,
    })
}

/// A keep-up-to-date historical request (end date empty).
pub fn keep_up(req_id: i32, contract: Contract, bar: &str) -> Request {
    Request::ReqHistoricalData(HistoricalDataRequest {
        req_id,
        contract,
        end_date_time: String::new(),
        bar_size: bar.into(),
        duration: "1 D".into(),
        use_rth: false,
        what_to_show: "TRADES".into(),
        format_date: 2,
        keep_up_to_date: true,
        chart_options: Vec::new(),
    })
}

/// The streaming replies among `rs`.
pub fn market(rs: &[Response]) -> Vec<MarketReply> {
    rs.iter()
        .filter_map(|r| match r {
            Response::Market(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// (req id, code, text) of the errors among `rs`.
pub fn errors(rs: &[Response]) -> Vec<(i32, i32, String)> {
    rs.iter()
        .filter_map(|r| match r {
            Response::Error(e) => Some((e.req_id, e.code, e.message.clone())),
            _ => None,
        })
        .collect()
}

/// The bar of `bars` starting at `t` (epoch-dated bars).
pub fn bar_at(bars: &[Bar], t: i64) -> &Bar {
    bars.iter()
        .find(|b| b.date.epoch_seconds() == Some(t))
        .unwrap_or_else(|| panic!("no bar at {t}"))
}

/// Tuesday 2026-01-06 15:00:00 UTC: 10:00 in New York, the market open (the gateway's default).
pub const OPEN: i64 = 1_767_711_600_000;
/// Saturday 2026-01-10 15:00 UTC: every built-in session closed.
pub const SATURDAY: i64 = 1_768_057_200_000;
