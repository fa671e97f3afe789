//! Helpers shared by the CLI's integration tests (and the benches): scratch directories, the
//! `ibconn` binary with a clean environment, an in-process simulated gateway, a running
//! `ibconn serve` (or `ibconn sim`) child, and plain HTTP/1.1 GETs against it.
//!
//! Every `ibconn` built here has its state and cache directories in a scratch directory and no
//! `IBCONN_*` variables from the caller's environment, so no test touches the user's files or
//! picks up their configuration. A test that needs a variable sets it on the returned command.
// Each test binary uses a subset of these helpers.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ibconn_sim::{ServerConfig, SimServer};

/// This process's own directory under the temp dir (not wiped: `ibconn()` runs share it).
fn process_dir() -> PathBuf {
    std::env::temp_dir().join(format!("ibconn-test-{}", std::process::id()))
}

/// A fresh (emptied) scratch directory, unique to this process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ibconn-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Point the state and cache directories into `dir` and drop every `IBCONN_*` variable.
fn clean_env(cmd: &mut Command, dir: &Path) {
    cmd.env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_CACHE_HOME", dir.join("cache"));
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("IBCONN_")) {
            cmd.env_remove(k);
        }
    }
}

/// The `ibconn` binary with a clean environment whose state and cache directories live in this
/// process's scratch directory; runs in the caller's current directory.
pub fn ibconn_std() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ibconn"));
    clean_env(&mut cmd, &process_dir());
    cmd
}

/// The `ibconn` binary run in `dir`, with the state and cache directories inside it
/// (`dir/state`, `dir/cache`) and no `IBCONN_*` variables.
pub fn ibconn_std_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ibconn"));
    cmd.current_dir(dir);
    clean_env(&mut cmd, dir);
    cmd
}

/// [`ibconn_std`] as an `assert_cmd` command.
pub fn ibconn() -> assert_cmd::Command {
    assert_cmd::Command::from_std(ibconn_std())
}

/// [`ibconn_std_in`] as an `assert_cmd` command.
pub fn ibconn_in(dir: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(ibconn_std_in(dir))
}

/// A loopback address nothing listens on (bound, then closed again).
pub fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
    // `l` closes here: nothing listens on the port any more.
}

/// A simulated gateway on a loopback port, running on its own one-worker runtime.
pub struct Sim {
    // Declared before `rt`: the server goes before its runtime.
    server: Option<SimServer>,
    rt: tokio::runtime::Runtime,
    /// The address the gateway listens on.
    pub addr: String,
}

impl Sim {
    /// A gateway with the default configuration.
    pub fn start() -> Self {
        Self::start_with(ServerConfig::default())
    }

    /// A gateway with `config`.
    pub fn start_with(config: ServerConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            SimServer::start(listener, config).unwrap()
        });
        let addr = server.local_addr().to_string();
        Self {
            server: Some(server),
            rt,
            addr,
        }
    }

    /// The server, for faults (`sim.block_on(sim.server().inject(..))`). Panics after
    /// [`Sim::shutdown`].
    pub fn server(&self) -> &SimServer {
        self.server.as_ref().expect("the sim is shut down")
    }

    /// The runtime the server runs on (other in-process servers may share it).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// Run `fut` to completion on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// Stop the server: its port refuses from now on. Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

/// A running `ibconn` child that printed `listening on ADDR` (`serve`, `sim`), killed on drop.
pub struct Serve {
    /// The child process.
    pub child: Child,
    /// The address it listens on.
    pub addr: String,
}

impl Serve {
    /// Spawn `cmd` (an `ibconn serve`/`sim` command line, e.g. from [`ibconn_std`]) with stdout
    /// piped and stderr discarded, and read its first line, `listening on ADDR`.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first line {line:?}");
        };
        Self {
            addr: addr.to_owned(),
            child,
        }
    }

    /// Kill the child now (no chance to clean up) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A response: status, lower-cased headers, body.
pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    }
}

/// `GET path` over a fresh connection (HTTP/1.1, `Connection: close`), with a bearer token.
pub fn get(addr: &str, path: &str, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    get_with(addr, path, &headers)
}

/// `GET path` over a fresh connection (HTTP/1.1, `Connection: close`) with extra `headers`.
pub fn get_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// Poll `/api/ib/pool/health` until it answers `want` (or panic after 10 s).
pub fn health_until(addr: &str, token: Option<&str>, want: u16) -> Resp {
    let start = std::time::Instant::now();
    loop {
        let r = get(addr, "/api/ib/pool/health", token);
        if r.status == want {
            return r;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "health stayed {}: {}",
            r.status,
            r.body
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
