//! The TCP server's fault hooks over real loopback sockets: a restart closes every socket and the
//! port refuses until it reopens on the same address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
#![cfg(feature = "tcp")]

use std::time::Duration;

use bytes::BytesMut;
use ibconn_core::wire::{ClientHello, VersionRange};
use ibconn_sim::{Fault, ServerConfig, SimServer, Target};
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
