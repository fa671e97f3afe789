//! # ibconn-tokio
//!
//! ibconn on Tokio: the shared handles and driver of [`ibconn_runtime`] over Tokio's sockets,
//! spawn and timers. Everything else — protocol, policy, the run loop, every handle's behaviour
//! and bounds — is written once in `ibconn-core` and `ibconn-runtime`; read their docs.
//! Call [`Pool::start`] and [`Client::connect`] inside a Tokio runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ibconn_tokio::Error> {
//! use ibconn_tokio::{MemoryRegistry, Pool, PoolConfig, Purpose};
//! use ibconn_core::client_id::{Holder, RegistryConfig};
//! let registry = MemoryRegistry::new(RegistryConfig::default(), Holder::from_pid(std::process::id()));
//! let pool = Pool::start(PoolConfig::default(), Box::new(registry));
//! let conn = pool.acquire(Purpose::Backfill).await?;
//! let server_time = conn.current_time().await?;
//! drop(conn); // the lease goes back to the pool
//! pool.shutdown().await;
//! # let _ = server_time; Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use ibconn_runtime::{finish_connect, is_connected, start_connect, Dialing};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

pub use ibconn_runtime::api::*;

/// A pool of TWS sessions driven on Tokio ([`ibconn_runtime::Pool`]).
pub type Pool = ibconn_runtime::Pool<Tokio>;

/// One TWS session with a fixed client id, on Tokio ([`ibconn_runtime::Client`]).
pub type Client = ibconn_runtime::Client<Tokio>;

/// Tokio as an [`ibconn_runtime::Runtime`].
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

impl ibconn_runtime::Runtime for Tokio {
    type Socket = Stream;
    type Timer = Pin<Box<Sleep>>;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        drop(tokio::spawn(task));
    }

    fn dial(addr: String) -> Dialing<Stream> {
        Box::pin(async move {
            let Ok(sa) = addr.parse::<SocketAddr>() else {
                return TcpStream::connect(addr).await.map(Stream);
            };
            let stream = TcpStream::from_std(start_connect(sa)?)?;
            if !is_connected(SockRef::from(&stream)) {
                stream.writable().await?;
                finish_connect(SockRef::from(&stream))?;
            }
            Ok(Stream(stream))
        })
    }

    fn timer(at: Instant) -> Self::Timer {
        Box::pin(tokio::time::sleep_until(at.into()))
    }

    fn reset(timer: &mut Self::Timer, at: Instant) {
        timer.as_mut().reset(at.into());
    }
}

/// A Tokio TCP stream as an [`ibconn_runtime::Socket`].
#[derive(Debug)]
pub struct Stream(TcpStream);

impl ibconn_runtime::Socket for Stream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The socket is tried first, so a fresh one takes its hello at once rather than after the
    /// reactor has called it writable; what it refuses waits for the reactor.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match (&*SockRef::from(&self.0)).write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Pin::new(&mut self.0).poll_write(cx, buf)
            }
            done => Poll::Ready(done),
        }
    }

    fn sock(&self) -> SockRef<'_> {
        SockRef::from(&self.0)
    }
}
