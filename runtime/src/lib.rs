//! # ibconn-runtime
//!
//! What every ibconn runtime shares, written once: the pool's handles ([`Pool`],
//! [`PooledConnection`], [`Events`], [`Client`]) and the loop that runs the core's sans-IO
//! [`Driver`](ibconn_core::pool::Driver) — generic over a small [`Runtime`] trait that supplies
//! only what differs per executor: a TCP [`Socket`], a dial, one spawn and one timer.
//! `ibconn-tokio` and `ibconn-smol` are each an implementation of that trait plus type aliases.
//!
//! One task per pool: the driver owns the core pool and every socket, reads and writes them
//! itself and sleeps on one timer ([`Driver::poll_timeout`](ibconn_core::pool::Driver::poll_timeout)
//! covers the pool's timers, the clock tick and the socket write deadlines). Callers talk to it
//! over executor-free channels, so every handle works under any executor. Every wait is bounded
//! by a deadline the core enforces (acquire timeout, request timeout, write timeout), so every
//! call ends with an answer or a typed error. [`Client::connect`] runs the same driver in the
//! caller's task until its session is ready, then hands it (sockets included) to a spawned task.
//!
//! Bounds: a socket is read only as fast as the driver handles input (TCP's flow control tells
//! the gateway); writes wait in the core's per-socket queue ([`WRITE_QUEUE`](ibconn_core::pool::WRITE_QUEUE)
//! transmits), each within [`Config::write_timeout`](ibconn_core::connection::Config::write_timeout):
//! a gateway that stops reading ends its session with a typed
//! [`ConnectionError`](ibconn_core::connection::ConnectionError) and the pool redials. Commands
//! from handles travel on an unbounded queue bounded by its callers (see [`Pool`]); notices on a
//! bounded queue per subscriber that the driver never waits for ([`Pool::events`]).
//!
//! With a [`FileRegistry`] the driver does short, locked file operations (lease allocate, release,
//! heartbeat) inline; they are small and rare, but they block the driver while they run.
#![forbid(unsafe_code)]

/// What a runtime crate re-exports as its API besides its `Pool` and `Client` aliases: the
/// handles, errors, configuration and registries (`pub use ibconn_runtime::api::*;`).
pub mod api {
    pub use ibconn_core::client_id::Purpose;
    pub use ibconn_core::pacer::{MemoryLedger, PaceLedger};
    /// Why a call failed (the core's [`PoolError`](ibconn_core::pool::PoolError)).
    pub use ibconn_core::pool::PoolError as Error;
    pub use ibconn_core::pool::{
        AcquireError, Bars, CallError, FileRegistry, IdRegistry, LeaseId, MemoryRegistry,
        PoolConfig, PoolNotice, PoolStats, PurposeConfig, Sharing, SubmitError, NOTICE_BUFFER,
    };

    pub use ibconn_core::stream::{
        MarketDataType, StreamData, StreamItem, StreamKind, StreamLimits, StreamQuery, Tick,
        TickByTickKind, TickType, STREAM_BUFFER,
    };

    pub use crate::handles::{Events, PooledConnection};
    pub use crate::subscription::Subscription;
}

mod clock;
mod handles;
mod net;
mod shell;
mod subscription;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use self::api::*;
pub use self::handles::{Client, Pool};
pub use self::net::{finish_connect, is_connected, start_connect};

/// A connect in progress.
pub type Dialing<S> = Pin<Box<dyn Future<Output = io::Result<S>> + Send>>;

/// What an executor supplies: connected sockets, one spawn and a re-armable timer.
pub trait Runtime: Send + Sync + 'static {
    /// A connected TCP stream.
    type Socket: Socket;
    /// A timer that completes at an instant and can be moved.
    type Timer: Future + Send + Unpin;

    /// Run `task` in the background (the pool's driver).
    fn spawn(task: impl Future<Output = ()> + Send + 'static);

    /// Connect to `addr` (`host:port`); [`start_connect`] and [`finish_connect`] do the numeric
    /// case the way both runtimes want it.
    fn dial(addr: String) -> Dialing<Self::Socket>;

    /// A timer completing at `at`.
    fn timer(at: Instant) -> Self::Timer;

    /// Move `timer` to complete at `at`.
    fn reset(timer: &mut Self::Timer, at: Instant);
}

/// A connected, non-blocking TCP stream in its executor's reactor.
pub trait Socket: Send + 'static {
    /// Read into `buf`; `Ok(0)` is EOF.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Write some of `buf`.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// The socket, for its options (nodelay, keepalive).
    fn sock(&self) -> socket2::SockRef<'_>;
}
