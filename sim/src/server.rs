//! The wall-clock TCP server: a thin adapter that moves bytes and timers into the sans-IO
//! [`Gateway`]. One task owns the gateway (accepts, inputs, timers); one task per socket reads and
//! writes. No protocol knowledge lives here.
//!
//! The gateway judges requests by the same rules as in the virtual-time worlds (its
//! [`GatewayConfig`], by default IB's): only the clock differs, the real one here.
//!
//! While the gateway refuses connections ([`Gateway::is_refusing`], after [`Fault::Restart`] or
//! [`Fault::Crash`]) the server closes its listening socket, so dials fail with "connection
//! refused" as at a restarting gateway; it binds the same address again when the port reopens.

// The TCP server loop is the one place in the sim that reads the clock: it serves real clients
// in real time and hands `now` to the gateway, which never reads one.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use ibconn_core::client_id::UnixMillis;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fault::Fault;
use crate::gateway::{ConnId, Gateway, GatewayConfig, GatewayCounters};

/// What [`serve`] and [`SimServer::start`] need.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// The gateway's configuration (`start_unix_ms` is replaced by the real time at start).
    pub gateway: GatewayConfig,
    /// The seed of all randomness.
    pub seed: u64,
}

#[derive(Debug)]
enum Input {
    Data(ConnId, Bytes),
    Eof(ConnId),
    Reset(ConnId),
    DropAll,
    Inject(Fault, oneshot::Sender<()>),
    Violations(oneshot::Sender<u64>),
    Counters(oneshot::Sender<GatewayCounters>),
    Shutdown,
}

/// A running server (for in-process tests): its address, a fault hook and shutdown.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    tx: UnboundedSender<Input>,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Start serving on `listener` (inside a Tokio runtime), the gateway's wall clock the real
    /// time.
    pub fn start(listener: TcpListener, config: ServerConfig) -> io::Result<Self> {
        let wall_ms = UnixMillis::from_system_time(SystemTime::now()).as_i64();
        Self::start_at(listener, config, wall_ms)
    }

    /// Start serving on `listener` with the gateway's wall clock at `wall_unix_ms` now (and
    /// running in real time from there): for tests whose data must stay where IB's rules put it
    /// whatever the date they run on (small bars are kept about six months, end dates must not be
    /// in the future).
    pub fn start_at(
        listener: TcpListener,
        config: ServerConfig,
        wall_unix_ms: i64,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let mut gateway = Gateway::new(config.gateway, config.seed);
        gateway.set_clock(Instant::now(), wall_unix_ms);
        let (tx, rx) = unbounded_channel();
        let task = tokio::spawn(run(gateway, listener, rx, tx.clone()));
        Ok(Self { addr, tx, task })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Fault: close every client socket from the gateway side.
    pub fn drop_connections(&self) {
        let _ = self.tx.send(Input::DropAll);
    }

    /// Apply `fault` to the gateway now; returns once it is applied (and, for a restart, once the
    /// port refuses).
    pub async fn inject(&self, fault: Fault) {
        let (done, applied) = oneshot::channel();
        if self.tx.send(Input::Inject(fault, done)).is_ok() {
            let _ = applied.await;
        }
    }

    /// Restart the gateway: every socket closes and the port refuses connections for `down_for`
    /// (then the same address accepts again).
    pub async fn restart(&self, down_for: Duration) {
        self.inject(Fault::Restart { down_for }).await;
    }

    /// Requests the gateway refused by its pacing rules so far (162 pacing violations, the 322 of
    /// a 51st open historical request, 420 for real-time bars), over every connection (IB counts
    /// its pacing per gateway, and so does the simulator).
    pub async fn pacing_violations(&self) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Input::Violations(tx)).ok()?;
        rx.await.ok()
    }

    /// The gateway's counters now ([`Gateway::counters`]): refusals, faults, and the streaming
    /// lines and subscriptions in use (an interop test asserts a cancelled subscription is gone).
    pub async fn counters(&self) -> Option<GatewayCounters> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Input::Counters(tx)).ok()?;
        rx.await.ok()
    }

    /// Stop accepting and close every socket.
    pub async fn shutdown(self) {
        let _ = self.tx.send(Input::Shutdown);
        let _ = self.task.await;
    }
}

/// Serve on `listener` until the task is cancelled (the binary races it against SIGINT/SIGTERM).
pub async fn serve(listener: TcpListener, config: ServerConfig) -> io::Result<()> {
    let server = SimServer::start(listener, config)?;
    server
        .task
        .await
        .map_err(|e| io::Error::other(e.to_string()))
}

type Writers = BTreeMap<ConnId, UnboundedSender<Option<Bytes>>>;

/// Bind `addr` again after a restart (`SO_REUSEADDR`, as the first bind had).
fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn run(
    mut gw: Gateway,
    listener: TcpListener,
    mut rx: UnboundedReceiver<Input>,
    tx: UnboundedSender<Input>,
) {
    let mut writers = Writers::new();
    let addr = listener.local_addr().ok();
    let mut listener = Some(listener);
    loop {
        // Honour the gateway's port state: no listener while it refuses.
        let refusing = gw.is_refusing(Instant::now());
        let mut retry = None;
        if refusing && listener.is_some() {
            tracing::debug!("gateway restarting: closing the listener");
            listener = None;
        } else if !refusing && listener.is_none() {
            match addr.map(rebind) {
                Some(Ok(l)) => listener = Some(l),
                Some(Err(err)) => {
                    tracing::warn!(%err, "cannot listen again; retrying");
                    retry = Some(Instant::now() + Duration::from_millis(100));
                }
                None => {}
            }
        }
        let deadline = gw.poll_timeout().into_iter().chain(retry).min();
        let timer = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accept => match accepted {
                Ok((stream, _)) => {
                    let id = gw.accept(Instant::now());
                    let (wtx, wrx) = unbounded_channel();
                    tokio::spawn(socket(id, stream, tx.clone(), wrx));
                    writers.insert(id, wtx);
                }
                Err(err) => tracing::debug!(%err, "accept failed"),
            },
            input = rx.recv() => match input {
                Some(Input::Data(id, bytes)) => gw.handle_input(id, Instant::now(), &bytes),
                Some(Input::Eof(id)) => {
                    gw.handle_eof(id, Instant::now());
                    writers.remove(&id);
                }
                Some(Input::Reset(id)) => {
                    gw.handle_reset(id, Instant::now());
                    writers.remove(&id);
                }
                Some(Input::DropAll) => gw.drop_all(),
                Some(Input::Inject(fault, done)) => {
                    gw.inject(Instant::now(), fault);
                    drain(&mut gw, &mut writers);
                    if gw.is_refusing(Instant::now()) {
                        listener = None;
                    }
                    let _ = done.send(());
                }
                Some(Input::Violations(reply)) => {
                    let _ = reply.send(gw.pacing_violations());
                }
                Some(Input::Counters(reply)) => {
                    let _ = reply.send(gw.counters());
                }
                Some(Input::Shutdown) | None => break,
            },
            () = timer => gw.handle_timeout(Instant::now()),
        }
        drain(&mut gw, &mut writers);
    }
    for w in writers.values() {
        let _ = w.send(None);
    }
}

/// Move every pending transmit and close into the socket tasks.
fn drain(gw: &mut Gateway, writers: &mut Writers) {
    writers.retain(|&id, w| {
        while let Some(bytes) = gw.poll_transmit(id) {
            let _ = w.send(Some(bytes));
        }
        if gw.poll_close(id) {
            let _ = w.send(None);
            return false;
        }
        true
    });
}

/// One socket: reads go to the gateway task, `Some(bytes)` is written, `None` closes.
async fn socket(
    id: ConnId,
    stream: TcpStream,
    tx: UnboundedSender<Input>,
    mut writes: UnboundedReceiver<Option<Bytes>>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) => {
                    let _ = tx.send(Input::Eof(id));
                    break;
                }
                Ok(n) => {
                    let _ = tx.send(Input::Data(id, Bytes::copy_from_slice(&buf[..n])));
                }
                Err(_) => {
                    let _ = tx.send(Input::Reset(id));
                    break;
                }
            },
            cmd = writes.recv() => match cmd {
                Some(Some(bytes)) => {
                    if wr.write_all(&bytes).await.is_err() {
                        let _ = tx.send(Input::Reset(id));
                        break;
                    }
                }
                Some(None) | None => {
                    let _ = wr.shutdown().await;
                    break;
                }
            },
        }
    }
}
