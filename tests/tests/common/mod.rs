//! Helpers shared by the interop tests: bounded awaits, a sim server on a loopback port, the
//! ib_async interpreter (skip or fail), and a recording proxy for a client's bytes.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ibconn_sim::{GatewayConfig, ServerConfig, SimServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const LIMIT: Duration = Duration::from_secs(15);

/// `f`, or a panic naming `what` after [`LIMIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

/// A sim on a loopback port, the default gateway, the wall clock the real time.
pub async fn start_sim() -> SimServer {
    start_sim_with(GatewayConfig::default(), None).await
}

/// A sim on a loopback port with `gateway` and seed 7; its wall clock starts at `wall_unix_ms`
/// (running in real time from there), or the real time.
pub async fn start_sim_with(gateway: GatewayConfig, wall_unix_ms: Option<i64>) -> SimServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServerConfig { gateway, seed: 7 };
    match wall_unix_ms {
        Some(ms) => SimServer::start_at(listener, config, ms),
        None => SimServer::start(listener, config),
    }
    .unwrap()
}

/// The interpreter with ib_async 2.1.0, or why there is none: `IBCONN_PYTHON`, else
/// `<workspace>/.venv-ci/bin/python`.
fn find_python() -> Result<PathBuf, String> {
    let path = match std::env::var_os("IBCONN_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-ci/bin/python"),
    };
    if !path.exists() {
        return Err(format!("no Python interpreter at {}", path.display()));
    }
    let probe = std::process::Command::new(&path)
        .args(["-c", "import ib_async; print(ib_async.__version__)"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let version = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    if !probe.status.success() || version != "2.1.0" {
        return Err(format!(
            "{} has no ib_async 2.1.0 (found {version:?}; {})",
            path.display(),
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(path)
}

/// The ib_async interpreter. Without one the test fails under `CI=true` or an explicit
/// `IBCONN_PYTHON`, and is skipped (`None`, with a message naming `what`) otherwise.
pub fn python(what: &str) -> Option<PathBuf> {
    match find_python() {
        Ok(p) => Some(p),
        Err(why)
            if std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var_os("IBCONN_PYTHON").is_some() =>
        {
            panic!("{what} cannot run: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED {what}: {why}. Install it with `python3 -m venv .venv-ci && \
                 .venv-ci/bin/pip install ib_async==2.1.0` or set IBCONN_PYTHON."
            );
            None
        }
    }
}

/// A script of `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// A loopback proxy to `upstream` for one client connection, recording every byte the client
/// sends (to compare a third-party client's frames with ours).
pub struct Recorder {
    pub port: u16,
    pub sent: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        tokio::spawn(async move {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = sw.shutdown().await;
            };
            let down = async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
            };
            tokio::join!(up, down);
        });
        Self { port, sent }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.sent.lock().unwrap().clone()
    }
}
