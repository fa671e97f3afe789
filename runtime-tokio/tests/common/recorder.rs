//! A loopback proxy in front of a simulated gateway that records what each client connection
//! opened with — its offer, and whether START_API came with the hello — over plain `std::net`
//! threads, so both runtimes' tests can use it.
//!
//! After a modern hello (lowest offered version 213 or more) the proxy reads the next frame
//! before it forwards anything: a client that waited for the server's hello before sending
//! START_API would never get past it (the test's bounded wait fails), so a connect that finishes
//! proves the one-round-trip handshake without measuring time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use ibconn_core::wire::{version, ClientHello, VersionRange};

/// START_API's protobuf message id (71 + 200).
const START_API_PROTOBUF: u32 = 271;

/// What one client connection opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The version range of its hello.
    pub(crate) offer: VersionRange,
    /// Whether START_API (protobuf) was the frame right behind a modern hello, sent before the
    /// gateway had answered anything.
    pub(crate) start_api_with_hello: bool,
}

impl Seen {
    /// The default offer v213..226 with START_API pipelined.
    pub(crate) fn modern_pipelined() -> Self {
        Self {
            offer: VersionRange::modern(),
            start_api_with_hello: true,
        }
    }

    /// The wide offer v100..226 (START_API after the server's hello).
    pub(crate) fn wide() -> Self {
        Self {
            offer: VersionRange::supported(),
            start_api_with_hello: false,
        }
    }
}

/// The proxy; its threads live until the test process ends.
#[derive(Debug)]
pub(crate) struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    /// Listen on a loopback port and forward every connection to `upstream`.
    pub(crate) fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let _ = forward(client, upstream, &log);
                });
            }
        });
        Self { addr, seen }
    }

    /// The address clients dial.
    pub(crate) fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Every connection so far, in accept order of their hellos.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Read one length-prefixed frame, appending its bytes to `raw`; returns the body.
fn frame(from: &mut TcpStream, raw: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    from.read_exact(&mut body)?;
    raw.extend_from_slice(&len);
    raw.extend_from_slice(&body);
    Ok(body)
}

fn forward(mut client: TcpStream, upstream: SocketAddr, log: &Mutex<Vec<Seen>>) -> io::Result<()> {
    let mut raw = vec![0u8; 4];
    client.read_exact(&mut raw)?; // "API\0"
    let hello = ClientHello::decode(&frame(&mut client, &mut raw)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let modern = hello.versions.min >= version::PROTOBUF_REST_MESSAGES_3;
    let start_api_with_hello = modern && {
        let next = frame(&mut client, &mut raw)?;
        next.get(..4) == Some(&START_API_PROTOBUF.to_be_bytes()[..])
    };
    log.lock().unwrap().push(Seen {
        offer: hello.versions,
        start_api_with_hello,
    });
    let mut server = TcpStream::connect(upstream)?;
    server.set_nodelay(true)?;
    client.set_nodelay(true)?;
    server.write_all(&raw)?;
    let (mut up_from, mut up_to) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut up_from, &mut up_to);
        let _ = up_to.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}
