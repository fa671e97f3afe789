//! A throwaway `redis-server` on a free loopback port, killed on drop.
#![allow(dead_code)]

use std::error::Error;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Test result whose errors cross threads.
pub(crate) type TestResult<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

/// How long a started server gets to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running `redis-server` (no persistence), killed when dropped.
pub(crate) struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server, or `Ok(None)` (with a message) when `redis-server` is not installed and
    /// this is not CI; on CI (`CI=true`) a missing server is an error.
    pub(crate) fn start() -> TestResult<Option<Self>> {
        let Some(binary) = find_binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                return Err("redis-server is not installed (required when CI=true)".into());
            }
            eprintln!("SKIP: redis-server is not installed; skipping this Redis test");
            return Ok(None);
        };
        let dir = std::env::temp_dir();
        let mut last_error = None;
        // Another process may take the free port between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = Self {
                binary: binary.clone(),
                port,
                dir: dir.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(Some(server)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| "redis-server did not start".into()))
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new, empty server on the same port.
    pub(crate) fn restart(&mut self) -> TestResult {
        self.kill();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends a signal (`"STOP"`, `"CONT"`) to the server.
    pub(crate) fn signal(&self, signal: &str) -> TestResult {
        let pid = self.pid().ok_or("the server is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {pid} failed: {status}").into())
        }
    }

    fn spawn(&mut self) -> TestResult {
        let child = Command::new(&self.binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(format!("redis-server exited early: {status}").into());
                }
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(
                    format!("redis-server on port {} never answered PING", self.port).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped server must be continued to die promptly on some systems; SIGKILL suffices.
        self.kill();
    }
}

/// `$REDIS_SERVER`, else `redis-server` on `PATH`.
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> TestResult<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether a server on `port` answers `PING` within 200 ms.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let timeout = Duration::from_millis(200);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0_u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
