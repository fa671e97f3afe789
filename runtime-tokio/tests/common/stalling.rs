//! A loopback proxy in front of a simulated gateway that can stop reading from its client: a
//! gateway whose socket buffers fill up. Plain `std::net` threads, so both runtimes' tests can use
//! it; the simulator does the handshake.
//!
//! After [`StallingProxy::stall`], the next connection to send anything stops being read: its
//! client socket stays open and unread (held until the proxy is dropped), its small receive
//! buffer (set on the listener, so autotuning cannot grow it) fills, and the client's writes
//! block. Its upstream session is closed at once, so the simulator frees its client id for the
//! redial; nothing reaches the client from it afterwards. Later connections are forwarded as usual.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, Type};

/// The receive buffer of every accepted socket (the kernel doubles it).
const RECV_BUFFER: usize = 64 * 1024;

/// The proxy; its accept thread lives until the test process ends, the stalled sockets as long
/// as the proxy.
#[derive(Debug)]
pub(crate) struct StallingProxy {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
    /// Client sockets no longer read, kept open.
    stalled: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallingProxy {
    /// Listen on a loopback port and forward every connection to `upstream`.
    pub(crate) fn start(upstream: SocketAddr) -> Self {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        socket.set_recv_buffer_size(RECV_BUFFER).unwrap();
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&local.into()).unwrap();
        socket.listen(16).unwrap();
        let listener: TcpListener = socket.into();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(Mutex::new(Vec::new()));
        let (arm, keep) = (Arc::clone(&armed), Arc::clone(&stalled));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (arm, keep) = (Arc::clone(&arm), Arc::clone(&keep));
                std::thread::spawn(move || {
                    let _ = forward(client, upstream, &arm, &keep);
                });
            }
        });
        Self {
            addr,
            armed,
            stalled,
        }
    }

    /// The address clients dial.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop reading the next connection that sends anything.
    pub(crate) fn stall(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Connections stalled so far.
    pub(crate) fn stalled(&self) -> usize {
        self.stalled.lock().unwrap().len()
    }
}

fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    armed: &AtomicBool,
    stalled: &Mutex<Vec<TcpStream>>,
) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    server.set_nodelay(true)?;
    client.set_nodelay(true)?;
    let (mut down_from, mut down_to) = (server.try_clone()?, client.try_clone()?);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let down = std::thread::spawn(move || {
        let _ = io::copy(&mut down_from, &mut down_to);
        if !stopped.load(Ordering::SeqCst) {
            let _ = down_to.shutdown(Shutdown::Both);
        }
    });
    let (mut from, mut to) = (client, server);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if armed.swap(false, Ordering::SeqCst) {
            // Never read this client again; end its upstream session (the down copy sees EOF and
            // leaves the client socket alone).
            stop.store(true, Ordering::SeqCst);
            stalled.lock().unwrap().push(from);
            let _ = to.shutdown(Shutdown::Both);
            let _ = down.join();
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = down.join();
    Ok(())
}
