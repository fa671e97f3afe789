//! # ibconn-smol
//!
//! ibconn on smol / async-io: the shared handles and driver of [`ibconn_runtime`] over
//! async-io's sockets and timers, with the driver on smol's global executor. The public API is
//! `ibconn-tokio`'s; everything but this glue is written once in `ibconn-core` and
//! `ibconn-runtime`; read their docs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ibconn_smol::Error> {
//! use ibconn_smol::{MemoryRegistry, Pool, PoolConfig, Purpose};
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
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use ibconn_runtime::{finish_connect, is_connected, start_connect, Dialing};
use smol::{Async, Timer};
use socket2::SockRef;

pub use ibconn_runtime::api::*;

/// A pool of TWS sessions driven on smol ([`ibconn_runtime::Pool`]).
pub type Pool = ibconn_runtime::Pool<Smol>;

/// One TWS session with a fixed client id, on smol ([`ibconn_runtime::Client`]).
pub type Client = ibconn_runtime::Client<Smol>;

/// smol as an [`ibconn_runtime::Runtime`].
#[derive(Debug, Clone, Copy)]
pub struct Smol;

impl ibconn_runtime::Runtime for Smol {
    type Socket = Stream;
    type Timer = Timer;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(task).detach();
    }

    fn dial(addr: String) -> Dialing<Stream> {
        Box::pin(async move {
            let Ok(sa) = addr.parse::<SocketAddr>() else {
                let mut last =
                    io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
                for sa in smol::net::resolve(addr.as_str()).await? {
                    match Async::<TcpStream>::connect(sa).await {
                        Ok(stream) => return Ok(Stream(stream)),
                        Err(e) => last = e,
                    }
                }
                return Err(last);
            };
            let stream = Async::new(start_connect(sa)?)?;
            if !is_connected(SockRef::from(stream.get_ref())) {
                stream.writable().await?;
                finish_connect(SockRef::from(stream.get_ref()))?;
            }
            Ok(Stream(stream))
        })
    }

    fn timer(at: Instant) -> Timer {
        Timer::at(at)
    }

    fn reset(timer: &mut Timer, at: Instant) {
        timer.set_at(at);
    }
}

/// An async-io TCP stream as an [`ibconn_runtime::Socket`] (async-io tries the socket before
/// waiting, so a fresh one takes its hello at once).
#[derive(Debug)]
pub struct Stream(Async<TcpStream>);

impl ibconn_runtime::Socket for Stream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn sock(&self) -> SockRef<'_> {
        SockRef::from(self.0.get_ref())
    }
}
