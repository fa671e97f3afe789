//! The TCP server over real loopback sockets: its fault hooks (a restart closes every socket and
//! the port refuses until it reopens on the same address) and its rules, the same as in the
//! virtual-time worlds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
#![cfg(feature = "tcp")]

use std::time::Duration;

use bytes::BytesMut;
use ibconn_core::message::{Contract, HistoricalDataRequest, Request, Response};
use ibconn_core::wire::{ClientHello, FrameDecoder, ServerHello, VersionRange};
use ibconn_sim::{
    Fault, GatewayConfig, PoolWorldConfig, ServerConfig, SimServer, Target, WorldConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(5);

/// Dial and send a hello; returns the stream after the server's hello arrived.
async fn hello(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    let mut out = BytesMut::new();
    ClientHello::new(VersionRange::new(157, 178)).encode(&mut out);
    s.write_all(&out).await?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await?;
    assert!(body.starts_with(b"178\0"));
    Ok(s)
}

/// Read until EOF or error; true if the socket closed.
async fn closes(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match timeout(LIMIT, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn restart_closes_sockets_and_refuses_until_the_port_reopens() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = SimServer::start(listener, ServerConfig::default()).unwrap();
    let addr = sim.local_addr();
    let mut first = timeout(LIMIT, hello(addr)).await.unwrap().unwrap();

    sim.restart(Duration::from_millis(800)).await;
    assert!(closes(&mut first).await, "socket not closed by the restart");
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    timeout(LIMIT, hello(addr)).await.unwrap().unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn inject_reaches_the_sockets() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = SimServer::start(listener, ServerConfig::default()).unwrap();
    let mut s = timeout(LIMIT, hello(sim.local_addr()))
        .await
        .unwrap()
        .unwrap();
    sim.inject(Fault::Close(Target::All)).await;
    assert!(closes(&mut s).await);
    sim.shutdown().await;
}

/// A session over TCP at server version 226: hello, START_API, the startup burst read.
struct Session {
    stream: TcpStream,
    dec: FrameDecoder,
    sv: i32,
}

impl Session {
    async fn open(addr: std::net::SocketAddr, client_id: i32) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut out = BytesMut::new();
        ClientHello::new(VersionRange::new(213, 226)).encode(&mut out);
        stream.write_all(&out).await.unwrap();
        let mut s = Self {
            stream,
            dec: FrameDecoder::new(),
            sv: 0,
        };
        let hello = s.frame().await;
        s.sv = ServerHello::decode(&hello).unwrap().server_version;
        s.send(&Request::StartApi {
            client_id,
            optional_capabilities: String::new(),
        })
        .await;
        s
    }

    async fn send(&mut self, req: &Request) {
        let mut out = BytesMut::new();
        req.encode(self.sv, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn frame(&mut self) -> bytes::Bytes {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = self.dec.next_frame().unwrap() {
                return frame;
            }
            let n = timeout(LIMIT, self.stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed");
            self.dec.push(&buf[..n]);
        }
    }

    /// Read until every request in `ids` ended (bars' end or an error); for each, whether it
    /// was refused with a 162 pacing violation (errors come before replies that wait).
    async fn paced(&mut self, ids: std::ops::Range<i32>) -> Vec<bool> {
        let mut ended = std::collections::BTreeMap::new();
        while ended.len() < ids.len() {
            let frame = self.frame().await;
            match Response::decode_payload(frame, self.sv).unwrap() {
                Response::HistoricalDataEnd { req_id, .. } if ids.contains(&req_id) => {
                    ended.insert(req_id, false);
                }
                Response::Error(e) if ids.contains(&e.req_id) => {
                    ended.insert(e.req_id, e.message.ends_with("pacing violation"));
                }
                _ => {}
            }
        }
        ended.into_values().collect()
    }
}

fn bars(req_id: i32, bar_size: &str, duration: &str) -> Request {
    Request::ReqHistoricalData(HistoricalDataRequest {
        req_id,
        contract: Contract::stock("AAPL"),
        end_date_time: "20260105-20:00:00".into(),
        bar_size: bar_size.into(),
        duration: duration.into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        ..HistoricalDataRequest::default()
    })
}

/// One rule set for every driver: the TCP server, `PoolWorld` and `World` judge by
/// `GatewayConfig::default()` — IB's scope, small bars paced, hourly bars not. (Over TCP the sim
/// used to pace every bar size, in `PoolWorld` only bars of 30 s or less.)
#[tokio::test]
async fn tcp_paces_by_the_same_rules_as_the_virtual_worlds() {
    let rules = GatewayConfig::default().historical;
    assert_eq!(ServerConfig::default().gateway.historical, rules);
    assert_eq!(PoolWorldConfig::new(1).gateway.historical, rules);
    assert_eq!(WorldConfig::new(1).gateway.historical, rules);
    assert_eq!(
        ServerConfig::default().gateway.small_bar_history,
        PoolWorldConfig::new(1).gateway.small_bar_history
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Pinned a day after the data's end, so it is recent whatever the date the test runs on.
    let wall = ibconn_sim::calendar::utc(2026, 1, 6, 15, 0, 0) * 1000;
    let sim = SimServer::start_at(listener, ServerConfig::default(), wall).unwrap();
    let mut s = Session::open(sim.local_addr(), 1).await;
    // Six hourly requests for one contract within 2 s: IB lifted its limits for them.
    for i in 0..6 {
        s.send(&bars(i, "1 hour", &format!("{} D", i + 1))).await;
    }
    assert_eq!(s.paced(0..6).await, [false; 6], "hourly bars are not paced");
    // Six 30-second requests: the sixth breaks the same-contract rule.
    for i in 0..6 {
        s.send(&bars(10 + i, "30 secs", &format!("{} S", 600 * (i + 1))))
            .await;
    }
    assert_eq!(
        s.paced(10..16).await,
        [false, false, false, false, false, true]
    );
    assert_eq!(sim.pacing_violations().await, Some(1));
    sim.shutdown().await;
}
