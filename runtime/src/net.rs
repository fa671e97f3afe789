//! The socket work both runtimes do the same way: a numeric address is connected by hand, and
//! every socket gets nodelay and keepalive.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// Start a non-blocking connect to `addr` and return the socket at once. A loopback (often a
/// LAN) connect is complete when connect(2) returns, and the socket is then used at once instead
/// of after the reactor has reported it writable; otherwise wait until the runtime's stream is
/// writable and call [`finish_connect`].
pub fn start_connect(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        // In progress: EINPROGRESS on Unix, "would block" elsewhere.
        Err(e)
            if e.kind() != io::ErrorKind::WouldBlock
                && e.raw_os_error() != Some(rustix::io::Errno::INPROGRESS.raw_os_error()) =>
        {
            Err(e)
        }
        _ => Ok(socket.into()),
    }
}

/// Whether the connect [`start_connect`] began has completed (then nothing is left to wait for).
pub fn is_connected(socket: SockRef<'_>) -> bool {
    socket.peer_addr().is_ok()
}

/// After the stream turned writable: the connect's outcome.
pub fn finish_connect(socket: SockRef<'_>) -> io::Result<()> {
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    socket.peer_addr().map(drop)
}

/// Nodelay (set before the first write) and keepalive.
pub(crate) fn configure(socket: SockRef<'_>, keepalive: Option<Duration>) {
    let _ = socket.set_tcp_nodelay(true);
    if let Some(idle) = keepalive {
        let _ = socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle));
    }
}
