//! The wall-clock TCP server: a thin adapter that moves bytes and timers into the sans-IO
//! [`Gateway`]. One task owns the gateway (accepts, inputs, timers); one task per socket reads and
//! writes. No protocol knowledge lives here.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::gateway::{ConnId, Gateway, GatewayConfig};

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
    /// Start serving on `listener` (inside a Tokio runtime).
    pub fn start(listener: TcpListener, config: ServerConfig) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let mut gateway = Gateway::new(config.gateway, config.seed);
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        gateway.set_clock(Instant::now(), wall_ms);
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

async fn run(
    mut gw: Gateway,
    listener: TcpListener,
    mut rx: UnboundedReceiver<Input>,
    tx: UnboundedSender<Input>,
) {
    let mut writers = Writers::new();
    loop {
        let deadline = gw.poll_timeout();
        let timer = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
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
